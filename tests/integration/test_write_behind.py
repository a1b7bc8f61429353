"""A running worker on each store: on PostgreSQL each batch's write is left running while the next
batch is claimed; an inline provider gets one write per message, a remote one's sends wait for
their admission's write. Every message goes exactly once."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any

import apsw
import pytest
from tests.fakes.providers import SendOnlyProvider

from tiergate.clock import SystemClock, VirtualClock
from tiergate.core.model import Message
from tiergate.ports import LeaseLost, SendOutcome
from tiergate.service.dispatcher import DispatcherConfig
from tiergate.service.gateway import Gateway
from tiergate.service.intake import CampaignRequest, SenderRequest
from tiergate.service.simulate import advance_to
from tiergate.settings import Settings

GUARD = 60.0  # seconds before a stuck drain fails the test (it never paces it)


class Counting(SendOnlyProvider):
    """Counts every send per recipient. Inline, it answers like the sandbox; otherwise like a
    remote platform, and it checks that the message's admission was written before the send."""

    name = "counting"

    def __init__(self, inline: bool) -> None:
        super().__init__(inline)
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


@contextlib.asynccontextmanager
async def first_write_fails(tmp_path: Any, provider: Counting, recipients: int, error: Exception,
                            tier: str = "TIER_1K") -> AsyncIterator[tuple[Gateway, VirtualClock, list[str], list[int]]]:
    """A gateway on SQLite, told it may overlap calls, stepped by hand (so the order is exact), with
    a campaign of ``recipients`` queued and a store whose first fenced write raises ``error``.
    Yields the gateway, its clock, the audience, and the sizes of the writes that failed."""
    clock = VirtualClock(1_767_571_200.0)
    gateway = await Gateway.open(Settings(database_url=str(tmp_path / "wb.db"), worker_id="w1", batch_size=20),
                                 clock=clock, wall_clock=clock, provider=provider,
                                 dispatcher_config=DispatcherConfig(batch_size=20))
    try:
        store = gateway.store
        provider.store = store
        store.concurrent_calls = True  # type: ignore[misc]
        tenant = await gateway.auth.create_tenant("acme")
        await gateway.intake.register_sender(tenant, SenderRequest("1001", "+15550001001", tier=tier))
        await store.update_sender("1001", {"throughput_mps": 1_000_000})
        audience = [f"+4915100{i:06d}" for i in range(recipients)]
        await gateway.intake.create_campaign(tenant, CampaignRequest(
            "1001", {"name": "hello", "language": "en_US"}, [{"to": r} for r in audience], category="UTILITY"))
        real_apply = store.apply_updates
        failed: list[int] = []

        async def flaky_apply(updates: Any, ledger: Any = (), lease: Any = None) -> int:
            if lease is not None and not failed:
                failed.append(len(updates))
                raise error
            return await real_apply(updates, ledger, lease)

        store.apply_updates = flaky_apply  # type: ignore[method-assign]
        gateway.dispatcher.overlap_sends = True
        yield gateway, clock, audience, failed
    finally:
        await gateway.close()


def lease_lost_once(tmp_path: Any, provider: Counting,
                    recipients: int) -> contextlib.AbstractAsyncContextManager[tuple[Gateway, VirtualClock, list[str],
                                                                                        list[int]]]:
    return first_write_fails(tmp_path, provider, recipients, LeaseLost("taken over (test)"))


async def test_a_write_behind_that_loses_its_lease_is_redone_by_the_next_steps(tmp_path: Any) -> None:
    """The write left running fails with LeaseLost: the next step gives its scopes up and
    re-reads them, the batch (never recorded) is claimed again, and everything ends sent once in
    the store."""
    provider = Counting(inline=True)
    async with lease_lost_once(tmp_path, provider, 50) as (gateway, clock, audience, failed):
        d, store = gateway.dispatcher, gateway.store
        assert await d.step() == clock.now()  # batch 1 sent inline, its write left running
        assert d._pending_write is not None and len(d._writing) == 20
        assert await d.step(refresh=False) == clock.now()  # the write's LeaseLost surfaces here
        assert failed == [20] and d._pending_write is None and not d._scopes
        # Batch 2 was claimed around the failing write and sent before it surfaced: neither batch
        # was recorded, so both go again (after the pair rate's few seconds).
        await advance_to(gateway, clock, clock.now() + 60)
        await d._flush_write()
        assert await store.count_by_state() == {"sent": 50}
        assert sorted(r for r, _ in await store.load_ledger("sender:1001", clock.now())) == sorted(
            r.lstrip("+") for r in audience)
        assert sorted(provider.sends.values()) == [1] * 10 + [2] * 40


async def test_a_remote_platform_gets_nothing_whose_admission_write_failed(tmp_path: Any) -> None:
    """Write-behind with a remote platform: the batch's sends wait for its admission's write; when
    that write loses its lease they never leave, and the batch goes once, later, when written."""
    provider = Counting(inline=False)
    async with lease_lost_once(tmp_path, provider, 30) as (gateway, clock, _audience, failed):
        d = gateway.dispatcher
        await d.step()  # batch 1 admitted, its write left running, its sends waiting on it
        await asyncio.gather(*list(d._sending))
        assert failed == [20] and provider.sends == Counter()  # nothing left: the write failed
        await advance_to(gateway, clock, clock.now() + 60)
        await asyncio.gather(*list(d._sending))
        await d._flush_write()
        assert await gateway.store.count_by_state() == {"sent": 30}
        assert sorted(provider.sends.values()) == [1] * 30 and provider.unwritten == []


async def test_an_admission_write_that_failed_on_a_full_disk_holds_no_slots(tmp_path: Any) -> None:
    """The batch's admission write fails (the disk is full): nothing was written and nothing left
    for the platform, so its admissions are undone. A TIER_250 number with 250 queued still sends
    all 250 in the next minute; with the 20 slots kept, 20 would wait a day for capacity no one used."""
    provider = Counting(inline=False)
    full = apsw.FullError("database or disk is full")
    async with first_write_fails(tmp_path, provider, 250, full, tier="TIER_250") as (gateway, clock, _, failed):
        d = gateway.dispatcher
        await d.step()  # batch 1 admitted, its write left running, its sends waiting on it
        await asyncio.gather(*list(d._sending))
        assert failed == [20] and provider.sends == Counter()
        with pytest.raises(apsw.FullError):
            await d.step(refresh=False)  # the write's failure surfaces at the next step
        assert d._scopes["sender:1001"].window.usage(clock.now()) == 0  # the 20 admissions undone
        await advance_to(gateway, clock, clock.now() + 60)
        await asyncio.gather(*list(d._sending))
        await d._flush_write()
        assert await gateway.store.count_by_state() == {"sent": 250}
        assert sorted(provider.sends.values()) == [1] * 250 and provider.unwritten == []


async def test_write_behind_is_a_setting(tmp_path: Any) -> None:
    """``TIERGATE_WRITE_BEHIND=0`` reaches the dispatcher; on by default."""
    on = Settings.from_env({}, database_url=str(tmp_path / "on.db"))
    off = Settings.from_env({"TIERGATE_WRITE_BEHIND": "0"}, database_url=str(tmp_path / "off.db"))
    assert on.write_behind and not off.write_behind
    for settings, expected in ((on, True), (off, False)):
        gateway = await Gateway.open(settings, clock=SystemClock(), provider=Counting(inline=True))
        try:
            assert gateway.dispatcher.config.write_behind is expected
        finally:
            await gateway.close()
