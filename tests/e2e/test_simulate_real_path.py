"""`tiergate simulate` drives the real gateway (SQLite, dispatcher, sandbox platform under a virtual
clock); the pure model must tell the same story day by day, and the platform must count 0 violations."""

from __future__ import annotations

import pytest

from tiergate.core.policy import get_policy
from tiergate.core.simulation import run_simulation
from tiergate.core.tiers import parse_tier
from tiergate.service.simulate import simulate_real_path

SCENARIOS = [
    ("classic", "TIER_1K", [1000, 1000], 3, "GREEN", 0.0),  # the article's first example: TIER_10K from day 3
    ("classic", "TIER_1K", [50, 150, 200, 400, 400, 400, 400], 8, "GREEN", 0.1),  # the second: from day 8
    ("classic", "TIER_1K", [3000, 3000], 3, "GREEN", 0.0),  # backlog carried over, freed at 00:00
    ("classic", "TIER_1K", [1000] * 4, 4, "RED", 0.0),  # RED: no upgrade
    ("classic", "TIER_250", [250] * 4, 8, "YELLOW", 0.1),
    ("portfolio", "TIER_250", [300, 300, 300, 300, 600], 8, "GREEN", 0.1),
    ("portfolio", "TIER_2K", [3000, 3000, 1000], 3, "GREEN", 0.0),  # upgrades mid-day (+6 h)
]


@pytest.mark.parametrize(("policy", "tier", "daily", "days", "quality", "reserve"), SCENARIOS)
async def test_real_path_matches_the_model(policy: str, tier: str, daily: list[int], days: int, quality: str,
                                           reserve: float) -> None:
    real = await simulate_real_path(policy=policy, start_tier=tier, daily=daily, days=days, quality=quality,
                                    reserve=reserve)
    model = run_simulation(get_policy(policy), parse_tier(tier), daily, days=days, quality=quality,
                           reserve=reserve)
    assert real["violations"] == 0
    assert real["days"] == model["days"]
    assert real["final_tier"] == model["final_tier"]


async def test_progress_is_reported_per_day() -> None:
    seen: list[tuple[int, int]] = []
    await simulate_real_path(policy="classic", start_tier="TIER_1K", daily=[10], days=3,
                             progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
