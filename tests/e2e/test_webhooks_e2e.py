"""Issue 4 end to end: signed webhooks drive windows, statuses, tiers, quality, restrictions, opt-outs."""

from __future__ import annotations

import json
import pathlib

import pytest
from tests.e2e.conftest import Harness
from tests.fakes import webhook_bodies as wb

SENDER = wb.PHONE_NUMBER_ID
CONFORMANCE = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "pywa-webhook-payloads"


async def register(h: Harness, **extra: object) -> None:
    body = {
        "phone_number_id": SENDER,
        "display_phone_number": "+" + wb.DISPLAY_PHONE_NUMBER,
        "tier": "TIER_250",
        **extra,
    }
    r = await h.client.post("/v1/senders", json=body)
    assert r.status_code == 201, r.text


def numbers(n: int) -> list[str]:
    return [f"+55119{i:08d}" for i in range(n)]


async def fill_to_limit(h: Harness, n: int = 260) -> str:
    r = await h.client.post(
        "/v1/campaigns", json={"sender": SENDER, "template": {"name": "promo"}, "recipients": numbers(n)}
    )
    assert r.status_code == 201, r.text
    await h.run()
    return str(r.json()["id"])


async def test_inbound_opens_window_and_portfolio_upgrade_releases_deferred(harness: Harness) -> None:
    h = harness
    await register(h, policy="portfolio", portfolio_id=wb.WABA_ID)
    campaign = await fill_to_limit(h)
    assert len({m.to for m in h.provider.received}) == 250

    # A new recipient writes in: a free-form reply goes at once although the limit is full.
    req = wb.signed(wb.inbound_text_change("5511955554444", "hello", timestamp=int(h.clock.now())))
    assert (await h.webhook(req.body)).status_code == 200
    r = await h.client.post(
        "/v1/messages", json={"sender": SENDER, "to": "+5511955554444", "text": "Hi! How can we help?"}
    )
    assert r.status_code == 202, r.text
    await h.run()
    assert (await h.client.get(f"/v1/messages/{r.json()['id']}")).json()["state"] in ("sent", "delivered", "read")

    # The platform raises the portfolio to TIER_2K: the 10 deferred go within one dispatcher cycle.
    req = wb.signed(wb.business_tier_change("TIER_2K"))
    assert (await h.webhook(req.body)).status_code == 200
    sender = (await h.client.get(f"/v1/senders/{SENDER}")).json()
    assert sender["tier"] == "TIER_2K" and sender["limit"] == 2000
    await h.gateway.dispatcher.step()
    counts = (await h.client.get(f"/v1/campaigns/{campaign}")).json()["counts"]
    assert counts.get("queued", 0) == 0, counts


async def test_signature_and_handshake(harness: Harness) -> None:
    h = harness
    r = await h.client.get(
        "/webhooks/whatsapp",
        params={"hub.mode": "subscribe", "hub.verify_token": "test-verify-token", "hub.challenge": "12345"},
    )
    assert r.status_code == 200 and r.text == "12345"
    r = await h.client.get(
        "/webhooks/whatsapp", params={"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1"}
    )
    assert r.status_code == 403
    req = wb.signed(wb.inbound_text_change("5511955554444", "hello"))
    assert (await h.client.post("/webhooks/whatsapp", content=req.body)).status_code == 401
    bad = {"X-Hub-Signature-256": "sha256=" + "0" * 64}
    assert (await h.client.post("/webhooks/whatsapp", content=req.body, headers=bad)).status_code == 403
    assert (await h.webhook(b'{"object": "whatsapp_business_acc')).status_code == 400
    assert (await h.client.get("/healthz")).status_code == 200


async def test_statuses_never_go_backwards_and_reconcile(harness: Harness) -> None:
    h = harness
    await register(h)
    r = await h.client.post("/v1/messages", json={"sender": SENDER, "to": "+5511911112222", "template": {"name": "p"}})
    mid = r.json()["id"]
    await h.run()
    wamid = (await h.client.get(f"/v1/messages/{mid}")).json()["wamid"]
    assert wamid
    for status in ("read", "delivered", "sent"):
        req = wb.signed(wb.status_change(wamid, status, "5511911112222", timestamp=int(h.clock.now())))
        assert (await h.webhook(req.body)).status_code == 200
    assert (await h.client.get(f"/v1/messages/{mid}")).json()["state"] == "read"
    # Redelivering the same body changes nothing.
    assert (await h.webhook(req.body)).status_code == 200
    assert (await h.client.get(f"/v1/messages/{mid}")).json()["state"] == "read"


async def test_failed_131026_releases_the_slot(harness: Harness) -> None:
    h = harness
    await register(h)
    r = await h.client.post("/v1/messages", json={"sender": SENDER, "to": "+5511911112222", "template": {"name": "p"}})
    mid = r.json()["id"]
    await h.run(0.001)  # sent, before the sandbox's own delivery status arrives
    assert (await h.client.get(f"/v1/senders/{SENDER}")).json()["used_24h"] == 1
    wamid = (await h.client.get(f"/v1/messages/{mid}")).json()["wamid"]
    req = wb.signed(
        wb.status_change(
            wamid,
            "failed",
            "5511911112222",
            error_code=131026,
            error_title="Message undeliverable",
            timestamp=int(h.clock.now()),
        )
    )
    assert (await h.webhook(req.body)).status_code == 200
    m = (await h.client.get(f"/v1/messages/{mid}")).json()
    assert m["state"] == "failed" and m["error_code"] == 131026
    assert (await h.client.get(f"/v1/senders/{SENDER}")).json()["used_24h"] == 0


