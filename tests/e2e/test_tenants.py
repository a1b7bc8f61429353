"""Tenants and secrets: nobody sees what is not theirs, keys are hashed, secrets never leak.

* Tenant A cannot read, change or infer tenant B's senders, messages, campaigns, recipients or
  dashboard data: a foreign id answers exactly like an id that does not exist (404, same words).
* API keys: stored as SHA-256 hashes only (the plaintext is nowhere in the database file), shown
  once at creation, managed by an admin key (tenants, keys, revocation) and by the CLI
  (``tiergate keys create --tenant NAME`` / ``keys list`` / ``keys revoke ID``).
* Webhook signatures are checked before the body is parsed or stored.
* The access token and the app secret appear in no log line, no error, no API answer and no row
  of the database, even when the platform (or a proxy) echoes the token back in its errors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from tests.e2e.conftest import APP_SECRET, Harness, make_harness
from tests.fakes import webhook_bodies as wb

from tiergate.adapters.provider.cloud import CloudProvider
from tiergate.service.gateway import Gateway
from tiergate.settings import Settings

REPO = Path(__file__).resolve().parents[2]
A_SENDER = "106540352255001"
B_SENDER = "106540352255002"
TOKEN = "EAAG-secret-access-token-7f3a9c2e1b"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def tenant_with_key(h: Harness, name: str) -> tuple[str, dict[str, str]]:
    r = await h.client.post("/v1/tenants", json={"name": name})
    assert r.status_code == 201, r.text
    tenant_id = r.json()["id"]
    r = await h.client.post("/v1/keys", json={"tenant_id": tenant_id, "label": name})
    assert r.status_code == 201, r.text
    assert r.json()["key"].startswith("tg_")
    return tenant_id, bearer(r.json()["key"])


@pytest.fixture
async def two_tenants(tmp_path: Path) -> Any:
    h = await make_harness(tmp_path)
    try:
        _, a = await tenant_with_key(h, "tenant-a")
        _, b = await tenant_with_key(h, "tenant-b")
        for sender, who in ((A_SENDER, a), (B_SENDER, b)):
            r = await h.client.post("/v1/senders", headers=who, json={
                "phone_number_id": sender, "display_phone_number": "+15550783881", "tier": "TIER_1K"})
            assert r.status_code == 201, r.text
        yield h, a, b
    finally:
        await h.client.aclose()
        await h.gateway.close()


async def test_a_foreign_id_is_indistinguishable_from_a_missing_one(two_tenants: Any) -> None:
    h, a, b = two_tenants
    c = h.client
    r = await c.post("/v1/campaigns", headers=b, json={"sender": B_SENDER, "template": {"name": "b_secret_promo"},
                                                       "recipients": ["+5511911110001", "+5511911110002"]})
    assert r.status_code == 201, r.text
    b_campaign = r.json()["id"]
    r = await c.post("/v1/messages", headers=b, json={"sender": B_SENDER, "to": "+5511911110003",
                                                      "template": {"name": "b_secret"}})
    b_message = r.json()["id"]
    await h.run()

    def same_as_missing(foreign: httpx.Response, missing: httpx.Response, foreign_id: str, missing_id: str) -> None:
        assert foreign.status_code == missing.status_code == 404, (foreign.text, missing.text)
        assert foreign.text.replace(foreign_id, "ID") == missing.text.replace(missing_id, "ID")

    ghost_sender, ghost_campaign, ghost_message = "106540352299999", "cmp_" + "0" * 26, "msg_" + "0" * 26
    reads = [
        ("GET", "/v1/senders/{}", B_SENDER, ghost_sender, None),
        ("PATCH", "/v1/senders/{}", B_SENDER, ghost_sender, {"tier": "TIER_10K"}),
        ("GET", "/v1/senders/{}/events", B_SENDER, ghost_sender, None),
        ("GET", "/v1/senders/{}/timeline", B_SENDER, ghost_sender, None),
        ("GET", "/v1/senders/{}/ladder", B_SENDER, ghost_sender, None),
        ("GET", "/v1/messages/{}", b_message, ghost_message, None),
        ("GET", "/v1/campaigns/{}", b_campaign, ghost_campaign, None),
        ("GET", "/v1/campaigns/{}/days", b_campaign, ghost_campaign, None),
        ("POST", "/v1/campaigns/{}/pause", b_campaign, ghost_campaign, None),
        ("POST", "/v1/campaigns/{}/resume", b_campaign, ghost_campaign, None),
        ("POST", "/v1/campaigns/{}/cancel", b_campaign, ghost_campaign, None),
    ]
    for method, path, foreign, missing, body in reads:
        f = await c.request(method, path.format(foreign), headers=a, json=body)
        m = await c.request(method, path.format(missing), headers=a, json=body)
        same_as_missing(f, m, foreign, missing)

    # sending through B's number: refused exactly like an unknown number, on both APIs
    sends: list[tuple[str, dict[str, Any]]] = [
        ("/v1/messages", {"to": "+5511911110009", "template": {"name": "x"}}),
        ("/v1/campaigns", {"template": {"name": "x"}, "recipients": ["+5511911110009"]})]
    for path, fields in sends:
        f = await c.post(path, headers=a, json={"sender": B_SENDER, **fields})
        m = await c.post(path, headers=a, json={"sender": ghost_sender, **fields})
        same_as_missing(f, m, B_SENDER, ghost_sender)
    drop_in = {"messaging_product": "whatsapp", "to": "5511911110009", "type": "template",
               "template": {"name": "x", "language": {"code": "en_US"}}}
    f = await c.post(f"/graph/v24.0/{B_SENDER}/messages", headers=a, json=drop_in)
    m = await c.post(f"/graph/v24.0/{ghost_sender}/messages", headers=a, json=drop_in)
    assert f.status_code == m.status_code == 400 and f.json()["error"]["code"] == 100
    trace = re.compile(r'"fbtrace_id":"[^"]*"')  # a fresh trace id per answer, as Meta's
    assert trace.sub("", f.text.replace(B_SENDER, "ID")) == trace.sub("", m.text.replace(ghost_sender, "ID"))

    # lists show only A's own records, whatever filter A guesses
    assert [s["id"] for s in (await c.get("/v1/senders", headers=a)).json()] == [A_SENDER]
    assert (await c.get("/v1/messages", headers=a)).json() == []
    assert (await c.get("/v1/messages", headers=a, params={"campaign_id": b_campaign})).json() == []
    assert (await c.get("/v1/campaigns", headers=a)).json() == []
    assert (await c.get("/v1/tenant", headers=a)).json()["name"] == "tenant-a"

    # nothing of B's changed, and B still sees everything of its own
    assert (await c.get(f"/v1/campaigns/{b_campaign}", headers=b)).json()["state"] == "running"
    assert (await c.get(f"/v1/senders/{B_SENDER}", headers=b)).json()["tier"] == "TIER_1K"
    assert len((await c.get("/v1/messages", headers=b)).json()) == 3
    assert "b_secret" not in json.dumps([(await c.get(u, headers=a)).json()
                                         for u in ("/v1/senders", "/v1/messages", "/v1/campaigns")])


async def test_recipients_are_per_tenant(two_tenants: Any) -> None:
    """A's opt-out of a number does not stop B's marketing to it; nor does A learn B's opt-ins."""
    h, a, b = two_tenants
    r = await h.client.post("/v1/recipients/+5511911110005/opt-out", headers=a)
    assert r.status_code == 204
    r = await h.client.post("/v1/messages", headers=a, json={"sender": A_SENDER, "to": "+5511911110005",
                                                             "template": {"name": "promo"}})
    assert r.status_code == 422 and "opted out" in r.json()["error"]["message"]
    r = await h.client.post("/v1/messages", headers=b, json={"sender": B_SENDER, "to": "+5511911110005",
                                                             "template": {"name": "promo"}})
    assert r.status_code == 202, r.text
    await h.run()
    assert (await h.client.get(f"/v1/messages/{r.json()['id']}", headers=b)).json()["state"] in (
        "sent", "delivered", "read")


