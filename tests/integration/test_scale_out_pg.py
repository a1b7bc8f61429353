"""Scale-out acceptance: 4 worker processes, 3 scopes at TIER_1K, one PostgreSQL, one platform.

20,000 messages to 5,000 recipients (re-sends included) over 3 virtual days, through the real
processes (``tests.fakes.scale_run`` explains the set-up and how the shared clock moves). The
platform (``tests.fakes.platform_limits``) counts on its own; it must see no send over a
number's limit and no message twice, and tiergate must leave every message in a terminal state,
also when the worker that is sending is killed with SIGKILL halfway.
"""

from __future__ import annotations

from typing import Any

import pytest
from tests.fakes.platform_limits import PlatformLimits
from tests.fakes.scale_run import TERMINAL, ScaleConfig, ScaleRun, _summary

pytestmark = pytest.mark.postgres


def _check(result: Any, config: ScaleConfig) -> None:
    print(_summary(result))
    platform = result.platform
    assert platform["violations"] == 0, platform["violations_by_number"]
    assert platform["duplicates"] == 0, platform["duplicated_keys"]
    assert sum(result.states.values()) == config.messages
    assert set(result.states) <= TERMINAL, result.states
    # The limit was what held messages back: each number filled its window to the tier, never past it.
    assert set(platform["peak_by_number"].values()) == {1000}
    assert result.states.get("expired", 0) > 0
    # What tiergate calls sent is exactly what the platform accepted (unknowns it had are reconciled).
    assert result.states.get("sent", 0) == platform["accepted_messages"]


async def test_four_workers_three_scopes_never_over_the_limit(pg_url: str) -> None:
    config = ScaleConfig(database_url=pg_url)
    result = await ScaleRun(config).run()
    _check(result, config)
    assert result.killed is None and result.states.get("unknown", 0) == 0


async def test_a_worker_killed_mid_run_loses_nothing_and_overshoots_nothing(pg_url: str) -> None:
    config = ScaleConfig(database_url=pg_url, kill_at_round=4)
    result = await ScaleRun(config).run()
    _check(result, config)
    assert result.killed is not None
    assert result.unknown_before_reconcile > 0  # it died with sends in flight
    # Sends in flight when it died end 'unknown' (terminal, visible) unless the platform confirmed them.
    assert result.states.get("unknown", 0) == result.unknown_before_reconcile - result.reconciled


def test_the_judge_counts_a_send_over_the_limit() -> None:
    """The platform's count is not vacuous: the 3rd distinct recipient of a TIER_50... of a 2-limit fails."""
    limits = PlatformLimits(span=100.0)
    template = {"type": "template"}
    assert limits.check("n", "a", template, 0.0, "TIER_50")
    limits.windows["n"].latest.clear()
    for i in range(50):
        assert limits.check("n", str(i), template, 1.0, "TIER_50")
    assert limits.check("n", "7", template, 2.0, "TIER_50")  # already counted: free
    assert not limits.check("n", "new", template, 50.0, "TIER_50")  # the 51st distinct: a violation
    assert limits.check("n", "new", template, 101.0, "TIER_50")  # the sends at 1.0 left the window at 101
    assert limits.check("n", "text", {"type": "text"}, 101.0, "TIER_50")  # free-form is not counted
    assert sum(limits.violations.values()) == 1
    limits.accept("m1", "wamid.1", "n", "a", 1.0)
    limits.accept("m1", "wamid.2", "n", "a", 2.0)
    assert limits.report()["duplicates"] == 1
