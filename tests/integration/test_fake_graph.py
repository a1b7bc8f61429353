"""The fake Graph API itself: validation, recording, deterministic fault injection, process mode."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from tests.fakes.fake_graph import FakeGraph, FakeGraphProcess, Fault
from tests.fakes.fixtures import FAKE_TOKEN, fake_graph  # noqa: F401  (the fixture, used below)

from tiergate.adapters.provider.cloud import CloudProvider
from tiergate.clock import VirtualClock
from tiergate.core import shapes
from tiergate.core.signature import verify_signature
from tiergate.core.webhooks import InboundMessage, StatusUpdate, parse_webhook

TOKEN = "fake-graph-token-77aa"


def template(to: str) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "to": to, "type": "template",
            "template": {"name": "promo", "language": {"code": "en"}}}


async def fault_pattern(seed: int, share: float, n: int = 120) -> list[str]:
    async with FakeGraph(token=TOKEN, seed=seed) as fake:
        fake.add_fault(131056, share=share)
        provider = CloudProvider(fake.base_url, TOKEN)
        try:
            outcomes = await asyncio.gather(*(provider.send("1", template(f"+3161234{i:04d}")) for i in range(n)))
        finally:
            await provider.aclose()
    return [o.status for o in outcomes]


async def test_fault_shares_are_deterministic_for_a_seed_whatever_the_arrival_order() -> None:
    first = await fault_pattern(seed=5, share=0.3)
    again = await fault_pattern(seed=5, share=0.3)
    other = await fault_pattern(seed=6, share=0.3)
    assert first == again
    assert first != other
    assert 0.15 < first.count("failed") / len(first) < 0.45


async def test_a_retry_of_the_same_message_gets_a_fresh_draw() -> None:
    async with FakeGraph(token=TOKEN, seed=1) as fake:
        fake.add_fault(131000, share=0.5)
        provider = CloudProvider(fake.base_url, TOKEN)
        statuses = [(await provider.send("1", template("+31612340000"))).status for _ in range(40)]
        await provider.aclose()
    assert {"failed", "accepted"} <= set(statuses)


async def test_faults_can_target_one_sender_and_stop_after_a_count() -> None:
    async with FakeGraph(token=TOKEN) as fake:
        fake.add_fault(131048, sender="bad", count=2)
        provider = CloudProvider(fake.base_url, TOKEN)
        bad = [(await provider.send("bad", template(f"+316123400{i:02d}"))).code for i in range(4)]
        good = [(await provider.send("good", template(f"+316123400{i:02d}"))).status for i in range(4)]
        await provider.aclose()
        assert bad == [131048, 131048, None, None]
        assert good == ["accepted"] * 4
        assert fake.accepted_count("bad") == 2 and fake.accepted_count("good") == 4
        assert fake.faults[0].hits == 2


async def test_accepted_messages_are_recorded_with_the_fake_clock_and_their_wamid() -> None:
    clock = VirtualClock(1_000.0)
    async with FakeGraph(token=TOKEN, clock=clock.now) as fake:
        provider = CloudProvider(fake.base_url, TOKEN)
        first = await provider.send("7", template("+44 7700 900123"))
        clock.advance(5)
        await provider.send("7", {"messaging_product": "whatsapp", "to": "447700900124", "type": "text",
                                  "text": {"body": "hi"}})
        await provider.aclose()
    assert [(m.to, m.time) for m in fake.accepted["7"]] == [("447700900123", 1000.0), ("447700900124", 1005.0)]
    assert first.wamid is not None and fake.wamids[first.wamid] == ("7", 0)
    _, body, _ = fake.accepted["7"][0]
    assert body == template("+44 7700 900123")


async def test_unknown_numbers_are_created_on_first_use_unless_strict() -> None:
    async with FakeGraph(token=TOKEN, strict_numbers=True) as strict, FakeGraph(token=TOKEN) as lenient:
        a, b = CloudProvider(strict.base_url, TOKEN), CloudProvider(lenient.base_url, TOKEN)
        assert (await a.send("55", template("+15550001111"))).code == 100
        assert (await b.send("55", template("+15550001111"))).status == "accepted"
        await a.aclose()
        await b.aclose()


async def test_phone_number_state_is_configurable(fake_graph: FakeGraph) -> None:  # noqa: F811
    fake_graph.set_phone_number("9", whatsapp_business_manager_messaging_limit="TIER_2K", quality_rating="YELLOW",
                                throughput="HIGH", status="FLAGGED")
    provider = CloudProvider(fake_graph.base_url, FAKE_TOKEN)
    info = await provider.get_phone_number("9", ["whatsapp_business_manager_messaging_limit", "quality_score",
                                                 "throughput", "status", "quality_rating"])
    await provider.aclose()
    assert info == {"id": "9", "whatsapp_business_manager_messaging_limit": "TIER_2K",
                    "quality_score": {"score": "YELLOW"}, "quality_rating": "YELLOW",
                    "throughput": {"level": "HIGH"}, "status": "FLAGGED"}


async def test_errors_use_metas_json_shape(fake_graph: FakeGraph) -> None:  # noqa: F811
    fake_graph.add_fault(131056, count=1)
    provider = CloudProvider(fake_graph.base_url, FAKE_TOKEN)
    outcome = await provider.send("1", template("+15550001111"))
    await provider.aclose()
    error = outcome.raw["error"]
    assert error["message"].startswith("(#131056) ")
    assert error["type"] == "OAuthException"
    assert error["error_data"]["messaging_product"] == "whatsapp"
    assert error["fbtrace_id"]


def test_fault_kinds_are_checked() -> None:
    with pytest.raises(ValueError):
        Fault("gremlins")
    with pytest.raises(ValueError):
        Fault("5xx", on="delete")
    assert Fault("131000").kind == 131000
    assert Fault("reset").accepts is False and Fault("malformed").accepts is True
    assert Fault("timeout", reached=True).accepts is True


@pytest.fixture(scope="module")
def fake_process() -> Any:
    with FakeGraphProcess(token=TOKEN, seed=2) as proc:
        yield proc


@pytest.fixture
async def process_client(fake_process: FakeGraphProcess) -> AsyncIterator[CloudProvider]:
    fake_process.reset()
    fake_process.set_faults([])
    provider = CloudProvider(fake_process.base_url, TOKEN, timeout=0.5)
    yield provider
    await provider.aclose()


async def test_the_fake_runs_as_a_separate_process(fake_process: FakeGraphProcess,
                                                   process_client: CloudProvider) -> None:
    assert fake_process.base_url.startswith("http://127.0.0.1:")
    outcomes = await asyncio.gather(*(process_client.send("3", template(f"+4930123{i:04d}")) for i in range(50)))
    assert all(o.status == "accepted" for o in outcomes)
    stats = fake_process.stats()
    assert stats["accepted"] == {"3": 50}
    accepted = fake_process.accepted("3")["3"]
    assert {m["to"] for m in accepted} == {f"4930123{i:04d}" for i in range(50)}


async def test_the_process_takes_faults_and_number_state_over_http(fake_process: FakeGraphProcess,
                                                                   process_client: CloudProvider) -> None:
    fake_process.set_faults([{"kind": "timeout", "delay": 2.0, "sender": "slow"}, {"kind": 130429, "count": 1}])
    fake_process.set_phone_number("4", quality_rating="RED")
    timed_out = await process_client.send("slow", template("+4930123000"))
    limited = await process_client.send("4", template("+4930123000"))
    fine = await process_client.send("4", template("+4930123000"))
    assert (timed_out.status, limited.code, fine.status) == ("unknown", 130429, "accepted")
    assert (await process_client.get_phone_number("4", ["quality_rating"]))["quality_rating"] == "RED"


class WebhookReceiver:
    """A stand-in for tiergate's webhook endpoint: keeps what arrives and whether it was signed right."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.bodies: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self.app = web.Application()
        self.app.router.add_post("/webhooks/whatsapp", self._receive)
        self.runner = web.AppRunner(self.app, access_log=None)
        self.url = ""

    async def _receive(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if not verify_signature(self.secret, raw, request.headers.get("X-Hub-Signature-256")):
            self.bad_signatures += 1
            return web.Response(status=401)
        self.bodies.append(orjson.loads(raw))
        return web.Response(text="ok")

    async def __aenter__(self) -> WebhookReceiver:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/webhooks/whatsapp"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()


async def test_the_fake_can_send_signed_status_webhooks_like_meta() -> None:
    async with WebhookReceiver("s3cret") as receiver, FakeGraph(token=TOKEN, webhook_url=receiver.url,
                                                                app_secret="s3cret") as fake:
        provider = CloudProvider(fake.base_url, TOKEN, timeout=0.3)
        accepted = await provider.send("1", template("+4915100000001"))
        fake.add_fault("timeout", count=1, delay=5.0, reached=True)  # the platform has it; the client never hears
        unknown = await provider.send("1", template("+4915100000002"))
        await provider.aclose()
        fake.emit_webhook({"object": "whatsapp_business_account", "entry": [{"id": "fake-waba", "changes": [
            {"field": "messages", "value": shapes.inbound_value("1", "1", "4915100000003", "wamid.in", 1e9, "hi",
                                                                "Ann")}]}]})
        await fake.flush_webhooks()
    assert unknown.status == "unknown"
    assert receiver.bad_signatures == 0
    events = [e for body in receiver.bodies for e in parse_webhook(body)]
    statuses = [(e.status, e.recipient_id) for e in events if isinstance(e, StatusUpdate)]
    assert sorted(statuses) == [("delivered", "4915100000001"), ("delivered", "4915100000002"),
                                ("sent", "4915100000001"), ("sent", "4915100000002")]
    assert accepted.wamid in {e.wamid for e in events if isinstance(e, StatusUpdate)}
    assert [e.wa_id for e in events if isinstance(e, InboundMessage)] == ["4915100000003"]
    assert fake.stats["webhooks_delivered"] == 5
