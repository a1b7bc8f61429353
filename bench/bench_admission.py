"""Admission decisions per second of the pure core, next to a ``dict[key] += 1`` loop.

One stream of ``--decisions`` counted sends (default 1M) over ``--recipients`` distinct recipients
(200K), uniformly random, at increasing times spread over ``--hours`` (72 h, so recipients leave the
window and the expiry path is exercised), against one scope at TIER_100K. In the same run, round after
round (interleaved, garbage collector off for every timed loop), it measures:

* ``dict += 1``: ``counts[key] += 1`` over the same keys (the baseline: one dict update per decision);
* ``admit_stream``: the core's batch admission (``core.window.admit_stream``), exact, one call;
* ``try_admit``: ``RollingWindow.try_admit`` called once per decision;
* ``decide``: ``core.admission.decide`` once per decision (what the dispatcher calls per message).

Rates are medians over ``--rounds``; ratios are to the baseline of the same round (median). With
``--batch N`` consecutive decisions share a timestamp (a dispatcher deciding a batch at one instant).

    python bench/bench_admission.py
    python bench/bench_admission.py --rounds 9 --json bench_admission.json
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from tiergate.core.admission import Category, MessageFacts, ScopeLimits, decide
from tiergate.core.tiers import parse_tier
from tiergate.core.window import RollingWindow, Slot, admit_stream

LIMIT = parse_tier("TIER_100K").limit or 0


def make_stream(decisions: int, recipients: int, hours: float, batch: int, seed: int) -> tuple[list[str], list[float]]:
    rng = random.Random(seed)
    keys = [f"55119{n:08d}" for n in range(recipients)]
    stream = [keys[rng.randrange(recipients)] for _ in range(decisions)]
    step = hours * 3600.0 / decisions
    times = [(i - i % batch) * step for i in range(decisions)]
    return stream, times


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        result = fn()
        return time.perf_counter() - start, result
    finally:
        gc.enable()


def run(decisions: int, recipients: int, hours: float, batch: int, rounds: int, per_call: int,
        seed: int) -> dict[str, Any]:
    stream, times = make_stream(decisions, recipients, hours, batch, seed)
    calls, call_times = stream[:per_call], times[:per_call]
    facts = [MessageFacts(r, True, Category.MARKETING, False) for r in calls]
    limits = ScopeLimits(limit=LIMIT)
    keys = set(stream)

    def baseline_seconds() -> float:
        counts = dict.fromkeys(keys, 0)
        start = time.perf_counter()
        for key in stream:
            counts[key] += 1
        return time.perf_counter() - start

    def stream_admission() -> list[bool]:
        return admit_stream(RollingWindow(), stream, times, LIMIT)

    def per_call_admission(names: Sequence[str], at: Sequence[float]) -> int:
        window = RollingWindow()
        try_admit = window.try_admit
        return sum(isinstance(try_admit(r, t, LIMIT), Slot) for r, t in zip(names, at, strict=True))

    def per_call_decide() -> int:
        window = RollingWindow()
        return sum(decide(window, f, limits, t).counted for f, t in zip(facts, call_times, strict=True))

    samples: dict[str, list[float]] = {"dict += 1": [], "admit_stream": [], "try_admit": [], "decide": []}
    admitted = 0
    for _ in range(rounds):
        gc.collect()
        gc.disable()
        try:
            samples["dict += 1"].append(decisions / baseline_seconds())
        finally:
            gc.enable()
        elapsed, decided = timed(stream_admission)
        samples["admit_stream"].append(decisions / elapsed)
        admitted = sum(decided)
        elapsed, _ = timed(lambda: per_call_admission(calls, call_times))
        samples["try_admit"].append(per_call / elapsed)
        elapsed, _ = timed(per_call_decide)
        samples["decide"].append(per_call / elapsed)
    base = samples["dict += 1"]
    rows = []
    for name, rates in samples.items():
        paired = [rate / b for rate, b in zip(rates, base, strict=True)]
        rows.append({"name": name, "median_per_s": statistics.median(rates), "best_per_s": max(rates),
                     "ratio_median": statistics.median(paired), "ratio_min": min(paired),
                     "ratio_max": max(paired)})
    return {
        "config": {"decisions": decisions, "recipients": recipients, "hours": hours, "batch": batch,
                   "rounds": rounds, "per_call_decisions": per_call, "limit": LIMIT, "seed": seed},
        "admitted": admitted,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "results": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--recipients", type=int, default=200_000)
    parser.add_argument("--hours", type=float, default=72.0)
    parser.add_argument("--batch", type=int, default=1, help="decisions sharing one timestamp")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--per-call", type=int, default=200_000, help="decisions timed for try_admit/decide")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args()
    report = run(args.decisions, args.recipients, args.hours, args.batch, args.rounds, args.per_call, args.seed)
    config = report["config"]
    print(f"{config['decisions']:,} decisions over {config['recipients']:,} recipients, {config['hours']:g} h, "
          f"TIER_100K, batch {config['batch']}, {config['rounds']} rounds, Python {report['python']}; "
          f"{report['admitted']:,} admitted")
    print(f"{'loop':<14}{'median/s':>14}{'best/s':>14}{'x dict (median)':>18}{'x dict (min..max)':>20}")
    for row in report["results"]:
        print(f"{row['name']:<14}{row['median_per_s']:>14,.0f}{row['best_per_s']:>14,.0f}"
              f"{row['ratio_median']:>18.2f}{row['ratio_min']:>11.2f}..{row['ratio_max']:.2f}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2)


if __name__ == "__main__":
    main()
