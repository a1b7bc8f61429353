"""A small HTTP/1.1 keep-alive client for the send hot path: POST a JSON body to one origin.

Why not aiohttp here: ``bench/bench_http.py`` measures it at about 9k POSTs/s against a local
server on one core, and in ``bench/bench_gateway.py`` its request machinery (request and response
objects, a writer task per request, header multidicts, timers) was over a third of the gateway's CPU
time per message. Sending needs far less: one origin, one method, a few fixed headers, a small JSON
answer. This client writes a pre-built request head and parses the answer straight off the socket
(status line, headers, a ``Content-Length``, chunked or read-to-close body), over a bounded pool of
keep-alive connections, plain or TLS. Everything else (management reads, a caller's own session,
proxies) stays on aiohttp.

It reports failures in the two kinds the dispatcher must tell apart: ``NotSent`` (no connection
was made, so the platform certainly does not have the request) and anything else (``TimeoutError``,
``ConnectionLost``, ``BadResponse``: the request may have arrived).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

__all__ = ["BadResponse", "ConnectTimeout", "ConnectionLost", "Http1Pool", "NotSent", "Response"]

MAX_HEAD = 64 * 1024
MAX_BODY = 4 * 1024 * 1024


class NotSent(OSError):
    """No connection could be made (refused, unreachable): nothing was sent."""


class ConnectTimeout(NotSent):
    """No connection within the connect timeout (none free in the pool, or none opened): nothing was sent."""


class ConnectionLost(OSError):
    """The connection ended before a whole answer arrived: the request may have been received."""


class BadResponse(OSError):
    """The server's answer is not valid HTTP/1.x (or is too large)."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-cased names; a repeated header keeps its last value
    body: bytes


