"""Queueing messages through the HTTP API: one per request (``POST /v1/messages``, the baseline, in
the same run) against many per request (``POST /v1/messages/batch``).

The API app runs in process (httpx's ASGI transport: no sockets, so the figures are the app's and
the store's own cost, not the network's) on an SQLite store in a temporary folder, with the rate
limit off and no dispatcher running: what is timed is validation, the intake's reads (sender,
service windows, opt-outs) and the insert, to ``202``. Every message goes to its own recipient.

    python bench/bench_intake.py                       # 5,000 messages a way, SQLite
    python bench/bench_intake.py --postgres            # and on PostgreSQL (a schema of its own per way)
    python bench/bench_intake.py --postgres --calls    # and the time of each store call a request makes
    python bench/bench_intake.py --n 20000 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from pg_schema import add_postgres_url, temporary_schema
from tiergate.api.app import create_app
from tiergate.clock import SystemClock
from tiergate.service.gateway import Gateway
from tiergate.settings import Settings

SENDER = "106540352242922"


def message(i: int) -> dict[str, Any]:
    return {"sender": SENDER, "to": f"+55119{i:08d}", "category": "UTILITY",
            "template": {"name": "order_update", "language": "en_US",
                         "components": [{"type": "body", "parameters": [{"type": "text", "text": f"#{i}"}]}]}}


def time_calls(store: Any) -> tuple[Counter[str], Counter[str]]:
    """Wrap each public async method of the store: (seconds, calls) per method name."""
    spent: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    for name in dir(type(store)):
        method = getattr(store, name)
        if name.startswith("_") or not inspect.iscoroutinefunction(method):
            continue

        async def timed(*args: Any, _method: Any = method, _name: str = name, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await _method(*args, **kwargs)
            finally:
                spent[_name] += time.perf_counter() - started
                calls[_name] += 1

        setattr(store, name, timed)
    return spent, calls


async def way(database_url: str, name: str, n: int, per_request: int, concurrency: int,
              calls: bool = False) -> dict[str, Any]:
    settings = Settings(database_url=database_url, rate_limit_per_minute=0, worker_id=name)
    gateway = await Gateway.open(settings, clock=SystemClock())
    key = await gateway.auth.bootstrap()
    timing = time_calls(gateway.store) if calls else None
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(gateway)), base_url="http://bench",
                               headers={"Authorization": f"Bearer {key}"}, timeout=60)
    try:
        r = await client.post("/v1/senders", json={"phone_number_id": SENDER, "display_phone_number": "+15550783881",
                                                   "tier": "TIER_UNLIMITED"})
        assert r.status_code == 201, r.text
        bodies: list[tuple[str, Any]] = []
        for start in range(0, n, per_request):
            items = [message(i) for i in range(start, min(n, start + per_request))]
            bodies.append(("/v1/messages", items[0]) if per_request == 1
                          else ("/v1/messages/batch", {"messages": items}))
        queue = iter(bodies)

        async def client_loop() -> None:
            for path, body in queue:
                response = await client.post(path, json=body)
                assert response.status_code == 202, response.text

        if timing is not None:
            timing[0].clear()
            timing[1].clear()
        started = time.perf_counter()
        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        requests = len(bodies)
        per_call = {} if timing is None else {
            k: {"ms_per_request": round(v / requests * 1000, 3), "calls_per_request": round(timing[1][k] / requests, 2)}
            for k, v in timing[0].most_common()}
        queued = (await gateway.store.count_by_state()).get("queued", 0)
        assert queued == n, f"{queued} of {n} queued"
    finally:
        await client.aclose()
        await gateway.close()
    row: dict[str, Any] = {"way": name, "messages": n, "per_request": per_request, "concurrency": concurrency,
                           "seconds": round(elapsed, 3), "messages_per_s": round(n / elapsed)}
    if per_call:
        row["store_calls"] = per_call
    return row


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5000, help="messages a way (default 5,000)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--postgres", action="store_true", help="also on PostgreSQL")
    parser.add_argument("--calls", action="store_true", help="time each store call of a single-message request")
    add_postgres_url(parser)
    args = parser.parse_args()
    ways = [("single", 1, 1), ("single x16", 1, 16), ("batch 100", 100, 1), ("batch 1000", 1000, 1)]
    rows: list[dict[str, Any]] = []
    print(f"{'engine':<11} {'way':<12} {'per request':>11} {'concurrency':>11} {'messages/s':>11} {'vs single':>10}")
    for engine in ("sqlite", "postgres") if args.postgres else ("sqlite",):
        first: dict[str, Any] | None = None
        for name, per_request, concurrency in ways:
            with tempfile.TemporaryDirectory() as folder:
                calls = args.calls and name == "single"
                if engine == "sqlite":
                    row = await way(str(Path(folder) / "bench.db"), name, args.n, per_request, concurrency, calls)
                else:
                    async with temporary_schema(args.postgres_url) as (schema, _):
                        row = await way(f"{args.postgres_url}?schema={schema}", name, args.n, per_request,
                                        concurrency, calls)
            first = first or row
            row |= {"engine": engine, "way": name,
                    "ratio_to_single": round(row["messages_per_s"] / first["messages_per_s"], 2)}
            rows.append(row)
            print(f"{engine:<11} {name:<12} {per_request:>11} {concurrency:>11} {row['messages_per_s']:>11,} "
                  f"{row['ratio_to_single']:>9.2f}x")
            for call, seen in row.get("store_calls", {}).items():
                print(f"{'':<11}   {call:<24} {seen['ms_per_request']:.3f} ms a request "
                      f"({seen['calls_per_request']:g} calls)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