async def test_stop_keyword_opts_out_of_marketing(harness: Harness) -> None:
    h = harness
    await register(h)
    req = wb.signed(wb.inbound_text_change("5511911112222", "STOP", timestamp=int(h.clock.now())))
    assert (await h.webhook(req.body)).status_code == 200
    r = await h.client.post(
        "/v1/messages",
        json={"sender": SENDER, "to": "+5511911112222", "template": {"name": "p"}, "category": "MARKETING"},
    )
    assert r.status_code == 422 and "opted out" in r.json()["error"]["message"]
    r = await h.client.post(
        "/v1/messages",
        json={"sender": SENDER, "to": "+5511911112222", "template": {"name": "otp"}, "category": "AUTHENTICATION"},
    )
    assert r.status_code == 202


async def test_restriction_pauses_counted_sending_until_expiry(harness: Harness) -> None:
    h = harness
    await register(h, portfolio_id=wb.WABA_ID)
    until = int(h.clock.now()) + 3600
    req = wb.signed(wb.account_restriction_change(until))
    assert (await h.webhook(req.body)).status_code == 200
    sender = (await h.client.get(f"/v1/senders/{SENDER}")).json()
    assert any("RESTRICTED_BIZ_INITIATED_MESSAGING" in r for r in sender["paused_reasons"]), sender
    r = await h.client.post("/v1/messages", json={"sender": SENDER, "to": "+5511911112222", "template": {"name": "p"}})
    await h.run()
    m = (await h.client.get(f"/v1/messages/{r.json()['id']}")).json()
    assert m["state"] == "queued" and "paused" in m["reason"]
    await h.advance(3700)
    assert (await h.client.get(f"/v1/messages/{r.json()['id']}")).json()["state"] in ("sent", "delivered", "read")


async def test_quality_red_pauses_marketing_only(harness: Harness) -> None:
    h = harness
    await register(h)
    await h.client.patch(f"/v1/senders/{SENDER}", json={"quality": "RED"})
    mk = (
        await h.client.post(
            "/v1/messages",
            json={"sender": SENDER, "to": "+5511911112222", "template": {"name": "p"}, "category": "MARKETING"},
        )
    ).json()
    ut = (
        await h.client.post(
            "/v1/messages",
            json={"sender": SENDER, "to": "+5511911113333", "template": {"name": "u"}, "category": "UTILITY"},
        )
    ).json()
    await h.run()
    assert (await h.client.get(f"/v1/messages/{mk['id']}")).json()["state"] == "queued"
    assert (await h.client.get(f"/v1/messages/{ut['id']}")).json()["state"] in ("sent", "delivered", "read")
    events = (await h.client.get(f"/v1/senders/{SENDER}/events")).json()
    assert any(e["kind"] == "paused" for e in events)
    await h.client.patch(f"/v1/senders/{SENDER}", json={"quality": "GREEN"})
    await h.run()
    assert (await h.client.get(f"/v1/messages/{mk['id']}")).json()["state"] in ("sent", "delivered", "read")


def _conformance_bodies() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(CONFORMANCE.glob("*.json")):
        for name, body in json.loads(path.read_text()).items():
            out.append((f"{path.stem}:{name}", body))
    return out


def test_conformance_corpus_is_there() -> None:
    assert len(_conformance_bodies()) >= 74, f"expected the 74 payloads in {CONFORMANCE}"


@pytest.mark.parametrize("name,body", _conformance_bodies(), ids=lambda v: v if isinstance(v, str) else "")
async def test_every_conformance_payload_is_accepted(harness: Harness, name: str, body: dict) -> None:
    await register(harness)
    req = wb.sign_body(body, "test-app-secret")
    r = await harness.webhook(req.body)
    assert 200 <= r.status_code < 300, (name, r.text)
    assert (await harness.client.get("/healthz")).status_code == 200


async def test_portfolio_forecast_counts_from_the_crossing_not_from_now(harness: Harness) -> None:
    h = harness
    await register(h, tier="TIER_2K", policy="portfolio", portfolio_id=wb.WABA_ID, quality="GREEN")
    r = await h.client.post("/v1/campaigns", json={"sender": SENDER, "template": {"name": "promo"},
                                                   "recipients": numbers(1000)})
    assert r.status_code == 201, r.text
    await h.run(30)  # 1,000 distinct: half of TIER_2K, crossed within a couple of seconds
    crossed_by = h.clock.now()
    first = (await h.client.get(f"/v1/senders/{SENDER}")).json()["forecast"]
    assert first["next_tier"] == "TIER_10K" and first["status"] == "earned", first
    crossing_send = sorted(m.at for m in h.provider.received)[999]  # the 1,000th distinct recipient
    assert crossing_send <= crossed_by
    assert first["predicted_at"] == crossing_send + 6 * 3600, "from the send's own time, not its slot's end"
    await h.advance(2 * 3600)
    later = (await h.client.get(f"/v1/senders/{SENDER}")).json()["forecast"]
    assert later["predicted_at"] == first["predicted_at"], "the same crossing, whenever one asks"


async def test_deliveries_are_forgotten_after_the_redelivery_window_not_before(harness: Harness) -> None:
    """Stored deliveries and change ids go after 8 days (the platform redelivers for up to 7)."""
    h = harness
    await register(h)
    raw = wb.serialize(wb.body(wb.inbound_text_change("5511933334444", "hi", timestamp=h.clock.now())))
    assert (await h.webhook(raw)).status_code == 200
    h.clock.advance(7 * 86_400)
    assert await h.gateway.webhooks.prune() == 0
    assert (await h.webhook(raw)).json()["message"] == "0 changes applied"  # a redelivery, recognised
    h.clock.advance(2 * 86_400)
    assert await h.gateway.webhooks.prune() == 2  # the delivery and its one change id
