"""The ports: what the services need from storage and from the messaging platform.

Adapters implement these (``adapters/store/{sqlite,postgres}``, ``adapters/provider/{sandbox,cloud}``)
and each port has one contract test suite every adapter passes. Services depend on these
Protocols only, never on an adapter.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from tiergate.core.model import (
    ApiKey,
    Campaign,
    CampaignArchive,
    Message,
    MessageState,
    NewMessage,
    Scope,
    Sender,
    Tenant,
)

__all__ = [
    "ConflictError",
    "Forward",
    "LeaseLost",
    "LedgerChange",
    "MessageUpdate",
    "NotFound",
    "Provider",
    "ProviderError",
    "RecipientFlags",
    "SendOutcome",
    "SenderInfo",
    "Store",
    "WebhookSink",
]


class NotFound(LookupError):
    """The record does not exist (or belongs to another tenant: callers cannot tell which)."""


class ConflictError(ValueError):
    """The write conflicts with an existing record (e.g. a sender id registered by another tenant)."""


@dataclass(frozen=True, slots=True)
class WorkerLeases:
    """A dispatcher as the store sees it: alive until when (its heartbeat; None when it holds
    leases but its heartbeat ran out) and the scopes whose leases it holds now."""

    id: str
    alive_until: float | None
    scopes: tuple[str, ...]


class LeaseLost(RuntimeError):
    """A worker tried to commit decisions for a scope it no longer holds; nothing was written."""


# --------------------------------------------------------------------------------------------
# Storage
# --------------------------------------------------------------------------------------------
@dataclass(slots=True)
class MessageUpdate:
    """A change to one message; ``None`` fields are left as they are.

    Every update also appends a line to the message's state history (``state``, ``reason``, ``at``),
    unless ``history`` is False (a re-park that changes only ``next_attempt_at``: the history would
    otherwise grow by a line per wait for a message that waits days).
    """

    id: str
    state: MessageState
    at: float
    reason: str | None = None
    next_attempt_at: float | None = None
    add_attempt: bool = False
    wamid: str | None = None
    error_code: int | None = None
    error_detail: str | None = None
    counted: bool | None = None
    slot_expiry: float | None = None
    slot_previous: float | None = None
    clear_slot: bool = False
    sent_at: float | None = None
    only_from: Sequence[MessageState] | None = None  # apply only if the current state is one of these
    history: bool = True
    # States this same write passes through first, each (state, reason) with a history line at
    # ``at`` before this update's own: an inline send writes its admission and its answer at once.
    earlier: tuple[tuple[MessageState, str | None], ...] = ()


@dataclass(frozen=True, slots=True)
class LedgerChange:
    """A counted recipient of a scope: upsert its expiry, or remove it if the expiry matches."""

    scope_id: str
    recipient: str
    expiry: float
    remove: bool = False


@dataclass(frozen=True, slots=True)
class CountedHistory:
    """A scope's distinct counted recipients of a span, each once at its latest counted send."""

    in_window: list[tuple[float, int]]  # (time, recipients) still in the rolling window
    by_day: list[tuple[int, int]]  # (local day number, recipients) of the others
    recent: int = 0  # recipients whose latest send is after the ``recent_since`` asked for


@dataclass(frozen=True, slots=True)
class RecipientFlags:
    opted_in_at: float | None = None
    opted_out_at: float | None = None


@dataclass(frozen=True, slots=True)
class Forward:
    """A platform webhook (the tenant's share of one delivery) on its way to the tenant's app."""

    id: str
    tenant_id: str
    body: bytes
    attempts: int  # including the one this claim is for
    created_at: float


