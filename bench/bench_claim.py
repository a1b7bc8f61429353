"""Claim cost per row: ``claim_due`` against a bare ``SELECT`` of the same rows, per adapter.

Each batch inserts ``--batch`` new due messages, claims them with ``claim_due`` (what the dispatcher
reads every step: one scope, one priority level), then marks them sent so the next batch claims
fresh rows. The baseline, timed in the same loop on the same rows, is the cheapest read of them:
one ``SELECT`` of the same columns by the claim index's order, rows left as tuples.

    python bench/bench_claim.py                    # SQLite and PostgreSQL, 50 batches of 1,000
    python bench/bench_claim.py --no-postgres --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from pg_schema import add_postgres_url, temporary_schema
from tiergate.adapters.store import open_store
from tiergate.adapters.store.sql import MESSAGES, SqlStore
from tiergate.core.model import MessageState, NewMessage, Scope, Sender, Tenant
from tiergate.ports import MessageUpdate

T0 = 1_700_000_000.0
SCOPE = "sender:100"


async def measure(store: SqlStore, batches: int, size: int) -> dict[str, float]:
    await store.create_tenant(Tenant("t1", "bench", created_at=T0))
    await store.upsert_scope(Scope(SCOPE, "t1", tier="TIER_UNLIMITED"))
    await store.create_sender(Sender("100", "t1", "+57 300", SCOPE, created_at=T0))
    bare_sql = (f"{MESSAGES.select} WHERE scope_id = ? AND state = 'queued' AND priority = 2 "
                "AND next_attempt_at <= ? ORDER BY next_attempt_at, created_at LIMIT ?")
    claim = bare = 0.0
    rows = 0
    for b in range(batches):
        now = T0 + b
        await store.insert_messages([NewMessage(
            tenant_id="t1", sender_id="100", to=f"57300{b * size + i:07d}", kind="template", category="MARKETING",
            body={"messaging_product": "whatsapp", "to": f"57300{b * size + i:07d}", "type": "template",
                  "template": {"name": "spring_sale", "language": {"code": "es"}}}) for i in range(size)], now)
        started = time.perf_counter()
        async with store.reader() as tx:
            raw = await tx.fetchall(bare_sql, (SCOPE, now, size))
        bare += time.perf_counter() - started
        started = time.perf_counter()
        claimed = await store.claim_due([SCOPE], now, size)
        claim += time.perf_counter() - started
        assert len(claimed) == len(raw) == size
        rows += size
        await store.apply_updates([MessageUpdate(m.id, MessageState.SENT, now, reason="sent", sent_at=now)
                                   for m in claimed])
    return {"claim_us_per_row": claim / rows * 1e6, "bare_select_us_per_row": bare / rows * 1e6,
            "ratio": claim / bare}


def show(engine: str, r: dict[str, float]) -> dict[str, Any]:
    print(f"{engine:<10} {r['claim_us_per_row']:>10.2f} {r['bare_select_us_per_row']:>14.2f} {r['ratio']:>7.2f}x")
    return {"engine": engine, **{k: round(v, 3) for k, v in r.items()}}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--batch", type=int, default=1000)
    add_postgres_url(parser)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    print(f"{'engine':<10} {'claim us/row':>10} {'bare SELECT us/row':>14} {'ratio':>7}")
    results = []
    with tempfile.TemporaryDirectory() as folder:
        async with open_store(os.path.join(folder, "claim.db")) as store:
            results.append(show("sqlite", await measure(store, args.batches, args.batch)))
    if not args.no_postgres:
        async with (temporary_schema(args.postgres_url) as (schema, _),
                    open_store(args.postgres_url, schema=schema) as store):
            results.append(show("postgres", await measure(store, args.batches, args.batch)))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
