"""Webhook load on a running `tiergate serve`: events applied per second and request latency p50/p99.

A real server process (SQLite, sandbox, dispatcher on) takes signed POSTs to /webhooks/whatsapp at a
fixed offered rate (open loop: requests start on schedule whether or not earlier ones finished). Each
request is verified, stored, then applied before the 200 (the endpoint's contract), so a request's
latency includes the apply. The events: half inbound texts from distinct users (each opens a
service window: an upsert and a requeue query), half status updates for messages the gateway really
sent (wamids read from the API after a warm-up campaign). Bodies carry ``--per-body`` events.
Baseline in the same run, same server, same offered request rate: GET /healthz. With ``--forward``
each load also runs with forwarding on (``PUT /v1/webhook`` to a receiver in this process): the
cost of queueing each delivery's forwards, and how many of them the app got by the end.

    python bench/bench_webhooks.py                             # 1,000 and 3,000 events/s, 1 and 10 per body
    python bench/bench_webhooks.py --rates 3000 --per-body 10 --seconds 10 --json bench_webhooks.json
    python bench/bench_webhooks.py --rates 1000 --per-body 10 --forward
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakes import webhook_bodies as wb

SECRET = "bench-app-secret"
KEY = "tg_bench-admin-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(folder: str, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, TIERGATE_APP_SECRET=SECRET, TIERGATE_API_KEY=KEY, TIERGATE_VERIFY_TOKEN="v",
               TIERGATE_LOG_LEVEL="WARNING")
    return subprocess.Popen([sys.executable, "-m", "tiergate.cli", "serve", "--port", str(port), "--database-url",
                             str(Path(folder) / "bench.db")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


async def wait_up(session: aiohttp.ClientSession, base: str) -> None:
    for _ in range(300):
        try:
            async with session.get(f"{base}/healthz") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("tiergate serve did not come up")


async def warm_up(session: aiohttp.ClientSession, base: str, n: int) -> list[tuple[str, str]]:
    """A sender and a campaign the sandbox sends: (wamid, recipient) pairs to report statuses for."""
    auth = {"Authorization": f"Bearer {KEY}"}
    r = await session.post(f"{base}/v1/senders", headers=auth, json={
        "phone_number_id": wb.PHONE_NUMBER_ID, "display_phone_number": "+" + wb.DISPLAY_PHONE_NUMBER,
        "tier": "TIER_UNLIMITED", "throughput_mps": 1000})
    assert r.status == 201, await r.text()
    r = await session.post(f"{base}/v1/campaigns", headers=auth, json={
        "sender": wb.PHONE_NUMBER_ID, "template": {"name": "warmup"},
        "recipients": [f"+55119{i:08d}" for i in range(n)]})
    assert r.status == 201, await r.text()
    campaign = (await r.json())["id"]
    sent: list[tuple[str, str]] = []
    for _ in range(600):
        await asyncio.sleep(0.5)
        async with session.get(f"{base}/v1/messages", headers=auth,
                               params={"campaign_id": campaign, "state": "read", "limit": str(n)}) as r:
            rows = await r.json()
        if len(rows) >= n * 0.9:
            sent = [(m["wamid"], m["to"].lstrip("+")) for m in rows if m.get("wamid")]
            break
    await asyncio.sleep(2)  # the sandbox's own statuses settle
    return sent


def bodies(count: int, per_body: int, sent: list[tuple[str, str]], offset: int) -> list[bytes]:
    out = []
    k = offset
    for _ in range(count):
        changes = []
        for _j in range(per_body):
            k += 1
            if k % 2 and sent:
                wamid, to = sent[k % len(sent)]
                changes.append(wb.status_change(wamid, "read", to, timestamp=time.time()))
            else:
                changes.append(wb.inbound_text_change(f"5521{k:09d}", "hello", timestamp=time.time()))
        out.append(wb.signed(*changes, app_secret=SECRET).body)
    return out


async def offered(session: aiohttp.ClientSession, url: str, payloads: list[bytes] | None, rate: float,
                  seconds: float) -> dict[str, Any]:
    """Start requests on a fixed schedule; latency per request, completed per second."""
    total = int(rate * seconds)
    latencies: list[float] = []
    errors = 0

    async def one(i: int, start_at: float) -> None:
        nonlocal errors
        delay = start_at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        t = time.perf_counter()
        try:
            if payloads is None:
                async with session.get(url) as r:
                    await r.read()
                    ok = r.status == 200
            else:
                body = payloads[i]
                async with session.post(url, data=body, headers={
                        "Content-Type": "application/json",
                        "X-Hub-Signature-256": wb.sign_body(body, SECRET).signature}) as r:
                    await r.read()
                    ok = r.status == 200
        except aiohttp.ClientError:
            ok = False
        latencies.append(time.perf_counter() - t)
        if not ok:
            errors += 1

    begin = time.perf_counter() + 0.05
    started = time.perf_counter()
    await asyncio.gather(*(one(i, begin + i / rate) for i in range(total)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {"requests": total, "errors": errors, "per_s": total / elapsed,
            "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]}


async def receiver() -> tuple[web.AppRunner, str, list[int]]:
    """The tenant's app: counts the forwarded bodies it takes."""
    got = [0]

    async def take(request: web.Request) -> web.Response:
        await request.read()
        got[0] += 1
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", take)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/hook", got


