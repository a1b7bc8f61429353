"""The dispatcher: claim what is due, admit it through the core, send it, record what happened.

A step function over an injected clock: ``step()`` does one batch and returns when it next needs
to run (the earliest of: more due work now, the next due message, the next token). Real time runs
it in a loop that sleeps until then or until woken; simulation jumps the clock straight there.

Admission and the state change commit in one transaction (``sending`` + the window-ledger row)
before anything is sent, so a crash can neither lose a message nor count a recipient twice; a
restart turns what was ``sending`` into ``unknown`` instead of re-sending it. A provider that
answers inline (the sandbox: nothing outside the process) is sent to at admission instead, and
admission and answer are one write (``_send_inline``). On a store with concurrent calls a batch's
write is left running while the next batch is claimed (``write_behind``).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import math
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tiergate.clock import Clock
from tiergate.core.admission import CSW_SPAN, Category, Gate, MessageFacts, ScopeLimits, decide
from tiergate.core.model import Message, MessageState, Scope, Sender, Tenant
from tiergate.core.outcomes import OutcomePlan, plan_outcome
from tiergate.core.throttle import PairRate, TokenBucket
from tiergate.core.tiers import admission_tier
from tiergate.core.window import DAY, RollingWindow, Slot
from tiergate.ports import LeaseLost, LedgerChange, MessageUpdate, Provider, SendOutcome, Store
from tiergate.service.localtime import quiet_until
from tiergate.service.metrics import METRICS
from tiergate.service.wakeups import CHANGED, DUE, announce

log = logging.getLogger("tiergate.dispatcher")

__all__ = ["Dispatcher", "DispatcherConfig"]

_IN_FLIGHT = (MessageState.SENDING,)
# A claimed message is still 'queued' in the store until its batch is written; meanwhile the API may
# cancel it or its campaign be paused. What the batch decides without sending it (park, expire,
# refuse) applies only to a message still queued, so a cancel or a pause is never undone.
_WAITING = (MessageState.QUEUED,)
_LEASE_LAPSED = "not sent: the worker's scope lease lapsed before the send"
_CATEGORIES = {c.value: c for c in Category}  # a stored category, without parse's strip and upper per message


def _correlated(m: Message) -> dict[str, Any]:
    """The body with ``biz_opaque_callback_data`` = the message id (unless the app set its own).

    The platform echoes it in status webhooks, so a send whose answer was lost (timeout, crash) is
    still matched to its message: without it an ``unknown`` message has no wamid to be found by.
    """
    if "biz_opaque_callback_data" in m.body:
        return m.body
    return {**m.body, "biz_opaque_callback_data": m.id}


@dataclass(slots=True)
class DispatcherConfig:
    batch_size: int = 500
    send_concurrency: int = 200  # requests in flight per sender (1,000 msg/s at ~200 ms a request)
    max_in_flight: int = 256  # requests in flight in all (the HTTP client's pool): more only queue
    # An answer later than this after the admission moves the recipient's slot to the answer's time.
    late_answer: float = 0.5
    # Each counted recipient holds its slot this much longer than 24 h: the platform's clock and its
    # receipt time (a request's latency, a send whose answer a crash lost) must never end its window
    # after tiergate's. The simulator, whose platform shares its clock, uses 0.
    window_margin: float = 30.0
    idle_wait: float = 5.0  # longest sleep when nothing is due (a wake-up cuts it short)
    lease_ttl: float = 30.0
    max_scopes: int = 10_000
    pause_on_spam_limit: float = 3600.0  # 131048: pause counted sending this long (and alert)
    # A throttled sender is revisited once this much of a second's tokens is back (not token by
    # token: that would be a step per message at 1,000 messages/s).
    throttle_quantum: float = 0.05
    park_granularity: float = 1.0  # seconds: capacity-parked messages wake in batches this wide
    per_scope_claims: int = 32  # up to this many eligible scopes, claim from each by its own budget
    write_behind: bool = True  # on a store with concurrent calls, claim the next batch during a write
    seed: int | None = None


def folded(admission: MessageUpdate, answer: MessageUpdate) -> MessageUpdate:
    """An inline send's admission and answer as one update: the answer's state and fields, the
    admission's attempt, count and slot (unless the answer frees it), both history lines, and no
    guard (nothing else can have touched a message that was never written as in flight).

    Built field by field, not with ``dataclasses.replace`` (3x slower, and this runs per message):
    a field added to ``MessageUpdate`` must be added here (``test_folded_carries_every_field``)."""
    clear = answer.clear_slot
    return MessageUpdate(
        answer.id, answer.state, answer.at, reason=answer.reason, next_attempt_at=answer.next_attempt_at,
        add_attempt=True, wamid=answer.wamid, error_code=answer.error_code, error_detail=answer.error_detail,
        counted=admission.counted, slot_expiry=None if clear else (answer.slot_expiry or admission.slot_expiry),
        slot_previous=None if clear else admission.slot_previous, clear_slot=clear, sent_at=answer.sent_at,
        only_from=None, history=answer.history, earlier=((admission.state, admission.reason),),
    )


def _kth_release(releases: list[float], k: int) -> float:
    """When the k-th slot (from 0) frees at this limit: the window's releases, then each again a
    day later (a slot taken when it frees is held for another 24 h)."""
    return releases[k % len(releases)] + (k // len(releases)) * DAY


def _round_up(at: float, granularity: float) -> float:
    """Up to the next multiple of ``granularity``: slots freeing a millisecond apart wake as one
    batch instead of a dispatcher step each (never earlier than the slot frees)."""
    return math.ceil(at / granularity) * granularity if granularity > 0 else at


@dataclass(slots=True)
class ScopeRuntime:
    """What this worker holds in memory for one scope it owns."""

    scope: Scope
    window: RollingWindow
    senders: dict[str, Sender] = field(default_factory=dict)
    parks: list[float] = field(default_factory=list)  # heap: times assigned to capacity-parked messages
    parks_limit: int | None = None
    may_have_parked: bool = True  # messages parked for capacity may be waiting (pull them when room frees)
    # Set while a backlog parked in bulk (``Store.park_for_capacity``) waits: the latest time given to
    # it, and what later deferrals join (first come, first pulled); slot releases wake the dispatcher.
    backlog_until: float | None = None
    _releases: tuple[float, list[float]] | None = None  # (now, sorted expiries) cached per step

    def park_slot(self, now: float, limit: int | None, granularity: float = 0.0,
                  deadline: float | None = None) -> float | None:
        """The time the next capacity-parked message should wake: the k-th slot to free.

        k counts messages already parked for a future slot, so each release wakes one message
        instead of the whole backlog. The heap is reset when the limit changes.
        """
        if limit != self.parks_limit:
            self.parks.clear()
            self.parks_limit = limit
        while self.parks and self.parks[0] <= now:
            heapq.heappop(self.parks)
        if self._releases is None or self._releases[0] != now:
            self._releases = (now, self.window.releases(now))
        rel = self._releases[1]
        if not rel:
            return None
        k = len(self.parks)
        at = _kth_release(rel, k)
        if deadline is not None and at >= deadline:
            return at  # it expires before then: the slot stays for the next message in line
        heapq.heappush(self.parks, at)
        return _round_up(at, granularity)


class Dispatcher:
    """Moves queued messages to the provider, never over a scope's limit."""

    def __init__(
        self,
        store: Store,
        provider: Provider,
        clock: Clock,
        *,
        worker_id: str = "embedded",
        wall_clock: Clock | None = None,
        config: DispatcherConfig | None = None,
    ) -> None:
        self.store = store
        self.provider = provider
        self.clock = clock
        self.wall = wall_clock or clock
        self.worker_id = worker_id
        self.config = config or DispatcherConfig()
        self._rng = random.Random(self.config.seed)
        self._scopes: dict[str, ScopeRuntime] = {}
        self._tenants: dict[str, Tenant] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._opt_outs: list[tuple[str, str, float, str]] = []  # (tenant, recipient, at, source) to record
        self._pairs: dict[str, PairRate] = defaultdict(PairRate)
        self._wake = asyncio.Event()
        self._sems: dict[str, asyncio.Semaphore] = {}
        # Real time (run_forever): answers are recorded in the background, per sender, so a sender
        # whose requests hang holds up its own messages only, never the others' batch.
        self.overlap_sends = False
        self._inflight: Counter[str] = Counter()
        # Set by the first renewal: only then are there leases (and a heartbeat) of this worker id to
        # give back on close. A command-line gateway never renews, and may run with the id of a live worker.
        self.holds_leases = False
        self._draining: set[str] = set()  # scopes over this worker's share: claimed from no more, then given back
        self._turn = 0
        self._refresh_requested = False
        self._pull_pending = False  # the last pull filled its room: more parked messages may fit
        self._sending: set[asyncio.Task[None]] = set()
        self._pending_write: asyncio.Task[None] | None = None  # a batch's write left running
        self._writing: list[str] = []  # the ids it updates: claims skip them until it is in
        self._leases_until = math.inf  # (wall clock) until when the leases renewed last are surely ours
        self.sent_total = 0

    # -- ownership ---------------------------------------------------------------------------
    async def refresh_scopes(self) -> list[str]:
        """Renew leases, take free scopes, load windows of new ones, and reload scope settings."""
        asked_at = self.wall.now()
        owned = await self.store.acquire_scopes(
            self.worker_id, asked_at, self.config.lease_ttl, self.config.max_scopes
        )
        self.holds_leases = True
        self._leases_until = asked_at + self.config.lease_ttl
        share = await self.store.scope_share(asked_at, self.config.max_scopes)
        if len(owned) > share:
            owned = await self._shed(owned, len(owned) - share)
        else:
            self._draining.clear()  # a worker left (or never came): keep everything
        METRICS.scopes_held.set(len(owned))
        METRICS.scope_share.set(share)
        now = self.clock.now()
        owned_set = set(owned)
        for gone in [s for s in self._scopes if s not in owned_set]:
            del self._scopes[gone]
        new = [s for s in owned if s not in self._scopes]
        if new:
            # Their requests may have reached the platform any time up to now: count from now.
            recovered = await self.store.recover_inflight(new, now, hold_until=now + DAY + self.config.window_margin)
            if recovered:
                log.warning("%d in-flight sends of a previous owner are now 'unknown'", recovered)
        for scope_id in owned:
            scope = await self.store.get_scope(scope_id)
            rt = self._scopes.get(scope_id)
            if rt is None:
                rt = ScopeRuntime(scope, RollingWindow(DAY + self.config.window_margin))
                rt.window.load(await self.store.load_ledger(scope_id, now), now)
                self._scopes[scope_id] = rt
            rt.scope = scope
            rt.senders = {s.id: s for s in await self.store.senders_of_scope(scope_id)}
        return owned

    async def _shed(self, owned: list[str], excess: int) -> list[str]:
        """Give back ``excess`` scopes beyond this worker's share (another worker joined) for the
        others to take. They drain first: no new claims from them, and each is given back once none
        of its sends is in flight and the last write is in, since the next owner marks whatever it
        finds ``sending`` as ``unknown``. Returns the scopes still held."""
        chosen = [s for s in owned if s in self._draining][:excess]
        for scope_id in reversed(owned):  # the ones draining already, then the last in id order
            if len(chosen) >= excess:
                break
            if scope_id not in chosen:
                chosen.append(scope_id)
        self._draining = set(chosen)
        given = await self._release_drained()
        return [s for s in owned if s not in given]

    async def _release_drained(self) -> set[str]:
        """Give back the draining scopes that have nothing in flight; returns them."""
        idle = [s for s in sorted(self._draining) if (rt := self._scopes.get(s)) is None
                or not any(self._inflight[sender_id] for sender_id in rt.senders)]
        if not idle:
            return set()
        await self._flush_write()  # the last batch's write holds their lease: in before they go
        await self.store.release_scopes(self.worker_id, idle)
        for scope_id in idle:
            self._scopes.pop(scope_id, None)  # no write of this worker may name them any more
        self._draining.difference_update(idle)
        log.info("gave back %d scope(s) over this worker's share: %s", len(idle), ", ".join(idle))
        await announce(self.store, CHANGED)  # the other workers look for free scopes now
        return set(idle)

    def release_slot(self, scope_id: str, recipient: str, expiry: float, previous: float | None,
                     now: float) -> None:
        """A webhook said a counted send was definitely not delivered: undo that send's slot here too
        (back to the recipient's earlier expiry when an earlier send still counts them)."""
        rt = self._scopes.get(scope_id)
        if rt is not None:
            rt.window.release(Slot(recipient, expiry, previous), now)

    def forget_parks(self, scope_id: str | None = None, sender_id: str | None = None) -> None:
        """Requeued messages (a resume, a raised tier, a window that opened) give back the slots
        they were handed; without this, the next ones to wait would be queued behind them."""
        for sid, rt in self._scopes.items():
            if (scope_id is None and sender_id is None) or sid == scope_id or sender_id in rt.senders:
                rt.parks.clear()
                rt.backlog_until = None

    def wake(self) -> None:
        self._wake.set()

    def request_refresh(self) -> None:
        """Senders or scopes changed (or a new one exists): re-read them before the next batch."""
        self._refresh_requested = True
        self._wake.set()

    async def _tenant(self, tenant_id: str) -> Tenant:
        tenant = self._tenants.get(tenant_id)
        if tenant is None:
            tenant = await self.store.get_tenant(tenant_id)
            self._tenants[tenant_id] = tenant
        return tenant

    def invalidate_tenant(self, tenant_id: str) -> None:
        self._tenants.pop(tenant_id, None)

    def _bucket(self, sender: Sender) -> TokenBucket:
        bucket = self._buckets.get(sender.id)
        if bucket is None or bucket.ceiling != sender.throughput_mps:  # new, or reconfigured
            bucket = TokenBucket(float(sender.throughput_mps))
            self._buckets[sender.id] = bucket
        return bucket

    # -- one step ------------------------------------------------------------------------------
    async def step(self, refresh: bool = True) -> float | None:
        """Run one batch. Returns when to run next (``now`` when more is due at once)."""
        try:
            nxt = await self._step(refresh)
        except LeaseLost:
            log.warning("lost a scope lease mid-batch; dropping in-memory state and retrying")
            self._scopes.clear()
            return self.clock.now()
        release = self._release_wake()
        return release if release is not None and (nxt is None or release < nxt) else nxt

    def _release_wake(self) -> float | None:
        """When a slot frees in a scope that may have capacity-parked messages: a backlog parked in
        bulk (or by a worker that since restarted) has no wake-up of its own before its latest
        time, so a freed slot must pull it. A pull that finds nothing ends these wake-ups."""
        now = self.clock.now()
        wake: float | None = None
        for rt in self._scopes.values():
            if not rt.may_have_parked:
                continue
            at = rt.window.next_release_at(now)
            if at is None:
                continue
            at = _round_up(at, self.config.park_granularity)
            wake = at if wake is None else min(wake, at)
        return wake

    async def _step(self, refresh: bool) -> float | None:
        if refresh or not self._scopes:
            await self._flush_write()
            await self.refresh_scopes()
        elif self._draining:
            await self._release_drained()  # each answer of a draining scope's last sends wakes us
        scope_ids = [s for s in self._scopes if s not in self._draining]
        if not scope_ids:
            return None
        now = self.clock.now()
        for pair in self._pairs.values():
            pair.prune(now)
        eligible, budget, ready_at = self._token_budget(now)
        if not eligible:
            # Every sender is out of tokens: claiming would only read messages it must skip.
            if self._pull_pending and ready_at != math.inf:
                return ready_at  # parked messages wait to be pulled into room that is there
            await self._flush_write()
            nxt = await self.store.next_due_at(scope_ids)
            return None if nxt is None else max(nxt, ready_at)
        # Only scopes with a sender that has tokens are claimed from: a throttled sender's backlog
        # (first in claim order) must not starve the other senders of this worker.
        messages = await self._claim(eligible, now, budget)
        pulled, more_parked = await self._pull_parked(eligible, messages, now, budget)
        self._pull_pending = more_parked
        messages += pulled
        to_send: list[tuple[Message, Sender, Slot | None]] = []
        throttled_until: float | None = None
        if messages:
            to_send, throttled_until = await self._admit(messages, now, write_behind=not pulled)
            if to_send and not self._answers_inline:  # an inline provider's were sent in admission
                if self.overlap_sends:
                    self._send_in_background(to_send, now)
                else:
                    await self._send(to_send, now)
        # When a throttled sender has tokens again.
        waits = [t for t in (throttled_until, ready_at) if t is not None and t != math.inf]
        if more_parked:
            # Room is left and parked messages wait for it: at once, or when tokens are back.
            return now if to_send or not waits else min(waits)
        if not messages:
            await self._flush_write()  # what is due is known once the last batch's write is in
        nxt = await self.store.next_due_at(scope_ids)
        if nxt is None or nxt > now:
            return nxt
        # Something is still due now.
        if len(messages) >= self.config.batch_size and to_send:
            return now  # a full batch went: there is more of the same
        if waits:
            return min(waits)  # what is due waits for a throttled sender's tokens
        return now if messages else now + min(1.0, self.config.idle_wait)

    async def _pull_parked(self, eligible: dict[str, int], claimed: Sequence[Message],
                           now: float, budget: int) -> tuple[list[Message], bool]:
        """Messages parked for capacity, pulled forward in claim order while a scope has room
        (a raised tier, a released slot): their park time is only the latest they could wait.
        Returns them, and whether a scope may have more (it had room for more than it got)."""
        per_scope = Counter(m.scope_id for m in claimed)
        pulled: list[Message] = []
        more = False
        for scope_id, tokens in eligible.items():
            rt = self._scopes.get(scope_id)
            if rt is None or not rt.may_have_parked or not rt.senders:
                continue
            limit = self._limit(rt.scope)
            used = rt.window.usage(now) + per_scope[scope_id]
            room = (1 << 30) if limit is None else int(limit * (1 - rt.scope.reserve_fraction)) - used
            want = min(room, tokens - per_scope[scope_id],
                       min(self.config.batch_size, max(budget, 1)) - len(claimed) - len(pulled))
            if want <= 0:
                continue
            got = await self.store.claim_parked(scope_id, now, want)
            if len(got) < want:
                rt.may_have_parked = False
                rt.backlog_until = None
            else:
                more = True
            if got:
                rt.parks.clear()  # the slots handed out so far are stale now
                pulled += got
        return pulled, more

    async def _claim(self, eligible: dict[str, int], now: float, budget: int) -> list[Message]:
        """Claim at most what the senders' tokens allow: per scope while there are few (no scope's
        throttled backlog fills the batch), in one query when a worker owns many."""
        batch = self.config.batch_size
        if len(eligible) > self.config.per_scope_claims:
            return list(await self.store.claim_due(list(eligible), now, min(batch, max(budget, 1)),
                                                   exclude=self._writing))
        messages: list[Message] = []
        for scope_id, tokens in eligible.items():
            room = min(batch - len(messages), max(budget, 1) - len(messages), max(tokens, 1))
            if room <= 0:
                break
            messages.extend(await self.store.claim_due([scope_id], now, room, exclude=self._writing))
        return messages

    def _token_budget(self, now: float) -> tuple[dict[str, int], int, float]:
        """The scopes worth claiming from now (a sender with tokens, or no sender: their messages
        fail with a reason), how many sends the buckets allow (a cap on the claim), and when the
        first throttled sender has a quantum of tokens again."""
        eligible: dict[str, int] = {}
        budget = 0
        ready_at = math.inf
        free = self.config.max_in_flight - sum(self._inflight.values()) if self.overlap_sends else math.inf
        if free <= 0:
            return eligible, 0, math.inf  # an answer wakes us
        scopes = list(self._scopes.items())
        if scopes:  # start at a rotating scope: when the pool fills up, nobody is always last
            self._turn = (self._turn + 1) % len(scopes)
            scopes = scopes[self._turn:] + scopes[:self._turn]
        for scope_id, rt in scopes:
            if scope_id in self._draining:
                continue  # being given back: nothing new from it
            usable = not rt.senders
            tokens = 0
            for sender in rt.senders.values():
                bucket = self._bucket(sender)
                if not bucket.can_take(now):
                    ready_at = min(ready_at, self._refill_at(bucket, now))
                    continue
                room = int(bucket.available(now)) + 1
                if self.overlap_sends:  # no more than send_concurrency in flight (an answer wakes us)
                    room = min(room, self.config.send_concurrency - self._inflight[sender.id])
                if room > 0:
                    tokens += room
                    usable = True
            if usable:
                # Every scope with tokens is eligible, each capped by the free pool (not by what the
                # scopes before it may take): one with nothing due must not keep the rest waiting.
                eligible[scope_id] = int(min(tokens, free)) if rt.senders else tokens
                budget += eligible[scope_id]
        return eligible, int(min(budget, free)), ready_at

    def _refill_at(self, bucket: TokenBucket, now: float) -> float:
        return bucket.next_token_at(now, max(1.0, bucket.rate * self.config.throttle_quantum))

    async def _admit(
        self, messages: Sequence[Message], now: float, write_behind: bool = False,
    ) -> tuple[list[tuple[Message, Sender, Slot | None]], float | None]:
        by_tenant: dict[str, set[str]] = defaultdict(set)
        by_sender: dict[str, set[str]] = defaultdict(set)
        marketing: dict[str, set[str]] = defaultdict(set)
        for m in messages:
            by_tenant[m.tenant_id].add(m.to)
            by_sender[m.sender_id].add(m.to)
            if m.category == Category.MARKETING:
                marketing[m.tenant_id].add(m.to)
        inbound = {s: await self.store.last_inbound(s, sorted(r)) for s, r in by_sender.items()}
        flags = {t: await self.store.recipient_flags(t, sorted(r)) for t, r in by_tenant.items()}
        tenants = {t: await self._tenant(t) for t in by_tenant}
        mk_sent: dict[str, dict[str, list[float]]] = {}
        for t, rcpts in marketing.items():
            if tenants[t].marketing_cap_24h > 0:
                mk_sent[t] = await self.store.marketing_sends_since(t, sorted(rcpts), now - DAY)

        updates: list[MessageUpdate] = []
        ledger: list[LedgerChange] = []
        to_send: list[tuple[Message, Sender, Slot | None]] = []
        throttled_until: float | None = None
        admitted: Counter[str] = Counter()
        admitted_counted: Counter[bool] = Counter()
        limits_of: dict[str, ScopeLimits] = {}
        full: dict[str, tuple[ScopeLimits, str]] = {}  # scopes whose limit deferred a message of this batch

        def park(m: Message, until: float | None, reason: str) -> None:
            at = until if until is not None else now + self.config.idle_wait * 12
            if m.expires_at is not None and at >= m.expires_at:
                updates.append(MessageUpdate(m.id, MessageState.EXPIRED, now, only_from=_WAITING,
                                             reason=f"expired: {reason}; it could not go before expires_at"))
                return
            updates.append(MessageUpdate(m.id, MessageState.QUEUED, now, only_from=_WAITING, reason=reason,
                                         next_attempt_at=at, history=m.reason != reason))

        for m in messages:
            rt = self._scopes[m.scope_id]
            sender = rt.senders.get(m.sender_id)
            if sender is None:
                updates.append(MessageUpdate(m.id, MessageState.FAILED, now, only_from=_WAITING,
                                             reason="sender no longer exists"))
                continue
            if m.expires_at is not None and m.expires_at <= now:
                updates.append(MessageUpdate(m.id, MessageState.EXPIRED, now, only_from=_WAITING,
                                             reason="expired before it could be sent"))
                continue
            tenant = tenants[m.tenant_id]
            flag = flags[m.tenant_id].get(m.to)
            category = _CATEGORIES.get(m.category) or Category.parse(m.category)
            is_template = m.kind == "template"
            if category is Category.MARKETING and flag is not None and flag.opted_out_at is not None:
                updates.append(MessageUpdate(m.id, MessageState.REJECTED, now, only_from=_WAITING,
                                             reason="recipient opted out of marketing"))
                continue
            if is_template and tenant.require_opt_in and (flag is None or flag.opted_in_at is None):
                updates.append(MessageUpdate(m.id, MessageState.REJECTED, now, only_from=_WAITING,
                                             reason="no recorded opt-in for this recipient (require_opt_in)"))
                continue
            pair = self._pairs[sender.id]
            ready = pair.ready_at(m.to)
            if ready > now:
                park(m, ready, "pair rate: one message per ~6 s to the same recipient")
                continue
            if category is Category.MARKETING and m.tenant_id in mk_sent:
                times = sorted(mk_sent[m.tenant_id].get(m.to, []))
                cap = tenant.marketing_cap_24h
                if len(times) >= cap:
                    park(m, times[-cap] + DAY,
                         f"marketing frequency cap: {cap} per recipient per 24 h")
                    continue
            quiet = m.metadata.get("quiet")
            if quiet:
                quiet_end = quiet_until(now, (int(quiet[0]), int(quiet[1])), str(quiet[2]))
                if quiet_end is not None:
                    park(m, quiet_end, "quiet hours in the recipient's local time")
                    continue
            last_in = inbound[m.sender_id].get(m.to)
            csw_open = last_in is not None and last_in + CSW_SPAN > now
            bucket = self._bucket(sender)
            cost = 2.0 if (category is Category.MARKETING and sender.quality == "YELLOW") else 1.0
            if self.overlap_sends and self._inflight[sender.id] + admitted[sender.id] >= self.config.send_concurrency:
                # its earlier sends still wait for answers (a hanging sender): each answer wakes us
                throttled_until = min(throttled_until or math.inf, now + self.config.idle_wait)
                continue
            if not bucket.can_take(now, cost):
                at = max(bucket.next_token_at(now, cost), self._refill_at(bucket, now))
                throttled_until = at if throttled_until is None else min(throttled_until, at)
                continue  # stays due; no write: it is picked up again when a token is there
            limits = limits_of.get(sender.id)
            if limits is None:  # once per sender and batch
                limits = limits_of[sender.id] = ScopeLimits(
                    limit=self._limit(rt.scope),
                    reserve_fraction=rt.scope.reserve_fraction,
                    paused=sender.paused,
                    marketing_paused=sender.marketing_paused,
                )
            decision = decide(rt.window, MessageFacts(m.to, is_template, category, csw_open), limits, now)
            if decision.gate is Gate.REJECT:
                updates.append(MessageUpdate(m.id, MessageState.REJECTED, now, only_from=_WAITING,
                                             reason=decision.reason))
                continue
            if decision.gate is Gate.DEFER:
                until = decision.until
                if decision.reason.startswith("messaging limit"):
                    rt.may_have_parked = True
                    if rt.backlog_until is not None and rt.backlog_until <= now:
                        rt.backlog_until = None  # its time came: what is left waits slot by slot again
                    if rt.backlog_until is not None and m.expires_at is None:
                        until = rt.backlog_until  # behind the backlog parked in bulk, first come first pulled
                    else:
                        until = rt.park_slot(now, limits.limit, self.config.park_granularity, m.expires_at) or until
                    full.setdefault(m.scope_id, (limits, decision.reason))
                park(m, until, decision.reason)
                continue
            bucket.take(now, cost)
            slot = decision.slot
            updates.append(
                MessageUpdate(
                    m.id, MessageState.SENDING, now, reason="admitted: " + decision.reason,
                    add_attempt=True, counted=decision.counted,
                    slot_expiry=slot.expiry if slot else None,
                    slot_previous=slot.previous if slot else None,
                )
            )
            if slot is not None:
                ledger.append(LedgerChange(m.scope_id, m.to, slot.expiry))
            pair.sent(m.to, now)
            if category is Category.MARKETING and m.tenant_id in mk_sent:  # the cap counts this batch's too
                mk_sent[m.tenant_id].setdefault(m.to, []).append(now)
            to_send.append((m, sender, slot))
            admitted[sender.id] += 1
            admitted_counted[decision.counted] += 1

        for counted, n in admitted_counted.items():  # one metric update per batch, not per message
            METRICS.admitted.labels(counted=str(counted).lower()).inc(n)
        deferred = sum(1 for u in updates if u.state is MessageState.QUEUED)
        if deferred:
            METRICS.deferred.inc(deferred)
        pauses: dict[str, tuple[str, float]] = {}
        if to_send and self._answers_inline:
            to_send, pauses = await self._send_inline(to_send, updates, ledger, now)
        try:
            await self._flush_write()  # one write in flight, and writes land in order
        except Exception:  # the earlier batch's write failed: this batch is neither written nor sent
            if to_send and not self._answers_inline:
                self._release_slots(to_send, now)
            raise
        if updates:
            if (write_behind and not full and self.overlap_sends and self.config.write_behind
                    and self.store.concurrent_calls):
                # Left running while the next batch is claimed (which skips these rows) and
                # decided: the worker's Python and the database's work on the write overlap. A
                # remote platform's sends wait for it (``_send_recorded``): nothing leaves before
                # its admission is written.
                self._writing = [u.id for u in updates]
                self._pending_write = asyncio.create_task(self._commit(updates, ledger, to_send, now))
                if to_send and not self._answers_inline:
                    self._send_in_background(to_send, now, after=self._pending_write)
                    to_send = []  # on their way
            else:
                await self._commit(updates, ledger, to_send, now)
        for scope_id, (limits, reason) in full.items():
            try:
                await self._park_backlog(scope_id, limits, reason, now)
            except Exception:  # only a shortcut: the backlog is decided one by one instead
                log.exception("parking the backlog of %s in bulk failed", scope_id)
        await self._after_answers(pauses, self.clock.now())
        return to_send, throttled_until

    async def _commit(self, updates: list[MessageUpdate], ledger: list[LedgerChange],
                      batch: Sequence[tuple[Message, Sender, Slot | None]], now: float) -> None:
        """Write a batch's decisions under the lease fence; if a lease was lost, nothing was
        written: undo the batch's in-memory admissions before giving the scopes up.

        Another failure (a full disk, say) undoes them too when the store is sure nothing was
        written and nothing was sent (a remote platform's sends wait for this write): the messages
        stay queued and are admitted again, instead of holding phantom slots for 24 h. An inline
        provider has had the sends already, so their slots stay taken."""
        try:
            await self.store.apply_updates(updates, ledger, lease=(self.worker_id, list(self._scopes)))
        except LeaseLost:
            self._release_slots(batch, now)
            raise
        except Exception as exc:
            if not self._answers_inline and self.store.wrote_nothing(exc):
                self._release_slots(batch, now)
            raise

    def _release_slots(self, batch: Sequence[tuple[Message, Sender, Slot | None]], now: float) -> None:
        """Undo a batch's in-memory admissions (nothing of them was written)."""
        for m, _sender, slot in batch:
            owner = self._scopes.get(m.scope_id)
            if slot is not None and owner is not None:
                owner.window.release(slot, now)

    async def _flush_write(self) -> None:
        """Wait for the write left running (``_admit``), raising what it raised."""
        task, self._pending_write = self._pending_write, None
        if task is None:
            return
        try:
            await task
        finally:
            self._writing = []

    @property
    def _answers_inline(self) -> bool:
        return bool(getattr(self.provider, "answers_inline", False))

    async def _send_inline(
        self, batch: list[tuple[Message, Sender, Slot | None]], updates: list[MessageUpdate],
        ledger: list[LedgerChange], now: float,
    ) -> tuple[list[tuple[Message, Sender, Slot | None]], dict[str, tuple[str, float]]]:
        """Send an admitted batch to a provider that answers inline, before anything is written,
        and fold each answer into its admission's update: one row write per message instead of
        two (``sending``, then the outcome). Sound because such a provider's sends die with this
        process: a crash before the commit loses the sends and their record together.

        Returns the batch as sent (empty when the leases may lapse first: nothing is sent, the
        admissions are dropped and their slots freed) and the senders to pause."""
        admitted = {u.id: i for i, u in enumerate(updates) if u.state is MessageState.SENDING}
        if self.wall.now() + self.config.lease_ttl / 3 >= self._leases_until:
            log.warning("leases may lapse before %d admitted sends go out: they stay queued", len(batch))
            self._release_slots(batch, now)
            for i in admitted.values():
                updates[i] = MessageUpdate(updates[i].id, MessageState.QUEUED, now, next_attempt_at=now,
                                           reason=_LEASE_LAPSED)
            ledger.clear()  # admission only counts the slots of those sends
            return [], {}
        outcomes = [await self._attempt(m) for m, _, _ in batch]
        answers, more_ledger, pauses = self._record_outcomes(batch, outcomes, self.clock.now())
        for answer in answers:
            i = admitted[answer.id]
            updates[i] = folded(updates[i], answer)
        ledger += more_ledger  # after the admission's: the store applies one recipient's changes in order
        return batch, pauses

    async def _park_backlog(self, scope_id: str, limits: ScopeLimits, reason: str, now: float) -> None:
        """Once every slot freeing in the next 24 h is promised to a parked message, park the rest of
        the scope's due backlog that needs a slot in one statement (a 1M campaign on a 1K tier is
        not a million decisions and writes each time it comes up), at the latest time the last of
        them could go at this tier. Released slots pull them in order (``_release_wake``)."""
        rt = self._scopes.get(scope_id)
        if rt is None or rt.backlog_until is not None:
            return
        releases = rt.window.releases(now)
        if not releases or len(rt.parks) < len(releases):
            return  # the coming day's slots are not all promised yet: parking one by one is exact
        usage = rt.window.usage(now)
        categories = [c.value for c in Category if usage >= limits.capacity_for(c)]
        # The backlog's last message, counting those parked one by one (they hold the first slots).
        last = max(len(rt.parks), await self.store.count_queued(scope_id) - 1)
        until = _round_up(_kth_release(releases, last), self.config.park_granularity)
        moved = await self.store.park_for_capacity(scope_id, categories=categories, now=now, until=until,
                                                   reason=reason, csw_since=now - CSW_SPAN)
        if moved:
            rt.backlog_until = until
            METRICS.deferred.inc(moved)

    @staticmethod
    def _limit(scope: Scope) -> int | None:
        return admission_tier(scope.tier, scope.predicted_tier, scope.trust_model).limit

    async def _send(self, batch: Sequence[tuple[Message, Sender, Slot | None]], now: float) -> None:
        if self.wall.now() + self.config.lease_ttl / 3 >= self._leases_until:
            await self._unsend(batch)
            return
        async def one(m: Message) -> SendOutcome:
            sem = self._sems.get(m.sender_id)
            if sem is None:
                sem = self._sems[m.sender_id] = asyncio.Semaphore(self.config.send_concurrency)
            async with sem:
                return await self._attempt(m)

        if self.overlap_sends:
            # What is claimed is already capped by each sender's room in flight (``_token_budget``):
            # a semaphore would only cost its bookkeeping (3% of a PostgreSQL worker's time).
            outcomes = list(await asyncio.gather(*(self._attempt(m) for m, _, _ in batch)))
        else:
            outcomes = list(await asyncio.gather(*(one(m) for m, _, _ in batch)))
        done_at = self.clock.now()
        updates, ledger, pauses = self._record_outcomes(batch, outcomes, done_at)
        await self.store.apply_updates(updates, ledger)
        await self._after_answers(pauses, done_at)

    async def _attempt(self, m: Message) -> SendOutcome:
        try:
            return await self.provider.send(m.sender_id, _correlated(m))
        except Exception as exc:  # the request may have left: never re-send silently
            log.exception("provider raised on send %s", m.id)
            return SendOutcome("unknown", title=f"provider error: {type(exc).__name__}")

    def _record_outcomes(
        self, batch: Sequence[tuple[Message, Sender, Slot | None]], outcomes: Sequence[SendOutcome], done_at: float,
    ) -> tuple[list[MessageUpdate], list[LedgerChange], dict[str, tuple[str, float]]]:
        """What the answers mean: each message's update, the ledger changes, the senders to pause."""
        sent_before = self.sent_total
        updates: list[MessageUpdate] = []
        ledger: list[LedgerChange] = []
        pauses: dict[str, tuple[str, float]] = {}
        for (m, sender, slot), outcome in zip(batch, outcomes, strict=True):
            plan = plan_outcome(outcome.status, outcome.code, outcome.title, outcome.details,
                                attempts=m.attempts + 1, now=done_at, jitter=self._rng.random(),
                                http_status=outcome.http_status, retry_after=outcome.retry_after,
                                message_status=outcome.message_status, expires_at=m.expires_at)
            self._apply_plan(m, sender, slot, plan, outcome, done_at, updates, ledger, pauses)
        sent = self.sent_total - sent_before
        if sent:
            METRICS.sent.inc(sent)  # once per batch: each inc takes the counter's lock
        return updates, ledger, pauses

    async def _unsend(self, batch: Sequence[tuple[Message, Sender, Slot | None]]) -> None:
        """The worker stalled between admission and sending until its leases may have run out:
        another worker may own these scopes now, and it holds their slots only a window from its
        takeover, so a send from here could reach the platform after that. Nothing is sent: the
        messages go back to the queue with their slots freed, if this worker still owns the scopes
        (the write is fenced); otherwise the new owner has made them ``unknown``, slots held."""
        now = self.clock.now()
        log.warning("leases may have lapsed before %d admitted sends went out: requeueing them unsent", len(batch))
        by_scope: dict[str, tuple[list[MessageUpdate], list[LedgerChange]]] = defaultdict(lambda: ([], []))
        for m, _sender, slot in batch:
            updates, ledger = by_scope[m.scope_id]
            updates.append(MessageUpdate(m.id, MessageState.QUEUED, now, next_attempt_at=now,
                                         reason=_LEASE_LAPSED,
                                         clear_slot=slot is not None, only_from=_IN_FLIGHT))
            if slot is not None:
                self._free_slot(m, slot, now, ledger)
        for scope_id, (updates, ledger) in by_scope.items():  # fenced per scope: a lost one keeps the rest
            try:
                await self.store.apply_updates(updates, ledger, lease=(self.worker_id, [scope_id]))
            except LeaseLost:
                log.warning("scope %s was taken over: its new owner made those sends 'unknown'", scope_id)
                self.request_refresh()
        self.wake()

    def _apply_plan(self, m: Message, sender: Sender, slot: Slot | None, plan: OutcomePlan,
                    outcome: SendOutcome, now: float, updates: list[MessageUpdate],
                    ledger: list[LedgerChange], pauses: dict[str, tuple[str, float]]) -> None:
        if plan.state is MessageState.SENT:
            self.sent_total += 1
        elif plan.state is MessageState.FAILED:
            METRICS.failed.labels(code=str(outcome.code)).inc()
        next_at = plan.next_attempt_at
        if plan.recipient_wait_until is not None:
            self._pairs[sender.id].hold(m.to, plan.recipient_wait_until)
        new_expiry = None
        if slot is not None and not plan.release_slot:
            new_expiry = self._extend_slot(m, slot, now, ledger)
        updates.append(
            MessageUpdate(
                m.id, plan.state, now, reason=plan.reason, next_attempt_at=next_at,
                wamid=outcome.wamid, error_code=outcome.code,
                error_detail=(outcome.details or outcome.title) or None,
                sent_at=now if plan.state is MessageState.SENT else None,
                clear_slot=plan.release_slot, slot_expiry=new_expiry,
                only_from=_IN_FLIGHT,  # a status webhook that got here first is not undone
            )
        )
        if plan.release_slot and slot is not None:
            self._free_slot(m, slot, now, ledger)
        if plan.pause_sender:
            pauses[sender.id] = (plan.pause_sender, self.pause_end(plan, now))
        if plan.slow_sender:  # 130429: this sender's pace, not only this message, must come down
            self._bucket(sender).slow_down(now)
        if plan.opt_out:  # 131050: recorded once the batch's write is in (``_after_answers``)
            self._opt_outs.append((m.tenant_id, m.to, now, plan.opt_out))

    def pause_end(self, plan: OutcomePlan, now: float) -> float:
        """When a pause an answer calls for ends: the code's own length (a restricted account's
        day), else the configured spam-limit pause."""
        return now + (plan.pause_for or self.config.pause_on_spam_limit)

    async def _after_answers(self, pauses: dict[str, tuple[str, float]], now: float) -> None:
        """What a batch's answers call for beyond its messages, once its write is in: senders to
        pause, and recipients who stopped marketing (131050), recorded as opt-outs so their queued
        and later marketing is refused instead of sent to fail again."""
        for sender_id, (reason, until) in pauses.items():
            await self.pause_sender(sender_id, reason, until, now)
        pending, self._opt_outs = self._opt_outs, []
        for tenant_id, recipient, at, source in pending:
            await self.store.set_opt_out(tenant_id, recipient, at, source)

    def _free_slot(self, m: Message, slot: Slot, now: float, ledger: list[LedgerChange]) -> None:
        """The send never counted (refused, or never made): its slot goes back, in memory and in
        the ledger (where an earlier send of the same recipient may still count)."""
        rt = self._scopes.get(m.scope_id)
        if rt is not None and rt.window.release(slot, now):
            ledger.append(LedgerChange(m.scope_id, m.to, slot.expiry, remove=True))

    def _extend_slot(self, m: Message, slot: Slot, answered_at: float, ledger: list[LedgerChange]) -> float | None:
        """The platform counts a send from when it got it, which can be later than the admission
        (a slow answer, a stalled worker): then count it from the answer, so tiergate's window
        never ends before the platform's. Returns the new expiry (None: unchanged)."""
        rt = self._scopes.get(m.scope_id)
        if rt is None or answered_at + rt.window.span <= slot.expiry + self.config.late_answer:
            return None
        extended = rt.window.record(m.to, answered_at)
        if extended.expiry <= slot.expiry:
            return None
        ledger.append(LedgerChange(m.scope_id, m.to, extended.expiry))
        return extended.expiry

    async def pause_sender(self, sender_id: str, reason: str, until: float | None, now: float) -> None:
        sender = await self.store.get_sender(sender_id)
        paused = dict(sender.paused)
        paused[reason] = until
        await self.store.update_sender(sender_id, {"paused": paused})
        await self.store.add_sender_event(sender_id, now, "paused", reason)
        log.warning("ALERT sender %s paused: %s", sender_id, reason)
        rt = self._scopes.get(sender.scope_id)
        if rt is not None and sender_id in rt.senders:
            rt.senders[sender_id].paused = paused

    # -- loops -----------------------------------------------------------------------------------
    async def run_until_idle(self, max_steps: int = 1_000_000) -> int:
        """Step while work is due now (tests and the CLI): returns the number of steps taken."""
        steps = 0
        while steps < max_steps:
            steps += 1
            nxt = await self.step(refresh=steps == 1)
            if nxt is None or nxt > self.clock.now():
                break
        return steps

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Real time: step, then sleep until the next wake-up, a wake() call, a notification on
        ``DUE`` (any process that queued work: one per batch), or stop. Polling every ``idle_wait``
        stays as the fallback for lost notifications and for stores that reach only this process."""
        stops = []
        for channel, callback in ((DUE, self.wake), (CHANGED, self.request_refresh)):
            try:
                stops.append(await self.store.listen(channel, callback))
            except Exception as exc:
                log.warning("cannot listen on %r (%s); polling every %.1f s", channel, exc, self.config.idle_wait)
        try:
            await self._loop(stop)
        finally:
            for stop_listening in stops:
                with contextlib.suppress(Exception):
                    await stop_listening()

    def _send_in_background(self, batch: Sequence[tuple[Message, Sender, Slot | None]], now: float,
                            after: asyncio.Task[None] | None = None) -> None:
        by_sender: dict[str, list[tuple[Message, Sender, Slot | None]]] = defaultdict(list)
        for item in batch:
            by_sender[item[1].id].append(item)
        for sender_id, items in by_sender.items():
            self._inflight[sender_id] += len(items)
            task = asyncio.create_task(self._send_recorded(sender_id, items, now, after))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send_recorded(self, sender_id: str, items: list[tuple[Message, Sender, Slot | None]],
                             now: float, after: asyncio.Task[None] | None = None) -> None:
        try:
            if after is not None:
                try:
                    await asyncio.shield(after)  # the admission's write: sent only once it is in
                except Exception:
                    return  # not written, so not sent: they stay queued (the next step raises it)
            await self._send(items, now)
        except Exception:  # they stay 'sending': the next start of a worker marks them unknown
            log.exception("recording %d answers of sender %s failed", len(items), sender_id)
        finally:
            self._inflight[sender_id] -= len(items)
            self.wake()

    async def _loop(self, stop: asyncio.Event) -> None:
        self.overlap_sends = True
        try:
            await self._steps(stop)
        finally:  # answers already on their way are recorded before the dispatcher stops
            while self._sending:
                await asyncio.gather(*list(self._sending), return_exceptions=True)
            try:
                await self._flush_write()
            except Exception:
                log.exception("the last batch's write failed: its messages stay queued")
            self.overlap_sends = False

    async def _steps(self, stop: asyncio.Event) -> None:
        last_refresh = -math.inf
        while not stop.is_set():
            self._wake.clear()  # before the step: a wake-up that arrives during it is not lost
            try:
                refresh = self._refresh_requested or self.wall.now() - last_refresh >= self.config.lease_ttl / 3
                self._refresh_requested = False
                if refresh:
                    last_refresh = self.wall.now()
                nxt = await self.step(refresh=refresh)
            except Exception as exc:
                if self.store.is_unavailable(exc):  # a full disk, a lost connection: one line, not a traceback
                    log.warning("dispatcher: the database is unavailable (%s: %s); retrying in 1 s",
                                type(exc).__name__, exc)
                else:
                    log.exception("dispatcher step failed; retrying shortly")
                nxt = self.clock.now() + 1.0
            now = self.clock.now()
            wait = self.config.idle_wait if nxt is None else min(max(nxt - now, 0.0), self.config.idle_wait)
            if wait <= 0:
                await asyncio.sleep(0)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
