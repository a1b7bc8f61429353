"""The platform's webhooks go on to the tenant's app: its share only, in Meta's shape, signed as
Meta signs, durably (retried after a failure) and once per delivery; statuses of messages tiergate
sent, and replies to them, carry the id the API gave; messages tiergate ended itself are told as
failed statuses. A real HTTP receiver on 127.0.0.1 plays the app."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from tests.e2e.conftest import T0, Harness
from tests.fakes import webhook_bodies as wb

SENDER = wb.PHONE_NUMBER_ID
OTHER = "999000111222333"  # a number no tenant has


@dataclass
class App:
    """The tenant's app: records what it is sent, answers 500 while ``failing`` > 0."""

    url: str = ""
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    failing: int = 0

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(raw) for _, raw in self.got]


@pytest.fixture
async def app() -> AsyncIterator[App]:
    seen = App()

    async def take(request: web.Request) -> web.Response:
        if seen.failing > 0:
            seen.failing -= 1
            return web.Response(status=500, text="down")
        seen.got.append((dict(request.headers), await request.read()))
        return web.Response(text="ok")

    server = web.Application()
    server.router.add_post("/hook", take)
    runner = web.AppRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    seen.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield seen
    finally:
        await runner.cleanup()


async def setup(h: Harness, app: App, secret: str | None = None) -> str:
    r = await h.client.post("/v1/senders", json={"phone_number_id": SENDER, "display_phone_number": "+15550783881",
                                                 "tier": "TIER_1K"})
    assert r.status_code == 201, r.text
    r = await h.client.put("/v1/webhook", json={"url": app.url, **({"secret": secret} if secret else {})})
    assert r.status_code == 200, r.text
    made = r.json()["secret"]
    assert (made is None) == (secret is not None)
    return secret or made


def signed_by(secret: str, headers: dict[str, str], raw: bytes) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers.get("X-Hub-Signature-256", ""), expected)


async def test_inbound_messages_and_statuses_reach_the_app_signed_and_only_its_own(harness: Harness,
                                                                                  app: App) -> None:
    h = harness
    secret = await setup(h, app)
    r = await h.client.post("/v1/messages", json={"sender": SENDER, "to": "+5511911112222", "template": {"name": "x"}})
    message_id = r.json()["id"]
    await h.run(5)  # sent; the sandbox's statuses go through the webhook path, and on to the app
    wamid = (await h.client.get(f"/v1/messages/{message_id}")).json()["wamid"]
    inbound = wb.body(wb.inbound_text_change("5511933334444", "hello", timestamp=T0),
                      wb.inbound_text_change("5511955556666", "not ours", phone_number_id=OTHER, timestamp=T0))
    assert (await h.webhook(wb.serialize(inbound))).status_code == 200

    while await h.gateway.forwarder.deliver_due():
        pass
    assert app.got, "nothing was forwarded"
    for headers, raw in app.got:
        assert signed_by(secret, headers, raw), "the app could not verify the signature"
    bodies = app.bodies()
    changes = [c for b in bodies for e in b["entry"] for c in e["changes"]]
    assert all(b["object"] == "whatsapp_business_account" for b in bodies)
    assert {c["value"]["metadata"]["phone_number_id"] for c in changes} == {SENDER}  # not the other number's
    texts = [m["text"]["body"] for c in changes for m in c["value"].get("messages", [])]
    assert texts == ["hello"]
    statuses = [s for c in changes for s in c["value"].get("statuses", [])]
    # under the id the app was given; the platform's own alongside
    assert statuses and all(s["id"] == message_id == s["tiergate_message_id"] and s["wamid"] == wamid
                            for s in statuses)

    seen = (await h.client.get("/v1/webhook")).json()
    assert seen["url"] == app.url and seen["secret"] is None and seen["pending"] == 0
    assert seen["delivered"] == len(app.got) and seen["failed"] == 0


async def flush(h: Harness) -> None:
    while await h.gateway.forwarder.tell_ended() or await h.gateway.forwarder.deliver_due():
        pass


async def test_a_reply_names_the_message_it_answers_by_the_id_the_app_was_given(harness: Harness,
                                                                                  app: App) -> None:
    h = harness
    await setup(h, app)
    r = await h.client.post(f"/graph/v24.0/{SENDER}/messages", json={
        "messaging_product": "whatsapp", "to": "+5511911112222", "type": "template",
        "template": {"name": "offer", "language": {"code": "en"}}})
    message_id = r.json()["messages"][0]["id"]
    await h.run(5)
    wamid = (await h.client.get(f"/v1/messages/{message_id}")).json()["wamid"]
    button = {"from": "5511911112222", "id": "wamid.inbound.1", "timestamp": str(int(T0)), "type": "button",
              "context": {"from": "15550783881", "id": wamid}, "button": {"text": "Yes", "payload": "yes"}}
    await h.webhook(wb.serialize(wb.body(wb.inbound_messages_change([button], [("5511911112222", "Ana")]))))
    await flush(h)
    replies = [m for b in app.bodies() for e in b["entry"] for c in e["changes"]
               for m in c["value"].get("messages", [])]
    assert [(m["id"], m["context"]["id"], m["context"]["wamid"]) for m in replies] == [
        ("wamid.inbound.1", message_id, wamid)]


