"""The Cloud API's JSON shapes, written once: error bodies, send answers, webhooks, phone-number fields.

The sandbox provider and the test suite's fake Graph API both speak the platform's exact shapes, and
the cloud client parses them; keeping the builders and parsers here means all three agree and a
shape fix is made in one place. Only plain data: no I/O.
"""

from __future__ import annotations

import email.policy
import hashlib
import re
from collections.abc import Iterable, Mapping
from email.parser import BytesParser
from typing import Any

import orjson

__all__ = [
    "ERROR_INFO",
    "PHONE_NUMBER_FIELDS",
    "SEND_TYPES",
    "STATUS_ACCEPTED",
    "TEMPLATE_LANGUAGE",
    "TEMPLATE_NAME",
    "accepted_payload",
    "error_payload",
    "inbound_value",
    "is_language_code",
    "is_status_request",
    "is_template_name",
    "json_object",
    "make_wamid",
    "media_form_fields",
    "media_object",
    "parse_error",
    "phone_number_payload",
    "read_media_upload",
    "status_error",
    "status_item",
    "validate_send_body",
    "validate_status_request",
    "wa_id",
    "webhook",
]

ERROR_DOCS = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"

# A message template's name and language code as the platform takes them (en_US, pt_BR, es...).
TEMPLATE_NAME = r"^[a-z0-9_]{1,512}$"
TEMPLATE_LANGUAGE = r"^[a-z]{2,3}(_[A-Za-z]{2,4})?$"
_TEMPLATE_NAME, _TEMPLATE_LANGUAGE = re.compile(TEMPLATE_NAME), re.compile(TEMPLATE_LANGUAGE)


def is_template_name(value: str) -> bool:
    """A template name as the platform spells them (the whole string: no trailing newline either)."""
    return _TEMPLATE_NAME.fullmatch(value) is not None


def is_language_code(value: str) -> bool:
    """A template language code as the platform takes them (en_US, pt_BR, es...)."""
    return _TEMPLATE_LANGUAGE.fullmatch(value) is not None

_MEDIA_TYPES = frozenset({"image", "video", "audio", "document", "sticker"})


def json_object(raw: bytes) -> dict[str, Any] | None:
    """A request body that is a JSON object, or None (not JSON, or JSON of another kind)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None

# code -> (title, details, HTTP status the Graph API answers with)
ERROR_INFO: dict[int, tuple[str, str, int]] = {
    0: ("AuthException", "Unable to authenticate the app user.", 401),
    1: ("API Unknown", "Invalid request or possible server error.", 500),
    2: ("API Service", "Temporary due to downtime or due to being overloaded.", 503),
    4: ("Application request limit reached", "Too many API calls from this app.", 429),
    100: ("Invalid parameter", "The request included invalid or unsupported parameters.", 400),
    190: ("Invalid OAuth access token - Cannot parse access token", "The access token is invalid.", 401),
    80007: ("Rate limit issues", "The WhatsApp Business Account has reached its rate limit.", 429),
    130429: ("Rate limit hit", "Cloud API message throughput has been reached.", 429),
    130472: ("User's number is part of an experiment", "Failed to send message because this user's phone "
             "number is part of an experiment.", 400),
    131000: ("Something went wrong", "Message failed to send due to an unknown error.", 500),
    131008: ("Required parameter is missing", "The request is missing a required parameter.", 400),
    131009: ("Parameter value is not valid", "One or more parameter values are invalid.", 400),
    131016: ("Service unavailable", "A service is temporarily unavailable.", 503),
    131021: ("Recipient cannot be sender", "Sender and recipient phone number is the same.", 400),
    131026: ("Message undeliverable", "Message undeliverable.", 400),
    131031: ("Account has been locked", "The business account was restricted or disabled.", 400),
    131047: ("Re-engagement message", "Message failed to send because more than 24 hours have passed "
             "since the customer last replied to this number.", 400),
    131048: ("Spam rate limit hit", "Message failed to send because there are restrictions on how many "
             "messages can be sent from this phone number.", 400),
    131049: ("This message was not delivered to maintain healthy ecosystem engagement.",
             "Per-user marketing template limit.", 400),
    131050: ("Unable to deliver the message. This recipient has chosen to stop receiving marketing "
             "messages on WhatsApp from your business.", "User stopped marketing messages.", 400),
    131051: ("Unsupported message type", "Unsupported message type.", 400),
    131056: ("(Business Account, Consumer Account) pair rate limit hit", "Message failed to send because "
             "there were too many messages sent from this phone number to the same phone number in a "
             "short period of time.", 400),
    131057: ("Account in maintenance mode", "Business account is in maintenance mode.", 503),
    132001: ("Template name does not exist in the translation", "Template does not exist.", 404),
    133010: ("Phone number not registered", "Phone number not registered on the WhatsApp Business "
             "Platform.", 400),
    368: ("Temporarily blocked for policies violations", "The account is temporarily restricted.", 403),
}

SEND_TYPES = frozenset({
    "text", "template", "image", "audio", "video", "document", "sticker", "location", "contacts",
    "interactive", "reaction",
})

# fields GET /{phone-number-id}?fields=... knows (asking for another one is error 100)
PHONE_NUMBER_FIELDS = frozenset({
    "id", "display_phone_number", "verified_name", "status", "quality_rating", "quality_score",
    "name_status", "code_verification_status", "throughput", "platform_type", "account_mode",
    "health_status", "whatsapp_business_manager_messaging_limit", "messaging_limit_tier",
})

_NON_DIGITS = re.compile(r"\D")


def wa_id(to: str) -> str:
    """The platform's id for a phone number: its digits (``+1 650-555-1234`` -> ``16505551234``)."""
    if to.isdigit():
        return to
    if to[1:].isdigit() and to[:1] == "+":
        return to[1:]
    return _NON_DIGITS.sub("", to)


