"""Builders for signed WhatsApp webhook bodies, shaped like the platform's (see whatsapp-platform.md).

Each ``*_change`` builder returns one ``{"field", "value"}`` change; :func:`body` wraps changes in an
entry and an envelope, :func:`batch` puts several entries in one body, and :func:`signed` serialises
and signs a body the way the platform does, ready to POST::

    req = signed(inbound_text_change("15551230001", "STOP"))
    client.post("/webhooks/whatsapp", content=req.body, headers=req.headers)
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tiergate.core.signature import SIGNATURE_HEADER, sign

APP_SECRET = "test-app-secret"
WABA_ID = "102290129340398"
PHONE_NUMBER_ID = "106540352242922"
DISPLAY_PHONE_NUMBER = "15550783881"
T0 = 1_760_000_000  # 2025-10-09T08:53:20Z, after the per-portfolio limits began

_serial = itertools.count(1)


def _wamid() -> str:
    return f"wamid.test-{next(_serial):08d}"


@dataclass(frozen=True)
class SignedBody:
    """A serialised webhook body with the headers the platform sends with it."""

    body: bytes
    headers: dict[str, str]
    payload: Mapping[str, Any] = field(default_factory=dict)

    @property
    def signature(self) -> str:
        return self.headers[SIGNATURE_HEADER]


# ---------------------------------------------------------------------------------------------
# Envelopes
# ---------------------------------------------------------------------------------------------
def change(field_name: str, value: Any) -> dict[str, Any]:
    return {"field": field_name, "value": value}


def entry(*changes: Mapping[str, Any], waba_id: str = WABA_ID, time: int | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"id": waba_id, "changes": list(changes)}
    if time is not None:
        found["time"] = time
    return found


def batch(*entries: Mapping[str, Any]) -> dict[str, Any]:
    return {"object": "whatsapp_business_account", "entry": list(entries)}


def body(*changes: Mapping[str, Any], waba_id: str = WABA_ID, time: int | None = None) -> dict[str, Any]:
    """One entry holding ``changes``, in the platform's envelope."""
    return batch(entry(*changes, waba_id=waba_id, time=time))


def serialize(payload: Mapping[str, Any] | bytes) -> bytes:
    if isinstance(payload, bytes):
        return payload
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign_body(payload: Mapping[str, Any] | bytes, app_secret: str | bytes = APP_SECRET) -> SignedBody:
    """Serialise ``payload`` (or take raw bytes as they are) and sign it with ``app_secret``."""
    raw = serialize(payload)
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(app_secret, raw)}
    return SignedBody(raw, headers, payload if isinstance(payload, Mapping) else {})


def signed(*changes: Mapping[str, Any], app_secret: str | bytes = APP_SECRET, waba_id: str = WABA_ID) -> SignedBody:
    """The usual case: some changes in one entry, serialised and signed."""
    return sign_body(body(*changes, waba_id=waba_id), app_secret)


# ---------------------------------------------------------------------------------------------
# Changes
# ---------------------------------------------------------------------------------------------
def _metadata(phone_number_id: str, display_phone_number: str) -> dict[str, str]:
    return {"display_phone_number": display_phone_number, "phone_number_id": phone_number_id}


def inbound_text_change(
    wa_id: str,
    text: str,
    *,
    timestamp: float = T0,
    message_id: str | None = None,
    name: str = "Test User",
    phone_number_id: str = PHONE_NUMBER_ID,
    display_phone_number: str = DISPLAY_PHONE_NUMBER,
) -> dict[str, Any]:
    """A user's text message (opens the customer service window; "STOP" opts out)."""
    message = {
        "from": wa_id,
        "id": message_id or _wamid(),
        "timestamp": str(int(timestamp)),
        "type": "text",
        "text": {"body": text},
    }
    return inbound_messages_change([message], [(wa_id, name)], phone_number_id, display_phone_number)


def inbound_messages_change(
    messages: Iterable[Mapping[str, Any]],
    contacts: Iterable[tuple[str, str]] = (),
    phone_number_id: str = PHONE_NUMBER_ID,
    display_phone_number: str = DISPLAY_PHONE_NUMBER,
) -> dict[str, Any]:
    """A ``messages`` change with any inbound message objects (buttons, media, many at once)."""
    return change(
        "messages",
        {
            "messaging_product": "whatsapp",
            "metadata": _metadata(phone_number_id, display_phone_number),
            "contacts": [{"profile": {"name": name}, "wa_id": wa_id} for wa_id, name in contacts],
            "messages": list(messages),
        },
    )


def inbound_call_change(
    wa_id: str,
    *,
    timestamp: float = T0,
    call_id: str | None = None,
    phone_number_id: str = PHONE_NUMBER_ID,
    display_phone_number: str = DISPLAY_PHONE_NUMBER,
) -> dict[str, Any]:
    """A call the user places to the business number (opens the customer service window too)."""
    placed = {
        "id": call_id or f"wacid.test-{next(_serial):08d}",
        "from": wa_id,
        "to": display_phone_number,
        "event": "connect",
        "timestamp": str(int(timestamp)),
        "direction": "USER_INITIATED",
        "session": {"sdp": "<<RFC 8866 SDP>>", "sdp_type": "offer"},
    }
    return change(
        "calls",
        {
            "messaging_product": "whatsapp",
            "metadata": _metadata(phone_number_id, display_phone_number),
            "contacts": [{"profile": {"name": "Test User"}, "wa_id": wa_id}],
            "calls": [placed],
        },
    )