async def test_messages_tiergate_ended_itself_are_told_to_the_app_as_failed_statuses(harness: Harness,
                                                                                    app: App) -> None:
    h = harness
    secret = await setup(h, app)
    send = {"messaging_product": "whatsapp", "type": "template",
            "template": {"name": "offer", "language": {"code": "en"}}}
    r = await h.client.post(f"/graph/v24.0/{SENDER}/messages", json={**send, "to": "+5511911112222"},
                            headers={"X-Tiergate-Category": "MARKETING"})
    opted_out = r.json()["messages"][0]["id"]
    # the recipient opts out before it goes: tiergate refuses it at dispatch, so Meta never hears of it
    assert (await h.client.post("/v1/recipients/+5511911112222/opt-out", json={})).status_code == 204
    r = await h.client.post("/v1/messages", json={"sender": SENDER, "to": "+5511933334444", "template": {"name": "x"},
                                                  "not_before": T0 + 3600, "expires_at": T0 + 60})
    expired = r.json()["id"]  # due after its expiry: it can never go
    await h.run(3700)
    await flush(h)
    statuses = {s["id"]: (headers, s) for headers, raw in app.got
                for e in json.loads(raw)["entry"] for c in e["changes"] for s in c["value"].get("statuses", [])
                if s["status"] == "failed"}
    assert set(statuses) == {opted_out, expired}
    headers, refused = statuses[opted_out]
    assert refused["errors"][0]["code"] == 131050 and refused["tiergate_state"] == "rejected"
    assert refused["recipient_id"] == "5511911112222"
    _, late = statuses[expired]
    assert late["errors"][0]["code"] == 990001 and late["tiergate_state"] == "expired"
    assert late["errors"][0]["error_data"]["details"] == "expired before it could be sent"
    for headers, raw in app.got:
        assert signed_by(secret, headers, raw)
    assert len(app.got) == 1  # one body: both are about one number and ended in one round
    await flush(h)
    await h.run(60)
    await flush(h)
    assert len(app.got) == 1  # told once


async def test_a_failing_app_gets_it_later_and_a_redelivery_is_forwarded_once(harness: Harness, app: App) -> None:
    h = harness
    secret = await setup(h, app, secret="my-own-app-secret-123")
    raw = wb.serialize(wb.body(wb.inbound_text_change("5511933334444", "hi", timestamp=T0)))
    assert (await h.webhook(raw)).status_code == 200
    assert (await h.webhook(raw)).status_code == 200  # Meta redelivers the same body
    app.failing = 1
    assert await h.gateway.forwarder.deliver_due() == 0
    seen = (await h.client.get("/v1/webhook")).json()
    assert seen["pending"] == 1 and seen["last_error"] == "HTTP 500 from the app", seen
    assert await h.gateway.forwarder.deliver_due() == 0  # not due yet: backoff
    h.clock.advance(15)
    assert await h.gateway.forwarder.deliver_due() == 1
    assert len(app.got) == 1
    assert signed_by(secret, *app.got[0])
    assert json.loads(app.got[0][1])["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] == "hi"
    assert (await h.client.get("/v1/webhook")).json()["delivered"] == 1


async def test_turning_forwarding_off_drops_what_waits_and_stops_new_ones(harness: Harness, app: App) -> None:
    h = harness
    await setup(h, app)
    await h.webhook(wb.serialize(wb.body(wb.inbound_text_change("5511933334444", "one", timestamp=T0))))
    assert (await h.client.delete("/v1/webhook")).status_code == 204
    await h.webhook(wb.serialize(wb.body(wb.inbound_text_change("5511933334444", "two", timestamp=T0 + 1))))
    assert await h.gateway.forwarder.deliver_due() == 0 and app.got == []
    seen = (await h.client.get("/v1/webhook")).json()
    assert seen["url"] is None and seen["canceled"] == 1 and seen["pending"] == 0


@pytest.mark.parametrize(("body", "field"), [
    ({"url": "ftp://example.com/hook"}, "url"),
    ({"url": "http:///nohost"}, "url"),
    ({"url": "http://example.com:99999/hook"}, "url"),
    ({"url": "https://example.com/hook", "secret": "short"}, "secret"),
    ({"url": "https://example.com/hook", "extra": 1}, "extra"),
])
async def test_a_bad_webhook_setting_is_a_422(harness: Harness, body: dict[str, Any], field: str) -> None:
    r = await harness.client.put("/v1/webhook", json=body)
    assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text
    assert (await harness.client.get("/v1/webhook")).json()["url"] is None


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "10.1.2.3", "169.254.169.254", "[::1]", "192.168.0.10"])
async def test_a_shared_deployment_refuses_private_webhook_urls(tmp_path: Any, host: str) -> None:
    """TIERGATE_FORWARD_PRIVATE_URLS=0: a tenant's URL must not reach the operator's own network."""
    from tests.e2e.conftest import make_harness

    h = await make_harness(tmp_path, forward_private_urls=False)
    try:
        r = await h.client.put("/v1/webhook", json={"url": f"http://{host}:8080/hook"})
        assert r.status_code == 422 and "private address" in r.json()["error"]["message"], r.text
        r = await h.client.put("/v1/webhook", json={"url": "https://app.example.com/hook"})
        assert r.status_code == 200, r.text
    finally:
        await h.client.aclose()
        await h.gateway.close()


