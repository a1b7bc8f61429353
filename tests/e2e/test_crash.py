"""Crashes: SIGKILL the embedded ``tiergate serve`` (SQLite) at random moments during a campaign.

The gateway runs as a real process with the Cloud API provider pointed at a fake Graph API in a
process of its own (``FakeGraphProcess``), which outlives every kill: it records exactly what the
platform accepted and, like Meta, keeps retrying status webhooks nobody took. Meanwhile a client
keeps submitting single messages with idempotency keys, retrying through the outages as a real
app would. After the last restart, with nothing left to send:

* nothing lost: every campaign row and every idempotency key is one message, all terminal;
* no duplicate sends: the platform got each message (by its callback id) and each recipient at
  most once;
* a send cut off by a kill is ``unknown``; the platform's status webhooks reconcile the ones it
  received (``delivered``), the rest stay visibly ``unknown`` (the platform never got them);
* the window ledger holds exactly the recipients the platform received plus those ``unknown``
  ones (never fewer: a send that may have left keeps its slot).

``python -m tests.e2e.test_crash --kills 50`` is the long version (``scripts/reliability crash``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from tests.fakes.fake_graph import FakeGraphProcess

from tiergate.adapters.store import open_store
from tiergate.core.model import TERMINAL_STATES, MessageState

TOKEN = "crash-test-token-8c1e5f0b27"
APP_SECRET = "crash-test-app-secret"
ADMIN_KEY = "tg_crash_test_admin_key_0123456789abcdef"
SENDER = "106540352288001"
THROUGHPUT = 40  # messages/s: slow enough that a campaign spans many kills
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class CrashReport:
    kills: int = 0
    kills_mid_send: int = 0  # kills that left at least one send in flight (seen as unknown after)
    campaign: int = 0
    singles: int = 0
    submit_retries: int = 0
    messages: int = 0
    states: Counter[str] = field(default_factory=Counter)
    platform_accepted: int = 0
    lost: int = 0
    not_terminal: int = 0
    duplicate_sends: int = 0
    unknown_reconciled: int = 0
    unknown_never_sent: int = 0
    wrong_state: list[str] = field(default_factory=list)
    ledger_missing: int = 0
    ledger_extra: int = 0
    webhooks: dict[str, int] = field(default_factory=dict)
    secrets_in_log: int = 0
    wall_seconds: float = 0.0

    def figures(self) -> dict[str, Any]:
        return {
            "kills": self.kills, "campaign_messages": self.campaign, "single_messages": self.singles,
            "submit_retries_through_outages": self.submit_retries, "messages": self.messages,
            "final_states": dict(sorted(self.states.items())), "platform_accepted": self.platform_accepted,
            "lost": self.lost, "not_terminal": self.not_terminal, "duplicate_sends": self.duplicate_sends,
            "unknown_reconciled_by_webhook": self.unknown_reconciled,
            "unknown_never_reached_platform": self.unknown_never_sent,
            "wrong_states": len(self.wrong_state), "ledger_missing": self.ledger_missing,
            "ledger_extra": self.ledger_extra, "webhooks": self.webhooks, "secrets_in_serve_log": self.secrets_in_log,
            "wall_seconds": round(self.wall_seconds, 1),
        }


class Server:
    """``tiergate serve`` as a child process: start, wait until healthy, SIGKILL, start again."""

    def __init__(self, tmp: Path, fake: FakeGraphProcess, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = (tmp / "serve.log").open("ab")
        self.env = dict(
            os.environ,
            PYTHONPATH=str(REPO),
            TIERGATE_DATABASE_URL=str(tmp / "crash.db"),
            TIERGATE_PROVIDER="cloud",
            TIERGATE_GRAPH_URL=fake.base_url,
            TIERGATE_ACCESS_TOKEN=TOKEN,
            TIERGATE_APP_SECRET=APP_SECRET,
            TIERGATE_API_KEY=ADMIN_KEY,
            TIERGATE_PORT=str(port),
            # The restarted process is the same worker: it takes its scope over at once instead of
            # waiting out the dead process's lease (30 s), and marks what was in flight unknown.
            TIERGATE_WORKER_ID="crash-test",
            TIERGATE_LOG_LEVEL="WARNING",
        )
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tiergate.cli", "serve"], cwd=REPO, env=self.env,
                                     stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                assert self.proc.poll() is None, f"serve exited with {self.proc.returncode}; see {self.log.name}"
                assert time.monotonic() < deadline, "serve did not become healthy in 60 s"
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(self.url + "/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.05)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


async def _submit_singles(url: str, count: int, stop_after: asyncio.Event, report: CrashReport) -> dict[str, str]:
    """A client app: one message at a time with an idempotency key, retried until answered."""
    answered: dict[str, str] = {}
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=5) as client:
        for i in range(count):
            key = f"single-{i}"
            body = {"sender": SENDER, "to": f"+5511977{i:06d}", "template": {"name": "crash", "language": "en_US"},
                    "idempotency_key": key}
            while True:
                try:
                    r = await client.post("/v1/messages", json=body)
                except httpx.HTTPError:
                    report.submit_retries += 1
                    await asyncio.sleep(0.1)
                    continue
                assert r.status_code == 202, r.text
                answered[key] = r.json()["id"]
                break
            if not stop_after.is_set():
                await asyncio.sleep(0.15)  # spread over the kills
    return answered


async def _wait_until_settled(server: Server, fake: FakeGraphProcess, limit: float = 300) -> None:
    """Everything terminal at tiergate and no webhook left in the fake's (retrying) outbox."""
    deadline = time.monotonic() + limit
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=10) as client:
        while True:
            assert time.monotonic() < deadline, "the campaign did not settle"
            busy = 0
            for state in ("queued", "sending", "held"):
                r = await client.get("/v1/messages", params={"state": state, "limit": 1})
                busy += len(r.json())
            if not busy and fake.stats()["webhooks_pending"] == 0:
                return
            await asyncio.sleep(0.25)


