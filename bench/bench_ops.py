"""What `/metrics` and `/healthz` read, on a store holding many ended messages, next to what they read before.

The store holds ``--n`` messages, all but ``--queued`` of them ended (sent), and a window ledger of
``--window`` live recipients in one scope. Each row times one read, the mean of ``--repeat`` runs:

- queue depth: ``count_live`` (the not-ended states, each off its partial index) against the
  baseline ``count_by_state`` over every message (what /metrics ran before);
- window use: ``window_counts`` (one COUNT per scope in SQL) against ``load_ledger`` per scope
  (every live row loaded into Python, what /metrics ran before);
- health: ``schema_versions`` against ``count_by_state(tenant_id=...)``, which scanned the table;
- a sender's window by hour (its view, the dashboard's release timeline): ``window_releases``
  against ``load_ledger`` (every live row loaded, then bucketed in Python).

Then the read behind a campaign's view, ``count_by_state(campaign_id=...)`` over the campaign's
``--n`` messages, with a task ticking every millisecond beside it: the longest the event loop went
without a tick, with the read on ``Store.scanner`` (SQLite: a second connection in a worker thread)
against the same statement on ``Store.reader`` (the loop's own connection, as before). Last, a big
sender's 30-day history behind its forecast (every message was a counted send, over 10 days):
``history_batches`` (aggregated in SQL by ``Store.counted_history``) against the way it was built
before (every counted send of the 30 days read on the loop's connection, placed in Python), and the
whole forecast a sender's view shows (which also read the 7-day distinct count apart before). And a
campaign's CSV export (``GET /v1/campaigns/{id}/messages.csv``) against reading the same pages of
messages with no CSV made.

    python bench/bench_ops.py                        # SQLite and PostgreSQL, 1,000,000 messages
    python bench/bench_ops.py --n 200000 --no-postgres --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pg_schema import add_postgres_url, temporary_schema
from tiergate.adapters.store import open_store
from tiergate.adapters.store.sql import SqlStore
from tiergate.core.model import MessageState, NewMessage, Scope, Sender, Tenant
from tiergate.core.planner import forecast
from tiergate.core.policy import day_start
from tiergate.ports import LedgerChange, MessageUpdate
from tiergate.service.exports import campaign_messages_csv
from tiergate.service.forecast import HISTORY_DAYS, crossing_state, forecast_scope, history_batches, policy_state

T0 = 1_700_000_000.0
DAY = 86_400.0
SCOPE = "sender:100"
BODY = {"messaging_product": "whatsapp", "type": "template", "template": {"name": "x", "language": {"code": "en"}}}


async def fill(store: SqlStore, n: int, queued: int, window: int) -> None:
    await store.create_tenant(Tenant("t1", "bench", created_at=T0))
    await store.upsert_scope(Scope(SCOPE, "t1", tier="TIER_UNLIMITED"))
    await store.create_sender(Sender("100", "t1", "+1", SCOPE, created_at=T0))
    for start in range(0, n, 10_000):
        made = await store.insert_messages([
            NewMessage(tenant_id="t1", sender_id="100", to=f"5511{i % (n // 2):09d}", kind="template",
                       category="MARKETING", body=BODY, campaign_id="c1",
                       state=MessageState.QUEUED if i >= n - queued else MessageState.SENT)
            for i in range(start, min(n, start + 10_000))], T0)
        sent_at = [T0 - 10 * DAY + 10 * DAY * (start + k) / n for k in range(len(made))]  # over the last 10 days
        await store.apply_updates([MessageUpdate(m.id, m.state, at, counted=True, sent_at=at)
                                   for m, at in zip(made, sent_at, strict=True) if m.state is MessageState.SENT])
    for start in range(0, window, 10_000):
        await store.apply_updates([], [LedgerChange(SCOPE, f"5511{i:09d}", T0 + DAY)
                                       for i in range(start, min(window, start + 10_000))])


async def timed(call: Callable[[], Awaitable[Any]], repeat: int) -> float:
    await call()  # warm the cache: both sides then read from memory
    started = time.perf_counter()
    for _ in range(repeat):
        await call()
    return (time.perf_counter() - started) / repeat


async def longest_stall(read: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """(seconds the read took, longest gap between the ticks of a 1 ms ticker meanwhile)."""
    gaps: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.01)
    started = time.perf_counter()
    await read()
    took = time.perf_counter() - started
    done.set()
    await ticker
    return took, max(gaps)


async def compare_stalls(engine: str, what: str, now: Callable[[], Awaitable[Any]],
                         before: Callable[[], Awaitable[Any]], repeat: int) -> dict[str, Any]:
    """The read now against its baseline: the fastest of ``repeat`` runs, and the longest stall of any."""
    await now()  # warm
    ran = [await longest_stall(now) for _ in range(repeat)]
    ran_b = [await longest_stall(before) for _ in range(repeat)]
    took, stall = min(t for t, _ in ran), max(g for _, g in ran)
    took_b, stall_b = min(t for t, _ in ran_b), max(g for _, g in ran_b)
    print(f"| {engine} | {what}: the read | | {took * 1000:.1f} ms | {took_b * 1000:.1f} ms | {took_b / took:.2f}x |")
    print(f"| {engine} | {what}: longest loop stall | | {stall * 1000:.1f} ms | {stall_b * 1000:.1f} ms | "
          f"{stall_b / stall:,.0f}x |")
    return {"engine": engine, "read": what, "now_ms": round(took * 1000, 2), "before_ms": round(took_b * 1000, 2),
            "stall_now_ms": round(stall * 1000, 2), "stall_before_ms": round(stall_b * 1000, 2)}


async def campaign_counts_before(store: SqlStore) -> None:
    """The baseline: the same statement on the loop's own connection."""
    async with store.reader() as tx:
        await tx.fetchall("SELECT state, COUNT(*) FROM messages WHERE campaign_id = ? GROUP BY state", ("c1",))


