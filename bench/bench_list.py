"""Listing messages newest first (``GET /v1/messages``, the dashboard, ``campaign send`` waiting).

A store holds ``--n`` messages in two campaigns; each row of the table is a page of 100 through
``Store.list_messages`` with a filter, next to two statements timed in the same run on the same
data: the cheapest read of 100 matching rows (no order at all: the baseline) and the query the store
ran before migration 0005 (``ORDER BY created_at DESC, id DESC``, which sorted every match).

    python bench/bench_list.py                  # SQLite and PostgreSQL, 300,000 messages
    python bench/bench_list.py --n 100000 --no-postgres --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pg_schema import add_postgres_url, temporary_schema
from tiergate.adapters.store import open_store
from tiergate.adapters.store.sql import SqlStore
from tiergate.core.model import NewMessage, Scope, Sender, Tenant

PAGE = 100
FILTERS: list[dict[str, str]] = [{}, {"campaign_id": "c1"}, {"campaign_id": "c1", "state": "queued"}]
BODY = {"messaging_product": "whatsapp", "type": "template", "template": {"name": "x", "language": {"code": "en_US"}}}


async def fill(store: SqlStore, n: int) -> None:
    await store.create_tenant(Tenant("t1", "bench", created_at=0.0))
    await store.upsert_scope(Scope("sc", "t1", tier="TIER_1K"))
    await store.create_sender(Sender("100", "t1", "+1", "sc", created_at=0.0))
    for start in range(0, n, 10_000):
        batch = [NewMessage(tenant_id="t1", sender_id="100", to=f"5511{i:09d}", kind="template",
                            category="MARKETING", body=BODY, priority=2, campaign_id=f"c{(start // 10_000) % 2 + 1}")
                 for i in range(start, min(n, start + 10_000))]
        await store.insert_messages(batch, 1_000.0 + start / 10_000)


async def best_ms(call: Callable[[], Awaitable[Any]], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return min(times) * 1000


async def measure(engine: str, store: SqlStore) -> list[dict[str, Any]]:
    rows = []
    for filters in FILTERS:
        where = " AND ".join(["tenant_id = ?", *(f"{k} = ?" for k in filters)])
        params = ["t1", *filters.values()]

        async def statement(order: str, where: str = where, params: list[str] = params) -> Any:
            async with store.reader() as tx:
                return await tx.fetchall(f"SELECT id FROM messages WHERE {where} {order} LIMIT ?",
                                         [*params, PAGE])

        page = await best_ms(lambda f=filters: store.list_messages("t1", limit=PAGE, **f))
        baseline = await best_ms(lambda: statement(""))
        before = await best_ms(lambda: statement("ORDER BY created_at DESC, id DESC"))
        row = {"engine": engine, "filter": filters or "tenant", "page_ms": round(page, 2),
               "baseline_ms": round(baseline, 2), "before_0005_ms": round(before, 2),
               "page_over_baseline": round(page / baseline, 2), "before_over_page": round(before / page, 1)}
        print(f"{engine:<10} {json.dumps(filters or 'tenant'):<44} {page:>9.2f} {baseline:>12.2f} "
              f"{before:>15.2f} {page / baseline:>9.1f}x {before / page:>11.0f}x")
        rows.append(row)
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300_000, help="messages (default 300,000)")
    add_postgres_url(parser)
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    print(f"{'engine':<10} {'filter':<44} {'page (ms)':>9} {'baseline (ms)':>12} {'before 0005 (ms)':>15} "
          f"{'/ baseline':>10} {'before / now':>12}")
    results = []
    with tempfile.TemporaryDirectory() as folder:
        async with open_store(os.path.join(folder, "list.db")) as store:
            await fill(store, args.n)
            results += await measure("sqlite", store)
    if not args.no_postgres:
        async with (temporary_schema(args.postgres_url) as (schema, admin),
                    open_store(args.postgres_url, schema=schema) as store):
            await fill(store, args.n)
            await admin.execute(f"ANALYZE {schema}.messages")
            results += await measure("postgres", store)
    if args.json:
        args.json.write_text(json.dumps({"n": args.n, "page": PAGE, "results": results}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
