"""The fastest day-by-day schedule for an audience of new recipients, and tier forecasts.

The model: the plan starts at ``start`` (a local day boundary unless said otherwise) with the scope's
tier and the recipients it already reached (``history``: (time, recipients whose latest counted send
was then), all before ``start``). Every recipient of the audience is new, so counts are sums. Sends may
go at any moment, each counted recipient occupies the rolling 24 h window, a daily cap limits each
local day, a reservation keeps a share of the limit for utility and authentication (the campaign is
marketing), and the tier moves exactly as the policy says.

Greedy is optimal: at every moment send as many as the window, the cap and the audience allow. By
induction over events, greedy has sent at least as many recipients as any feasible schedule by every
moment, its reach over any trailing window is at least as large until its audience runs out (each day
it sends the most any schedule could under a tier no lower than that schedule's), so every upgrade
comes no later and completion is earliest. ``tests/unit/test_planner.py`` checks this against
exhaustive search on scaled-down ladders. Greedy only ever acts at day boundaries, scheduled upgrades
and window releases, so the engine jumps from event to event; once the tier can no longer move, every
remaining day sends min(limit, cap) (all of a day's sends fit in one 24 h window, and every recipient
counted at the day's start frees during the day), which the engine fills in without stepping.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

from tiergate.core.admission import Category, ScopeLimits
from tiergate.core.policy import Policy, PolicyState, Timing, day_index, day_start, get_policy
from tiergate.core.tiers import Tier, parse_tier
from tiergate.core.window import DAY

__all__ = [
    "DEFAULT_MAX_DAYS",
    "Forecast",
    "Plan",
    "PlanDay",
    "PlanDays",
    "forecast",
    "history_from_reach",
    "plan",
]

DEFAULT_MAX_DAYS = 36_500
_UNBOUNDED = 1 << 62


@dataclass(frozen=True, slots=True)
class PlanDay:
    day: int  # 1 = the day the plan starts
    tier: Tier  # in force when the day starts
    send: int
    cumulative: int


class PlanDays(Sequence[PlanDay]):
    """A plan's days, stored as runs of identical days and built into ``PlanDay`` rows on demand.

    A steady stretch of 40,000 days (10M recipients at TIER_250) is one run, so planning stays
    proportional to the tier changes, not to the length of the output.
    """

    __slots__ = ("_runs", "_starts")

    def __init__(self, runs: Sequence[tuple[int, int, Tier, int, int]] = ()) -> None:
        # (first day, number of days, tier, send each day, cumulative before the first day)
        self._runs = tuple(runs)
        starts, total = [], 0
        for run in self._runs:
            starts.append(total)
            total += run[1]
        self._starts = (*starts, total)

    def __len__(self) -> int:
        return self._starts[-1]

    @overload
    def __getitem__(self, index: int) -> PlanDay: ...
    @overload
    def __getitem__(self, index: slice) -> list[PlanDay]: ...
    def __getitem__(self, index: int | slice) -> PlanDay | list[PlanDay]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("plan day out of range")
        run = bisect_right(self._starts, index) - 1
        first, _, tier, send, before = self._runs[run]
        k = index - self._starts[run]
        return PlanDay(first + k, tier, send, before + send * (k + 1))

    def __iter__(self) -> Iterator[PlanDay]:
        for first, count, tier, send, before in self._runs:
            for k in range(count):
                yield PlanDay(first + k, tier, send, before + send * (k + 1))

    def as_dicts(self) -> list[dict[str, Any]]:
        """The rows of the JSON contract: day, tier, send, cumulative."""
        return [{"day": first + k, "tier": tier.name, "send": send, "cumulative": before + send * (k + 1)}
                for first, count, tier, send, before in self._runs for k in range(count)]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    def __hash__(self) -> int:
        return hash(self._runs)

    def __repr__(self) -> str:
        return f"PlanDays({len(self)} days in {len(self._runs)} runs)"


@dataclass(frozen=True, slots=True)
class Plan:
    policy: str
    start_tier: Tier
    audience: int
    days: PlanDays
    total_days: int  # the day the last recipient is reached (0 for an empty audience)
    final_tier: Tier  # in force when the day after the last one starts

    def to_dict(self) -> dict[str, Any]:
        """The ``tiergate plan --json`` contract."""
        return {
            "policy": self.policy,
            "start_tier": self.start_tier.name,
            "audience": self.audience,
            "days": self.days.as_dicts(),
            "total_days": self.total_days,
            "final_tier": self.final_tier.name,
        }


@dataclass(frozen=True, slots=True)
class Forecast:
    """Where the tier goes next, and what it takes.

    ``status``: ``earned`` (``next_tier`` takes effect at ``at``), ``reachable`` (``needed`` more new
    recipients at the fastest pace the limit allows bring it at ``at``), ``verification`` (only a
    verification event lifts this tier), ``blocked`` (quality or FLAGGED prevents upgrades),
    ``unreachable`` (the cap or reservation never lets the threshold be met), ``top`` or ``unknown``
    (a tier the parser did not understand). ``days``: local days from ``now``'s day to ``at``'s.
    """

    tier: Tier
    next_tier: Tier | None
    status: str
    at: float | None = None
    needed: int | None = None
    days: int | None = None
    reason: str = ""


def history_from_reach(last_7_days: int = 0, last_30_days: int | None = None, *, start: float = 0.0,
                       utc_offset: float = 0.0) -> list[tuple[float, int]]:
    """A history from two totals: ``last_7_days`` reached on the day before ``start`` (at its first
    moment, so no longer in the 24 h window), the rest of ``last_30_days`` on the 8th day before it.

    The placement is the most favourable the totals allow; pass exact batches when they are known.
    """
    if last_7_days < 0 or (last_30_days is not None and last_30_days < last_7_days):
        raise ValueError("history: last_7_days >= 0 and last_30_days >= last_7_days")
    today = day_index(start, utc_offset)
    batches = []
    if last_30_days is not None and last_30_days > last_7_days:
        batches.append((day_start(today - 8, utc_offset), last_30_days - last_7_days))
    if last_7_days:
        batches.append((day_start(today - 1, utc_offset), last_7_days))
    return batches


class _Ledger:
    """Counted sends as (time, recipients) batches of distinct recipients: range sums are reaches."""

    __slots__ = ("cum", "times")

    def __init__(self, batches: Iterable[tuple[float, int]]) -> None:
        self.times: list[float] = []
        self.cum: list[int] = [0]  # cum[i]: recipients in the first i batches
        for at, count in sorted(batches):
            if count < 0:
                raise ValueError("history counts are not negative")
            if count:
                self.add(at, count)

    def add(self, at: float, count: int) -> None:
        if self.times and self.times[-1] == at:
            self.cum[-1] += count
        else:
            self.times.append(at)
            self.cum.append(self.cum[-1] + count)

    def rolling(self, now: float, span: float) -> int:
        """Recipients with their send in ``(now - span, now]``."""
        times, cum = self.times, self.cum
        return cum[bisect_right(times, now)] - cum[bisect_right(times, now - span)]

    def between(self, start: float, end: float) -> int:
        """Recipients with their send in ``[start, end)``."""
        times, cum = self.times, self.cum
        return cum[bisect_left(times, end)] - cum[bisect_left(times, start)]

    def first_release_after(self, now: float) -> float | None:
        """When the oldest recipient still in the 24 h window leaves it."""
        i = bisect_right(self.times, now - DAY)
        return self.times[i] + DAY if i < len(self.times) and self.times[i] <= now else None

    def last_time(self) -> float:
        return self.times[-1] if self.times else -math.inf


_CAPACITIES: dict[tuple[Tier, float], float] = {}


def _capacity(tier: Tier, reserve: float) -> float:
    """The campaign's (marketing) share of the tier's limit, as admission computes it."""
    key = (tier, reserve)
    capacity = _CAPACITIES.get(key)
    if capacity is None:
        capacity = ScopeLimits(limit=tier.limit, reserve_fraction=reserve).capacity_for(Category.MARKETING)
        if len(_CAPACITIES) < 4096:
            _CAPACITIES[key] = capacity
    return capacity


class _Greedy:
    """Greedy sending from ``start``, event by event, recording the days as it goes."""

    def __init__(self, policy: Policy, state: PolicyState, history: Iterable[tuple[float, int]],
                 start: float, utc_offset: float, daily_cap: int | None, reserve: float) -> None:
        self.policy, self.state, self.utc_offset = policy, state, utc_offset
        self.daily_cap, self.reserve = daily_cap, reserve
        self.ledger = _Ledger(batches=history)
        if self.ledger.last_time() > start:
            raise ValueError("history must end before the plan starts")
        self.history_end = self.ledger.last_time()
        self.t = start
        self.first_day = self.day = day_index(start, utc_offset)
        self.boundary = day_start(self.day + 1, utc_offset)
        self.sent_today = 0
        self.sent = 0
        self.tier_since = start  # when the tier in force last changed (or the plan started)
        self.runs: list[tuple[int, int, Tier, int, int]] = []  # see PlanDays
        self.day_count = 0
        self.day_tier = state.tier
        self.day_send = 0

    # -- one moment -------------------------------------------------------------------------
    def settle(self) -> None:
        """Apply what is due at ``t`` and schedule what the reach has earned."""
        policy = self.policy
        while True:
            before = self.state.tier
            self.state = policy.observe(policy.apply_due(self.state, self.t), self._rolling(), self.t)
            if self.state.tier != before:
                self.tier_since = self.t
            pending = self.state.pending_upgrade_at
            if pending is None or pending > self.t:
                return

    def send(self, wanted: int) -> int:
        """Send up to ``wanted`` now; returns how many went."""
        room = _capacity(self.state.tier, self.reserve) - self.ledger.rolling(self.t, DAY)
        if self.daily_cap is not None:
            room = min(room, self.daily_cap - self.sent_today)
        count = 0 if room < 1 else wanted if room == math.inf else min(wanted, int(room))
        if count > 0:
            self.ledger.add(self.t, count)
            self.sent_today += count
            self.sent += count
            self.day_send += count
            self.settle()
        return count

    def next_event(self, window_bound: bool) -> float:
        """The next moment something can change before (or at) the day boundary."""
        candidates = [self.boundary]
        pending = self.state.pending_upgrade_at
        if pending is not None and pending > self.t:
            candidates.append(pending)
        if window_bound:
            release = self.ledger.first_release_after(self.t)
            if release is not None and release > self.t:
                candidates.append(release)
        return min(candidates)

    def close_day(self) -> None:
        """Record the day and move to the next boundary, where the day-boundary rules are judged."""
        self.runs.append((self.day - self.first_day + 1, 1, self.day_tier, self.day_send, self.sent - self.day_send))
        self.day_count += 1
        self.t = self.boundary
        policy, before = self.policy, self.state.tier
        self.state = policy.apply_due(self.state, self.t)
        self.state = policy.end_of_day(self.state, self._day_reach(), self.t)
        if self.state.tier != before:
            self.tier_since = self.t
        self.day += 1
        self.boundary = day_start(self.day + 1, self.utc_offset)
        self.day_tier, self.day_send, self.sent_today = self.state.tier, 0, 0

    # -- reaches ----------------------------------------------------------------------------
    def _rolling(self) -> dict[int, int]:
        return {days: self.ledger.rolling(self.t, days * DAY) for days in self.policy.reach_windows}

    def _day_reach(self) -> dict[int, int]:
        end, offset = self.day + 1, self.utc_offset
        return {days: self.ledger.between(day_start(end - days, offset), day_start(end, offset))
                for days in self.policy.reach_windows}

    # -- the steady state -------------------------------------------------------------------
    def frozen_pace(self) -> float | None:
        """Recipients per day from now on if the tier can never move again, else ``None``."""
        state, policy = self.state, self.policy
        capacity = _capacity(state.tier, self.reserve)
        per_day = capacity if self.daily_cap is None else min(capacity, self.daily_cap)
        if not policy.can_move(state):
            return per_day
        rule = policy.upgrade_rule(state.tier)
        if state.pending_upgrade_at is not None or rule is None or not rule.allows(state.quality, state.flagged):
            return None  # a downgrade (or a scheduled upgrade) may still come
        if policy.downgrade is not None and policy.downgrade.bad(state.quality, state.flagged):
            return None
        # The rule is allowed but may be out of reach for good: bound any future reach.
        window = rule.window_days
        settled_since = self.t - (window + 1) * DAY
        if self.history_end > settled_since or self.tier_since > settled_since:
            return None
        if rule.timing is Timing.DAY_BOUNDARY:
            bound = window * per_day
        else:
            bound = min(capacity * window, math.inf if self.daily_cap is None else self.daily_cap * (window + 1))
        return per_day if bound < rule.threshold(state.tier) else None


def _start_state(start: Tier | str | PolicyState, quality: str) -> PolicyState:
    state = start if isinstance(start, PolicyState) else PolicyState(tier=parse_tier(start), quality=quality)
    if not state.tier.known:
        raise ValueError(f"unknown tier {state.tier.name!r}: use TIER_250, TIER_1K, ... TIER_UNLIMITED")
    return state


def _check_limits(daily_cap: int | None, reserve: float) -> None:
    if daily_cap is not None and daily_cap < 1:
        raise ValueError("the daily cap must be at least 1")
    if not 0.0 <= reserve < 1.0:
        raise ValueError("the reservation must be in [0, 1)")


def plan(audience: int, policy: Policy | str = "classic", start: Tier | str | PolicyState = "TIER_1K", *,
         history: Iterable[tuple[float, int]] = (), daily_cap: int | None = None, reserve: float = 0.0,
         quality: str = "GREEN", start_at: float = 0.0, utc_offset: float = 0.0,
         max_days: int = DEFAULT_MAX_DAYS) -> Plan:
    """The fastest schedule reaching ``audience`` new recipients (see the module docstring).

    ``start``: the tier in force at ``start_at`` (with ``quality``), or a full ``PolicyState``.
    Raises ``ValueError`` for bad input, and when the audience cannot be reached within ``max_days``.
    """
    if audience < 0:
        raise ValueError("the audience must not be negative")
    _check_limits(daily_cap, reserve)
    rules = get_policy(policy)
    state = _start_state(start, quality)
    engine = _Greedy(rules, state, history, start_at, utc_offset, daily_cap, reserve)
    remaining = audience
    while remaining > 0:
        engine.settle()
        wanted = remaining
        remaining -= engine.send(wanted)
        if remaining == 0:
            break
        window_bound = engine.sent_today < (daily_cap or _UNBOUNDED)
        at = engine.next_event(window_bound)
        if at < engine.boundary:
            engine.t = at
            continue
        engine.close_day()
        if engine.day_count >= max_days:
            raise ValueError(_too_long(max_days, engine))
        pace = engine.frozen_pace()
        if pace is not None:
            remaining = _fill_steady_days(engine, remaining, pace, max_days)
    # Finish the last day: whatever is scheduled before its end, then its boundary.
    if audience > 0:
        while True:
            engine.settle()
            at = engine.next_event(window_bound=False)
            if at >= engine.boundary:
                break
            engine.t = at
        engine.close_day()
    days = PlanDays(engine.runs)
    return Plan(policy=rules.name, start_tier=state.tier, audience=audience, days=days,
                total_days=len(days), final_tier=engine.state.tier)


def _fill_steady_days(engine: _Greedy, remaining: int, pace: float, max_days: int) -> int:
    """Fill every day but the last at ``pace``; returns what the last day (stepped normally) sends."""
    if pace == math.inf:
        return remaining  # unlimited: the normal step sends everything today
    per_day = int(pace)
    if per_day < 1:
        raise ValueError(
            f"the audience can never be reached: {engine.state.tier.name} leaves no room for this campaign"
            " (the reservation takes it all)")
    full_days = (remaining - 1) // per_day
    if engine.day_count + full_days + 1 > max_days:
        raise ValueError(_too_long(max_days, engine, per_day))
    if full_days == 0:
        return remaining
    tier, first = engine.state.tier, engine.day - engine.first_day + 1
    sent = engine.sent
    engine.runs.append((first, full_days, tier, per_day, sent))
    engine.day_count += full_days
    engine.sent = sent + per_day * full_days
    engine.day += full_days
    engine.t = day_start(engine.day, engine.utc_offset)
    engine.boundary = day_start(engine.day + 1, engine.utc_offset)
    engine.day_tier, engine.day_send, engine.sent_today = tier, 0, 0
    # The skipped days are not in the ledger. That cannot change the last day: the tier is frozen and
    # a day always holds ``per_day`` (see the module docstring), so it sends its share in full.
    return remaining - per_day * full_days


def _too_long(max_days: int, engine: _Greedy, per_day: int | None = None) -> str:
    pace = f" at {per_day:,} a day" if per_day else ""
    return (f"the audience cannot be reached within {max_days:,} days{pace} on {engine.state.tier.name}"
            " (raise the daily cap, or verify the number if it is unverified)")


def forecast(policy: Policy | str, state: PolicyState, now: float, *,
             history: Iterable[tuple[float, int]] = (), daily_cap: int | None = None, reserve: float = 0.0,
             utc_offset: float = 0.0, horizon_days: int = 400) -> Forecast:
    """What the next tier is, when it comes at the fastest pace, and how many more new recipients the
    rule wants now (its threshold minus the reach it counts at ``now``).

    ``history``: the scope's counted sends up to ``now`` as (time, recipients whose latest counted
    send was then) batches, e.g. ``SendHistory.batches()``.
    """
    _check_limits(daily_cap, reserve)
    rules = get_policy(policy)
    state = rules.apply_due(state, now)
    tier = state.tier
    if not tier.known:
        return Forecast(tier, None, "unknown", reason=f"tier {tier.name!r} is not one tiergate understands")
    above = rules.tier_above(tier)
    if above is None:
        return Forecast(tier, None, "top", reason="the top of the ladder")
    rule = rules.upgrade_rule(tier)
    if rule is None:
        return Forecast(tier, above, "verification", reason=f"only verification lifts {tier.name}")
    if not rule.allows(state.quality, state.flagged):
        why = "FLAGGED" if state.flagged and rule.blocked_when_flagged else f"quality {state.quality}"
        return Forecast(tier, above, "blocked", reason=f"{why} prevents upgrades")
    today = day_index(now, utc_offset)
    if state.pending_upgrade_at is not None:
        at = state.pending_upgrade_at
        return Forecast(tier, above, "earned", at=at, needed=0, days=day_index(at, utc_offset) - today,
                        reason="the threshold was crossed; the upgrade is scheduled")
    engine = _Greedy(rules, state, history, now, utc_offset, daily_cap, reserve)
    if rule.timing is Timing.DAY_BOUNDARY:
        since = day_start(today - rule.window_days + 1, utc_offset)
        reach = engine.ledger.between(since, day_start(today + 1, utc_offset))
    else:
        reach = engine.ledger.rolling(now, rule.window_days * DAY)
    needed = max(0, rule.threshold(tier) - reach)
    if not _run_until_tier_moves(engine, tier, horizon_days):
        return Forecast(tier, above, "unreachable", needed=needed, reason=(
            f"{rule.describe(tier)}; the cap or reservation never lets that many through"))
    if engine.state.tier.capacity() < tier.capacity():
        return Forecast(tier, above, "blocked", reason=f"the tier goes down first: {engine.state.reason}")
    at = engine.state.changed_at if engine.state.changed_at is not None else engine.t
    return Forecast(tier, above, "earned" if needed == 0 else "reachable", at=at, needed=needed,
                    days=day_index(at, utc_offset) - today, reason=rule.describe(tier))


def _run_until_tier_moves(engine: _Greedy, tier: Tier, horizon_days: int) -> bool:
    """Send as fast as allowed until the tier moves (True) or provably never will (False)."""
    while engine.day_count <= horizon_days:
        engine.settle()
        if engine.state.tier != tier:
            return True
        engine.send(_UNBOUNDED)
        window_bound = engine.sent_today < (engine.daily_cap or _UNBOUNDED)
        at = engine.next_event(window_bound)
        if at < engine.boundary:
            engine.t = at
            continue
        engine.close_day()
        if engine.state.tier != tier:
            return True
        if engine.frozen_pace() is not None:
            return False
    return False
