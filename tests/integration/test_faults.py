"""Faults from the platform: a campaign through the real Cloud API client against a misbehaving fake.

The gateway (virtual clock, SQLite) sends through ``CloudProvider`` over real HTTP on 127.0.0.1 to
``FakeGraph``, which answers a share of requests with 5xx pages, timeouts, connection resets, error
codes 130429 / 131056 / 131048 / 131000 / 131026, slow answers and truncated JSON. Fault draws are
a pure function of (seed, rule, sender, recipient, attempt number), so the test predicts every
message's fate from the rules in ``tiergate.core.errors`` and checks the gateway reached it:

* every message ends terminal with the right reason: accepted ones ``delivered`` (unknown answers
  reconciled by the platform's status webhooks), unanswered ones ``unknown``, final codes and
  exhausted retries ``failed`` with the platform's code, after exactly the predicted attempts;
* no recipient over the limit in any rolling 24 h at the platform, and the window ledger holds
  every recipient the platform counted (released slots only for definite refusals);
* nothing sent twice, and retries bounded (requests per message reported);
* one sender failing every request does not slow the healthy senders (same run without it).

``python -m tests.integration.test_faults --messages 20000`` runs the long version and prints the
figures RELIABILITY.md quotes (``scripts/reliability faults`` does the same).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from tests.e2e.conftest import Harness, make_harness
from tests.fakes import webhook_bodies as wb
from tests.fakes.fake_graph import FakeGraph, Fault, _draw

from tiergate.adapters.provider.cloud import CloudProvider
from tiergate.adapters.store import open_store
from tiergate.core import shapes
from tiergate.core.errors import Action, classify
from tiergate.core.model import TERMINAL_STATES, NewMessage
from tiergate.core.tiers import parse_tier
from tiergate.core.window import DAY
from tiergate.service.gateway import Gateway
from tiergate.service.intake import SenderRequest
from tiergate.settings import Settings

TOKEN = "fault-test-token-5b7d0c2e9a"
SEED = 11
CLIENT_TIMEOUT = 1.5  # the fake holds a "timeout" request longer than this
HEALTHY = ("106540352200001", "106540352200002", "106540352200003")
FAILING = "106540352200009"
TIERS = {HEALTHY[0]: "TIER_1K", HEALTHY[1]: "TIER_10K", HEALTHY[2]: "TIER_10K", FAILING: "TIER_10K"}
SMALL_TIER = "TIER_250"  # the first sender's tier when its audience is under 1,000: it must wait for days
SHARES = {HEALTHY[0]: 0.35, HEALTHY[1]: 0.25, HEALTHY[2]: 0.25, FAILING: 0.15}

# The mix every healthy sender sees (share of requests, checked in this order).
MIX: list[dict[str, Any]] = [
    {"kind": "5xx", "share": 0.005},
    {"kind": "timeout", "share": 0.002, "delay": CLIENT_TIMEOUT + 0.5},
    {"kind": "reset", "share": 0.005},
    {"kind": 130429, "share": 0.02},
    {"kind": 131056, "share": 0.02},
    {"kind": 131000, "share": 0.02},
    {"kind": 131026, "share": 0.005},
    {"kind": "slow", "share": 0.01, "delay": 0.05},
    {"kind": "malformed", "share": 0.005},
]
SPAM_LIMIT: dict[str, Any] = {"kind": 131048, "share": 0.003, "sender": HEALTHY[2]}  # pauses that sender for an hour
BROKEN: dict[str, Any] = {"kind": 131000, "share": 1.0, "sender": FAILING}  # every request of this sender fails


@dataclass(frozen=True)
class Expected:
    """A message's fate under the fault plan: final state, number of requests, the final code."""

    state: str
    attempts: int
    code: int | None = None
    reached: bool = False  # the platform has it (accepted, answer maybe lost)
    answer_lost: bool = False  # the gateway had no definite answer for its last request


def faults_for(failing: bool) -> list[Fault]:
    """The fault rules, in the fake's order: the broken sender first, then spam limit, then the mix.

    Without ``failing`` the broken rule stays in place with share 0, so every other rule keeps its
    index and therefore its draws: both runs differ only in the broken sender.
    """
    rules = [Fault(**{**BROKEN, "share": BROKEN["share"] if failing else 0.0}), Fault(**SPAM_LIMIT)]
    for spec in MIX:
        rules += [Fault(**spec, sender=s) for s in (*HEALTHY, FAILING)]
    return rules