class Store(Protocol):
    """Durable state. Every method is one transaction; none leaves a half-written change."""

    # True when calls run concurrently (a pool of connections to a server): a batch's write can be
    # left running while the next batch is claimed. False for a store whose calls run one at a time.
    concurrent_calls: bool

    # lifecycle
    async def open(self) -> None: ...  # connect and apply migrations (safe when run concurrently)
    async def close(self) -> None: ...
    async def schema_versions(self) -> list[int]:
        """The migrations applied, oldest first: a small read that proves the database answers
        (the health check), whatever the number of messages."""
        ...

    # tenants and API keys
    async def create_tenant(self, tenant: Tenant) -> Tenant: ...
    async def get_tenant(self, tenant_id: str) -> Tenant: ...
    async def find_tenant_by_name(self, name: str) -> Tenant | None: ...
    async def list_tenants(self) -> list[Tenant]: ...
    async def update_tenant(self, tenant_id: str, fields: dict[str, Any]) -> Tenant: ...
    async def create_api_key(self, key: ApiKey) -> ApiKey: ...
    async def find_api_key(self, key_hash: str) -> ApiKey | None: ...  # revoked keys are not found
    async def find_principal(self, key_hash: str) -> tuple[ApiKey, Tenant] | None:
        """A live key and its tenant in one read (every API request asks)."""
        ...

    async def list_api_keys(self, tenant_id: str | None = None) -> list[ApiKey]: ...
    async def revoke_api_key(self, key_id: str, at: float) -> None: ...

    # senders and scopes
    async def upsert_scope(self, scope: Scope) -> Scope: ...
    async def get_scope(self, scope_id: str) -> Scope: ...
    async def list_scopes(self, tenant_id: str | None = None) -> list[Scope]: ...
    async def update_scope(self, scope_id: str, fields: dict[str, Any]) -> Scope: ...
    async def create_sender(self, sender: Sender) -> Sender: ...  # ConflictError if the id exists
    async def get_sender(self, sender_id: str) -> Sender: ...
    async def list_senders(self, tenant_id: str | None = None) -> list[Sender]: ...
    async def senders_of_scope(self, scope_id: str) -> list[Sender]: ...
    async def update_sender(self, sender_id: str, fields: dict[str, Any]) -> Sender: ...
    async def add_sender_event(self, sender_id: str, at: float, kind: str, detail: str) -> None: ...
    async def sender_events(self, sender_id: str, limit: int = 100) -> list[dict[str, Any]]: ...

    # messages
    async def insert_messages(self, messages: Sequence[NewMessage], now: float) -> list[Message]:
        """Insert in order; a message whose (tenant, idempotency_key) exists returns the original.
        A message's scope is its ``scope_id`` when given (the caller read the sender), else its
        sender's; NotFound (nothing inserted) if such a sender does not exist."""
        ...

    async def enqueue_messages(self, messages: Sequence[NewMessage], now: float) -> int:
        """``insert_messages`` for a caller that needs no answer (a campaign's rows): the same rows,
        no ``Message`` made for each; how many rows were inserted."""
        ...

    async def get_message(self, message_id: str) -> Message: ...
    async def get_message_by_wamid(self, wamid: str) -> Message | None: ...
    async def message_history(self, message_id: str) -> list[dict[str, Any]]: ...
    async def claim_due(self, scope_ids: Sequence[str], now: float, limit: int,
                        exclude: Sequence[str] = ()) -> list[Message]:
        """Queued messages due by ``now`` in these scopes, most urgent first (priority, due, age),
        but for the ids in ``exclude`` (a batch whose write has not landed yet).

        Claiming changes nothing: only the owner of a scope's lease claims from it.
        """
        ...

    async def next_due_at(self, scope_ids: Sequence[str]) -> float | None: ...
    async def apply_updates(
        self,
        updates: Sequence[MessageUpdate],
        ledger: Sequence[LedgerChange] = (),
        lease: tuple[str, Sequence[str]] | None = None,
    ) -> int:
        """Apply message updates and window-ledger changes in one transaction.

        With ``lease=(worker_id, scope_ids)`` the transaction first checks that the worker still
        holds every one of those scopes and raises ``LeaseLost`` (writing nothing) if not.
        Returns the number of messages changed.
        """
        ...

    async def claim_parked(self, scope_id: str, now: float, limit: int) -> list[Message]:
        """Messages of a scope waiting for capacity (reason ``messaging limit ...``) but not yet due,
        in claim order: the dispatcher pulls them forward when the scope has room again."""
        ...

    async def park_for_capacity(self, scope_id: str, *, categories: Sequence[str], now: float, until: float,
                                reason: str, csw_since: float) -> int:
        """The scope is full for these categories: park its due template messages of them that need a
        new slot (no service window opened after ``csw_since``, no live window-ledger row), with
        ``reason`` and ``until`` as the latest time, in one statement instead of a decision each.
        Messages that would expire by ``until`` are left for the dispatcher. Returns how many moved.
        """
        ...

    async def requeue_where(
        self, *, scope_id: str | None = None, sender_id: str | None = None, recipient: str | None = None,
        campaign_id: str | None = None, now: float, keep_capacity_parked: bool = False,
    ) -> int:
        """Make matching queued messages due now (capacity freed, a window opened).

        ``keep_capacity_parked``: leave those waiting for the messaging limit where they are (the
        dispatcher pulls them as capacity allows: no rewrite of a whole backlog on an upgrade).
        """
        ...

    async def set_campaign_hold(self, campaign_id: str, hold: bool, now: float) -> int: ...
    async def cancel_campaign_messages(self, campaign_id: str, now: float) -> int: ...
    async def cancel_message(self, message_id: str, now: float, reason: str) -> bool:
        """``queued`` or ``held`` -> ``canceled``; False when it is in any other state by then."""
        ...

    async def recover_inflight(self, scope_ids: Sequence[str], now: float, hold_until: float | None = None) -> int:
        """After a crash: messages left ``sending`` in these scopes become ``unknown``.

        ``hold_until``: their counted slots last at least until then. A dead worker's request may
        have reached the platform long after its admission (a stalled worker, a slow network) and
        no answer came back to move the slot to the platform's time; it cannot have arrived after
        the takeover, so a full window from the takeover covers the platform's count.
        """
        ...

    async def count_by_state(self, tenant_id: str | None = None, campaign_id: str | None = None,
                             sender_id: str | None = None) -> dict[str, int]: ...
    async def count_queued(self, scope_id: str) -> int:
        """Queued messages of the scope, due or not (a backlog's size, without a table scan)."""
        ...
    async def count_live(self) -> dict[str, int]:
        """Messages not ended yet (queued, held, sending), by state, across every tenant: cheap
        whatever the number of ended messages (the queue-depth gauge)."""
        ...
    async def list_messages(self, tenant_id: str, *, campaign_id: str | None = None, state: str | None = None,
                            recipient: str | None = None, limit: int = 100,
                            before: str | None = None) -> list[Message]:
        """Newest first (by id); ``before`` an id: the page after the one that ended there."""
        ...
    async def marketing_sends_since(self, tenant_id: str, recipients: Sequence[str],
                                    since: float) -> dict[str, list[float]]: ...

    async def distinct_counted(self, scope_id: str, since: float, until: float) -> int:
        """Distinct recipients of counted sends of the scope with sent_at in (since, until]."""
        ...

    async def counted_history(self, scope_id: str, since: float, now: float, utc_offset: float,
                              recent_since: float | None = None) -> CountedHistory:
        """The scope's history for the policy and its forecasts: each distinct counted recipient of
        (since, now] once, at its latest counted send. ``in_window``: (time, recipients) for those
        still in the rolling window (a live ledger row; at its expiry less a day if no send is in
        range); ``by_day``: (local day number, recipients) for the others, the day of
        ``floor((sent_at + utc_offset) / 86400)``; ``recent``: how many have their latest send after
        ``recent_since`` (the distinct recipients of a shorter span, e.g. 7 days, in the same read)."""
        ...

    # the window ledger (one row per counted recipient of a scope)
    async def load_ledger(self, scope_id: str, now: float) -> list[tuple[str, float]]: ...
    async def prune_ledger(self, now: float) -> int: ...
    async def window_releases(self, scope_id: str, now: float,
                              bucket: float) -> list[tuple[int, int, float, float]]:
        """The scope's live window by when its slots free: ``(k, slots, earliest, latest)`` for each
        ``k`` with any, the slots whose expiry is in ``(now + k * bucket, now + (k + 1) * bucket]``
        (free by the end of bucket ``k``), in order of ``k``. A few dozen rows for any window."""
        ...
    async def window_counts(self, now: float) -> dict[str, int]:
        """Recipients each scope's window counts at ``now``, by scope (scopes with none are left out)."""
        ...

    # recipients: opt-in/out and customer service windows
    async def set_opt_in(self, tenant_id: str, recipient: str, at: float, source: str) -> None: ...
    async def set_opt_ins(self, tenant_id: str, entries: Sequence[tuple[str, float, str]]) -> int:
        """Many opt-ins (recipient, time, source) in one transaction; returns how many."""
        ...
    async def set_opt_out(self, tenant_id: str, recipient: str, at: float, source: str) -> None: ...
    async def recipient_flags(self, tenant_id: str, recipients: Sequence[str]) -> dict[str, RecipientFlags]: ...
    async def record_inbound(self, sender_id: str, recipient: str, at: float) -> bool:
        """Keep the latest inbound time of the pair; True when it moved forward."""
        ...

    async def last_inbound(self, sender_id: str, recipients: Sequence[str]) -> dict[str, float]: ...

    # campaigns
    async def create_campaign(self, campaign: Campaign) -> Campaign: ...
    async def get_campaign(self, campaign_id: str) -> Campaign: ...
    async def list_campaigns(self, tenant_id: str, *, sender_id: str | None = None, state: str | None = None,
                             limit: int | None = None, before: str | None = None) -> list[Campaign]:
        """The tenant's campaigns, newest first, optionally of one sender or in one state; ``before``
        a campaign id: only those made before it (the page after the one that ended there)."""
        ...
    async def update_campaign(self, campaign_id: str, fields: dict[str, Any]) -> Campaign: ...
    async def campaign_sends_between(self, campaign_id: str, edges: Sequence[float]) -> list[int]:
        """Messages of the campaign the platform accepted (``sent_at`` set) in each [edges[i], edges[i+1])."""
        ...

    # message retention
    async def finished_campaigns(self, before: float, limit: int = 100) -> list[Campaign]:
        """Campaigns made before ``before``, not archived yet, whose every message has ended (none
        queued, held, in flight, or failed by tiergate and not yet told to the app) and none of
        them changed since ``before``: what message retention may archive, oldest first."""
        ...

    async def archive_campaign(self, archive: CampaignArchive) -> bool:
        """Keep a campaign's figures (the first archive of a campaign wins); True if this one did."""
        ...

    async def campaign_archive(self, campaign_id: str) -> CampaignArchive | None: ...

    async def prune_messages(self, before: float, chunk: int = 5_000) -> int:
        """Delete the messages retention lets go: each ended message of an archived campaign, and each
        message of no campaign that ended before ``before`` (not queued, held or in flight; told
        to the app if tiergate failed it). In transactions of ``chunk`` rows; returns how many went."""
        ...

    # raw webhook events: stored first, applied after, each change applied once
    async def add_webhook_event(self, event_id: str, body: bytes, received_at: float,
                                forwards: Sequence[tuple[str, bytes]] = (),
                                media: Sequence[tuple[str, str]] = ()) -> bool:
        """Store a raw delivery first; False if this id is already stored. ``forwards`` ((tenant id,
        body) to send on to tenants' apps) are queued in the same transaction, only with a new
        event, and the ``media`` ids in them recorded as their tenants' ((media id, tenant id))."""
        ...

    # template categories, as the platform has them (learned from relayed template calls and webhooks)
    async def set_template_categories(self, tenant_id: str, entries: Sequence[tuple[str, str, str]],
                                      at: float) -> int:
        """Record (name, language, category) of the tenant's templates as known at ``at``; a row
        known later already is kept. Returns how many rows were written."""
        ...

    async def template_categories(self, tenant_id: str, names: Sequence[str]) -> dict[tuple[str, str], str]:
        """(name, language) -> category of the tenant's templates with these names."""
        ...

    async def list_template_categories(self, tenant_id: str) -> list[tuple[str, str, str, float]]:
        """Every (name, language, category, updated_at) known for the tenant, by name and language."""
        ...

    # media ids a tenant may reach through the drop-in (uploaded by it, or inbound to its numbers)
    async def add_media(self, entries: Sequence[tuple[str, str]], at: float) -> None:
        """Record (media id, tenant id) pairs; an id recorded already keeps its first tenant."""
        ...

    async def media_tenant(self, media_id: str) -> str | None:
        """The tenant a media id was recorded for, or None."""
        ...

    async def prune_media(self, before: float, chunk: int = 5_000) -> int:
        """Forget media ids recorded before ``before``."""
        ...

    async def claim_forwards(self, now: float, limit: int, hold: float) -> list[Forward]:
        """Due forwards, hidden from other claims for ``hold`` seconds (a crash mid-send retries)."""
        ...

    async def finish_forward(self, forward_id: str, *, delivered_at: float | None = None, error: str = "",
                             next_attempt_at: float | None = None) -> None:
        """Delivered (``delivered_at``), or failed for now (retry at ``next_attempt_at``), or for good."""
        ...

    async def forward_counts(self, tenant_id: str) -> dict[str, Any]:
        """Forwards by state, and the latest error and delivery time."""
        ...

    async def cancel_forwards(self, tenant_id: str, at: float) -> int:
        """Drop the tenant's pending forwards (forwarding was turned off); returns how many."""
        ...

    async def prune_forwards(self, before: float, chunk: int = 5_000) -> int:
        """Delete forwards finished (delivered, failed, canceled) before ``before``."""
        ...

    # messages tiergate ended itself (no status webhook will come): told to the app once
    async def untold_messages(self, limit: int) -> list[Message]:
        """Messages ``failed`` (before the platform took them: no wamid), ``expired`` or ``rejected``
        after submission whose app has not been told yet, oldest change first."""
        ...

    async def mark_told(self, message_ids: Sequence[str], forwards: Sequence[tuple[str, bytes]], at: float) -> bool:
        """Mark these messages told and queue ``forwards`` ((tenant id, body)) in one transaction; False
        (and nothing written) if another process told any of them first."""
        ...

    async def mark_webhook_applied(self, event_id: str, at: float, error: str | None = None) -> None: ...
    async def unapplied_webhook_events(self, limit: int = 100) -> list[tuple[str, bytes]]: ...
    async def prune_webhooks(self, before: float, chunk: int = 5_000) -> int:
        """Delete applied deliveries and change ids older than ``before`` (past the platform's
        redelivery window); returns how many rows went."""
        ...

    async def claim_change(self, change_id: str, at: float) -> bool:
        """True the first time a webhook change id is seen (redeliveries return False)."""
        ...

    # scope leases for workers (wall-clock times: they are about process liveness)
    async def acquire_scopes(self, worker_id: str, now: float, ttl: float, limit: int) -> list[str]:
        """Renew this worker's heartbeat and leases and take free or expired scopes up to its share
        (``scope_share``); returns every scope it holds, which may be more than its share."""
        ...

    async def scope_share(self, now: float, limit: int) -> int:
        """Every scope over the live workers, rounded up, at most ``limit``: what one worker holds."""
        ...

    async def release_scopes(self, worker_id: str, scope_ids: Sequence[str] | None = None) -> None:
        """Give up these scopes, or every scope and the heartbeat (a worker stopping)."""
        ...

    async def list_workers(self, now: float) -> list[WorkerLeases]:
        """Live workers and every holder of an unexpired lease, by id (what an operator looks at)."""
        ...

    async def size_bytes(self) -> int:
        """How much room the database takes: SQLite, its file and WAL; PostgreSQL, the tables and
        indexes of tiergate's schema (what message retention keeps in check)."""
        ...

    def wrote_nothing(self, exc: BaseException) -> bool:
        """Whether a call that raised ``exc`` certainly left nothing written (its transaction rolled
        back); False when it may have committed all the same (a connection lost at the commit)."""
        ...

    def is_unavailable(self, exc: BaseException) -> bool:
        """Whether ``exc`` says the database could not be used just now (disk full, locked past the
        wait, connection lost): nothing of the call was written, and the same call later may work.
        The API answers such a failure 503 with Retry-After, not 500."""
        ...

    # wake-ups between processes (LISTEN/NOTIFY on PostgreSQL; this process only on SQLite)
    async def notify(self, channel: str) -> None: ...

    async def listen(self, channel: str, callback: Callable[[], None]) -> Callable[[], Awaitable[None]]:
        """Call ``callback`` (no arguments) on every ``notify(channel)``; returns an async ``stop()``.

        Listening is active when this returns. PostgreSQL: a LISTEN connection that hears every
        process (and reconnects, calling ``callback`` once, if it drops); SQLite: this process only.
        """
        ...


