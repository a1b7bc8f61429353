"""Request and response bodies of the HTTP API (pydantic v2). Unknown fields are refused (422)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    WithJsonSchema,
)

from tiergate.core.shapes import TEMPLATE_LANGUAGE, TEMPLATE_NAME, is_language_code, is_template_name


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def parse_timestamp(value: Any) -> Any:
    """Epoch seconds, or an ISO 8601 date-time with its UTC offset: what people paste and what
    programs send. A date-time without an offset is refused (whose midnight would it be?)."""
    if isinstance(value, bool):  # JSON true/false would otherwise pass as 1.0/0.0
        raise ValueError("a time is epoch seconds or an ISO 8601 date-time, not true or false")
    if not isinstance(value, str):
        return value
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{value!r} is neither epoch seconds nor an ISO 8601 date-time "
                         "(e.g. 2026-12-01T09:00:00Z)") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset: add Z or +hh:mm (e.g. 2026-12-01T09:00:00-03:00)")
    return parsed.timestamp()


LATEST_TIME = 32_503_680_000.0  # 3000-01-01T00:00:00Z: later is a mistake (and beyond what calendars compute)


def checked_time(value: float) -> float:
    """A time tiergate can keep and compute with: finite, from 1970 to the year 3000."""
    if not math.isfinite(value):
        raise ValueError("a time must be a finite number of seconds")
    if not 0 <= value < LATEST_TIME:
        raise ValueError("a time must be between 1970-01-01 and 3000-01-01 (epoch seconds 0 to 32503680000)")
    return value


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


# A time in a request: epoch seconds (a number) or an ISO 8601 string with an offset; always
# answered as epoch seconds.
Timestamp = Annotated[
    float, BeforeValidator(parse_timestamp), AfterValidator(checked_time),
    WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string", "format": "date-time"}],
                    "description": "epoch seconds, or an ISO 8601 date-time with its offset"}),
]
MessageCategory = Annotated[Literal["MARKETING", "UTILITY", "AUTHENTICATION", "SERVICE"], BeforeValidator(_upper)]
TemplateCategory = Annotated[Literal["MARKETING", "UTILITY", "AUTHENTICATION"], BeforeValidator(_upper)]


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
    tier: StrictStr | StrictInt = "TIER_250"  # strict: JSON true is not the tier 1
    quality: str = "UNKNOWN"
    policy: Literal["classic", "portfolio"] = "classic"
    throughput_mps: int = Field(default=80, ge=1, le=1000)
    timezone: str = Field(default="UTC", max_length=64)
    reserve_fraction: float = Field(default=0.0, ge=0.0, lt=1.0)
    trust_model: bool = False


class SenderPatch(Strict):
    """Operator changes: the tier and quality set here are authoritative, like the platform's."""

    tier: StrictStr | StrictInt | None = None
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


def template_name(value: str) -> str:
    """A template's name as the platform spells them; anything else would only fail at the platform."""
    if not is_template_name(value):
        raise ValueError(f"{value[:80]!r} is not a template name: the platform's are lowercase letters, digits "
                         "and underscores, e.g. launch_promo")
    return value


def template_language(value: str) -> str:
    if not is_language_code(value):
        raise ValueError(f"{value[:80]!r} is not a language code: e.g. en_US, pt_BR, es")
    return value


TemplateName = Annotated[str, AfterValidator(template_name),
                         WithJsonSchema({"type": "string", "pattern": TEMPLATE_NAME, "maxLength": 512})]
TemplateLanguage = Annotated[str, AfterValidator(template_language),
                             WithJsonSchema({"type": "string", "pattern": TEMPLATE_LANGUAGE})]


def language_object(value: dict[str, Any]) -> dict[str, Any]:
    """Meta's object form of a template's language, ``{"code": "en_US", "policy": "deterministic"}``,
    checked as strictly as the string form."""
    code = value.get("code")
    if not isinstance(code, str):
        raise ValueError('an object language needs a "code", e.g. {"code": "en_US"}')
    template_language(code)
    unknown = sorted(set(value) - {"code", "policy"})
    if unknown:
        raise ValueError(f"unknown language field(s): {', '.join(map(repr, unknown))} (only code and policy)")
    if "policy" in value and value["policy"] != "deterministic":
        raise ValueError('language policy: only "deterministic"')
    return value


LanguageObject = Annotated[dict[str, Any], AfterValidator(language_object)]


class TemplateIn(Strict):
    name: TemplateName
    language: TemplateLanguage | LanguageObject = "en_US"
    components: list[dict[str, Any]] = Field(default_factory=list, max_length=50)


METADATA_MAX_BYTES = 16_384


