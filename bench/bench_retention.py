"""Message retention: one pass of ``Retention.prune`` on SQLite, against a bare chunked DELETE.

The data: a finished campaign of ``--n`` sent messages (``bench_store``'s pipeline) and ``--n``
delivered single messages, all 40 days old; retention 31 days. The pass archives the campaign (its
counts and its sends day by day), then deletes every message. The baseline, in the same run on a
second file holding the same rows, deletes the same rows with nothing else: ``DELETE ... WHERE id
IN (SELECT id ... LIMIT 5000)`` until none is left, one transaction a chunk, as the pass does.

    python bench/bench_retention.py                 # 100,000 + 100,000 messages
    python bench/bench_retention.py --n 20000 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

from bench_store import T0, Work, pipeline
from tiergate.adapters.store.sqlite import SQLiteStore
from tiergate.clock import VirtualClock
from tiergate.core.model import Campaign, MessageState, NewMessage
from tiergate.ports import MessageUpdate
from tiergate.service.retention import Retention

DAY = 86_400.0


async def fill(store: SQLiteStore, n: int) -> None:
    """A finished campaign of ``n`` sent messages and ``n`` delivered single messages, at T0."""
    await pipeline(store, Work(n, 1000), one_write=True)
    await store.create_campaign(Campaign("c1", "t1", "100", "c1", {}, "MARKETING", total=n, created_at=T0))
    for start in range(0, n, 1000):
        singles = [NewMessage("t1", "100", f"+5731{i:08d}", "template", "UTILITY", {"template": {"name": "r"}})
                   for i in range(start, min(n, start + 1000))]
        done = await store.insert_messages(singles, T0)
        await store.apply_updates([MessageUpdate(m.id, MessageState.DELIVERED, T0 + 1) for m in done])


async def bare_delete(store: SQLiteStore) -> float:
    started = time.perf_counter()
    while True:
        async with store.transaction() as tx:
            gone = await tx.execute("DELETE FROM messages WHERE id IN (SELECT id FROM messages LIMIT 5000)")
        if gone < 5000:
            return time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="campaign messages, and as many singles")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        async with SQLiteStore(os.path.join(folder, "pass.db")) as store:
            await fill(store, args.n)
            retention = Retention(store, VirtualClock(T0 + 40 * DAY), 31)
            started = time.perf_counter()
            archived, deleted = await retention.prune()
            spent = time.perf_counter() - started
            assert (archived, deleted) == (1, 2 * args.n), (archived, deleted)
            assert await store.count_by_state() == {}
        async with SQLiteStore(os.path.join(folder, "bare.db")) as store:
            await fill(store, args.n)
            baseline = await bare_delete(store)
    row = {"messages": deleted, "pass_s": round(spent, 3), "bare_delete_s": round(baseline, 3),
           "ratio": round(spent / baseline, 2), "pass_messages_per_s": round(deleted / spent)}
    print(f"{'messages':>9} {'pass s':>8} {'bare DELETE s':>14} {'ratio':>6} {'pass msg/s':>11}")
    print(f"{deleted:>9,} {spent:>8.2f} {baseline:>14.2f} {spent / baseline:>6.2f} {deleted / spent:>11,.0f}")
    if args.json:
        args.json.write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