class _Connection(asyncio.Protocol):
    """One keep-alive connection: at most one request at a time, its answer parsed as it arrives."""

    __slots__ = (
        "_body",
        "_buf",
        "_chunked",
        "_head",
        "_keep",
        "_length",
        "_to_close",
        "_waiter",
        "closed",
        "idle_since",
        "transport",
    )

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._buf = bytearray()
        self._waiter: asyncio.Future[Response] | None = None
        self._reset()

    def _reset(self) -> None:
        self._head: tuple[int, dict[str, str]] | None = None
        self._length: int | None = None  # body bytes expected (None: chunked or until close)
        self._chunked = False
        self._to_close = False  # the body ends when the server closes the connection
        self._keep = True
        self._body = bytearray()

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport subclasses: no isinstance check)
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            self._fail(BadResponse("data from the server while no request was waiting"))
            return
        self._buf += data
        try:
            self._parse()
        except BadResponse as exc:
            self._fail(exc)

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._to_close and self._head is not None:  # a read-to-close body ends here
            self._body += self._buf
            self._buf.clear()
            self._finish()
            return
        self._waiter = None
        reason = f": {exc}" if exc else ""
        waiter.set_exception(ConnectionLost(f"the server closed the connection before answering in full{reason}"))

    # -- requests --------------------------------------------------------------------------------
    def request(self, data: bytes, waiter: asyncio.Future[Response]) -> None:
        assert self.transport is not None
        self._waiter = waiter
        self._reset()
        self.transport.write(data)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def _finish(self) -> None:
        assert self._head is not None
        status, headers = self._head
        waiter, self._waiter = self._waiter, None
        if not self._keep or self._to_close:
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result(Response(status, headers, bytes(self._body)))

    # -- parsing ---------------------------------------------------------------------------------
    def _parse(self) -> None:
        buf = self._buf
        while self._head is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    raise BadResponse("response head too large")
                return
            status, headers, keep = _parse_head(bytes(buf[:end]))
            del buf[:end + 4]
            if 100 <= status < 200:
                continue  # an interim answer (100 Continue): the real one follows
            self._head = (status, headers)
            self._keep = keep
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self._chunked = True
            elif "content-length" in headers:
                try:
                    self._length = int(headers["content-length"])
                except ValueError:
                    raise BadResponse(f"bad Content-Length {headers['content-length']!r}") from None
                if self._length < 0 or self._length > MAX_BODY:
                    raise BadResponse(f"bad Content-Length {self._length}")
            elif status in (204, 304):
                self._length = 0
            else:
                self._to_close = True
        if self._chunked:
            if self._parse_chunks():
                self._finish()
        elif self._length is not None:
            if len(buf) >= self._length:
                self._body = buf[:self._length]
                del buf[:self._length]
                if buf:
                    raise BadResponse("more data than the answer's Content-Length")
                self._finish()
        else:  # until close
            self._body += buf
            buf.clear()
            if len(self._body) > MAX_BODY:
                raise BadResponse("response body too large")

    def _parse_chunks(self) -> bool:
        """Move whole chunks from the buffer to the body; True once the last chunk and trailers are in."""
        buf = self._buf
        while True:
            eol = buf.find(b"\r\n")
            if eol < 0:
                if len(buf) > MAX_HEAD:
                    raise BadResponse("chunk size line too long")
                return False
            size_text = bytes(buf[:eol]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise BadResponse(f"bad chunk size {size_text[:20]!r}") from None
            if size == 0:
                end = buf.find(b"\r\n\r\n", eol)  # trailers (usually none) end with an empty line
                if end < 0:
                    return False
                del buf[:end + 4]
                if buf:
                    raise BadResponse("more data after the last chunk")
                return True
            if len(self._body) + size > MAX_BODY:
                raise BadResponse("response body too large")
            if len(buf) < eol + 2 + size + 2:
                return False
            if buf[eol + 2 + size:eol + 4 + size] != b"\r\n":
                raise BadResponse("a chunk does not end with CRLF")
            self._body += buf[eol + 2:eol + 2 + size]
            del buf[:eol + 2 + size + 2]


def _parse_head(head: bytes) -> tuple[int, dict[str, str], bool]:
    lines = head.split(b"\r\n")
    status_line = lines[0]
    if not status_line.startswith(b"HTTP/1.") or len(status_line) < 12 or status_line[8:9] != b" ":
        raise BadResponse(f"not an HTTP/1.x status line: {status_line[:40]!r}")
    try:
        status = int(status_line[9:12])
    except ValueError:
        raise BadResponse(f"bad status code in {status_line[:40]!r}") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise BadResponse(f"bad header line {line[:40]!r}")
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    connection = headers.get("connection", "").lower()
    keep = "keep-alive" in connection if status_line[7:8] == b"0" else "close" not in connection
    return status, headers, keep


class Http1Pool:
    """POSTs to one origin (``http://`` or ``https://``) over at most ``limit`` keep-alive connections.

    ``timeout`` bounds a request from when it has a connection to its whole answer (then
    ``TimeoutError``: it may have arrived); getting a connection, waiting for a free one included,
    is bounded by ``connect_timeout`` (then ``NotSent``). Idle connections are dropped after
    ``keepalive_timeout`` rather than risk a request on one the server is closing.
    """

    def __init__(self, base_url: str, *, limit: int = 256, timeout: float = 15.0, connect_timeout: float = 5.0,
                 keepalive_timeout: float = 30.0, ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"need an http:// or https:// URL, not {base_url!r}")
        self.host = parts.hostname
        self.tls = parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        default_port = self.port == (443 if self.tls else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if default_port else f"{host}:{self.port}"
        self.base_path = parts.path.rstrip("/")
        self.limit = max(1, limit)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.keepalive_timeout = keepalive_timeout
        self._ssl = (ssl_context or ssl.create_default_context()) if self.tls else None
        self._idle: list[_Connection] = []  # last released first: the warmest connection
        self._open = 0  # connections open or being opened
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False
        self.opened = 0  # connections made so far (tests, diagnostics)

    def head(self, path: str, headers: dict[str, str]) -> bytes:
        """The request head up to ``Content-Length`` for POSTs to ``path`` (under the base URL's path)."""
        lines = [f"POST {self.base_path}{path} HTTP/1.1", f"Host: {self.host_header}",
                 *(f"{k}: {v}" for k, v in headers.items())]
        return ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")

    async def post(self, head: bytes, body: bytes) -> Response:
        """Send ``head`` (from ``head()``) with ``body``; the whole answer, or an exception."""
        conn = await self._acquire()
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Response] = loop.create_future()
        timer = loop.call_later(self.timeout, _expire, waiter, self.timeout)
        try:
            conn.request(b"%s%d\r\n\r\n%s" % (head, len(body), body), waiter)
            response = await waiter
        except BaseException:
            conn.close()  # mid-request: its state is unknown
            self._release(conn)
            raise
        finally:
            timer.cancel()
        self._release(conn)
        return response

    async def _acquire(self) -> _Connection:
        if self._closed:
            raise NotSent("the HTTP client is closed")
        idle = self._idle
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < self.keepalive_timeout:
                return conn
            conn.close()
            self._open -= 1
        deadline = now + self.connect_timeout
        while self._open >= self.limit:
            slot: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting.append(slot)
            try:
                await asyncio.wait_for(slot, max(0.0, deadline - time.monotonic()))
            except BaseException as exc:
                if slot in self._waiting:
                    self._waiting.remove(slot)
                elif slot.done() and not slot.cancelled():
                    self._wake_one()  # woken, but leaving (cancelled, timed out): pass the turn on
                if isinstance(exc, TimeoutError):
                    raise ConnectTimeout(f"no free connection within {self.connect_timeout:g} s") from None
                raise
            while idle:  # a released connection, handed over
                conn = idle.pop()
                if not conn.closed:
                    return conn
                self._open -= 1
        self._open += 1
        try:
            return await self._connect(max(0.0, deadline - time.monotonic()))
        except BaseException:
            self._open -= 1
            self._wake_one()
            raise

    async def _connect(self, timeout: float) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(_Connection, self.host, self.port, ssl=self._ssl,
                                       server_hostname=self.host if self._ssl else None), timeout)
        except TimeoutError:
            raise ConnectTimeout(f"connect timeout to {self.host}:{self.port} after {timeout:.3g} s") from None
        except OSError as exc:
            raise NotSent(f"cannot connect to {self.host}:{self.port}: {exc}") from None
        self.opened += 1
        return conn

    def _release(self, conn: _Connection) -> None:
        if conn.closed or self._closed:
            conn.close()
            self._open -= 1
        else:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiting:
            slot = self._waiting.popleft()
            if not slot.done():
                slot.set_result(None)
                return

    async def aclose(self) -> None:
        self._closed = True
        for conn in self._idle:
            conn.close()
        self._open -= len(self._idle)
        self._idle.clear()
        while self._waiting:
            slot = self._waiting.popleft()
            if not slot.done():
                slot.set_exception(NotSent("the HTTP client is closed"))


def _expire(waiter: asyncio.Future[Response], timeout: float) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError(f"no whole answer within {timeout:g} s"))
