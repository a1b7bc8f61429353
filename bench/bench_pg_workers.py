"""Scale-out throughput on PostgreSQL: enqueue + admission + dispatch with 1, 2 and 4 worker processes,
next to PgQueuer moving the same number of jobs on the same database in the same run.

Both systems in two timed phases, the same way. Enqueue: the driver queues ``N`` items,
``--enqueue-batch`` per call, with nothing consuming. Drain: ``W`` consumer processes start (imports
done and connected before the clock starts: they wait for a "go"), and the clock runs until every
item is done. Reported: enqueue rate, drain rate, and end to end (N over both phases).

tiergate: items are template messages to distinct recipients queued through
``Intake.create_campaign`` (the API's campaign path without HTTP: phone validation, bodies, the
insert, one NOTIFY per batch); consumers are worker processes (``Gateway`` with dispatch only, what
``tiergate worker`` runs) with a no-op provider that accepts at once, ``S`` sender scopes at
TIER_100K with leases spread evenly (``max_scopes = ceil(S / W)``). Each message is claimed,
admitted (window check, ledger row, ``sending`` written under the lease fence), "sent" and
recorded ``sent``. Each sender's throughput cap (the platform's 1,000 messages/s per number) is
lifted to ``--throughput`` (default 1,000,000) so the figure is tiergate's, not the cap's: the claim
takes the oldest due messages first, and a campaign's backlog belongs to one sender, so with the
real cap a drain runs at about 1,000/s per sender whose backlog is at the head of the queue.

PgQueuer (baseline): jobs with a small payload via ``Queries.enqueue``; consumers are
``QueueManager`` processes with a no-op entrypoint and dequeue batches of ``B``. Same database,
same run, same machine load.

Runs: PgQueuer with one consumer at each ``--pgq-batches`` (its usual set-up, the reference), then
``--repeat`` rounds of back-to-back pairs per worker count W: PgQueuer with W consumers at batch 100,
then tiergate with W workers (a pair sees the same machine load); the summary gives medians.

    python bench/bench_pg_workers.py                              # N=30,000, W=1,2,4, 3 rounds
    python bench/bench_pg_workers.py --n 10000 --workers 1 4 --repeat 1 --json out.json
    python bench/bench_pg_workers.py --worker ...                 # (internal: one worker process)

Needs ``pip install -e .[bench]`` (pgqueuer, asyncpg) and PostgreSQL at --database-url.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.fakes, when run as a script

from tests.fakes.processes import stop_processes
from tests.fakes.providers import SendOnlyProvider

from tiergate.clock import SystemClock
from tiergate.ports import SendOutcome
from tiergate.service.dispatcher import DispatcherConfig
from tiergate.service.gateway import Gateway
from tiergate.service.gctune import tune_gc
from tiergate.service.intake import CampaignRequest, SenderRequest
from tiergate.settings import Settings

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
READY = "BENCH_WORKER_READY"
TEMPLATE = {"name": "spring_sale", "language": "es"}
_REPO = Path(__file__).resolve().parents[1]


class NoopProvider(SendOnlyProvider):
    """Accepts every send at once: what is measured is tiergate, not a platform.

    It answers inline (``answers_inline``: no I/O, nothing outside the process), so the dispatcher
    writes admission and answer in one transaction, as it does for the sandbox. ``inline=False``
    makes it look like a remote platform: ``sending`` is written before the send, the answer after.
    """

    name = "noop"

    def __init__(self, inline: bool = True) -> None:
        super().__init__(inline)
        self.serial = 0

    async def send(self, phone_number_id: str, body: dict[str, Any]) -> SendOutcome:
        self.serial += 1
        return SendOutcome("accepted", wamid=f"wamid.{os.getpid()}.{self.serial}", message_status="accepted")


def with_schema(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


def admin(url: str, sql: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)


def spawn(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    full_env = dict(os.environ, **(env or {}))
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO), os.environ.get("PYTHONPATH")]))
    return subprocess.Popen([sys.executable, __file__, *args], cwd=_REPO, env=full_env, stdout=subprocess.PIPE,
                            stdin=subprocess.PIPE, text=True)


def start_together(procs: list[subprocess.Popen[str]]) -> float:
    """Wait until every process is up (imports done, connected), then release them all; returns when."""
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith(READY):
            raise RuntimeError(f"a worker did not start (exit code {proc.poll()})")
    started = time.perf_counter()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    return started


async def wait_for_go() -> None:
    print(READY, flush=True)
    await asyncio.to_thread(sys.stdin.readline)


def stop(procs: list[subprocess.Popen[str]]) -> None:
    stop_processes(procs, timeout=30)


# ------------------------------------------------------------------------------------------------
# tiergate
# ------------------------------------------------------------------------------------------------
async def tiergate_worker(url: str, worker_id: str, max_scopes: int, batch_size: int, sends: str,
                          write_behind: bool) -> None:
    settings = Settings(database_url=url, worker_id=worker_id, batch_size=batch_size)
    # A no-op provider answers at once: the in-flight caps (per sender, a guard for hanging senders;
    # in all, the HTTP pool's size) are set past the batch, so a whole claimed batch goes in one admission.
    config = DispatcherConfig(batch_size=batch_size, max_scopes=max_scopes, lease_ttl=30.0, idle_wait=1.0,
                              send_concurrency=4 * batch_size, max_in_flight=4 * batch_size,
                              write_behind=write_behind)
    tune_gc()  # as `tiergate worker` does
    gateway = await Gateway.open(settings, clock=SystemClock(), provider=NoopProvider(sends == "inline"),
                                 dispatcher_config=config)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    await wait_for_go()
    await gateway.run(done, dispatch=True, sync=False)
    await gateway.close()


# Each drain is done when nothing is left queued or in flight: for both systems, two probes of the
# partial indexes that hold exactly those rows, every 20 ms. (A GROUP BY over every message, or a
# count(*) over PgQueuer's table with its dead rows, cost the server up to a third of a CPU.)
_LEFT = ("SELECT EXISTS (SELECT 1 FROM {schema}.messages WHERE state = 'queued') "
         "OR EXISTS (SELECT 1 FROM {schema}.messages WHERE state = 'sending')")
_PGQ_LEFT = ("SELECT EXISTS (SELECT 1 FROM {schema}.pgqueuer WHERE status = 'queued') "
             "OR EXISTS (SELECT 1 FROM {schema}.pgqueuer WHERE status = 'picked')")


async def drained(url: str, left: str, procs: list[subprocess.Popen[str]], who: str) -> float:
    """Poll ``left`` (true while items remain) every 20 ms; returns when it turns false."""
    check = psycopg.connect(url, autocommit=True)
    try:
        while check.execute(left).fetchone() != (False,):
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f"{who} died")
            await asyncio.sleep(0.02)
    finally:
        check.close()
    return time.perf_counter()


async def run_tiergate(base_url: str, n: int, workers: int, scopes: int, enqueue_batch: int,
                       batch_size: int, throughput_mps: int, sends: str = "inline",
                       write_behind: bool = True) -> dict[str, Any]:
    schema = f"bench_tg_{uuid.uuid4().hex[:10]}"
    url = with_schema(base_url, schema)
    api = await Gateway.open(Settings(database_url=url, worker_id="api"), clock=SystemClock(),
                             provider=NoopProvider())
    procs: list[subprocess.Popen[str]] = []
    try:
        tenant = await api.auth.create_tenant("bench")
        senders = [str(5001 + i) for i in range(scopes)]
        for pnid in senders:
            await api.intake.register_sender(tenant, SenderRequest(pnid, f"+1555000{pnid}", tier="TIER_100K",
                                                                   quality="GREEN", throughput_mps=1000))
            if throughput_mps != 1000:  # past what intake accepts: set in the store
                await api.store.update_sender(pnid, {"throughput_mps": throughput_mps})
        max_scopes = math.ceil(scopes / workers)
        recipients = [f"+49151{i:08d}" for i in range(n)]
        # An even share per sender, as PgQueuer's consumers share one queue evenly: with whole
        # batches dealt round-robin (30 batches to 16 senders) some workers' scopes held twice the
        # work of others, and the drain waited on them.
        shares = [recipients[i::scopes] for i in range(scopes)]
        begun = time.perf_counter()
        for start in range(0, len(shares[0]), enqueue_batch):
            for sender, share in zip(senders, shares, strict=True):
                if chunk := share[start:start + enqueue_batch]:
                    await api.intake.create_campaign(tenant, CampaignRequest(
                        sender, TEMPLATE, [{"to": r} for r in chunk], category="UTILITY"))
        enqueue_s = time.perf_counter() - begun
        procs = [spawn(["--worker", url, f"w{i}", str(max_scopes), str(batch_size), sends,
                        "1" if write_behind else "0"])
                 for i in range(workers)]
        started = await asyncio.to_thread(start_together, procs)
        finished = await drained(base_url, _LEFT.format(schema=schema), procs, "a worker")
        counts = await api.store.count_by_state()
        if counts != {"sent": n}:
            raise RuntimeError(f"the drain ended with {counts}, not {n} sent")
    finally:
        stop(procs)
        await api.close()
        admin(base_url, f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    name = "tiergate" + ("" if sends == "inline" else " (awaited)") + ("" if write_behind else " (no w-b)")
    return _result(name, workers, n, batch_size, enqueue_s, finished - started)


def _result(system: str, workers: int, n: int, batch: int, enqueue_s: float, drain_s: float) -> dict[str, Any]:
    return {"system": system, "workers": workers, "n": n, "batch": batch, "enqueue_s": enqueue_s,
            "drain_s": drain_s, "enqueue_rate": n / enqueue_s, "rate": n / drain_s,
            "end_to_end_rate": n / (enqueue_s + drain_s)}


# ------------------------------------------------------------------------------------------------
# PgQueuer
# ------------------------------------------------------------------------------------------------
async def _pgq_driver(url: str) -> tuple[Any, Any]:
    try:
        import asyncpg
        from pgqueuer.db import AsyncpgDriver

        conn = await asyncpg.connect(url)
        return AsyncpgDriver(conn), conn
    except ImportError:
        from pgqueuer.db import PsycopgDriver

        pconn = await psycopg.AsyncConnection.connect(url, autocommit=True)
        return PsycopgDriver(pconn), pconn


async def pgqueuer_worker(url: str, batch_size: int) -> None:
    from pgqueuer.qm import QueueManager
    from pgqueuer.queries import Queries

    driver, conn = await _pgq_driver(url)
    qm = QueueManager(Queries(driver))

    @qm.entrypoint("noop")
    async def noop(job: Any) -> None:
        return None

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, qm.shutdown.set)
    await wait_for_go()
    await qm.run(batch_size=batch_size, dequeue_timeout=timedelta(seconds=1))
    await conn.close()


async def run_pgqueuer(base_url: str, n: int, workers: int, batch_size: int, enqueue_batch: int) -> dict[str, Any]:
    from pgqueuer.queries import Queries

    # PgQueuer reads its schema from the environment once per process: one schema per run of this script.
    schema = os.environ.setdefault("PGQUEUER_SCHEMA", f"bench_pgq_{uuid.uuid4().hex[:10]}")
    admin(base_url, f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    driver, conn = await _pgq_driver(base_url)
    procs: list[subprocess.Popen[str]] = []
    try:
        queries = Queries(driver)
        await queries.install()
        begun = time.perf_counter()
        for start in range(0, n, enqueue_batch):
            size = min(enqueue_batch, n - start)
            await queries.enqueue(["noop"] * size, [f"job {start + i}".encode() for i in range(size)], [0] * size)
        enqueue_s = time.perf_counter() - begun
        procs = [spawn(["--pgqueuer-worker", base_url, str(batch_size)], env={"PGQUEUER_SCHEMA": schema})
                 for _ in range(workers)]
        started = await asyncio.to_thread(start_together, procs)
        finished = await drained(base_url, _PGQ_LEFT.format(schema=schema), procs, "a PgQueuer worker")
    finally:
        stop(procs)
        await conn.close()
        admin(base_url, f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    return _result(f"PgQueuer (batch {batch_size})", workers, n, batch_size, enqueue_s, finished - started)


# ------------------------------------------------------------------------------------------------
def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        url, worker_id, max_scopes, batch, sends, write_behind = sys.argv[2:8]
        asyncio.run(tiergate_worker(url, worker_id, int(max_scopes), int(batch), sends, write_behind == "1"))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--pgqueuer-worker":
        asyncio.run(pgqueuer_worker(sys.argv[2], int(sys.argv[3])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("TIERGATE_TEST_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--n", type=int, default=30_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--scopes", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=500, help="tiergate's claim batch")
    parser.add_argument("--pgq-batches", type=int, nargs="+", default=[10, 100],
                        help="PgQueuer dequeue batches for the one-consumer reference runs")
    parser.add_argument("--repeat", type=int, default=3, help="pairs (PgQueuer, tiergate) per worker count")
    parser.add_argument("--enqueue-batch", type=int, default=1000)
    parser.add_argument("--throughput", type=int, default=1_000_000,
                        help="each sender's messages/s cap (the platform's is 1,000: lifted by default so the "
                             "figure measures tiergate, not the cap)")
    parser.add_argument("--sends", choices=["inline", "awaited"], default="inline",
                        help="inline: the no-op provider answers inline (one write per message, as for the "
                             "sandbox); awaited: treated as a remote platform (sending, then the answer)")
    parser.add_argument("--no-write-behind", action="store_true",
                        help="each batch's write finishes before the next claim (DispatcherConfig.write_behind)")
    parser.add_argument("--no-pgqueuer", action="store_true")
    parser.add_argument("--no-tiergate", action="store_true")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    # The driver is the API side of both systems (tiergate's intake, PgQueuer's enqueue): the same
    # garbage-collector settings as `tiergate serve`, for both.
    tune_gc()
    results: list[dict[str, Any]] = []

    def show(r: dict[str, Any]) -> dict[str, Any]:
        results.append(r)
        print(f"{r['system']:<22} workers {r['workers']}: {r['n']:,} enqueued in {r['enqueue_s']:5.2f} s "
              f"({r['enqueue_rate']:7,.0f}/s), drained in {r['drain_s']:5.2f} s ({r['rate']:7,.0f}/s); "
              f"end to end {r['end_to_end_rate']:7,.0f}/s", flush=True)
        return r

    reference: dict[int, dict[str, Any]] = {}
    if not args.no_pgqueuer:  # PgQueuer's usual set-up: one consumer process, at each batch size
        for batch in args.pgq_batches:
            reference[batch] = show(asyncio.run(run_pgqueuer(args.database_url, args.n, 1, batch, args.enqueue_batch)))
    pairs: dict[int, list[tuple[dict[str, Any], dict[str, Any]]]] = {w: [] for w in args.workers}
    for _ in range(args.repeat):  # back to back, so both sides of a pair see the same machine load
        for workers in args.workers:
            pgq: dict[str, Any] = {}
            if not args.no_pgqueuer:
                pgq = show(asyncio.run(run_pgqueuer(args.database_url, args.n, workers, 100, args.enqueue_batch)))
            if not args.no_tiergate:
                tg = show(asyncio.run(run_tiergate(args.database_url, args.n, workers, args.scopes,
                                                   args.enqueue_batch, args.batch_size, args.throughput,
                                                   args.sends, not args.no_write_behind)))
                pairs[workers].append((tg, pgq))
    if not args.no_pgqueuer and not args.no_tiergate:
        for key, what in (("rate", "drain"), ("end_to_end_rate", "end-to-end (enqueue + drain)")):
            print(f"\n{what} rates, median of the runs (tiergate / PgQueuer at batch 100 with as many consumers "
                  "as workers):")
            for workers, runs in pairs.items():
                tg = statistics.median(t[key] for t, _ in runs)
                pgq_rate = statistics.median(p[key] for _, p in runs)
                ratio = statistics.median(t[key] / p[key] for t, p in runs)
                line = f"  {workers} worker(s): tiergate {tg:7,.0f}/s, PgQueuer {pgq_rate:7,.0f}/s, ratio {ratio:.2f}x"
                if 100 in reference:
                    one = reference[100][key]
                    line += f"; {tg / one:.2f}x PgQueuer's one consumer at batch 100 ({one:,.0f}/s)"
                print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
