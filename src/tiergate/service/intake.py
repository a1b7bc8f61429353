"""Intake: validate what apps submit, turn it into queued messages, refuse what can never go.

Every refusal is an ``IntakeError`` carrying a message a user can act on; the API maps it to a 4xx
and the CLI to one line. Nothing is written unless the whole request is valid (a campaign's bad
rows are reported per row and the good ones kept, as users of CSV imports expect).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers

from tiergate.clock import Clock
from tiergate.core.admission import CSW_SPAN, TEMPLATE_CATEGORIES, Category, priority_of
from tiergate.core.model import Campaign, Message, MessageState, NewMessage, Scope, Sender, Tenant
from tiergate.core.shapes import is_language_code, is_template_name
from tiergate.core.tiers import set_tier
from tiergate.core.window import DAY
from tiergate.ids import new_id
from tiergate.ports import ConflictError, NotFound, Provider, SenderInfo, Store
from tiergate.service.localtime import quiet_until, recipient_timezone
from tiergate.service.metrics import METRICS
from tiergate.service.phones import valid_e164_digits
from tiergate.service.wakeups import CHANGED, announce

__all__ = [
    "CampaignRequest",
    "IntakeError",
    "MessageRequest",
    "RowError",
    "SenderRequest",
    "build_body",
    "normalize_phone",
    "template_body",
    "template_payload",
]

POLICIES = ("classic", "portfolio")
QUALITIES = ("GREEN", "YELLOW", "RED", "NA", "UNKNOWN")


def _category(value: str) -> Category:
    try:
        return Category.parse(value)
    except ValueError:
        raise IntakeError(f"category: {value[:40]!r} is not one of MARKETING, UTILITY, AUTHENTICATION, SERVICE",
                          field="category") from None


class IntakeError(ValueError):
    """A request tiergate refuses, with the reason and (optionally) the field at fault."""

    def __init__(self, message: str, *, field: str | None = None, status: int = 422) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


def _same_or_refused(new: NewMessage, stored: Message) -> Message | IntakeError:
    """The stored message for ``new`` (a repeated idempotency key answers with the original), or,
    when the key already names a different message, a 409: answering with the original there would
    drop the new message without a word."""
    if new.idempotency_key is None or (
            stored.sender_id == new.sender_id and stored.to == new.to and stored.body == new.body):
        return stored
    return IntakeError(
        f"idempotency_key {new.idempotency_key[:80]!r} already names another message ({stored.id}: sender "
        f"{stored.sender_id}, to {stored.to}); a repeated key must repeat the same message, a new message needs "
        "a new key", field="idempotency_key", status=409)


Planner = Callable[[int], Awaitable[list[dict[str, Any]]]]


E164_MAX_DIGITS = 15


def normalize_phone(raw: object, field_name: str = "to", *, strict: bool = True) -> str:
    """An E.164 number as the platform's wa_id: digits only, no '+'. Raises IntakeError.

    ``strict``: the number must be valid in its numbering plan (recipients); otherwise merely
    possible (a business's own display number may be a +1 555 test number).
    """
    if not isinstance(raw, str | int) or isinstance(raw, bool):
        raise IntakeError(f"{field_name}: expected an E.164 phone number string", field=field_name)
    text = str(raw).strip()
    if not text:
        raise IntakeError(f"{field_name}: empty phone number", field=field_name)
    digits = valid_e164_digits(text) if strict else None  # canonical input (most of it): ~9x faster
    if digits is None:
        if any(ch.isalpha() for ch in text):  # phonenumbers would read a vanity word or "ext" into digits
            raise IntakeError(f"{field_name}: {text[:40]!r} is not an E.164 number: digits only (no letters, "
                              "no extension)", field=field_name)
        candidate = text if text.startswith("+") else "+" + text
        try:
            parsed = phonenumbers.parse(candidate, None)
        except phonenumbers.NumberParseException as exc:
            raise IntakeError(f"{field_name}: {text!r} is not an E.164 number ({exc})", field=field_name) from None
        if parsed.extension:
            raise IntakeError(f"{field_name}: {text[:40]!r} has an extension; a WhatsApp number has none",
                              field=field_name)
        ok = phonenumbers.is_valid_number(parsed) if strict else phonenumbers.is_possible_number(parsed)
        if not ok:
            raise IntakeError(f"{field_name}: {text!r} is not a valid phone number", field=field_name)
        digits = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)[1:]
    if len(digits) > E164_MAX_DIGITS:  # phonenumbers takes some longer German numbers; E.164 does not
        raise IntakeError(f"{field_name}: {text!r} has more than E.164's {E164_MAX_DIGITS} digits", field=field_name)
    return digits


def template_payload(template: dict[str, Any]) -> dict[str, Any]:
    """The ``template`` object of a Cloud API body, checked: name, language code, components."""
    name = template.get("name")
    language = template.get("language", "en_US")
    if isinstance(language, dict):
        language = language.get("code")
    if not isinstance(name, str) or not name.strip():
        raise IntakeError("template.name: required", field="template.name")
    if not is_template_name(name):  # the platform's own check (core.shapes), made here first
        raise IntakeError(f"template.name: {name[:80]!r} is not a template name: lowercase letters, digits and "
                          "underscores, e.g. launch_promo", field="template.name")
    if not isinstance(language, str) or not language.strip():
        raise IntakeError("template.language: required (e.g. 'en_US')", field="template.language")
    if not is_language_code(language):
        raise IntakeError(f"template.language: {language[:20]!r} is not a language code: e.g. en_US, pt_BR, es",
                          field="template.language")
    components = template.get("components") or []
    if not isinstance(components, list):
        raise IntakeError("template.components: expected a list", field="template.components")
    tpl: dict[str, Any] = {"name": name, "language": {"code": language}}
    if components:
        tpl["components"] = components
    return tpl


def template_body(to: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The Cloud API request body of a template (``payload`` from ``template_payload``)."""
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": "template",
            "template": payload}


