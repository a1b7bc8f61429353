"""Instructions per message on the storage path, counted by valgrind's callgrind: the same figure on
a quiet or a busy machine.

Wall-clock rates on these shared machines move 2-3x from day to day and +-25% from run to run,
which hides a 10% change. Callgrind counts the instructions the process executes, whatever else
the machine does: the same code and inputs give the same count to within ~0.3%. Each figure is
(instructions of a run with N messages - instructions of the same run with none) / N, so imports,
opening the store and seeding cancel out.

The path is ``bench_store.py``'s (insert, claim, admission + outcome writes; ``1`` = one write,
``2`` = two), with the process's garbage collector tuned as ``tiergate serve`` tunes it. In the
same run: the bare durable queue of ``bench_store.py`` (the baseline: the least a queue with a row
per message does) and, with ``--baseline-src``, the same path on another checkout's code (a
worktree's ``src``), for a ratio.

    python bench/bench_instructions.py                                   # 20,000 messages, both paths
    git worktree add ../base HEAD~3 && python bench/bench_instructions.py --baseline-src ../base/src
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
COLLECTED = re.compile(r"Collected : (\d+)")


def child(what: str, n: int) -> None:
    """Inside valgrind: one run of ``what`` over ``n`` messages (0: the set-up alone)."""
    sys.path.insert(0, str(HERE))
    import bench_store as bench
    from tiergate.adapters.store import open_store
    from tiergate.service.gctune import tune_gc

    tune_gc()  # as `tiergate serve` does
    work = bench.Work(n, 1000)
    with tempfile.TemporaryDirectory() as folder:
        if what == "queue":
            bench.sqlite_baseline(work, os.path.join(folder, "queue.db"), queue=True)
            return

        async def run() -> None:
            async with open_store(os.path.join(folder, "store.db")) as store:
                if n:
                    await bench.pipeline(store, work, one_write=what == "1")
                else:
                    await bench.seed(store)

        asyncio.run(run())


def count(what: str, n: int, src: str | None) -> int:
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = os.pathsep.join([str(Path(src).resolve()), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__,
         "--child", what, "--n", str(n)],
        env=env, capture_output=True, text=True, check=False)
    found = COLLECTED.search(result.stderr)
    if result.returncode != 0 or not found:
        raise SystemExit(f"valgrind run of {what} ({n}) failed:\n{result.stderr[-2000:]}")
    return int(found.group(1))


def per_message(jobs: list[tuple[str, str | None]], n: int) -> dict[tuple[str, str | None], float]:
    """Instructions per message of each (what, src), the valgrind runs spread over the cores."""
    runs = [(what, size, src) for what, src in jobs for size in (n, 0)]
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        counts = dict(zip(runs, pool.map(lambda r: count(*r), runs), strict=True))
    return {(what, src): (counts[(what, n, src)] - counts[(what, 0, src)]) / n for what, src in jobs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000, help="messages (default 20,000)")
    parser.add_argument("--paths", default="1,2", help="1 (one write), 2 (two writes), or both (default)")
    parser.add_argument("--baseline-src", help="another checkout's src folder, measured the same way")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.n)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    paths = args.paths.split(",")
    jobs: list[tuple[str, str | None]] = [("queue", None), *((p, None) for p in paths)]
    if args.baseline_src:
        jobs += [(p, args.baseline_src) for p in paths]
    measured = per_message(jobs, args.n)
    queue = measured[("queue", None)]
    print(f"{'path':<10} {'code':<10} {'instructions/msg':>17} {'bare queue/msg':>15} {'x bare queue':>13} "
          f"{'x baseline code':>16}")
    rows: list[dict[str, Any]] = []
    for path in paths:
        now = measured[(path, None)]
        base = measured[(path, args.baseline_src)] if args.baseline_src else None
        for code, value in (("baseline", base), ("this", now)):
            if value is None:
                continue
            ratio = "" if base is None else f"{value / base:.3f}"
            print(f"{path + ' write' + ('s' if path == '2' else ''):<10} {code:<10} {value:>17,.0f} {queue:>15,.0f} "
                  f"{value / queue:>13.2f} {ratio:>16}")
            rows.append({"path": path, "code": code, "instructions_per_message": round(value),
                         "bare_queue_per_message": round(queue), "ratio_to_bare_queue": round(value / queue, 3),
                         "ratio_to_baseline_code": None if base is None else round(value / base, 3)})
    if args.json:
        args.json.write_text(json.dumps({"messages": args.n, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
