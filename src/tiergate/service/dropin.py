"""The drop-in endpoint: Meta's exact request and response shapes, governed by tiergate.

An app that already talks to the Cloud API changes only its base URL. Read receipts and typing
indicators (the same endpoint, ``"status": "read"``), media uploads (``/{number}/media``), the
media objects a tenant uploaded or was sent (``/{media-id}``, and their files) and the rest of the
tenant's own account (its numbers, business profiles, WABAs' templates) are not governed: they go to
the platform at once, and its answer comes back as it is. Answers to messages carry tiergate's
message id in ``messages[0].id`` (the platform's wamid is assigned when the message really goes;
``GET /v1/messages/{id}`` shows it) and errors use Meta's error object and codes.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from fastapi.responses import JSONResponse, Response

from tiergate.core.admission import TEMPLATE_CATEGORIES
from tiergate.core.model import Tenant
from tiergate.core.shapes import error_payload, is_status_request, json_object, validate_send_body
from tiergate.ids import new_id
from tiergate.ports import Provider
from tiergate.service.intake import Intake, IntakeError, MessageRequest

__all__ = ["DropIn", "meta_error"]

# Not passed on: credentials an app may put in the query for Meta (tiergate calls with its own),
# and ``ids``/``id``, which name other objects to read (the Graph root's multi-object read).
_DROPPED_PARAMS = frozenset({"access_token", "appsecret_proof", "ids", "id"})
_EDGE = re.compile(r"[a-z][a-z0-9_]{0,63}\Z")  # Graph edge names: whatsapp_business_profile, message_templates...


def meta_error(status: int, code: int, message: str, details: str = "") -> JSONResponse:
    """Meta's error object (``core.shapes``, as the sandbox and the fake Graph API answer), with a
    fresh trace id per answer."""
    return JSONResponse(error_payload(code, title=message, details=details or message, fbtrace_id=new_id("trace")),
                        status_code=status)


def _categories(templates: Any) -> list[tuple[str, str, str]]:
    """(name, language, category) of the templates in a platform's answer that name all three."""
    if not isinstance(templates, list):
        return []
    return [(t["name"], t["language"], t["category"]) for t in templates
            if isinstance(t, dict) and all(isinstance(t.get(k), str) and t[k] for k in ("name", "language"))
            and t.get("category") in TEMPLATE_CATEGORIES]


def _missing(method: str, object_id: str) -> JSONResponse:
    """Meta's answer for an object that does not exist or is not the caller's."""
    return meta_error(400, 100, "Invalid parameter",
                      f"Unsupported {method.lower()} request. Object with ID '{object_id}' does not exist, "
                      "cannot be loaded due to missing permissions, or does not support this operation.")