def build_body(to: str, template: dict[str, Any] | None, text: str | None) -> tuple[str, dict[str, Any]]:
    """The Cloud API request body for a template or a text message: (kind, body)."""
    if template is not None:
        return "template", template_body(to, template_payload(template))
    base: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to}
    if text is not None:
        if not text.strip():
            raise IntakeError("text: empty message", field="text")
        if len(text) > 4096:
            raise IntakeError("text: longer than the platform's 4096 characters", field="text")
        return "text", {**base, "type": "text", "text": {"preview_url": False, "body": text}}
    raise IntakeError("give either 'template' or 'text'", field="template")


@dataclass(slots=True)
class SenderRequest:
    phone_number_id: str
    display_phone_number: str
    portfolio_id: str | None = None
    tier: str = "TIER_250"
    quality: str = "UNKNOWN"
    policy: str = "classic"
    throughput_mps: int = 80
    timezone: str = "UTC"
    reserve_fraction: float = 0.0
    trust_model: bool = False


def template_key(template: Any) -> tuple[str, str] | None:
    """(name, language code) of a message's template object, or None if it has no usable name."""
    if not isinstance(template, dict) or not isinstance(template.get("name"), str) or not template["name"]:
        return None
    language = template.get("language")
    code = language.get("code") if isinstance(language, dict) else language
    return template["name"], code if isinstance(code, str) else ""


@dataclass(slots=True)
class MessageRequest:
    sender: str
    to: str
    template: dict[str, Any] | None = None
    text: str | None = None
    category: str | None = None
    idempotency_key: str | None = None
    expires_at: float | None = None
    not_before: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] | None = None  # a ready Cloud API body (the drop-in endpoint)


@dataclass(slots=True)
class RowError:
    row: int
    error: str


@dataclass(slots=True)
class CampaignRequest:
    sender: str
    template: dict[str, Any]
    recipients: Sequence[dict[str, Any]]  # {"to": ..., optional "components", optional "row" (its number)}
    name: str = ""
    category: str = "MARKETING"
    start_at: float | None = None
    deadline: float | None = None
    quiet_hours: tuple[int, int] | None = None
    pacing: str = "fastest"
    spread_days: int | None = None
    expires_at: float | None = None