async def test_admin_key_manages_tenants_and_keys(two_tenants: Any) -> None:
    h, a, _ = two_tenants
    c = h.client
    for method, path, body in (("GET", "/v1/tenants", None), ("POST", "/v1/tenants", {"name": "c"}),
                               ("GET", "/v1/keys", None), ("DELETE", "/v1/keys/key_x", None),
                               ("POST", "/v1/keys", {"tenant_id": "ten_x"})):
        r = await c.request(method, path, headers=a, json=body)
        assert r.status_code == 403 and "admin" in r.json()["error"]["message"], (path, r.text)
    tenants = {t["name"] for t in (await c.get("/v1/tenants")).json()}
    assert {"default", "tenant-a", "tenant-b"} <= tenants
    assert (await c.post("/v1/tenants", json={"name": "tenant-a"})).status_code == 409
    keys = (await c.get("/v1/keys")).json()
    assert keys and all(k["key"] is None for k in keys)  # plaintext is shown at creation only
    a_key = a["Authorization"].split()[1]
    a_id = next(k["id"] for k in keys if k["prefix"] == a_key[:8])
    assert (await c.delete(f"/v1/keys/{a_id}")).status_code == 204
    r = await c.get("/v1/senders", headers=a)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    own = next(k["id"] for k in keys if k["prefix"] == h.key[:8])
    assert (await c.delete(f"/v1/keys/{own}")).status_code == 409  # not the key you stand on
    for bad in ("", "Bearer", "Bearer ", "Basic abc", "Bearer " + "x" * 500, "Bearer tg_" + "A" * 43):
        assert (await c.get("/v1/senders", headers={"Authorization": bad})).status_code == 401