def predict(rules: list[Fault], seed: int, sender: str, to: str) -> Expected:
    """Replay the fake's draws for this pair, attempt after attempt, through the platform's rules."""
    n = 0
    while True:
        fault = None
        for index, rule in enumerate(rules):
            if rule.sender not in (None, sender):
                continue
            if rule.share < 1.0 and _draw(seed, index, sender, to, n) >= rule.share:
                continue
            fault = rule
            break
        attempt = n + 1
        if fault is None or fault.kind == "slow":
            return Expected("delivered", attempt, reached=True)
        if fault.kind == "malformed":
            return Expected("delivered", attempt, reached=True, answer_lost=True)
        if isinstance(fault.kind, str):  # 5xx page, timeout, reset: no answer and no message
            return Expected("unknown", attempt, answer_lost=True)
        rule_ = classify(fault.kind)
        if rule_.action is Action.FINAL:
            return Expected("failed", attempt, fault.kind)
        if rule_.action is not Action.PAUSE_SENDER and attempt > rule_.max_attempts:
            return Expected("failed", attempt, fault.kind)
        n += 1


def recipients(sender_index: int, n: int) -> list[str]:
    return [f"55119{sender_index:02d}{i:06d}" for i in range(n)]


@dataclass
class Report:
    messages: int = 0
    requests: int = 0
    states: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    attempts: Counter[int] = field(default_factory=Counter)
    retried_messages: int = 0
    wrong_outcome: list[str] = field(default_factory=list)
    lost: int = 0
    duplicates: int = 0
    violations: int = 0
    ledger_mismatches: int = 0
    pauses: int = 0
    virtual_seconds: float = 0.0
    wall_seconds: float = 0.0
    healthy_p90: dict[str, float] = field(default_factory=dict)  # sender -> seconds to 90 % accepted
    accepted_in: dict[str, int] = field(default_factory=dict)  # sender -> accepted in the first minute

    def figures(self) -> dict[str, Any]:
        total = sum(self.attempts.values())
        return {
            "messages": self.messages, "requests": self.requests,
            "requests_per_message": round(self.requests / max(1, self.messages), 3),
            "faults_injected": dict(sorted(self.faults.items())), "faults_total": sum(self.faults.values()),
            "final_states": dict(sorted(self.states.items())),
            "attempts_histogram": {str(k): v for k, v in sorted(self.attempts.items())},
            "max_attempts": max(self.attempts, default=0),
            "mean_attempts": round(sum(k * v for k, v in self.attempts.items()) / max(1, total), 3),
            "retried_messages": self.retried_messages, "sender_pauses": self.pauses,
            "wrong_outcomes": len(self.wrong_outcome), "lost": self.lost, "duplicate_sends": self.duplicates,
            "limit_violations": self.violations, "ledger_mismatches": self.ledger_mismatches,
            "virtual_hours": round(self.virtual_seconds / 3600, 2), "wall_seconds": round(self.wall_seconds, 1),
            "healthy_seconds_to_90pct": self.healthy_p90, "healthy_accepted_first_minute": self.accepted_in,
        }


async def _register(h: Harness, tiers: dict[str, str]) -> None:
    for i, sender in enumerate((*HEALTHY, FAILING)):
        r = await h.client.post("/v1/senders", json={
            "phone_number_id": sender, "display_phone_number": f"+1555078{i:04d}", "tier": tiers[sender]})
        assert r.status_code == 201, r.text


async def _all_terminal(h: Harness) -> bool:
    counts = await h.gateway.store.count_by_state()
    return not any(counts.get(s, 0) for s in ("queued", "held", "sending"))


def _status_bodies(fake: FakeGraph, clock_now: float, per_body: int = 200) -> list[bytes]:
    """The platform's ``delivered`` statuses for everything it accepted, batched as it batches them."""
    bodies = []
    for sender, accepted in fake.accepted.items():
        wamids = {idx: wamid for wamid, (s, idx) in fake.wamids.items() if s == sender}
        items = [shapes.status_item(wamids[i], "delivered", clock_now, m.to, billable=True,
                                    callback_data=m.body.get("biz_opaque_callback_data"))
                 for i, m in enumerate(accepted)]
        meta = shapes.metadata(wb.DISPLAY_PHONE_NUMBER, sender)
        for start in range(0, len(items), per_body):
            bodies.append(orjson.dumps(shapes.webhook(fake.waba_id, [("messages", {
                "messaging_product": "whatsapp", "metadata": meta, "statuses": items[start:start + per_body]})])))
    return bodies


