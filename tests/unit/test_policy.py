"""Tier policies: every rule of rules.md for ``classic`` and ``portfolio``, plus the history counts."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiergate.core.policy import (
    CLASSIC,
    PORTFOLIO,
    Policy,
    PolicyState,
    QualityDowngrade,
    SendHistory,
    Timing,
    VolumeUpgrade,
    day_index,
    day_start,
    get_policy,
    next_day_start,
    parse_quality,
)
from tiergate.core.simulation import run_simulation
from tiergate.core.tiers import parse_tier
from tiergate.core.window import DAY

HOUR = 3600.0
T = parse_tier


def state(tier: str, **kw: object) -> PolicyState:
    return PolicyState(tier=T(tier), **kw)  # type: ignore[arg-type]


# -- the registry ------------------------------------------------------------------------------
def test_get_policy_by_name() -> None:
    assert get_policy("classic") is CLASSIC
    assert get_policy(" Portfolio ") is PORTFOLIO
    assert get_policy(CLASSIC) is CLASSIC


def test_unknown_policy_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown policy 'era9': use one of classic, portfolio"):
        get_policy("era9")


def test_ladders_as_rules_md_states_them() -> None:
    assert [t.name for t in CLASSIC.ladder] == ["TIER_250", "TIER_1K", "TIER_10K", "TIER_100K", "TIER_UNLIMITED"]
    assert [t.name for t in PORTFOLIO.ladder] == ["TIER_250", "TIER_2K", "TIER_10K", "TIER_100K", "TIER_UNLIMITED"]
    assert (CLASSIC.scope, PORTFOLIO.scope) == ("sender", "portfolio")
    assert CLASSIC.reach_windows == (7,) and PORTFOLIO.reach_windows == (7, 30)


def test_a_policy_rejects_a_bad_ladder() -> None:
    with pytest.raises(ValueError, match="increase"):
        replace(CLASSIC, ladder=(T("TIER_1K"), T("TIER_250")))
    with pytest.raises(ValueError, match="known"):
        replace(CLASSIC, ladder=(T("TIER_WHAT"),))


# -- verification ------------------------------------------------------------------------------
@pytest.mark.parametrize(("policy", "verified"), [(CLASSIC, "TIER_1K"), (PORTFOLIO, "TIER_2K")])
def test_verification_lifts_the_entry_tier(policy: Policy, verified: str) -> None:
    lifted = policy.verify(state("TIER_250"), at=5.0)
    assert lifted.tier == T(verified) and lifted.changed_at == 5.0 and lifted.reason == "verification"
    assert policy.verify(state("TIER_50"), 0.0).tier == T(verified)
    higher = state("TIER_10K")
    assert policy.verify(higher, 0.0) is higher


# -- classic -----------------------------------------------------------------------------------
def test_classic_upgrades_at_twice_the_limit_over_7_days() -> None:
    s = state("TIER_1K")
    assert CLASSIC.end_of_day(s, {7: 1999}, DAY).tier == T("TIER_1K")
    up = CLASSIC.end_of_day(s, {7: 2000}, DAY)
    assert up.tier == T("TIER_10K") and up.changed_at == DAY and "2,000" in up.reason
    assert CLASSIC.end_of_day(state("TIER_10K"), {7: 20_000}, DAY).tier == T("TIER_100K")
    assert CLASSIC.end_of_day(state("TIER_100K"), {7: 200_000}, DAY).tier == T("TIER_UNLIMITED")
    top = state("TIER_UNLIMITED")
    assert CLASSIC.end_of_day(top, {7: 10**9}, DAY) is top


def test_classic_entry_tier_moves_only_by_verification() -> None:
    s = state("TIER_250")
    assert CLASSIC.end_of_day(s, {7: 10**6}, DAY).tier == T("TIER_250")
    assert CLASSIC.upgrade_rule(T("TIER_250")) is None


@pytest.mark.parametrize(("quality", "flagged", "moves"),
                         [("GREEN", False, True), ("YELLOW", False, True), ("UNKNOWN", False, True),
                          ("RED", False, False), ("GREEN", True, False)])
def test_classic_upgrade_needs_quality_not_red_and_not_flagged(quality: str, flagged: bool, moves: bool) -> None:
    after = CLASSIC.end_of_day(state("TIER_1K", quality=quality, flagged=flagged), {7: 5000}, DAY)
    assert (after.tier == T("TIER_10K")) == moves


@pytest.mark.parametrize("bad", [{"quality": "RED"}, {"flagged": True}])
def test_classic_downgrades_after_7_consecutive_bad_boundaries(bad: dict[str, object]) -> None:
    s = state("TIER_100K", **bad)
    for day in range(1, 7):
        s = CLASSIC.end_of_day(s, {7: 0}, day * DAY)
        assert s.tier == T("TIER_100K") and s.red_streak == day
    s = CLASSIC.end_of_day(s, {7: 0}, 7 * DAY)
    assert s.tier == T("TIER_10K") and s.red_streak == 0 and s.changed_at == 7 * DAY
    for day in range(8, 15):
        s = CLASSIC.end_of_day(s, {7: 0}, day * DAY)
    assert s.tier == T("TIER_1K")
    for day in range(15, 40):
        s = CLASSIC.end_of_day(s, {7: 0}, day * DAY)
    assert s.tier == T("TIER_1K")  # the floor: quality does not undo verification


def test_a_good_boundary_resets_the_red_streak() -> None:
    s = state("TIER_10K", quality="RED")
    for day in range(1, 7):
        s = CLASSIC.end_of_day(s, {7: 0}, day * DAY)
    s = CLASSIC.end_of_day(replace(s, quality="YELLOW"), {7: 0}, 7 * DAY)
    assert s.red_streak == 0 and s.tier == T("TIER_10K")


def test_classic_off_ladder_tier_uses_the_rung_below() -> None:
    s = state("TIER_2K")
    assert CLASSIC.tier_above(s.tier) == T("TIER_10K")
    assert CLASSIC.end_of_day(s, {7: 3999}, DAY).tier == T("TIER_2K")
    assert CLASSIC.end_of_day(s, {7: 4000}, DAY).tier == T("TIER_10K")


def test_unknown_tiers_are_never_moved() -> None:
    s = state("TIER_SOMETHING")
    assert CLASSIC.end_of_day(s, {7: 10**6}, DAY) is s
    assert PORTFOLIO.observe(s, {7: 10**6, 30: 10**6}, 0.0) is s
    assert CLASSIC.rung_of(s.tier) is None and not CLASSIC.can_move(s)


def test_missing_reach_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"reach\[7\]"):
        CLASSIC.end_of_day(state("TIER_1K"), {30: 5}, DAY)


def test_classic_ignores_continuous_observation() -> None:
    s = state("TIER_1K")
    assert CLASSIC.observe(s, {7: 10**6}, 0.0) is s


# -- portfolio ---------------------------------------------------------------------------------
def test_portfolio_entry_by_2000_in_30_days_with_green_quality() -> None:
    s = state("TIER_250")
    assert PORTFOLIO.observe(s, {7: 0, 30: 1999}, 0.0) is s
    pending = PORTFOLIO.observe(s, {7: 0, 30: 2000}, 100.0)
    assert pending.pending_upgrade_at == 100.0 + 6 * HOUR and pending.tier == T("TIER_250")
    assert PORTFOLIO.apply_due(pending, 100.0 + 6 * HOUR - 1) is pending
    up = PORTFOLIO.apply_due(pending, 100.0 + 6 * HOUR)
    assert up.tier == T("TIER_2K") and up.pending_upgrade_at is None and up.changed_at == 100.0 + 6 * HOUR
    yellow = state("TIER_250", quality="YELLOW")
    assert PORTFOLIO.observe(yellow, {7: 0, 30: 5000}, 0.0) is yellow


def test_portfolio_half_the_limit_in_7_days_moves_up_6_hours_later() -> None:
    s = state("TIER_2K")
    assert PORTFOLIO.observe(s, {7: 999, 30: 999}, 0.0).pending_upgrade_at is None
    s = PORTFOLIO.observe(s, {7: 1000, 30: 1000}, 50.0)
    assert s.pending_upgrade_at == 50.0 + 6 * HOUR
    assert PORTFOLIO.observe(s, {7: 5000, 30: 5000}, 60.0) is s  # already scheduled: not moved later
    s = PORTFOLIO.apply_due(s, 10 * HOUR)
    assert s.tier == T("TIER_10K")
    s = PORTFOLIO.observe(s, {7: 5000, 30: 5000}, 10 * HOUR)
    assert s.pending_upgrade_at == 16 * HOUR
    assert PORTFOLIO.apply_due(s, 16 * HOUR).tier == T("TIER_100K")


def test_portfolio_upgrade_lapses_if_quality_is_no_longer_green() -> None:
    s = PORTFOLIO.observe(state("TIER_2K"), {7: 1000, 30: 1000}, 0.0)
    lapsed = PORTFOLIO.apply_due(replace(s, quality="YELLOW"), 6 * HOUR)
    assert lapsed.tier == T("TIER_2K") and lapsed.pending_upgrade_at is None


def test_portfolio_has_no_quality_downgrades_and_no_day_boundary_rules() -> None:
    s = state("TIER_100K", quality="RED", flagged=True)
    for day in range(1, 40):
        s = PORTFOLIO.end_of_day(s, {7: 10**6, 30: 10**6}, day * DAY)
    assert s.tier == T("TIER_100K")


def test_can_move() -> None:
    assert CLASSIC.can_move(state("TIER_1K"))
    assert not CLASSIC.can_move(state("TIER_250"))  # verification only
    assert not CLASSIC.can_move(state("TIER_1K", quality="RED"))  # at the floor, upgrades blocked
    assert CLASSIC.can_move(state("TIER_10K", quality="RED"))  # can still go down
    assert not PORTFOLIO.can_move(state("TIER_2K", quality="YELLOW"))
    assert not PORTFOLIO.can_move(state("TIER_UNLIMITED"))
    assert PORTFOLIO.can_move(state("TIER_2K", quality="YELLOW", pending_upgrade_at=5.0))


# -- a third era is a small addition ----------------------------------------------------------
ERA_2024 = Policy(
    name="era2024",
    summary="per number; 250 -> 1K by verification or 1,000 in 30 days; half the limit in 7 days: up 24 h later",
    scope="sender",
    ladder=CLASSIC.ladder,
    verified_rung=1,
    upgrades=(
        VolumeUpgrade(first_rung=0, last_rung=0, window_days=30, fixed_threshold=1000,
                      qualities=frozenset({"GREEN"}), timing=Timing.ON_CROSSING, delay=24 * HOUR),
        VolumeUpgrade(first_rung=1, window_days=7, limit_factor=0.5, qualities=frozenset({"GREEN", "YELLOW"}),
                      timing=Timing.ON_CROSSING, delay=24 * HOUR),
    ),
    downgrade=QualityDowngrade(qualities=frozenset(), streak_days=7, floor_rung=1),
)


def test_a_third_era_runs_through_the_same_engine() -> None:
    result = run_simulation(ERA_2024, "TIER_250", [250] * 4 + [0] * 3, days=7)
    # 1,000 reached at the start of day 4: TIER_1K a day later; its 7-day reach (1,000) is already
    # half of TIER_1K's limit, so TIER_10K follows another day later.
    assert [row["tier"] for row in result["days"]] == ["TIER_250"] * 4 + ["TIER_1K", "TIER_10K", "TIER_10K"]
    assert result["violations"] == 0
    flagged = state("TIER_10K", flagged=True)
    for day in range(1, 8):
        flagged = ERA_2024.end_of_day(flagged, {7: 0, 30: 0}, day * DAY)
    assert flagged.tier == T("TIER_1K")


# -- days and quality -------------------------------------------------------------------------
def test_day_boundaries_in_utc_or_a_fixed_offset() -> None:
    assert day_index(0.0) == 0 and day_index(DAY - 1) == 0 and day_index(DAY) == 1
    assert day_index(-1.0) == -1
    sao_paulo = -3 * HOUR
    assert day_index(2 * HOUR, sao_paulo) == -1  # 23:00 the day before, local time
    assert day_start(1, sao_paulo) == DAY + 3 * HOUR
    assert next_day_start(DAY + 3 * HOUR, sao_paulo) == 2 * DAY + 3 * HOUR
    assert next_day_start(DAY) == 2 * DAY


@pytest.mark.parametrize(("text", "quality"), [("green", "GREEN"), ("High", "GREEN"), ("MEDIUM", "YELLOW"),
                                               ("LOW", "RED"), ("NA", "UNKNOWN"), ("whatever", "UNKNOWN")])
def test_parse_quality(text: str, quality: str) -> None:
    assert parse_quality(text) == quality


def test_parse_quality_strict() -> None:
    with pytest.raises(ValueError, match="GREEN, YELLOW, RED"):
        parse_quality("BLUE", strict=True)


# -- exact distinct counts ----------------------------------------------------------------------
def test_distinct_over_7_days_is_not_a_sum_of_daily_distincts() -> None:
    history = SendHistory(windows=(7,))
    history.record("a", 0.0)
    history.record("a", 2 * DAY + 5)  # the same person again two days later
    history.record("b", 3 * DAY)
    assert history.distinct_days(last_day=3, days=7) == 2
    assert history.day_reach(4 * DAY) == {7: 2}
    assert history.distinct_days(last_day=9, days=7) == 1  # days 3..9: only b
    assert history.distinct_rolling(7, 7 * DAY + 4) == 2
    assert history.distinct_rolling(7, 10 * DAY - 1) == 1
    assert history.distinct_rolling(7, 10 * DAY) == 0
    assert history.batches() == [(2 * DAY + 5, 1), (3 * DAY, 1)]


def test_reach_of_a_day_is_unknown_once_later_sends_are_recorded() -> None:
    history = SendHistory(windows=(7,))
    history.record("a", DAY)
    with pytest.raises(ValueError, match="after day 0"):
        history.distinct_days(0, 7)
    with pytest.raises(ValueError, match="keeps 7 days"):
        history.distinct_days(1, 30)
    with pytest.raises(ValueError, match="rolling"):
        history.distinct_rolling(30, DAY)


def test_history_forgets_beyond_its_longest_window() -> None:
    history = SendHistory(windows=(7, 30))
    for day in range(100):
        history.record(f"r{day}", day * DAY)
    assert len(history) == 30
    assert history.distinct_days(99, 30) == 30


def test_history_uses_local_days() -> None:
    history = SendHistory(windows=(7,), utc_offset=-3 * HOUR)
    history.record("a", 2 * HOUR)  # local day -1
    assert history.distinct_days(-1, 1) == 1


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 40 * 24)), max_size=80).map(
    lambda sends: sorted(sends, key=lambda s: s[1])))
def test_history_counts_match_a_naive_recount(sends: list[tuple[int, int]]) -> None:
    history = SendHistory(windows=(7, 30))
    log: list[tuple[float, str]] = []
    for who, hour in sends:
        history.record(f"r{who}", hour * HOUR)
        log.append((hour * HOUR, f"r{who}"))
        now = hour * HOUR
        for days in (7, 30):
            naive = {r for t, r in log if now - days * DAY < t <= now}
            assert history.distinct_rolling(days, now) == len(naive)
    if log:
        last_day = day_index(log[-1][0])
        for days in (1, 7, 30):
            naive = {r for t, r in log if last_day - days < day_index(t) <= last_day}
            assert history.distinct_days(last_day, days) == len(naive)


# -- the classic ladder against a naive day-level reference -------------------------------------
@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 3000), min_size=1, max_size=12), st.sampled_from(["TIER_1K", "TIER_10K"]),
       st.sampled_from(["GREEN", "YELLOW", "RED"]))
def test_classic_simulation_follows_the_rule_day_by_day(daily: list[int], start: str, quality: str) -> None:
    """Tier per day recomputed naively from what was sent: 7-day sum of new recipients >= 2x limit."""
    result = run_simulation("classic", start, daily, quality=quality)
    ladder = [1000, 10_000, 100_000, None]
    rung = ladder.index(T(start).limit)
    red_days = 0
    sent: list[int] = []
    for row in result["days"]:
        assert row["limit"] == ladder[rung]
        sent.append(row["sent"])
        limit = ladder[rung]
        if quality == "RED":
            red_days += 1
            if red_days == 7:
                rung, red_days = max(0, rung - 1), 0
        elif limit is not None and sum(sent[-7:]) >= 2 * limit:
            rung += 1
        assert row["tier_next"] == T(str(ladder[rung] if ladder[rung] is not None else -1)).name
    assert result["violations"] == 0
