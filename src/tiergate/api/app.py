"""The HTTP API: FastAPI over the gateway's services. Parse, authenticate, render; no logic here."""


import csv
import io
import logging
import re
import secrets
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any
from urllib.parse import urlsplit

import orjson
from fastapi import Depends, FastAPI, File, Form, Header, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tiergate.adapters.outbound import is_private_address
from tiergate.api import schemas as s
from tiergate.core.admission import CSW_SPAN
from tiergate.core.model import CAMPAIGN_STATES, MessageState
from tiergate.ports import NotFound
from tiergate.service.auth import Principal
from tiergate.service.dropin import meta_error
from tiergate.service.exports import campaign_messages_csv
from tiergate.service.gateway import Gateway
from tiergate.service.intake import CampaignRequest, IntakeError, MessageRequest, SenderRequest, normalize_phone
from tiergate.service.metrics import METRICS
from tiergate.service.operator_views import workers_view
from tiergate.service.views import campaign_view, message_view, sender_view

log = logging.getLogger(__name__)

__all__ = ["ApiError", "create_app", "owned"]


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None, details: list[Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers
        self.details = details


async def owned(fetch: Callable[[str], Awaitable[Any]], what: str, object_id: str, tenant_id: str) -> Any:
    """The caller's own object, or a 404 worded exactly like a missing id: a foreign id tells nothing."""
    try:
        obj = await fetch(object_id)
    except NotFound:
        obj = None
    if obj is None or obj.tenant_id != tenant_id:
        raise ApiError(404, f"{what} {object_id!r} not found")
    return obj


# The drop-in's refusals before its own handler runs (the key, the rate limit), as the Graph API words them.
_GRAPH_ERRORS = {401: (190, "Invalid OAuth access token - Cannot parse access token"),
                 403: (10, "Application does not have permission for this action"),
                 429: (80007, "Rate limit issues"),
                 500: (1, "An unknown error occurred"),
                 503: (2, "Service temporarily unavailable")}

MEDIA_MAX_BYTES = 100 * 1024 * 1024 + 64 * 1024  # the platform's largest (a document) and the form around it
_JSON_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
_ERROR_CODES = (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)  # every route may answer these, in JSON
_TYPE_MISMATCH = frozenset({"string_type", "dict_type", "model_type", "model_attributes_type", "list_type",
                            "int_type", "float_type", "bool_type", "none_required"})


def _is_branch(part: Any) -> bool:
    """A union member's tag in an error's location (``str``, ``RecipientIn``), not a field name."""
    return isinstance(part, str) and (part in ("str", "int", "float", "bool", "dict", "list", "none")
                                      or part[:1].isupper() or "[" in part)


def _telling(details: list[dict[str, Any]]) -> dict[str, Any]:
    """The error to lead with. A value that fits none of a union's members fails each one; "should
    be a valid string" says little about an object whose field is wrong, so prefer the member it
    was meant for (the one that failed on something other than its type)."""
    first = details[0]
    if first.get("type") not in _TYPE_MISMATCH or not any(_is_branch(p) for p in first["loc"]):
        return first
    def path(error: dict[str, Any]) -> list[Any]:
        return [p for p in error["loc"] if not _is_branch(p)]

    field = path(first)
    for other in details[1:]:
        if other.get("type") not in _TYPE_MISMATCH and path(other)[:len(field)] == field:
            return other
    return first


_GRAPH_PATHS = ("tiergate's drop-in takes POST /{version}/{phone_number_id}/messages (messages, read receipts), "
                "POST /{version}/{phone_number_id}/media, GET or DELETE /{version}/{media_id}, and GET, POST or "
                "DELETE /{version}/{id} and /{version}/{id}/{edge} for the tenant's own phone numbers and WABAs "
                "(business profile, message templates...)")


def _graph_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The drop-in's errors: an app written for Meta parses Meta's error object and codes."""
    code, title = _GRAPH_ERRORS.get(status, (100, "Invalid parameter"))
    response = meta_error(status, code, title, message)
    response.headers.update(headers or {})
    return response


def _error(status: int, message: str, field: str | None = None, details: list[Any] | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"message": message}
    if field:
        body["field"] = field
    if details:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


class BodyLimit:
    """Refuses request bodies over a size (413) before the app reads them; webhooks, campaign CSVs and
    media uploads get more room."""

    def __init__(self, app: ASGIApp, default: int, webhook: int) -> None:
        self.app = app
        self.default = default
        self.webhook = webhook

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.webhook if scope["path"].startswith("/webhooks/") else self.default
        if scope["path"].startswith("/v1/campaigns"):
            limit = max(limit, 50_000_000)
        elif scope["path"].startswith("/graph/") and scope["path"].endswith("/media"):
            limit = max(limit, MEDIA_MAX_BYTES)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            over = _graph_error if scope["path"].startswith("/graph/") else _error
            await over(413, f"request body over {limit} bytes")(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # an HTTPException: FastAPI passes it through where it turns other errors into a 400
                    raise HTTPException(413, f"request body over {limit} bytes")
            return message

        await self.app(scope, limited, send)


class CsvCampaigns:
    """``POST /v1/campaigns`` with a multipart body is the CSV upload (``/v1/campaigns/csv``): one
    address for both ways of giving an audience, a JSON list or a file. Without this, a form posted
    there got pydantic's "Input should be a valid dictionary" about its body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and scope["method"] == "POST" and scope["path"].rstrip("/") == "/v1/campaigns"
                and dict(scope.get("headers") or []).get(b"content-type", b"").lower().startswith(
                    b"multipart/form-data")):
            scope = {**scope, "path": "/v1/campaigns/csv", "raw_path": b"/v1/campaigns/csv"}
        await self.app(scope, receive, send)