async def test_keys_are_stored_hashed(two_tenants: Any, tmp_path: Path) -> None:
    h, a, _ = two_tenants
    plaintexts = [h.key, a["Authorization"].split()[1]]
    keys = await h.gateway.store.list_api_keys()
    hashes = {k.key_hash for k in keys}
    for plaintext in plaintexts:
        assert hashlib.sha256(plaintext.encode()).hexdigest() in hashes
    await h.gateway.close()  # flush the WAL into the file, then look at every byte of it
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("e2e.db*"))
    for plaintext in plaintexts:
        assert plaintext.encode() not in raw and plaintext[8:].encode() not in raw
    h.gateway = await type(h.gateway).open(h.gateway.settings, clock=h.clock, provider=h.gateway.provider,
                                           wall_clock=h.clock)  # the fixture closes it again


async def test_webhook_signature_is_checked_before_anything_is_parsed_or_stored(harness: Harness) -> None:
    h = harness
    store = h.gateway.store
    unparseable = b'{"object": "whatsapp_business_account", "entry": [[[[\xff'
    for headers, status in (({}, 401), ({"X-Hub-Signature-256": "sha256=" + "0" * 64}, 403),
                            ({"X-Hub-Signature-256": "garbage"}, 403)):
        r = await h.client.post("/webhooks/whatsapp", content=unparseable, headers=headers)
        assert r.status_code == status, r.text
        assert "body" not in r.json()["error"]["message"]  # refused for the signature, never for the JSON
    assert await store.unapplied_webhook_events() == []
    r = await h.webhook(unparseable)  # correctly signed: only now is the body read (and refused)
    assert r.status_code == 400
    valid = wb.signed(wb.inbound_text_change("5511955554444", "hi")).body
    r = await h.client.post("/webhooks/whatsapp", content=valid, headers={"X-Hub-Signature-256": "sha256=" + "1" * 64})
    assert r.status_code == 403
    assert APP_SECRET not in r.text


# -- the CLI ---------------------------------------------------------------------------------------
def tiergate(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "COLUMNS": "200", "PYTHONPATH": str(REPO),
           "TIERGATE_DATABASE_URL": str(db)}
    return subprocess.run([sys.executable, "-m", "tiergate.cli", *args], capture_output=True, text=True, timeout=60,
                          env=env, cwd=REPO)


