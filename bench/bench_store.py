"""Storage throughput: enqueue + claim + admission write + outcome write, per adapter, with a baseline.

Each batch of messages goes through what the dispatcher does to it in storage:
``enqueue_messages`` (the batch, as a campaign enqueues its rows), ``claim_due`` (the same number),
then one of two paths:

- two writes (a remote platform, e.g. the Cloud API): ``apply_updates`` to ``sending`` with a
  window-ledger row per recipient (the admission transaction, before the send), then
  ``apply_updates`` to ``sent``;
- one write (a provider that answers inline: the sandbox, the simulator): admission and answer in
  one ``apply_updates`` to ``sent`` (with both history lines) and the ledger rows.
The baseline, measured in the same run on the same engine, is a bare ``executemany`` INSERT of the
same rows (same columns and JSON bodies, primary key only) in one transaction per batch: the ratio
says what the full path costs over the cheapest possible write of the messages alone. The second
baseline is a bare durable queue in plain SQL (insert with a claim index, claim, one write marking
each row sent plus its recipient's window row): the least a queue with a row per message does on
the one-write path, with none of tiergate's bookkeeping. On SQLite the bench also records the
adapter's statements during the measured steps and replays them alone on a fresh file ("SQL alone"):
the path's rate if tiergate's Python cost nothing. The process's garbage collector is tuned as
``tiergate serve`` tunes it. ``bench_instructions.py`` counts this path's instructions per message
(callgrind), a figure the machine's speed does not move.

    python bench/bench_store.py                       # SQLite and PostgreSQL, 100k messages
    python bench/bench_store.py --n 20000 --no-postgres --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any

import apsw
import orjson
import psycopg

from pg_schema import add_postgres_url, temporary_schema
from sql_trace import Recorded, record_sql, replay, time_sql
from tiergate.adapters.store import open_store
from tiergate.adapters.store.ids import new_ids
from tiergate.adapters.store.sql import SqlStore
from tiergate.adapters.store.sqlite import SQLiteStore
from tiergate.core.model import MessageState, NewMessage, Scope, Sender, Tenant
from tiergate.ports import LedgerChange, MessageUpdate
from tiergate.service.gctune import tune_gc

DAY = 86_400.0
T0 = 1_700_000_000.0
SCOPE = "sender:100"
BASELINE_COLUMNS = ("id", "tenant_id", "sender_id", "scope_id", "recipient", "kind", "category", "body",
                    "priority", "state", "next_attempt_at", "metadata", "created_at", "updated_at")


class Work:
    """The run's messages in batches, made afresh each time they are walked (outside the timed steps).

    Not one list made up front: 100,000 messages with their nested bodies, alive through the whole
    run, made every full garbage collection during the measured steps walk half a million objects
    no server holds (a third of the claim step's time, measured).
    """

    def __init__(self, n: int, size: int) -> None:
        self.n, self.size = n, size

    def __iter__(self) -> Iterator[list[NewMessage]]:
        for start in range(0, self.n, self.size):
            yield [
                NewMessage(
                    tenant_id="t1", sender_id="100", to=f"57300{i:07d}", kind="template", category="MARKETING",
                    body={"messaging_product": "whatsapp", "to": f"57300{i:07d}", "type": "template",
                          "template": {"name": "spring_sale", "language": {"code": "es"}}},
                    campaign_id="c1",
                )
                for i in range(start, min(self.n, start + self.size))
            ]


def baseline_rows(batch: list[NewMessage], now: float) -> list[tuple[Any, ...]]:
    ids = new_ids("msg", len(batch), now)
    return [(mid, m.tenant_id, m.sender_id, SCOPE, m.to, m.kind, m.category, orjson.dumps(m.body).decode(),
             m.priority, "queued", now, "{}", now, now) for mid, m in zip(ids, batch, strict=True)]


_BASELINE_DDL = ("CREATE TABLE bare_messages (id TEXT PRIMARY KEY, tenant_id TEXT, sender_id TEXT, scope_id TEXT, "
                 "recipient TEXT, kind TEXT, category TEXT, body TEXT, priority INTEGER, state TEXT, "
                 "next_attempt_at DOUBLE PRECISION, metadata TEXT, created_at DOUBLE PRECISION, "
                 "updated_at DOUBLE PRECISION)")
_BASELINE_INSERT = (f"INSERT INTO bare_messages ({', '.join(BASELINE_COLUMNS)}) "
                    f"VALUES ({', '.join(['{}'] * len(BASELINE_COLUMNS))})")


def _sqlite_db(path: str, *ddl: str) -> apsw.Connection:
    """A baseline's own file, opened as the adapter opens its own (apsw, no per-call mutex, its page
    size, WAL, synchronous NORMAL), its tables made."""
    conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE | apsw.SQLITE_OPEN_NOMUTEX)
    conn.execute(f"PRAGMA page_size = {SQLiteStore(path).page_size}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    for statement in (_BASELINE_DDL, *ddl):
        conn.execute(statement)
    return conn


@asynccontextmanager
async def _postgres_db(url: str, schema: str, *ddl: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A baseline's connection to its own schema, its tables made."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True,
                                                     options=f"-c search_path={schema}") as conn:
        for statement in (_BASELINE_DDL, *ddl):
            await conn.execute(statement)
        yield conn


# The second baseline, a bare durable queue: the least any queue with a row per message must do for
# the one-write path, in plain SQL on the same engine with the same rows. The insert (primary key and
# a partial claim index), a claim that reads id, recipient and body off that index, and one
# transaction that marks each row sent with its wamid and upserts its recipient's window row. No
# history, no idempotency or campaign index, no objects, no JSON decoded.
_QUEUE_DDL = (
    "CREATE INDEX bare_claim ON bare_messages (scope_id, priority, next_attempt_at, created_at) "
    "WHERE state = 'queued'",
    "ALTER TABLE bare_messages ADD COLUMN wamid TEXT",
    "CREATE TABLE bare_ledger (scope_id TEXT, recipient TEXT, expiry DOUBLE PRECISION, "
    "PRIMARY KEY (scope_id, recipient))",
)
_QUEUE_CLAIM = ("SELECT id, recipient, body FROM bare_messages{hint} WHERE scope_id = {p} AND state = 'queued' "
                "AND priority = 2 AND next_attempt_at <= {p} ORDER BY next_attempt_at, created_at LIMIT {p}")
_QUEUE_SENT = "UPDATE bare_messages SET state = 'sent', updated_at = {p}, wamid = {p} WHERE id = {p}"
_QUEUE_LEDGER = ("INSERT INTO bare_ledger (scope_id, recipient, expiry) VALUES ({p}, {p}, {p}) "
                 "ON CONFLICT (scope_id, recipient) DO UPDATE SET expiry = excluded.expiry")


def _queue_writes(claimed: list[tuple[Any, ...]], now: float) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    return ([(now, f"wamid.{mid}", mid) for mid, _to, _body in claimed],
            [(SCOPE, to, now + DAY) for _mid, to, _body in claimed])


def sqlite_baseline(work: Work, path: str, queue: bool = False) -> float:
    """Seconds for the bare insert, or with ``queue`` the bare durable queue, of every batch."""
    conn = _sqlite_db(path, *(_QUEUE_DDL if queue else ()))
    insert = _BASELINE_INSERT.format(*["?"] * len(BASELINE_COLUMNS))
    claim = _QUEUE_CLAIM.format(hint=" INDEXED BY bare_claim", p="?")
    sent, ledger = _QUEUE_SENT.format(p="?"), _QUEUE_LEDGER.format(p="?")
    elapsed = 0.0
    for i, batch in enumerate(work):
        now, started = T0 + i, time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(insert, baseline_rows(batch, now))
        conn.execute("COMMIT")
        if queue:
            updates, slots = _queue_writes(conn.execute(claim, (SCOPE, now, len(batch))).fetchall(), now)
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sent, updates)
            conn.executemany(ledger, slots)
            conn.execute("COMMIT")
        elapsed += time.perf_counter() - started
    conn.close()
    return elapsed


async def postgres_baseline(work: Work, url: str, schema: str, queue: bool = False) -> float:
    """The same on PostgreSQL, in ``schema``."""
    async with _postgres_db(url, schema, *(_QUEUE_DDL if queue else ())) as conn:
        insert = _BASELINE_INSERT.format(*["%s"] * len(BASELINE_COLUMNS))
        claim = _QUEUE_CLAIM.format(hint="", p="%s")
        sent, ledger = _QUEUE_SENT.format(p="%s"), _QUEUE_LEDGER.format(p="%s")
        elapsed = 0.0
        for i, batch in enumerate(work):
            now, started = T0 + i, time.perf_counter()
            async with conn.transaction(), conn.cursor() as cursor:
                await cursor.executemany(insert, baseline_rows(batch, now))
            if queue:
                async with conn.cursor() as cursor:
                    await cursor.execute(claim, (SCOPE, now, len(batch)))
                    updates, slots = _queue_writes(await cursor.fetchall(), now)
                async with conn.transaction(), conn.cursor() as cursor:
                    await cursor.executemany(sent, updates)
                    await cursor.executemany(ledger, slots)
            elapsed += time.perf_counter() - started
        return elapsed


async def seed(store: SqlStore) -> None:
    """The tenant, scope and sender every message of the run goes through."""
    await store.create_tenant(Tenant("t1", "bench", created_at=T0))
    await store.upsert_scope(Scope(SCOPE, "t1", tier="TIER_UNLIMITED"))
    await store.create_sender(Sender("100", "t1", "+57 300", SCOPE, created_at=T0))


async def pipeline(store: SqlStore, work: Work, one_write: bool = False,
                   recording: Callable[[], AbstractContextManager[Any]] = nullcontext) -> dict[str, float]:
    """Seconds spent in each step over the whole run (and in total); ``recording`` wraps the steps."""
    await seed(store)
    spent = {"insert": 0.0, "claim": 0.0, "admit": 0.0, "outcome": 0.0}

    async def timed(step: str, call: Callable[[], Awaitable[Any]]) -> Any:
        started = time.perf_counter()
        result = await call()
        spent[step] += time.perf_counter() - started
        return result

    # The bulk path's call (a campaign's rows): no answer wanted. Code from before it existed (a
    # worktree measured for a ratio) has only insert_messages.
    enqueue = getattr(store, "enqueue_messages", store.insert_messages)
    with recording():
        for i, batch in enumerate(work):
            now = T0 + i
            await timed("insert", lambda b=batch, t=now: enqueue(b, t))
            claimed = await timed("claim", lambda t=now, k=len(batch): store.claim_due([SCOPE], t, k))
            assert len(claimed) == len(batch), "claimed fewer than inserted"
            slots = [LedgerChange(SCOPE, m.to, now + DAY) for m in claimed]
            if one_write:
                done = [MessageUpdate(m.id, MessageState.SENT, now, reason="accepted", add_attempt=True,
                                      counted=True, slot_expiry=now + DAY, wamid=f"wamid.{m.id}", sent_at=now,
                                      earlier=((MessageState.SENDING, "admitted"),)) for m in claimed]
                await timed("admit", lambda u=done, s=slots: store.apply_updates(u, s, lease=None))
                continue
            admit = [MessageUpdate(m.id, MessageState.SENDING, now, reason="admitted", add_attempt=True,
                                   counted=True, slot_expiry=now + DAY) for m in claimed]
            await timed("admit", lambda u=admit, s=slots: store.apply_updates(u, s, lease=None))
            sent = [MessageUpdate(m.id, MessageState.SENT, now, reason="accepted", wamid=f"wamid.{m.id}",
                                  sent_at=now) for m in claimed]
            await timed("outcome", lambda u=sent: store.apply_updates(u))
    spent["total"] = sum(spent.values())
    counts = await store.count_by_state()
    assert counts == {"sent": work.n}, counts
    return spent


async def sql_alone(calls: Recorded, path: str, n: int) -> float:
    """Seconds for a run's recorded statements replayed on a fresh seeded store: the path's time if
    Python cost nothing."""
    async with open_store(path) as store:
        assert isinstance(store, SQLiteStore)
        await seed(store)
        seconds = replay(store._conn, calls)
        counts = await store.count_by_state()
    assert counts == {"sent": n}, counts
    return seconds


def report(engine: str, n: int, spent: dict[str, float], baseline: float, queue: float,
           sql: float | None = None) -> dict[str, Any]:
    rate, base_rate, queue_rate = n / spent["total"], n / baseline, n / queue
    row = {"engine": engine, "messages": n, "messages_per_s": round(rate), "baseline_inserts_per_s": round(base_rate),
           "ratio": round(rate / base_rate, 3), "bare_queue_messages_per_s": round(queue_rate),
           "ratio_to_bare_queue": round(rate / queue_rate, 3),
           "sql_alone_messages_per_s": None if sql is None else round(n / sql),
           "step_us_per_message": {k: round(v / n * 1e6, 2) for k, v in spent.items()}}
    steps = "  ".join(f"{k} {v:.1f}" for k, v in row["step_us_per_message"].items())
    alone = "-" if sql is None else f"{n / sql:,.0f}"
    print(f"{engine:<20} {n:>9,} {rate:>14,.0f} {base_rate:>18,.0f} {rate / base_rate:>7.2f} {queue_rate:>16,.0f} "
          f"{rate / queue_rate:>7.2f} {alone:>15}   {steps}")
    return row


PATHS = (("2 writes", False), ("1 write", True))


async def run_sqlite(work: Work, n: int, folder: str) -> list[dict[str, Any]]:
    baseline = sqlite_baseline(work, os.path.join(folder, "baseline.db"))
    queue = sqlite_baseline(work, os.path.join(folder, "queue.db"), queue=True)
    rows = []
    for label, one_write in PATHS:
        async with open_store(os.path.join(folder, f"tiergate-{one_write}.db")) as store:
            spent = await pipeline(store, work, one_write)
        # The recording is a run of its own, not the measured one: the recorded rows, all alive,
        # would slow the measured steps' garbage collections (7% of the path, measured).
        calls: Recorded = []
        async with open_store(os.path.join(folder, f"recorded-{one_write}.db")) as store:
            await pipeline(store, work, one_write, recording=functools.partial(record_sql, calls))
        sql = await sql_alone(calls, os.path.join(folder, f"replay-{one_write}.db"), n)
        del calls
        rows.append(report(f"sqlite, {label}", n, spent, baseline, queue, sql))
    return rows


async def run_postgres(work: Work, n: int, url: str) -> list[dict[str, Any]]:
    rows = []
    for label, one_write in PATHS:
        async with temporary_schema(url) as (schema, _):
            queue = await postgres_baseline(work, url, schema, queue=True)
        async with temporary_schema(url) as (schema, _):
            baseline = await postgres_baseline(work, url, schema)
            async with open_store(url, schema=schema) as store:
                spent = await pipeline(store, work, one_write)
        rows.append(report(f"postgres, {label}", n, spent, baseline, queue))
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="messages (default 100,000)")
    parser.add_argument("--batch", type=int, default=1000, help="messages per batch (default 1,000)")
    add_postgres_url(parser)
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    # The collector tuned as `tiergate serve` and `tiergate worker` tune it (service/gctune.py): the
    # path is measured as the service runs it, the baselines in the same process.
    tune_gc()
    work = Work(args.n, args.batch)
    print(f"{'engine, path':<20} {'messages':>9} {'full path msg/s':>14} {'bare insert rows/s':>18} {'ratio':>7} "
          f"{'bare queue msg/s':>16} {'ratio':>7} {'SQL alone msg/s':>15}   us per message by step")
    time_sql()  # the SQLite adapter's connections record what they run (for the SQL-alone replay)
    results = []
    with tempfile.TemporaryDirectory() as folder:
        results += await run_sqlite(work, args.n, folder)
    if not args.no_postgres:
        results += await run_postgres(work, args.n, args.postgres_url)
    if args.json:
        args.json.write_text(json.dumps({"batch": args.batch, "results": results}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
