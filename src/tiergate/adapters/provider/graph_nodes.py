"""The account's Graph nodes as the platform keeps them, for the platform's stand-ins.

An app that moves to tiergate's drop-in (its base URL changed, nothing else) also reads its number
(``GET /{phone-number-id}``) and its WABA (``GET /{waba-id}``), registers the number
(``/{phone-number-id}/register``), keeps its business profile (``/{phone-number-id}/whatsapp_business_profile``)
and its message templates (``/{waba-id}/message_templates``). The real client relays those to the
platform; the sandbox, and the fake Graph API the tests start, answer them from this one emulation,
in the platform's shapes and with its checks, so the same contract tests hold for both.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

from tiergate.core import shapes
from tiergate.core.admission import TEMPLATE_CATEGORIES

__all__ = ["PROFILE_FIELDS", "GraphNodes"]

PROFILE_FIELDS = frozenset({"about", "address", "description", "email", "profile_picture_url", "websites",
                            "vertical"})
_PROFILE_WRITABLE = (PROFILE_FIELDS - {"profile_picture_url"}) | {"profile_picture_handle"}
_VERTICALS = frozenset({
    "UNDEFINED", "OTHER", "AUTO", "BEAUTY", "APPAREL", "EDU", "ENTERTAIN", "EVENT_PLAN", "FINANCE", "GROCERY",
    "GOVT", "HOTEL", "HEALTH", "NONPROFIT", "PROF_SERVICES", "RETAIL", "TRAVEL", "RESTAURANT", "NOT_A_BIZ",
})
_TEMPLATE_NAME = re.compile(shapes.TEMPLATE_NAME)
_LANGUAGE = re.compile(shapes.TEMPLATE_LANGUAGE)
_TEMPLATE_FIELDS = ("name", "language", "status", "category", "components", "parameter_format", "id")
_PAGE_MOST = 100
# What the platform answers for a number without ``?fields=`` (its webhook_configuration aside).
_NUMBER_DEFAULT_FIELDS = "verified_name,code_verification_status,display_phone_number,quality_rating,platform_type," \
                         "throughput"

# A WABA's fields (``GET /{waba-id}``) and what the platform answers without ``?fields=``.
_WABA_FIELDS = frozenset({"id", "name", "currency", "timezone_id", "message_template_namespace",
                          "account_review_status", "business_verification_status", "country", "ownership_type",
                          "status"})
_WABA_DEFAULT_FIELDS = "id,name,timezone_id,message_template_namespace"

Answer = tuple[int, dict[str, Any]]


def _unsupported(method: str, node: str, edge: str = "") -> Answer:
    where = f"Object with ID '{node}'" if not edge else f"The edge '{edge}' of object '{node}'"
    return 400, shapes.error_payload(100, details=f"Unsupported {method.lower()} request. {where} does not exist, "
                                                  "cannot be loaded due to missing permissions, or does not "
                                                  "support this operation.")


def _invalid(details: str, subcode: int | None = None) -> Answer:
    payload = shapes.error_payload(100, details=details)
    if subcode is not None:
        payload["error"]["error_subcode"] = subcode
    return 400, payload


class GraphNodes:
    """Phone numbers' profiles and WABAs' templates, in memory. ``number_state(id)`` gives a
    number's Graph state (``shapes.phone_number_state``) or None for a number the platform does not
    know, ``numbers_of(waba)`` a WABA's numbers; any WABA id is taken as known (the gateway checks
    that it is the tenant's first)."""

    def __init__(self, number_state: Callable[[str], Mapping[str, Any] | None],
                 numbers_of: Callable[[str], list[str]] = lambda waba: []) -> None:
        self._number_state = number_state
        self._numbers_of = numbers_of  # WABA id -> its phone number ids
        self.profiles: dict[str, dict[str, Any]] = {}
        self.templates: dict[str, list[dict[str, Any]]] = {}  # WABA id -> templates, oldest first
        self.registered: set[str] = set()  # numbers registered through ``/{number}/register``
        self._serial = 0

    def handle(self, method: str, path: str, query: str = "", payload: bytes = b"") -> Answer | None:
        """The platform's answer, or None when the path is not one of these nodes (the caller's own)."""
        parts = path.strip("/").split("/")
        params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        node = parts[0]
        number = self._number_state(node)
        if len(parts) == 1:
            if method != "GET":
                return None
            if number is None:
                return self._waba(node, params) if self._numbers_of(node) else None
            answer = shapes.phone_number_payload(number, params.get("fields", _NUMBER_DEFAULT_FIELDS).split(","))
            return (400, shapes.error_payload(answer[0], details=answer[1])) if isinstance(answer, tuple) \
                else (200, answer)
        if len(parts) != 2:
            return None
        edge = parts[1]
        if edge == "whatsapp_business_profile":
            if number is None:
                return _unsupported(method, node)
            return self._profile(method, node, params, payload)
        if edge == "message_templates":
            return self._templates(method, node, params, payload)
        if edge in ("register", "deregister"):
            if number is None:
                return _unsupported(method, node)
            return self._registration(method, node, edge, payload)
        if edge == "phone_numbers" and method == "GET":
            states = [state for n in self._numbers_of(node) if (state := self._number_state(n)) is not None]
            fields = params.get("fields", _NUMBER_DEFAULT_FIELDS).split(",")
            listed = [shapes.phone_number_payload(state, fields) for state in states]
            refused = next((x for x in listed if isinstance(x, tuple)), None)
            if refused is not None:
                return 400, shapes.error_payload(refused[0], details=refused[1])
            return 200, {"data": listed, "paging": {"cursors": {}}}
        return None

    # -- the WABA and a number's registration ------------------------------------------------------
    def _waba(self, waba: str, params: Mapping[str, str]) -> Answer:
        wanted = [f.strip() for f in params.get("fields", _WABA_DEFAULT_FIELDS).split(",") if f.strip()]
        unknown = [f for f in wanted if f not in _WABA_FIELDS]
        if unknown:
            return _invalid(f"Tried accessing nonexisting field ({unknown[0]}) on node type (WhatsAppBusinessAccount)")
        state = {"id": waba, "name": "Sandbox Business", "currency": "USD", "timezone_id": "1",
                 "message_template_namespace": f"sandbox_{waba}", "account_review_status": "APPROVED",
                 "business_verification_status": "verified", "country": "US", "ownership_type": "SELF",
                 "status": "ACTIVE"}
        return 200, {**{f: state[f] for f in wanted}, "id": waba}

    def _registration(self, method: str, node: str, edge: str, payload: bytes) -> Answer:
        """``register`` (with the two-step verification PIN) and ``deregister`` a number for the Cloud API."""
        if method != "POST":
            return _unsupported(method, node, edge)
        body = shapes.json_object(payload or b"{}")
        if body is None:
            return _invalid("The request body must be a JSON object.")
        if body.get("messaging_product") != "whatsapp":
            return _invalid("The parameter messaging_product is required and must be 'whatsapp'.")
        if edge == "register":
            pin = body.get("pin")
            if not isinstance(pin, str) or not re.fullmatch(r"[0-9]{6}", pin):
                return _invalid("Param pin must be a 6-digit string.")
            self.registered.add(node)
        else:
            self.registered.discard(node)
        return 200, {"success": True}

    # -- the business profile ------------------------------------------------------------------
    def _profile(self, method: str, node: str, params: Mapping[str, str], payload: bytes) -> Answer:
        profile = self.profiles.setdefault(node, {"about": "", "vertical": "UNDEFINED", "websites": []})
        if method == "GET":
            wanted = [f.strip() for f in params.get("fields", ",".join(sorted(PROFILE_FIELDS))).split(",") if f.strip()]
            unknown = [f for f in wanted if f not in PROFILE_FIELDS]
            if unknown:
                return _invalid(f"Tried accessing nonexisting field ({unknown[0]}) on node type "
                                "(WhatsAppBusinessProfile)")
            return 200, {"data": [{"messaging_product": "whatsapp",
                                   **{f: profile[f] for f in wanted if f in profile}}]}
        if method != "POST":
            return _unsupported(method, node, "whatsapp_business_profile")
        body = shapes.json_object(payload or b"{}")
        if body is None:
            return _invalid("The request body must be a JSON object.")
        if body.get("messaging_product") != "whatsapp":
            return _invalid("The parameter messaging_product is required and must be 'whatsapp'.")
        fields = {k: v for k, v in body.items() if k != "messaging_product"}
        for name, value in fields.items():
            if name not in _PROFILE_WRITABLE:
                return _invalid(f"Param {name} is not a field of the business profile.")
            if name == "websites":
                if not isinstance(value, list) or len(value) > 2 or not all(isinstance(w, str) for w in value):
                    return _invalid("Param websites must be a list of at most 2 URLs.")
            elif not isinstance(value, str):
                return _invalid(f"Param {name} must be a string.")
            elif name == "vertical" and value not in _VERTICALS:
                return _invalid(f"Param vertical must be one of {', '.join(sorted(_VERTICALS))}.")
            elif name == "about" and not 1 <= len(value) <= 139:
                return _invalid("Param about must be 1 to 139 characters long.")
        profile.update({("profile_picture_url" if k == "profile_picture_handle" else k): v for k, v in fields.items()})
        return 200, {"success": True}

    # -- message templates ----------------------------------------------------------------------
    def _templates(self, method: str, waba: str, params: Mapping[str, str], payload: bytes) -> Answer:
        kept = self.templates.setdefault(waba, [])
        if method == "GET":
            found = [t for t in kept if all(str(t.get(k)) == params[k] for k in ("name", "status", "category",
                                                                              "language") if k in params)]
            limit = _int(params.get("limit"), 25)
            if limit is None or not 1 <= limit <= _PAGE_MOST:
                return _invalid(f"Param limit must be an integer from 1 to {_PAGE_MOST}.")
            start = 0
            if "after" in params:
                ids = [t["id"] for t in found]
                if params["after"] not in ids:
                    return _invalid("Param after is not a cursor of this list.")
                start = ids.index(params["after"]) + 1
            page = found[start:start + limit]
            cursors = {"before": page[0]["id"], "after": page[-1]["id"]} if page else {}
            answer: dict[str, Any] = {"data": [dict(t) for t in page], "paging": {"cursors": cursors}}
            if start + limit < len(found):
                answer["paging"]["next"] = f"?limit={limit}&after={page[-1]['id']}"
            return 200, answer
        if method == "DELETE":
            target = params.get("name", "")
            if not target:
                return _invalid("The parameter name is required.")
            gone = [t for t in kept if t["name"] == target and params.get("hsm_id", t["id"]) == t["id"]]
            if not gone:
                return _invalid(f"Message template \"{target}\" can't be found.", 2593002)
            kept[:] = [t for t in kept if t not in gone]
            return 200, {"success": True}
        if method != "POST":
            return _unsupported(method, waba, "message_templates")
        body = shapes.json_object(payload or b"{}")
        if body is None:
            return _invalid("The request body must be a JSON object.")
        name, language, category = body.get("name"), body.get("language"), body.get("category")
        components = body.get("components", [])
        if not isinstance(name, str) or not _TEMPLATE_NAME.match(name):
            return _invalid("Param name must be 1 to 512 lowercase letters, digits and underscores.")
        if not isinstance(language, str) or not _LANGUAGE.match(language):
            return _invalid("Param language must be a language code such as en_US.")
        if category not in TEMPLATE_CATEGORIES:
            return _invalid(f"Param category must be one of {', '.join(sorted(TEMPLATE_CATEGORIES))}.")
        if not isinstance(components, list) or not all(isinstance(c, dict) and isinstance(c.get("type"), str)
                                                       for c in components):
            return _invalid("Param components must be a list of objects with a type.")
        if any(t["name"] == name and t["language"] == language for t in kept):
            return _invalid(f"Content in this language already exists for the template \"{name}\".", 2388024)
        self._serial += 1
        template = {"name": name, "language": language, "status": "APPROVED", "category": category,
                    "components": components, "parameter_format": body.get("parameter_format", "POSITIONAL"),
                    "id": str(9_000_000_000_000_000 + self._serial)}
        kept.append({k: template[k] for k in _TEMPLATE_FIELDS})
        return 200, {"id": template["id"], "status": template["status"], "category": category}


def _int(text: str | None, default: int) -> int | None:
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        return None