async def test_keys_cli_create_list_revoke(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    created = tiergate(db, "keys", "create", "--tenant", "acme", "--label", "ci")
    assert created.returncode == 0, created.stderr
    keys = re.findall(r"tg_[A-Za-z0-9_\-]{40,}", created.stdout)
    assert len(keys) == 1, created.stdout  # printed once
    key = keys[0]
    second = tiergate(db, "keys", "create", "--tenant", "acme")
    other = re.findall(r"tg_[A-Za-z0-9_\-]{40,}", second.stdout)[0]
    assert other != key

    listed = tiergate(db, "keys", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert {r["tenant"] for r in rows} == {"acme"} and len(rows) == 2
    assert key not in listed.stdout and key[8:] not in listed.stdout  # prefixes only
    table = tiergate(db, "keys", "list")
    assert table.returncode == 0 and key[:8] in table.stdout and key[8:] not in table.stdout

    gateway = await Gateway.open(Settings(database_url=str(db), worker_id="check"))
    try:
        who = await gateway.auth.authenticate(key)
        assert who is not None and who.tenant.name == "acme" and not who.is_admin
        key_id = next(r["id"] for r in rows if key.startswith(r["prefix"]))
        revoked = tiergate(db, "keys", "revoke", key_id)
        assert revoked.returncode == 0 and key_id in revoked.stdout, revoked.stderr
        assert await gateway.auth.authenticate(key) is None
        assert await gateway.auth.authenticate(other) is not None
    finally:
        await gateway.close()
    missing = tiergate(db, "keys", "revoke", "key_nope")
    assert missing.returncode != 0 and "no key with id" in missing.stderr and "Traceback" not in missing.stderr
    again = json.loads(tiergate(db, "keys", "list", "--json").stdout)
    assert [r["revoked_at"] is not None for r in sorted(again, key=lambda r: r["id"] != key_id)] == [True, False]


# -- secrets in logs, errors, answers --------------------------------------------------------------
async def echoing_platform() -> web.AppRunner:
    """A misbehaving platform (or proxy) that repeats the caller's Authorization header in its errors."""

    async def echo(request: web.Request) -> web.Response:
        said = request.headers.get("Authorization", "")
        body = {"error": {"message": f"Invalid OAuth access token: {said}", "type": "OAuthException",
                          "code": 131000, "error_data": {"details": f"token {said} rejected"}}}
        return web.json_response(body, status=500)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


async def test_token_and_app_secret_never_leak(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    runner = await echoing_platform()
    port = runner.addresses[0][1]
    provider = CloudProvider(f"http://127.0.0.1:{port}/v24.0", TOKEN, timeout=5)
    h = await make_harness(tmp_path, provider=provider, access_token=TOKEN)
    answers: list[str] = []
    try:
        r = await h.client.post("/v1/senders", json={"phone_number_id": A_SENDER,
                                                     "display_phone_number": "+15550783881", "tier": "TIER_1K"})
        answers.append(r.text)
        r = await h.client.post("/v1/messages", json={"sender": A_SENDER, "to": "+5511911110001",
                                                      "template": {"name": "x"}})
        answers.append(r.text)
        await h.run(900)  # the send fails (131000, token echoed), is retried, gives up
        report = await h.gateway.sync.sync_all()  # the Graph read fails the same way
        assert report.errors and "[redacted]" in " ".join(report.errors)
        for url in ("/v1/senders", f"/v1/senders/{A_SENDER}", f"/v1/senders/{A_SENDER}/events", "/v1/messages",
                    f"/v1/messages/{r.json()['id']}", "/v1/tenant", "/v1/keys", "/healthz", "/metrics",
                    "/openapi.json", "/v1/messages/nope", "/webhooks/whatsapp?hub.mode=subscribe"):
            answers.append((await h.client.get(url)).text)
        bad = wb.signed(wb.inbound_text_change("5511955554444", "hi")).body
        answers.append((await h.client.post("/webhooks/whatsapp", content=bad,
                                            headers={"X-Hub-Signature-256": "sha256=" + "2" * 64})).text)
        answers += [repr(h.gateway.settings), repr(provider), str(Settings(access_token=TOKEN, app_secret=APP_SECRET))]
        message = (await h.client.get(f"/v1/messages/{r.json()['id']}")).json()
        assert message["state"] == "failed" and "[redacted]" in message["error_detail"]
    finally:
        await h.client.aclose()
        await h.gateway.close()
        await runner.cleanup()
    logged = "\n".join(f"{rec.getMessage()} {rec.exc_text or ''}" for rec in caplog.records)
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("e2e.db*"))
    for secret in (TOKEN, APP_SECRET):
        for where, text in (("API answers", "\n".join(answers)), ("logs", logged)):
            assert secret not in text, f"{where} leak the secret"
        assert secret.encode() not in stored, "the database holds the secret"


def test_a_database_password_is_never_printed(tmp_path: Path) -> None:
    url = "postgresql://tiergate:s3cret-db-pw@127.0.0.1:1/tiergate"  # nothing listens on port 1
    done = tiergate(tmp_path / "unused.db", "keys", "list", "--database-url", url)
    assert done.returncode != 0 and "cannot open" in done.stderr and "Traceback" not in done.stderr
    assert "s3cret-db-pw" not in done.stdout + done.stderr and "tiergate:***@" in done.stderr