def make_wamid(to: str, serial: int, salt: int = 0) -> str:
    """A wamid shaped like the platform's (``wamid.`` + a base64-looking id), unique per ``serial``.

    Only its shape matters (nobody decodes a wamid), so it is one cheap format: the sandbox mints
    one per send.
    """
    return f"wamid.HBgL{wa_id(to)[-15:]}FQIAERgS{salt & 0xFFFF:04X}{serial:012X}AA=="


def error_payload(code: int, *, title: str | None = None, details: str | None = None,
                  fbtrace_id: str = "A0tiergateFAKE") -> dict[str, Any]:
    """The Graph API's error body for ``code`` (``{"error": {...}}``)."""
    known_title, known_details, _ = ERROR_INFO.get(code, ("Unknown error", "", 400))
    title = title or known_title
    error: dict[str, Any] = {
        "message": f"(#{code}) {title}",
        "type": "OAuthException",
        "code": code,
        "error_data": {"messaging_product": "whatsapp", "details": details or known_details},
        "fbtrace_id": fbtrace_id,
    }
    if code in (1, 2, 131000, 131016, 131057):
        error["is_transient"] = True
    return {"error": error}


def http_status_for(code: int) -> int:
    return ERROR_INFO.get(code, ("", "", 400))[2]


def status_error(code: int, *, title: str | None = None, details: str | None = None) -> dict[str, Any]:
    """One entry of a status webhook's ``errors[]``."""
    known_title, known_details, _ = ERROR_INFO.get(code, ("Unknown error", "", 400))
    title = title or known_title
    return {"code": code, "title": title, "message": title,
            "error_data": {"details": details or known_details}, "href": ERROR_DOCS}


def parse_error(payload: object) -> tuple[int, str, str] | None:
    """``(code, title, details)`` from a Graph error body, or None when it is not one."""
    if not isinstance(payload, Mapping):
        return None
    error = payload.get("error")
    if not isinstance(error, Mapping):
        return None
    code = error.get("code")
    if isinstance(code, str) and code.lstrip("-").isdigit():
        code = int(code)
    if not isinstance(code, int) or isinstance(code, bool):
        return None
    title = error.get("error_user_title") or error.get("title") or ""
    message = error.get("message")
    if not title and isinstance(message, str):
        title = re.sub(r"^\(#\d+\)\s*", "", message)
    data = error.get("error_data")
    details = data.get("details") if isinstance(data, Mapping) else None
    if not details:
        details = error.get("error_user_msg") or ""
    return code, str(title), str(details)


