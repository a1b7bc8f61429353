"""Issue 3's end-to-end promise: never over the tier, nothing lost, replies in the window go at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from tests.e2e.conftest import T0, Harness, make_harness

from tiergate.ports import SendOutcome

SENDER = "106540352242922"


def numbers(n: int, base: int = 0) -> list[str]:
    return [f"+55119{base + i:08d}" for i in range(n)]


async def register(h: Harness, tier: str = "TIER_250", **extra: object) -> dict:
    r = await h.client.post("/v1/senders", json={"phone_number_id": SENDER, "display_phone_number": "+15550783881",
                                                 "tier": tier, **extra})
    assert r.status_code == 201, r.text
    return r.json()


async def test_tier_250_campaign_of_300_sends_250_now_and_50_a_day_later(harness: Harness) -> None:
    h = harness
    await register(h)
    r = await h.client.post("/v1/campaigns", json={
        "sender": SENDER, "template": {"name": "promo", "language": "en_US"}, "recipients": numbers(300)})
    assert r.status_code == 201, r.text
    campaign = r.json()
    assert campaign["total"] == 300

    await h.advance(10)  # 80 messages/s: a few seconds of throughput
    received = h.provider.received
    assert len({m.to for m in received}) == 250, "exactly the tier's 250 distinct recipients go now"
    first_send = min(m.at for m in received)

    waiting = (await h.client.get("/v1/messages", params={"campaign_id": campaign["id"], "state": "queued",
                                                          "limit": 1000})).json()
    assert len(waiting) == 50
    for m in waiting:
        assert abs(m["next_attempt_at"] - (first_send + 86_400)) < 120, "each waits until a slot frees, ~24 h"
        assert "messaging limit" in m["reason"]

    sender = (await h.client.get(f"/v1/senders/{SENDER}")).json()
    assert sender["used_24h"] == 250 and sender["remaining"] == 0
    assert sender["next_release_at"] is not None

    # A recipient outside the window writes in; a free-form reply goes at once despite the full limit.
    replier = "5511988887777"
    h.provider.inbound(SENDER, replier)  # the platform sees the user write in and sends its webhook
    await h.gateway.pump_provider_events()
    r = await h.client.post("/v1/messages", json={"sender": SENDER, "to": "+" + replier, "text": "Hello back"})
    assert r.status_code == 202, r.text
    reply_id = r.json()["id"]
    await h.run()
    reply = (await h.client.get(f"/v1/messages/{reply_id}")).json()
    assert reply["state"] in ("sent", "delivered", "read"), reply
    assert len({m.to for m in h.provider.received}) == 251

    # A day later the 50 go, and never more than 250 counted recipients in any 24 h.
    await h.advance(86_400 + 120)
    counts = (await h.client.get(f"/v1/campaigns/{campaign['id']}")).json()["counts"]
    assert counts.get("sent", 0) + counts.get("delivered", 0) + counts.get("read", 0) == 300, counts
    assert h.provider.violations == 0


async def test_free_form_outside_the_window_is_refused_with_a_reason(harness: Harness) -> None:
    await register(harness)
    r = await harness.client.post("/v1/messages", json={"sender": SENDER, "to": "+5511911112222", "text": "hi"})
    assert r.status_code == 422
    assert "customer service window" in r.json()["error"]["message"]


async def test_idempotency_key_returns_the_original(harness: Harness) -> None:
    await register(harness)
    body = {"sender": SENDER, "to": "+5511911112222", "template": {"name": "otp"}, "category": "AUTHENTICATION",
            "idempotency_key": "order-42"}
    a = await harness.client.post("/v1/messages", json=body)
    b = await harness.client.post("/v1/messages", json=body)
    assert a.status_code == b.status_code == 202
    assert a.json()["id"] == b.json()["id"]
    # The same key for a different message is a conflict, not the original's answer (that would
    # drop the new message without a word); in a batch it is that row's error.
    for change in ({"to": "+5511911113333"}, {"template": {"name": "otp2"}}):
        c = await harness.client.post("/v1/messages", json={**body, **change})
        assert c.status_code == 409, c.text
        assert "already names another message" in c.text and a.json()["id"] in c.text
    r = await harness.client.post("/v1/messages/batch", json={"messages": [
        {**body, "idempotency_key": "k2"}, {**body, "to": "+5511911114444", "idempotency_key": "k2"}]})
    assert r.status_code == 207 or r.status_code == 202, r.text
    out = r.json()
    assert out["accepted"] == 1 and [e["row"] for e in out["row_errors"]] == [2], out  # rows count from 1
    r = await harness.client.post(f"/graph/v24.0/{SENDER}/messages", headers={"X-Idempotency-Key": "order-42"},
                                  json={"messaging_product": "whatsapp", "to": "5511911115555", "type": "template",
                                        "template": {"name": "otp", "language": {"code": "en_US"}}})
    assert r.status_code >= 400 and "already names another message" in r.text, r.text


async def test_bad_input_gets_4xx_with_a_message(harness: Harness) -> None:
    await register(harness)
    c = harness.client
    cases = [
        ({"sender": SENDER, "to": "12", "template": {"name": "x"}}, 422),
        ({"sender": SENDER, "to": "+999123", "template": {"name": "x"}}, 422),
        ({"sender": "nope", "to": "+5511911112222", "template": {"name": "x"}}, 404),
        ({"sender": SENDER, "to": "+5511911112222", "template": {"name": "x"}, "surprise": 1}, 422),
        ({"sender": SENDER, "to": "+5511911112222"}, 422),
    ]
    for body, status in cases:
        r = await c.post("/v1/messages", json=body)
        assert r.status_code == status, (body, r.text)
        assert r.json()["error"]["message"]
    r = await c.post("/v1/messages", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    r = await c.get("/v1/senders/x", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401


async def test_expired_message_ends_expired_with_reason(harness: Harness) -> None:
    h = harness
    await register(h)
    await h.client.post("/v1/campaigns", json={"sender": SENDER, "template": {"name": "p"}, "recipients": numbers(250)})
    await h.advance(10)  # the 250 go (80/s), the window is full
    r = await h.client.post("/v1/messages", json={"sender": SENDER, "to": "+5511977776666", "template": {"name": "p"},
                                                  "expires_at": T0 + 3600})
    mid = r.json()["id"]
    await h.advance(10)
    m = (await h.client.get(f"/v1/messages/{mid}")).json()
    assert m["state"] == "expired" and "expires_at" in m["reason"], m


async def test_dropin_endpoint_speaks_meta_shapes(harness: Harness) -> None:
    h = harness
    await register(h)
    body = {"messaging_product": "whatsapp", "to": "5511911112222", "type": "template",
            "template": {"name": "hello_world", "language": {"code": "en_US"}}}
    r = await h.client.post(f"/graph/v24.0/{SENDER}/messages", content=orjson.dumps(body),
                            headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["messaging_product"] == "whatsapp" and data["contacts"][0]["wa_id"] == "5511911112222"
    body["type"] = "text"
    body["text"] = {"body": "hi"}
    r = await h.client.post(f"/graph/v24.0/{SENDER}/messages", content=orjson.dumps(body))
    assert r.status_code == 400 and r.json()["error"]["code"] == 131047


@pytest.mark.parametrize("key", [None, "tg_wrong"])
async def test_dropin_refuses_a_bad_key_as_the_graph_api_does(harness: Harness, key: str | None) -> None:
    """An app written for the Cloud API reads the error object: a bad token is code 190, 401."""
    await register(harness)
    headers = {"Authorization": f"Bearer {key}"} if key else {"Authorization": ""}
    r = await harness.client.post(f"/graph/v24.0/{SENDER}/messages", headers=headers, json={
        "messaging_product": "whatsapp", "to": "5511911112222", "type": "template",
        "template": {"name": "hello_world", "language": {"code": "en_US"}}})
    assert r.status_code == 401, r.text
    error = r.json()["error"]
    assert error["code"] == 190 and error["type"] == "OAuthException" and error["fbtrace_id"], error
    assert "API key" in error["error_data"]["details"]
    assert (await harness.client.get("/v1/senders", headers=headers)).json()["error"].get("code") is None


async def test_a_pause_and_resume_does_not_push_waiting_messages_back_a_day(harness: Harness) -> None:
    """Requeued messages give back the slots they were handed (they were not lost, nor sent late)."""
    h = harness
    await register(h, tier="TIER_1K")
    r = await h.client.post("/v1/campaigns", json={
        "sender": SENDER, "template": {"name": "promo", "language": "en_US"}, "recipients": numbers(2500)})
    assert r.status_code == 201, r.text
    await h.advance(60)
    assert len({m.to for m in h.provider.received}) == 1000
    for quality in ("RED", "GREEN"):  # marketing paused, then resumed: the 1,500 are requeued and wait again
        assert (await h.client.patch(f"/v1/senders/{SENDER}", json={"quality": quality})).status_code == 200
        await h.advance(60)
    await h.advance(86_400)
    assert len({m.to for m in h.provider.received}) == 2000, "the next 1,000 go when the first day's slots free"


async def test_messages_that_expire_first_do_not_use_up_the_next_slots(harness: Harness) -> None:
    h = harness
    await register(h)
    await h.client.post("/v1/campaigns", json={"sender": SENDER, "template": {"name": "p"}, "recipients": numbers(250)})
    await h.advance(10)  # the window is full until ~T0 + 24 h
    for to in numbers(300, base=1000):  # they cannot go before they expire
        r = await h.client.post("/v1/messages", json={"sender": SENDER, "to": to, "template": {"name": "p"},
                                                      "expires_at": T0 + 3600})
        assert r.status_code == 202, r.text
    later = [(await h.client.post("/v1/messages", json={"sender": SENDER, "to": to, "template": {"name": "p"}})).json()
             for to in numbers(50, base=5000)]
    await h.advance(10)
    for m in later:
        got = (await h.client.get(f"/v1/messages/{m['id']}")).json()
        assert got["state"] == "queued" and got["next_attempt_at"] < T0 + 86_400 + 120, got


async def test_a_new_sender_is_picked_up_at_once_in_real_time(tmp_path: Path) -> None:
    """The dispatcher leases a new sender's scope on the change notification, not at its next periodic
    lease refresh (an hour here: without the notification nothing would go within the test)."""
    h = await make_harness(tmp_path, lease_ttl=3 * 3600.0)
    stop = asyncio.Event()
    task = asyncio.create_task(h.gateway.run(stop, sync=False))

    async def send_and_see(sender: str, to: str) -> None:
        r = await h.client.post("/v1/messages", json={"sender": sender, "to": "+" + to, "template": {"name": "p"}})
        assert r.status_code == 202, r.text
        for _ in range(500):  # an event to wait for, not a duration to check
            if any(m.to == to for m in h.provider.received):
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"nothing reached {to}")

    try:
        await register(h)
        await send_and_see(SENDER, "5511977776666")  # the dispatcher now holds this sender's scope
        second = "106540352242999"
        r = await h.client.post("/v1/senders", json={"phone_number_id": second,
                                                     "display_phone_number": "+15550783999", "tier": "TIER_250"})
        assert r.status_code == 201, r.text
        await send_and_see(second, "5511977775555")
    finally:
        stop.set()
        await task
        await h.client.aclose()
        await h.gateway.close()


async def test_a_backlog_beyond_a_day_of_slots_parks_in_bulk_and_goes_in_order(harness: Harness) -> None:
    """1,000 recipients on TIER_250: once the coming day's 250 slots are promised, the rest of the
    backlog is parked in one statement (no decision each); released slots pull it first come first
    served, a template to a recipient whose service window is open is not held back, nothing is lost."""
    h = harness
    await register(h)
    audience = numbers(1000)
    writer = audience[950].lstrip("+")
    h.provider.inbound(SENDER, writer)  # this recipient wrote in: their template is free and goes now
    await h.gateway.pump_provider_events()
    r = await h.client.post("/v1/campaigns", json={
        "sender": SENDER, "template": {"name": "promo", "language": "en_US"}, "recipients": audience})
    assert r.status_code == 201, r.text
    campaign = r.json()["id"]
    await h.advance(60)
    assert len({m.to for m in h.provider.received}) == 251
    assert writer in {m.to for m in h.provider.received}
    waiting = (await h.client.get("/v1/messages", params={"campaign_id": campaign, "state": "queued",
                                                          "limit": 1000})).json()
    assert len(waiting) == 749 and all("messaging limit" in m["reason"] for m in waiting)
    first_send = min(m.at for m in h.provider.received)
    bulk = [m for m in waiting if m["next_attempt_at"] > first_send + 86_400 + 120]
    assert len(bulk) >= 400, "the rest waits in bulk, at the latest time the last could go at this tier"
    assert max(m["next_attempt_at"] for m in waiting) <= first_send + 3 * 86_400 + 120
    history = (await h.client.get(f"/v1/messages/{bulk[0]['id']}")).json()["history"]
    assert [e["state"] for e in history] == ["queued", "queued"] and "messaging limit" in history[-1]["reason"]

    await h.advance(4 * 86_400)
    counts = (await h.client.get(f"/v1/campaigns/{campaign}")).json()["counts"]
    assert counts.get("sent", 0) + counts.get("delivered", 0) + counts.get("read", 0) == 1000, counts
    assert h.provider.violations == 0
    order = [m.to for m in h.provider.received if m.to != writer]
    assert order == [n.lstrip("+") for n in audience if n.lstrip("+") != writer], "first come, first served"


async def test_a_restarted_worker_still_pulls_a_backlog_parked_in_bulk_when_slots_free(harness: Harness) -> None:
    """The backlog parked in bulk waits at its latest time; a worker that lost its memory of it (a
    restart) must still pull it as slots free, not leave it waiting until then."""
    h = harness
    await register(h)
    r = await h.client.post("/v1/campaigns", json={
        "sender": SENDER, "template": {"name": "promo", "language": "en_US"}, "recipients": numbers(1000)})
    assert r.status_code == 201, r.text
    await h.advance(60)
    assert h.gateway.dispatcher.sent_total == 250
    h.gateway.dispatcher._scopes.clear()  # as after a restart: windows reload from the ledger, nothing else
    await h.advance(2 * 86_400 + 120)
    assert len(h.provider.received) == 750, "a day's slots each day, the bulk-parked ones included"
    assert h.provider.violations == 0


async def test_a_nearly_full_pool_goes_to_the_scopes_that_have_work(tmp_path: Path) -> None:
    """With most of the in-flight pool taken, the room left must go to a scope with due messages,
    whatever the rotation puts first: before, the first scopes in turn took the room, had nothing
    due, and the dispatcher slept a second with work waiting (a third of the multi-sender bench)."""
    h = await make_harness(tmp_path, max_in_flight=8)
    try:
        senders = [f"10654035224{k:04d}" for k in range(6)]
        for k, pnid in enumerate(senders):
            r = await h.client.post("/v1/senders", json={"phone_number_id": pnid, "tier": "TIER_UNLIMITED",
                                                         "display_phone_number": f"+1555078{k:04d}"})
            assert r.status_code == 201, r.text
        for to in numbers(3):
            r = await h.client.post("/v1/messages", json={"sender": senders[-1], "to": to,
                                                          "template": {"name": "p"}})
            assert r.status_code == 202, r.text
        d = h.gateway.dispatcher
        await d.refresh_scopes()
        d.overlap_sends = True
        d._inflight[senders[0]] = 6  # two requests' room left in all: less than the six scopes' tokens
        for _ in range(len(senders)):  # every rotation
            before = len(h.provider.received)
            await d.step(refresh=False)
            await asyncio.gather(*list(d._sending))
            if len(h.provider.received) == 3:
                break
            assert len(h.provider.received) == before + 2, "the free room went to scopes with nothing due"
        assert sorted(m.to for m in h.provider.received) == sorted(n.lstrip("+") for n in numbers(3))
    finally:
        await h.client.aclose()
        await h.gateway.close()


@pytest.mark.parametrize("pacing", [{}, {"pacing": "spread", "spread_days": 2}])
async def test_a_campaign_plans_the_recipients_it_kept_not_the_rows_it_refused(harness: Harness,
                                                                                pacing: dict) -> None:
    await register(harness)
    r = await harness.client.post("/v1/campaigns", json={
        "sender": SENDER, "template": {"name": "promo"}, **pacing,
        "recipients": [*numbers(3), "+12", "not a number", numbers(1)[0]]})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["total"] == 3 and [e["row"] for e in created["row_errors"]] == [4, 5, 6]
    assert created["plan"][-1]["cumulative"] == 3, created["plan"]


async def test_a_worker_whose_leases_may_have_lapsed_before_the_send_requeues_the_batch_unsent(
        harness: Harness) -> None:
    """A worker stalled between admission and sending (GC, a VM pause, SIGSTOP) past its lease: a new
    owner may hold the scope and count its slots only from the takeover, so the batch must not go
    late. If the worker still owns the scope, the messages are simply queued again, slots freed."""
    h = harness
    await register(h)
    r = await h.client.post("/v1/messages", json={"sender": SENDER, "to": numbers(1)[0], "template": {"name": "p"}})
    assert r.status_code == 202, r.text
    d = h.gateway.dispatcher
    await d.refresh_scopes()
    h.clock.set(h.clock.now() + d.config.lease_ttl * 0.9)  # no renewal since: the lease is nearly out
    await d.step(refresh=False)
    assert h.provider.received == []
    m = (await h.client.get(f"/v1/messages/{r.json()['id']}")).json()
    assert m["state"] == "queued" and "lease lapsed" in m["reason"], m
    assert await h.gateway.store.load_ledger(f"sender:{SENDER}", h.clock.now()) == []
    await h.run(10)  # leases renewed (and the pair rate's few seconds passed): it goes
    assert [x.to for x in h.provider.received] == [numbers(1)[0].lstrip("+")]


async def test_an_inline_provider_gets_admission_and_answer_in_one_write(harness: Harness) -> None:
    """The sandbox answers inline: no 'sending' row write, yet the history keeps both steps, the
    attempt and the slot; a refusal that the platform did not count gives its slot back at once."""
    h = harness
    await register(h)
    ok, refused = numbers(2)
    sent: list[str] = []
    real_send = h.provider.send

    async def send(phone_number_id: str, body: dict) -> SendOutcome:
        sent.append(body["to"])
        if body["to"] == refused.lstrip("+"):  # a 4xx with a definite error: the platform did not count it
            return SendOutcome("failed", code=131026, title="Message undeliverable", http_status=400)
        return await real_send(phone_number_id, body)

    h.provider.send = send
    ids = []
    for to in (ok, refused):
        r = await h.client.post("/v1/messages", json={"sender": SENDER, "to": to, "template": {"name": "p"}})
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    writes: list[list[str]] = []
    store = h.gateway.store
    real_apply = store.apply_updates

    async def apply_updates(updates, ledger=(), lease=None):  # type: ignore[no-untyped-def]
        writes.append([str(u.state) for u in updates])
        return await real_apply(updates, ledger, lease)

    store.apply_updates = apply_updates  # type: ignore[method-assign]
    await h.gateway.dispatcher.step()
    assert sorted(sent) == sorted(x.lstrip("+") for x in (ok, refused))
    assert writes == [["failed", "sent"]] or writes == [["sent", "failed"]], writes  # one write, no 'sending'
    good = (await h.client.get(f"/v1/messages/{ids[0]}")).json()
    assert good["state"] == "sent" and good["attempts"] == 1 and good["wamid"]
    assert [e["state"] for e in good["history"]] == ["queued", "sending", "sent"]
    bad = (await h.client.get(f"/v1/messages/{ids[1]}")).json()
    assert bad["state"] == "failed" and "131026" in bad["reason"] and bad["attempts"] == 1
    assert [e["state"] for e in bad["history"]] == ["queued", "sending", "failed"]
    ledger = await store.load_ledger(f"sender:{SENDER}", h.clock.now())
    assert [r for r, _ in ledger] == [ok.lstrip("+")]


async def test_campaign_rows_with_and_without_parameters_get_their_own_bodies(harness: Harness) -> None:
    """Rows without parameters share the campaign's template; a row's own parameters stay its own."""
    h = harness
    await register(h, tier="TIER_1K")
    plain_a, with_params, plain_b = numbers(3)
    comps = [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}]
    r = await h.client.post("/v1/campaigns", json={
        "sender": SENDER, "template": {"name": "promo", "language": "pt_BR"}, "category": "MARKETING",
        "recipients": [plain_a, {"to": with_params, "components": comps}, {"to": plain_b}]})
    assert r.status_code == 201, r.text
    tenant, = await h.gateway.store.list_tenants()
    stored = {m.to: m.body for m in await h.gateway.store.list_messages(tenant.id, limit=10)}
    template = {"name": "promo", "language": {"code": "pt_BR"}}
    assert stored[plain_a.lstrip("+")] == {"messaging_product": "whatsapp", "recipient_type": "individual",
                                           "to": plain_a.lstrip("+"), "type": "template", "template": template}
    b = plain_b.lstrip("+")
    assert stored[b]["template"] == template and stored[b]["to"] == b
    assert stored[with_params.lstrip("+")]["template"] == {**template, "components": comps}
