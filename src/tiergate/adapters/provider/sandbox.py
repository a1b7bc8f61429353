"""An in-process emulation of the WhatsApp Business Platform, used by ``serve`` and ``simulate``.

It plays the platform's part, not tiergate's: it answers sends like the Cloud API (wamids, error
codes), keeps its *own* count of distinct recipients per rolling 24 h per scope, and fails (with
an async ``failed`` status, 131048) any send over the tier it enforces, counting it as a
violation. That count is deliberately implemented differently from ``core.window`` (a min-heap of
expiries instead of a FIFO) so it is an independent check of the engine, not a copy of it.

Like the platform it produces webhooks in the exact JSON shapes: statuses (sent, delivered, read,
failed) after configurable delays, inbound replies from a share of recipients (which open the
customer service window), quality changes when too many recipients block the number, and tier
changes decided by the policy engine (``core.policy``: classic at UTC day boundaries, portfolio 6 h
after a threshold is crossed), which it then enforces itself. ``poll_events(now)`` hands them out
in time order.

Everything is in memory, driven by the injected clock and seeded randomness: the same calls give
the same answers. Each send costs O(log n).
"""

from __future__ import annotations

import bisect
import heapq
import random
import zlib
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import orjson

from tiergate.adapters.provider.graph_nodes import GraphNodes
from tiergate.clock import Clock
from tiergate.core import shapes
from tiergate.core.policy import Policy, PolicyState, Timing, get_policy, parse_quality
from tiergate.core.tiers import parse_tier
from tiergate.ports import ProviderError, SenderInfo, SendOutcome

__all__ = ["Received", "SandboxProvider"]

MEDIA_KEPT = 1_000  # uploaded files the sandbox keeps to be fetched again
MEDIA_URL = "https://lookaside.sandbox.invalid/whatsapp_business/media/?mid="  # where its media "lives"

DAY = 86_400.0
SERVICE_WINDOW = DAY
_COMPACT_SLACK = 1024
_QUALITY_RANK = {"GREEN": 0, "UNKNOWN": 1, "YELLOW": 2, "RED": 3}
_REPLY_TEXTS = ("Thanks!", "What are your opening hours?", "Yes please", "Can you call me?", "👍")
_FAULT_KINDS = ("timeout", "reset", "5xx")


def _when(item: tuple[Any, ...]) -> tuple[float, int]:
    return item[0], item[1]


class Received(NamedTuple):
    """One message the sandbox accepted (``at``: when), with what became of it.

    ``outcome``: ``delivered``, ``violation`` (over the limit: failed 131048), ``undeliverable``
    (131026), ``blocked`` (the recipient had blocked the number: 131026) or ``outside_window``
    (free-form with the service window closed: 131047). ``counted``: it took a place in the scope's
    distinct-recipient count.
    """

    phone_number_id: str
    to: str
    at: float
    wamid: str
    counted: bool
    outcome: str
    body: dict[str, Any]


_DAY_EDGE = 1e-3  # seconds: see _Scope.keep_counting


class _DistinctWindow:
    """Distinct recipients whose latest send is less than ``span`` old: a dict of expiries plus a
    queue of (expiry, recipient) in expiry order, stale entries skipped lazily. Sends come in clock
    order, so a new expiry goes at the end (O(1), where a heap cost O(log n) twice per send); one
    out of order (a clock stepped back) is put in its place."""

    __slots__ = ("_expiry", "_queue", "span")

    def __init__(self, span: float) -> None:
        self.span = span
        self._expiry: dict[str, float] = {}
        self._queue: deque[tuple[float, str]] = deque()

    def _drop_expired(self, now: float) -> None:
        queue, expiry = self._queue, self._expiry
        while queue and queue[0][0] <= now:
            exp, rcpt = queue.popleft()
            if expiry.get(rcpt) == exp:
                del expiry[rcpt]

    def count(self, now: float) -> int:
        self._drop_expired(now)
        return len(self._expiry)

    def contains(self, rcpt: str, now: float) -> bool:
        exp = self._expiry.get(rcpt)
        return exp is not None and exp > now

    def add(self, rcpt: str, at: float) -> None:
        exp = at + self.span
        if self._expiry.get(rcpt, float("-inf")) >= exp:
            return
        self._expiry[rcpt] = exp
        queue = self._queue
        if not queue or queue[-1][0] <= exp:
            queue.append((exp, rcpt))
        else:
            bisect.insort(queue, (exp, rcpt))
        if len(queue) > 2 * len(self._expiry) + _COMPACT_SLACK:
            self._queue = deque(sorted((e, r) for r, e in self._expiry.items()))


