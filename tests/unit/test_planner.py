"""The planner: optimal against exhaustive search, exact against a naive greedy, and the forecasts.

The reference model is written from rules.md, independently of the engine: time on a grid, a plain
list of sends, every rule recomputed from it by brute force. Scaled-down ladders (limits 1, 2, 4, 8)
and windows (2-3 days) keep exhaustive search small; the rules' shapes are the real ones.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiergate.core.planner import Forecast, forecast, history_from_reach, plan
from tiergate.core.policy import CLASSIC, PORTFOLIO, Policy, PolicyState, SendHistory, Timing
from tiergate.core.tiers import UNLIMITED, parse_tier
from tiergate.core.window import DAY

T = parse_tier
HOUR = 3600.0
SMALL_LADDER = (T("TIER_1"), T("TIER_2"), T("TIER_4"), T("TIER_8"), UNLIMITED)
SCALED_CLASSIC = replace(
    CLASSIC, name="classic-scaled", ladder=SMALL_LADDER,
    upgrades=(replace(CLASSIC.upgrades[0], window_days=3),),
)
SCALED_PORTFOLIO = replace(
    PORTFOLIO, name="portfolio-scaled", ladder=SMALL_LADDER,
    upgrades=(replace(PORTFOLIO.upgrades[0], window_days=3, fixed_threshold=3),
              replace(PORTFOLIO.upgrades[1], window_days=2)),
)
GRID = {SCALED_CLASSIC.name: DAY / 2, SCALED_PORTFOLIO.name: 6 * HOUR}


# -- the reference model -----------------------------------------------------------------------
@dataclass
class Ref:
    """One schedule in progress under the rules, recomputed naively from the list of sends."""

    policy: Policy
    rung: int
    quality: str
    cap: int | None
    reserve: float
    remaining: int
    sends: list[tuple[float, int]] = field(default_factory=list)  # history first, then ours
    pending: float | None = None
    streak: int = 0
    ours: list[tuple[float, int]] = field(default_factory=list)

    @property
    def limit(self) -> float:
        limit = self.policy.ladder[self.rung].limit
        return math.inf if limit is None else limit - math.ceil(limit * self.reserve)

    def total(self, keep: object) -> int:
        return sum(n for t, n in self.sends if keep(t))  # type: ignore[operator]

    def rule(self) -> object | None:
        if self.rung + 1 >= len(self.policy.ladder):
            return None
        return next((r for r in self.policy.upgrades if r.covers(self.rung)), None)

    def arrive(self, t: float) -> None:
        """What happens at moment ``t`` before anything is sent then."""
        rule = self.rule()
        if self.pending is not None and self.pending <= t:
            self.pending = None
            if rule is not None and rule.allows(self.quality, False):  # type: ignore[attr-defined]
                self.rung += 1
        if t > 0 and t % DAY == 0:  # a day boundary: the day that just ended is judged
            down = self.policy.downgrade
            if down is not None:
                self.streak = self.streak + 1 if self.quality in down.qualities else 0
                if self.streak >= down.streak_days:
                    self.streak = down.streak_days
                    if self.rung - 1 >= down.floor_rung:
                        self.rung, self.streak = self.rung - 1, 0
                        return
            rule = self.rule()
            if rule is not None and rule.timing is Timing.DAY_BOUNDARY and rule.allows(self.quality, False):  # type: ignore[attr-defined]
                w = rule.window_days  # type: ignore[attr-defined]
                if self.total(lambda s: t - w * DAY <= s < t) >= rule.threshold(self.policy.ladder[self.rung]):  # type: ignore[attr-defined]
                    self.rung += 1
        self.look(t)

    def look(self, t: float) -> None:
        """A continuously judged threshold reached at ``t`` schedules an upgrade."""
        rule = self.rule()
        if self.pending is None and rule is not None and rule.timing is Timing.ON_CROSSING:  # type: ignore[attr-defined]
            w = rule.window_days  # type: ignore[attr-defined]
            if rule.allows(self.quality, False) and (  # type: ignore[attr-defined]
                    self.total(lambda s: t - w * DAY < s <= t) >= rule.threshold(self.policy.ladder[self.rung])):  # type: ignore[attr-defined]
                self.pending = t + rule.delay  # type: ignore[attr-defined]

    def room(self, t: float) -> int:
        in_window = self.total(lambda s: t - DAY < s <= t)
        today = sum(n for s, n in self.ours if s // DAY == t // DAY)
        room = self.limit - in_window
        if self.cap is not None:
            room = min(room, self.cap - today)
        return int(max(0, min(room, self.remaining)))

    def send(self, t: float, n: int) -> None:
        if n:
            self.sends.append((t, n))
            self.ours.append((t, n))
            self.remaining -= n
            self.look(t)

    def copy(self) -> Ref:
        return replace(self, sends=list(self.sends), ours=list(self.ours))


def new_ref(policy: Policy, start: str, audience: int, cap: int | None = None, reserve: float = 0.0,
            history: tuple[tuple[float, int], ...] = (), quality: str = "GREEN") -> Ref:
    return Ref(policy, policy.ladder.index(T(start)), quality, cap, reserve, audience, sends=list(history))


def reference_greedy(ref: Ref, grid: float, max_days: int = 100) -> tuple[list[tuple[int, str, int]], str]:
    """Send the most allowed at every grid moment: (day, tier at its start, sent) rows, final tier."""
    rows: list[tuple[int, str, int]] = []
    per_day = round(DAY / grid)
    for m in range(max_days * per_day + 1):
        t = m * grid
        ref.arrive(t)
        if m % per_day == 0:
            if ref.remaining == 0:
                return rows, ref.policy.ladder[ref.rung].name
            rows.append((m // per_day + 1, ref.policy.ladder[ref.rung].name, 0))
        n = ref.room(t)
        ref.send(t, n)
        rows[-1] = (rows[-1][0], rows[-1][1], rows[-1][2] + n)
    raise AssertionError("the reference greedy did not finish")


def reference_optimum(ref: Ref, grid: float, horizon_days: int) -> int:
    """The earliest completion day over every schedule on the grid (exhaustive, memoised)."""
    per_day = round(DAY / grid)
    lookback = (max(ref.policy.reach_windows) + 1) * DAY

    def key(r: Ref, m: int) -> tuple[object, ...]:
        t = m * grid
        recent = tuple(sorted((s - t, n) for s, n in r.sends if s > t - lookback))
        today = sum(n for s, n in r.ours if s // DAY == t // DAY)
        return (m % per_day, r.remaining, r.rung, None if r.pending is None else r.pending - t, r.streak,
                recent, today)

    @cache
    def best(state: tuple[object, ...], m: int) -> float:
        r = states[state, m]
        if m >= horizon_days * per_day:
            return math.inf
        t = m * grid
        r = r.copy()
        r.arrive(t)
        result = math.inf
        for n in range(r.room(t), -1, -1):
            child = r.copy()
            child.send(t, n)
            if child.remaining == 0:
                result = min(result, m // per_day + 1)
                continue
            nxt = key(child, m + 1)
            states.setdefault((nxt, m + 1), child)
            result = min(result, best(nxt, m + 1))
        return result

    states: dict[tuple[tuple[object, ...], int], Ref] = {}
    first = key(ref, 0)
    states[first, 0] = ref
    return int(best(first, 0)) if ref.remaining else 0


def random_schedule_days(ref: Ref, grid: float, rng: random.Random, max_days: int = 40) -> int | None:
    """Completion day of a random feasible schedule (None if it dawdles past ``max_days``)."""
    per_day = round(DAY / grid)
    for m in range(max_days * per_day):
        t = m * grid
        ref.arrive(t)
        room = ref.room(t)
        ref.send(t, rng.choice([0, room, rng.randint(0, room)]))
        if ref.remaining == 0:
            return m // per_day + 1
    return None


def as_rows(result: object) -> list[tuple[int, str, int]]:
    return [(d.day, d.tier.name, d.send) for d in result.days]  # type: ignore[attr-defined]


# -- optimality ----------------------------------------------------------------------------------
EXHAUSTIVE_CASES = [
    # policy, start, audience, cap, reserve, history, quality
    (SCALED_CLASSIC, "TIER_1", 5, None, 0.0, (), "GREEN"),
    (SCALED_CLASSIC, "TIER_2", 9, None, 0.0, (), "GREEN"),
    (SCALED_CLASSIC, "TIER_2", 8, 3, 0.0, (), "GREEN"),
    (SCALED_CLASSIC, "TIER_2", 7, None, 0.0, ((-DAY, 3),), "GREEN"),
    (SCALED_CLASSIC, "TIER_4", 9, None, 0.25, (), "GREEN"),
    (SCALED_CLASSIC, "TIER_8", 9, None, 0.0, (), "RED"),
    (SCALED_CLASSIC, "TIER_2", 6, None, 0.0, (), "YELLOW"),
    (SCALED_PORTFOLIO, "TIER_1", 6, None, 0.0, (), "GREEN"),
    (SCALED_PORTFOLIO, "TIER_2", 8, None, 0.0, (), "GREEN"),
    (SCALED_PORTFOLIO, "TIER_2", 7, 4, 0.0, (), "GREEN"),
    (SCALED_PORTFOLIO, "TIER_1", 6, None, 0.0, ((-2 * DAY, 2),), "GREEN"),
    (SCALED_PORTFOLIO, "TIER_4", 9, None, 0.0, ((-6 * HOUR, 2),), "GREEN"),
    (SCALED_PORTFOLIO, "TIER_2", 5, None, 0.0, (), "YELLOW"),
]


@pytest.mark.parametrize(("policy", "start", "audience", "cap", "reserve", "history", "quality"), EXHAUSTIVE_CASES)
def test_the_plan_is_as_fast_as_exhaustive_search(
    policy: Policy, start: str, audience: int, cap: int | None, reserve: float,
    history: tuple[tuple[float, int], ...], quality: str,
) -> None:
    grid = GRID[policy.name]
    result = plan(audience, policy, start, history=history, daily_cap=cap, reserve=reserve, quality=quality)
    optimum = reference_optimum(new_ref(policy, start, audience, cap, reserve, history, quality), grid,
                                horizon_days=result.total_days + 1)
    assert result.total_days == optimum
    rows, final = reference_greedy(new_ref(policy, start, audience, cap, reserve, history, quality), grid)
    assert as_rows(result) == rows
    assert result.final_tier.name == final


small_cases = st.tuples(
    st.sampled_from([SCALED_CLASSIC, SCALED_PORTFOLIO]),
    st.sampled_from(["TIER_1", "TIER_2", "TIER_4"]),
    st.integers(min_value=0, max_value=30),
    st.sampled_from([None, None, 1, 2, 3, 5]),
    st.sampled_from([0.0, 0.0, 0.25, 0.5]),
    st.lists(st.tuples(st.integers(min_value=-12, max_value=-1), st.integers(min_value=0, max_value=4)),
             max_size=3),
    st.sampled_from(["GREEN", "GREEN", "YELLOW", "RED"]),
)


@settings(max_examples=100, deadline=None)
@given(small_cases, st.randoms(use_true_random=False))
def test_the_plan_is_the_greedy_schedule_and_never_slower_than_a_feasible_one(
    case: tuple[Policy, str, int, int | None, float, list[tuple[int, int]], str], rng: random.Random
) -> None:
    policy, start, audience, cap, reserve, quarters, quality = case
    grid = GRID[policy.name]
    history = tuple((q * grid, n) for q, n in quarters)
    try:
        result = plan(audience, policy, start, history=history, daily_cap=cap, reserve=reserve, quality=quality,
                      max_days=60)
    except ValueError as exc:
        assert "be reached" in str(exc)
        with pytest.raises(AssertionError, match="did not finish"):  # the reference cannot either
            reference_greedy(new_ref(policy, start, audience, cap, reserve, history, quality), grid, max_days=60)
        return
    rows, final = reference_greedy(new_ref(policy, start, audience, cap, reserve, history, quality), grid)
    assert as_rows(result) == rows
    assert result.final_tier.name == final
    assert result.days[-1].cumulative == audience if audience else result.total_days == 0
    for _ in range(3):
        days = random_schedule_days(new_ref(policy, start, audience, cap, reserve, history, quality), grid, rng)
        if days is not None and audience:
            assert result.total_days <= days


# -- the plan on the real ladders ----------------------------------------------------------------
def test_classic_plan_from_level_1() -> None:
    result = plan(50_000, "classic", "TIER_1K")
    assert [(d.tier.name, d.send) for d in result.days] == [
        ("TIER_1K", 1000), ("TIER_1K", 1000), ("TIER_10K", 10_000), ("TIER_10K", 10_000), ("TIER_100K", 28_000)]
    assert result.total_days == 5 and result.final_tier.name == "TIER_100K"
    assert result.days[-1].cumulative == 50_000


def test_portfolio_plan_climbs_within_a_day() -> None:
    """2K at 00:00 crosses 1,000: 10K at 06:00, 100K at 12:00 (rules.md: up 6 h after each crossing)."""
    result = plan(50_000, "portfolio", "TIER_2K")
    assert as_rows(result) == [(1, "TIER_2K", 50_000)]
    assert result.final_tier.name == "TIER_UNLIMITED"  # 50,000 in 7 days is half of 100K: up at 18:00


def test_portfolio_from_the_entry_tier_needs_2000_in_30_days() -> None:
    result = plan(3000, "portfolio", "TIER_250")
    assert [d.send for d in result.days][:7] == [250] * 7
    assert result.days[7].send == 1250 and result.total_days == 8


def test_to_dict_is_the_cli_contract() -> None:
    doc = plan(2500, "classic", "TIER_1K").to_dict()
    assert list(doc) == ["policy", "start_tier", "audience", "days", "total_days", "final_tier"]
    assert doc["days"][0] == {"day": 1, "tier": "TIER_1K", "send": 1000, "cumulative": 1000}
    # Days 1-2 reach 2,000, so day 3 is TIER_10K and sends the last 500.
    assert doc["days"][2] == {"day": 3, "tier": "TIER_10K", "send": 500, "cumulative": 2500}
    assert doc["total_days"] == 3 and doc["final_tier"] == "TIER_10K"


def test_empty_audience_and_unlimited() -> None:
    empty = plan(0, "classic", "TIER_1K")
    assert len(empty.days) == 0 and empty.days == () and empty.total_days == 0 and empty.final_tier.name == "TIER_1K"
    assert as_rows(plan(10_000_000, "classic", "TIER_UNLIMITED")) == [(1, "TIER_UNLIMITED", 10_000_000)]


def test_daily_cap_reserve_and_history() -> None:
    capped = plan(5000, "classic", "TIER_1K", daily_cap=300)
    assert {d.send for d in capped.days[:-1]} == {300} and capped.total_days == 17
    reserved = plan(3000, "classic", "TIER_1K", reserve=0.1)
    assert [d.send for d in reserved.days][:2] == [900, 900]
    helped = plan(5000, "classic", "TIER_1K", history=history_from_reach(1500))
    assert as_rows(helped) == [(1, "TIER_1K", 1000), (2, "TIER_10K", 4000)]


def test_history_from_reach_places_the_totals() -> None:
    assert history_from_reach(1500) == [(-DAY, 1500)]
    assert history_from_reach(1500, 2000) == [(-8 * DAY, 500), (-DAY, 1500)]
    assert history_from_reach(0) == []
    with pytest.raises(ValueError):
        history_from_reach(10, 5)


def test_verification_only_tier_plans_at_its_limit() -> None:
    result = plan(3000, "classic", "TIER_250")
    assert {d.send for d in result.days} == {250} and result.total_days == 12
    assert result.final_tier.name == "TIER_250"


def test_red_quality_classic_plan_goes_down_then_holds() -> None:
    result = plan(100_000, "classic", "TIER_10K", quality="RED")
    assert [d.tier.name for d in result.days[:9]] == ["TIER_10K"] * 7 + ["TIER_1K"] * 2
    assert result.total_days == 7 + 30 and result.final_tier.name == "TIER_1K"


def test_a_state_can_be_given_whole() -> None:
    start = PolicyState(T("TIER_2K"), quality="GREEN", pending_upgrade_at=3 * HOUR)
    result = plan(5000, "portfolio", start)
    assert result.total_days == 1  # 2K at 00:00, 10K from 03:00


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"audience": -1}, "negative"),
    ({"start": "TIER_WHAT"}, "unknown tier"),
    ({"policy": "nope"}, "unknown policy"),
    ({"daily_cap": 0}, "daily cap"),
    ({"reserve": 1.0}, "reservation"),
    ({"audience": 10, "start": "TIER_1", "reserve": 0.5, "policy": SCALED_CLASSIC}, "never be reached"),
    ({"audience": 10_000_000, "start": "TIER_250"}, "cannot be reached within 36,500 days at 250 a day"),
])
def test_bad_input_is_a_clear_error(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"audience": 100, "policy": "classic", "start": "TIER_1K"} | kwargs
    with pytest.raises(ValueError, match=message):
        plan(**args)  # type: ignore[arg-type]


def test_plans_start_mid_day_in_local_time() -> None:
    offset = -3 * HOUR
    result = plan(3000, "classic", "TIER_1K", start_at=12 * HOUR, utc_offset=offset)
    # The local day ends at 03:00 UTC the next day: day 1 is 15 hours long.
    assert as_rows(result) == [(1, "TIER_1K", 1000), (2, "TIER_1K", 1000), (3, "TIER_10K", 1000)]


# -- forecasts -------------------------------------------------------------------------------
def fc(policy: str, tier: str, now: float = 0.0, **kw: object) -> Forecast:
    history = kw.pop("history", ())
    return forecast(policy, PolicyState(T(tier), **kw), now, history=history)  # type: ignore[arg-type]


def test_forecast_classic_from_level_1() -> None:
    f = fc("classic", "TIER_1K")
    assert (f.status, f.next_tier, f.needed, f.days, f.at) == ("reachable", T("TIER_10K"), 2000, 2, 2 * DAY)


def test_forecast_counts_what_was_already_reached() -> None:
    history = SendHistory(windows=(7,))
    for i in range(1500):
        history.record(f"r{i}", 3600.0)
    f = fc("classic", "TIER_1K", now=2 * HOUR, history=history.batches())
    # 1,500 today: 500 more by midnight would do, but the window is full until 01:00 tomorrow.
    assert f.needed == 500 and f.status == "reachable"


def test_forecast_when_already_earned() -> None:
    f = fc("classic", "TIER_1K", now=5 * HOUR, history=[(HOUR, 2000)])
    assert (f.status, f.needed, f.at, f.days) == ("earned", 0, DAY, 1)
    scheduled = fc("portfolio", "TIER_2K", pending_upgrade_at=4 * HOUR)
    assert (scheduled.status, scheduled.at, scheduled.needed) == ("earned", 4 * HOUR, 0)


def test_forecast_portfolio_entry() -> None:
    f = fc("portfolio", "TIER_250")
    assert f.status == "reachable" and f.next_tier == T("TIER_2K") and f.needed == 2000
    assert f.at == 7 * DAY + 6 * HOUR and f.days == 7  # 250 a day: the 2,000th on day 8 at 00:00


@pytest.mark.parametrize(("policy", "tier", "kw", "status"), [
    ("classic", "TIER_250", {}, "verification"),
    ("classic", "TIER_1K", {"quality": "RED"}, "blocked"),
    ("classic", "TIER_1K", {"flagged": True}, "blocked"),
    ("portfolio", "TIER_2K", {"quality": "YELLOW"}, "blocked"),
    ("classic", "TIER_UNLIMITED", {}, "top"),
    ("classic", "TIER_MYSTERY", {}, "unknown"),
])
def test_forecast_statuses(policy: str, tier: str, kw: dict[str, object], status: str) -> None:
    assert fc(policy, tier, **kw).status == status


def test_forecast_unreachable_under_a_cap() -> None:
    f = forecast("classic", PolicyState(T("TIER_1K")), 0.0, daily_cap=200)
    assert f.status == "unreachable" and f.at is None and f.needed == 2000


@settings(max_examples=15, deadline=None)
@given(st.sampled_from([SCALED_CLASSIC, SCALED_PORTFOLIO]), st.sampled_from(["TIER_1", "TIER_2"]),
       st.integers(min_value=1, max_value=5), st.sampled_from([None, 1, 2]),
       st.lists(st.tuples(st.integers(min_value=-6, max_value=-1), st.integers(min_value=1, max_value=2)),
                max_size=2))
def test_random_small_cases_match_exhaustive_search(
    policy: Policy, start: str, audience: int, cap: int | None, history_steps: list[tuple[int, int]]
) -> None:
    grid = GRID[policy.name]
    history = tuple((step * grid, n) for step, n in history_steps)
    result = plan(audience, policy, start, history=history, daily_cap=cap)
    optimum = reference_optimum(new_ref(policy, start, audience, cap, 0.0, history), grid,
                                horizon_days=result.total_days + 1)
    assert result.total_days == optimum
