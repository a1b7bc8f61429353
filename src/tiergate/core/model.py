"""The records tiergate keeps, as plain data shared by every layer (no behaviour, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "CAMPAIGN_STATES",
    "TERMINAL_STATES",
    "ApiKey",
    "Campaign",
    "Message",
    "MessageState",
    "NewMessage",
    "Scope",
    "Sender",
    "Tenant",
]


class MessageState(StrEnum):
    QUEUED = "queued"  # waiting: for capacity, a retry, its start time, or a pause to end
    HELD = "held"  # its campaign is paused; back to queued on resume
    SENDING = "sending"  # admitted and handed (or about to be handed) to the provider
    SENT = "sent"  # the platform accepted it
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"  # final failure, with the platform's code and reason
    EXPIRED = "expired"  # could not go before its expires_at
    UNKNOWN = "unknown"  # may or may not have left (crash or timeout); a status webhook settles it
    REJECTED = "rejected"  # refused by policy (opt-out, free-form outside the window, ...)
    CANCELED = "canceled"  # its campaign was canceled before it went


TERMINAL_STATES = frozenset(
    {
        MessageState.SENT,
        MessageState.DELIVERED,
        MessageState.READ,
        MessageState.FAILED,
        MessageState.EXPIRED,
        MessageState.REJECTED,
        MessageState.CANCELED,
        MessageState.UNKNOWN,
    }
)
"""States the dispatcher never picks up again (``unknown`` waits for a webhook, not a retry)."""

# Forward progress of a delivered message; statuses never move a message backwards.
STATUS_RANK = {
    MessageState.SENDING: 1,
    MessageState.UNKNOWN: 1,
    MessageState.SENT: 2,
    MessageState.DELIVERED: 3,
    MessageState.READ: 4,
    MessageState.FAILED: 5,
}


@dataclass(slots=True)
class Tenant:
    id: str
    name: str
    require_opt_in: bool = False
    marketing_cap_24h: int = 2  # marketing templates per recipient per rolling 24 h; 0 = no cap
    stop_keywords: list[str] = field(default_factory=list)  # empty: the built-in list
    created_at: float = 0.0
    # Where the platform's webhooks about this tenant's senders are forwarded (its app), signed
    # with ``webhook_secret`` as Meta signs them; None: not forwarded.
    webhook_url: str | None = None
    webhook_secret: str = field(default="", repr=False)


@dataclass(slots=True)
class ApiKey:
    id: str
    tenant_id: str | None  # None with is_admin: manages every tenant
    key_hash: str
    prefix: str
    is_admin: bool = False
    created_at: float = 0.0
    revoked_at: float | None = None
    label: str = ""


@dataclass(slots=True)
class Scope:
    """What a messaging limit applies to: one sender (classic) or one portfolio."""

    id: str  # "sender:<phone_number_id>" or "portfolio:<portfolio_id>"
    tenant_id: str
    policy: str = "classic"
    tier: str = "TIER_250"  # authoritative: reported by the platform or set by an operator
    tier_source: str = "configured"
    tier_updated_at: float = 0.0
    predicted_tier: str | None = None  # what the policy model expects next
    quality: str = "UNKNOWN"
    reserve_fraction: float = 0.0
    trust_model: bool = False  # let policy predictions drive admission
    timezone: str = "UTC"
    upgrade_pending_at: float | None = None  # portfolio policy: when a crossed threshold takes effect
    red_days: int = 0  # classic: consecutive day boundaries in RED/FLAGGED
    last_evaluated_day: int | None = None


@dataclass(slots=True)
class Sender:
    id: str  # phone_number_id
    tenant_id: str
    display_phone_number: str
    scope_id: str
    portfolio_id: str | None = None
    quality: str = "UNKNOWN"
    status: str = "CONNECTED"
    throughput_mps: int = 80
    timezone: str = "UTC"
    # reason -> until (epoch seconds) or None (until an event lifts it)
    paused: dict[str, float | None] = field(default_factory=dict)  # all counted sending
    marketing_paused: dict[str, float | None] = field(default_factory=dict)
    created_at: float = 0.0


@dataclass(slots=True)
class NewMessage:
    """A message as submitted, before it has an id."""

    tenant_id: str
    sender_id: str
    to: str  # E.164 without '+', as the platform's wa_id
    kind: str  # "template" or "text" (or another free-form type)
    category: str
    body: dict[str, Any]  # the Cloud API request body, ready to send
    priority: int = 2
    idempotency_key: str | None = None
    expires_at: float | None = None
    not_before: float | None = None
    campaign_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    state: MessageState = MessageState.QUEUED
    reason: str = ""
    scope_id: str | None = None  # the sender's, when the caller has read it already (saves the store a read)


@dataclass(slots=True)
class Message:
    id: str
    tenant_id: str
    sender_id: str
    scope_id: str
    to: str
    kind: str
    category: str
    body: dict[str, Any]
    priority: int
    state: MessageState
    reason: str = ""
    attempts: int = 0
    next_attempt_at: float = 0.0
    idempotency_key: str | None = None
    expires_at: float | None = None
    campaign_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    wamid: str | None = None
    counted: bool = False  # took a window slot when admitted
    slot_previous: float | None = None  # recipient's expiry before this send (to undo the slot)
    slot_expiry: float | None = None
    error_code: int | None = None
    error_detail: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0
    sent_at: float | None = None


CAMPAIGN_STATES = ("running", "paused", "canceled")  # a campaign is done when its messages are, in any state


@dataclass(slots=True)
class Campaign:
    id: str
    tenant_id: str
    sender_id: str
    name: str
    template: dict[str, Any]
    category: str
    state: str = "running"  # one of CAMPAIGN_STATES
    pacing: str = "fastest"
    spread_days: int | None = None
    start_at: float = 0.0
    deadline: float | None = None
    quiet_hours: tuple[int, int] | None = None
    total: int = 0
    plan: list[dict[str, Any]] = field(default_factory=list)
    created_at: float = 0.0


@dataclass(slots=True)
class CampaignArchive:
    """A finished campaign's figures, kept when message retention deletes its messages: the campaign
    then reads the same as before (totals by state, sends day by day) with no message left."""

    campaign_id: str
    archived_at: float
    counts: dict[str, int]
    sent_by_day: list[int]  # day 1 first, in the campaign's days as its day-by-day view counts them