@dataclass(eq=False)
class _Scope:
    """One limit scope: its policy state (tier, quality, pending upgrade) and its counts."""

    id: str
    policy: Policy
    state: PolicyState
    senders: list[str] = field(default_factory=list)
    day: _DistinctWindow = field(default_factory=lambda: _DistinctWindow(DAY))
    reach: dict[int, _DistinctWindow] = field(default_factory=dict)  # days -> distinct over them
    # a threshold judged on every counted send: (window days, recipients); None when none applies now
    watch: tuple[int, int] | None = None

    @property
    def tier(self) -> str:
        return self.state.tier.name

    @property
    def limit(self) -> int | None:
        return self.state.tier.limit

    def reach_at(self, now: float) -> dict[int, int]:
        return {days: window.count(now) for days, window in self.reach.items()}

    def keep_counting(self, windows: Iterable[int]) -> None:
        """Count distinct recipients over these windows (days) from now on, if not already."""
        for days in windows:
            if days not in self.reach:
                # The platform judges whole days at the boundary: a send at 00:00 of the first of the
                # N days still counts when the boundary closing the last one is evaluated.
                self.reach[days] = _DistinctWindow(days * DAY + _DAY_EDGE)


@dataclass(eq=False)
class _Sender:
    info: SenderInfo
    scope: _Scope
    quality: str
    display: str  # digits, as webhooks carry it
    delivered_today: int = 0
    blocked_today: int = 0
    recent_sends: deque[float] = field(default_factory=deque)

    @property
    def status(self) -> str:
        return "FLAGGED" if self.quality == "RED" and self.scope.policy.downgrade is not None else "CONNECTED"


