"""The simulator: the article's examples, conservation of messages, the independent checker, and
agreement with the planner (both are greedy in the same model, computed by different code)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiergate.core.planner import plan
from tiergate.core.simulation import count_violations, run_simulation
from tiergate.core.tiers import parse_tier
from tiergate.core.window import DAY

KEYS = ["day", "tier", "limit", "enqueued", "sent", "backlog", "unique_7d", "tier_next"]


def test_article_example_1_level_2_from_day_3() -> None:
    result = run_simulation("classic", "TIER_1K", [1000, 1000], days=3)
    assert list(result) == ["policy", "start_tier", "days", "final_tier", "violations"]
    assert result["days"] == [
        {"day": 1, "tier": "TIER_1K", "limit": 1000, "enqueued": 1000, "sent": 1000, "backlog": 0,
         "unique_7d": 1000, "tier_next": "TIER_1K"},
        {"day": 2, "tier": "TIER_1K", "limit": 1000, "enqueued": 1000, "sent": 1000, "backlog": 0,
         "unique_7d": 2000, "tier_next": "TIER_10K"},
        {"day": 3, "tier": "TIER_10K", "limit": 10_000, "enqueued": 0, "sent": 0, "backlog": 0,
         "unique_7d": 2000, "tier_next": "TIER_10K"},
    ]
    assert (result["policy"], result["start_tier"], result["final_tier"], result["violations"]) == (
        "classic", "TIER_1K", "TIER_10K", 0)


def test_article_example_1_without_days_ends_on_the_upgrade() -> None:
    result = run_simulation("classic", "TIER_1K", [1000, 1000])
    assert len(result["days"]) == 2 and result["final_tier"] == "TIER_10K"


def test_article_example_2_level_2_from_day_8() -> None:
    result = run_simulation("classic", "TIER_1K", [50, 150, 200, 400, 400, 400, 400], days=8)
    days = result["days"]
    assert [d["tier"] for d in days] == ["TIER_1K"] * 7 + ["TIER_10K"]
    assert [d["unique_7d"] for d in days] == [50, 200, 400, 800, 1200, 1600, 2000, 1950]
    assert days[6]["tier_next"] == "TIER_10K" and days[5]["tier_next"] == "TIER_1K"
    assert result["violations"] == 0


def test_backlog_carries_over_within_the_limit() -> None:
    result = run_simulation("classic", "TIER_1K", [2500])
    assert [(d["sent"], d["backlog"]) for d in result["days"]] == [(1000, 1500)]
    longer = run_simulation("classic", "TIER_1K", [2500], days=3)
    assert [(d["sent"], d["backlog"]) for d in longer["days"]] == [(1000, 1500), (1000, 500), (500, 0)]
    assert [d["tier"] for d in longer["days"]] == ["TIER_1K", "TIER_1K", "TIER_10K"]


def test_reserve_holds_back_marketing() -> None:
    result = run_simulation("classic", "TIER_1K", [1000, 0], reserve=0.1)
    assert [d["sent"] for d in result["days"]] == [900, 100]


def test_quality_red_blocks_upgrades_and_lowers_the_tier() -> None:
    result = run_simulation("classic", "TIER_10K", [10_000] * 9, quality="RED")
    assert [d["tier"] for d in result["days"]] == ["TIER_10K"] * 7 + ["TIER_1K"] * 2
    assert result["violations"] == 0


def test_portfolio_moves_six_hours_after_the_crossing() -> None:
    result = run_simulation("portfolio", "TIER_2K", [20_000])
    # 2,000 at 00:00 (crossing 1,000) -> 10K at 06:00 -> 8,000 more; 10,000 >= 5,000 -> 100K at 12:00.
    assert [(d["tier"], d["sent"], d["tier_next"]) for d in result["days"]] == [("TIER_2K", 20_000, "TIER_100K")]
    yellow = run_simulation("portfolio", "TIER_2K", [20_000], quality="YELLOW")
    assert yellow["days"][0]["sent"] == 2000 and yellow["final_tier"] == "TIER_2K"


def test_local_days_shift_nothing_but_the_clock() -> None:
    utc = run_simulation("portfolio", "TIER_250", [400] * 9)
    shifted = run_simulation("portfolio", "TIER_250", [400] * 9, utc_offset=-3 * 3600.0)
    assert utc == shifted


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"policy": "nope"}, "unknown policy"),
    ({"start_tier": "TIER_NOPE"}, "unknown tier"),
    ({"daily": [5, -1]}, "negative"),
    ({"daily": [], "days": None}, "at least one day"),
    ({"days": 0}, "at least one day"),
    ({"reserve": 1.0}, "reservation"),
    ({"quality": "BLUE"}, "unknown quality"),
])
def test_bad_input_is_a_clear_error(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"policy": "classic", "start_tier": "TIER_1K", "daily": [10]} | kwargs
    with pytest.raises(ValueError, match=message):
        run_simulation(**args)  # type: ignore[arg-type]


# -- the independent checker -------------------------------------------------------------------
def test_checker_counts_windows_over_the_limit() -> None:
    limits = [(0.0, 2)]
    assert count_violations([(0.0, "a"), (1.0, "b")], limits) == 0
    assert count_violations([(0.0, "a"), (1.0, "b"), (2.0, "c")], limits) == 1
    assert count_violations([(0.0, "a"), (1.0, "b"), (2.0, "a")], limits) == 0  # a re-send is free
    assert count_violations([(0.0, "a"), (1.0, "b"), (DAY, "c")], limits) == 0  # a left at exactly 24 h
    assert count_violations([(0.0, "a"), (1.0, "b"), (DAY - 1, "c"), (DAY - 1, "d")], limits) == 1
    assert count_violations([(0.0, "a"), (1.0, "b"), (2.0, "c")], [(0.0, 2), (2.0, None)]) == 0
    assert count_violations([(0.0, "a"), (5.0, "b")], [(0.0, 1), (5.0, 2)]) == 0


# -- properties ----------------------------------------------------------------------------------
scenarios = st.tuples(
    st.sampled_from(["classic", "portfolio"]),
    st.sampled_from(["TIER_250", "TIER_1K", "TIER_2K", "TIER_10K"]),
    st.lists(st.integers(min_value=0, max_value=4000), min_size=1, max_size=10),
    st.integers(min_value=0, max_value=4),
    st.sampled_from(["GREEN", "GREEN", "YELLOW", "RED"]),
    st.sampled_from([0.0, 0.0, 0.05, 0.3]),
)


@settings(max_examples=40, deadline=None)
@given(scenarios)
def test_nothing_is_lost_and_no_window_is_ever_over_the_limit(
    scenario: tuple[str, str, list[int], int, str, float]
) -> None:
    policy, tier, daily, extra_days, quality, reserve = scenario
    result = run_simulation(policy, tier, daily, days=len(daily) + extra_days, quality=quality, reserve=reserve)
    assert result["violations"] == 0
    backlog = 0
    for row in result["days"]:
        assert list(row) == KEYS
        backlog += row["enqueued"] - row["sent"]
        assert row["backlog"] == backlog >= 0  # deferral never loses (or invents) a message
        # a local day fits in one 24 h window; tiers only rise within a day (6 h upgrades)
        assert row["sent"] <= max(parse_tier(row["tier"]).capacity(), parse_tier(row["tier_next"]).capacity())
    assert result["final_tier"] == result["days"][-1]["tier_next"]
    assert sum(daily) == sum(r["sent"] for r in result["days"]) + result["days"][-1]["backlog"]


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["classic", "portfolio"]), st.sampled_from(["TIER_250", "TIER_1K", "TIER_2K", "TIER_10K"]),
       st.integers(min_value=0, max_value=30_000), st.sampled_from([0.0, 0.1]))
def test_the_simulator_sends_what_the_planner_plans(policy: str, tier: str, audience: int, reserve: float) -> None:
    """A whole audience enqueued on day 1 goes out exactly as the plan says, day by day."""
    planned = plan(audience, policy, tier, reserve=reserve)
    days = max(planned.total_days, 1)
    simulated = run_simulation(policy, tier, [audience], days=days, reserve=reserve)
    assert [(d["tier"], d["sent"]) for d in simulated["days"]][: planned.total_days] == [
        (d.tier.name, d.send) for d in planned.days]
    if planned.total_days:
        assert simulated["final_tier"] == planned.final_tier.name
