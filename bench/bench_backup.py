"""``tiergate backup`` (``backup_file``: VACUUM INTO, then the copy checked) against a plain file copy.

The database: ``--n`` messages sent through ``bench_store``'s pipeline (ledger rows and all). The
baseline, in the same run on the same file: ``shutil.copyfile`` of it with nothing writing (what
``cp`` costs, unsafe while tiergate runs).

    python bench/bench_backup.py                 # 200,000 messages
    python bench/bench_backup.py --n 50000 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench_store import Work, pipeline
from tiergate.adapters.store.sqlite import SQLiteStore, backup_file


async def fill(path: str, n: int) -> None:
    async with SQLiteStore(path) as store:
        await pipeline(store, Work(n, 1000), one_write=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000, help="messages in the database")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        source = os.path.join(folder, "t.db")
        asyncio.run(fill(source, args.n))
        size = os.path.getsize(source)
        started = time.perf_counter()
        shutil.copyfile(source, os.path.join(folder, "cp.db"))
        copied = time.perf_counter() - started
        started = time.perf_counter()
        messages, _ = backup_file(source, os.path.join(folder, "backup.db"))
        backed = time.perf_counter() - started
        assert messages == args.n
        out_size = os.path.getsize(os.path.join(folder, "backup.db"))
    row = {"messages": args.n, "mb": round(size / 1e6, 1), "backup_mb": round(out_size / 1e6, 1),
           "backup_s": round(backed, 3), "copy_s": round(copied, 3), "ratio": round(backed / copied, 1)}
    print(f"{'messages':>9} {'MB':>7} {'backup MB':>10} {'backup s':>9} {'cp s (baseline)':>16} {'ratio':>6}")
    print(f"{args.n:>9,} {size / 1e6:>7.1f} {out_size / 1e6:>10.1f} {backed:>9.2f} {copied:>16.3f} "
          f"{backed / copied:>6.1f}")
    if args.json:
        args.json.write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
