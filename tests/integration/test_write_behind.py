"""A running worker on each store: on PostgreSQL each batch's write is left running while the next
batch is claimed; an inline provider gets one write per message, a remote one's sends wait for
their admission's write. Every message goes exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import pytest

from tiergate.clock import SystemClock
from tiergate.core.model import Message
from tiergate.ports import SenderInfo, SendOutcome
from tiergate.service.dispatcher import DispatcherConfig
from tiergate.service.gateway import Gateway
from tiergate.service.intake import CampaignRequest, SenderRequest
from tiergate.settings import Settings

GUARD = 60.0  # seconds before a stuck drain fails the test (it never paces it)


class Counting:
    """Counts every send per recipient. Inline, it answers like the sandbox; otherwise like a
    remote platform, and it checks that the message's admission was written before the send."""

    name = "counting"

    def __init__(self, inline: bool) -> None:
        self.answers_inline = inline
        self.sends: Counter[str] = Counter()
        self.store: Any = None
        self.unwritten: list[str] = []

    async def send(self, phone_number_id: str, body: dict[str, Any]) -> SendOutcome:
        self.sends[body["to"]] += 1
        if not self.answers_inline:
            await asyncio.sleep(0)  # a request's await
            message = await self.store.get_message(body["biz_opaque_callback_data"])
            if message.state != "sending":
                self.unwritten.append(message.id)
        return SendOutcome("accepted", wamid=f"wamid.{body['to']}.{self.sends[body['to']]}")

    async def get_phone_number(self, phone_number_id: str, fields: Iterable[str]) -> dict[str, Any]:
        return {}

    async def register_sender(self, info: SenderInfo) -> None:
        return None

    def poll_events(self, now: float) -> list[dict[str, Any]]:
        return []

    def next_event_at(self) -> float | None:
        return None

    async def aclose(self) -> None:
        return None


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "remote"])
async def test_a_running_worker_sends_each_message_once(store_url: str, inline: bool) -> None:
    provider = Counting(inline)
    gateway = await Gateway.open(Settings(database_url=store_url, worker_id="w1", batch_size=50),
                                 clock=SystemClock(), provider=provider,
                                 dispatcher_config=DispatcherConfig(batch_size=50, idle_wait=0.2))
    excluded: list[int] = []
    claim_due = gateway.store.claim_due

    async def spying_claim(scope_ids: Sequence[str], now: float, limit: int,
                           exclude: Sequence[str] = ()) -> list[Message]:
        excluded.append(len(exclude))
        got = await claim_due(scope_ids, now, limit, exclude=exclude)
        assert not {m.id for m in got} & set(exclude)
        return got

    gateway.store.claim_due = spying_claim  # type: ignore[method-assign]
    provider.store = gateway.store
    stop = asyncio.Event()
    try:
        tenant = await gateway.auth.create_tenant("acme")
        for pnid in ("1001", "1002", "1003"):
            await gateway.intake.register_sender(tenant, SenderRequest(pnid, f"+1555000{pnid}", tier="TIER_10K"))
            await gateway.store.update_sender(pnid, {"throughput_mps": 1_000_000})  # no throttle in the way
        audience = [f"+4915100{i:06d}" for i in range(1500)]
        for i, pnid in enumerate(("1001", "1002", "1003")):
            await gateway.intake.create_campaign(tenant, CampaignRequest(
                pnid, {"name": "hello", "language": "en_US"}, [{"to": r} for r in audience[i::3]],
                category="UTILITY"))
        runner = asyncio.create_task(gateway.run(stop, dispatch=True, sync=False))
        async with asyncio.timeout(GUARD):
            while await gateway.store.count_by_state() != {"sent": len(audience)}:
                await asyncio.sleep(0.05)
        stop.set()
        await runner
        assert sorted(provider.sends) == sorted(r.lstrip("+") for r in audience)
        assert set(provider.sends.values()) == {1}  # none twice
        assert provider.unwritten == []  # no remote send before its admission was written
        one = (await gateway.store.list_messages(tenant.id, limit=1))[0]
        assert [e["state"] for e in await gateway.store.message_history(one.id)] == ["queued", "sending", "sent"]
        assert one.attempts == 1 and one.slot_expiry is not None
        if gateway.store.concurrent_calls:  # PostgreSQL: batches were claimed around a write in flight
            assert max(excluded) > 0
        else:
            assert set(excluded) == {0}
    finally:
        stop.set()
        await gateway.close()