def _p90(times: list[float], t0: float) -> float:
    if not times:
        return math.inf
    ordered = sorted(times)
    return round(ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)] - t0, 3)


async def run_fault_campaign(tmp: Path, total: int, *, failing: bool = True, seed: int = SEED,
                             check_outcomes: bool = True) -> Report:
    """One campaign per sender (``total`` messages in all), faults on, until every message is terminal."""
    started = time.perf_counter()
    report = Report()
    rules = faults_for(failing)
    async with FakeGraph(token=TOKEN, seed=seed) as fake:
        fake.faults = rules
        provider = CloudProvider(fake.base_url, TOKEN, timeout=CLIENT_TIMEOUT, connect_timeout=CLIENT_TIMEOUT)
        h = await make_harness(tmp, provider=provider)
        fake.clock = h.clock.now
        t0 = h.clock.now()
        try:
            plan = {s: recipients(i, max(1, round(total * SHARES[s]))) for i, s in enumerate((*HEALTHY, FAILING))}
            tiers = dict(TIERS)
            if len(plan[HEALTHY[0]]) < 1_000:
                tiers[HEALTHY[0]] = SMALL_TIER
            await _register(h, tiers)
            for sender in plan:
                r = await h.client.post("/v1/campaigns", json={
                    "sender": sender, "template": {"name": "faults", "language": "en_US"},
                    "recipients": ["+" + n for n in plan[sender]]})
                assert r.status_code == 201, r.text
                assert not r.json()["row_errors"], r.json()["row_errors"][:3]
            report.messages = sum(len(v) for v in plan.values())

            # Run until nothing is left to send (retries, pauses and day-two capacity included).
            rounds = 0
            while not await _all_terminal(h):
                rounds += 1
                assert rounds < 2_000, "the campaign never finished"
                await h.advance(600)
            report.virtual_seconds = h.clock.now() - t0

            await _check_platform(h, fake, tiers, report)
            # The platform's status webhooks: they settle every answer the gateway lost.
            for body in _status_bodies(fake, h.clock.now()):
                r = await h.webhook(body)
                assert r.status_code == 200, r.text
            await _check_messages(h, fake, rules, seed, plan, report, check_outcomes)
            report.requests = fake.stats["requests"]
            report.faults = Counter({k.removeprefix("fault:"): v for k, v in fake.stats.items()
                                     if k.startswith("fault:")})
            for sender in HEALTHY[1:]:
                times = [m.time for m in fake.accepted.get(sender, [])]
                report.healthy_p90[sender] = _p90(times, t0)
                report.accepted_in[sender] = sum(1 for t in times if t <= t0 + 60)
        finally:
            await h.client.aclose()
            await h.gateway.close()
    report.wall_seconds = time.perf_counter() - started
    return report


async def _check_platform(h: Harness, fake: FakeGraph, tiers: dict[str, str], report: Report) -> None:
    """At the platform: nobody twice, never over the tier in any 24 h; the ledger knows them all."""
    now = h.clock.now()
    for sender, accepted in fake.accepted.items():
        per_to = Counter(m.to for m in accepted)
        report.duplicates += sum(n - 1 for n in per_to.values() if n > 1)
        limit = parse_tier(tiers[sender]).limit
        times = sorted(m.time for m in accepted)
        lo = 0
        for hi, t in enumerate(times):  # each recipient once: distinct in (t - 24 h, t] = sends in it
            while times[lo] <= t - DAY:
                lo += 1
            if limit is not None and hi - lo + 1 > limit:
                report.violations += 1
        ledger = dict(await h.gateway.store.load_ledger(f"sender:{sender}", now))
        if limit is not None:
            assert len(ledger) <= limit
        recent = {m.to for m in accepted if m.time > now - DAY}
        report.ledger_mismatches += len(recent - set(ledger))