# --------------------------------------------------------------------------------------------
# The messaging platform
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SendOutcome:
    """What the platform said to one send request.

    ``accepted``: it has the message (``wamid``). ``failed``: a definite answer with an error code;
    the message was not accepted. ``unknown``: no definite answer (timeout, reset after the request
    went out, garbled response) so it may have been accepted.
    """

    status: Literal["accepted", "failed", "unknown"]
    wamid: str | None = None
    code: int | None = None
    title: str = ""
    details: str = ""
    http_status: int | None = None
    message_status: str | None = None  # accepted | held_for_quality_assessment | paused
    retry_after: float | None = None
    raw: dict[str, Any] = field(default_factory=dict)


class ProviderError(RuntimeError):
    """A management (Graph) call failed; ``code`` is the platform's error code when it gave one."""

    def __init__(self, message: str, code: int | None = None, http_status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = http_status


@dataclass(frozen=True, slots=True)
class SenderInfo:
    """What a provider may need to know about a sender (the sandbox emulates its limits)."""

    phone_number_id: str
    display_phone_number: str
    portfolio_id: str | None
    policy: str
    tier: str
    quality: str
    waba_id: str = "sandbox-waba"


class Provider(Protocol):
    """The messaging platform: the real Cloud API or the in-process sandbox.

    A provider may declare ``answers_inline = True``: ``send`` never waits on I/O and what it does
    lives and dies with this process (the sandbox). The dispatcher then sends an admitted batch at
    once and writes admission and outcome in one transaction: no ``sending`` row write, because no
    one outside the process can have seen a send that was not recorded.
    """

    name: str

    async def send(self, phone_number_id: str, body: dict[str, Any]) -> SendOutcome: ...
    async def relay(self, method: str, path: str, payload: bytes = b"",
                    content_type: str = "", query: str = "") -> tuple[int, dict[str, Any]]:
        """A Graph request that is no message to anyone, passed on as it is: a read receipt or typing
        indicator (``POST {number}/messages``), a media upload (``POST {number}/media``), a media
        object (``GET`` or ``DELETE {media id}``), the account's nodes (``GET {number}``, its
        ``whatsapp_business_profile``, a WABA's ``message_templates``...). Not governed; the
        platform's status and answer."""
        ...

    async def download(self, url: str) -> tuple[int, bytes, str]:
        """A media file at the ``url`` the platform gave for it (it wants the token too): status,
        bytes, content type."""
        ...

    async def get_phone_number(self, phone_number_id: str, fields: Iterable[str]) -> dict[str, Any]: ...
    async def register_sender(self, info: SenderInfo) -> None: ...
    def poll_events(self, now: float) -> list[dict[str, Any]]:
        """Webhook bodies the provider itself produced up to ``now`` (the sandbox); [] otherwise."""
        ...

    def next_event_at(self) -> float | None: ...
    async def aclose(self) -> None: ...


class WebhookSink(Protocol):
    """Where forwarded webhooks go: a tenant's own endpoint, over HTTP (``adapters.outbound``)."""

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> str | None:
        """None when the endpoint took the body (a 2xx); else why not, in one line."""
        ...

    async def close(self) -> None: ...
