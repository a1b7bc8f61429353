"""Plan time for audiences of 1K .. 10M (target: under 10 ms each), next to a naive day loop.

For each scenario and audience, in the same run:

* ``plan``: ``core.planner.plan`` (event-driven greedy; steady days kept as one run);
* ``+rows``: ``plan(...).to_dict()``, i.e. also building every output row (what ``--json`` prints);
* ``naive``: the first loop anyone would write for the classic ladder: one iteration per day,
  re-summing the last 7 days each time (only for classic scenarios it can express).

Times are the median of ``--repeat`` runs (garbage collector off while timing). The ``days`` column is
the plan's length: the output has one row per day, so building the rows of a 40,000-day plan (10M at
TIER_250, past the default 36,500-day limit, which the bench lifts) costs more than planning it.

    python bench/bench_plan.py
    python bench/bench_plan.py --repeat 21 --json bench_plan.json
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

from tiergate.core.planner import Plan, plan

AUDIENCES = (1_000, 10_000, 100_000, 1_000_000, 10_000_000)
# (label, policy, start tier, daily cap, reserve)
SCENARIOS: tuple[tuple[str, str, str, int | None, float], ...] = (
    ("classic from TIER_1K", "classic", "TIER_1K", None, 0.0),
    ("classic from TIER_1K, cap 5,000/day", "classic", "TIER_1K", 5_000, 0.0),
    ("classic from TIER_1K, reserve 10%", "classic", "TIER_1K", None, 0.1),
    ("portfolio from TIER_250", "portfolio", "TIER_250", None, 0.0),
    ("portfolio from TIER_2K", "portfolio", "TIER_2K", None, 0.0),
    ("classic from TIER_250 (verification only)", "classic", "TIER_250", None, 0.0),
)
NAIVE_LADDER = {"TIER_250": [250], "TIER_1K": [1_000, 10_000, 100_000, None]}


def naive_classic_days(audience: int, start: str, cap: int | None, reserve: float) -> int:
    """Day-by-day greedy on the classic ladder: reach re-summed over a list every day."""
    ladder = NAIVE_LADDER[start]
    rung, sent, days = 0, 0, []
    while sent < audience:
        limit = ladder[rung]
        room = audience - sent if limit is None else limit - int(-(-limit * reserve // 1))
        if cap is not None:
            room = min(room, cap)
        today = min(room, audience - sent)
        days.append(today)
        sent += today
        if limit is not None and rung + 1 < len(ladder) and start != "TIER_250" and sum(days[-7:]) >= 2 * limit:
            rung += 1
    return len(days)


def median_ms(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            result = fn()
            times.append((time.perf_counter() - start) * 1000)
        finally:
            gc.enable()
    return statistics.median(times), result


def run(repeat: int) -> dict[str, Any]:
    rows = []
    for label, policy, start, cap, reserve in SCENARIOS:
        for audience in AUDIENCES:
            def planned(a: int = audience, p: str = policy, s: str = start, c: int | None = cap,
                        r: float = reserve) -> Plan:
                return plan(a, p, s, daily_cap=c, reserve=r, max_days=100_000)

            ms, result = median_ms(planned, repeat)
            rows_ms, _ = median_ms(lambda planned=planned: planned().to_dict(), repeat)
            naive_ms = None
            if policy == "classic":
                naive_ms, naive_days = median_ms(
                    lambda a=audience, s=start, c=cap, r=reserve: naive_classic_days(a, s, c, r), max(1, repeat // 4))
                assert naive_days == result.total_days, (label, audience, naive_days, result.total_days)
            rows.append({"scenario": label, "audience": audience, "days": result.total_days,
                         "final_tier": result.final_tier.name, "plan_ms": ms, "with_rows_ms": rows_ms,
                         "naive_ms": naive_ms, "under_10ms": ms < 10.0})
    return {"repeat": repeat, "python": platform.python_version(), "machine": platform.machine(), "results": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args()
    report = run(args.repeat)
    print(f"plan time, median of {report['repeat']} runs, Python {report['python']}")
    print(f"{'scenario':<44}{'audience':>12}{'days':>8}{'final tier':>16}{'plan ms':>10}{'+rows ms':>10}"
          f"{'naive ms':>11}{'naive/plan':>12}")
    for row in report["results"]:
        naive = "-" if row["naive_ms"] is None else f"{row['naive_ms']:.3f}"
        ratio = "-" if row["naive_ms"] is None else f"{row['naive_ms'] / row['plan_ms']:.2f}"
        print(f"{row['scenario']:<44}{row['audience']:>12,}{row['days']:>8,}{row['final_tier']:>16}"
              f"{row['plan_ms']:>10.3f}{row['with_rows_ms']:>10.3f}{naive:>11}{ratio:>12}")
    slowest = max(report["results"], key=lambda r: r["plan_ms"])
    print(f"slowest: {slowest['scenario']}, {slowest['audience']:,}: {slowest['plan_ms']:.3f} ms "
          f"({'under' if slowest['under_10ms'] else 'OVER'} the 10 ms target)")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2)


if __name__ == "__main__":
    main()
