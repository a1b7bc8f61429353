"""The whole gateway, end to end, in real time: queued messages -> claim -> admission -> Cloud API client
-> a fake Graph API in a separate process -> outcome recorded. How close does it get to the HTTP
client alone?

For each sender count S (each sender at the platform's 1,000 messages/s, TIER_UNLIMITED so only
throughput limits), ``--n`` messages per sender to distinct recipients are queued in an SQLite store,
then the dispatcher (``Gateway.run``, real clock) sends them all through ``CloudProvider`` to
``tests/fakes/fake_graph.py`` running as its own process on uvloop. The rate is messages moved from
``queued`` to ``sent`` per second of wall time. Baseline in the same run, against the same server
process: a bare aiohttp session POSTing the same body at concurrency 64 (``bench_http.BareAiohttp``).

    python bench/bench_gateway.py                         # 1 and 4 senders, 5,000 messages each
    python bench/bench_gateway.py --senders 1,2,8 --n 10000 --json bench_gateway.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.fakes and bench_http, as a script
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests.fakes.fake_graph import FakeGraphProcess

from bench_http import TOKEN, BareAiohttp, drive
from tiergate.core.admission import Category, priority_of
from tiergate.core.model import NewMessage
from tiergate.service.intake import SenderRequest
from tiergate.settings import Settings


def messages(tenant_id: str, sender: str, n: int, offset: int) -> list[NewMessage]:
    out = []
    for i in range(n):
        to = f"57300{offset + i:07d}"
        out.append(NewMessage(
            tenant_id=tenant_id, sender_id=sender, to=to, kind="template", category="UTILITY",
            body={"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": "template",
                  "template": {"name": "order_update", "language": {"code": "en_US"}}},
            priority=priority_of(Category.UTILITY)))
    return out


async def gateway_rate(base_url: str, senders: int, n: int, folder: str, max_in_flight: int = 256) -> dict[str, Any]:
    from tiergate.service.gateway import Gateway

    database = Path(tempfile.mkdtemp(dir=folder)) / f"gw-{senders}.db"  # a fresh one per run
    settings = Settings(database_url=str(database), provider="cloud", graph_url=base_url,
                        access_token=TOKEN, sync_interval=0, worker_id="bench", log_level="WARNING",
                        max_in_flight=max_in_flight)
    gateway = await Gateway.open(settings)
    try:
        tenant = await gateway.auth.create_tenant("bench")
        ids = [f"1065403522{k:05d}" for k in range(senders)]
        for k, pnid in enumerate(ids):
            await gateway.intake.register_sender(tenant, SenderRequest(
                phone_number_id=pnid, display_phone_number=f"+1555078{k:04d}", tier="TIER_UNLIMITED",
                throughput_mps=1000))
            for start in range(0, n, 5000):
                await gateway.store.insert_messages(
                    messages(tenant.id, pnid, min(5000, n - start), k * 1_000_000 + start), gateway.clock.now())
        total = senders * n
        stop = asyncio.Event()
        started = time.perf_counter()
        task = asyncio.create_task(gateway.run(stop, sync=False))
        while gateway.dispatcher.sent_total < total and time.perf_counter() - started < 600:
            await asyncio.sleep(0.01)  # (a counter in memory: polling the store would cost the run)
        elapsed = time.perf_counter() - started
        stop.set()
        await task
        counts = await gateway.store.count_by_state(tenant_id=tenant.id)
    finally:
        await gateway.close()
    return {"senders": senders, "messages": total, "seconds": round(elapsed, 3), "rate": total / elapsed,
            "states": counts, "per_sender": total / elapsed / senders}


async def bare_rate(base_url: str, seconds: float) -> float:
    client = BareAiohttp()
    send = await client.open(base_url, 64)
    try:
        await drive(send, 64, 0.3)
        ok, _errors, elapsed = await drive(send, 64, seconds)
    finally:
        await client.close()
    return ok / elapsed


async def run(args: argparse.Namespace, base_url: str) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="tiergate-bench-") as folder:
        for s in args.senders:
            bare_before = await bare_rate(base_url, args.baseline_seconds)
            row = await gateway_rate(base_url, s, args.n, folder, args.max_in_flight)
            bare_after = await bare_rate(base_url, args.baseline_seconds)
            row["bare_aiohttp"] = (bare_before + bare_after) / 2
            row["ratio"] = row["rate"] / row["bare_aiohttp"]
            rows.append(row)
            print(f"  {s} sender(s): {row['rate']:,.0f} msg/s, bare aiohttp {row['bare_aiohttp']:,.0f} req/s",
                  file=sys.stderr)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| senders | messages | gateway msg/s | per sender | bare aiohttp req/s (baseline) | ratio |",
             "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['senders']} | {r['messages']:,} | {r['rate']:,.0f} | {r['per_sender']:,.0f} | "
                     f"{r['bare_aiohttp']:,.0f} | {r['ratio']:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--senders", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4])
    parser.add_argument("--n", type=int, default=5000, help="messages per sender")
    parser.add_argument("--baseline-seconds", type=float, default=2.0)
    parser.add_argument("--uvloop", action="store_true", help="run gateway and baseline on uvloop (as serve does)")
    parser.add_argument("--max-in-flight", type=int, default=256, help="TIERGATE_MAX_IN_FLIGHT for the gateway")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    with FakeGraphProcess(token=TOKEN, record=False, uvloop=True) as server:
        rows = (uvloop.run if args.uvloop else asyncio.run)(run(args, server.base_url))
    print(table(rows))
    print(f"\nPython {platform.python_version()}, {os.cpu_count()} CPUs; server: fake Graph API process on uvloop")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows}, indent=2, default=str))


if __name__ == "__main__":
    main()