async def run_crash_campaign(tmp: Path, kills: int, campaign: int, singles: int, *, seed: int = 7,
                             min_gap: float = 0.3, max_gap: float = 2.0) -> CrashReport:
    started = time.perf_counter()
    report = CrashReport(campaign=campaign, singles=singles)
    rng = random.Random(seed)
    port = free_port()
    fake = FakeGraphProcess(token=TOKEN, webhook_url=f"http://127.0.0.1:{port}/webhooks/whatsapp",
                            app_secret=APP_SECRET, webhook_retries=40, webhook_delay=1.0)
    fake.start()
    server = Server(tmp, fake, port)
    try:
        fake.set_phone_number(SENDER, messaging_limit_tier="TIER_10K",
                              whatsapp_business_manager_messaging_limit="TIER_10K")
        # Every answer takes a while (so kills land while sends are in flight), and a few requests get
        # no answer at all (the platform never took them): both must end visible, never re-sent.
        fake.set_faults([{"kind": "timeout", "share": 0.02, "delay": 0.5},
                         {"kind": "slow", "share": 1.0, "delay": 0.25}])
        await server.start()
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as client:
            r = await client.post("/v1/senders", json={
                "phone_number_id": SENDER, "display_phone_number": "+15550783881", "tier": "TIER_10K",
                "throughput_mps": THROUGHPUT})
            assert r.status_code == 201, r.text
            r = await client.post("/v1/campaigns", json={
                "sender": SENDER, "template": {"name": "crash", "language": "en_US"},
                "recipients": [f"+5511966{i:06d}" for i in range(campaign)]})
            assert r.status_code == 201, r.text
            campaign_id = r.json()["id"]

        kills_done = asyncio.Event()
        client_task = asyncio.create_task(_submit_singles(server.url, singles, kills_done, report))
        for _ in range(kills):
            await asyncio.sleep(rng.uniform(min_gap, max_gap))
            server.kill()
            report.kills += 1
            await asyncio.sleep(rng.uniform(0.0, 0.3))  # sometimes webhooks find nobody listening
            await server.start()
        kills_done.set()
        answered = await client_task
        await _wait_until_settled(server, fake)
        report.webhooks = {k: v for k, v in fake.stats()["stats"].items() if k.startswith("webhooks")}
        accepted = fake.accepted(SENDER).get(SENDER, [])
    finally:
        server.stop()
        fake.stop()
    log = (tmp / "serve.log").read_text(errors="replace")
    report.secrets_in_log = log.count(TOKEN) + log.count(APP_SECRET) + log.count(ADMIN_KEY)
    await _check(tmp / "crash.db", campaign_id, answered, accepted, report)
    report.wall_seconds = time.perf_counter() - started
    return report


