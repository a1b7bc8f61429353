"""A pure, in-memory replay of the ``tiergate simulate`` scenario, day by day, event by event.

Each day at 00:00 (local) the day's NEW distinct recipients are enqueued as counted marketing
templates; what cannot go carries over. Every message goes through ``core.admission.decide`` against a
``RollingWindow`` (the real admission path), the tier moves by the policy model, and the clock jumps
straight to the next wake-up: a window release, a scheduled upgrade, or the next day. An independent,
deliberately simple checker then recounts every rolling 24 h window from the raw send log.

``run_simulation`` is the one entry point the ``simulate`` command calls, so a later version that
drives the real storage and dispatcher can replace it behind the same signature and output.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter, deque
from collections.abc import Sequence
from typing import Any

from tiergate.core.admission import Category, Gate, MessageFacts, ScopeLimits, decide
from tiergate.core.policy import Policy, PolicyState, SendHistory, day_index, day_start, get_policy, parse_quality
from tiergate.core.tiers import Tier, parse_tier
from tiergate.core.window import DAY, RollingWindow

__all__ = ["count_violations", "run_simulation"]

UNIQUE_DAYS = 7


def run_simulation(policy: str | Policy = "classic", start_tier: str | Tier = "TIER_1K",
                   daily: Sequence[int] = (), days: int | None = None, quality: str = "GREEN",
                   reserve: float = 0.0, *, flagged: bool = False, utc_offset: float = 0.0,
                   category: Category = Category.MARKETING) -> dict[str, Any]:
    """Replay the scenario; returns the ``tiergate simulate --json`` document.

    ``daily[i]``: new distinct recipients enqueued at the start of day ``i + 1``; ``days`` defaults to
    ``len(daily)`` (later days enqueue nothing). ``ValueError`` for bad input.
    """
    rules = get_policy(policy)
    tier = parse_tier(start_tier)
    if not tier.known:
        raise ValueError(f"unknown tier {tier.name!r}: use TIER_250, TIER_1K, ... TIER_UNLIMITED")
    if any(n < 0 for n in daily):
        raise ValueError("daily counts must not be negative")
    total_days = len(daily) if days is None else days
    if total_days < 1:
        raise ValueError("simulate at least one day (give --daily or --days)")
    if not 0.0 <= reserve < 1.0:
        raise ValueError("the reservation must be in [0, 1)")
    state = PolicyState(tier=tier, quality=parse_quality(quality, strict=True), flagged=flagged)

    window = RollingWindow()
    history = SendHistory(windows={UNIQUE_DAYS, *rules.reach_windows}, utc_offset=utc_offset)
    backlog: deque[str] = deque()
    log: list[tuple[float, str]] = []  # every counted send, for the independent checker
    limits_in_force: list[tuple[float, int | None]] = []  # (from, limit) for the checker
    rows: list[dict[str, Any]] = []
    first_day = day_index(0.0, utc_offset)

    for number in range(1, total_days + 1):
        start = day_start(first_day + number - 1, utc_offset)
        end = start + DAY
        day_tier = state.tier
        enqueued = daily[number - 1] if number <= len(daily) else 0
        backlog.extend(f"d{number}-{i}" for i in range(enqueued))
        sent = 0
        now = start
        while True:
            state = rules.observe(rules.apply_due(state, now), history.rolling_reach(now), now)
            if not limits_in_force or limits_in_force[-1][1] != state.tier.limit:
                limits_in_force.append((now, state.tier.limit))
            limits = ScopeLimits(limit=state.tier.limit, reserve_fraction=reserve)
            retry_at: float | None = None
            admitted: list[str] = []
            while backlog:
                decision = decide(window, MessageFacts(backlog[0], True, category, False), limits, now)
                if decision.gate is not Gate.ADMIT:
                    retry_at = decision.until  # the rest are new recipients too: they wait as well
                    break
                admitted.append(backlog.popleft())
            history.record_many(admitted, now)
            log.extend((now, recipient) for recipient in admitted)
            sent += len(admitted)
            state = rules.observe(state, history.rolling_reach(now), now)
            wake = min(t for t in (end, retry_at, state.pending_upgrade_at) if t is not None and t > now)
            if wake >= end:
                break
            now = wake
        # The boundary that ends this day: what is due by then, then the day-boundary rules.
        state = rules.end_of_day(rules.apply_due(state, end), history.day_reach(end), end)
        rows.append({
            "day": number,
            "tier": day_tier.name,
            "limit": day_tier.limit,
            "enqueued": enqueued,
            "sent": sent,
            "backlog": len(backlog),
            "unique_7d": history.distinct_days(day_index(start, utc_offset), UNIQUE_DAYS),
            "tier_next": state.tier.name,
        })
    return {
        "policy": rules.name,
        "start_tier": tier.name,
        "days": rows,
        "final_tier": state.tier.name,
        "violations": count_violations(log, limits_in_force),
    }


def count_violations(sends: Sequence[tuple[float, str]], limits: Sequence[tuple[float, int | None]],
                     span: float = DAY) -> int:
    """Times a counted send brought a new recipient into a rolling window already at its limit.

    Recounts from the raw (time, recipient) log with a multiset of the window's sends, independently
    of ``RollingWindow``: after the sends at each moment ``t``, the distinct recipients with a send in
    ``(t - span, t]`` must not exceed the limit in force at ``t`` (``limits``: (from, limit) steps,
    ``None`` = unlimited) whenever that moment added someone new.
    """
    ordered = sorted(sends)
    starts = [at for at, _ in limits]
    in_window: Counter[str] = Counter()
    queue: deque[tuple[float, str]] = deque()
    violations = 0
    i = 0
    while i < len(ordered):
        now = ordered[i][0]
        while queue and queue[0][0] + span <= now:
            _, old = queue.popleft()
            in_window[old] -= 1
            if not in_window[old]:
                del in_window[old]
        before = len(in_window)
        while i < len(ordered) and ordered[i][0] == now:
            queue.append(ordered[i])
            in_window[ordered[i][1]] += 1
            i += 1
        position = bisect_right(starts, now) - 1
        limit = limits[position][1] if position >= 0 else None
        cap = math.inf if limit is None else limit
        if len(in_window) > before and len(in_window) > cap:
            violations += 1
    return violations