async def _check_messages(h: Harness, fake: FakeGraph, rules: list[Fault], seed: int, plan: dict[str, list[str]],
                          report: Report, check_outcomes: bool) -> None:
    store = h.gateway.store
    tenant = (await h.client.get("/v1/tenant")).json()["id"]
    messages = await store.list_messages(tenant, limit=10 * report.messages + 10)
    by_pair = {(m.sender_id, m.to): m for m in messages}
    accepted = {s: Counter(m.to for m in acc) for s, acc in fake.accepted.items()}
    now = h.clock.now()
    ledgers = {s: dict(await store.load_ledger(f"sender:{s}", now)) for s in plan}
    report.lost = sum(1 for s, tos in plan.items() for to in tos if (s, to) not in by_pair)
    report.lost += sum(1 for m in messages if m.state not in TERMINAL_STATES)
    for m in messages:
        report.states[m.state.value] += 1
        report.attempts[m.attempts] += 1
        report.retried_messages += m.attempts > 1
        if not check_outcomes:
            continue
        want = predict(rules, seed, m.sender_id, m.to)
        got_platform = accepted.get(m.sender_id, Counter())[m.to]
        problems = []
        if m.state.value != want.state:
            problems.append(f"state {m.state.value} != {want.state}")
        if m.attempts != want.attempts:
            problems.append(f"attempts {m.attempts} != {want.attempts}")
        if got_platform != int(want.reached):
            problems.append(f"platform has it {got_platform}x, expected {int(want.reached)}")
        if want.state == "failed":
            if m.error_code != want.code or str(want.code) not in m.reason:
                problems.append(f"failed without its code {want.code}: {m.error_code} {m.reason!r}")
            released = classify(want.code).not_counted
            if released and m.to in ledgers[m.sender_id]:
                problems.append("a definite refusal kept its window slot")
        if want.state == "unknown" and "no definite answer" not in m.reason:
            problems.append(f"unknown without saying why: {m.reason!r}")
        if want.answer_lost and want.reached and "reconciled by a status webhook" not in m.reason:
            problems.append(f"reconciled outcome not marked so: {m.reason!r}")
        if problems:
            report.wrong_outcome.append(f"{m.id} {m.sender_id}->{m.to}: " + "; ".join(problems))
    for sender in plan:
        events = await store.sender_events(sender, 1000)
        report.pauses += sum(1 for e in events if e.get("kind") == "paused")


def _assert_clean(report: Report) -> None:
    assert report.wrong_outcome == [], report.wrong_outcome[:10]
    assert (report.lost, report.duplicates, report.violations, report.ledger_mismatches) == (0, 0, 0, 0)
    bound = max(r.max_attempts for r in (classify(c) for c in (130429, 131056, 131000))) + 1
    assert max(report.attempts) <= bound, report.attempts


async def test_a_campaign_survives_every_fault_kind(tmp_path: Path) -> None:
    report = await run_fault_campaign(tmp_path / "faults", 2_400)
    _assert_clean(report)
    figures = report.figures()
    # every kind of fault actually happened, and the broken sender's messages failed after bounded retries
    assert {"5xx", "timeout", "reset", "130429", "131056", "131000", "131026", "slow", "malformed"} <= set(
        report.faults), report.faults
    assert report.states["unknown"] > 0 and report.states["failed"] > 0 and report.states["delivered"] > 0
    broken = round(2_400 * SHARES[FAILING])
    assert report.attempts[classify(131000).max_attempts + 1] >= broken
    assert figures["requests_per_message"] < 2.0, figures


async def test_one_failing_sender_does_not_slow_the_healthy_ones(tmp_path: Path) -> None:
    """Same seed and traffic, with and without the broken sender: the others keep their pace."""
    healthy = await run_fault_campaign(tmp_path / "baseline", 1_200, failing=False, check_outcomes=False)
    broken = await run_fault_campaign(tmp_path / "broken", 1_200, failing=True, check_outcomes=False)
    for sender in HEALTHY[1:]:
        assert broken.accepted_in[sender] >= 0.95 * healthy.accepted_in[sender], (broken.accepted_in,
                                                                                  healthy.accepted_in)
        assert broken.healthy_p90[sender] <= healthy.healthy_p90[sender] * 1.05 + 1.0, (broken.healthy_p90,
                                                                                       healthy.healthy_p90)
    assert broken.states["failed"] > healthy.states["failed"]