async def forwarding(session: aiohttp.ClientSession, base: str, url: str | None) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    if url is None:
        async with session.delete(f"{base}/v1/webhook", headers=auth) as r:
            assert r.status == 204, await r.text()
    else:
        async with session.put(f"{base}/v1/webhook", headers=auth, json={"url": url}) as r:
            assert r.status == 200, await r.text()


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    app, app_url, got = await receiver()
    with tempfile.TemporaryDirectory(prefix="tiergate-bench-") as folder:
        port = free_port()
        server = start_server(folder, port)
        base = f"http://127.0.0.1:{port}"
        try:
            connector = aiohttp.TCPConnector(limit=256)
            async with aiohttp.ClientSession(connector=connector) as session:
                await wait_up(session, base)
                sent = await warm_up(session, base, args.warmup)
                offset = 0
                for per_body in args.per_body:
                    for rate in args.rates:
                        for forward in ((False, True) if args.forward else (False,)):
                            await forwarding(session, base, app_url if forward else None)
                            got[0] = 0
                            request_rate = rate / per_body
                            payloads = bodies(int(request_rate * args.seconds), per_body, sent, offset)
                            offset += len(payloads) * per_body
                            hooks = await offered(session, f"{base}/webhooks/whatsapp", payloads, request_rate,
                                                  args.seconds)
                            health = await offered(session, f"{base}/healthz", None, request_rate, args.seconds)
                            row = {"offered_events_per_s": rate, "events_per_body": per_body, "forward": forward,
                                   "applied_events_per_s": hooks["per_s"] * per_body * (1 - hooks["errors"] /
                                                                                         hooks["requests"]),
                                   "forwarded_bodies": got[0], "webhook": hooks, "healthz": health}
                            rows.append(row)
                            print(f"  {rate}/s x{per_body}{' forwarded' if forward else ''}: "
                                  f"{row['applied_events_per_s']:,.0f} events/s, p50 {hooks['p50_ms']:.1f} ms, "
                                  f"p99 {hooks['p99_ms']:.1f} ms (healthz p50 {health['p50_ms']:.1f}, p99 "
                                  f"{health['p99_ms']:.1f}); the app got {got[0]:,} of {len(payloads):,} bodies",
                                  file=sys.stderr)
        finally:
            server.terminate()
            server.wait(10)
            await app.cleanup()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=lambda s: [int(x) for x in s.split(",")], default=[1000, 3000])
    parser.add_argument("--per-body", type=lambda s: [int(x) for x in s.split(",")], default=[1, 10])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=int, default=2000, help="messages sent first (statuses refer to them)")
    parser.add_argument("--forward", action="store_true", help="each load also with forwarding to an app on")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    rows = asyncio.run(run(args))
    print("| offered events/s | events per body | forwarded | applied events/s | p50 | p99 | errors | "
          "GET /healthz p50 / p99 (baseline, same request rate) | bodies the app got |")
    print("|---:|---:|---|---:|---:|---:|---:|---|---:|")
    for r in rows:
        h, g = r["webhook"], r["healthz"]
        print(f"| {r['offered_events_per_s']:,} | {r['events_per_body']} | {'yes' if r['forward'] else 'no'} | "
              f"{r['applied_events_per_s']:,.0f} | {h['p50_ms']:.1f} ms | {h['p99_ms']:.1f} ms | {h['errors']} | "
              f"{g['p50_ms']:.1f} / {g['p99_ms']:.1f} ms | {r['forwarded_bodies']:,} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
