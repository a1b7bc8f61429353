"""``tiergate plan`` and ``tiergate simulate`` as a user runs them: the real command, in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def tiergate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tiergate.cli", *args], capture_output=True, text=True,
                          timeout=60, env={"COLUMNS": "120", "PATH": "/usr/bin:/bin"})


def test_plan_json_contract() -> None:
    done = tiergate("plan", "--audience", "50000", "--policy", "classic", "--start-tier", "TIER_1K", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert list(doc) == ["policy", "start_tier", "audience", "days", "total_days", "final_tier"]
    assert (doc["policy"], doc["start_tier"], doc["audience"]) == ("classic", "TIER_1K", 50_000)
    assert doc["days"] == [
        {"day": 1, "tier": "TIER_1K", "send": 1000, "cumulative": 1000},
        {"day": 2, "tier": "TIER_1K", "send": 1000, "cumulative": 2000},
        {"day": 3, "tier": "TIER_10K", "send": 10_000, "cumulative": 12_000},
        {"day": 4, "tier": "TIER_10K", "send": 10_000, "cumulative": 22_000},
        {"day": 5, "tier": "TIER_100K", "send": 28_000, "cumulative": 50_000},
    ]
    assert (doc["total_days"], doc["final_tier"]) == (5, "TIER_100K")


def test_plan_with_cap_reserve_and_history() -> None:
    done = tiergate("plan", "--audience", "5000", "--daily-cap", "800", "--reserve", "0.1", "--history-7d", "1500",
                    "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["start_tier"] == "TIER_1K"  # the classic policy's verified tier by default
    assert [d["send"] for d in doc["days"]] == [800, 800, 800, 800, 800, 800, 200]
    assert doc["days"][1]["tier"] == "TIER_10K"  # 1,500 + 800 >= 2,000 after day 1


def test_plan_table_for_humans() -> None:
    done = tiergate("plan", "--audience", "3000", "--policy", "portfolio", "--start-tier", "TIER_250")
    assert done.returncode == 0, done.stderr
    assert "TIER_250" in done.stdout and "cumulative" in done.stdout and "3,000" in done.stdout


def test_simulate_article_example_1() -> None:
    done = tiergate("simulate", "--policy", "classic", "--start-tier", "TIER_1K", "--daily", "1000,1000",
                    "--days", "3", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert list(doc) == ["policy", "start_tier", "days", "final_tier", "violations"]
    assert [d["tier"] for d in doc["days"]] == ["TIER_1K", "TIER_1K", "TIER_10K"]
    assert list(doc["days"][0]) == ["day", "tier", "limit", "enqueued", "sent", "backlog", "unique_7d",
                                    "tier_next"]
    assert doc["violations"] == 0 and doc["final_tier"] == "TIER_10K"


def test_simulate_article_example_2_and_options() -> None:
    done = tiergate("simulate", "--policy", "classic", "--start-tier", "TIER_1K", "--daily",
                    "50,150,200,400,400,400,400", "--days", "8", "--quality", "GREEN", "--reserve", "0.1", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["days"][7]["tier"] == "TIER_10K" and doc["days"][6]["tier"] == "TIER_1K"
    assert doc["violations"] == 0


def test_simulate_table_for_humans() -> None:
    done = tiergate("simulate", "--daily", "1000,1000", "--days", "3")
    assert done.returncode == 0, done.stderr
    assert "tier_next" in done.stdout and "violations: 0" in done.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["plan", "--audience", "-5"], "--audience must be at least 0"),
    (["plan", "--audience", "lots"], "--audience must be a whole number"),
    (["plan", "--audience", "10", "--policy", "era9"], "unknown policy 'era9'"),
    (["plan", "--audience", "10", "--start-tier", "TIER_HUGE"], "unknown tier 'TIER_HUGE'"),
    (["plan", "--audience", "10", "--reserve", "1"], "--reserve must be in [0, 1)"),
    (["plan", "--audience", "10", "--daily-cap", "0"], "--daily-cap must be at least 1"),
    (["plan", "--audience", "10000000", "--start-tier", "TIER_250"], "cannot be reached within"),
    (["simulate", "--daily", "1000,,5"], "--daily must be comma-separated whole numbers"),
    (["simulate", "--daily", "10,x"], "--daily must be a whole number"),
    (["simulate", "--daily", "10", "--quality", "BLUE"], "unknown quality 'BLUE'"),
    (["simulate", "--daily", "10", "--reserve", "-0.1"], "--reserve must be in [0, 1)"),
    (["simulate", "--daily", "10", "--days", "0"], "--days must be at least 1"),
])
def test_bad_flags_give_one_clear_error(args: list[str], message: str) -> None:
    done = tiergate(*args)
    assert done.returncode != 0
    assert message in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert done.stderr.strip().startswith("error:")