class DropIn:
    def __init__(self, intake: Intake, provider: Provider) -> None:
        self.intake = intake
        self.provider = provider

    async def send(self, tenant: Tenant, phone_number_id: str, raw: bytes, category: str | None,
                   idempotency_key: str | None) -> JSONResponse:
        try:
            body: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return meta_error(400, 100, "Invalid parameter", "the request body is not JSON")
        if not isinstance(body, dict):
            return meta_error(400, 100, "Invalid parameter", "the request body must be a JSON object")
        if body.get("messaging_product") != "whatsapp":
            return meta_error(400, 100, "Invalid parameter", "messaging_product must be 'whatsapp'")
        if is_status_request(body):
            return (await self._relay(tenant, phone_number_id, "messages", raw, "application/json"))[0]
        kind = body.get("type", "text")
        if not isinstance(kind, str) or kind not in body:
            return meta_error(400, 100, "Invalid parameter", f"the body needs a '{kind}' object for type {kind!r}")
        problem = validate_send_body(body)  # what the platform refuses outright, refused here and now
        if problem is not None:
            return meta_error(400, problem[0], "Invalid parameter", problem[1])
        to = body.get("to")
        try:
            message = await self.intake.submit(tenant, MessageRequest(
                sender=phone_number_id, to=to if isinstance(to, str) else "", body=body, category=category,
                idempotency_key=idempotency_key,
            ))
        except IntakeError as exc:
            if exc.status == 404:
                return meta_error(400, 100, "Invalid parameter", f"unknown phone number id {phone_number_id}")
            code = 131047 if "131047" in str(exc) else (131026 if exc.field == "to" else 100)
            return meta_error(400, code, "Message could not be accepted", str(exc))
        except ValueError as exc:
            return meta_error(400, 100, "Invalid parameter", str(exc))
        return JSONResponse({
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": message.to}],
            "messages": [{"id": message.id, "message_status": "accepted"}],
        })

    async def upload(self, tenant: Tenant, phone_number_id: str, raw: bytes, content_type: str) -> JSONResponse:
        """``POST /{number}/media``: the app uploads what it will send by media id; relayed, and the
        id it gets recorded as the tenant's (so it may fetch or delete it later)."""
        response, answer = await self._relay(tenant, phone_number_id, "media", raw, content_type)
        media_id = answer.get("id") if response.status_code == 200 else None
        if isinstance(media_id, str | int) and str(media_id):
            await self.intake.store.add_media([(str(media_id), tenant.id)], self.intake.clock.now())
        return response

    async def account(self, tenant: Tenant, method: str, path: str, query: str, raw: bytes,
                      content_type: str) -> JSONResponse:
        """The rest of the Graph API on the tenant's own account, relayed as it is: its numbers
        (``GET /{number}``, ``/{number}/whatsapp_business_profile``, registration...) and its WABAs
        (a sender's ``portfolio_id``: ``/{waba}/message_templates``, ``/phone_numbers``...). An id
        that is not the tenant's gets Meta's answer for a missing object: it tells nothing. The
        app's own ``access_token`` is dropped from the query (tiergate calls with its own), and so
        are ``ids``/``id``: only the tenant's own objects are read."""
        node, _, edge = path.partition("/")
        if edge and not _EDGE.match(edge):  # "..", "." would climb to the Graph root (and its ?ids=)
            return meta_error(400, 100, "Invalid parameter", f"unknown edge {edge!r} of object '{node}'")
        if not await self.owns(tenant, node):
            return _missing(method, node)
        return await self._relay_account(tenant, method, path, query, raw, content_type)

    async def get_object(self, tenant: Tenant, object_id: str, query: str, download_url: str) -> JSONResponse:
        """``GET /{id}``: one of the tenant's numbers or WABAs (relayed with the query), else a media
        object the tenant uploaded or was sent (``media``). Ownership is read once."""
        if await self.owns(tenant, object_id):
            return await self._relay_account(tenant, "GET", object_id, query, b"", "")
        return await self.media(tenant, "GET", object_id, download_url)

    async def _relay_account(self, tenant: Tenant, method: str, path: str, query: str, raw: bytes,
                             content_type: str) -> JSONResponse:
        """``account``'s relay, for a path whose object is the tenant's."""
        kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in _DROPPED_PARAMS]
        status, answer = await self.provider.relay(method, path, raw, content_type if raw else "", urlencode(kept))
        if status == 200 and path.endswith("/message_templates") and method in ("GET", "POST"):
            learned = _categories(answer.get("data") if method == "GET" else [{**(json_object(raw) or {}), **answer}])
            if learned:
                await self.intake.store.set_template_categories(tenant.id, learned, self.intake.clock.now())
        return JSONResponse(answer, status_code=status)

    async def owns(self, tenant: Tenant, node: str) -> bool:
        """Whether ``node`` is one of the tenant's numbers or WABAs."""
        return any(node in (s.id, s.portfolio_id) for s in await self.intake.store.list_senders(tenant.id))

    async def media(self, tenant: Tenant, method: str, media_id: str, download_url: str) -> JSONResponse:
        """``GET`` or ``DELETE /{media-id}`` of a media id the tenant uploaded or was sent. The
        platform's download URL wants the platform's token, which the app does not hold: the answer
        points at tiergate's ``download_url`` instead, which fetches it."""
        refused = await self._not_owned(tenant, method, media_id)
        if refused is not None:
            return refused
        status, answer = await self.provider.relay(method, media_id)
        if method == "GET" and status == 200 and isinstance(answer.get("url"), str):
            answer = {**answer, "url": download_url}
        return JSONResponse(answer, status_code=status)

    async def download(self, tenant: Tenant, media_id: str) -> Response:
        """The media file itself, fetched from where the platform keeps it (with tiergate's token)."""
        refused = await self._not_owned(tenant, "GET", media_id)
        if refused is not None:
            return refused
        status, answer = await self.provider.relay("GET", media_id)
        url = answer.get("url")
        if status != 200 or not isinstance(url, str):
            return JSONResponse(answer, status_code=status if status >= 400 else 502)
        status, data, content_type = await self.provider.download(url)
        if status != 200:
            return meta_error(502 if status < 500 else status, 131052, "Media download error",
                              f"the platform's media URL answered HTTP {status}")
        return Response(data, media_type=content_type)

    async def _not_owned(self, tenant: Tenant, method: str, media_id: str) -> JSONResponse | None:
        """Meta's own answer for a missing object, for an id that is not this tenant's: a foreign id
        tells nothing."""
        if media_id.isdigit() and len(media_id) <= 40 and await self.intake.store.media_tenant(media_id) == tenant.id:
            return None
        return _missing(method, media_id)

    async def _relay(self, tenant: Tenant, phone_number_id: str, edge: str, raw: bytes,
                     content_type: str) -> tuple[JSONResponse, dict[str, Any]]:
        """No message to anyone (a read receipt, a typing indicator, a media upload): it takes no
        tier capacity and no queue, so it goes to the platform at once, exactly as the app sent it,
        and the platform's answer comes back as it gave it. Only for the tenant's own numbers."""
        try:
            await self.intake.sender_of(tenant, phone_number_id)
        except IntakeError:
            return meta_error(400, 100, "Invalid parameter", f"unknown phone number id {phone_number_id}"), {}
        status, answer = await self.provider.relay("POST", f"{phone_number_id}/{edge}", raw, content_type)
        return JSONResponse(answer, status_code=status), answer
