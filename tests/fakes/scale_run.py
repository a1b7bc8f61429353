"""Drive tiergate's scale-out setup under a shared virtual clock, judged by an independent platform.

The pieces, each its own OS process but the API node:

- the platform: ``FakeGraphProcess`` with ``--enforce-limits`` (``PlatformLimits``: its own rolling
  24 h count per number, on the shared clock) answering the Cloud API;
- N workers: ``tests.fakes.scale_worker`` (``tiergate worker`` on the shared clock), all on one
  PostgreSQL schema, each holding at most ``max_scopes`` scope leases (the rest stand by);
- the API node, in this process: a ``Gateway`` that only queues (intake) and takes webhooks on a
  real socket, as ``tiergate serve --no-dispatch`` does;
- the driver (``ScaleRun.run``): queues the load round by round and moves the ``FileClock``.

The driver moves time only when the system has settled at the current instant: nothing is
``sending`` (no send in flight, so the platform sees every send at the instant it was admitted)
and nothing queued is due (every due message was decided: sent, parked for later, expired...).
Then it jumps to the next instant anything is due (or the next round) and NOTIFYs the workers.
A killed worker's scope settles only once a standby took its lease over and turned its in-flight
sends ``unknown``, which the platform may then confirm by status webhook.

``python -m tests.fakes.scale_run --help`` runs a longer version outside the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from tests.fakes.fake_graph import FakeGraphProcess
from tests.fakes.processes import stop_processes
from tests.fakes.scale_worker import READY
from tests.fakes.served import served_app
from tests.fakes.shared_clock import FileClock
from tiergate.adapters.store.postgres import PostgresStore
from tiergate.api.app import create_app
from tiergate.clock import SystemClock
from tiergate.core.model import MessageState, Tenant
from tiergate.service.gateway import Gateway
from tiergate.service.intake import CampaignRequest, MessageRequest, SenderRequest
from tiergate.service.wakeups import announce
from tiergate.settings import Settings

__all__ = ["ScaleConfig", "ScaleResult", "ScaleRun"]

HOUR = 3600.0
T0 = 1_767_571_200.0  # 2026-01-05 00:00 UTC
TOKEN = "fake-token"
APP_SECRET = "scale-app-secret"
TEMPLATE = {"name": "account_update", "language": "en_US"}
TERMINAL = {s.value for s in MessageState} - {"queued", "sending", "held"}
_REPO = Path(__file__).resolve().parents[2]


@dataclass
class ScaleConfig:
    database_url: str
    workers: int = 4
    scopes: int = 3
    tier: str = "TIER_1K"
    messages: int = 20_000
    recipients: int = 5_000
    rounds: int = 12  # campaigns per scope, one round every ``round_every``
    round_every: float = 6 * HOUR
    expires_after: float = 30 * HOUR  # what cannot go by then ends ``expired``
    singles: int = 50  # of the messages, sent one by one, each submitted twice with one idempotency key
    max_scopes: int = 1  # per worker: 3 scopes, 4 workers -> one stands by
    lease_ttl: float = 5.0  # wall-clock seconds
    kill_at_round: int | None = None  # SIGKILL the worker sending at that round
    seed: int = 5
    stall_after: float = 20.0  # wall seconds at one instant with no progress before giving up
    nudge_after: float = 2.0  # wall seconds with due work but none in flight before time moves 1 s
    log: bool = False


@dataclass
class ScaleResult:
    states: dict[str, int]
    platform: dict[str, Any]
    killed: str | None = None
    unknown_before_reconcile: int = 0
    reconciled: int = 0
    instants: int = 0
    nudges: int = 0
    wall_seconds: float = 0.0
    virtual_span: float = 0.0
    # Virtual seconds from a message's admission (``sending``) to the platform counting it, at most:
    # above the dispatcher's window margin, the harness let time jump while a request was in transit.
    max_lateness: float = 0.0


class ScaleRun:
    def __init__(self, config: ScaleConfig) -> None:
        self.config = config
        self.workdir = Path(tempfile.mkdtemp(prefix="tiergate-scale-"))
        self.clock = FileClock(self.workdir / "clock", start=T0)
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.api: Gateway | None = None
        self.platform: FakeGraphProcess | None = None
        self.instants = 0
        self.nudges = 0

    def say(self, text: str) -> None:
        if self.config.log:
            print(f"[{time.strftime('%H:%M:%S')} t+{(self.clock.now() - T0) / HOUR:6.2f}h] {text}", flush=True)

    # -- the processes -----------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _api_node(self) -> AsyncIterator[str]:
        """The API node (intake, webhooks) on a real socket; yields its webhook URL."""
        settings = Settings(database_url=self.config.database_url, provider="cloud", graph_url="http://unused.invalid",
                            access_token=TOKEN, app_secret=APP_SECRET, worker_id="api")
        self.api = await Gateway.open(settings, clock=self.clock, wall_clock=SystemClock())
        try:
            async with served_app(create_app(self.api)) as url:
                yield f"{url}/webhooks/whatsapp"
        finally:
            await self.api.close()

    def _start_worker(self, name: str, graph_url: str) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(_REPO), os.environ.get("PYTHONPATH")])))
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.scale_worker", "--database-url", self.config.database_url,
             "--clock-file", str(self.clock.path), "--graph-url", graph_url, "--token", TOKEN, "--worker-id", name,
             "--max-scopes", str(self.config.max_scopes), "--lease-ttl", str(self.config.lease_ttl),
             "--idle-wait", "1.0"],
            cwd=_REPO, env=env, stdout=subprocess.PIPE, text=True,
        )
        self.procs[name] = proc

    def _wait_ready(self) -> None:
        for name, proc in self.procs.items():
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line.startswith(READY):
                raise RuntimeError(f"worker {name} did not start (exit code {proc.poll()})")

    def _stop_workers(self) -> None:
        stop_processes(self.procs.values(), timeout=15)

    # -- the load ----------------------------------------------------------------------------
    async def _setup(self) -> tuple[Tenant, list[str]]:
        assert self.api is not None and self.platform is not None
        tenant = await self.api.auth.create_tenant("scale")
        senders = [str(3001 + i) for i in range(self.config.scopes)]
        for pnid in senders:
            display = f"+1555000{pnid}"
            await self.api.intake.register_sender(tenant, SenderRequest(
                pnid, display, tier=self.config.tier, quality="GREEN", throughput_mps=1000))
            await asyncio.to_thread(self.platform.set_phone_number, pnid, display_phone_number=display[1:],
                                    messaging_limit_tier=self.config.tier)
        return tenant, senders

    def _plan(self, senders: list[str]) -> list[list[tuple[str, list[int]]]]:
        """Per round, per sender: recipient numbers (distinct in a campaign; re-sends across rounds)."""
        cfg = self.config
        rng = random.Random(cfg.seed)
        campaigns = cfg.rounds * len(senders)
        total = cfg.messages - cfg.singles
        sizes = [total // campaigns + (1 if i < total % campaigns else 0) for i in range(campaigns)]
        plan: list[list[tuple[str, list[int]]]] = []
        for r in range(cfg.rounds):
            plan.append([(s, rng.sample(range(cfg.recipients), sizes[r * len(senders) + i]))
                         for i, s in enumerate(senders)])
        return plan

    @staticmethod
    def _phone(n: int) -> str:
        return f"+49151{n:08d}"

    async def _enqueue_round(self, tenant: Tenant, round_plan: list[tuple[str, list[int]]], first: bool) -> None:
        assert self.api is not None
        now = self.clock.now()
        expires = now + self.config.expires_after
        for sender, numbers in round_plan:
            _, errors = await self.api.intake.create_campaign(tenant, CampaignRequest(
                sender, TEMPLATE, [{"to": self._phone(n)} for n in numbers], category="UTILITY", expires_at=expires))
            assert not errors, errors[:3]
        if first:  # one by one, each twice: the idempotency key keeps one message
            rng = random.Random(self.config.seed + 1)
            for i in range(self.config.singles):
                to = self._phone(rng.randrange(self.config.recipients))
                req = MessageRequest(round_plan[i % len(round_plan)][0], to, template=TEMPLATE, category="UTILITY",
                                     idempotency_key=f"single-{i}", expires_at=expires)
                first_id = (await self.api.intake.submit(tenant, req)).id
                assert (await self.api.intake.submit(tenant, req)).id == first_id

    # -- time --------------------------------------------------------------------------------
    async def _pending(self, now: float) -> tuple[int, int, float | None]:
        """(sending, queued and due, earliest queued due time)."""
        store = self._store()
        async with store.reader() as tx:
            row = await tx.fetchone(
                "SELECT COUNT(*) FILTER (WHERE state = 'sending'), "
                "COUNT(*) FILTER (WHERE state = 'queued' AND next_attempt_at <= ?), "
                "MIN(next_attempt_at) FILTER (WHERE state = 'queued') FROM messages", (now,))
        assert row is not None
        return int(row[0]), int(row[1]), row[2]

    def _store(self) -> PostgresStore:
        assert self.api is not None
        store = self.api.store
        assert isinstance(store, PostgresStore)
        return store

    async def _settle(self) -> float | None:
        """Wait until nothing is in flight or due now; returns when the next queued message is due.

        Messages a worker holds back without a write (a sender out of tokens: its bucket refills
        only as virtual time passes) stay due: when nothing is in flight and the due count has not
        moved for ``nudge_after``, time moves on by one second. That is always safe for the judge:
        what matters is that no send is in flight when the clock moves.
        """
        now = self.clock.now()
        last: tuple[int, int] | None = None
        changed = time.monotonic()
        while True:
            sending, due, nxt = await self._pending(now)
            if sending == 0 and due == 0:
                return nxt
            if (sending, due) != last:
                last, changed = (sending, due), time.monotonic()
            elif sending == 0 and time.monotonic() - changed > self.config.nudge_after:
                self.nudges += 1
                return now + 1.0
            elif time.monotonic() - changed > self.config.stall_after:
                raise RuntimeError(f"no progress at t+{(now - T0) / HOUR:.3f} h for {self.config.stall_after:.0f} s: "
                                   f"{sending} sending, {due} due; workers alive: "
                                   f"{[n for n, p in self.procs.items() if p.poll() is None]}")
            await asyncio.sleep(0.005)

    async def _move_to(self, t: float) -> None:
        self.clock.set(t)
        self.instants += 1
        await announce(self._store())

    # -- the crash -----------------------------------------------------------------------------
    async def _kill_a_sender(self, sender: str, accepted_before: dict[str, int]) -> str:
        """SIGKILL the worker sending for ``sender`` in the middle of a batch: the platform already
        took some of its sends and holds their answers back (a ``slow`` fault set before the round),
        so they are surely in flight (or, failing that, any worker holding a scope)."""
        assert self.platform is not None
        store = self._store()
        owner = None
        deadline = time.monotonic() + 10
        while owner is None and time.monotonic() < deadline:
            async with store.reader() as tx:
                rows = await tx.fetchall(
                    "SELECT DISTINCT m.sender_id, s.lease_owner FROM messages AS m JOIN scopes AS s "
                    "ON s.id = m.scope_id WHERE m.state = 'sending' AND s.lease_owner IS NOT NULL AND m.sender_id = ?",
                    (sender,))
            accepted = (await asyncio.to_thread(self.platform.stats))["accepted"]
            owner = next((o for s, o in rows if accepted.get(s, 0) > accepted_before.get(s, 0)), None)
        if owner is None:
            async with store.reader() as tx:
                row = await tx.fetchone("SELECT lease_owner FROM scopes WHERE lease_owner IS NOT NULL "
                                        "ORDER BY id LIMIT 1")
            assert row is not None
            owner = row[0]
        self.procs[owner].send_signal(signal.SIGKILL)
        self.procs[owner].wait()
        await asyncio.to_thread(self.platform.set_faults, [])
        self.say(f"SIGKILL {owner}")
        return str(owner)

    # -- the run -------------------------------------------------------------------------------
    async def run(self) -> ScaleResult:
        cfg = self.config
        started = time.monotonic()
        killed: str | None = None
        async with self._api_node() as webhook_url:
            self.platform = FakeGraphProcess(token=TOKEN, webhook_url=webhook_url, app_secret=APP_SECRET,
                                             clock_file=str(self.clock.path), enforce_limits=True,
                                             webhook_statuses=())
            await asyncio.to_thread(self.platform.start)
            try:
                tenant, senders = await self._setup()
                for i in range(cfg.workers):
                    self._start_worker(f"w{i + 1}", self.platform.base_url)
                await asyncio.to_thread(self._wait_ready)
                plan = self._plan(senders)
                jitter = random.Random(cfg.seed + 2)  # rounds off the hour: releases fall between rounds
                starts = [T0] + [T0 + r * cfg.round_every + jitter.uniform(0, cfg.round_every / 2)
                                 for r in range(1, cfg.rounds)]
                next_round = 0
                while True:
                    now = self.clock.now()
                    if next_round < cfg.rounds and now >= starts[next_round]:
                        kill = cfg.kill_at_round == next_round
                        accepted = (await asyncio.to_thread(self.platform.stats))["accepted"]
                        if kill:  # the platform takes this sender's sends but holds the answers back
                            await asyncio.to_thread(self.platform.set_faults, [
                                {"kind": "slow", "delay": 60.0, "sender": senders[0], "reached": True}])
                        await self._enqueue_round(tenant, plan[next_round], first=next_round == 0)
                        self.say(f"round {next_round} queued")
                        if kill:
                            killed = await self._kill_a_sender(senders[0], accepted)
                        next_round += 1
                    nxt = await self._settle()
                    upcoming = [t for t in (nxt, starts[next_round] if next_round < cfg.rounds else None)
                                if t is not None]
                    if not upcoming:
                        break
                    await self._move_to(max(min(upcoming), now))
                result = await self._result(killed, started)
            finally:
                self._stop_workers()
                await asyncio.to_thread(self.platform.stop)
        return result

    async def _max_lateness(self, store: Any) -> float:
        assert self.platform is not None
        admitted = await _admitted_at(store)
        accepted = await asyncio.to_thread(self.platform.accepted)
        late = [m["time"] - admitted[key] for sends in accepted.values() for m in sends
                if (key := m["body"].get("biz_opaque_callback_data")) in admitted]
        return max(late, default=0.0)

    async def _result(self, killed: str | None, started: float) -> ScaleResult:
        assert self.api is not None and self.platform is not None
        store = self._store()
        unknown = [m.id for m in await store.list_messages((await store.list_tenants())[0].id, state="unknown",
                                                           limit=100_000)]
        reconciled = 0
        if unknown:  # the platform reports what it has of them (status webhooks to the API node)
            reported = await asyncio.to_thread(self.platform.report_statuses, unknown)
            after = await store.count_by_state()
            reconciled = len(unknown) - after.get("unknown", 0)
            self.say(f"{len(unknown)} unknown; the platform reported {reported}, {reconciled} reconciled")
        platform = await asyncio.to_thread(self.platform.limits)
        lateness = await self._max_lateness(store)
        return ScaleResult(max_lateness=lateness,
            states=await store.count_by_state(), platform=platform, killed=killed,
            unknown_before_reconcile=len(unknown), reconciled=reconciled, instants=self.instants, nudges=self.nudges,
            wall_seconds=time.monotonic() - started, virtual_span=self.clock.now() - T0,
        )


async def _admitted_at(store: Any) -> dict[str, float]:
    """Each message's first ``sending`` time, from its history."""
    out: dict[str, float] = {}
    async with store.reader() as tx:
        rows = await tx.fetchall("SELECT id, history FROM messages WHERE history LIKE ?", ('%"sending"%',))
    for message_id, history in rows:
        for line in history.splitlines():
            at, state, _reason = json.loads(line)
            if state == "sending":
                out[message_id] = at
                break
    return out