class StoreFailures:
    """A request the database could not serve just now (``Store.is_unavailable``: disk full, locked,
    connection lost) is answered 503 with Retry-After: the caller retries, and nothing is half-written
    (each call is one transaction). Anything else is a bug: a JSON 500, then the error goes on to be
    logged with its traceback."""

    def __init__(self, app: ASGIApp, is_unavailable: Callable[[BaseException], bool]) -> None:
        self.app, self.is_unavailable = app, is_unavailable

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            if started:
                raise
            graph = scope["path"].startswith("/graph/")
            if self.is_unavailable(exc):
                log.warning("%s %s: the database is unavailable (%s: %s); answered 503", scope["method"],
                            scope["path"], type(exc).__name__, exc)
                said = f"the database is unavailable just now ({_first_line(exc)}); the request did not go in: retry"
                headers = {"Retry-After": "2"}
                response = _graph_error(503, said, headers) if graph else _error(503, said, headers=headers)
                await response(scope, receive, send)
                return
            said = "internal error: the server logged it"
            response = _graph_error(500, said) if graph else _error(500, said)
            await response(scope, receive, send)
            raise


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


class RateLimiter:
    """A sliding one-minute window of requests per API key (429 with Retry-After beyond it)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.hits: dict[str, deque[float]] = defaultdict(deque)

    def check(self, key_id: str) -> float | None:
        if self.per_minute <= 0:  # 0: no limit
            return None
        now = time.monotonic()
        q = self.hits[key_id]
        while q and q[0] <= now - 60:
            q.popleft()
        if len(q) >= self.per_minute:
            return 60 - (now - q[0])
        q.append(now)
        return None


# How pydantic says that a body is not an object at all (an array, a string, a form, nothing).
_NOT_AN_OBJECT = frozenset({"model_attributes_type", "dict_type", "model_type", "missing"})


class _StrictJsonRequest(Request):
    """JSON bodies decoded by orjson: lone surrogates and numbers beyond a double are a 422 here,
    instead of a 500 later, when such a value reaches the database or the platform."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())  # orjson.JSONDecodeError is a json.JSONDecodeError
        return self._json


class _StrictJsonRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            return await handler(_StrictJsonRequest(request.scope, request.receive))

        return route


# A security scheme, not a header parameter: the schema says how to authenticate, and clients and
# schemathesis send the key instead of generating Authorization values.
bearer = HTTPBearer(auto_error=False, description="An API key: 'Authorization: Bearer <key>'")


_MESSAGE_STATES = tuple(x.value for x in MessageState)


def _state_filter(state: str | None, allowed: tuple[str, ...]) -> None:
    """A list's ``state`` filter, if given, is one of ``allowed`` (a 422 naming them otherwise)."""
    if state is not None and state not in allowed:
        raise ApiError(422, f"state: one of {', '.join(allowed)}", "state")


class CsvResponse(StreamingResponse):
    media_type = "text/csv; charset=utf-8"