async def _check(db: Path, campaign_id: str, answered: dict[str, str], accepted: list[dict[str, Any]],
                 report: CrashReport) -> None:
    store = open_store(str(db))
    await store.open()
    try:
        tenant = (await store.find_tenant_by_name("default"))
        assert tenant is not None
        messages = await store.list_messages(tenant.id, limit=10 * (report.campaign + report.singles) + 10)
        report.messages = len(messages)
        by_id = {m.id: m for m in messages}
        in_campaign = [m for m in messages if m.campaign_id == campaign_id]
        keyed = {m.idempotency_key: m for m in messages if m.idempotency_key}
        report.lost = (report.campaign - len(in_campaign)) + sum(1 for k in answered if k not in keyed)
        report.lost += sum(1 for k, mid in answered.items() if k in keyed and keyed[k].id != mid)
        report.lost += report.singles - len(keyed)
        report.not_terminal = sum(1 for m in messages if m.state not in TERMINAL_STATES)
        report.platform_accepted = len(accepted)
        per_callback = Counter(a["body"].get("biz_opaque_callback_data") for a in accepted)
        per_to = Counter(a["to"] for a in accepted)
        report.duplicate_sends = sum(n - 1 for n in per_callback.values() if n > 1)
        report.duplicate_sends += sum(n - 1 for n in per_to.values() if n > 1)
        for m in messages:
            report.states[m.state.value] += 1
            history = await store.message_history(m.id)
            was_unknown = any(h["state"] == "unknown" for h in history)
            reached = per_callback.get(m.id, 0) == 1
            if reached:
                if m.state is not MessageState.DELIVERED:
                    report.wrong_state.append(f"{m.id}: the platform has it but it is {m.state.value}")
                report.unknown_reconciled += was_unknown
            elif m.state is MessageState.UNKNOWN:
                report.unknown_never_sent += 1
                if "webhook" not in m.reason:
                    report.wrong_state.append(f"{m.id}: unknown without saying what settles it: {m.reason!r}")
            else:
                report.wrong_state.append(f"{m.id}: never reached the platform yet {m.state.value}")
        unknown_tos = {m.to for m in messages if m.state is MessageState.UNKNOWN and per_callback.get(m.id, 0) == 0}
        ledger = {r for r, _ in await store.load_ledger(f"sender:{SENDER}", time.time())}
        expected = set(per_to) | unknown_tos
        report.ledger_missing = len(expected - ledger)
        report.ledger_extra = len(ledger - expected)
        report.kills_mid_send = report.unknown_reconciled + report.unknown_never_sent
        assert set(by_id) >= {mid for mid in answered.values()}
    finally:
        await store.close()


def assert_clean(report: CrashReport) -> None:
    assert report.wrong_state == [], report.wrong_state[:10]
    assert (report.lost, report.not_terminal, report.duplicate_sends) == (0, 0, 0), report.figures()
    assert (report.ledger_missing, report.ledger_extra, report.secrets_in_log) == (0, 0, 0), report.figures()


async def test_sigkill_during_a_campaign_loses_nothing_and_sends_nothing_twice(tmp_path: Path) -> None:
    report = await run_crash_campaign(tmp_path, kills=5, campaign=500, singles=50)
    assert_clean(report)
    assert report.kills == 5
    assert report.messages == 550 and report.platform_accepted > 0
    assert report.unknown_reconciled > 0, report.figures()  # kills did cut sends off, and webhooks settled them


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="SIGKILL tiergate serve N times during a campaign; prints figures.")
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tiergate-crash-") as tmp:
        report = asyncio.run(run_crash_campaign(Path(tmp), args.kills, campaign=args.kills * 100,
                                                singles=args.kills * 10, seed=args.seed))
    figures = report.figures()
    figures["wrong_state_examples"] = report.wrong_state[:5]
    print(json.dumps(figures, indent=2))
    bad = report.wrong_state or report.lost or report.not_terminal or report.duplicate_sends or report.secrets_in_log
    return 1 if bad or report.ledger_missing or report.ledger_extra else 0


if __name__ == "__main__":
    sys.exit(main())