def _summary(result: ScaleResult) -> str:
    p = result.platform
    return (f"{result.wall_seconds:.1f} s wall for {result.virtual_span / HOUR:.1f} virtual hours "
            f"({result.instants} instants, {result.nudges} nudges); "
            f"states {dict(sorted(result.states.items()))}; platform: "
            f"{p['violations']} violations, {p['duplicates']} duplicates, peaks {p['peak_by_number']}, "
            f"{p['accepted_messages']} messages accepted; killed {result.killed}, "
            f"{result.unknown_before_reconcile} unknown, {result.reconciled} reconciled; "
            f"latest arrival {result.max_lateness:.1f} virtual s after admission")


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the multi-process scale-out check (a longer version).")
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="a fresh schema is created in this database for the run, and dropped after it")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--scopes", type=int, default=3)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--recipients", type=int, default=5_000)
    parser.add_argument("--max-scopes", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--kill-at-round", type=int, default=None)
    args = parser.parse_args()
    schema = f"scale_{uuid.uuid4().hex[:12]}"
    url = f"{args.database_url}{'&' if '?' in args.database_url else '?'}schema={schema}"
    cfg = ScaleConfig(database_url=url, workers=args.workers, scopes=args.scopes,
                      messages=args.messages, recipients=args.recipients, max_scopes=args.max_scopes,
                      rounds=args.rounds, kill_at_round=args.kill_at_round, log=True)
    try:
        result = asyncio.run(ScaleRun(cfg).run())
    finally:
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    print(_summary(result))


if __name__ == "__main__":
    main()
