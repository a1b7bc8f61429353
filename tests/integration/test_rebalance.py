"""Scopes spread over the workers as they come and go: a worker that joins gets its share without
anyone stopping, and nothing is sent twice or left ``unknown`` by the hand-over."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
from tests.integration.test_write_behind import Counting

from tiergate.api.app import create_app
from tiergate.clock import SystemClock
from tiergate.ports import SendOutcome
from tiergate.service.dispatcher import DispatcherConfig
from tiergate.service.gateway import Gateway
from tiergate.service.intake import CampaignRequest, SenderRequest
from tiergate.settings import Settings

SENDERS = ("1001", "1002", "1003", "1004")
GUARD = 60.0


async def open_worker(store_url: str, worker_id: str, provider: Counting) -> Gateway:
    # Leases of 1.5 s: each worker renews (and rebalances) every 0.5 s.
    return await Gateway.open(Settings(database_url=store_url, worker_id=worker_id, batch_size=20),
                              clock=SystemClock(), provider=provider,
                              dispatcher_config=DispatcherConfig(batch_size=20, idle_wait=0.1, lease_ttl=1.5))


async def owners(gateway: Gateway) -> Counter[str]:
    """Scopes per worker, as the lease rows say (what an operator reads)."""
    async with gateway.store.reader() as tx:
        rows = await tx.fetchall("SELECT lease_owner FROM scopes WHERE lease_owner IS NOT NULL")
    return Counter(str(owner) for owner, in rows)


class Slow(Counting):
    """A remote platform that takes 300 ms to answer, as the real one may: a busy sender always has
    sends in flight, so a scope it gives back must drain first."""

    async def send(self, phone_number_id: str, body: dict[str, Any]) -> SendOutcome:
        await asyncio.sleep(0.3)
        return await super().send(phone_number_id, body)


async def test_a_worker_that_joins_takes_its_share_from_the_one_running(store_url: str) -> None:
    provider = Slow(inline=False)
    first = await open_worker(store_url, "w1", provider)
    second: Gateway | None = None
    provider.store = first.store
    stops = [asyncio.Event(), asyncio.Event()]
    runners: list[asyncio.Task[None]] = []
    try:
        tenant = await first.auth.create_tenant("acme")
        audience = [f"+4915100{i:06d}" for i in range(1600)]
        for i, pnid in enumerate(SENDERS):
            await first.intake.register_sender(tenant, SenderRequest(pnid, f"+1555000{pnid}", tier="TIER_10K"))
            await first.store.update_sender(pnid, {"throughput_mps": 100})  # 4 s of work for each sender
            await first.intake.create_campaign(tenant, CampaignRequest(
                pnid, {"name": "hello", "language": "en_US"}, [{"to": r} for r in audience[i::4]],
                category="UTILITY"))
        runners.append(asyncio.create_task(first.run(stops[0], dispatch=True, sync=False)))
        async with asyncio.timeout(GUARD):
            while (await owners(first))["w1"] < len(SENDERS):
                await asyncio.sleep(0.05)
        assert await first.store.count_by_state() != {"sent": len(audience)}  # still sending

        second = await open_worker(store_url, "w2", provider)
        runners.append(asyncio.create_task(second.run(stops[1], dispatch=True, sync=False)))
        async with asyncio.timeout(GUARD):  # w1 gives two back at its next renewal, and w2 takes them
            while await owners(first) != Counter({"w1": 2, "w2": 2}):
                await asyncio.sleep(0.05)
            # Handed over mid-send: w1 stopped claiming from them and gave them back once their
            # sends in flight were answered, not when their work was done.
            assert (await first.store.count_by_state()).get("queued", 0) > 0
            while await first.store.count_by_state() != {"sent": len(audience)}:
                await asyncio.sleep(0.05)
        assert sorted(provider.sends) == sorted(r.lstrip("+") for r in audience)
        assert set(provider.sends.values()) == {1}  # none twice, none left 'unknown' by the hand-over
        assert provider.unwritten == []

        # What an operator sees: GET /v1/workers (admin), and each process's gauges.
        _, key = await first.auth.create_key(tenant.id, admin=True)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(first)), base_url="http://t",
                                     headers={"Authorization": f"Bearer {key}"}) as client:
            seen = (await client.get("/v1/workers")).json()
            assert seen["share"] == 2 and seen["free"] == [], seen
            assert [(w["id"], len(w["scopes"])) for w in seen["workers"]] == [("w1", 2), ("w2", 2)], seen
            assert all(w["alive_until"] is not None for w in seen["workers"])
            _, plain = await first.auth.create_key(tenant.id)
            refused = await client.get("/v1/workers", headers={"Authorization": f"Bearer {plain}"})
            assert refused.status_code == 403, refused.text
            assert "tiergate_scopes_held 2.0" in (await client.get("/metrics")).text

        stops[1].set()  # w2 stops: its scopes go back to w1 at w1's next renewal
        await runners[1]
        await second.close()
        second = None
        async with asyncio.timeout(GUARD):
            while await owners(first) != Counter({"w1": 4}):
                await asyncio.sleep(0.05)
    finally:
        for stop in stops:
            stop.set()
        await asyncio.gather(*runners, return_exceptions=True)
        if second is not None:
            await second.close()
        await first.close()


async def test_a_gateway_that_never_dispatched_leaves_the_leases_of_its_worker_id_alone(store_url: str) -> None:
    """A CLI command run with the same ``TIERGATE_WORKER_ID`` as a running worker (one environment
    for both) opens and closes a gateway: that must not hand the worker's scopes away."""
    worker = await open_worker(store_url, "w1", Counting(inline=False))
    try:
        tenant = await worker.auth.create_tenant("acme")
        await worker.intake.register_sender(tenant, SenderRequest("1001", "+15550001001", tier="TIER_1K"))
        assert await worker.dispatcher.refresh_scopes() == ["sender:1001"]
        cli = await open_worker(store_url, "w1", Counting(inline=False))
        await cli.close()
        assert await owners(worker) == Counter({"w1": 1})
        assert [w.id for w in await worker.store.list_workers(worker.dispatcher.wall.now())] == ["w1"]
    finally:
        await worker.close()
    assert await owners_after_close(store_url) == Counter()  # the worker itself gives them back


async def owners_after_close(store_url: str) -> Counter[str]:
    gateway = await open_worker(store_url, "observer", Counting(inline=False))
    try:
        return await owners(gateway)
    finally:
        await gateway.close()
