"""WhatsApp Business Platform webhook bodies turned into typed, frozen events (pure: no I/O).

The platform batches many entries and changes in one body, redelivers for days, renames fields over
time and documents some of them in two shapes. So parsing is lenient and total: an unknown field,
an unknown value or a value of the wrong type becomes an :class:`Unknown` event with a reason, never
an exception, and the rest of the batch still parses. Only :func:`load_body` (raw bytes) raises, with
:class:`WebhookError`, because a body that is not JSON cannot be stored as an event at all.

Every event carries the ``change_id`` of the change it came from: the sha256 of the change's
canonical JSON and its entry id, so a redelivered change (however it is re-serialised) has the
same id and the applier can apply each change once.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson

from tiergate.core.tiers import Tier, parse_tier

__all__ = [
    "BUSINESS_TIER_FIELDS",
    "PHONE_TIER_FIELDS",
    "RESTRICTED_BIZ_INITIATED_MESSAGING",
    "AccountUpdate",
    "Event",
    "InboundMessage",
    "PlatformError",
    "QualityUpdate",
    "Restriction",
    "StatusUpdate",
    "TemplateUpdate",
    "TierUpdate",
    "Unknown",
    "UserPreference",
    "WebhookError",
    "WebhookEvent",
    "change_id",
    "load_body",
    "parse_webhook",
    "parse_webhook_bytes",
]

RESTRICTED_BIZ_INITIATED_MESSAGING = "RESTRICTED_BIZ_INITIATED_MESSAGING"

# Value keys that carry a messaging limit, old and new names, and whether the limit is the
# business portfolio's (shared by all its numbers) or one phone number's.
PHONE_TIER_FIELDS = (
    "current_limit",
    "messaging_limit_tier",
    "max_daily_conversation_per_phone",
    "max_daily_conversations_per_phone",
)
BUSINESS_TIER_FIELDS = (
    "max_daily_conversations_per_business",
    "max_daily_conversation_per_business",
    "whatsapp_business_manager_messaging_limit",
)
# The portfolio's limits first, a number's own last: a change that carries both (a
# business_capability_update does) leaves a classic per-number scope at its own number's limit, and
# a portfolio scope ignores the per-number one (``service.webhooks``).
_TIER_FIELDS = tuple((name, True) for name in BUSINESS_TIER_FIELDS) + tuple((name, False) for name in PHONE_TIER_FIELDS)
_QUALITY_EVENTS = frozenset({"FLAGGED", "UNFLAGGED"})
_TEMPLATE_FIELDS = (
    "message_template_status_update",
    "message_template_quality_update",
    "template_category_update",
    "message_template_components_update",
)


class WebhookError(ValueError):
    """The raw body is not a webhook at all (invalid UTF-8, invalid JSON, or the wrong shape)."""


class _Malformed(Exception):
    """A known change holds a value of the wrong type; that item becomes :class:`Unknown`."""


# ---------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookEvent:
    """What every event shares: where it came from and what it concerns.

    ``phone_number_id`` / ``display_phone_number`` are the business number (tiergate's sender) when
    the change names one; ``waba_id`` is the WhatsApp Business Account (the entry id, or the
    ``waba_info.waba_id`` of an account update). ``item_index`` is the event's position among the
    events of its change, so ``event_id`` is unique within a body and stable across redeliveries.
    """

    kind: ClassVar[str] = "event"

    change_id: str
    field: str
    item_index: int = 0
    waba_id: str | None = None
    phone_number_id: str | None = None
    display_phone_number: str | None = None

    @property
    def event_id(self) -> str:
        return f"{self.change_id}:{self.item_index}"


@dataclass(frozen=True, slots=True)
class PlatformError:
    """One entry of a status's (or message's) ``errors``: the code drives the retry rules."""

    code: int | None
    title: str = ""
    details: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundMessage(WebhookEvent):
    """A user wrote to (or called: ``type`` "call") a business number: opens the customer service window.

    ``wa_id`` is the user (the message's ``from``; its ``from_user_id`` when ``from`` is absent).
    ``text`` is the text body, or the title/text of a button, list or flow reply, so a STOP button
    is detected like a typed STOP. ``timestamp`` falls back to the entry's ``time`` and is ``None``
    only when the platform sent neither.
    """

    kind: ClassVar[str] = "inbound_message"

    wa_id: str
    message_id: str
    timestamp: float | None
    type: str
    text: str | None = None
    reply_id: str | None = None  # button payload / interactive reply id
    reply_to: str | None = None  # wamid of the business message this replies to (context.id)
    contact_name: str | None = None
    user_id: str | None = None  # the platform's business-scoped user id, when given
    from_ad: bool = False  # carries a referral (click-to-WhatsApp ad): a free entry point
    errors: tuple[PlatformError, ...] = ()

    @property
    def sender_phone_number_id(self) -> str | None:
        """The business number the user wrote to (tiergate's sender)."""
        return self.phone_number_id

    @property
    def opens_window(self) -> bool:
        """False for platform notices (``system``: number or identity changed) the user did not send."""
        return self.type != "system"


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusUpdate(WebhookEvent):
    """The platform's news about a message tiergate sent (``wamid``): sent, delivered, read, failed..."""

    kind: ClassVar[str] = "status"

    wamid: str
    status: str  # lower case: sent | delivered | read | failed | played | deleted | ...
    timestamp: float | None
    recipient_id: str | None = None
    errors: tuple[PlatformError, ...] = ()
    conversation_id: str | None = None
    conversation_category: str | None = None  # conversation.origin.type
    conversation_expires_at: float | None = None
    pricing_category: str | None = None
    pricing_model: str | None = None
    billable: bool | None = None
    callback_data: str | None = None  # biz_opaque_callback_data, echoed from the send
    recipient_type: str | None = None  # "group" for group messages

    @property
    def category(self) -> str | None:
        return self.pricing_category or self.conversation_category

    @property
    def error_code(self) -> int | None:
        return self.errors[0].code if self.errors else None


@dataclass(frozen=True, slots=True, kw_only=True)
class TierUpdate(WebhookEvent):
    """A messaging limit reported by the platform.

    ``per_business`` says whether ``tier`` is the portfolio's (shared by all numbers of the business)
    or one phone number's; ``source_field`` is the key it came from and ``raw_tier`` the value as sent
    (``tier`` is ``parse_tier(raw_tier)``, ``known=False`` for a string never seen before).
    """

    kind: ClassVar[str] = "tier"

    source_field: str
    tier: Tier
    raw_tier: str | int | float
    per_business: bool
    old_tier: Tier | None = None
    event: str | None = None  # UPGRADE | DOWNGRADE | ONBOARDING | THROUGHPUT_UPGRADE | ...


@dataclass(frozen=True, slots=True, kw_only=True)
class QualityUpdate(WebhookEvent):
    """A number's standing changed: a quality rating, FLAGGED/UNFLAGGED, or another event without a limit."""

    kind: ClassVar[str] = "quality"

    event: str | None
    quality: str | None = None  # GREEN | YELLOW | RED | NA | UNKNOWN, upper case

    @property
    def flagged(self) -> bool | None:
        """True on FLAGGED, False on UNFLAGGED, None when the event says neither."""
        if self.event == "FLAGGED":
            return True
        return False if self.event == "UNFLAGGED" else None


@dataclass(frozen=True, slots=True)
class Restriction:
    restriction_type: str
    expiration: float | None  # epoch seconds; None when the platform gave no end


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountUpdate(WebhookEvent):
    """An ``account_update``: restrictions with their expiry, bans, violations and the rest (kept raw)."""

    kind: ClassVar[str] = "account"

    event: str | None
    restrictions: tuple[Restriction, ...] = ()
    ban_state: str | None = None
    ban_date: str | None = None  # as sent ("April 17, 2025"): not machine-readable
    violation_type: str | None = None
    raw: Mapping[str, Any] | None = None

    def restricted_until(self, restriction_type: str = RESTRICTED_BIZ_INITIATED_MESSAGING) -> float | None:
        """The expiry of that restriction (``inf`` when it has none); ``None`` when it is absent."""
        ends = [r.expiration for r in self.restrictions if r.restriction_type == restriction_type]
        if not ends:
            return None
        return max(math.inf if end is None else end for end in ends)


@dataclass(frozen=True, slots=True, kw_only=True)
class UserPreference(WebhookEvent):
    """A user's marketing preference (``value`` lower case: stop | resume | signup | ...)."""

    kind: ClassVar[str] = "user_preference"

    wa_id: str
    value: str
    category: str | None = None  # marketing_messages
    detail: str | None = None
    timestamp: float | None = None

    @property
    def stops_marketing(self) -> bool:
        return self.value == "stop"

    @property
    def resumes_marketing(self) -> bool:
        return self.value in ("resume", "signup")


@dataclass(frozen=True, slots=True, kw_only=True)
class TemplateUpdate(WebhookEvent):
    """A template status, quality, category or components change (kept for visibility)."""

    kind: ClassVar[str] = "template"

    event: str | None  # APPROVED | REJECTED | the new quality score | the new category | None
    template_id: str | None = None
    template_name: str | None = None
    language: str | None = None
    reason: str | None = None
    raw: Mapping[str, Any] | None = None
    timestamp: float | None = None  # the entry's time


@dataclass(frozen=True, slots=True, kw_only=True)
class Unknown(WebhookEvent):
    """Anything else, kept as sent: an unknown field (``reason`` empty) or a malformed item (``reason`` says why)."""

    kind: ClassVar[str] = "unknown"

    raw: Any
    reason: str = ""


Event = (
    InboundMessage
    | StatusUpdate
    | TierUpdate
    | QualityUpdate
    | AccountUpdate
    | UserPreference
    | TemplateUpdate
    | Unknown
)


# ---------------------------------------------------------------------------------------------
# Canonical ids
# ---------------------------------------------------------------------------------------------
def _canonical(value: object) -> bytes:
    """Key-sorted compact JSON; a fallback covers what orjson refuses (huge ints, deep nesting, odd keys)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        return _canonical_slow(value).encode("utf-8", "surrogatepass")


def _canonical_slow(value: object) -> str:
    """Iterative (so no recursion limit) sorted serialisation of any tree of dicts, lists and scalars."""
    out: list[str] = []
    stack: list[object] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Text):
            out.append(item.text)
        elif isinstance(item, Mapping):
            pairs = sorted(((str(k), v) for k, v in item.items()), key=lambda kv: kv[0])
            out.append("{")
            stack.append(_Text("}"))
            for pos in range(len(pairs) - 1, -1, -1):
                key, val = pairs[pos]
                stack.append(val)
                stack.append(_Text(("," if pos else "") + json.dumps(key) + ":"))
        elif isinstance(item, list | tuple):
            out.append("[")
            stack.append(_Text("]"))
            for pos in range(len(item) - 1, -1, -1):
                stack.append(item[pos])
                if pos:
                    stack.append(_Text(","))
        elif item is None or isinstance(item, bool | int | float | str):
            out.append(json.dumps(item))
        else:
            out.append(json.dumps(repr(item)))
    return "".join(out)


@dataclass(frozen=True, slots=True)
class _Text:
    text: str


def change_id(entry_id: object, change: object) -> str:
    """The stable id of one change: sha256 over the entry id and the change's canonical JSON."""
    digest = hashlib.sha256(_canonical(entry_id))
    digest.update(b"\n")
    digest.update(_canonical(change))
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Field readers: each returns a typed value or raises _Malformed naming the key
# ---------------------------------------------------------------------------------------------
def _type_name(value: object) -> str:
    return type(value).__name__


def _str(obj: Mapping[str, Any], key: str) -> str | None:
    """A string (ids may come as integers: accepted and turned into strings); None when absent."""
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise _Malformed(f"{key}: expected a string, got {_type_name(value)}")


def _upper(obj: Mapping[str, Any], key: str) -> str | None:
    value = _str(obj, key)
    return value.upper() if value else None


def _map(obj: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    value = obj.get(key)
    if value is None or type(value) is dict or isinstance(value, Mapping):  # dict first: the ABC check is slow
        return value
    raise _Malformed(f"{key}: expected an object, got {_type_name(value)}")


def _list(obj: Mapping[str, Any], key: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if isinstance(value, list):
        return value
    raise _Malformed(f"{key}: expected a list, got {_type_name(value)}")


def _as_map(value: object, what: str) -> Mapping[str, Any]:
    if type(value) is dict or isinstance(value, Mapping):
        return value
    raise _Malformed(f"{what}: expected an object, got {_type_name(value)}")


def _epoch(value: object, key: str) -> float | None:
    """Epoch seconds from an int, a float, a numeric string, or an ISO 8601 string; None when absent."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise _Malformed(f"{key}: expected epoch seconds, got bool")
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            result = float(text)
        except ValueError:
            result = _iso_epoch(text, key)
    else:
        raise _Malformed(f"{key}: expected epoch seconds, got {_type_name(value)}")
    if not math.isfinite(result):
        raise _Malformed(f"{key}: not a finite time: {value!r}")
    return result


def _iso_epoch(text: str, key: str) -> float:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _Malformed(f"{key}: not a time: {text[:40]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _bool(obj: Mapping[str, Any], key: str) -> bool | None:
    value = obj.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise _Malformed(f"{key}: expected true or false, got {_type_name(value)}")


def _code(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise _Malformed(f"code: expected an integer, got {_type_name(value)}")


def _errors(obj: Mapping[str, Any]) -> tuple[PlatformError, ...]:
    found = []
    for item in _list(obj, "errors"):
        error = _as_map(item, "errors[]")
        data = _map(error, "error_data") or {}
        found.append(
            PlatformError(
                code=_code(error.get("code")),
                title=_str(error, "title") or _str(error, "message") or "",
                details=_str(data, "details") or _str(error, "details") or "",
            )
        )
    return tuple(found)


def _tier_value(value: object, key: str) -> str | int | float:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return value
    raise _Malformed(f"{key}: expected a tier string or integer, got {_type_name(value)}")


# ---------------------------------------------------------------------------------------------
# Change parsers: (base keyword arguments, change value, entry time) -> events
# ---------------------------------------------------------------------------------------------
_Base = dict[str, Any]
_ChangeParser = Callable[[_Base, Any, float | None], list[Event]]


def _each(
    base: _Base,
    items: Iterable[Any],
    build: Callable[[_Base, Any], Event],
    raw_of: Callable[[Any], Any] = lambda item: item,
) -> list[Event]:
    """Build one event per item, numbering them; a malformed item becomes Unknown, the others survive."""
    events: list[Event] = []
    index = base["item_index"]
    for item in items:
        item_base = {**base, "item_index": index}
        try:
            events.append(build(item_base, item))
        except _Malformed as exc:
            events.append(Unknown(**item_base, raw=raw_of(item), reason=str(exc)))
        index += 1
    return events


def _contact_names(value: Mapping[str, Any]) -> dict[str, str]:
    """wa_id -> profile name; contacts are a courtesy, so a malformed one is skipped, not fatal."""
    names: dict[str, str] = {}
    contacts = value.get("contacts")
    if not isinstance(contacts, list):
        return names
    for contact in contacts:
        if not isinstance(contact, Mapping):
            continue
        profile = contact.get("profile")
        name = profile.get("name") if isinstance(profile, Mapping) else None
        wa_id = contact.get("wa_id")
        if isinstance(name, str) and isinstance(wa_id, str):
            names[wa_id] = name
    return names


def _reply_text(kind: str, message: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The words the user sent (text, button or reply title) and the reply's id or payload."""
    if kind == "text":
        text = _map(message, "text")
        return (_str(text, "body") if text else None), None
    if kind == "button":
        button = _map(message, "button")
        return (_str(button, "text"), _str(button, "payload")) if button else (None, None)
    if kind == "interactive":
        interactive = _map(message, "interactive")
        if not interactive:
            return None, None
        sub_type = _str(interactive, "type")
        reply = _map(interactive, sub_type) if sub_type else None
        if not reply:
            return None, None
        return _str(reply, "title") or _str(reply, "body"), _str(reply, "id")
    return None, None


def _with_metadata(base: _Base, value: Mapping[str, Any]) -> _Base:
    """The base plus the business number named in the value's ``metadata``."""
    metadata = _map(value, "metadata") or {}
    return {
        **base,
        "phone_number_id": _str(metadata, "phone_number_id"),
        "display_phone_number": _str(metadata, "display_phone_number"),
    }


def _messaging_change(base: _Base, value: Any, entry_time: float | None) -> list[Event]:
    """A ``messages`` (or ``user_preferences``) change: inbound messages, statuses, preferences."""
    value = _as_map(value, "value")
    base = _with_metadata(base, value)
    messages, statuses, preferences = (
        _list(value, "messages"),
        _list(value, "statuses"),
        _list(value, "user_preferences"),
    )
    if not (messages or statuses or preferences):
        return [Unknown(**base, raw=value, reason="no messages, statuses or user_preferences")]
    names = _contact_names(value) if messages else {}
    only_name = next(iter(names.values())) if len(names) == 1 else None

    def inbound(item_base: _Base, item: Any) -> Event:
        message = _as_map(item, "messages[]")
        wa_id = _str(message, "from") or _str(message, "from_user_id")
        message_id = _str(message, "id")
        if not wa_id or not message_id:
            raise _Malformed("message without 'from' or 'id'")
        kind = _str(message, "type") or "unknown"
        text, reply_id = _reply_text(kind, message)
        context = _map(message, "context")
        timestamp = _epoch(message.get("timestamp"), "timestamp")
        return InboundMessage(
            **item_base,
            wa_id=wa_id,
            message_id=message_id,
            timestamp=entry_time if timestamp is None else timestamp,
            type=kind,
            text=text,
            reply_id=reply_id,
            reply_to=_str(context, "id") if context else None,
            contact_name=names.get(wa_id, only_name),
            user_id=_str(message, "from_user_id"),
            from_ad="referral" in message,
            errors=_errors(message),
        )

    def status(item_base: _Base, item: Any) -> Event:
        update = _as_map(item, "statuses[]")
        wamid, state = _str(update, "id"), _str(update, "status")
        if not wamid or not state:
            raise _Malformed("status without 'id' or 'status'")
        conversation = _map(update, "conversation") or {}
        origin = _map(conversation, "origin") or {}
        pricing = _map(update, "pricing") or {}
        return StatusUpdate(
            **item_base,
            wamid=wamid,
            status=state.lower(),
            timestamp=_epoch(update.get("timestamp"), "timestamp"),
            recipient_id=_str(update, "recipient_id"),
            errors=_errors(update),
            conversation_id=_str(conversation, "id"),
            conversation_category=_str(origin, "type"),
            conversation_expires_at=_epoch(conversation.get("expiration_timestamp"), "expiration_timestamp"),
            pricing_category=_str(pricing, "category"),
            pricing_model=_str(pricing, "pricing_model"),
            billable=_bool(pricing, "billable"),
            callback_data=_str(update, "biz_opaque_callback_data"),
            recipient_type=_str(update, "recipient_type"),
        )

    def preference(item_base: _Base, item: Any) -> Event:
        pref = _as_map(item, "user_preferences[]")
        wa_id, choice = _str(pref, "wa_id") or _str(pref, "user_id"), _str(pref, "value")
        if not wa_id or not choice:
            raise _Malformed("user preference without 'wa_id' or 'value'")
        return UserPreference(
            **item_base,
            wa_id=wa_id,
            value=choice.lower(),
            category=_str(pref, "category"),
            detail=_str(pref, "detail"),
            timestamp=_epoch(pref.get("timestamp"), "timestamp"),
        )

    events = _each(base, messages, inbound)
    events += _each({**base, "item_index": len(events)}, statuses, status)
    events += _each({**base, "item_index": len(events)}, preferences, preference)
    return events


def _calls_change(base: _Base, value: Any, entry_time: float | None) -> list[Event]:
    """``calls``: a call the user places opens the service window like a message; other call events are Unknown."""
    value = _as_map(value, "value")
    base = _with_metadata(base, value)
    names = _contact_names(value)

    def call(item_base: _Base, item: Any) -> Event:
        placed = _as_map(item, "calls[]")
        if _upper(placed, "direction") != "USER_INITIATED" or _str(placed, "event") != "connect":
            return Unknown(**item_base, raw=item)
        wa_id, call_id = _str(placed, "from"), _str(placed, "id")
        if not wa_id or not call_id:
            raise _Malformed("call without 'from' or 'id'")
        timestamp = _epoch(placed.get("timestamp"), "timestamp")
        return InboundMessage(
            **item_base,
            wa_id=wa_id,
            message_id=call_id,
            timestamp=entry_time if timestamp is None else timestamp,
            type="call",
            contact_name=names.get(wa_id),
        )

    calls = _list(value, "calls")
    return _each(base, calls, call) if calls else [Unknown(**base, raw=value)]


def _tier_updates(base: _Base, value: Mapping[str, Any], event: str | None, old: Tier | None) -> list[Event]:
    """One TierUpdate per limit key present (a change may carry a phone's and the portfolio's)."""
    present = [(key, per_business) for key, per_business in _TIER_FIELDS if value.get(key) is not None]

    def update(item_base: _Base, item: tuple[str, bool]) -> Event:
        key, per_business = item
        raw = _tier_value(value[key], key)
        return TierUpdate(
            **item_base,
            source_field=key,
            tier=parse_tier(raw),
            raw_tier=raw,
            per_business=per_business,
            old_tier=old,
            event=event,
        )

    # a malformed limit is kept as its key and value, and the other limits still apply
    return _each(base, present, update, raw_of=lambda item: {item[0]: value[item[0]]})


def _quality(value: Mapping[str, Any]) -> str | None:
    score = value.get("quality_score")
    if isinstance(score, Mapping):
        return _upper(score, "score")
    return _upper(value, "quality_rating") or _upper(value, "quality_score")


def _phone_quality_change(base: _Base, value: Any, entry_time: float | None) -> list[Event]:
    """``phone_number_quality_update``: limits (old and new names) and FLAGGED/UNFLAGGED."""
    value = _as_map(value, "value")
    base = {
        **base,
        "phone_number_id": _str(value, "phone_number_id"),
        "display_phone_number": _str(value, "display_phone_number"),
    }
    event = _upper(value, "event")
    old_raw = value.get("old_limit")
    old = parse_tier(_tier_value(old_raw, "old_limit")) if old_raw is not None else None
    events = _tier_updates(base, value, event, old)
    quality = _quality(value)
    if quality or event in _QUALITY_EVENTS or not events:
        events.append(QualityUpdate(**{**base, "item_index": len(events)}, event=event, quality=quality))
    return events


def _capability_change(base: _Base, value: Any, entry_time: float | None) -> list[Event]:
    """``business_capability_update``: the business's limits (integer, -1 unlimited, or TIER_* string)."""
    value = _as_map(value, "value")
    events = _tier_updates(base, value, _upper(value, "event"), None)
    return events or [Unknown(**base, raw=value, reason="no messaging limit in change")]


def _account_change(base: _Base, value: Any, entry_time: float | None) -> list[Event]:
    """``account_update``: restrictions, bans, violations; any limit keys become TierUpdates too."""
    value = _as_map(value, "value")
    waba_info = _map(value, "waba_info") or {}
    base = {
        **base,
        "waba_id": _str(waba_info, "waba_id") or base["waba_id"],
        "phone_number_id": _str(value, "phone_number_id"),
        "display_phone_number": _str(value, "phone_number") or _str(value, "display_phone_number"),
    }
    restrictions = []
    for item in _list(value, "restriction_info"):
        info = _as_map(item, "restriction_info[]")
        restrictions.append(
            Restriction(
                restriction_type=_str(info, "restriction_type") or "UNKNOWN",
                expiration=_epoch(info.get("expiration"), "expiration"),
            )
        )
    ban = _map(value, "ban_info") or {}
    violation = _map(value, "violation_info") or {}
    event = _upper(value, "event")
    account = AccountUpdate(
        **base,
        event=event,
        restrictions=tuple(restrictions),
        ban_state=_str(ban, "waba_ban_state"),
        ban_date=_str(ban, "waba_ban_date"),
        violation_type=_str(violation, "violation_type"),
        raw=value,
    )
    return [account, *_tier_updates({**base, "item_index": 1}, value, event, None)]


def _template_change(base: _Base, value: Any, entry_time: float | None) -> list[Event]:
    value = _as_map(value, "value")
    return [
        TemplateUpdate(
            **base,
            event=_upper(value, "event") or _upper(value, "new_quality_score") or _upper(value, "new_category"),
            template_id=_str(value, "message_template_id"),
            template_name=_str(value, "message_template_name"),
            language=_str(value, "message_template_language"),
            reason=_str(value, "reason"),
            raw=value,
            timestamp=entry_time,
        )
    ]


_PARSERS: dict[str, _ChangeParser] = {
    "messages": _messaging_change,
    "user_preferences": _messaging_change,
    "calls": _calls_change,
    "phone_number_quality_update": _phone_quality_change,
    "business_capability_update": _capability_change,
    "account_update": _account_change,
    **{name: _template_change for name in _TEMPLATE_FIELDS},
}


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------
def _entry_id(entry: Mapping[str, Any]) -> str | None:
    value = entry.get("id")
    if isinstance(value, str):
        return value
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _entry_time(entry: Mapping[str, Any]) -> float | None:
    try:
        return _epoch(entry.get("time"), "time")
    except _Malformed:
        return None


def _parse_change(entry_id: object, waba_id: str | None, entry_time: float | None, change: object) -> list[Event]:
    cid = change_id(entry_id, change)
    if not isinstance(change, Mapping):
        return [Unknown(change_id=cid, field="", waba_id=waba_id, raw=change, reason="change is not an object")]
    field = change.get("field")
    field = field if isinstance(field, str) else ""
    value = change.get("value")
    base: _Base = {"change_id": cid, "field": field, "item_index": 0, "waba_id": waba_id}
    parser = _PARSERS.get(field)
    if parser is None:
        return [Unknown(**base, raw=value)]
    try:
        return parser(base, value, entry_time)
    except _Malformed as exc:
        return [Unknown(**base, raw=value, reason=str(exc))]
    except Exception as exc:  # a parser bug must not lose the rest of the batch
        return [Unknown(**base, raw=value, reason=f"parser error: {exc!r}")]


def parse_webhook(body: object) -> list[Event]:
    """Every event of a decoded webhook body, in order. Never raises: what it cannot read is Unknown."""
    if not isinstance(body, Mapping):
        return [Unknown(change_id=change_id(None, body), field="", raw=body, reason="body is not an object")]
    entries = body.get("entry")
    if not isinstance(entries, list):
        return [Unknown(change_id=change_id(None, body), field="", raw=body, reason="body has no entry list")]
    events: list[Event] = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            events.append(
                Unknown(change_id=change_id(None, entry), field="", raw=entry, reason="entry is not an object")
            )
            continue
        changes = entry.get("changes")
        entry_id = entry.get("id")
        waba_id = _entry_id(entry)
        if not isinstance(changes, list):
            reason = "entry has no changes list"
            events.append(
                Unknown(change_id=change_id(entry_id, entry), field="", waba_id=waba_id, raw=entry, reason=reason)
            )
            continue
        entry_time = _entry_time(entry)
        for change in changes:
            events.extend(_parse_change(entry_id, waba_id, entry_time, change))
    return events


def load_body(raw: bytes | bytearray | memoryview) -> dict[str, Any]:
    """Decode a raw webhook body, raising :class:`WebhookError` with a clear reason when it is not one."""
    data = bytes(raw)
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as utf_exc:
            raise WebhookError(f"body is not valid UTF-8 (byte {utf_exc.start})") from None
        raise WebhookError(f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise WebhookError(f"body must be a JSON object, got {_json_type(body)}")
    if not isinstance(body.get("entry"), list):
        raise WebhookError("body has no 'entry' list")
    return body


def _json_type(value: object) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), _type_name(value))


def parse_webhook_bytes(raw: bytes | bytearray | memoryview) -> list[Event]:
    """:func:`load_body` then :func:`parse_webhook`: raises only :class:`WebhookError`."""
    return parse_webhook(load_body(raw))
