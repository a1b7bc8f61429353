"""Request and response bodies of the HTTP API (pydantic v2). Unknown fields are refused (422)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    message: str
    field: str | None = None
    details: list[Any] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class SenderIn(Strict):
    phone_number_id: str = Field(min_length=1, max_length=64)
    display_phone_number: str = Field(min_length=3, max_length=32)
    portfolio_id: str | None = Field(default=None, min_length=1, max_length=64)
    tier: str | int = "TIER_250"
    quality: str = "UNKNOWN"
    policy: Literal["classic", "portfolio"] = "classic"
    throughput_mps: int = Field(default=80, ge=1, le=1000)
    timezone: str = Field(default="UTC", max_length=64)
    reserve_fraction: float = Field(default=0.0, ge=0.0, lt=1.0)
    trust_model: bool = False


class SenderPatch(Strict):
    """Operator changes: the tier and quality set here are authoritative, like the platform's."""

    tier: str | int | None = None
    quality: str | None = None
    throughput_mps: int | None = Field(default=None, ge=1, le=1000)
    reserve_fraction: float | None = Field(default=None, ge=0.0, lt=1.0)
    trust_model: bool | None = None
    verified: bool | None = None  # business verification completed (TIER_250 -> next step)
    resume: list[str] | None = None  # pause reasons to lift by hand


class Forecast(BaseModel):
    policy: str
    current_tier: str
    next_tier: str | None
    predicted_at: float | None = None
    more_recipients_needed: int | None = None
    days_needed: int | None = None
    unique_7d: int | None = None
    status: str = ""  # earned | reachable | verification | blocked | unreachable | top | unknown
    note: str = ""


class SenderOut(BaseModel):
    id: str
    display_phone_number: str
    portfolio_id: str | None
    scope_id: str
    policy: str
    tier: str
    tier_source: str
    trust_model: bool = False
    predicted_tier: str | None = None  # the model's earned tier, admitted by where trust_model is on
    limit: int | None
    used_24h: int
    remaining: int | None
    next_release_at: float | None
    quality: str
    status: str
    throughput_mps: int
    timezone: str
    reserve_fraction: float
    paused_reasons: dict[str, float | None]
    marketing_paused_reasons: dict[str, float | None]
    forecast: Forecast | None = None


class TemplateIn(Strict):
    name: str = Field(min_length=1, max_length=512)
    language: str | dict[str, Any] = "en_US"
    components: list[dict[str, Any]] = Field(default_factory=list, max_length=50)


class MessageIn(Strict):
    sender: str = Field(min_length=1, max_length=64)
    to: str = Field(min_length=3, max_length=32)
    template: TemplateIn | None = None
    text: str | None = Field(default=None, max_length=4096)
    category: Literal["MARKETING", "UTILITY", "AUTHENTICATION", "SERVICE"] | None = None
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    expires_at: float | None = None
    not_before: float | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class MessageOut(BaseModel):
    id: str
    state: str
    reason: str
    sender: str
    to: str
    kind: str
    category: str
    attempts: int
    wamid: str | None
    next_attempt_at: float | None
    expires_at: float | None
    error_code: int | None
    error_detail: str
    campaign_id: str | None
    idempotency_key: str | None
    metadata: dict[str, Any]
    created_at: float
    updated_at: float
    sent_at: float | None
    history: list[dict[str, Any]] | None = None


class RecipientIn(Strict):
    to: str = Field(min_length=3, max_length=32)
    components: list[dict[str, Any]] | None = None


class CampaignIn(Strict):
    sender: str = Field(min_length=1, max_length=64)
    template: TemplateIn
    recipients: list[str | RecipientIn] = Field(min_length=1)
    name: str = Field(default="", max_length=200)
    category: Literal["MARKETING", "UTILITY", "AUTHENTICATION"] = "MARKETING"
    start_at: float | None = None
    deadline: float | None = None
    quiet_hours: tuple[int, int] | None = None
    pacing: Literal["fastest", "spread"] = "fastest"
    spread_days: int | None = Field(default=None, ge=1, le=365)


class RowErrorOut(BaseModel):
    row: int
    error: str


class CampaignOut(BaseModel):
    id: str
    name: str
    sender: str
    state: str
    category: str
    pacing: str
    total: int
    counts: dict[str, int]
    done: int
    eta: float | None
    start_at: float
    deadline: float | None
    plan: list[dict[str, Any]]
    created_at: float
    row_errors: list[RowErrorOut] = Field(default_factory=list)


class OptIn(Strict):
    source: str = Field(default="api", max_length=100)


class TenantIn(Strict):
    name: str = Field(min_length=1, max_length=100)
    require_opt_in: bool = False
    marketing_cap_24h: int = Field(default=2, ge=0, le=100)


class TenantPatch(Strict):
    require_opt_in: bool | None = None
    marketing_cap_24h: int | None = Field(default=None, ge=0, le=100)
    stop_keywords: list[str] | None = Field(default=None, max_length=200)


class TenantOut(BaseModel):
    id: str
    name: str
    require_opt_in: bool
    marketing_cap_24h: int
    stop_keywords: list[str]


class KeyIn(Strict):
    tenant_id: str
    admin: bool = False
    label: str = Field(default="", max_length=100)


class KeyOut(BaseModel):
    id: str
    tenant_id: str | None
    prefix: str
    is_admin: bool
    label: str
    created_at: float
    revoked_at: float | None
    key: str | None = None  # shown once, at creation