@contextlib.asynccontextmanager
async def realtime(tmp: Path, *, hang: bool, per_sender: int, mps: int) -> AsyncIterator[tuple[Gateway, FakeGraph]]:
    """A gateway on the wall clock, dispatching to the fake; with ``hang`` the last sender's requests
    are held by the fake until it stops. On exit the fake stops first, so held requests end (504)."""
    async with FakeGraph(token=TOKEN) as fake:
        if hang:
            fake.add_fault("timeout", 1.0, sender=FAILING, delay=600)
        provider = CloudProvider(fake.base_url, TOKEN, timeout=900)
        gateway = await Gateway.open(Settings(database_url=str(tmp / "rt.db"), worker_id="rt"), provider=provider)
        stop = asyncio.Event()
        runner: asyncio.Task[None] | None = None
        try:
            tenant = await gateway.auth.create_tenant("realtime")
            news = []
            for i, sender in enumerate((*HEALTHY, FAILING)):
                await gateway.intake.register_sender(tenant, SenderRequest(
                    sender, f"+1555078{i:04d}", tier="TIER_100K", throughput_mps=mps))
                news += [NewMessage(tenant_id=tenant.id, sender_id=sender, to=to, kind="template",
                                    category="MARKETING", priority=2, body={
                                        "messaging_product": "whatsapp", "to": to, "type": "template",
                                        "template": {"name": "rt", "language": {"code": "en_US"}}})
                         for to in recipients(i, per_sender)]
            await gateway.store.insert_messages(news, time.time())
            runner = asyncio.create_task(gateway.run(stop, sync=False))
            yield gateway, fake
        finally:
            await fake.stop()
            stop.set()
            if runner is not None:
                await runner
            await gateway.close()


async def test_a_hanging_sender_does_not_hold_up_the_others(tmp_path: Path) -> None:
    """Real time: one sender's requests hang (the fake holds them); the others' messages all go
    meanwhile. Before sends were answered per sender in the background, every batch waited for
    its slowest request, so one hanging number cut everyone's throughput to a batch per timeout."""
    async with realtime(tmp_path, hang=True, per_sender=300, mps=500) as (gateway, fake):
        deadline = time.monotonic() + 120  # a guard against hanging the suite, not a measurement
        while fake.accepted_count() < 300 * len(HEALTHY):
            assert time.monotonic() < deadline, f"healthy senders stuck at {fake.accepted_count()} sends"
            await asyncio.sleep(0.05)
        assert fake.stats["fault:timeout"] > 0, "the hanging sender was never even tried"
        states = await gateway.store.count_by_state(sender_id=FAILING)
        assert states.get("sending", 0) > 0 and states.get("sent", 0) == 0, states  # still hanging
    states = await gateway_states(tmp_path / "rt.db", FAILING)
    assert states.get("sending", 0) == 0, states  # answered ones recorded before the dispatcher stopped


async def healthy_sends_in(tmp: Path, seconds: float, *, hang: bool) -> dict[str, int]:
    """The script's real-time figure: what each healthy sender got out in ``seconds`` (80 msg/s each)."""
    async with realtime(tmp, hang=hang, per_sender=10_000, mps=80) as (_, fake):
        await asyncio.sleep(seconds)
        return {s: fake.accepted_count(s) for s in HEALTHY}


async def gateway_states(path: Path, sender: str) -> dict[str, int]:
    store = open_store(str(path))
    await store.open()
    try:
        return await store.count_by_state(sender_id=sender)
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The fault campaign at scale; prints its figures as JSON.")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)

    async def both() -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="tiergate-faults-") as tmp:
            faulty = await run_fault_campaign(Path(tmp) / "faults", args.messages, seed=args.seed)
            baseline = await run_fault_campaign(Path(tmp) / "baseline", args.messages, failing=False,
                                                seed=args.seed, check_outcomes=False)
        out = faulty.figures()
        out["baseline_without_failing_sender"] = {
            "healthy_seconds_to_90pct": baseline.healthy_p90,
            "healthy_accepted_first_minute": baseline.accepted_in}
        out["wrong_outcome_examples"] = faulty.wrong_outcome[:5]
        with tempfile.TemporaryDirectory(prefix="tiergate-rt-") as tmp:
            out["realtime_10s_healthy_sends"] = {
                "no_failing_sender": await healthy_sends_in(Path(tmp) / "a", 10, hang=False),
                "one_sender_hanging": await healthy_sends_in(Path(tmp) / "b", 10, hang=True)}
        return out

    figures = asyncio.run(both())
    print(json.dumps(figures, indent=2))
    bad = figures["wrong_outcomes"] or figures["lost"] or figures["duplicate_sends"] or figures["limit_violations"]
    return 1 if bad or figures["ledger_mismatches"] else 0


if __name__ == "__main__":
    sys.exit(main())