def accepted_payload(to: str, wamid: str, message_status: str = "accepted") -> dict[str, Any]:
    """The Cloud API's answer to an accepted send."""
    return {
        "messaging_product": "whatsapp",
        "contacts": [{"input": to, "wa_id": wa_id(to)}],
        "messages": [{"id": wamid, "message_status": message_status}],
    }


def validate_send_body(body: object) -> tuple[int, str] | None:
    """``(code, details)`` when the platform would refuse this send body outright, else None.

    Bodies are decoded JSON, so objects are plain dicts (checked as such: it is the hot path).
    """
    if not isinstance(body, dict):
        return 100, "The request body must be a JSON object."
    if body.get("messaging_product") != "whatsapp":
        return 100, "The parameter messaging_product is required and must be 'whatsapp'."
    to = body.get("to")
    if not isinstance(to, str) or not wa_id(to):
        return 100, "The parameter to is required."
    kind = body.get("type", "text")
    if kind not in SEND_TYPES:
        return 100, f"Param type must be one of {{{', '.join(sorted(SEND_TYPES))}}}, got {kind!r}."
    content = body.get(kind)
    if not isinstance(content, dict):
        return 131008, f"The parameter {kind} is required."
    if kind == "template":
        name = content.get("name")
        if not isinstance(name, str) or not name:
            return 131008, "The parameter template['name'] is required."
        if not is_template_name(name):
            return 132001, (f"Template name does not exist in the translation: {name[:80]!r} is not a template "
                            "name (lowercase letters, digits and underscores).")
        language = content.get("language")
        if not isinstance(language, dict) or not isinstance(language.get("code"), str):
            return 131008, "The parameter template['language']['code'] is required."
        if not is_language_code(language["code"]):
            return 131009, f"Parameter value is not valid: template['language']['code'] {language['code'][:20]!r}."
        if "components" in content and not isinstance(content["components"], list):
            return 131009, "Parameter value is not valid: template['components'] must be a list."
    elif kind == "text":
        text = content.get("body")
        if not isinstance(text, str) or not text.strip():
            return 131008, "The parameter text['body'] is required."
        if len(text) > 4096:
            return 131009, "Parameter value is not valid: text['body'] is longer than 4096 characters."
    elif kind in _MEDIA_TYPES and not (isinstance(content.get("id"), str | int)
                                       or isinstance(content.get("link"), str)):
        return 131008, f"The parameter {kind}['id'] or {kind}['link'] is required."
    return None


def is_status_request(body: object) -> bool:
    """A request to the messages endpoint that is not a message: a read receipt, with or without a
    typing indicator (``{"status": "read", "message_id": ...}``)."""
    return isinstance(body, dict) and "status" in body and "to" not in body


def validate_status_request(body: dict[str, Any]) -> tuple[int, str] | None:
    """``(code, details)`` when the platform would refuse a read receipt outright, else None."""
    if body.get("messaging_product") != "whatsapp":
        return 100, "The parameter messaging_product is required and must be 'whatsapp'."
    if body.get("status") != "read":
        return 100, "Param status must be 'read'."
    message_id = body.get("message_id")
    if not isinstance(message_id, str) or not message_id:
        return 100, "The parameter message_id is required."
    indicator = body.get("typing_indicator")
    if indicator is not None and (not isinstance(indicator, dict) or indicator.get("type") != "text"):
        return 100, "Param typing_indicator['type'] must be 'text'."
    return None


STATUS_ACCEPTED: dict[str, Any] = {"success": True}  # the answer to an accepted read receipt


def media_form_fields(content_type: str, payload: bytes) -> dict[str, bytes] | None:
    """The named parts of a ``multipart/form-data`` body (name -> content), or None if it is not one."""
    if not content_type.lower().startswith("multipart/form-data") or "boundary=" not in content_type:
        return None
    message = BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n" + payload)
    if not message.is_multipart():
        return None
    fields: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            content = part.get_payload(decode=True)
            fields[name] = content if isinstance(content, bytes) else b""
    return fields


def media_object(media_id: str, url: str, mime_type: str, data: bytes) -> dict[str, Any]:
    """The answer to ``GET /{media-id}``: where to download it (with the token) and what it is."""
    return {"messaging_product": "whatsapp", "url": url, "mime_type": mime_type,
            "sha256": hashlib.sha256(data).hexdigest(), "file_size": len(data), "id": media_id}