class Intake:
    """Validates and queues. Holds no state of its own beyond its collaborators."""

    def __init__(self, store: Store, clock: Clock, provider: Provider | None = None) -> None:
        self.store = store
        self.clock = clock
        self.provider = provider

    # -- senders -----------------------------------------------------------------------------
    async def register_sender(self, tenant: Tenant, req: SenderRequest) -> Sender:
        pnid = str(req.phone_number_id).strip()
        if not pnid or not pnid.replace("_", "").replace("-", "").isalnum() or len(pnid) > 64:
            raise IntakeError("phone_number_id: 1-64 letters, digits, '-' or '_'", field="phone_number_id")
        display = normalize_phone(req.display_phone_number, "display_phone_number", strict=False)
        if req.policy not in POLICIES:
            raise IntakeError(f"policy: one of {', '.join(POLICIES)}", field="policy")
        try:
            tier = set_tier(req.tier)
        except ValueError as exc:
            raise IntakeError(str(exc), field="tier") from None
        quality = req.quality.upper()
        if quality not in QUALITIES:
            raise IntakeError(f"quality: one of {', '.join(QUALITIES)}", field="quality")
        if not 1 <= req.throughput_mps <= 1000:
            raise IntakeError("throughput_mps: between 1 and 1000", field="throughput_mps")
        if not 0 <= req.reserve_fraction < 1:
            raise IntakeError("reserve_fraction: from 0 up to (not including) 1", field="reserve_fraction")
        try:
            ZoneInfo(req.timezone)
        except Exception:
            raise IntakeError(f"timezone: unknown time zone {req.timezone!r}", field="timezone") from None
        if req.policy == "portfolio":
            if not req.portfolio_id:
                raise IntakeError("portfolio_id: required with policy 'portfolio'", field="portfolio_id")
            scope_id = f"portfolio:{req.portfolio_id}"
        else:
            scope_id = f"sender:{pnid}"
        now = self.clock.now()
        try:
            scope = await self.store.get_scope(scope_id)
            if scope.tenant_id != tenant.id:
                raise IntakeError("portfolio_id: belongs to another tenant", field="portfolio_id", status=409)
        except NotFound:
            scope = await self.store.upsert_scope(
                Scope(id=scope_id, tenant_id=tenant.id, policy=req.policy, tier=tier.name,
                      tier_source="configured", tier_updated_at=now, quality=quality,
                      reserve_fraction=req.reserve_fraction, trust_model=req.trust_model,
                      timezone=req.timezone)
            )
        sender = Sender(
            id=pnid, tenant_id=tenant.id, display_phone_number=display, scope_id=scope.id,
            portfolio_id=req.portfolio_id, quality=quality, throughput_mps=req.throughput_mps,
            timezone=req.timezone, created_at=now,
        )
        try:
            sender = await self.store.create_sender(sender)
        except ConflictError:
            raise IntakeError(f"sender {pnid} is already registered", field="phone_number_id", status=409) from None
        await self.store.add_sender_event(pnid, now, "registered", f"tier {scope.tier}, policy {scope.policy}")
        if self.provider is not None:
            await self.provider.register_sender(
                SenderInfo(pnid, display, req.portfolio_id, scope.policy, scope.tier, quality)
            )
        await announce(self.store, CHANGED)  # dispatchers lease the new scope now, not at their next refresh
        return sender

    async def sender_of(self, tenant: Tenant, sender_id: str) -> Sender:
        try:
            sender = await self.store.get_sender(sender_id)
        except NotFound:
            raise IntakeError(f"unknown sender {sender_id!r}", field="sender", status=404) from None
        if sender.tenant_id != tenant.id:
            raise IntakeError(f"unknown sender {sender_id!r}", field="sender", status=404)
        return sender

    # -- messages ----------------------------------------------------------------------------
    def _new_message(self, tenant: Tenant, sender: Sender, req: MessageRequest, now: float,
                     csw_open: bool, to: str, learned: Mapping[tuple[str, str], str]) -> NewMessage:
        """``to``: ``req.to`` normalized (the caller needed it first, to look up the service window).
        ``learned``: the tenant's template categories as the platform has them, for a template sent
        without a category (else it is taken for marketing: the safe guess for the limits)."""
        if req.body is not None:
            body = dict(req.body)
            body["to"] = to
            kind = str(body.get("type", "text"))
        else:
            kind, body = build_body(to, req.template, req.text)
        if req.category is not None:
            category = _category(req.category)
            if kind == "template" and category is Category.SERVICE:
                raise IntakeError("category: SERVICE is for free-form replies in the service window; a template is "
                                  "MARKETING, UTILITY or AUTHENTICATION", field="category")
        elif kind == "template":
            known = learned.get(template_key(body.get("template")) or ("", ""))
            category = Category.parse(known) if known in TEMPLATE_CATEGORIES else Category.MARKETING
        else:
            category = Category.SERVICE
        if kind != "template" and not csw_open:
            raise IntakeError(
                "free-form message outside the customer service window: the platform would reject it "
                "(131047). Send a template, or wait until the recipient writes in.",
                field="text",
            )
        if kind != "template":
            category = Category.SERVICE
        if req.expires_at is not None and req.expires_at <= now:
            raise IntakeError("expires_at: already in the past", field="expires_at")
        if req.idempotency_key is not None and not 1 <= len(req.idempotency_key) <= 200:
            raise IntakeError("idempotency_key: 1-200 characters", field="idempotency_key")
        return NewMessage(
            tenant_id=tenant.id, sender_id=sender.id, to=to, kind=kind, category=category.value,
            body=body, priority=priority_of(category), idempotency_key=req.idempotency_key,
            expires_at=req.expires_at, not_before=req.not_before, metadata=dict(req.metadata),
            scope_id=sender.scope_id,
        )

    async def submit(self, tenant: Tenant, req: MessageRequest) -> Message:
        """Queue one message; a repeated idempotency key returns the original message."""
        [result] = await self.submit_many(tenant, [req])
        if isinstance(result, IntakeError):
            raise result
        return result

    async def submit_many(self, tenant: Tenant, reqs: Sequence[MessageRequest]) -> list[Message | IntakeError]:
        """Queue many messages in one transaction. Each is checked on its own: a refused one is its
        ``IntakeError``, in its place, and the rest go in together. The reads it takes (senders,
        service windows, opt-outs) are made once per sender or once in all, not once per message."""
        now = self.clock.now()
        senders: dict[str, Sender | IntakeError] = {}
        checked: list[tuple[Sender, str] | IntakeError] = []
        for req in reqs:
            if req.sender not in senders:
                try:
                    senders[req.sender] = await self.sender_of(tenant, req.sender)
                except IntakeError as exc:
                    senders[req.sender] = exc
            sender = senders[req.sender]
            if isinstance(sender, IntakeError):
                checked.append(sender)
                continue
            try:
                checked.append((sender, normalize_phone(req.to)))
            except IntakeError as exc:
                checked.append(exc)
        wanted: dict[str, set[str]] = {}
        for c in checked:
            if not isinstance(c, IntakeError):
                wanted.setdefault(c[0].id, set()).add(c[1])
        inbound = {sid: await self.store.last_inbound(sid, sorted(tos)) for sid, tos in wanted.items()}
        unnamed = {key[0] for req in reqs if req.category is None
                   and (key := template_key(req.template if req.body is None else req.body.get("template")))}
        learned = await self.store.template_categories(tenant.id, sorted(unnamed)) if unnamed else {}
        out: list[NewMessage | IntakeError] = []
        for req, c in zip(reqs, checked, strict=True):
            if isinstance(c, IntakeError):
                out.append(c)
                continue
            sender, to = c
            last = inbound[sender.id].get(to)
            try:
                csw_open = last is not None and last + CSW_SPAN > now
                out.append(self._new_message(tenant, sender, req, now, csw_open, to, learned))
            except ValueError as exc:  # an IntakeError, or a category no API schema checked (the drop-in)
                out.append(exc if isinstance(exc, IntakeError) else IntakeError(str(exc), field="category"))
        marketing = sorted({n.to for n in out if isinstance(n, NewMessage) and n.category == Category.MARKETING})
        if marketing:
            flags = await self.store.recipient_flags(tenant.id, marketing)
            out = [IntakeError(f"{n.to} opted out of marketing; tiergate will not send it marketing", field="to")
                   if isinstance(n, NewMessage) and n.category == Category.MARKETING
                   and (f := flags.get(n.to)) is not None and f.opted_out_at is not None else n
                   for n in out]
        news = [n for n in out if isinstance(n, NewMessage)]
        if not news:
            return [n for n in out if isinstance(n, IntakeError)]
        inserted = iter(await self.store.insert_messages(news, now))
        results: list[Message | IntakeError] = [n if isinstance(n, IntakeError) else _same_or_refused(n, next(inserted))
                                                for n in out]
        # not the originals of repeated keys (made at an earlier time)
        METRICS.enqueued.inc(sum(1 for r in results if isinstance(r, Message) and r.created_at == now))
        await announce(self.store)
        return results

    # -- campaigns ---------------------------------------------------------------------------
    async def create_campaign(self, tenant: Tenant, req: CampaignRequest,
                              plan: Planner | None = None) -> tuple[Campaign, list[RowError]]:
        """``plan`` makes the day-by-day plan from the number of valid recipients (the rows refused
        here are not in it)."""
        sender = await self.sender_of(tenant, req.sender)
        now = self.clock.now()
        category = _category(req.category)
        if category is Category.SERVICE:
            raise IntakeError("category: campaigns send templates: MARKETING, UTILITY or AUTHENTICATION",
                              field="category")
        if req.pacing not in ("fastest", "spread"):
            raise IntakeError("pacing: 'fastest' or 'spread'", field="pacing")
        if req.pacing == "fastest" and req.spread_days is not None:
            raise IntakeError("spread_days: only with pacing 'spread' (fastest sends as capacity allows)",
                              field="spread_days")
        if req.pacing == "spread" and (req.spread_days is None or not 1 <= req.spread_days <= 365):
            raise IntakeError("spread_days: 1-365 days, required with pacing 'spread'", field="spread_days")
        if req.quiet_hours is not None:
            qs, qe = req.quiet_hours
            if not (0 <= qs <= 23 and 0 <= qe <= 23):
                raise IntakeError("quiet_hours: two hours 0-23, e.g. [21, 8]", field="quiet_hours")
        start = max(now, req.start_at or now)
        if req.deadline is not None and req.deadline <= start:
            raise IntakeError("deadline: must be after start_at", field="deadline")
        shared = template_payload(req.template)  # checked once, before any row; shared by rows without parameters
        errors: list[RowError] = []
        seen: set[str] = set()
        valid: list[tuple[str, list[Any] | None]] = []
        for n, row in enumerate(req.recipients, start=1):
            i = row.get("row", n)  # a CSV row keeps its own number (rows refused before are not here)
            try:
                to = normalize_phone(row.get("to"))
            except IntakeError as exc:
                errors.append(RowError(i, str(exc)))
                continue
            if to in seen:
                errors.append(RowError(i, f"duplicate recipient {to}"))
                continue
            comps = row.get("components")
            if comps is not None and not isinstance(comps, list):
                errors.append(RowError(i, "components: expected a list"))
                continue
            seen.add(to)
            valid.append((to, comps))
        if not valid:
            raise IntakeError("no valid recipients" + (f": row {errors[0].row}: {errors[0].error}" if errors else ""),
                              field="recipients")
        days = await plan(len(valid)) if plan is not None else []
        campaign = await self.store.create_campaign(Campaign(
            id=new_id("cmp", now), tenant_id=tenant.id, sender_id=sender.id,
            name=req.name or req.template.get("name", "campaign"), template=req.template,
            category=category.value, pacing=req.pacing, spread_days=req.spread_days, start_at=start,
            deadline=req.deadline, quiet_hours=req.quiet_hours, total=len(valid), plan=days,
            created_at=now,
        ))
        per_day = math.ceil(len(valid) / req.spread_days) if req.pacing == "spread" and req.spread_days else None
        opted_out: set[str] = set()
        if category is Category.MARKETING:
            flags = await self.store.recipient_flags(tenant.id, [t for t, _ in valid])
            opted_out = {t for t, f in flags.items() if f.opted_out_at is not None}
        news: list[NewMessage] = []
        plain_metadata = {"campaign": campaign.id}  # one object for every row without quiet hours
        for i, (to, comps) in enumerate(valid):
            payload = shared if comps is None else template_payload({**req.template, "components": comps})
            kind, body = "template", template_body(to, payload)
            not_before = start + (i // per_day) * DAY if per_day else start
            metadata: dict[str, Any] = plain_metadata
            if req.quiet_hours is not None:
                metadata = {"campaign": campaign.id}
                tz = recipient_timezone(to)
                metadata["quiet"] = [req.quiet_hours[0], req.quiet_hours[1], tz]
                not_before = quiet_until(not_before, req.quiet_hours, tz) or not_before
            rejected = to in opted_out
            news.append(NewMessage(
                tenant_id=tenant.id, sender_id=sender.id, to=to, kind=kind, category=category.value,
                body=body, priority=priority_of(category), expires_at=req.expires_at or req.deadline,
                not_before=not_before, campaign_id=campaign.id, metadata=metadata,
                state=MessageState.REJECTED if rejected else MessageState.QUEUED,
                reason="recipient opted out of marketing" if rejected else "", scope_id=sender.scope_id,
            ))
        await self.store.enqueue_messages(news, now)
        METRICS.enqueued.inc(sum(1 for n in news if n.state is MessageState.QUEUED))
        await announce(self.store)  # one wake-up for the whole batch
        return campaign, errors