def small_metadata(value: dict[str, Any]) -> dict[str, Any]:
    """An app's notes on a message, kept with it and shown in every listing: at most 16 KiB of JSON
    (a listing of 1,000 messages stays a few megabytes at worst)."""
    try:
        size = len(orjson.dumps(value))
    except orjson.JSONEncodeError as exc:  # e.g. an integer beyond 64 bits: it would come back a float
        raise ValueError(f"{exc} (send such a number as a string)") from None
    if size > METADATA_MAX_BYTES:
        raise ValueError(f"{size:,} bytes of JSON, at most {METADATA_MAX_BYTES:,}")
    return value


class MessageIn(Strict):
    sender: str = Field(min_length=1, max_length=64)
    to: str = Field(min_length=3, max_length=32)
    template: TemplateIn | None = None
    text: str | None = Field(default=None, max_length=4096)
    category: MessageCategory | None = None
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    expires_at: Timestamp | None = None
    not_before: Timestamp | None = None
    metadata: Annotated[dict[str, Any], AfterValidator(small_metadata)] = Field(default_factory=dict)


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
    category: TemplateCategory = "MARKETING"
    start_at: Timestamp | None = None
    deadline: Timestamp | None = None
    quiet_hours: tuple[int, int] | None = None
    pacing: Literal["fastest", "spread"] = "fastest"
    spread_days: int | None = Field(default=None, ge=1, le=365)


class RowErrorOut(BaseModel):
    row: int
    error: str


MAX_BATCH = 1000  # messages per POST /v1/messages/batch


class MessageBatchIn(Strict):
    """Many messages in one request, each shaped as the body of ``POST /v1/messages``."""

    messages: list[MessageIn] = Field(min_length=1, max_length=MAX_BATCH)


class MessageBatchOut(BaseModel):
    accepted: int
    # in the order given; null where a message was refused (its reason is in row_errors)
    messages: list[MessageOut | None]
    row_errors: list[RowErrorOut] = Field(default_factory=list)  # rows from 1, as given


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
    # Set once message retention deleted its messages: counts are as they were then.
    archived_at: float | None = None
    row_errors: list[RowErrorOut] = Field(default_factory=list)


class OptIn(Strict):
    source: str = Field(default="api", max_length=100)
    opted_in_at: Timestamp | None = None  # when the recipient agreed (an import of older consent); now by default


class OptInRow(Strict):
    to: str = Field(min_length=3, max_length=32)
    opted_in_at: Timestamp | None = None
    source: str | None = Field(default=None, max_length=100)


class OptInImport(Strict):
    """Consent collected elsewhere, many numbers at once (the body's ``source`` unless a row has its own)."""

    recipients: list[str | OptInRow] = Field(min_length=1)
    source: str = Field(default="import", max_length=100)
    opted_in_at: Timestamp | None = None  # for rows without their own; now when absent


class OptInImportOut(BaseModel):
    imported: int
    row_errors: list[RowErrorOut] = Field(default_factory=list)


class TemplateCategoryIn(Strict):
    """A template's category as the platform has it, for one tiergate has not seen created or listed."""

    name: str = Field(min_length=1, max_length=512, pattern=TEMPLATE_NAME)
    language: str = Field(min_length=2, max_length=16, pattern=TEMPLATE_LANGUAGE)
    category: TemplateCategory


class TemplateCategoryOut(BaseModel):
    name: str
    language: str
    category: str
    updated_at: float


class OptOut(Strict):
    source: str = Field(default="api", max_length=100)
    opted_out_at: Timestamp | None = None  # when the recipient withdrew; now by default


class ServiceWindowOut(BaseModel):
    sender: str
    last_inbound_at: float
    open_until: float
    open: bool


class RecipientOut(BaseModel):
    to: str
    opted_in_at: float | None
    opted_out_at: float | None
    marketing_allowed: bool  # not opted out, and opted in where the tenant requires it
    service_windows: list[ServiceWindowOut]


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


class WorkerOut(BaseModel):
    id: str
    alive_until: float | None = Field(description="its heartbeat; null: it holds leases but stopped renewing")
    scopes: list[str]


class WorkersOut(BaseModel):
    share: int = Field(description="scopes one worker holds: every scope over the live workers, rounded up")
    workers: list[WorkerOut]
    free: list[str] = Field(description="scopes no live lease covers: the next worker to renew takes them")


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


class WebhookIn(Strict):
    url: str = Field(min_length=8, max_length=2000)  # http(s):// where the tenant's app takes webhooks
    # Signs each forward (X-Hub-Signature-256, as Meta signs): give your app's own (e.g. the Meta app
    # secret it already verifies with) or leave it out and tiergate makes one (shown once).
    secret: str | None = Field(default=None, min_length=16, max_length=200)


class WebhookTestOut(BaseModel):
    url: str
    delivered: bool
    error: str | None  # why the app did not take it (its HTTP status, a refused connection, a timeout)


class WebhookOut(BaseModel):
    url: str | None
    secret: str | None = None  # only in the answer that made it
    pending: int
    delivered: int
    failed: int
    canceled: int
    last_error: str
    last_delivered_at: float | None
