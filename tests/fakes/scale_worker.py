"""A tiergate worker process for multi-process tests: ``tiergate worker`` on a shared virtual clock.

It is what ``tiergate worker`` runs (a ``Gateway`` whose ``run`` does dispatch only, the Cloud API
provider, scope leases on wall-clock time) except that admission and sends read the time from a
``FileClock`` the test driver moves, and the lease timing and per-worker scope cap are flags::

    python -m tests.fakes.scale_worker --database-url postgresql://... --clock-file /tmp/clock \\
        --graph-url http://127.0.0.1:PORT/v24.0 --worker-id w1 [--max-scopes 1] [--lease-ttl 2]

It prints ``WORKER_READY <worker id> <pid>`` once its store is open and it listens for wake-ups.
SIGTERM stops it cleanly (leases released); SIGKILL is what the crash test sends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from tests.fakes.shared_clock import FileClock
from tiergate.clock import SystemClock
from tiergate.service.dispatcher import DispatcherConfig
from tiergate.service.gateway import Gateway
from tiergate.settings import Settings

READY = "WORKER_READY"


async def run(args: argparse.Namespace) -> None:
    settings = Settings(database_url=args.database_url, provider="cloud", graph_url=args.graph_url,
                        access_token=args.token, worker_id=args.worker_id, batch_size=args.batch_size)
    config = DispatcherConfig(batch_size=args.batch_size, lease_ttl=args.lease_ttl, max_scopes=args.max_scopes,
                              idle_wait=args.idle_wait)
    gateway = await Gateway.open(settings, clock=FileClock(args.clock_file), wall_clock=SystemClock(),
                                 dispatcher_config=config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        task = asyncio.create_task(gateway.run(stop, dispatch=True, sync=False))
        await asyncio.sleep(0.05)  # let the dispatcher start listening before saying so
        print(READY, args.worker_id, flush=True)
        await task
    finally:
        with contextlib.suppress(Exception):
            await gateway.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--clock-file", required=True)
    parser.add_argument("--graph-url", required=True)
    parser.add_argument("--token", default="fake-token")
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--lease-ttl", type=float, default=30.0, help="wall-clock seconds")
    parser.add_argument("--max-scopes", type=int, default=10_000)
    parser.add_argument("--idle-wait", type=float, default=5.0, help="polling fallback, wall-clock seconds")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level, format=f"%(asctime)s {args.worker_id} %(levelname)s %(name)s: "
                                                     "%(message)s")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