async def history_before(store: SqlStore, scope: Scope, now: float, offset: float) -> list[tuple[float, int]]:
    """The baseline: the forecast's history as it was built before, from every counted send."""
    async with store.reader() as tx:
        sends = await tx.fetchall(
            "SELECT sent_at, recipient FROM messages WHERE scope_id = ? AND counted = TRUE AND sent_at IS NOT NULL "
            "AND sent_at > ? AND sent_at <= ? ORDER BY sent_at, id", (scope.id, now - HISTORY_DAYS * DAY, now))
    in_window = {r: exp - DAY for r, exp in await store.load_ledger(scope.id, now)}
    latest_day: dict[str, int] = {}
    for sent_at, recipient in sends:
        if recipient in in_window:
            in_window[recipient] = sent_at
        else:
            latest_day[recipient] = int((sent_at + offset) // DAY)
    batches = Counter(day_start(d, offset) for d in latest_day.values())
    batches.update(in_window.values())
    return sorted(batches.items())


async def forecast_before(store: SqlStore, scope: Scope, now: float) -> dict[str, Any]:
    """The baseline: a sender's forecast as it was computed before (its history as above, then the
    7-day distinct count read apart)."""
    history = await history_before(store, scope, now, 0.0)
    state = crossing_state(scope.policy, policy_state(scope), history, now)
    result = forecast(scope.policy, state, now, history=history, reserve=scope.reserve_fraction, utc_offset=0.0)
    return {"next_tier": result.next_tier, "at": result.at,
            "unique_7d": await store.distinct_counted(scope.id, now - 7 * DAY, now)}


async def history(engine: str, store: SqlStore, repeat: int) -> list[dict[str, Any]]:
    scope, now = await store.get_scope(SCOPE), T0 + 1
    assert await history_batches(store, scope, now, 0.0) == await history_before(store, scope, now, 0.0)
    new, old = await forecast_scope(store, scope, now), await forecast_before(store, scope, now)
    assert (new["predicted_at"], new["unique_7d"]) == (old["at"], old["unique_7d"]), (new, old)
    return [await compare_stalls(engine, "a sender's 30-day history", lambda: history_batches(store, scope, now, 0.0),
                                 lambda: history_before(store, scope, now, 0.0), repeat),
            await compare_stalls(engine, "a sender's forecast (its view)", lambda: forecast_scope(store, scope, now),
                                 lambda: forecast_before(store, scope, now), repeat)]


async def export_csv(store: SqlStore) -> int:
    """A campaign's CSV export, consumed as a client would (the API streams these chunks)."""
    return sum([len(chunk) async for chunk in campaign_messages_csv(store, "t1", "c1")])


async def pages_only(store: SqlStore) -> int:
    """The baseline: the same pages of messages read, no CSV made."""
    rows, before = 0, None
    while page := await store.list_messages("t1", campaign_id="c1", limit=1000, before=before):
        rows, before = rows + len(page), page[-1].id
        await asyncio.sleep(0)
    return rows


async def measure(engine: str, store: SqlStore, args: argparse.Namespace) -> list[dict[str, Any]]:
    await fill(store, args.n, args.queued, args.window)
    now = T0 + 1
    pairs = [
        ("queue depth", lambda: store.count_live(), lambda: store.count_by_state()),
        ("window use", lambda: store.window_counts(now),
         lambda: asyncio.gather(*[store.load_ledger(s.id, now) for s in [Scope(SCOPE, "t1")]])),
        ("health", lambda: store.schema_versions(), lambda: store.count_by_state(tenant_id="-")),
        ("a sender's window by hour", lambda: store.window_releases(SCOPE, now, 3600.0),
         lambda: store.load_ledger(SCOPE, now)),
    ]
    rows = []
    for what, new, old in pairs:
        new_s, old_s = await timed(new, args.repeat), await timed(old, args.repeat)
        rows.append({"engine": engine, "read": what, "messages": args.n, "now_ms": round(new_s * 1000, 3),
                     "before_ms": round(old_s * 1000, 3), "speedup": round(old_s / new_s, 1)})
        print(f"| {engine} | {what} | {args.n:,} | {new_s * 1000:.2f} ms | {old_s * 1000:.2f} ms | "
              f"{old_s / new_s:,.0f}x |")
    rows.append(await compare_stalls(engine, "a campaign's counts", lambda: store.count_by_state(campaign_id="c1"),
                                     lambda: campaign_counts_before(store), args.repeat))
    rows += await history(engine, store, min(args.repeat, 2))
    rows.append(await compare_stalls(engine, f"a {args.n:,}-message campaign's CSV export (against its pages alone)",
                                     lambda: export_csv(store), lambda: pages_only(store), 1))
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000, help="messages (default 1,000,000)")
    parser.add_argument("--queued", type=int, default=10_000, help="of which still queued (default 10,000)")
    parser.add_argument("--window", type=int, default=100_000, help="live window recipients (default 100,000)")
    parser.add_argument("--repeat", type=int, default=5)
    add_postgres_url(parser)
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    print("| engine | read | messages | now | before (baseline) | faster |")
    print("|---|---|---:|---:|---:|---:|")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        async with open_store(os.path.join(folder, "ops.db")) as store:
            rows += await measure("SQLite", store, args)
    if not args.no_postgres:
        async with temporary_schema(args.postgres_url) as (schema, _), \
                open_store(args.postgres_url, schema=schema) as store:
            rows += await measure("PostgreSQL", store, args)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
