"""Hostile input at the HTTP API: clear 4xx, nothing half-written, and the limits exist.

Generated bodies for messages, campaigns, CSV uploads and webhooks (wrong types, huge values,
deep nesting, invalid UTF-8) go through the real ASGI app. Every answer is a 2xx or a 4xx with an
error message; after every refusal the database's row counts (messages, their history, campaigns,
stored webhooks) are exactly what they were: a refused request writes nothing. The limits on body
size, CSV rows, campaign size and requests per key are checked at their edges (429 with
Retry-After).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.e2e.conftest import APP_SECRET, Harness, make_harness

from tiergate.core.signature import sign

SENDER = "106540352266001"
MAX_BODY = 64_000
MAX_WEBHOOK = 256_000
MAX_RECIPIENTS = 50
TABLES = ("messages", "campaigns", "webhook_events", "senders", "tenants", "api_keys")
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))

def dumps(value: Any) -> bytes:
    """JSON as a client would send it (stdlib: integers of any size)."""
    return json.dumps(value).encode()


json_leaf = (st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
             | st.floats(allow_nan=False) | st.text(max_size=40))
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=5)
                          | st.dictionaries(st.text(max_size=10), inner, max_size=5), max_leaves=30)
phones = st.sampled_from(["+5511911112222", "5511911113333", "+44 7700 900123", "12", "+999123", "", " ",
                          "+1 (555) 078-3881", "٠١٢٣"]) | st.text(max_size=20) | st.integers()


@dataclass
class Api:
    """A harness on its own event loop, so hypothesis (synchronous) can drive it example by example."""

    loop: asyncio.AbstractEventLoop
    h: Harness
    db: Path

    def call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self.loop.run_until_complete(self.h.client.request(method, url, **kwargs))

    def counts(self) -> dict[str, int]:
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as conn:
            return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}


def _api(tmp: Path, **settings_: Any) -> Iterator[Api]:
    loop = asyncio.new_event_loop()
    h = loop.run_until_complete(make_harness(tmp, **settings_))
    api = Api(loop, h, tmp / "e2e.db")
    r = api.call("POST", "/v1/senders", json={"phone_number_id": SENDER, "display_phone_number": "+15550783881",
                                               "tier": "TIER_1K"})
    assert r.status_code == 201, r.text
    try:
        yield api
    finally:
        loop.run_until_complete(h.client.aclose())
        loop.run_until_complete(h.gateway.close())
        loop.close()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    yield from _api(tmp_path_factory.mktemp("api-fuzz"), max_body_bytes=MAX_BODY, max_webhook_bytes=MAX_WEBHOOK,
                    max_campaign_recipients=MAX_RECIPIENTS, rate_limit_per_minute=10**9)


def refused_cleanly(r: httpx.Response) -> None:
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:500])
    error = r.json()["error"]
    assert isinstance(error["message"], str) and error["message"]


def check(api: Api, r: httpx.Response, before: dict[str, int], ok: int) -> None:
    """2xx as documented, or a 4xx that wrote nothing at all."""
    assert r.status_code < 500, (r.status_code, r.text[:500])
    if r.status_code != ok:
        refused_cleanly(r)
        assert api.counts() == before, "a refused request wrote something"


template = json_value | st.fixed_dictionaries({"name": json_value}, optional={
    "language": json_value, "components": json_value})
message_body = json_value | st.fixed_dictionaries(
    {"sender": st.just(SENDER) | json_value, "to": phones | json_value},
    optional={"template": template, "text": json_value | st.text(max_size=5000), "category": json_value,
              "idempotency_key": json_value, "expires_at": json_value, "metadata": json_value})


@FUZZ
@given(body=message_body)
def test_message_bodies(api: Api, body: Any) -> None:
    before = api.counts()
    r = api.call("POST", "/v1/messages", content=dumps(body), headers={"Content-Type": "application/json"})
    check(api, r, before, 202)


recipient = phones | st.fixed_dictionaries({"to": phones}, optional={"components": json_value}) | json_value


@FUZZ
@given(recipients=st.lists(recipient, max_size=MAX_RECIPIENTS + 5) | json_value, tpl=template,
       extra=st.dictionaries(st.sampled_from(["name", "category", "start_at", "deadline", "quiet_hours", "pacing",
                                              "spread_days"]), json_value, max_size=3))
def test_campaign_bodies(api: Api, recipients: Any, tpl: Any, extra: dict[str, Any]) -> None:
    before = api.counts()
    body = {"sender": SENDER, "template": tpl, "recipients": recipients, **extra}
    r = api.call("POST", "/v1/campaigns", content=dumps(body), headers={"Content-Type": "application/json"})
    check(api, r, before, 201)
    if r.status_code == 201:
        created = r.json()
        assert created["total"] + len(created["row_errors"]) == len(recipients)
        if created["plan"]:  # planned for the recipients kept, not the rows submitted
            assert created["plan"][-1]["cumulative"] == created["total"], created["plan"]
        assert api.counts()["messages"] == before["messages"] + created["total"]


@FUZZ
@given(raw=st.binary(max_size=3_000) | st.text(max_size=3_000).map(str.encode),
       form=st.dictionaries(st.sampled_from(["template", "language", "category", "pacing", "spread_days",
                                             "start_at"]), st.text(max_size=20), max_size=3))
def test_csv_uploads(api: Api, raw: bytes, form: dict[str, str]) -> None:
    before = api.counts()
    data = {"sender": SENDER, "template": "promo", **form}
    r = api.call("POST", "/v1/campaigns/csv", data=data, files={"file": ("list.csv", raw, "text/csv")})
    check(api, r, before, 201)


def _signed_post(api: Api, raw: bytes, signature: str | None = None) -> httpx.Response:
    headers = {"Content-Type": "application/json",
               "X-Hub-Signature-256": sign(APP_SECRET, raw) if signature is None else signature}
    return api.call("POST", "/webhooks/whatsapp", content=raw, headers=headers)


webhook_shaped = st.fixed_dictionaries({"object": json_value, "entry": st.lists(st.fixed_dictionaries(
    {"id": json_value, "changes": st.lists(st.fixed_dictionaries({"field": st.sampled_from(
        ["messages", "account_update", "phone_number_quality_update", "x"]) | json_value,
        "value": json_value}), max_size=3) | json_value}), max_size=3) | json_value})


@FUZZ
@given(raw=st.binary(max_size=2_000) | json_value.map(dumps) | webhook_shaped.map(dumps))
def test_webhook_bodies(api: Api, raw: bytes) -> None:
    before = api.counts()
    r = _signed_post(api, raw)
    assert r.status_code in (200, 400), (r.status_code, r.text[:300])
    if r.status_code == 400:
        assert "webhook body" in r.json()["error"]["message"]
        assert api.counts() == before
    stored = api.counts()
    for signature in (None, "sha256=" + "0" * 64, "sha1=abc", "x" * 300):  # checked before anything is parsed
        unsigned = api.call("POST", "/webhooks/whatsapp", content=raw,
                            headers={} if signature is None else {"X-Hub-Signature-256": signature})
        assert unsigned.status_code in (401, 403), unsigned.text
        assert "signature" in unsigned.json()["error"]["message"].lower()
    assert api.counts() == stored


HOSTILE = [2**70, -(2**64), 1e308 * 10, float("nan"), "\ud800", "x\udfffy", "a\x00b", "\u202e\ufeff", "٣", -0.0,
           True, None, [], {}, {"a": [{"b": "\ud83d"}]}, "x" * 5_000]
MESSAGE = {"sender": SENDER, "to": "+5511911112222", "template": {"name": "promo", "language": "en_US",
           "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}]},
           "idempotency_key": "k", "metadata": {"order": 1}, "expires_at": 2_000_000_000.0}
CAMPAIGN = {"sender": SENDER, "template": {"name": "promo", "components": []}, "name": "spring",
            "recipients": [{"to": "+5511911112222", "components": [{"type": "body", "parameters": []}]}]}


def _slots(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _slots(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _slots(v, (*path, i))


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replaced(value[path[0]], path[1:], new)
    return copy


@pytest.mark.parametrize(("url", "valid", "ok"), [("/v1/messages", MESSAGE, 202), ("/v1/campaigns", CAMPAIGN, 201)])
def test_hostile_values_in_every_slot(api: Api, url: str, valid: dict[str, Any], ok: int) -> None:
    """Lone surrogates, integers beyond 64 bits, infinities, NaN, NULs in each field of a valid body:
    each either fits (stored and sent as is) or is a 4xx, never a 500 from the database or the sender."""
    tried = 0
    for path in _slots(valid):
        for hostile in HOSTILE:
            body = _replaced(valid, path, hostile)
            if url == "/v1/messages" and isinstance(body, dict):
                body["idempotency_key"] = f"slot-{tried}"
            before = api.counts()
            raw = json.dumps(body, allow_nan=True).encode()
            check(api, api.call("POST", url, content=raw, headers={"Content-Type": "application/json"}), before, ok)
            tried += 1
    assert tried > 100


def nested(depth: int, leaf: bytes = b"1") -> bytes:
    return b"[" * depth + leaf + b"]" * depth


@pytest.mark.parametrize("depth", [1_000, 50_000])
def test_deep_nesting_is_a_4xx(api: Api, depth: int) -> None:
    before = api.counts()
    deep = b'{"sender": "' + SENDER.encode() + b'", "to": "+5511911112222", "metadata": {"a": ' + nested(depth) + b"}}"
    for url in ("/v1/messages", "/v1/campaigns", "/v1/senders", "/v1/tenant"):
        r = api.call("PATCH" if url == "/v1/tenant" else "POST", url, content=deep,
                     headers={"Content-Type": "application/json"})
        refused_cleanly(r)
    r = _signed_post(api, b'{"object": "whatsapp_business_account", "entry": ' + nested(depth) + b"}")
    assert r.status_code in (200, 400), r.text  # parsed or refused, never a crash
    if depth > 1_000:
        assert r.status_code == 400
    assert api.counts()["messages"] == before["messages"]


def test_invalid_utf8_and_wrong_content(api: Api) -> None:
    before = api.counts()
    for raw, ctype in ((b'{"sender": "\xff\xfe", "to": "+5511911112222"}', "application/json"),
                       (b"\x00\x01\x02", "application/json"), (b"sender=1&to=2", "application/x-www-form-urlencoded"),
                       (b"", "application/json"), (b"null", "application/json"), (b"[]", "application/json")):
        refused_cleanly(api.call("POST", "/v1/messages", content=raw, headers={"Content-Type": ctype}))
    r = _signed_post(api, b'{"object": "whatsapp_business_account", "entry": [\xff]}')
    assert r.status_code == 400 and "UTF-8" in r.json()["error"]["message"]
    r = api.call("POST", "/v1/campaigns/csv", data={"sender": SENDER, "template": "t"},
                 files={"file": ("l.csv", b"to\n\xff\xfe+5511911112222\n", "text/csv")})
    assert r.status_code == 422 and "UTF-8" in r.json()["error"]["message"]
    assert api.counts() == before


# -- limits ----------------------------------------------------------------------------------------
def test_body_size_limit(api: Api) -> None:
    before = api.counts()
    huge = {"sender": SENDER, "to": "+5511911112222", "template": {"name": "x"}, "metadata": {"pad": "x" * MAX_BODY}}
    r = api.call("POST", "/v1/messages", content=dumps(huge), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and str(MAX_BODY) in r.json()["error"]["message"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit is counted as the body streams in
        yield dumps(huge)[: MAX_BODY // 2]
        yield dumps(huge)[MAX_BODY // 2:]

    r = api.call("POST", "/v1/messages", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413, r.text
    webhook = b'{"object": "whatsapp_business_account", "entry": [], "pad": "' + b"x" * MAX_WEBHOOK + b'"}'
    assert _signed_post(api, webhook).status_code == 413
    assert api.counts() == before
    small = {**huge, "metadata": {"pad": "x" * min(MAX_BODY // 2, 16_000)}}  # (metadata: at most 16 KiB)
    r = api.call("POST", "/v1/messages", content=dumps(small), headers={"Content-Type": "application/json"})
    assert r.status_code == 202, r.text  # under the limit: fine


def test_campaign_size_and_csv_row_limits(api: Api) -> None:
    before = api.counts()
    numbers = [f"+55119{i:08d}" for i in range(MAX_RECIPIENTS + 1)]
    r = api.call("POST", "/v1/campaigns", json={"sender": SENDER, "template": {"name": "p"}, "recipients": numbers})
    assert r.status_code == 413 and str(MAX_RECIPIENTS) in r.json()["error"]["message"]
    csv = ("to\n" + "\n".join(numbers) + "\n").encode()
    r = api.call("POST", "/v1/campaigns/csv", data={"sender": SENDER, "template": "p"},
                 files={"file": ("l.csv", csv, "text/csv")})
    assert r.status_code == 413 and str(MAX_RECIPIENTS) in r.json()["error"]["message"]
    assert api.counts() == before
    r = api.call("POST", "/v1/campaigns", json={"sender": SENDER, "template": {"name": "p"},
                                                 "recipients": numbers[:MAX_RECIPIENTS]})
    assert r.status_code == 201 and r.json()["total"] == MAX_RECIPIENTS


def test_rate_limit_per_key_answers_429_with_retry_after(tmp_path: Path) -> None:
    for limited in _api(tmp_path, rate_limit_per_minute=5):
        codes = [limited.call("GET", "/v1/senders").status_code for _ in range(4)]  # + the registration
        assert codes == [200] * 4
        r = limited.call("GET", "/v1/senders")
        assert r.status_code == 429
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        assert "too many requests" in r.json()["error"]["message"]
        r = limited.call("POST", f"/graph/v24.0/{SENDER}/messages", json={})  # the drop-in: Meta's shape
        assert r.status_code == 429 and r.json()["error"]["code"] == 80007 and int(r.headers["Retry-After"]) >= 1
        # another key of the same tenant has its own budget
        key = limited.loop.run_until_complete(limited.h.gateway.auth.create_key(
            limited.loop.run_until_complete(limited.h.gateway.store.find_tenant_by_name("default")).id))[1]  # type: ignore[union-attr]
        r = limited.call("GET", "/v1/senders", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200
