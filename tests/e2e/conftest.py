"""An embedded gateway under a virtual clock, with an HTTP client on its ASGI app (no sockets)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.cli_server import Served, running_serve
from tests.fakes.fake_graph import FakeGraph

from tiergate.adapters.provider.cloud import CloudProvider
from tiergate.api.app import create_app
from tiergate.clock import VirtualClock
from tiergate.core.signature import sign
from tiergate.core.webhooks import InboundMessage, parse_webhook_bytes
from tiergate.service.gateway import Gateway
from tiergate.service.simulate import advance_to
from tiergate.settings import Settings

T0 = 1_767_571_200.0  # 2026-01-05 00:00 UTC
APP_SECRET = "test-app-secret"
VERIFY_TOKEN = "test-verify-token"


@dataclass
class Harness:
    gateway: Gateway
    clock: VirtualClock
    client: httpx.AsyncClient
    key: str

    @property
    def provider(self) -> Any:
        return self.gateway.provider

    async def run(self, seconds: float = 10.0) -> None:
        """Dispatcher and platform events for a few (virtual) seconds: throughput spreads sends out."""
        await advance_to(self.gateway, self.clock, self.clock.now() + seconds)

    async def advance(self, seconds: float) -> None:
        """Move the clock forward, stopping at every wake-up on the way (as the simulator does)."""
        await advance_to(self.gateway, self.clock, self.clock.now() + seconds)

    async def webhook(self, body: bytes) -> httpx.Response:
        """POST a signed webhook as the platform would; the sandbox platform learns of its inbound messages."""
        if hasattr(self.provider, "saw_inbound"):
            try:
                events = parse_webhook_bytes(body)
            except ValueError:
                events = []
            for e in events:
                if isinstance(e, InboundMessage) and e.phone_number_id and e.timestamp is not None:
                    self.provider.saw_inbound(e.phone_number_id, e.wa_id, e.timestamp)
        return await self.client.post("/webhooks/whatsapp", content=body, headers={
            "X-Hub-Signature-256": sign(APP_SECRET, body), "Content-Type": "application/json"})


async def make_harness(tmp_path: Path, provider: Any = None, **settings: Any) -> Harness:
    clock = VirtualClock(T0)
    if provider is None:
        from tiergate.adapters.provider.sandbox import SandboxProvider

        provider = SandboxProvider(clock, seed=7)
    cfg = Settings(database_url=str(tmp_path / "e2e.db"), app_secret=APP_SECRET, verify_token=VERIFY_TOKEN,
                   worker_id="e2e", **settings)
    gateway = await Gateway.open(cfg, clock=clock, provider=provider, wall_clock=clock)
    key = await gateway.auth.bootstrap()
    assert key is not None
    app = create_app(gateway)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tiergate.test",
                               headers={"Authorization": f"Bearer {key}"})
    return Harness(gateway, clock, client, key)


@asynccontextmanager
async def cloud_harness(tmp_path: Path, token: str, **graph_options: Any) -> AsyncIterator[tuple[Harness, FakeGraph]]:
    """The gateway with the real Cloud API client, against a fake Graph API on 127.0.0.1 (real
    HTTP) that keeps the harness's virtual time."""
    holder: list[Harness] = []
    async with FakeGraph(token=token, clock=lambda: holder[0].clock.now(), **graph_options) as graph:
        h = await make_harness(tmp_path, provider=CloudProvider(graph.base_url, token))
        holder.append(h)
        try:
            yield h, graph
        finally:
            await h.client.aclose()
            await h.gateway.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A real ``tiergate serve`` (``tests.e2e.cli_server``) shared by one module's CLI tests."""
    with running_serve(tmp_path_factory.mktemp("serve")) as s:
        yield s


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = await make_harness(tmp_path)
    try:
        yield h
    finally:
        await h.client.aclose()
        await h.gateway.close()
