"""Queueing messages through the HTTP API: one per request (``POST /v1/messages``, the baseline, in
the same run) against many per request (``POST /v1/messages/batch``).

The API app runs in process (httpx's ASGI transport: no sockets, so the figures are the app's and
the store's own cost, not the network's) on an SQLite store in a temporary folder, with the rate
limit off and no dispatcher running: what is timed is validation, the intake's reads (sender,
service windows, opt-outs) and the insert, to ``202``. Every message goes to its own recipient.

    python bench/bench_intake.py                       # 5,000 messages a way
    python bench/bench_intake.py --n 20000 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tiergate.api.app import create_app
from tiergate.clock import SystemClock
from tiergate.service.gateway import Gateway
from tiergate.settings import Settings

SENDER = "106540352242922"


def message(i: int) -> dict[str, Any]:
    return {"sender": SENDER, "to": f"+55119{i:08d}", "category": "UTILITY",
            "template": {"name": "order_update", "language": "en_US",
                         "components": [{"type": "body", "parameters": [{"type": "text", "text": f"#{i}"}]}]}}


async def way(folder: str, name: str, n: int, per_request: int, concurrency: int) -> dict[str, Any]:
    settings = Settings(database_url=str(Path(folder) / f"{name}.db"), rate_limit_per_minute=0, worker_id=name)
    gateway = await Gateway.open(settings, clock=SystemClock())
    key = await gateway.auth.bootstrap()
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

        started = time.perf_counter()
        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        queued = (await gateway.store.count_by_state()).get("queued", 0)
        assert queued == n, f"{queued} of {n} queued"
    finally:
        await client.aclose()
        await gateway.close()
    return {"way": name, "messages": n, "per_request": per_request, "concurrency": concurrency,
            "seconds": round(elapsed, 3), "messages_per_s": round(n / elapsed)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5000, help="messages a way (default 5,000)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    ways = [("single", 1, 1), ("single x16", 1, 16), ("batch 100", 100, 1), ("batch 1000", 1000, 1)]
    rows = []
    print(f"{'way':<12} {'per request':>11} {'concurrency':>11} {'messages/s':>11} {'vs single':>10}")
    with tempfile.TemporaryDirectory() as folder:
        for name, per_request, concurrency in ways:
            row = await way(folder, name.replace(" ", "-"), args.n, per_request, concurrency)
            row["way"] = name
            row["ratio_to_single"] = round(row["messages_per_s"] / rows[0]["messages_per_s"], 2) if rows else 1.0
            rows.append(row)
            print(f"{name:<12} {per_request:>11} {concurrency:>11} {row['messages_per_s']:>11,} "
                  f"{row['ratio_to_single']:>9.2f}x")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
