"""Simulation on the real path: storage, dispatcher and the sandbox platform under a virtual clock.

Each day at 00:00 the day's NEW recipients get a counted template; the dispatcher admits and
sends as it would in production; the sandbox (the platform's stand-in) keeps its own count, fails
anything over its limit (``violations``) and raises tiers by the policy through the webhook path.
The clock jumps straight to the next wake-up, so days pass in milliseconds of idle time.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tiergate.clock import VirtualClock
from tiergate.core.admission import Category, priority_of
from tiergate.core.model import NewMessage
from tiergate.core.tiers import parse_tier
from tiergate.core.window import DAY
from tiergate.service.dispatcher import DispatcherConfig
from tiergate.service.gctune import tuned_gc
from tiergate.service.intake import SenderRequest
from tiergate.settings import Settings

__all__ = ["EPOCH", "advance_to", "simulate_real_path"]

EPOCH = 1_767_571_200.0  # 2026-01-05 00:00:00 UTC, a Monday: day boundaries fall on midnights
SENDER_ID = "100000000000001"
PORTFOLIO_ID = "sim-portfolio"
_CHUNK = 50_000
_TEMPLATE = {"name": "simulation", "language": {"code": "en_US"}}
_NO_METADATA: dict[str, Any] = {}


def recipient_number(i: int) -> str:
    """The i-th distinct simulated recipient: valid Brazilian mobile numbers (+55 11 9xxxx-xxxx)."""
    return f"55119{i % 100_000_000:08d}"


async def simulate_real_path(
    *,
    policy: str,
    start_tier: str,
    daily: Sequence[int],
    days: int,
    quality: str = "GREEN",
    reserve: float = 0.0,
    database_url: str | None = None,
    throughput_mps: int = 1000,
    batch_size: int = 2000,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    from tiergate.adapters.provider.sandbox import SandboxProvider
    from tiergate.service.gateway import Gateway

    with tempfile.TemporaryDirectory(prefix="tiergate-sim-") as tmp:
        url = database_url or str(Path(tmp) / "sim.db")
        clock = VirtualClock(EPOCH)
        # The given quality holds for the whole run (as in the model): no block-rate re-rating.
        provider = SandboxProvider(clock, seed=1, statuses=(), keep_received=False, quality_sample=2**62)
        settings = Settings(database_url=url, batch_size=batch_size, worker_id="simulator")
        from tiergate.adapters.store import open_store

        # A throwaway file of the simulator's own needs no fsync, no journal on disk and may cache
        # all of itself (1M messages: ~0.5 GB) in larger pages; a given database keeps its defaults.
        store = open_store(url, **({} if database_url else {"synchronous": "OFF", "journal_mode": "MEMORY",
                                                            "cache_mib": 1024, "page_size": 16384}))
        gateway = await Gateway.open(settings, clock=clock, provider=provider, wall_clock=clock, store=store,
                                     dispatcher_config=DispatcherConfig(batch_size=batch_size, lease_ttl=10 * DAY,
                                                                       throttle_quantum=1.0, window_margin=0.0))
        try:
            with tuned_gc():
                return await _run(gateway, provider, clock, policy=policy, start_tier=start_tier, daily=daily,
                                  days=days, quality=quality, reserve=reserve, throughput_mps=throughput_mps,
                                  progress=progress)
        finally:
            await gateway.close()


async def _run(gateway: Any, provider: Any, clock: VirtualClock, *, policy: str, start_tier: str,
               daily: Sequence[int], days: int, quality: str, reserve: float, throughput_mps: int,
               progress: Callable[[int, int], None] | None) -> dict[str, Any]:
    store = gateway.store
    tenant = await gateway.auth.create_tenant("simulation")
    sender = await gateway.intake.register_sender(tenant, SenderRequest(
        phone_number_id=SENDER_ID, display_phone_number="15550000001", portfolio_id=PORTFOLIO_ID,
        tier=start_tier, quality=quality, policy=policy, throughput_mps=throughput_mps,
        reserve_fraction=reserve))
    scope_id = sender.scope_id
    # Marketing templates (the reserve holds back a share of the limit from them, as in the model).
    # Under RED the gateway pauses marketing; --quality is about upgrades there, so the run sends
    # utility templates (counted all the same) to show what the rating does to the tier.
    category = Category.UTILITY if quality.upper() == "RED" else Category.MARKETING
    priority = priority_of(category)
    next_recipient = 0
    rows: list[dict[str, Any]] = []
    sent_mark = 0
    total_days = max(days, 1)
    for day in range(total_days):
        day_start = EPOCH + day * DAY
        await advance_to(gateway, clock, day_start)
        tier = (await store.get_scope(scope_id)).tier
        n = daily[day] if day < len(daily) else 0
        # In chunks (a 1M day is not a million objects alive at once); the template and metadata
        # objects are shared, as nothing changes a submitted body (the insert encodes each once).
        for start in range(next_recipient, next_recipient + n, _CHUNK):
            news = [NewMessage(tenant.id, SENDER_ID, to, "template", category.value,
                               {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to,
                                "type": "template", "template": _TEMPLATE},
                               priority, metadata=_NO_METADATA, scope_id=scope_id)
                    for to in map(recipient_number, range(start, min(start + _CHUNK, next_recipient + n)))]
            await store.enqueue_messages(news, day_start)
        next_recipient += n
        await advance_to(gateway, clock, day_start + DAY - 1e-3)
        # Up to 23:59:59.999: what the crossing sends at 00:00 (freed slots) belongs to the next day.
        sent_today = gateway.dispatcher.sent_total - sent_mark
        sent_mark = gateway.dispatcher.sent_total
        backlog = await store.count_queued(scope_id)
        # the 7 calendar days ending today, 00:00 sends of the first one included: (since, until]
        unique_7d = await store.distinct_counted(scope_id, day_start - 6 * DAY - 1e-6, day_start + DAY - 1e-6)
        # Cross the boundary so the platform's day-boundary evaluation (and its webhook) lands.
        await advance_to(gateway, clock, day_start + DAY)
        tier_next = (await store.get_scope(scope_id)).tier
        rows.append({
            "day": day + 1, "tier": tier, "limit": parse_tier(tier).limit, "enqueued": n,
            "sent": sent_today,
            "backlog": backlog, "unique_7d": unique_7d, "tier_next": tier_next,
        })
        if progress:
            progress(day + 1, total_days)
    return {"policy": policy, "start_tier": parse_tier(start_tier).name, "days": rows,
            "final_tier": rows[-1]["tier_next"] if rows else start_tier, "violations": provider.violations}


async def advance_to(gateway: Any, clock: VirtualClock, until: float) -> None:
    """Run dispatcher and platform events, jumping the clock from wake-up to wake-up, up to ``until``."""
    dispatcher = gateway.dispatcher
    refresh = True
    while True:
        await gateway.pump_provider_events()
        nxt = await dispatcher.step(refresh=refresh)
        refresh = False
        await gateway.pump_provider_events()
        now = clock.now()
        if nxt is not None and nxt <= now:
            continue
        target = min(t for t in (nxt, gateway.provider.next_event_at(), until) if t is not None)
        if target <= now:
            return
        clock.set(target)
        refresh = True