class SandboxProvider:
    """``Provider`` that emulates the platform in memory; see the module docstring.

    Shares are probabilities: ``undeliverable_share`` of recipients (fixed per recipient) can
    never be reached (async 131026); ``reply_share`` of delivered messages get a text reply after
    ``reply_delay`` (``stop_share`` of replies say STOP); ``block_share`` of delivered messages make
    the recipient block the number, which lowers quality at the next day boundary once blocks reach
    ``yellow_block_rate``/``red_block_rate`` of the day's deliveries (at least ``quality_sample``).
    ``statuses``: which of sent/delivered/read to report (``failed`` always is), ``read_share`` of
    delivered messages are read. ``webhook_batch`` > 1 groups consecutive statuses of one number
    into one body (the platform may batch; it keeps long simulations fast). ``keep_received``:
    keep every accepted message in ``received``. ``throughput_mps``: per-number sends per second
    beyond which sends are counted in ``stats["throughput_exceeded"]`` and, with
    ``enforce_throughput``, refused with 130429.
    """

    name = "sandbox"
    answers_inline = True  # send() never waits on I/O: the dispatcher need not make a task per message

    def __init__(self, clock: Clock, *, seed: int = 0, undeliverable_share: float = 0.0,
                 reply_share: float = 0.0, block_share: float = 0.0, stop_share: float = 0.0,
                 read_share: float = 0.5, sent_delay: float = 0.5, delivery_delay: float = 2.0,
                 read_delay: float = 60.0, reply_delay: float = 120.0,
                 statuses: Iterable[str] = ("sent", "delivered", "read"), webhook_batch: int = 1,
                 yellow_block_rate: float = 0.01, red_block_rate: float = 0.03, quality_sample: int = 100,
                 keep_received: bool = True, throughput_mps: float = 80.0,
                 enforce_throughput: bool = False) -> None:
        self.clock = clock
        self.seed = seed
        self.undeliverable_share = undeliverable_share
        self.reply_share = reply_share
        self.block_share = block_share
        self.stop_share = stop_share
        self.read_share = read_share
        self.sent_delay = sent_delay
        self.delivery_delay = delivery_delay
        self.read_delay = read_delay
        self.reply_delay = reply_delay
        self.statuses = frozenset(statuses)
        self.webhook_batch = max(1, webhook_batch)
        self.yellow_block_rate = yellow_block_rate
        self.red_block_rate = red_block_rate
        self.quality_sample = quality_sample
        self.keep_received = keep_received
        self.throughput_mps = throughput_mps
        self.enforce_throughput = enforce_throughput

        self.received: list[Received] = []
        self.read_receipts: deque[tuple[str, str, float]] = deque(maxlen=10_000)  # (number, message id, at)
        self.uploads: deque[tuple[str, str, int]] = deque(maxlen=10_000)  # (number, media id, bytes)
        self._media: dict[str, tuple[bytes, str]] = {}  # media id -> (file, MIME type), oldest first
        self._media_serial = 0
        self.violations = 0
        self.scope_violations: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._senders: dict[str, _Sender] = {}
        self._scopes: dict[str, _Scope] = {}
        self._csw: dict[tuple[str, str], float] = {}  # (sender, recipient) -> latest inbound time
        self._blocked: set[tuple[str, str]] = set()
        self._timers: list[tuple[float, int, str, Any]] = []  # the platform's own future actions
        self._outbox: list[tuple[float, int, None, dict[str, Any]]] = []  # rare webhook bodies, by time
        # Statuses, the bulk of the webhooks: one FIFO per delay. Sends come in clock order, so each
        # FIFO is already in time order and costs O(1) per status instead of a heap's O(log n).
        self._status_queues: dict[float, deque[tuple[Any, ...]]] = {
            delay: deque() for delay in (sent_delay, delivery_delay, read_delay)}
        self._seq = 0
        self._serial = 0
        self._next_day: float | None = None
        self._faults: list[list[Any]] = []  # [kind, remaining, sender, reached]
        self.nodes = GraphNodes(self._number_state,  # numbers' profiles, WABAs' templates and numbers
                                lambda waba: [n for n, s in self._senders.items() if s.info.portfolio_id == waba])

    def __repr__(self) -> str:
        return f"SandboxProvider(seed={self.seed}, senders={len(self._senders)}, violations={self.violations})"

    # -- inspection --------------------------------------------------------------------------
    def scope_of(self, phone_number_id: str) -> str:
        return self._sender(phone_number_id).scope.id

    def usage(self, scope_id: str, now: float | None = None) -> int:
        """Distinct counted recipients of a scope in the rolling 24 h ending at ``now``."""
        return self._scopes[scope_id].day.count(self.clock.now() if now is None else now)

    def counts(self, now: float | None = None) -> dict[str, int]:
        """``usage`` of every scope."""
        at = self.clock.now() if now is None else now
        return {sid: scope.day.count(at) for sid, scope in self._scopes.items()}

    def tier_of(self, scope_id: str) -> str:
        return self._scopes[scope_id].tier

    def quality_of(self, phone_number_id: str) -> str:
        return self._sender(phone_number_id).quality

    def window_open(self, phone_number_id: str, recipient: str, now: float | None = None) -> bool:
        at = self.clock.now() if now is None else now
        return self._csw_open(phone_number_id, shapes.wa_id(recipient), at)

    # -- the Provider port ---------------------------------------------------------------------
    async def register_sender(self, info: SenderInfo) -> None:
        """Make a number known to the platform, in the scope its policy says.

        The tier and quality given start a *new* scope and number (an unknown quality starts as
        GREEN). After that the sandbox is the platform: registering again, or another number of the
        same portfolio, keeps the tier and quality it has decided (a tiergate that has not yet
        applied an upgrade webhook must not undo the upgrade). ``set_tier`` changes it on purpose.
        """
        policy = get_policy(info.policy)
        if policy.scope == "portfolio":
            if not info.portfolio_id:
                raise ValueError(f"a sender under the {policy.name} policy needs a portfolio_id")
            scope_id = f"portfolio:{info.portfolio_id}"
        else:
            scope_id = f"sender:{info.phone_number_id}"
        tier = parse_tier(info.tier)
        if not tier.known:
            raise ValueError(f"the sandbox cannot enforce the unknown tier {info.tier!r}")
        scope = self._scopes.get(scope_id)
        if scope is None:
            scope = _Scope(scope_id, policy, PolicyState(tier))
            scope.keep_counting(policy.reach_windows)
            self._scopes[scope_id] = scope
        sender = self._senders.get(info.phone_number_id)
        if sender is None:
            quality = parse_quality(info.quality or "GREEN")
            sender = _Sender(info, scope, "GREEN" if quality == "UNKNOWN" else quality,
                             shapes.wa_id(info.display_phone_number))
            self._senders[info.phone_number_id] = sender
            scope.senders.append(info.phone_number_id)
        else:
            sender.info, sender.display = info, shapes.wa_id(info.display_phone_number)
            if sender.scope is not scope:  # moved to another scope (a policy or portfolio change)
                sender.scope.senders.remove(info.phone_number_id)
                self._refresh(sender.scope)
                sender.scope = scope
                scope.senders.append(info.phone_number_id)
        self._refresh(scope)
        if self._next_day is None:
            now = self.clock.now()
            self._next_day = (now // DAY + 1) * DAY
            self._timer(self._next_day, "day", None)

    async def send(self, phone_number_id: str, body: dict[str, Any]) -> SendOutcome:
        now = self.clock.now()
        if self._timers and self._timers[0][0] <= now:
            self._advance(now)
        fault = self._take_fault(phone_number_id) if self._faults else None
        if fault is not None and not fault[3]:
            return self._fault_outcome(fault[0])
        sender = self._senders.get(phone_number_id)
        if sender is None:
            return self._refuse(100, f"Unsupported post request. Object with ID '{phone_number_id}' does not exist.")
        invalid = shapes.validate_send_body(body)
        if invalid is not None:
            return self._refuse(*invalid)
        to = shapes.wa_id(body["to"])
        if to == sender.display:
            return self._refuse(131021)
        if self._over_throughput(sender, now) and self.enforce_throughput:
            return self._refuse(130429)
        outcome = self._accept(sender, to, body, now)
        return outcome if fault is None else self._fault_outcome(fault[0])

    async def relay(self, method: str, path: str, payload: bytes = b"",
                    content_type: str = "", query: str = "") -> tuple[int, dict[str, Any]]:
        """Read receipts, media uploads and media objects, checked as the platform checks them; an
        upload gets a media id, and the file is kept (the last ``MEDIA_KEPT``) to be fetched. The
        account's nodes (a number, its business profile, a WABA's templates): ``GraphNodes``."""
        answered = self.nodes.handle(method, path, query, payload)
        if answered is not None:
            return answered
        parts = path.split("/")
        if len(parts) == 1 and method in ("GET", "DELETE"):
            return self._media_object(method, parts[0])
        if len(parts) != 2 or method != "POST" or parts[1] not in ("messages", "media"):
            return 400, shapes.error_payload(100, details=f"Unsupported {method.lower()} request.")
        phone_number_id, edge = parts
        if phone_number_id not in self._senders:
            return 400, shapes.error_payload(100, details=f"Unsupported post request. Object with ID "
                                                          f"'{phone_number_id}' does not exist.")
        if edge == "media":
            return self._upload(phone_number_id, payload, content_type)
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return 400, shapes.error_payload(100, details="The request body is not valid JSON.")
        invalid = (shapes.validate_status_request(body) if shapes.is_status_request(body)
                   else (100, "Only read receipts are relayed; messages are sent through the queue."))
        if invalid is not None:
            return 400, shapes.error_payload(invalid[0], details=invalid[1])
        self.read_receipts.append((phone_number_id, body["message_id"], self.clock.now()))
        return 200, dict(shapes.STATUS_ACCEPTED)

    def _upload(self, phone_number_id: str, payload: bytes, content_type: str) -> tuple[int, dict[str, Any]]:
        fields = shapes.read_media_upload(content_type, payload)
        if isinstance(fields, tuple):
            return 400, shapes.error_payload(fields[0], details=fields[1])
        self._media_serial += 1
        media_id = str(1_000_000_000_000_000 + self._media_serial)
        mime = fields.get("type", b"").decode("utf-8", "replace") or "application/octet-stream"
        self._media[media_id] = (fields["file"], mime)
        while len(self._media) > MEDIA_KEPT:
            del self._media[next(iter(self._media))]
        self.uploads.append((phone_number_id, media_id, len(fields["file"])))
        return 200, {"id": media_id}

    def _media_object(self, method: str, media_id: str) -> tuple[int, dict[str, Any]]:
        kept = self._media.get(media_id)
        if kept is None:
            return 400, shapes.error_payload(100, details=f"Unsupported {method.lower()} request. Object with ID "
                                                          f"'{media_id}' does not exist.")
        if method == "DELETE":
            del self._media[media_id]
            return 200, dict(shapes.STATUS_ACCEPTED)
        data, mime = kept
        return 200, shapes.media_object(media_id, f"{MEDIA_URL}{media_id}", mime, data)

    async def download(self, url: str) -> tuple[int, bytes, str]:
        kept = self._media.get(url.removeprefix(MEDIA_URL)) if url.startswith(MEDIA_URL) else None
        return (404, b"", "text/plain") if kept is None else (200, kept[0], kept[1])

    def _number_state(self, phone_number_id: str) -> dict[str, Any] | None:
        """The number's Graph state now (None for a number the platform does not know)."""
        sender = self._senders.get(phone_number_id)
        if sender is None:
            return None
        self._advance(self.clock.now())
        return shapes.phone_number_state(phone_number_id, sender.info.display_phone_number,
                                         tier=sender.scope.tier, quality=sender.quality, status=sender.status)

    async def get_phone_number(self, phone_number_id: str, fields: Iterable[str]) -> dict[str, Any]:
        state = self._number_state(phone_number_id)
        if state is None:
            raise ProviderError(f"Graph API error 100: Unsupported get request. Object with ID "
                                f"'{phone_number_id}' does not exist", code=100, http_status=400)
        answer = shapes.phone_number_payload(state, fields)
        if isinstance(answer, tuple):
            raise ProviderError(f"Graph API error {answer[0]}: {answer[1]}", code=answer[0], http_status=400)
        return answer

    def poll_events(self, now: float) -> list[dict[str, Any]]:
        """Webhook bodies due by ``now``, oldest first."""
        self._advance(now)
        due: list[tuple[Any, ...]] = []
        for queue in self._status_queues.values():
            while queue and queue[0][0] <= now:
                due.append(queue.popleft())
        outbox = self._outbox
        while outbox and outbox[0][0] <= now:
            due.append(heapq.heappop(outbox))
        due.sort(key=_when)
        bodies: list[dict[str, Any]] = []
        i, n, most = 0, len(due), self.webhook_batch
        while i < n:
            item = due[i]
            if item[2] is None:  # a prepared body
                bodies.append(item[3])
                i += 1
                continue
            j = i + 1
            while j < n and j - i < most and due[j][2] == item[2]:
                j += 1
            bodies.append(self._status_body(due[i:j]))
            i = j
        return bodies

    def next_event_at(self) -> float | None:
        """When the platform next does something (a webhook falls due or a day boundary passes)."""
        heads: list[float] = [q[0][0] for q in (self._outbox, self._timers) if q]
        heads += [q[0][0] for q in self._status_queues.values() if q]
        return min(heads) if heads else None

    async def aclose(self) -> None:
        return None

    # -- driving the platform (tests and simulations) -------------------------------------------
    def inbound(self, sender: str, recipient: str, at: float | None = None, text: str = "Hello") -> None:
        """A user writes to ``sender`` at ``at`` (default now): opens the service window, emits a webhook."""
        self._sender(sender)
        when = self.clock.now() if at is None else at
        self._timer(when, "inbound", (sender, shapes.wa_id(recipient), text))
        self._advance(self.clock.now())

    def saw_inbound(self, sender: str, recipient: str, at: float) -> None:
        """The platform already reported this inbound message elsewhere (a test's webhook): open the
        service window on the platform's side too, without emitting a second webhook."""
        key = (sender, shapes.wa_id(recipient))
        if self._csw.get(key, float("-inf")) < at:
            self._csw[key] = at

    def verify(self, phone_number_id: str, at: float | None = None) -> str:
        """Business verification: lifts the scope to the policy's verified tier. Returns the tier."""
        scope = self._sender(phone_number_id).scope
        when = self.clock.now() if at is None else at
        self._apply(scope, scope.policy.verify(scope.state, when), when)
        return scope.tier

    def set_tier(self, phone_number_id: str, tier: str, at: float | None = None) -> None:
        """Set the tier of the number's scope (as the platform would), reported by webhook."""
        scope = self._sender(phone_number_id).scope
        parsed = parse_tier(tier)
        if not parsed.known:
            raise ValueError(f"the sandbox cannot enforce the unknown tier {tier!r}")
        scope.keep_counting(scope.policy.reach_windows)  # a lower tier may need a window again
        when = self.clock.now() if at is None else at
        self._apply(scope, replace(scope.state, tier=parsed, pending_upgrade_at=None), when)

    def set_quality(self, phone_number_id: str, quality: str, at: float | None = None) -> None:
        """Force a number's quality rating (reported by webhook like a platform-made change)."""
        when = self.clock.now() if at is None else at
        self._change_quality(self._sender(phone_number_id), parse_quality(quality), when)

    def inject_fault(self, kind: int | str, *, count: int = 1, sender: str | None = None,
                     reached: bool = False) -> None:
        """Make the next ``count`` sends misbehave: an error code (synchronous error) or ``timeout``,
        ``reset``, ``5xx`` (outcome ``unknown``; with ``reached`` the platform did get the message)."""
        if not isinstance(kind, int) and kind not in _FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}: an error code or one of {_FAULT_KINDS}")
        self._faults.append([kind, count, sender, reached and not isinstance(kind, int)])

    # -- the platform's decisions --------------------------------------------------------------
    def _accept(self, sender: _Sender, to: str, body: dict[str, Any], now: float) -> SendOutcome:
        pnid = sender.info.phone_number_id
        self._serial += 1
        wamid = shapes.make_wamid(to, self._serial, self.seed)
        is_template = body.get("type", "text") == "template"
        in_window = self._csw_open(pnid, to, now) if self._csw else False
        counted = False
        if not is_template and not in_window:
            outcome, code = "outside_window", 131047
        elif self._blocked and (pnid, to) in self._blocked:
            outcome, code = "blocked", 131026
        elif self.undeliverable_share and self._undeliverable(to):
            outcome, code = "undeliverable", 131026
        elif is_template and not in_window and not self._count(sender.scope, to, now):
            outcome, code = "violation", 131048
            self.violations += 1
            self.scope_violations[sender.scope.id] += 1
        else:
            outcome, code = "delivered", 0
            counted = is_template and not in_window
        self.stats[outcome] += 1
        if self.keep_received:
            self.received.append(Received(pnid, to, now, wamid, counted, outcome, body))
        category = "marketing" if is_template else "service"
        if code:
            error = shapes.status_error(code, details=(
                "Message failed to send: the messaging limit of this number's tier was exceeded."
                if code == 131048 else None))
            self._emit_status(self.sent_delay, now, pnid, wamid, "failed", to, counted, category, error)
        else:
            self._after_delivery(sender, to, wamid, now, counted, category)
        return SendOutcome("accepted", wamid=wamid, http_status=200, message_status="accepted",
                           raw=shapes.accepted_payload(body["to"], wamid))

    def _count(self, scope: _Scope, to: str, now: float) -> bool:
        """Count a business-initiated send to ``to``; False when it would exceed the tier."""
        day = scope.day
        if not day.contains(to, now) and scope.limit is not None and day.count(now) >= scope.limit:
            return False
        day.add(to, now)
        for window in scope.reach.values():
            window.add(to, now)
        watch = scope.watch
        if watch is not None and scope.reach[watch[0]].count(now) >= watch[1]:
            self._observe(scope, now)
        return True

    def _after_delivery(self, sender: _Sender, to: str, wamid: str, now: float, counted: bool,
                        category: str) -> None:
        pnid, rng = sender.info.phone_number_id, self._rng
        statuses = self.statuses
        if "sent" in statuses:
            self._emit_status(self.sent_delay, now, pnid, wamid, "sent", to, counted, category)
        if "delivered" in statuses:
            self._emit_status(self.delivery_delay, now, pnid, wamid, "delivered", to, counted, category)
        if "read" in statuses and self.read_share and rng.random() < self.read_share:
            self._emit_status(self.read_delay, now, pnid, wamid, "read", to, counted, category)
        sender.delivered_today += 1
        if self.reply_share and rng.random() < self.reply_share:
            text = "STOP" if self.stop_share and rng.random() < self.stop_share else rng.choice(_REPLY_TEXTS)
            self._timer(now + self.reply_delay, "inbound", (pnid, to, text))
        if self.block_share and rng.random() < self.block_share:
            self._timer(now + self.delivery_delay, "block", (pnid, to))

    # -- the policy: core.policy decides, the sandbox counts, reports and enforces --------------
    def _refresh(self, scope: _Scope) -> None:
        """Feed the scope's current quality to its policy state; re-arm the per-send threshold watch.

        A portfolio is judged by its worst number ("high quality across all numbers").
        """
        senders = [self._senders[p] for p in scope.senders]
        quality = max((s.quality for s in senders), key=lambda q: _QUALITY_RANK.get(q, 1), default="GREEN")
        flagged = any(s.status == "FLAGGED" for s in senders)
        state = scope.state
        if (state.quality, state.flagged) != (quality, flagged):
            scope.state = state = replace(state, quality=quality, flagged=flagged)
        self._prune_reach(scope)
        rule = scope.policy.upgrade_rule(state.tier)
        if (rule is None or rule.timing is not Timing.ON_CROSSING or state.pending_upgrade_at is not None
                or not rule.allows(state.quality, state.flagged)):
            scope.watch = None
        else:
            scope.watch = (rule.window_days, rule.threshold(state.tier))

    @staticmethod
    def _prune_reach(scope: _Scope) -> None:
        """Stop counting over windows no rule can use any more (the 30-day entry rule, once past it)."""
        policy = scope.policy
        rung = policy.rung_of(scope.state.tier) or 0
        if policy.downgrade is not None:
            rung = min(rung, policy.downgrade.floor_rung)
        needed = {rule.window_days for rule in policy.upgrades if rule.last_rung is None or rule.last_rung >= rung}
        for days in [d for d in scope.reach if d not in needed]:
            del scope.reach[days]

    def _observe(self, scope: _Scope, now: float) -> None:
        """A threshold judged continuously may be reached: let the policy schedule the upgrade."""
        self._apply(scope, scope.policy.observe(scope.state, scope.reach_at(now), now), now)

    def _apply(self, scope: _Scope, new: PolicyState, at: float) -> None:
        """Adopt the policy's new state: report and enforce a tier change, arm a scheduled upgrade."""
        old = scope.state
        scope.state = new
        if new.tier != old.tier:
            event = "UPGRADE" if new.tier.capacity() > old.tier.capacity() else "DOWNGRADE"
            self._report_tier(scope, old.tier.name, at, event)
        if new.pending_upgrade_at is not None and new.pending_upgrade_at != old.pending_upgrade_at:
            self._timer(new.pending_upgrade_at, "upgrade_due", scope.id)
        self._refresh(scope)
        if scope.watch is not None:
            watch = scope.watch
            if scope.reach[watch[0]].count(at) >= watch[1]:  # already past the next threshold
                self._observe(scope, at)

    def _day_boundary(self, at: float) -> None:
        """Quality from the day's blocks, then each scope's end-of-day policy rules."""
        for sender in self._senders.values():
            if sender.delivered_today >= self.quality_sample:
                rate = sender.blocked_today / sender.delivered_today
                quality = ("RED" if rate >= self.red_block_rate else "YELLOW" if rate >= self.yellow_block_rate
                           else "GREEN")
                self._change_quality(sender, quality, at)
            sender.delivered_today = sender.blocked_today = 0
        for scope in self._scopes.values():
            if scope.senders:
                self._apply(scope, scope.policy.end_of_day(scope.state, scope.reach_at(at), at), at)

    def _upgrade_due(self, scope_id: str, at: float) -> None:
        scope = self._scopes[scope_id]
        if scope.state.pending_upgrade_at is not None and scope.state.pending_upgrade_at <= at:
            self._apply(scope, scope.policy.apply_due(scope.state, at), at)

    def _report_tier(self, scope: _Scope, old: str, at: float, event: str) -> None:
        """Report the scope's new tier the way the platform does (it is enforced from ``at`` on)."""
        tier = scope.tier
        self.stats[f"tier:{event.lower()}"] += 1
        portfolio = scope.policy.scope == "portfolio"
        limit_key = "max_daily_conversations_per_business" if portfolio else "current_limit"
        for pnid in scope.senders:
            sender = self._senders[pnid]
            value = {"display_phone_number": sender.display, "phone_number_id": pnid,
                     "event": event, "old_limit": old, limit_key: tier}
            self._emit(at, shapes.webhook(sender.info.waba_id, [("phone_number_quality_update", value)]))
        if portfolio:
            for waba in dict.fromkeys(self._senders[p].info.waba_id for p in scope.senders):
                self._emit(at, shapes.webhook(waba, [("business_capability_update",
                                                      {"max_daily_conversations_per_business": tier})]))

    def _change_quality(self, sender: _Sender, quality: str, at: float) -> None:
        old = sender.quality
        if quality == old:
            return
        sender.quality = quality
        self.stats[f"quality:{quality.lower()}"] += 1
        value: dict[str, Any] = {"display_phone_number": sender.display,
                                 "phone_number_id": sender.info.phone_number_id, "quality_rating": quality}
        if quality == "RED":
            value["event"] = "FLAGGED"
        elif old == "RED":
            value["event"] = "UNFLAGGED"
        self._emit(at, shapes.webhook(sender.info.waba_id, [("phone_number_quality_update", value)]))
        scope = sender.scope
        self._refresh(scope)
        if scope.watch is not None:
            self._observe(scope, at)

    # -- time ----------------------------------------------------------------------------------
    def _advance(self, now: float) -> None:
        """Carry out the platform's own actions due by ``now``, in time order."""
        timers = self._timers
        while timers and timers[0][0] <= now:
            at, _, kind, data = heapq.heappop(timers)
            if kind == "inbound":
                pnid, rcpt, text = data
                key = (pnid, rcpt)
                if self._csw.get(key, float("-inf")) < at:
                    self._csw[key] = at
                self._emit_inbound(at, pnid, rcpt, text)
            elif kind == "block":
                self._blocked.add(data)
                self._senders[data[0]].blocked_today += 1
                self.stats["blocks"] += 1
            elif kind == "upgrade_due":
                self._upgrade_due(data, at)
            elif kind == "day":
                self._day_boundary(at)
                self._next_day = at + DAY
                self._timer(self._next_day, "day", None)

    def _timer(self, at: float, kind: str, data: Any) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (at, self._seq, kind, data))

    def _emit(self, at: float, body: dict[str, Any]) -> None:
        self._seq += 1
        heapq.heappush(self._outbox, (at, self._seq, None, body))

    def _emit_status(self, delay: float, now: float, pnid: str, wamid: str, status: str, to: str, counted: bool,
                     category: str, error: dict[str, Any] | None = None) -> None:
        self._seq += 1
        self._status_queues[delay].append((now + delay, self._seq, pnid, wamid, status, to, counted, category, error))

    def _emit_inbound(self, at: float, pnid: str, rcpt: str, text: str) -> None:
        sender = self._senders[pnid]
        self._serial += 1
        message_id = shapes.make_wamid(rcpt, self._serial, self.seed ^ 0x5A5A)
        value = shapes.inbound_value(sender.display, pnid, rcpt, message_id, at, text,
                                     f"User {rcpt[-4:]}")
        self.stats["inbound"] += 1
        self._emit(at, shapes.webhook(sender.info.waba_id, [("messages", value)]))

    def _status_body(self, batch: list[tuple[Any, ...]]) -> dict[str, Any]:
        pnid = batch[0][2]
        sender = self._senders[pnid]
        items = [shapes.status_item(wamid, status, at, to, billable=counted, category=category,
                                    errors=[error] if error else None)
                 for at, _, _, wamid, status, to, counted, category, error in batch]
        value = {"messaging_product": "whatsapp",
                 "metadata": shapes.metadata(sender.display, pnid), "statuses": items}
        return shapes.webhook(sender.info.waba_id, [("messages", value)])

    # -- helpers -------------------------------------------------------------------------------
    def _sender(self, phone_number_id: str) -> _Sender:
        try:
            return self._senders[phone_number_id]
        except KeyError:
            raise KeyError(f"the sandbox has no sender {phone_number_id!r}: register_sender first") from None

    def _csw_open(self, pnid: str, rcpt: str, now: float) -> bool:
        opened = self._csw.get((pnid, rcpt))
        return opened is not None and opened <= now < opened + SERVICE_WINDOW

    def _undeliverable(self, rcpt: str) -> bool:
        return zlib.crc32(f"{self.seed}:{rcpt}".encode()) / 2**32 < self.undeliverable_share

    def _over_throughput(self, sender: _Sender, now: float) -> bool:
        recent = sender.recent_sends
        while recent and recent[0] <= now - 1.0:
            recent.popleft()
        if len(recent) >= self.throughput_mps:
            self.stats["throughput_exceeded"] += 1
            return True
        recent.append(now)
        return False

    def _refuse(self, code: int, details: str | None = None) -> SendOutcome:
        self.stats[f"error:{code}"] += 1
        payload = shapes.error_payload(code, details=details)
        error = payload["error"]
        return SendOutcome("failed", code=code, title=error["message"].split(") ", 1)[-1],
                           details=error["error_data"]["details"], http_status=shapes.http_status_for(code),
                           raw=payload)

    def _take_fault(self, pnid: str) -> list[Any] | None:
        for fault in self._faults:
            if fault[2] is None or fault[2] == pnid:
                fault[1] -= 1
                if fault[1] <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _fault_outcome(self, kind: int | str) -> SendOutcome:
        self.stats[f"fault:{kind}"] += 1
        if isinstance(kind, int):
            return self._refuse(kind)
        return SendOutcome("unknown", title=f"sandbox fault: {kind}; the platform may have the message",
                           http_status=503 if kind == "5xx" else None)