def read_media_upload(content_type: str, payload: bytes) -> dict[str, bytes] | tuple[int, str]:
    """A media upload's form fields (``POST /{number}/media``), or ``(code, details)`` when the
    platform would refuse it: the body is parsed once, for the check and for the file."""
    fields = media_form_fields(content_type, payload)
    if fields is None:
        return 100, "A media upload is multipart/form-data with the fields messaging_product, file and type."
    if fields.get("messaging_product") != b"whatsapp":
        return 100, "The parameter messaging_product is required and must be 'whatsapp'."
    if not fields.get("file"):
        return 100, "The parameter file is required."
    return fields


def phone_number_payload(state: Mapping[str, Any], fields: Iterable[str]) -> dict[str, Any] | tuple[int, str]:
    """The answer to ``GET /{phone-number-id}?fields=...`` from a number's state, or (code, details)."""
    out: dict[str, Any] = {}
    for name in fields:
        name = name.strip()
        if not name:
            continue
        if name not in PHONE_NUMBER_FIELDS:
            return 100, (f"Tried accessing nonexisting field ({name}) on node type "
                         "(WhatsAppBusinessPhoneNumber)")
        if name in state:
            out[name] = state[name]
    out["id"] = state["id"]
    return out


def phone_number_state(phone_number_id: str, display_phone_number: str, *, tier: str, quality: str = "GREEN",
                       status: str = "CONNECTED", throughput: str = "STANDARD",
                       verified_name: str = "Sandbox Business") -> dict[str, Any]:
    """A phone number's full Graph state in the platform's field shapes."""
    return {
        "id": phone_number_id,
        "display_phone_number": display_phone_number,
        "verified_name": verified_name,
        "status": status,
        "quality_rating": quality,
        "quality_score": {"score": quality},
        "name_status": "APPROVED",
        "code_verification_status": "VERIFIED",
        "throughput": {"level": throughput},
        "platform_type": "CLOUD_API",
        "account_mode": "LIVE",
        "health_status": {"can_send_message": "AVAILABLE", "entities": []},
        "whatsapp_business_manager_messaging_limit": tier,
        "messaging_limit_tier": tier,
    }


def webhook(entry_id: str, changes: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """A webhook body: ``object`` whatsapp_business_account, one entry with ``(field, value)`` changes."""
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": entry_id, "changes": [{"value": value, "field": field} for field, value in changes]}],
    }


def metadata(display_phone_number: str, phone_number_id: str) -> dict[str, str]:
    return {"display_phone_number": display_phone_number, "phone_number_id": phone_number_id}


def status_item(wamid: str, status: str, at: float, recipient: str, *, billable: bool | None = None,
                category: str = "marketing", errors: list[dict[str, Any]] | None = None,
                callback_data: str | None = None) -> dict[str, Any]:
    """One ``statuses[]`` entry; sent/delivered carry pricing, failed carries ``errors``; the send's
    ``biz_opaque_callback_data`` comes back as the platform echoes it."""
    item: dict[str, Any] = {"id": wamid, "status": status, "timestamp": str(int(at)), "recipient_id": recipient}
    if callback_data is not None:
        item["biz_opaque_callback_data"] = callback_data
    if errors:
        item["errors"] = errors
    elif billable is not None and status in ("sent", "delivered"):
        item["pricing"] = {"billable": billable, "pricing_model": "PMP",
                           "type": "regular" if billable else "free_customer_service", "category": category}
    return item


def inbound_value(display_phone_number: str, phone_number_id: str, sender: str, message_id: str, at: float,
                  text: str, profile_name: str) -> dict[str, Any]:
    """The ``value`` of an inbound text message change, with ``contacts[]``."""
    return {
        "messaging_product": "whatsapp",
        "metadata": metadata(display_phone_number, phone_number_id),
        "contacts": [{"profile": {"name": profile_name}, "wa_id": sender}],
        "messages": [{"from": sender, "id": message_id, "timestamp": str(int(at)), "type": "text",
                      "text": {"body": text}}],
    }
