"""The real WhatsApp Cloud API client.

Sending is the gateway's hot path: the platform allows up to 1,000 messages/s per number, and a
client library that manages only a few hundred requests/s (measured in bench/bench_http.py) would
make that unreachable. So sends go through ``Http1Pool`` (keep-alive connections, a request head
built once per sender, bodies serialised with orjson), which costs a fraction of aiohttp's CPU per
request; management reads, and sends through a caller's own ``aiohttp.ClientSession`` (proxies,
custom TLS), use aiohttp.

The client only reports what happened (``SendOutcome``); whether and when to retry is the
dispatcher's decision, from ``tiergate.core.errors``. The one judgement made here is whether the
request may have reached the platform: if it certainly did not (connection refused, connect
timeout, a code-less 503 "unavailable") the outcome is ``failed`` with no code, retried with
backoff; if it might have (timeout after sending, reset, garbled or other code-less 5xx answer) it
is ``unknown``, so nobody re-sends it blindly: the status webhook settles it.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from yarl import URL

from tiergate import __version__
from tiergate.adapters.provider.http1 import ConnectTimeout, Http1Pool, NotSent
from tiergate.core.shapes import error_payload, parse_error
from tiergate.ports import ProviderError, SenderInfo, SendOutcome

__all__ = ["CloudProvider"]

_REDACTED = "[redacted]"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


RELAY_TIMEOUT = 300.0  # seconds for a relayed request (a 100 MB upload on a slow link)


class CloudProvider:
    """``Provider`` for the Cloud API at ``base_url`` (with the version, e.g. ``.../v24.0``).

    ``timeout``: whole-request limit; ``connect_timeout``: opening a connection (a request that
    never got a connection certainly did not reach the platform). ``limit``/``limit_per_host``:
    pool size (concurrent requests in flight). ``session``: a caller-owned session (not closed by
    ``aclose``) that sends go through too; otherwise sends use an ``Http1Pool`` and management
    reads a session created on first use, inside the running event loop.
    """

    name = "cloud"

    def __init__(self, base_url: str, access_token: str, *, timeout: float = 15.0,
                 connect_timeout: float = 5.0, limit: int = 256, limit_per_host: int = 0,
                 keepalive_timeout: float = 30.0, session: aiohttp.ClientSession | None = None) -> None:
        if not access_token:
            raise ValueError("the Cloud API needs an access token")
        self.base_url = base_url.rstrip("/")
        self._token = access_token
        self._headers = {"Authorization": f"Bearer {access_token}", "Content-Type": "application/json",
                         "User-Agent": f"tiergate/{__version__}"}
        self._get_headers = {"Authorization": f"Bearer {access_token}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=connect_timeout)
        self._limit = limit
        self._limit_per_host = limit_per_host
        self._keepalive = keepalive_timeout
        self._session = session
        self._owns_session = session is None
        self._urls: dict[str, URL] = {}
        self._heads: dict[str, bytes] = {}
        self._senders: dict[str, SenderInfo] = {}
        self._pool = None if session is not None else Http1Pool(
            self.base_url, limit=limit, timeout=timeout, connect_timeout=connect_timeout,
            keepalive_timeout=keepalive_timeout)

    def __repr__(self) -> str:
        return f"CloudProvider(base_url={self.base_url!r})"

    # -- plumbing ----------------------------------------------------------------------------
    def _client(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(limit=self._limit, limit_per_host=self._limit_per_host,
                                             keepalive_timeout=self._keepalive, ttl_dns_cache=300)
            session = aiohttp.ClientSession(connector=connector, timeout=self._timeout,
                                            json_serialize=lambda obj: orjson.dumps(obj).decode())
            self._session = session
            self._owns_session = True
        return session

    def _messages_url(self, phone_number_id: str) -> URL:
        url = self._urls.get(phone_number_id)
        if url is None:
            url = URL(f"{self.base_url}/{quote(phone_number_id, safe='')}/messages")
            self._urls[phone_number_id] = url
        return url

    def _redact(self, text: str) -> str:
        token = self._token
        # a token of a few characters is a test stand-in that would mangle every word it occurs in
        return text.replace(token, _REDACTED) if len(token) >= 8 and token in text else text

    def _describe(self, exc: BaseException) -> str:
        detail = str(exc)
        return self._redact(f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__)

    # -- sending -----------------------------------------------------------------------------
    async def send(self, phone_number_id: str, body: dict[str, Any]) -> SendOutcome:
        """POST the body as given; map the answer (or the lack of one) to a ``SendOutcome``."""
        try:
            payload = orjson.dumps(body)
        except TypeError as exc:
            return SendOutcome("failed", title="message body is not JSON-serialisable",
                               details=self._describe(exc))
        try:
            status, retry_after, raw = await self._post(phone_number_id, payload)
        except ConnectTimeout as exc:
            return SendOutcome("failed", title="no connection to the platform (connect timeout): not sent",
                               details=self._describe(exc))
        except NotSent as exc:
            return SendOutcome("failed", title="could not connect to the platform: not sent",
                               details=self._describe(exc))
        except TimeoutError as exc:
            return SendOutcome("unknown", title="no answer from the platform in time: it may have the message",
                               details=self._describe(exc))
        except OSError as exc:
            return SendOutcome("unknown", title="connection lost during the request: it may have the message",
                               details=self._describe(exc))
        outcome = self._outcome(status, raw, parse_retry_after(retry_after))
        return outcome if outcome.status == "accepted" else self._scrub(outcome)

    async def _post(self, phone_number_id: str, payload: bytes) -> tuple[int, str | None, bytes]:
        """(status, Retry-After, body); ``NotSent``/``ConnectTimeout`` when nothing left, else
        ``TimeoutError`` or another ``OSError`` when the request may have arrived."""
        pool = self._pool
        if pool is not None:
            head = self._heads.get(phone_number_id)
            if head is None:
                head = self._heads[phone_number_id] = pool.head(
                    f"/{quote(phone_number_id, safe='')}/messages", self._headers)
            resp = await pool.post(head, payload)
            return resp.status, resp.headers.get("retry-after"), resp.body
        try:
            async with self._client().post(self._messages_url(phone_number_id), data=payload,
                                           headers=self._headers) as r:
                return r.status, r.headers.get("Retry-After"), await r.read()
        except aiohttp.ConnectionTimeoutError as exc:
            raise ConnectTimeout(str(exc) or type(exc).__name__) from exc
        except aiohttp.ClientConnectorError as exc:
            raise NotSent(str(exc)) from exc
        except TimeoutError:
            raise
        except aiohttp.ClientError as exc:
            raise OSError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from exc

    async def relay(self, method: str, path: str, payload: bytes = b"",
                    content_type: str = "", query: str = "") -> tuple[int, dict[str, Any]]:
        """The request at ``{base}/{path}?{query}`` as it is; the platform's status and JSON answer
        as they are (the token scrubbed), or a platform-shaped 503 when no answer came. Uploads may
        be large (documents up to 100 MB): up to ``RELAY_TIMEOUT`` seconds, not the sends' timeout."""
        url = f"{self.base_url}/{'/'.join(quote(part, safe='') for part in path.split('/'))}"
        if query:
            url = f"{url}?{query}"
        headers = {**self._get_headers, **({"Content-Type": content_type} if payload else {})}
        try:
            async with self._client().request(method, url, data=payload or None, headers=headers,
                                              timeout=aiohttp.ClientTimeout(total=RELAY_TIMEOUT)) as r:
                status, raw = r.status, await r.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return 503, error_payload(131016, details=f"no answer from the platform: {self._describe(exc)}")
        text = self._redact(raw.decode("utf-8", "replace"))  # a server that echoes the token gets it back scrubbed
        try:
            data = orjson.loads(text) if text else None
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            return 502, error_payload(1, details=f"the platform answered HTTP {status} without a JSON object: "
                                                 f"{_excerpt(text.encode())}")
        return status, data

    async def download(self, url: str) -> tuple[int, bytes, str]:
        """GET the platform's media URL with the token (callers pass only URLs the platform gave)."""
        try:
            async with self._client().get(url, headers=self._get_headers,
                                          timeout=aiohttp.ClientTimeout(total=RELAY_TIMEOUT)) as r:
                return r.status, await r.read(), r.headers.get("Content-Type", "application/octet-stream")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return 503, self._describe(exc).encode(), "text/plain"

    def _scrub(self, outcome: SendOutcome) -> SendOutcome:
        """Keep the token out of outcomes even if a server echoes it back."""
        token = self._token
        if len(token) < 8:
            return outcome
        if token in outcome.title or token in outcome.details or token.encode() in orjson.dumps(outcome.raw):
            return replace(outcome, title=self._redact(outcome.title), details=self._redact(outcome.details),
                           raw={"body": _REDACTED})
        return outcome

    def _outcome(self, status: int, raw: bytes, retry_after: float | None) -> SendOutcome:
        try:
            data = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            data = None
        if 200 <= status < 300:
            wamid, message_status = _accepted_id(data)
            if wamid is not None:
                assert isinstance(data, dict)
                return SendOutcome("accepted", wamid=wamid, http_status=status, message_status=message_status,
                                   raw=data)
            return SendOutcome("unknown", title=f"HTTP {status} without a message id: it may have the message",
                               details=_excerpt(raw), http_status=status, raw=_as_raw(data, raw))
        error = parse_error(data)
        if error is not None:
            code, title, details = error
            assert isinstance(data, dict)
            return SendOutcome("failed", code=code, title=title, details=details, http_status=status,
                               retry_after=retry_after, raw=data)
        if status == 503:  # "unavailable": shed before it was served, so it is retried (with backoff)
            return SendOutcome("failed", title="HTTP 503 without a platform error: service unavailable",
                               details=_excerpt(raw), http_status=status, retry_after=retry_after,
                               raw=_as_raw(data, raw))
        if status >= 500:  # 500, 502, 504: the platform may have got as far as sending it
            return SendOutcome("unknown", title=f"HTTP {status} without a platform error: it may have the message",
                               details=_excerpt(raw), http_status=status, retry_after=retry_after,
                               raw=_as_raw(data, raw))
        return SendOutcome("failed", title=f"HTTP {status} without a platform error code", details=_excerpt(raw),
                           http_status=status, retry_after=retry_after, raw=_as_raw(data, raw))

    # -- management --------------------------------------------------------------------------
    async def get_phone_number(self, phone_number_id: str, fields: Iterable[str]) -> dict[str, Any]:
        """GET ``/{phone_number_id}?fields=...``; ``ProviderError`` with the platform's code on errors."""
        url = URL(f"{self.base_url}/{quote(phone_number_id, safe='')}")
        params = {"fields": ",".join(fields)}
        try:
            async with self._client().get(url, params=params, headers=self._get_headers) as resp:
                status = resp.status
                raw = await resp.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ProviderError(f"Graph API request failed: {self._describe(exc)}") from None
        try:
            data = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            data = None
        error = parse_error(data)
        if error is not None:
            code, title, details = error
            message = self._redact(f"Graph API error {code}: {title}" + (f" ({details})" if details else ""))
            raise ProviderError(message, code=code, http_status=status)
        if not 200 <= status < 300 or not isinstance(data, dict):
            raise ProviderError(self._redact(f"Graph API answered HTTP {status} without a usable body: "
                                             f"{_excerpt(raw)}"), http_status=status)
        return data

    async def register_sender(self, info: SenderInfo) -> None:
        """The platform already knows its numbers; remember the info for diagnostics only."""
        self._senders[info.phone_number_id] = info

    def poll_events(self, now: float) -> list[dict[str, Any]]:
        return []  # the real platform delivers webhooks over HTTP

    def next_event_at(self) -> float | None:
        return None

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
        session, self._session = self._session, None
        if session is not None and self._owns_session and not session.closed:
            await session.close()


def _accepted_id(data: object) -> tuple[str | None, str | None]:
    if not isinstance(data, Mapping):
        return None, None
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages or not isinstance(messages[0], Mapping):
        return None, None
    wamid = messages[0].get("id")
    if not isinstance(wamid, str) or not wamid:
        return None, None
    message_status = messages[0].get("message_status")
    return wamid, message_status if isinstance(message_status, str) else "accepted"


def _excerpt(raw: bytes, limit: int = 300) -> str:
    return raw[:limit].decode("utf-8", "replace")


def _as_raw(data: object, raw: bytes) -> dict[str, Any]:
    return data if isinstance(data, dict) else {"body": _excerpt(raw)}
