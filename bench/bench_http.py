"""Dispatch rate against a local fake Graph API in a separate process: which HTTP client can keep up?

The platform allows up to 1,000 messages/s per number, so the client library decides whether that
is reachable. In the same run, against the same server process, at each concurrency this measures:

* ``aiohttp``: a bare aiohttp session POSTing a pre-serialised body and reading the answer (baseline);
* ``httpx``: an httpx.AsyncClient doing the same;
* ``CloudProvider``: tiergate's client (``CloudProvider.send``: serialise, POST, parse, map the outcome).

Each (client, concurrency) runs for ``--seconds`` after a warm-up, ``--rounds`` times interleaved;
the median rate is reported with its ratio to bare aiohttp at the same concurrency.

    python bench/bench_http.py                      # concurrency 8, 32, 64; prints a table
    python bench/bench_http.py --json bench_http.json --seconds 3 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.fakes when run as a script

from tests.fakes.fake_graph import FakeGraphProcess

from tiergate.adapters.provider.cloud import CloudProvider

TOKEN = "bench-token-8c1f0e5a"
SENDER = "106540352242922"
BODY = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "+16505551234", "type": "template",
        "template": {"name": "order_update", "language": {"code": "en_US"},
                     "components": [{"type": "body", "parameters": [{"type": "text", "text": "A-1042"}]}]}}
PAYLOAD = orjson.dumps(BODY)
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

Send = Callable[[], Awaitable[bool]]


async def drive(send: Send, concurrency: int, seconds: float) -> tuple[int, int, float]:
    """Run ``concurrency`` workers calling ``send`` until ``seconds`` pass: (ok, errors, elapsed)."""
    ok = errors = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal ok, errors
        while time.perf_counter() < deadline:
            if await send():
                ok += 1
            else:
                errors += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok, errors, time.perf_counter() - start


class Client:
    name = ""

    async def open(self, base_url: str, concurrency: int) -> Send:
        raise NotImplementedError

    async def close(self) -> None:
        return None


class BareAiohttp(Client):
    name = "aiohttp"

    async def open(self, base_url: str, concurrency: int) -> Send:
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))
        url, session = f"{base_url}/{SENDER}/messages", self.session

        async def send() -> bool:
            async with session.post(url, data=PAYLOAD, headers=HEADERS) as resp:
                await resp.read()
                return resp.status == 200

        return send

    async def close(self) -> None:
        await self.session.close()


class Httpx(Client):
    name = "httpx"

    async def open(self, base_url: str, concurrency: int) -> Send:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self.client = httpx.AsyncClient(limits=limits)
        url, client = f"{base_url}/{SENDER}/messages", self.client

        async def send() -> bool:
            resp = await client.post(url, content=PAYLOAD, headers=HEADERS)
            return resp.status_code == 200

        return send

    async def close(self) -> None:
        await self.client.aclose()


class Provider(Client):
    name = "CloudProvider"

    async def open(self, base_url: str, concurrency: int) -> Send:
        self.provider = CloudProvider(base_url, TOKEN, limit=concurrency)
        provider = self.provider

        async def send() -> bool:
            return (await provider.send(SENDER, BODY)).status == "accepted"

        return send

    async def close(self) -> None:
        await self.provider.aclose()


async def measure(client: Client, base_url: str, concurrency: int, seconds: float, warmup: float) -> dict[str, Any]:
    send = await client.open(base_url, concurrency)
    try:
        await drive(send, concurrency, warmup)
        ok, errors, elapsed = await drive(send, concurrency, seconds)
    finally:
        await client.close()
    return {"client": client.name, "concurrency": concurrency, "requests": ok, "errors": errors,
            "seconds": round(elapsed, 3), "rate": ok / elapsed}


async def run(args: argparse.Namespace, base_url: str) -> list[dict[str, Any]]:
    clients: list[Client] = [BareAiohttp(), Httpx(), Provider()]
    rows: list[dict[str, Any]] = []
    for concurrency in args.concurrency:
        rates: dict[str, list[float]] = {c.name: [] for c in clients}
        totals: dict[str, tuple[int, int]] = {c.name: (0, 0) for c in clients}
        for _ in range(args.rounds):
            for client in clients:  # interleaved, so drift in the machine hits every client alike
                result = await measure(client, base_url, concurrency, args.seconds, args.warmup)
                rates[client.name].append(result["rate"])
                ok, err = totals[client.name]
                totals[client.name] = (ok + result["requests"], err + result["errors"])
        baseline = statistics.median(rates["aiohttp"])
        for client in clients:
            rate = statistics.median(rates[client.name])
            rows.append({"concurrency": concurrency, "client": client.name, "rate": round(rate, 1),
                         "ratio_vs_aiohttp": round(rate / baseline, 3), "rounds": [round(r, 1) for r in
                                                                                   rates[client.name]],
                         "requests": totals[client.name][0], "errors": totals[client.name][1]})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'concurrency':>11}  {'client':<14} {'req/s (median)':>14}  {'vs aiohttp':>10}  {'errors':>6}  rounds",
             "-" * 80]
    for row in rows:
        lines.append(f"{row['concurrency']:>11}  {row['client']:<14} {row['rate']:>14,.0f}  "
                     f"{row['ratio_vs_aiohttp']:>9.2f}x  {row['errors']:>6}  {row['rounds']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[8, 32, 64])
    parser.add_argument("--seconds", type=float, default=2.0, help="measured time per (client, concurrency, round)")
    parser.add_argument("--warmup", type=float, default=0.3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--server-loop", choices=["uvloop", "asyncio"], default="uvloop",
                        help="event loop of the fake server process (uvloop keeps the server off the critical path)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args()

    with FakeGraphProcess(token=TOKEN, record=False, uvloop=args.server_loop == "uvloop") as server:
        rows = asyncio.run(run(args, server.base_url))
        served = server.stats()["stats"].get("accepted", 0)
    print(table(rows))
    print(f"\nfake Graph API process ({args.server_loop}) accepted {served:,} messages; "
          f"client on asyncio, Python {platform.python_version()}, {os.cpu_count()} CPUs")
    if args.json:
        meta = {"python": platform.python_version(), "cpus": os.cpu_count(), "server_loop": args.server_loop,
                "seconds": args.seconds, "rounds": args.rounds, "aiohttp": aiohttp.__version__,
                "httpx": httpx.__version__}
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
