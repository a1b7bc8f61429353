"""Wake-ups: intake notifies once per batch, and a dispatcher in another process steps on it.

The dispatchers here poll only once an hour (``idle_wait``), so a message that goes out at all
went out because a notification woke its dispatcher: no timing is measured, the timeouts only
keep a broken build from hanging.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tiergate.adapters.provider.sandbox import SandboxProvider
from tiergate.adapters.store import SqlStore, open_store
from tiergate.clock import VirtualClock
from tiergate.core.model import MessageState
from tiergate.service.dispatcher import DispatcherConfig
from tiergate.service.gateway import Gateway
from tiergate.service.intake import CampaignRequest, MessageRequest, SenderRequest
from tiergate.service.wakeups import DUE, announce
from tiergate.settings import Settings

T0 = 1_767_571_200.0
GUARD = 30.0  # seconds before a missing wake-up fails the test (it never paces it)
TEMPLATE = {"name": "hello", "language": "en_US"}


async def _gateway(url: str, worker: str, clock: VirtualClock) -> Gateway:
    settings = Settings(database_url=url, worker_id=worker)
    return await Gateway.open(settings, clock=clock, provider=SandboxProvider(clock), wall_clock=clock,
                              dispatcher_config=DispatcherConfig(idle_wait=3600.0, lease_ttl=3600.0))


def _counting(store: Any) -> list[str]:
    """Record every channel the store is asked to notify (and still notify it)."""
    calls: list[str] = []
    original = store.notify

    async def notify(channel: str) -> None:
        calls.append(channel)
        await original(channel)

    store.notify = notify
    return calls


async def _setup(api: Gateway) -> Any:
    tenant = await api.auth.create_tenant("acme")
    await api.intake.register_sender(tenant, SenderRequest("1001", "+15550001001", tier="TIER_1K"))
    return tenant


async def test_intake_notifies_once_per_batch(tmp_path: Any) -> None:
    clock = VirtualClock(T0)
    api = await _gateway(str(tmp_path / "w.db"), "api", clock)
    try:
        tenant = await _setup(api)
        calls = _counting(api.store)
        await api.intake.submit(tenant, MessageRequest("1001", "+4915112345678", template=TEMPLATE))
        assert calls == [DUE]
        recipients = [{"to": f"+49151{n:08d}"} for n in range(200)]
        campaign, errors = await api.intake.create_campaign(
            tenant, CampaignRequest("1001", TEMPLATE, recipients, category="UTILITY"))
        assert errors == [] and calls == [DUE, DUE]  # 200 messages, one notification
        await api.campaigns.act(campaign, "pause")
        await api.campaigns.act(await api.store.get_campaign(campaign.id), "resume")
        assert calls == [DUE, DUE, DUE]  # the resume made them due again
    finally:
        await api.close()


async def test_a_failed_notification_does_not_fail_intake(tmp_path: Any) -> None:
    clock = VirtualClock(T0)
    api = await _gateway(str(tmp_path / "w.db"), "api", clock)
    try:
        tenant = await _setup(api)

        async def broken(channel: str) -> None:
            raise ConnectionError("the database went away")

        api.store.notify = broken  # type: ignore[method-assign]
        message = await api.intake.submit(tenant, MessageRequest("1001", "+4915112345678", template=TEMPLATE))
        assert message.state is MessageState.QUEUED
    finally:
        await api.close()


async def _sent(store: SqlStore, message_id: str) -> None:
    while (await store.get_message(message_id)).state is not MessageState.SENT:
        await asyncio.sleep(0.01)


@pytest.mark.postgres
async def test_a_worker_in_another_process_wakes_on_the_notification(pg_url: str) -> None:
    clock = VirtualClock(T0)
    api = await _gateway(pg_url, "api", clock)  # an API node: it queues, never dispatches
    tenant = await _setup(api)
    worker = await _gateway(pg_url, "worker-1", clock)  # its own store: its own connections
    stop = asyncio.Event()
    try:
        await worker.dispatcher.refresh_scopes()  # the worker holds the sender's scope
        run = asyncio.create_task(worker.dispatcher.run_forever(stop))
        first = await api.intake.submit(tenant, MessageRequest("1001", "+4915112345678", template=TEMPLATE))
        await asyncio.wait_for(_sent(api.store, first.id), GUARD)
        second = await api.intake.submit(tenant, MessageRequest("1001", "+4915112345679", template=TEMPLATE))
        await asyncio.wait_for(_sent(api.store, second.id), GUARD)
        stop.set()
        worker.dispatcher.wake()
        await asyncio.wait_for(run, GUARD)
    finally:
        stop.set()
        await worker.close()
        await api.close()


async def test_a_wake_up_during_a_step_is_not_lost(tmp_path: Any) -> None:
    """The event is cleared before each step, so a notification that arrives mid-step wakes the next one."""
    clock = VirtualClock(T0)
    gw = await _gateway(str(tmp_path / "w.db"), "solo", clock)
    stop = asyncio.Event()
    try:
        tenant = await _setup(gw)
        original_step = gw.dispatcher.step
        queued: list[str] = []

        async def step(refresh: bool = True) -> float | None:
            result = await original_step(refresh)
            if not queued:  # queue a message while the first (empty) step is still running
                message = await gw.intake.submit(tenant, MessageRequest("1001", "+4915112345678",
                                                                        template=TEMPLATE))
                queued.append(message.id)
            return result

        gw.dispatcher.step = step  # type: ignore[method-assign]
        run = asyncio.create_task(gw.dispatcher.run_forever(stop))
        while not queued:
            await asyncio.sleep(0.01)
        await asyncio.wait_for(_sent(gw.store, queued[0]), GUARD)  # type: ignore[arg-type]
        stop.set()
        gw.dispatcher.wake()
        await asyncio.wait_for(run, GUARD)
    finally:
        stop.set()
        await gw.close()


async def test_announce_reaches_listeners_of_this_process_on_sqlite(tmp_path: Any) -> None:
    async with open_store(str(tmp_path / "w.db")) as store:
        woke = asyncio.Event()
        stop = await store.listen(DUE, woke.set)
        await announce(store)
        assert woke.is_set()
        await stop()