async def test_the_sink_refuses_private_addresses_at_send_time_too(app: App) -> None:
    """A name accepted earlier that now resolves to a private address connects nowhere."""
    from tiergate.adapters.outbound import AiohttpSink

    public_only = AiohttpSink(timeout=5, allow_private=False)
    anywhere = AiohttpSink(timeout=5)
    try:
        assert "private address" in (await public_only.post(app.url, b"{}", {}) or "")
        named = app.url.replace("127.0.0.1", "localhost")
        assert "private addresses" in (await public_only.post(named, b"{}", {}) or "")
        assert app.got == []
        assert await anywhere.post(named, b"{}", {}) is None and len(app.got) == 1
    finally:
        await public_only.close()
        await anywhere.close()


async def test_each_tenant_gets_only_its_own_numbers_changes(harness: Harness, app: App) -> None:
    """Two tenants, one delivery about both their numbers: each app gets its tenant's share only."""
    h = harness
    secret_a = await setup(h, app)
    other = (await h.client.post("/v1/tenants", json={"name": "other"})).json()
    key_b = (await h.client.post("/v1/keys", json={"tenant_id": other["id"]})).json()["key"]
    as_b = {"Authorization": f"Bearer {key_b}"}
    r = await h.client.post("/v1/senders", headers=as_b, json={"phone_number_id": OTHER,
                                                               "display_phone_number": "+15550001111"})
    assert r.status_code == 201, r.text
    r = await h.client.put("/v1/webhook", headers=as_b, json={"url": app.url + "?tenant=b",
                                                              "secret": "tenant-b-secret-0123"})
    assert r.status_code == 200, r.text
    both = wb.body(wb.inbound_text_change("5511933334444", "to a", timestamp=T0),
                   wb.inbound_text_change("5511955556666", "to b", phone_number_id=OTHER, timestamp=T0))
    assert (await h.webhook(wb.serialize(both))).status_code == 200
    while await h.gateway.forwarder.deliver_due():
        pass
    assert len(app.got) == 2
    by_text = {}
    for headers, raw in app.got:
        [change] = [c for e in json.loads(raw)["entry"] for c in e["changes"]]
        by_text[change["value"]["messages"][0]["text"]["body"]] = (headers, raw, change)
    headers_a, raw_a, change_a = by_text["to a"]
    headers_b, raw_b, change_b = by_text["to b"]
    assert change_a["value"]["metadata"]["phone_number_id"] == SENDER and signed_by(secret_a, headers_a, raw_a)
    assert change_b["value"]["metadata"]["phone_number_id"] == OTHER
    assert signed_by("tenant-b-secret-0123", headers_b, raw_b) and not signed_by(secret_a, headers_b, raw_b)
    assert (await h.client.get("/v1/webhook", headers=as_b)).json()["delivered"] == 1
    assert (await h.client.get("/v1/webhook")).json()["delivered"] == 1


async def test_a_sample_status_checks_the_apps_handler_now(harness: Harness, app: App) -> None:
    h = harness
    r = await h.client.post("/v1/webhook/test")
    assert r.status_code == 409 and "PUT /v1/webhook first" in r.json()["error"]["message"]
    secret = await setup(h, app)
    r = await h.client.post("/v1/webhook/test")
    assert r.status_code == 200 and r.json() == {"url": app.url, "delivered": True, "error": None}
    [(headers, raw)] = app.got
    assert signed_by(secret, headers, raw)
    [status] = json.loads(raw)["entry"][0]["changes"][0]["value"]["statuses"]
    assert status["status"] == "sent" and status["tiergate_test"] is True
    app.failing = 1
    r = await h.client.post("/v1/webhook/test")
    assert r.json() == {"url": app.url, "delivered": False, "error": "HTTP 500 from the app"}
    assert (await h.client.get("/v1/webhook")).json()["pending"] == 0  # nothing stored, nothing retried
