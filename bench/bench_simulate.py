"""`tiergate simulate` on the real path against the pure model, same scenario, same run.

The real path is the gateway itself: an SQLite store, the dispatcher (claims, admission, throttle,
outcomes) and the sandbox platform under a virtual clock. The model (`core.simulation`) is the
pure day-by-day engine the real path must agree with. Both get ``--audience`` new recipients on
day 1 and run ``--days`` days; the table shows the wall time of each, messages per second of the
real path, and whether both tell the same story (days, final tier, 0 violations).

    python bench/bench_simulate.py                               # 200,000 recipients, 30 days
    python bench/bench_simulate.py --audience 1000000 --json bench_simulate.json
    python bench/bench_simulate.py --sql                         # also: the SQL statements' share of the run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from sql_trace import time_sql
from tiergate.core.policy import get_policy
from tiergate.core.simulation import run_simulation
from tiergate.core.tiers import parse_tier
from tiergate.service.simulate import simulate_real_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audience", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--policy", default="classic")
    parser.add_argument("--start-tier", default="TIER_1K")
    parser.add_argument("--sql", action="store_true", help="time every SQL statement of the real path")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    traced = time_sql() if args.sql else None
    daily = [args.audience]

    started = time.perf_counter()
    model = run_simulation(get_policy(args.policy), parse_tier(args.start_tier), daily, days=args.days)
    model_s = time.perf_counter() - started

    started = time.perf_counter()
    real = asyncio.run(simulate_real_path(policy=args.policy, start_tier=args.start_tier, daily=daily, days=args.days))
    real_s = time.perf_counter() - started

    sent = sum(d["sent"] for d in real["days"])
    done_day = next((d["day"] for d in real["days"] if d["backlog"] == 0 and d["sent"]), None)
    row = {"audience": args.audience, "days": args.days, "policy": args.policy, "start_tier": args.start_tier,
           "real_seconds": round(real_s, 2), "model_seconds": round(model_s, 4), "sent": sent,
           "real_msgs_per_s": sent / real_s, "violations": real["violations"], "final_tier": real["final_tier"],
           "all_sent_on_day": done_day, "agrees_with_model": real["days"] == model["days"]}
    print("| audience | days | real path (wall) | msgs/s | model (wall) | all sent on day | final tier | "
          "violations | same days as model |")
    print("|---:|---:|---:|---:|---:|---:|---|---:|---|")
    print(f"| {args.audience:,} | {args.days} | {real_s:.1f} s | {row['real_msgs_per_s']:,.0f} "
          f"| {model_s * 1000:.1f} ms | {done_day} | {real['final_tier']} | {real['violations']} "
          f"| {row['agrees_with_model']} |")
    if traced is not None:
        spent = traced.spent
        print(f"\nSQL: {sum(spent.values()):.1f} s of {real_s:.1f} s; the statements that took the most:")
        print("| seconds | share of the run | calls | statement |")
        print("|---:|---:|---:|---|")
        for sql, seconds in spent.most_common(10):
            print(f"| {seconds:.2f} | {seconds / real_s:.0%} | {traced.calls[sql]:,} | `{sql}` |")
        row["sql_seconds"] = round(sum(spent.values()), 2)
    if args.json:
        Path(args.json).write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