def create_app(gateway: Gateway, *, lifespan: Callable[[FastAPI], Any] | None = None) -> FastAPI:
    settings = gateway.settings
    app = FastAPI(
        title="tiergate",
        version="0.1.0",
        description="Governed sending for the WhatsApp Business Platform.",
        lifespan=lifespan,
        responses={code: {"model": s.ErrorResponse} for code in _ERROR_CODES},
    )
    app.state.gateway = gateway
    app.router.route_class = _StrictJsonRoute
    app.add_middleware(StoreFailures, is_unavailable=gateway.store.is_unavailable)
    app.add_middleware(CsvCampaigns)
    app.add_middleware(BodyLimit, default=settings.max_body_bytes, webhook=settings.max_webhook_bytes)
    limiter = RateLimiter(settings.rate_limit_per_minute)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        if request.url.path.startswith("/graph/"):
            return _graph_error(exc.status, exc.message, exc.headers)
        return _error(exc.status, exc.message, exc.field, exc.details, headers=exc.headers)

    @app.exception_handler(IntakeError)
    async def _intake_error(_: Request, exc: IntakeError) -> JSONResponse:
        return _error(exc.status, str(exc), exc.field)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "").removeprefix("Value error, "),
                    "type": e.get("type", "")} for e in exc.errors()]
        first = _telling(details) if details else {"loc": [], "msg": "invalid request"}
        if first["loc"] == ["body"] and first.get("type") in _NOT_AN_OBJECT:
            # The body as a whole: say what to send, not pydantic's "a valid dictionary".
            media = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if media and media != "application/json" and not media.endswith("+json"):
                return _error(415, f"send the body as JSON (Content-Type: application/json), not {media}",
                              details=details)
            return _error(422, "the body must be a JSON object" if first["type"] != "missing"
                          else "a JSON object is required as the body (Content-Type: application/json)",
                          details=details)
        if first.get("type") == "json_invalid":  # loc holds a character position, not a field
            why = (exc.errors()[0].get("ctx") or {}).get("error", "")
            return _error(422, f"the body is not valid JSON (character {first['loc'][-1]}): {why}".rstrip(": "),
                          details=details)
        where = ".".join(str(p) for p in first["loc"][1:] if not _is_branch(p)) or None
        return _error(422, f"{where + ': ' if where else ''}{first['msg']}", where, details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if request.url.path.startswith("/graph/"):  # an unknown Graph path, a body over the limit
            detail = (_GRAPH_PATHS if exc.status_code in (404, 405) else "") or str(exc.detail)
            return _graph_error(exc.status_code, detail, getattr(exc, "headers", None))
        return _error(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    async def principal(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
        if credentials is None:
            raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>'",
                           headers={"WWW-Authenticate": "Bearer"})
        who = await gateway.auth.authenticate(credentials.credentials.strip())
        if who is None:
            raise ApiError(401, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"})
        retry = limiter.check(who.key_id)
        if retry is not None:
            raise ApiError(429, "too many requests for this API key", headers={"Retry-After": str(int(retry) + 1)})
        return who

    Who = Annotated[Principal, Depends(principal)]

    async def admin(who: Who) -> Principal:
        if not who.is_admin:
            raise ApiError(403, "this needs an admin key")
        return who

    Admin = Annotated[Principal, Depends(admin)]

    def now() -> float:
        return gateway.clock.now()

    async def own_sender(who: Principal, sender_id: str) -> Any:
        return await owned(gateway.store.get_sender, "sender", sender_id, who.tenant.id)

    # -- health and metrics ------------------------------------------------------------------
    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, Any]:
        versions = await gateway.store.schema_versions()  # not a count: a health check reads little
        return {"status": "ok", "provider": gateway.provider.name, "time": now(), "schema": versions[-1]}

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    async def metrics() -> Response:
        await gateway.refresh_gauges()
        return Response(generate_latest(METRICS.registry), media_type="text/plain; version=0.0.4")

    # -- senders -----------------------------------------------------------------------------
    @app.post("/v1/senders", status_code=201, response_model=s.SenderOut, tags=["senders"])
    async def create_sender(body: s.SenderIn, who: Who) -> Any:
        sender = await gateway.intake.register_sender(who.tenant, SenderRequest(
            phone_number_id=body.phone_number_id, display_phone_number=body.display_phone_number,
            portfolio_id=body.portfolio_id, tier=str(body.tier), quality=body.quality, policy=body.policy,
            throughput_mps=body.throughput_mps, timezone=body.timezone, reserve_fraction=body.reserve_fraction,
            trust_model=body.trust_model))
        gateway.dispatcher.wake()
        return await sender_view(gateway.store, sender, now())

    @app.get("/v1/senders", response_model=list[s.SenderOut], tags=["senders"])
    async def list_senders(who: Who) -> Any:
        return [await sender_view(gateway.store, x, now(), with_forecast=False)
                for x in await gateway.store.list_senders(who.tenant.id)]

    @app.get("/v1/senders/{sender_id}", response_model=s.SenderOut, tags=["senders"])
    async def get_sender(sender_id: str, who: Who) -> Any:
        return await sender_view(gateway.store, await own_sender(who, sender_id), now())

    @app.patch("/v1/senders/{sender_id}", response_model=s.SenderOut, tags=["senders"])
    async def patch_sender(sender_id: str, body: s.SenderPatch, who: Who) -> Any:
        sender = await own_sender(who, sender_id)
        try:
            sender = await gateway.state.operator_update(sender, body.model_dump(exclude_none=True))
        except ValueError as exc:
            raise ApiError(422, str(exc)) from None
        return await sender_view(gateway.store, sender, now())

    @app.get("/v1/senders/{sender_id}/events", tags=["senders"])
    async def sender_events(sender_id: str, who: Who, limit: int = Query(100, ge=1, le=1000)) -> Any:
        await own_sender(who, sender_id)
        return await gateway.store.sender_events(sender_id, limit)

    # -- messages ----------------------------------------------------------------------------
    def _message_request(body: s.MessageIn) -> MessageRequest:
        if body.template is None and body.text is None:
            raise IntakeError("give either 'template' or 'text'", field="template")
        if body.template is not None and body.text is not None:
            raise IntakeError("give 'template' or 'text', not both", field="text")
        return MessageRequest(
            sender=body.sender, to=body.to, template=body.template.model_dump() if body.template else None,
            text=body.text, category=body.category, idempotency_key=body.idempotency_key,
            expires_at=body.expires_at, not_before=body.not_before, metadata=body.metadata)

    @app.post("/v1/messages", status_code=202, response_model=s.MessageOut, tags=["messages"])
    async def post_message(body: s.MessageIn, who: Who) -> Any:
        message = await gateway.intake.submit(who.tenant, _message_request(body))
        gateway.dispatcher.wake()
        return message_view(message)

    @app.post("/v1/messages/batch", status_code=202, response_model=s.MessageBatchOut, tags=["messages"])
    async def post_messages(body: s.MessageBatchIn, who: Who) -> Any:
        """Up to 1,000 messages in one request and one transaction (what an app with many
        notifications to send wants: one round trip, not one per message). Each is checked on its
        own: a refused one is reported by its row (from 1) and the rest are queued."""
        results: list[Any] = [None] * len(body.messages)
        requests: list[tuple[int, MessageRequest]] = []
        for i, item in enumerate(body.messages):
            try:
                requests.append((i, _message_request(item)))
            except IntakeError as exc:
                results[i] = exc
        queued = await gateway.intake.submit_many(who.tenant, [r for _, r in requests]) if requests else []
        for (i, _), result in zip(requests, queued, strict=True):
            results[i] = result
        errors = [{"row": i, "error": str(r)} for i, r in enumerate(results, start=1) if isinstance(r, IntakeError)]
        accepted = [None if isinstance(r, IntakeError) else message_view(r) for r in results]
        if len(errors) == len(results):
            raise ApiError(422, f"no message was accepted: row {errors[0]['row']}: {errors[0]['error']}", "messages",
                           details=errors)
        gateway.dispatcher.wake()
        return {"accepted": len(results) - len(errors), "messages": accepted, "row_errors": errors}

    @app.get("/v1/messages/{message_id}", response_model=s.MessageOut, tags=["messages"])
    async def get_message(message_id: str, who: Who) -> Any:
        m = await owned(gateway.store.get_message, "message", message_id, who.tenant.id)
        return message_view(m, await gateway.store.message_history(m.id))

    @app.post("/v1/messages/{message_id}/cancel", response_model=s.MessageOut, tags=["messages"],
              responses={409: _JSON_ERROR})
    async def cancel_message(message_id: str, who: Who) -> Any:
        """A message still waiting (``queued``, or ``held`` by a paused campaign) is ``canceled``; a
        message in any other state is a 409 that says which. One the dispatcher has already taken
        for sending at that moment may still go, and then shows as sent."""
        m = await owned(gateway.store.get_message, "message", message_id, who.tenant.id)
        if not await gateway.store.cancel_message(m.id, now(), "canceled through the API"):
            m = await gateway.store.get_message(m.id)
            raise ApiError(409, f"message {m.id} is {m.state.value}: only a queued or held message can be canceled",
                           "state")
        m = await gateway.store.get_message(m.id)
        return message_view(m, await gateway.store.message_history(m.id))

    @app.get("/v1/messages", response_model=list[s.MessageOut], tags=["messages"])
    async def list_messages(
        who: Who, campaign_id: str | None = None, state: str | None = None,
        to: str | None = Query(None, max_length=32, description="only the messages to this number (E.164)"),
        limit: int = Query(100, ge=1, le=1000),
        before: str | None = Query(None, max_length=64, description="the last id of the previous page"),
    ) -> Any:
        """Newest first. For the next page, pass the last id of this one as ``before``."""
        _state_filter(state, _MESSAGE_STATES)
        return [message_view(m) for m in await gateway.store.list_messages(
            who.tenant.id, campaign_id=campaign_id, state=state, limit=limit, before=before,
            recipient=None if to is None else normalize_phone(to))]

    # -- campaigns ---------------------------------------------------------------------------
    async def _create_campaign(who: Principal, req: CampaignRequest) -> Any:
        if len(req.recipients) > settings.max_campaign_recipients:
            raise ApiError(413, f"at most {settings.max_campaign_recipients} recipients per request", "recipients")
        campaign, errors = await gateway.campaigns.create(who.tenant, req)
        gateway.dispatcher.wake()
        view = await campaign_view(gateway.store, campaign, now())
        view["row_errors"] = [{"row": e.row, "error": e.error} for e in errors]
        return view

    @app.post("/v1/campaigns", status_code=201, response_model=s.CampaignOut, tags=["campaigns"])
    async def post_campaign(body: s.CampaignIn, who: Who) -> Any:
        """A campaign to a JSON list of recipients. The same address takes a CSV file as
        ``multipart/form-data`` (the form of ``POST /v1/campaigns/csv``)."""
        recipients = [{"to": r} if isinstance(r, str) else r.model_dump(exclude_none=True)
                      for r in body.recipients]
        return await _create_campaign(who, CampaignRequest(
            sender=body.sender, template=body.template.model_dump(), recipients=recipients, name=body.name,
            category=body.category, start_at=body.start_at, deadline=body.deadline,
            quiet_hours=body.quiet_hours, pacing=body.pacing, spread_days=body.spread_days))

    @app.post("/v1/campaigns/csv", status_code=201, response_model=s.CampaignOut, tags=["campaigns"])
    async def post_campaign_csv(
        who: Who,
        file: Annotated[UploadFile, File(description="CSV: a 'to' column, optional 'param1'..'paramN'")],
        sender: Annotated[str, Form()],
        template: Annotated[str, Form()],
        language: Annotated[str, Form()] = "en_US",
        category: Annotated[str, Form()] = "MARKETING",
        name: Annotated[str, Form()] = "",
        start_at: Annotated[str | None, Form(description="epoch seconds or ISO 8601 with offset")] = None,
        deadline: Annotated[str | None, Form(description="epoch seconds or ISO 8601 with offset")] = None,
        pacing: Annotated[str, Form()] = "fastest",
        spread_days: Annotated[int | None, Form()] = None,
        quiet_hours: Annotated[str | None, Form(description="'21-8': none 21:00-08:00, recipient's time")] = None,
    ) -> Any:
        for field, value, check in (("template", template, s.template_name),
                                    ("language", language, s.template_language)):
            try:
                check(value)
            except ValueError as exc:
                raise ApiError(422, f"{field}: {exc}", field) from None
        raw = await file.read()
        start, end = form_time(start_at, "start_at"), form_time(deadline, "deadline")
        quiet = form_hours(quiet_hours)
        rows, row_errors = parse_recipients_csv(raw, settings.max_campaign_recipients)
        if not rows and row_errors:
            first = row_errors[0]
            raise ApiError(422, f"no valid recipients: row {first['row']}: {first['error']}"
                           + (f" (and {len(row_errors) - 1} more rows)" if len(row_errors) > 1 else ""), "file")
        result = await _create_campaign(who, CampaignRequest(
            sender=sender, template={"name": template, "language": language}, recipients=rows, name=name,
            category=category, start_at=start, deadline=end, pacing=pacing, spread_days=spread_days,
            quiet_hours=quiet))
        result["row_errors"] = sorted(row_errors + result["row_errors"], key=lambda e: e["row"])
        return result

    def form_time(value: str | None, field: str) -> float | None:
        if value is None or not value.strip():
            return None
        try:
            return s.checked_time(float(s.parse_timestamp(value)))
        except ValueError as exc:
            raise ApiError(422, f"{field}: {exc}", field) from None

    def form_hours(value: str | None) -> tuple[int, int] | None:
        """``21-8`` (or ``21,8``): no sends from 21:00 to 08:00 in each recipient's local time."""
        if value is None or not value.strip():
            return None
        parts = value.replace(",", "-").split("-")
        try:
            start, end = (int(p) for p in parts)
        except ValueError:
            raise ApiError(422, f"quiet_hours: {value!r} is not two hours like 21-8", "quiet_hours") from None
        return start, end  # intake checks the range

    async def own_campaign(who: Principal, campaign_id: str) -> Any:
        return await owned(gateway.store.get_campaign, "campaign", campaign_id, who.tenant.id)

    @app.get("/v1/campaigns", response_model=list[s.CampaignOut], tags=["campaigns"])
    async def list_campaigns(
        who: Who,
        sender: str | None = Query(None, max_length=64, description="only this sender's (its phone_number_id)"),
        state: str | None = Query(None, description=f"only those {' | '.join(CAMPAIGN_STATES)}"),
        limit: int = Query(100, ge=1, le=1000),
        before: str | None = Query(None, max_length=64, description="the last id of the previous page"),
    ) -> Any:
        """Newest first, a page at a time (each campaign's totals are counted as it is shown). For the
        next page, pass the last id of this one as ``before``."""
        _state_filter(state, CAMPAIGN_STATES)
        found = await gateway.store.list_campaigns(who.tenant.id, sender_id=sender, state=state, limit=limit,
                                                   before=before)
        return [await campaign_view(gateway.store, c, now()) for c in found]

    @app.get("/v1/campaigns/{campaign_id}", response_model=s.CampaignOut, tags=["campaigns"])
    async def get_campaign(campaign_id: str, who: Who) -> Any:
        return await campaign_view(gateway.store, await own_campaign(who, campaign_id), now())

    @app.get("/v1/campaigns/{campaign_id}/messages.csv", tags=["campaigns"], response_class=CsvResponse,
             responses={200: {"content": {"text/csv": {}}, "description": "one row per message, newest first"},
                        **{code: _JSON_ERROR for code in _ERROR_CODES}})
    async def campaign_messages(
        campaign_id: str, who: Who,
        state: str | None = Query(None, description="only the messages in this state (e.g. failed)"),
    ) -> Response:
        """The campaign's messages as CSV: recipient, state, reason, error code and detail, wamid,
        attempts and times (ISO 8601 UTC), streamed a page at a time whatever the campaign's size."""
        c = await own_campaign(who, campaign_id)
        _state_filter(state, _MESSAGE_STATES)
        return CsvResponse(campaign_messages_csv(gateway.store, who.tenant.id, c.id, state),
                           headers={"Content-Disposition": f'attachment; filename="{c.id}-messages.csv"'})

    def _campaign_action(action: str) -> Callable[[str, Principal], Awaitable[Any]]:
        async def handler(campaign_id: str, who: Who) -> Any:
            c = await own_campaign(who, campaign_id)
            try:
                c = await gateway.campaigns.act(c, action)
            except ValueError as exc:
                raise ApiError(409, str(exc)) from None
            gateway.dispatcher.wake()
            return await campaign_view(gateway.store, c, now())

        handler.__name__ = f"campaign_{action}"
        return handler

    for action in ("pause", "resume", "cancel"):
        app.post(f"/v1/campaigns/{{campaign_id}}/{action}", response_model=s.CampaignOut,
                 tags=["campaigns"])(_campaign_action(action))

    # -- recipients --------------------------------------------------------------------------
    def consent_time(at: float | None, field: str) -> float:
        """When the consent was given or withdrawn: now, or an earlier time (an import)."""
        current = now()
        if at is None:
            return current
        if at > current + 300:
            raise ApiError(422, f"{field}: in the future; give when the recipient actually answered", field)
        return at

    # -- template categories ------------------------------------------------------------------
    def template_out(name: str, language: str, category: str, updated_at: float) -> dict[str, Any]:
        return {"name": name, "language": language, "category": category, "updated_at": updated_at}

    @app.get("/v1/templates", response_model=list[s.TemplateCategoryOut], tags=["templates"])
    async def list_templates(who: Who) -> Any:
        """The category tiergate knows for each of the tenant's templates (learned from template
        calls through the drop-in and the platform's template webhooks, or set here). A template
        message sent without a category goes as this one; an unknown template as MARKETING."""
        return [template_out(*row) for row in await gateway.store.list_template_categories(who.tenant.id)]

    @app.put("/v1/templates", response_model=s.TemplateCategoryOut, tags=["templates"])
    async def set_template(body: s.TemplateCategoryIn, who: Who) -> Any:
        """Tell tiergate a template's category, for one it has not seen (created in Meta's own tools
        with the cloud provider, say). A later recategorization by the platform replaces it."""
        at = now()
        await gateway.store.set_template_categories(who.tenant.id, [(body.name, body.language, body.category)], at)
        return template_out(body.name, body.language, body.category, at)

    @app.post("/v1/recipients/opt-ins", response_model=s.OptInImportOut, tags=["recipients"])
    async def import_opt_ins(body: s.OptInImport, who: Who) -> Any:
        """Import opt-ins collected elsewhere (a list of numbers, or objects with their own time and
        source). A bad row is reported by its number (from 1) and the rest are imported, in one
        transaction: all of them or, if the store fails, none."""
        if len(body.recipients) > settings.max_campaign_recipients:
            raise ApiError(413, f"at most {settings.max_campaign_recipients} recipients per request", "recipients")
        default_at = consent_time(body.opted_in_at, "opted_in_at")
        entries: list[tuple[str, float, str]] = []
        errors: list[dict[str, Any]] = []
        for row, item in enumerate(body.recipients, start=1):
            to, own_at, own_source = (item, None, None) if isinstance(item, str) else (
                item.to, item.opted_in_at, item.source)
            try:
                number = normalize_phone(to)
                at = default_at if own_at is None else consent_time(own_at, "opted_in_at")
            except (IntakeError, ApiError) as exc:
                errors.append({"row": row, "error": str(exc) if isinstance(exc, IntakeError) else exc.message})
                continue
            entries.append((number, at, own_source or body.source))
        if not entries:
            raise ApiError(422, f"no valid recipients: row {errors[0]['row']}: {errors[0]['error']}", "recipients")
        return {"imported": await gateway.store.set_opt_ins(who.tenant.id, entries), "row_errors": errors}

    @app.post("/v1/recipients/{to}/opt-in", status_code=204, tags=["recipients"])
    async def opt_in(to: str, who: Who, body: s.OptIn | None = None) -> Response:
        body = body or s.OptIn()
        await gateway.store.set_opt_in(who.tenant.id, normalize_phone(to),
                                       consent_time(body.opted_in_at, "opted_in_at"), body.source)
        return Response(status_code=204)

    @app.post("/v1/recipients/{to}/opt-out", status_code=204, tags=["recipients"])
    async def opt_out(to: str, who: Who, body: s.OptOut | None = None) -> Response:
        body = body or s.OptOut()
        await gateway.store.set_opt_out(who.tenant.id, normalize_phone(to),
                                        consent_time(body.opted_out_at, "opted_out_at"), body.source)
        return Response(status_code=204)

    @app.get("/v1/recipients/{to}", response_model=s.RecipientOut, tags=["recipients"])
    async def get_recipient(to: str, who: Who) -> Any:
        """What governs sends to this number: its consent and each sender's service window."""
        number = normalize_phone(to)
        flags = (await gateway.store.recipient_flags(who.tenant.id, [number])).get(number)
        current = now()
        windows = []
        for sender in await gateway.store.list_senders(who.tenant.id):
            last = (await gateway.store.last_inbound(sender.id, [number])).get(number)
            if last is not None:
                windows.append({"sender": sender.id, "last_inbound_at": last, "open_until": last + CSW_SPAN,
                                "open": last + CSW_SPAN > current})
        return {"to": number, "opted_in_at": flags.opted_in_at if flags else None,
                "opted_out_at": flags.opted_out_at if flags else None,
                "marketing_allowed": not (flags and flags.opted_out_at is not None)
                and not (who.tenant.require_opt_in and (flags is None or flags.opted_in_at is None)),
                "service_windows": windows}

    # -- forwarding the platform's webhooks to the tenant's app ---------------------------------
    async def webhook_view(tenant: Any, secret: str | None = None) -> dict[str, Any]:
        seen = await gateway.store.forward_counts(tenant.id)
        counts = seen["counts"]
        return {"url": tenant.webhook_url, "secret": secret, "last_error": seen["last_error"],
                "last_delivered_at": seen["last_delivered_at"],
                **{state: counts.get(state, 0) for state in ("pending", "delivered", "failed", "canceled")}}

    @app.put("/v1/webhook", response_model=s.WebhookOut, tags=["webhooks"])
    async def set_webhook(body: s.WebhookIn, who: Who) -> Any:
        """Forward the platform's webhooks about this tenant's numbers (inbound messages, statuses)
        to ``url``, in Meta's shape and signed as Meta signs, so the app keeps hearing them."""
        parts = urlsplit(body.url.strip())
        try:
            port_ok = parts.port is None or parts.port > 0
        except ValueError:  # a port beyond 65535, or not a number
            port_ok = False
        # Whitespace or control characters would only fail at delivery (and a CR/LF could be read
        # as a header by a careless client): refused now.
        unsafe = any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in body.url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok or unsafe:
            raise ApiError(422, f"url: {body.url[:200]!r} is not an http:// or https:// URL"
                                + (" (it holds a space or a control character)" if unsafe else ""), "url")
        if not settings.forward_private_urls and (parts.hostname in ("localhost", "localhost.localdomain")
                                                  or is_private_address(parts.hostname)):
            raise ApiError(422, f"url: {parts.hostname} is a private address, refused on this deployment "
                                "(TIERGATE_FORWARD_PRIVATE_URLS=0)", "url")
        secret = body.secret or secrets.token_urlsafe(32)
        tenant = await gateway.store.update_tenant(who.tenant.id, {"webhook_url": body.url.strip(),
                                                                   "webhook_secret": secret})
        gateway.forwarder.forget()
        return await webhook_view(tenant, None if body.secret else secret)

    @app.get("/v1/webhook", response_model=s.WebhookOut, tags=["webhooks"])
    async def get_webhook(who: Who) -> Any:
        return await webhook_view(await gateway.store.get_tenant(who.tenant.id))

    @app.post("/v1/webhook/test", response_model=s.WebhookTestOut, tags=["webhooks"], responses={409: _JSON_ERROR})
    async def test_webhook(who: Who) -> Any:
        """Post a sample status to the app now, signed as every forward is, and say whether it took
        it: for setting the app up (nothing is stored or retried)."""
        tenant = await gateway.store.get_tenant(who.tenant.id)
        if not tenant.webhook_url:
            raise ApiError(409, "no webhook URL is set: PUT /v1/webhook first", "url")
        error = await gateway.forwarder.test(tenant)
        return {"url": tenant.webhook_url, "delivered": error is None, "error": error}

    @app.delete("/v1/webhook", status_code=204, tags=["webhooks"])
    async def delete_webhook(who: Who) -> Response:
        """Stop forwarding; what was still waiting to go is dropped (counted as canceled)."""
        await gateway.store.update_tenant(who.tenant.id, {"webhook_url": None, "webhook_secret": ""})
        gateway.forwarder.forget()
        await gateway.store.cancel_forwards(who.tenant.id, now())
        return Response(status_code=204)

    # -- tenants and keys (admin) ------------------------------------------------------------
    def tenant_out(t: Any) -> dict[str, Any]:
        return {"id": t.id, "name": t.name, "require_opt_in": t.require_opt_in,
                "marketing_cap_24h": t.marketing_cap_24h, "stop_keywords": t.stop_keywords}

    @app.post("/v1/tenants", status_code=201, response_model=s.TenantOut, tags=["admin"])
    async def create_tenant(body: s.TenantIn, _: Admin) -> Any:
        try:
            t = await gateway.auth.create_tenant(body.name, require_opt_in=body.require_opt_in,
                                                 marketing_cap_24h=body.marketing_cap_24h)
        except ValueError as exc:
            raise ApiError(409, str(exc), "name") from None
        return tenant_out(t)

    @app.get("/v1/tenants", response_model=list[s.TenantOut], tags=["admin"])
    async def list_tenants(_: Admin) -> Any:
        return [tenant_out(t) for t in await gateway.store.list_tenants()]

    @app.get("/v1/workers", response_model=s.WorkersOut, tags=["admin"])
    async def list_workers(_: Admin) -> Any:
        """The dispatchers and the scopes each holds (scale-out): who sends for which number."""
        return await workers_view(gateway.store, gateway.dispatcher.wall.now(), gateway.dispatcher.config.max_scopes)

    @app.get("/v1/tenant", response_model=s.TenantOut, tags=["tenant"])
    async def my_tenant(who: Who) -> Any:
        return tenant_out(who.tenant)

    @app.patch("/v1/tenant", response_model=s.TenantOut, tags=["tenant"])
    async def patch_tenant(body: s.TenantPatch, who: Who) -> Any:
        t = await gateway.store.update_tenant(who.tenant.id, body.model_dump(exclude_none=True))
        gateway.dispatcher.invalidate_tenant(t.id)
        return tenant_out(t)

    def key_out(k: Any, plaintext: str | None = None) -> dict[str, Any]:
        return {"id": k.id, "tenant_id": k.tenant_id, "prefix": k.prefix, "is_admin": k.is_admin,
                "label": k.label, "created_at": k.created_at, "revoked_at": k.revoked_at, "key": plaintext}

    @app.post("/v1/keys", status_code=201, response_model=s.KeyOut, tags=["admin"])
    async def create_key(body: s.KeyIn, _: Admin) -> Any:
        try:
            k, plaintext = await gateway.auth.create_key(body.tenant_id, admin=body.admin, label=body.label)
        except NotFound:
            raise ApiError(404, f"tenant {body.tenant_id!r} not found", "tenant_id") from None
        return key_out(k, plaintext)

    @app.get("/v1/keys", response_model=list[s.KeyOut], tags=["admin"])
    async def list_keys(_: Admin) -> Any:
        return [key_out(k) for k in await gateway.store.list_api_keys()]

    @app.delete("/v1/keys/{key_id}", status_code=204, tags=["admin"])
    async def revoke_key(key_id: str, who: Admin) -> Response:
        if key_id == who.key_id:  # the last admin key would lock every admin out
            raise ApiError(409, "this is the key making the request: revoke it with another admin key or "
                                "`tiergate keys revoke`")
        try:
            await gateway.store.revoke_api_key(key_id, now())
        except NotFound:
            raise ApiError(404, f"key {key_id!r} not found") from None
        return Response(status_code=204)

    # -- the drop-in Cloud API endpoint --------------------------------------------------------
    @app.post("/graph/{version}/{phone_number_id}/messages", tags=["drop-in"])
    async def graph_messages(version: str, phone_number_id: str, request: Request, who: Who,
                             x_tiergate_category: Annotated[str | None, Header()] = None,
                             x_idempotency_key: Annotated[str | None, Header()] = None) -> JSONResponse:
        return await gateway.dropin.send(who.tenant, phone_number_id, await request.body(),
                                         x_tiergate_category, x_idempotency_key)

    @app.post("/graph/{version}/{phone_number_id}/media", tags=["drop-in"])
    async def graph_media(version: str, phone_number_id: str, request: Request, who: Who) -> JSONResponse:
        """Meta's media upload (multipart: ``messaging_product``, ``file``, ``type``), relayed to the
        platform for the tenant's own number; the answer's ``id`` goes in a message's media object."""
        return await gateway.dropin.upload(who.tenant, phone_number_id, await request.body(),
                                           request.headers.get("content-type", ""))

    @app.get("/graph/{version}/{media_id}", tags=["drop-in"])
    async def graph_object(version: str, media_id: str, request: Request, who: Who) -> JSONResponse:
        """One of the tenant's numbers or WABAs (relayed, with the query: ``?fields=...``), or a media
        object the tenant uploaded or was sent (its ``url`` is tiergate's download of it)."""
        url = str(request.url_for("graph_media_download", version=version, media_id=media_id))
        return await gateway.dropin.get_object(who.tenant, media_id, request.url.query, url)

    @app.delete("/graph/{version}/{media_id}", tags=["drop-in"])
    async def graph_media_delete(version: str, media_id: str, who: Who) -> JSONResponse:
        return await gateway.dropin.media(who.tenant, "DELETE", media_id, "")

    @app.get("/graph/{version}/{media_id}/download", tags=["drop-in"], name="graph_media_download",
             response_class=Response)
    async def graph_media_download(version: str, media_id: str, who: Who) -> Response:
        """The file of a media object (the platform's URL for it wants the platform's token)."""
        return await gateway.dropin.download(who.tenant, media_id)

    @app.get("/graph/{version}/{node_id}/{edge}", tags=["drop-in"])
    @app.post("/graph/{version}/{node_id}/{edge}", tags=["drop-in"])
    @app.delete("/graph/{version}/{node_id}/{edge}", tags=["drop-in"])
    async def graph_account(version: str, node_id: str, edge: str, request: Request, who: Who) -> JSONResponse:
        """The rest of the Graph API on the tenant's own numbers and WABAs (a sender's
        ``portfolio_id``), relayed as it is: business profile, message templates, phone numbers..."""
        return await gateway.dropin.account(who.tenant, request.method, f"{node_id}/{edge}", request.url.query,
                                            await request.body(), request.headers.get("content-type", ""))

    # -- platform webhooks -------------------------------------------------------------------

    @app.get("/webhooks/whatsapp", tags=["webhooks"], response_class=PlainTextResponse, responses={403: _JSON_ERROR})
    async def webhook_verify(
        hub_mode: Annotated[str | None, Query(alias="hub.mode")] = None,
        hub_verify_token: Annotated[str | None, Query(alias="hub.verify_token")] = None,
        hub_challenge: Annotated[str | None, Query(alias="hub.challenge")] = None,
    ) -> Response:
        if gateway.webhooks.verify_handshake(hub_mode, hub_verify_token):
            return PlainTextResponse(hub_challenge or "")
        return _error(403, "verification failed: hub.mode must be 'subscribe' and hub.verify_token must match")

    @app.post("/webhooks/whatsapp", tags=["webhooks"])
    async def webhook_receive(
        request: Request,
        x_hub_signature_256: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        started = time.perf_counter()
        raw = await request.body()
        status, message = await gateway.webhooks.receive(raw, x_hub_signature_256)
        METRICS.webhook_latency.observe(time.perf_counter() - started)
        if status >= 400:
            return _error(status, message)
        return JSONResponse({"status": "ok", "message": message})

    app.state.principal = principal  # extras (the dashboard) authenticate and rate-limit the same way
    gateway.mount_extras(app)
    return app


def _param_columns(header: list[str]) -> list[str]:
    """The template parameter columns in their order: ``param1`` .. ``paramN`` ({{1}} .. {{N}}),
    whatever order the file lists them in. A column that looks like one and is not (``param``,
    ``parameters_note``) or a gap in the numbers is a 422: guessing would send the wrong words."""
    numbered: dict[int, str] = {}
    for h in header:
        if not h.startswith("param"):
            continue
        match = re.fullmatch(r"param([1-9][0-9]{0,2})", h)
        if match is None:
            raise ApiError(422, f"column {h!r}: template parameters are columns param1, param2, ... (no other "
                                "column may start with 'param')", "file")
        numbered[int(match.group(1))] = h
    missing = [n for n in range(1, max(numbered, default=0) + 1) if n not in numbered]
    if missing:
        raise ApiError(422, f"column param{missing[0]} is missing: parameters are param1..param{max(numbered)}, "
                            "one column each", "file")
    return [numbered[n] for n in sorted(numbered)]


def parse_recipients_csv(raw: bytes, max_rows: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """CSV rows -> recipients. A header with 'to' (or phone) is required; param columns become body params.

    Malformed rows are reported per row and the rest kept; a file that is not CSV at all is a 422.
    """
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ApiError(422, "the CSV file is not UTF-8 text", "file") from None
    if "\r" in text and "\n" not in text:  # old spreadsheet exports end lines with CR alone
        text = text.replace("\r", "\n")
    try:
        # strict: a quote left open is an error, not a field that swallows the rows after it
        reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
    except csv.Error as exc:
        raise ApiError(422, f"not a CSV file: {exc}", "file") from None
    key = next((h for h in ("to", "phone", "wa_id", "number") if h in header), None)
    if key is None:
        raise ApiError(422, "the CSV needs a header row with a 'to' column", "file")
    twice = sorted({h for h in header if h and header.count(h) > 1})
    if twice:
        raise ApiError(422, f"column {twice[0]!r} appears more than once in the header", "file")
    reader.fieldnames = header
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    params = _param_columns(header)
    try:
        for i, row in enumerate(reader, start=1):
            if i > max_rows:
                raise ApiError(413, f"at most {max_rows} rows per CSV file", "file")
            if None in row or any(v is None for v in row.values()):
                errors.append({"row": i, "error": "wrong number of columns"})
                continue
            to = (row.get(key) or "").strip()
            if not to:
                errors.append({"row": i, "error": "empty 'to'"})
                continue
            entry: dict[str, Any] = {"to": to, "row": i}  # intake reports its errors by this row
            values = [row[p] for p in params]
            if any(values) and not all(v.strip() for v in values):
                empty = next(p for p, v in zip(params, values, strict=True) if not v.strip())
                errors.append({"row": i, "error": f"empty {empty}: the platform refuses an empty template parameter"})
                continue
            if any(values):
                entry["components"] = [{"type": "body", "parameters": [{"type": "text", "text": v} for v in values]}]
            rows.append(entry)
    except csv.Error as exc:
        raise ApiError(422, f"malformed CSV: {exc}", "file") from None
    return rows, errors


def dumps(data: Any) -> bytes:
    return orjson.dumps(data)
