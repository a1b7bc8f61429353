"""What some platform answers mean beyond the one message: 130429 slows the sender, 368/131031 stop
it, 131050 records the recipient's marketing stop, a retry never outlives ``expires_at``, and the
marketing cap counts a batch's own sends across the tenant's senders."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.conftest import Harness, make_harness
from tests.fakes.providers import SendOnlyProvider

from tiergate.clock import Clock, SystemClock
from tiergate.ports import SendOutcome


class Platform(SendOnlyProvider):
    """A remote-like platform whose answers a test scripts (``answer``); it accepts by default."""

    name = "scripted"

    def __init__(self, clock: Clock, answer: Any = None) -> None:
        super().__init__(inline=False)
        self.clock, self.answer = clock, answer
        self.calls: list[tuple[float, str, str]] = []

    async def send(self, phone_number_id: str, body: dict[str, Any]) -> SendOutcome:
        self.calls.append((self.clock.now(), phone_number_id, body["to"]))
        out = self.answer(phone_number_id, body) if self.answer else None
        return out or SendOutcome("accepted", wamid=f"wamid.{len(self.calls)}")


def failed(code: int) -> SendOutcome:
    return SendOutcome("failed", code=code, title="error", details=f"code {code}", http_status=400)


async def scripted(tmp_path: Path, answer: Any = None) -> tuple[Harness, Platform]:
    platform = Platform(SystemClock(), answer)
    h = await make_harness(tmp_path, provider=platform)
    platform.clock = h.clock  # the harness's virtual one
    return h, platform


async def sender(h: Harness, pnid: str, **extra: Any) -> None:
    r = await h.client.post("/v1/senders", json={"phone_number_id": pnid, "display_phone_number": f"+1555{pnid[-7:]}",
                                                 "tier": "TIER_100K", **extra})
    assert r.status_code == 201, r.text


def template(pnid: str, to: str, category: str = "UTILITY", **extra: Any) -> dict[str, Any]:
    return {"sender": pnid, "to": to, "template": {"name": "hello", "language": "en_US"}, "category": category,
            **extra}


async def test_130429_slows_the_sender_down_and_nothing_fails(tmp_path: Path) -> None:
    recent: collections.deque[float] = collections.deque()
    box: dict[str, Harness] = {}

    def platform_pace(_pnid: str, _body: dict[str, Any]) -> SendOutcome | None:
        now = box["h"].clock.now()
        while recent and recent[0] <= now - 1.0:
            recent.popleft()
        if len(recent) >= 80:  # the platform really allows 80 a second
            return failed(130429)
        recent.append(now)
        return None

    h, platform = await scripted(tmp_path, platform_pace)
    box["h"] = h
    try:
        await sender(h, "1001", throughput_mps=1000)  # configured far above what the platform takes
        r = await h.client.post("/v1/campaigns", json={
            "sender": "1001", "template": {"name": "hello", "language": "en_US"}, "category": "UTILITY",
            "recipients": [f"+55119{i:08d}" for i in range(6000)]})
        assert r.status_code == 201, r.text
        await h.advance(900)
        assert await h.gateway.store.count_by_state() == {"sent": 6000}
        # Settled near the platform's pace: far fewer refused requests than messages.
        assert len(platform.calls) < 6000 * 1.5, len(platform.calls)
        bucket = h.gateway.dispatcher._buckets["1001"]
        assert bucket.slowed_to <= 100, "it came down to about the platform's pace"
        assert bucket.rate == 1000, "and back up to the configured one once the answers said nothing more"
    finally:
        await h.gateway.close()


@pytest.mark.parametrize("code", [368, 131031])
async def test_a_restricted_account_fails_the_message_and_stops_the_sender(tmp_path: Path, code: int) -> None:
    h, platform = await scripted(tmp_path, lambda _p, body: failed(code))
    try:
        await sender(h, "1001")
        ids = []
        for i in range(5):
            r = await h.client.post("/v1/messages", json=template("1001", f"+551190000{i:04d}"))
            ids.append(r.json()["id"])
        await h.advance(60)
        states = [(await h.client.get(f"/v1/messages/{i}")).json()["state"] for i in ids]
        assert states.count("failed") >= 1 and "sent" not in states
        paused = (await h.client.get("/v1/senders/1001")).json()["paused_reasons"]
        assert paused, "the sender is stopped"
        tried = len(platform.calls)
        await h.advance(3600)
        assert len(platform.calls) == tried, "nothing more is sent to fail the same way"
    finally:
        await h.gateway.close()


async def test_131050_records_the_recipients_marketing_stop(tmp_path: Path) -> None:
    h, platform = await scripted(tmp_path, lambda _p, body: failed(131050) if len(platform.calls) == 1 else None)
    try:
        await sender(h, "1001")
        first = (await h.client.post("/v1/messages", json=template("1001", "+5511900000001", "MARKETING"))).json()
        await h.advance(30)
        assert (await h.client.get(f"/v1/messages/{first['id']}")).json()["state"] == "failed"
        later = (await h.client.post("/v1/messages", json=template("1001", "+5511900000001", "MARKETING")))
        if later.status_code == 202:  # refused at submission, or rejected before any send
            await h.advance(30)
            assert (await h.client.get(f"/v1/messages/{later.json()['id']}")).json()["state"] == "rejected"
        else:
            assert later.status_code == 422, later.text
        utility = (await h.client.post("/v1/messages", json=template("1001", "+5511900000001", "UTILITY"))).json()
        await h.advance(30)
        assert (await h.client.get(f"/v1/messages/{utility['id']}")).json()["state"] == "sent"
        assert [c for c in platform.calls if c[2] == "5511900000001"].__len__() == 2  # the first, the utility
    finally:
        await h.gateway.close()


async def test_a_retry_that_would_come_after_expires_at_ends_expired_now(tmp_path: Path) -> None:
    h, _platform = await scripted(tmp_path, lambda _p, body: failed(131049))  # retry no sooner than 24 h
    try:
        await sender(h, "1001")
        expires = h.clock.now() + 3600
        m = (await h.client.post("/v1/messages", json=template("1001", "+5511900000001", "MARKETING",
                                                                 expires_at=expires))).json()
        await h.advance(30)
        got = (await h.client.get(f"/v1/messages/{m['id']}")).json()
        assert got["state"] == "expired", got
        assert "131049" in got["reason"] and "expires_at" in got["reason"]
    finally:
        await h.gateway.close()


async def test_the_marketing_cap_counts_a_batchs_sends_across_senders(tmp_path: Path) -> None:
    h, platform = await scripted(tmp_path)
    try:
        for pnid in ("1001", "1002", "1003"):
            await sender(h, pnid)
        for pnid in ("1001", "1002", "1003"):  # one marketing template each, to one recipient
            r = await h.client.post("/v1/messages", json=template(pnid, "+5511900000001", "MARKETING"))
            assert r.status_code == 202, r.text
        await h.advance(60)
        assert len(platform.calls) == 2, "the tenant's cap: 2 marketing templates per recipient per 24 h"
        waiting = (await h.client.get("/v1/messages", params={"state": "queued"})).json()
        assert len(waiting) == 1 and "marketing frequency cap" in waiting[0]["reason"]
    finally:
        await h.gateway.close()


async def test_a_classic_scope_keeps_its_own_numbers_limit_when_a_change_carries_both(tmp_path: Path) -> None:
    from tests.fakes import webhook_bodies as wb

    h = await make_harness(tmp_path)
    try:
        await sender(h, "1001", tier="TIER_250", portfolio_id=wb.WABA_ID, policy="classic")
        scope_id = (await h.gateway.store.get_sender("1001")).scope_id
        assert scope_id.startswith("sender:"), scope_id  # classic: counted per number
        both = wb.business_tier_change(2000, max_daily_conversation_per_phone=1000)
        await h.gateway.webhooks.apply_body(wb.body(both))
        scope = await h.gateway.store.get_scope(scope_id)
        assert scope.tier == "TIER_1K", "its own number's limit, not the portfolio's"
    finally:
        await h.gateway.close()


async def test_an_inbound_timestamp_from_the_future_opens_the_window_from_now_only(tmp_path: Path) -> None:
    from tests.fakes import webhook_bodies as wb

    h = await make_harness(tmp_path)
    try:
        await sender(h, wb.PHONE_NUMBER_ID)
        change = wb.inbound_text_change("5511900000001", "hi", timestamp=h.clock.now() + 1e9)
        r = await h.webhook(wb.serialize(wb.body(change)))
        assert r.status_code == 200, r.text
        text = {"sender": wb.PHONE_NUMBER_ID, "to": "+5511900000001", "text": "hello"}
        assert (await h.client.post("/v1/messages", json=text)).status_code == 202  # the window is open now
        await h.advance(25 * 3600)
        late = await h.client.post("/v1/messages", json=text)
        assert late.status_code == 422 and "131047" in late.text, "and closed a day later, not in 31 years"
    finally:
        await h.gateway.close()