def status_object(
    wamid: str,
    status: str,
    recipient_id: str,
    *,
    timestamp: float = T0,
    error_code: int | None = None,
    error_title: str = "",
    error_details: str = "",
    category: str | None = "marketing",
) -> dict[str, Any]:
    found: dict[str, Any] = {
        "id": wamid,
        "status": status,
        "timestamp": str(int(timestamp)),
        "recipient_id": recipient_id,
    }
    if category is not None and status != "failed":
        found["conversation"] = {"id": f"conv-{recipient_id}", "origin": {"type": category}}
        found["pricing"] = {"billable": True, "pricing_model": "PMP", "type": "regular", "category": category}
    if error_code is not None:
        found["errors"] = [
            {
                "code": error_code,
                "title": error_title or f"error {error_code}",
                "message": error_title or f"error {error_code}",
                "error_data": {"details": error_details or f"details of {error_code}"},
            }
        ]
    return found


def status_change(
    wamid: str,
    status: str,
    recipient_id: str,
    *,
    timestamp: float = T0,
    error_code: int | None = None,
    error_title: str = "",
    error_details: str = "",
    category: str | None = "marketing",
    phone_number_id: str = PHONE_NUMBER_ID,
    display_phone_number: str = DISPLAY_PHONE_NUMBER,
) -> dict[str, Any]:
    """One status of a sent message (``failed`` with ``error_code``, e.g. 131049 or 131026)."""
    update = status_object(
        wamid,
        status,
        recipient_id,
        timestamp=timestamp,
        error_code=error_code,
        error_title=error_title,
        error_details=error_details,
        category=category,
    )
    return statuses_change([update], phone_number_id, display_phone_number)


def statuses_change(
    statuses: Iterable[Mapping[str, Any]],
    phone_number_id: str = PHONE_NUMBER_ID,
    display_phone_number: str = DISPLAY_PHONE_NUMBER,
) -> dict[str, Any]:
    return change(
        "messages",
        {
            "messaging_product": "whatsapp",
            "metadata": _metadata(phone_number_id, display_phone_number),
            "statuses": list(statuses),
        },
    )


def phone_tier_change(
    current_limit: str | int,
    *,
    old_limit: str | int | None = None,
    event: str = "UPGRADE",
    display_phone_number: str = DISPLAY_PHONE_NUMBER,
) -> dict[str, Any]:
    """The legacy per-number shape: ``phone_number_quality_update`` with ``current_limit``."""
    value: dict[str, Any] = {
        "display_phone_number": display_phone_number,
        "event": event,
        "current_limit": current_limit,
    }
    if old_limit is not None:
        value["old_limit"] = old_limit
    return change("phone_number_quality_update", value)


def business_tier_change(
    max_daily_conversations_per_business: str | int,
    *,
    max_daily_conversation_per_phone: int | None = None,
) -> dict[str, Any]:
    """The per-portfolio shape: ``business_capability_update`` (TIER_* string or integer, -1 unlimited)."""
    value: dict[str, Any] = {"max_daily_conversations_per_business": max_daily_conversations_per_business}
    if max_daily_conversation_per_phone is not None:
        value["max_daily_conversation_per_phone"] = max_daily_conversation_per_phone
    return change("business_capability_update", value)


def portfolio_quality_tier_change(
    limit: str | int,
    *,
    old_limit: str | int | None = None,
    event: str = "UPGRADE",
    display_phone_number: str = DISPLAY_PHONE_NUMBER,
) -> dict[str, Any]:
    """The newer ``phone_number_quality_update`` that carries the portfolio's limit."""
    value: dict[str, Any] = {
        "display_phone_number": display_phone_number,
        "event": event,
        "max_daily_conversations_per_business": limit,
    }
    if old_limit is not None:
        value["old_limit"] = old_limit
    return change("phone_number_quality_update", value)


def quality_change(event: str = "FLAGGED", *, display_phone_number: str = DISPLAY_PHONE_NUMBER) -> dict[str, Any]:
    """FLAGGED / UNFLAGGED for one number."""
    return change("phone_number_quality_update", {"display_phone_number": display_phone_number, "event": event})


def account_restriction_change(
    expiration: float | str,
    restriction_types: Iterable[str] = ("RESTRICTED_BIZ_INITIATED_MESSAGING",),
) -> dict[str, Any]:
    """``account_update`` ACCOUNT_RESTRICTION with each restriction lasting until ``expiration``."""
    restrictions = [
        {"restriction_type": kind, "expiration": int(expiration) if isinstance(expiration, float) else expiration}
        for kind in restriction_types
    ]
    return change("account_update", {"event": "ACCOUNT_RESTRICTION", "restriction_info": restrictions})


def account_event_change(event: str, **extra: Any) -> dict[str, Any]:
    """Any other ``account_update`` (DISABLED_UPDATE with ban_info, ACCOUNT_VIOLATION, ...)."""
    return change("account_update", {"event": event, **extra})


def user_preference_change(
    wa_id: str,
    value: str = "stop",
    *,
    timestamp: float = T0,
    phone_number_id: str = PHONE_NUMBER_ID,
    display_phone_number: str = DISPLAY_PHONE_NUMBER,
) -> dict[str, Any]:
    """The platform's marketing preference event (``stop`` or ``resume``)."""
    details = {"stop": "User requested to stop marketing messages", "resume": "User requested to resume"}
    return change(
        "user_preferences",
        {
            "messaging_product": "whatsapp",
            "metadata": _metadata(phone_number_id, display_phone_number),
            "contacts": [{"profile": {"name": "Test User"}, "wa_id": wa_id}],
            "user_preferences": [
                {
                    "wa_id": wa_id,
                    "detail": details.get(value, value),
                    "category": "marketing_messages",
                    "value": value,
                    "timestamp": int(timestamp),
                }
            ],
        },
    )
