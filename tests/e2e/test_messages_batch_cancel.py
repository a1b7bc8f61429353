"""Many messages in one request (each checked on its own, the rest queued together), and canceling a
message that still waits, including while the dispatcher holds it (a cancel or a pause is never undone)."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import T0, Harness

from tiergate.core.model import MessageState

SENDER = "106540352242922"
TEMPLATE = {"name": "order_update", "language": "en_US"}


async def register(h: Harness, tier: str = "TIER_1K") -> None:
    r = await h.client.post("/v1/senders", json={"phone_number_id": SENDER, "display_phone_number": "+15550783881",
                                                 "tier": tier})
    assert r.status_code == 201, r.text


def msg(to: str, **extra: Any) -> dict[str, Any]:
    return {"sender": SENDER, "to": to, "template": TEMPLATE, "category": "UTILITY", **extra}


async def test_a_batch_queues_the_good_messages_and_reports_each_refused_one_by_its_row(harness: Harness) -> None:
    h = harness
    await register(h)
    assert (await h.client.post("/v1/recipients/+5511900000005/opt-out", json={})).status_code == 204
    r = await h.client.post("/v1/messages/batch", json={"messages": [
        msg("+5511900000001", idempotency_key="order-1"),
        msg("+1234"),  # not a phone number
        {"sender": "999", "to": "+5511900000003", "template": TEMPLATE},  # not this tenant's sender
        {"sender": SENDER, "to": "+5511900000004", "text": "hi"},  # free-form, no open service window
        msg("+5511900000005", category="MARKETING"),  # opted out of marketing
        {"sender": SENDER, "to": "+5511900000006"},  # neither template nor text
        msg("+5511900000007", idempotency_key="order-1"),  # the same key for another message: a conflict
        msg("+5511900000008"),
    ]})
    assert r.status_code == 202, r.text
    out = r.json()
    assert out["accepted"] == 2
    ids = [m["id"] if m else None for m in out["messages"]]
    assert ids[0] is not None and ids[6] is None and ids[7] not in (None, ids[0])
    assert ids[1:6] == [None] * 5
    errors = {e["row"]: e["error"] for e in out["row_errors"]}
    assert sorted(errors) == [2, 3, 4, 5, 6, 7]
    assert "already names another message" in errors[7] and ids[0] in errors[7]
    assert "not a valid phone number" in errors[2] or "E.164" in errors[2]
    assert "unknown sender" in errors[3] and "131047" in errors[4] and "opted out" in errors[5]
    assert "template" in errors[6]
    await h.run(5)
    sent = sorted(m.to for m in h.provider.received)
    assert sent == ["5511900000001", "5511900000008"]
    again = await h.client.post("/v1/messages/batch", json={"messages": [msg("+5511900000001",
                                                                             idempotency_key="order-1")]})
    assert again.json()["messages"][0]["id"] == ids[0]  # a retried request is answered with the original


async def test_a_batch_with_nothing_acceptable_or_malformed_is_a_422(harness: Harness) -> None:
    h = harness
    await register(h)
    r = await h.client.post("/v1/messages/batch", json={"messages": [msg("+1234"), msg("+5678")]})
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("no message was accepted: row 1")
    assert [d["row"] for d in r.json()["error"]["details"]] == [1, 2]  # every refused row, with its reason
    shape_error = [msg("+5511900000001"), {**msg("+5511900000002"), "x": 1}]
    r = await h.client.post("/v1/messages/batch", json={"messages": shape_error})
    assert r.status_code == 422 and r.json()["error"]["field"] == "messages.1.x"  # a shape error: nothing queued
    r = await h.client.post("/v1/messages/batch", json={"messages": []})
    assert r.status_code == 422
    r = await h.client.post("/v1/messages/batch", json={"messages": [msg(f"+55119{i:08d}") for i in range(1001)]})
    assert r.status_code == 422 and "1000" in r.json()["error"]["message"]
    assert (await h.client.get("/v1/messages")).json() == []


async def test_a_waiting_message_can_be_canceled_and_then_never_goes(harness: Harness) -> None:
    h = harness
    await register(h)
    r = await h.client.post("/v1/messages", json=msg("+5511900000001", not_before=T0 + 3600))
    waiting = r.json()["id"]
    r = await h.client.post(f"/v1/messages/{waiting}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "canceled" and r.json()["reason"] == "canceled through the API"
    r = await h.client.post(f"/v1/messages/{waiting}/cancel")
    assert r.status_code == 409 and "is canceled" in r.json()["error"]["message"]
    gone = await h.client.post("/v1/messages", json=msg("+5511900000002"))
    await h.run(3700)
    assert [m.to for m in h.provider.received] == ["5511900000002"]
    r = await h.client.post(f"/v1/messages/{gone.json()['id']}/cancel")
    assert r.status_code == 409 and "only a queued or held message" in r.json()["error"]["message"]
    assert (await h.client.post("/v1/messages/msg_nope/cancel")).status_code == 404


async def test_a_cancel_while_the_dispatcher_holds_the_message_is_not_undone(harness: Harness) -> None:
    """The dispatcher claimed these and decided to park or refuse them; the API canceled them in
    between. Its write must leave them canceled (it used to put a parked one back in the queue)."""
    h = harness
    await register(h)
    r = await h.client.patch("/v1/tenant", json={"require_opt_in": True})
    assert r.status_code == 200, r.text
    assert (await h.client.post("/v1/recipients/+5511900000001/opt-in", json={})).status_code == 204
    first = (await h.client.post("/v1/messages", json=msg("+5511900000001"))).json()["id"]
    await h.run(1)
    # the pair rate parks a second message to the same number; no opt-in refuses the third
    parked = (await h.client.post("/v1/messages", json=msg("+5511900000001"))).json()["id"]
    refused = (await h.client.post("/v1/messages", json=msg("+5511900000009"))).json()["id"]
    store = h.gateway.store
    claim = store.claim_due

    async def claim_then_cancel(*args: Any, **kwargs: Any) -> Any:
        claimed = await claim(*args, **kwargs)
        for m in claimed:
            await store.cancel_message(m.id, h.clock.now(), "canceled through the API")
        return claimed

    store.claim_due = claim_then_cancel  # type: ignore[method-assign]
    try:
        await h.gateway.dispatcher.step(refresh=True)
    finally:
        store.claim_due = claim  # type: ignore[method-assign]
    assert (await store.get_message(parked)).state is MessageState.CANCELED
    assert (await store.get_message(refused)).state is MessageState.CANCELED
    await h.run(60)
    assert [m.to for m in h.provider.received] == ["5511900000001"]
    assert (await store.get_message(first)).state is not MessageState.CANCELED


async def test_the_sandbox_takes_read_receipts_through_the_drop_in(harness: Harness) -> None:
    h = harness
    await register(h)
    receipt = {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.in.1"}
    r = await h.client.post(f"/graph/v24.0/{SENDER}/messages", json=receipt)
    assert (r.status_code, r.json()) == (200, {"success": True})
    assert [(n, m) for n, m, _ in h.provider.read_receipts] == [(SENDER, "wamid.in.1")]
    r = await h.client.post(f"/graph/v24.0/{SENDER}/messages", json={**receipt, "message_id": ""})
    assert r.status_code == 400 and r.json()["error"]["code"] == 100
