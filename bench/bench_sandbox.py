"""How fast the sandbox platform takes sends: a simulated month of campaign traffic in memory.

``tiergate simulate`` replays a month of a 1M-recipient campaign through the sandbox, so the sandbox
must not be what makes it slow. This replays N template sends spread over 30 simulated days (a
portfolio sender that climbs the tiers, 1% replies, webhooks polled as the clock moves) and reports
sends/s. Baseline in the same run: the engine's own admission (``core.window.RollingWindow.try_admit``)
on the same stream, i.e. the cheapest thing anything that counts recipients could do per send.

    python bench/bench_sandbox.py                      # 1,000,000 sends
    python bench/bench_sandbox.py --sends 200000 --statuses delivered --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
from pathlib import Path
from typing import Any

from tiergate.adapters.provider.sandbox import SandboxProvider
from tiergate.clock import VirtualClock
from tiergate.core.window import RollingWindow
from tiergate.ports import SenderInfo

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DAYS = 30


def stream(sends: int, audience: int) -> tuple[list[str], list[float]]:
    """Recipients and send times: an even share per day, sent in the first half of each day."""
    per_day = max(1, sends // DAYS)
    recipients = [f"49{i % audience:010d}" for i in range(sends)]
    times = [T0 + (i // per_day) * 86_400 + (i % per_day) * 43_200 / per_day for i in range(sends)]
    return recipients, times


async def run_sandbox(recipients: list[str], times: list[float], statuses: tuple[str, ...],
                      batch: int) -> dict[str, Any]:
    clock = VirtualClock(T0)
    sandbox = SandboxProvider(clock, seed=1, statuses=statuses, webhook_batch=batch, reply_share=0.01)
    await sandbox.register_sender(SenderInfo("1001", "+1 555 000 1001", "acme", "portfolio", "TIER_10K", "GREEN"))
    bodies = [{"messaging_product": "whatsapp", "to": r, "type": "template",
               "template": {"name": "promo", "language": {"code": "en"}}} for r in recipients]
    webhooks = 0
    start = time.perf_counter()
    for i, (body, at) in enumerate(zip(bodies, times, strict=True)):
        if i % 100 == 0:
            clock.set(at)
            webhooks += len(sandbox.poll_events(at))
        else:
            clock.set(at)
        await sandbox.send("1001", body)
    clock.advance(86_400)
    webhooks += len(sandbox.poll_events(clock.now()))
    elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "rate": len(bodies) / elapsed, "webhooks": webhooks,
            "violations": sandbox.violations, "final_tier": sandbox.tier_of("portfolio:acme"),
            "delivered": sandbox.stats["delivered"]}


def run_window(recipients: list[str], times: list[float], capacity: float) -> dict[str, Any]:
    window = RollingWindow()
    start = time.perf_counter()
    for rcpt, at in zip(recipients, times, strict=True):
        window.try_admit(rcpt, at, capacity)
    elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "rate": len(recipients) / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sends", type=int, default=1_000_000)
    parser.add_argument("--audience", type=int, default=400_000, help="distinct recipients")
    parser.add_argument("--statuses", default="sent,delivered,read", help="statuses the sandbox reports")
    parser.add_argument("--batch", type=int, default=1, help="statuses per webhook body")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    statuses = tuple(s for s in args.statuses.split(",") if s)
    recipients, times = stream(args.sends, args.audience)
    baseline = run_window(recipients, times, 10_000)
    sandbox = asyncio.run(run_sandbox(recipients, times, statuses, args.batch))
    ratio = sandbox["rate"] / baseline["rate"]
    print(f"{'what':<52} {'sends/s':>12} {'seconds':>9}")
    print("-" * 76)
    print(f"{'RollingWindow.try_admit (baseline)':<52} {baseline['rate']:>12,.0f} {baseline['seconds']:>9.1f}")
    label = f"SandboxProvider.send + poll ({','.join(statuses) or 'failures only'})"
    print(f"{label:<52} {sandbox['rate']:>12,.0f} {sandbox['seconds']:>9.1f}")
    print(f"\nsandbox / baseline: {ratio:.3f}x; {args.sends:,} sends over {DAYS} simulated days, "
          f"{sandbox['webhooks']:,} webhook bodies, final tier {sandbox['final_tier']}, "
          f"violations {sandbox['violations']:,} (sends the stream made beyond the tier: it ignores the limit), "
          f"Python {platform.python_version()}")
    if args.json:
        Path(args.json).write_text(json.dumps({"sends": args.sends, "statuses": statuses, "batch": args.batch,
                                               "baseline": baseline, "sandbox": sandbox, "ratio": ratio}, indent=2))


if __name__ == "__main__":
    main()
