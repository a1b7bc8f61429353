"""The Provider contract: the sandbox and the Cloud API client (against the fake Graph API) agree.

Each harness wraps one provider with the two things a contract test needs from "the platform":
what it received, and a way to make the next request misbehave.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from tests.fakes.fake_graph import FakeGraph

from tiergate.adapters.provider.cloud import CloudProvider, parse_retry_after
from tiergate.adapters.provider.sandbox import SandboxProvider
from tiergate.clock import VirtualClock
from tiergate.core.errors import Action, classify
from tiergate.ports import Provider, ProviderError, SenderInfo

SENDER = "1001"
TOKEN = "contract-token-5f1c9a7e3d"
FIELDS = ("quality_rating", "throughput", "messaging_limit_tier", "status")


def template(to: str, name: str = "promo") -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": "template",
            "template": {"name": name, "language": {"code": "en_US"}}}


WABA = "waba-1"


class SandboxHarness:
    def __init__(self) -> None:
        self.clock = VirtualClock(1_750_000_000.0)
        self.sandbox = SandboxProvider(self.clock, seed=3)
        self.provider: Provider = self.sandbox

    async def setup(self) -> None:
        await self.sandbox.register_sender(SenderInfo(SENDER, "+1 555 000 1001", WABA, "classic", "TIER_1K", "GREEN"))

    def received(self) -> list[tuple[str, dict[str, Any]]]:
        return [(m.to, m.body) for m in self.sandbox.received if m.phone_number_id == SENDER]

    def inject(self, kind: int | str, reached: bool = False) -> None:
        self.sandbox.inject_fault(kind, reached=reached)

    async def close(self) -> None:
        await self.provider.aclose()


class CloudHarness:
    def __init__(self) -> None:
        self.fake = FakeGraph(token=TOKEN, seed=3, strict_numbers=True, waba_id=WABA)
        self.cloud = CloudProvider("http://unused", TOKEN, timeout=0.3)
        self.provider: Provider = self.cloud

    async def setup(self) -> None:
        await self.fake.start()
        self.cloud = CloudProvider(self.fake.base_url, TOKEN, timeout=0.3)
        self.provider = self.cloud
        self.fake.set_phone_number(SENDER, display_phone_number="+1 555 000 1001", messaging_limit_tier="TIER_1K")

    def received(self) -> list[tuple[str, dict[str, Any]]]:
        return [(m.to, m.body) for m in self.fake.accepted.get(SENDER, [])]

    def inject(self, kind: int | str, reached: bool = False) -> None:
        self.fake.add_fault(kind, count=1, delay=5.0, reached=reached)

    async def close(self) -> None:
        await self.cloud.aclose()
        await self.fake.stop()


Harness = SandboxHarness | CloudHarness


@pytest.fixture(params=["sandbox", "cloud"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    h: Harness = SandboxHarness() if request.param == "sandbox" else CloudHarness()
    await h.setup()
    try:
        yield h
    finally:
        await h.close()


# ------------------------------------------------------------------------------------------------
# The contract
# ------------------------------------------------------------------------------------------------
async def test_an_accepted_send_returns_a_wamid_and_reaches_the_platform(harness: Harness) -> None:
    body = template("+16505551234")
    outcome = await harness.provider.send(SENDER, body)
    assert outcome.status == "accepted"
    assert outcome.wamid is not None and outcome.wamid.startswith("wamid.")
    assert outcome.message_status == "accepted"
    assert outcome.http_status == 200
    assert outcome.raw["contacts"] == [{"input": "+16505551234", "wa_id": "16505551234"}]
    assert harness.received() == [("16505551234", body)]


async def test_wamids_are_unique(harness: Harness) -> None:
    wamids = {(await harness.provider.send(SENDER, template(f"+4915100000{i:02d}"))).wamid for i in range(20)}
    assert len(wamids) == 20


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"messaging_product": "whatsapp", "type": "template", "template": {"name": "x"}}, 100),  # no "to"
        ({"to": "+16505551234", "type": "text", "text": {"body": "hi"}}, 100),  # no messaging_product
        ({"messaging_product": "whatsapp", "to": "+16505551234", "type": "template",
          "template": {"name": "promo"}}, 131008),  # no language
        ({"messaging_product": "whatsapp", "to": "+16505551234", "type": "carrier_pigeon"}, 100),
    ],
)
async def test_a_refused_body_is_failed_with_the_platform_code(harness: Harness, body: dict[str, Any],
                                                               code: int) -> None:
    outcome = await harness.provider.send(SENDER, body)
    assert outcome.status == "failed"
    assert outcome.code == code
    assert outcome.http_status == 400
    assert outcome.title and outcome.details
    assert harness.received() == []


async def test_an_unknown_sender_is_failed_with_code_100(harness: Harness) -> None:
    outcome = await harness.provider.send("999999", template("+16505551234"))
    assert (outcome.status, outcome.code) == ("failed", 100)


async def test_a_read_receipt_is_relayed_and_answered_as_the_platform_answers(harness: Harness) -> None:
    receipt = {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.in.9",
               "typing_indicator": {"type": "text"}}

    async def relay(number: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return await harness.provider.relay("POST", f"{number}/messages", orjson.dumps(body), "application/json")

    assert await relay(SENDER, receipt) == (200, {"success": True})
    status, answer = await relay(SENDER, {**receipt, "typing_indicator": {"type": "audio"}})
    assert status == 400 and answer["error"]["code"] == 100
    status, answer = await relay("999999", receipt)
    assert status == 400 and answer["error"]["code"] == 100
    assert harness.received() == []  # nothing was sent to anyone


def multipart(fields: dict[str, bytes]) -> tuple[str, bytes]:
    boundary = "tiergate-test-boundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'.encode()
             + (b'; filename="photo.png"\r\nContent-Type: image/png' if name == "file" else b"")
             + b"\r\n\r\n" + value + b"\r\n" for name, value in fields.items()]
    return f"multipart/form-data; boundary={boundary}", b"".join(parts) + f"--{boundary}--\r\n".encode()


async def test_a_media_upload_is_relayed_and_gets_a_media_id(harness: Harness) -> None:
    image = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
    content_type, body = multipart({"messaging_product": b"whatsapp", "type": b"image/png", "file": image})
    status, answer = await harness.provider.relay("POST", f"{SENDER}/media", body, content_type)
    assert status == 200 and answer["id"].isdigit()
    media_id = answer["id"]
    status, found = await harness.provider.relay("GET", media_id)
    assert status == 200 and (found["id"], found["mime_type"]) == (media_id, "image/png")
    assert found["file_size"] == len(image)
    assert await harness.provider.download(found["url"]) == (200, image, "image/png")
    assert (await harness.provider.relay("DELETE", media_id))[0] == 200
    status, answer = await harness.provider.relay("GET", media_id)
    assert status == 400 and answer["error"]["code"] == 100
    content_type, body = multipart({"messaging_product": b"whatsapp", "type": b"image/png"})  # no file
    status, answer = await harness.provider.relay("POST", f"{SENDER}/media", body, content_type)
    assert status == 400 and answer["error"]["code"] == 100
    status, answer = await harness.provider.relay("POST", f"{SENDER}/media", b"{}", "application/json")
    assert status == 400 and answer["error"]["code"] == 100


@pytest.mark.parametrize(
    ("code", "action"),
    [(130429, Action.RETRY), (131056, Action.RETRY_RECIPIENT), (131048, Action.PAUSE_SENDER),
     (131000, Action.RETRY), (131026, Action.FINAL)],
)
async def test_platform_error_codes_map_to_failed_outcomes(harness: Harness, code: int, action: Action) -> None:
    harness.inject(code)
    outcome = await harness.provider.send(SENDER, template("+16505551234"))
    assert outcome.status == "failed"
    assert outcome.code == code
    assert outcome.title and outcome.details
    assert outcome.raw["error"]["code"] == code
    assert classify(outcome.code, outcome.http_status).action is action
    assert harness.received() == []
    assert (await harness.provider.send(SENDER, template("+16505551234"))).status == "accepted"


@pytest.mark.parametrize("kind", ["timeout", "reset", "5xx"])
@pytest.mark.parametrize("reached", [False, True])
async def test_no_definite_answer_is_unknown(harness: Harness, kind: str, reached: bool) -> None:
    harness.inject(kind, reached=reached)
    outcome = await harness.provider.send(SENDER, template("+16505551234"))
    assert outcome.status == "unknown"
    assert outcome.code is None
    assert outcome.title
    assert len(harness.received()) == (1 if reached else 0)


async def test_get_phone_number_returns_the_requested_fields(harness: Harness) -> None:
    info = await harness.provider.get_phone_number(SENDER, FIELDS)
    assert info["id"] == SENDER
    assert info["messaging_limit_tier"] == "TIER_1K"
    assert info["quality_rating"] == "GREEN"
    assert info["throughput"] == {"level": "STANDARD"}
    assert info["status"] == "CONNECTED"


async def test_get_phone_number_errors_carry_the_platform_code(harness: Harness) -> None:
    with pytest.raises(ProviderError) as unknown_field:
        await harness.provider.get_phone_number(SENDER, ["quality_rating", "favourite_colour"])
    assert unknown_field.value.code == 100
    with pytest.raises(ProviderError) as unknown_number:
        await harness.provider.get_phone_number("424242", ["status"])
    assert unknown_number.value.code == 100


async def test_a_provider_makes_no_webhooks_of_its_own_unless_it_emulates_the_platform(harness: Harness) -> None:
    await harness.provider.send(SENDER, template("+16505551234"))
    if isinstance(harness, CloudHarness):
        assert harness.provider.poll_events(1e12) == [] and harness.provider.next_event_at() is None
    else:
        assert harness.provider.next_event_at() is not None
        assert harness.provider.poll_events(harness.clock.now() + 10)


# ------------------------------------------------------------------------------------------------
# Cloud API client specifics
# ------------------------------------------------------------------------------------------------
@pytest.fixture
async def fake() -> AsyncIterator[FakeGraph]:
    async with FakeGraph(token=TOKEN, seed=11) as server:
        yield server


@pytest.fixture
async def cloud(fake: FakeGraph) -> AsyncIterator[CloudProvider]:
    provider = CloudProvider(fake.base_url, TOKEN, timeout=0.3)
    yield provider
    await provider.aclose()


async def test_a_bad_token_is_failed_190_and_the_token_never_shows(fake: FakeGraph) -> None:
    wrong = "wrong-token-which-is-secret-123"
    provider = CloudProvider(fake.base_url, wrong)
    try:
        outcome = await provider.send(SENDER, template("+16505551234"))
        assert (outcome.status, outcome.code, outcome.http_status) == ("failed", 190, 401)
        assert classify(190).action is Action.PAUSE_SENDER
        with pytest.raises(ProviderError) as exc:
            await provider.get_phone_number(SENDER, ["status"])
        assert exc.value.code == 190
        for text in (repr(provider), str(provider), repr(outcome), str(exc.value), repr(exc.value)):
            assert wrong not in text
        assert fake.accepted_count() == 0
    finally:
        await provider.aclose()


async def test_a_refused_connection_is_failed_not_sent_and_hides_the_token() -> None:
    provider = CloudProvider(f"http://127.0.0.1:{unused_port()}/v24.0", TOKEN, timeout=1.0)
    outcome = await provider.send(SENDER, template("+16505551234"))
    with pytest.raises(ProviderError) as exc:
        await provider.get_phone_number(SENDER, ["status"])
    await provider.aclose()
    assert outcome.status == "failed" and outcome.code is None
    assert "not sent" in outcome.title
    assert TOKEN not in repr(outcome) and TOKEN not in str(exc.value)
    provider = CloudProvider(f"http://127.0.0.1:{unused_port()}/v24.0", TOKEN, timeout=1.0)
    status, answer = await provider.relay("POST", f"{SENDER}/messages", b'{"messaging_product": "whatsapp", '
                                          b'"status": "read", "message_id": "wamid.x"}', "application/json")
    await provider.aclose()
    assert status == 503 and answer["error"]["code"] == 131016 and TOKEN not in str(answer)


async def test_a_server_echoing_the_token_is_redacted(fake: FakeGraph, cloud: CloudProvider) -> None:
    fake.add_fault(131000, count=1)
    original = fake._error

    def echo(code: int, details: str | None = None, **kw: Any) -> Any:
        return original(code, f"token was {TOKEN}", **kw)

    fake._error = echo  # type: ignore[method-assign]
    outcome = await cloud.send(SENDER, template("+16505551234"))
    assert outcome.code == 131000
    assert TOKEN not in repr(outcome)


async def test_retry_after_is_read_from_the_header(fake: FakeGraph, cloud: CloudProvider) -> None:
    fake.add_fault(130429, count=1, retry_after=7)
    fake.add_fault("5xx", count=1, retry_after=3, status=503)
    fake.add_fault("5xx", count=1, status=502)
    limited = await cloud.send(SENDER, template("+16505551234"))
    assert (limited.code, limited.http_status, limited.retry_after) == (130429, 429, 7.0)
    unavailable = await cloud.send(SENDER, template("+16505551234"))  # not served: retried after the wait
    assert (unavailable.status, unavailable.http_status, unavailable.retry_after) == ("failed", 503, 3.0)
    assert classify(unavailable.code, unavailable.http_status).action is Action.RETRY
    bad_gateway = await cloud.send(SENDER, template("+16505551234"))  # may have been served: not re-sent blindly
    assert (bad_gateway.status, bad_gateway.http_status) == ("unknown", 502)


def test_retry_after_parses_seconds_and_http_dates() -> None:
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0


async def test_malformed_json_is_unknown_and_the_platform_has_it(fake: FakeGraph, cloud: CloudProvider) -> None:
    fake.add_fault("malformed", count=1)
    outcome = await cloud.send(SENDER, template("+16505551234"))
    assert (outcome.status, outcome.http_status) == ("unknown", 200)
    assert fake.accepted_count(SENDER) == 1


async def test_a_slow_answer_within_the_timeout_is_accepted(fake: FakeGraph, cloud: CloudProvider) -> None:
    fake.add_fault("slow", count=1, delay=0.05)
    assert (await cloud.send(SENDER, template("+16505551234"))).status == "accepted"


async def test_a_4xx_without_a_platform_error_is_failed_without_code(fake: FakeGraph) -> None:
    provider = CloudProvider(fake.base_url.rsplit("/", 1)[0] + "/nope/extra", TOKEN)
    try:
        outcome = await provider.send(SENDER, template("+16505551234"))
    finally:
        await provider.aclose()
    assert (outcome.status, outcome.code, outcome.http_status) == ("failed", None, 404)
    assert classify(None, 404).action is Action.FINAL


async def test_an_unserialisable_body_is_failed_before_sending(fake: FakeGraph, cloud: CloudProvider) -> None:
    outcome = await cloud.send(SENDER, {"messaging_product": "whatsapp", "to": object()})
    assert outcome.status == "failed" and outcome.code is None
    assert fake.stats["requests"] == 0


async def test_management_rate_limits_raise_with_their_code(fake: FakeGraph, cloud: CloudProvider) -> None:
    fake.add_fault(80007, on="get", count=1)
    with pytest.raises(ProviderError) as exc:
        await cloud.get_phone_number(SENDER, ["status"])
    assert (exc.value.code, exc.value.http_status) == (80007, 429)
    assert (await cloud.get_phone_number(SENDER, ["status"]))["status"] == "CONNECTED"


async def test_a_caller_owned_session_is_left_open(fake: FakeGraph) -> None:
    async with aiohttp.ClientSession() as session:
        provider = CloudProvider(fake.base_url, TOKEN, session=session)
        assert (await provider.send(SENDER, template("+16505551234"))).status == "accepted"
        await provider.aclose()
        assert not session.closed


async def test_sends_reuse_one_keep_alive_connection(fake: FakeGraph, cloud: CloudProvider) -> None:
    for i in range(6):
        assert (await cloud.send(SENDER, template(f"+16505551{i:03d}"))).status == "accepted"
    assert cloud._pool is not None and cloud._pool.opened == 1
    await cloud.aclose()
    after = await cloud.send(SENDER, template("+16505559999"))
    assert (after.status, after.title) == ("failed", "could not connect to the platform: not sent")
    assert fake.accepted_count(SENDER) == 6


def unused_port() -> int:
    """A port nobody listens on (bound, then released): connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_the_account_nodes_answer_as_the_platform_does(harness: Harness) -> None:
    """A number (``?fields=``), its business profile and a WABA's templates: what an app moved to the
    drop-in still reads and writes, relayed by the client and emulated by the sandbox alike."""
    p = harness.provider
    status, number = await p.relay("GET", SENDER, query="fields=messaging_limit_tier,quality_rating")
    assert status == 200 and number == {"messaging_limit_tier": "TIER_1K", "quality_rating": "GREEN", "id": SENDER}
    status, answer = await p.relay("GET", SENDER, query="fields=no_such_field")
    assert status == 400 and answer["error"]["code"] == 100

    profile = f"{SENDER}/whatsapp_business_profile"
    new = {"messaging_product": "whatsapp", "about": "Open 9-5", "websites": ["https://shop.example"]}
    assert await p.relay("POST", profile, orjson.dumps(new), "application/json") == (200, {"success": True})
    status, answer = await p.relay("GET", profile, query="fields=about,websites")
    assert status == 200 and answer == {"data": [{"messaging_product": "whatsapp", "about": "Open 9-5",
                                                  "websites": ["https://shop.example"]}]}
    status, answer = await p.relay("POST", profile, orjson.dumps({**new, "about": "x" * 140}), "application/json")
    assert status == 400 and answer["error"]["code"] == 100

    templates = f"{WABA}/message_templates"
    for name, category in (("order_update", "UTILITY"), ("spring_sale", "MARKETING"), ("login_code", "AUTHENTICATION")):
        body = {"name": name, "language": "en_US", "category": category,
                "components": [{"type": "BODY", "text": "Hello {{1}}"}]}
        status, created = await p.relay("POST", templates, orjson.dumps(body), "application/json")
        assert status == 200 and created["category"] == category and created["id"].isdigit()
    status, again = await p.relay("POST", templates, orjson.dumps(body), "application/json")  # same name + language
    assert status == 400 and again["error"]["error_subcode"] == 2388024
    status, bad = await p.relay("POST", templates, orjson.dumps({**body, "name": "Not Valid"}), "application/json")
    assert status == 400 and bad["error"]["code"] == 100
    status, page = await p.relay("GET", templates, query="limit=2")
    assert status == 200 and [t["name"] for t in page["data"]] == ["order_update", "spring_sale"]
    status, rest = await p.relay("GET", templates, query=f"limit=2&after={page['paging']['cursors']['after']}")
    assert [t["name"] for t in rest["data"]] == ["login_code"] and "next" not in rest["paging"]
    status, one = await p.relay("GET", templates, query="name=spring_sale")
    assert [t["category"] for t in one["data"]] == ["MARKETING"]
    assert await p.relay("DELETE", templates, query="name=spring_sale") == (200, {"success": True})
    status, gone = await p.relay("DELETE", templates, query="name=spring_sale")
    assert status == 400 and gone["error"]["error_subcode"] == 2593002

    # The WABA itself, and registering the number (its two-step verification PIN).
    status, waba = await p.relay("GET", WABA)
    assert status == 200 and set(waba) == {"id", "name", "timezone_id", "message_template_namespace"}, waba
    assert waba["id"] == WABA
    status, waba = await p.relay("GET", WABA, query="fields=currency,account_review_status")
    assert status == 200 and waba == {"currency": "USD", "account_review_status": "APPROVED", "id": WABA}
    status, answer = await p.relay("GET", WABA, query="fields=no_such_field")
    assert status == 400 and "WhatsAppBusinessAccount" in answer["error"]["error_data"]["details"]
    register = f"{SENDER}/register"
    for bad in ({"messaging_product": "whatsapp"}, {"messaging_product": "whatsapp", "pin": "12345"},
                {"messaging_product": "whatsapp", "pin": 123456}, {"pin": "123456"}):
        status, answer = await p.relay("POST", register, orjson.dumps(bad), "application/json")
        assert status == 400 and answer["error"]["code"] == 100, bad
    ok = {"messaging_product": "whatsapp", "pin": "123456"}
    assert await p.relay("POST", register, orjson.dumps(ok), "application/json") == (200, {"success": True})
    assert await p.relay("POST", f"{SENDER}/deregister", orjson.dumps({"messaging_product": "whatsapp"}),
                         "application/json") == (200, {"success": True})
    status, answer = await p.relay("GET", register)
    assert status == 400 and answer["error"]["code"] == 100
    assert harness.received() == []  # none of it is a message to anyone
