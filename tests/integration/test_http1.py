"""The send path's HTTP/1.1 client against scripted servers on 127.0.0.1: every way an answer can be
framed, every way a server can misbehave, pool limits, keep-alive, TLS."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tiergate.adapters.provider.http1 import BadResponse, ConnectionLost, ConnectTimeout, Http1Pool, NotSent

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    return head, await reader.readexactly(length)


@asynccontextmanager
async def server(handler: Handler, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    srv = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=ssl_context)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}/v24.0"
    finally:
        srv.close()


def answering(*answers: bytes, close: bool = False) -> tuple[Handler, list[bytes]]:
    """A server that answers each request on a connection with the next of ``answers``."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for answer in answers:
                head, body = await read_request(reader)
                seen.append(head + body)
                writer.write(answer)
                await writer.drain()
            if close:
                writer.close()
            else:
                await reader.read()  # keep the connection until the client drops it
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return handle, seen


OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{"ok": true}\n'


async def post(pool: Http1Pool, body: bytes = b'{"x":1}', path: str = "/123/messages") -> tuple[int, bytes]:
    resp = await pool.post(pool.head(path, {"Authorization": "Bearer t"}), body)
    return resp.status, resp.body


async def test_a_request_has_the_path_host_headers_and_body_and_keeps_its_connection() -> None:
    handler, seen = answering(OK, OK, OK)
    async with server(handler) as url:
        pool = Http1Pool(url)
        for _ in range(3):
            assert await post(pool) == (200, b'{"ok": true}\n')
        await pool.aclose()
    port = url.split(":")[2].split("/")[0]
    head = seen[0].split(b"\r\n")
    assert head[0] == b"POST /v24.0/123/messages HTTP/1.1"
    assert f"Host: 127.0.0.1:{port}".encode() in head and b"Authorization: Bearer t" in head
    assert b"Content-Length: 7" in head and seen[0].endswith(b'\r\n\r\n{"x":1}')
    assert pool.opened == 1 and len(seen) == 3


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"ok\"\r\n8;ext=1\r\n: true}\n\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\nd\r\n{\"ok\": true}\n\r\n0\r\nX-Trailer: 1\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n" + OK,
])
async def test_chunked_and_interim_answers_are_read_whole(answer: bytes) -> None:
    handler, _ = answering(answer, answer)
    async with server(handler) as url:
        pool = Http1Pool(url)
        assert await post(pool) == (200, b'{"ok": true}\n')
        assert await post(pool) == (200, b'{"ok": true}\n')  # and the connection stays usable
        assert pool.opened == 1
        await pool.aclose()


async def test_an_answer_without_length_ends_at_close_and_the_next_request_reconnects() -> None:
    handler, seen = answering(b"HTTP/1.1 500 Oops\r\nRetry-After: 7\r\n\r\nno length here", close=True)
    async with server(handler) as url:
        pool = Http1Pool(url)
        resp = await pool.post(pool.head("/1/messages", {}), b"{}")
        assert (resp.status, resp.body, resp.headers["retry-after"]) == (500, b"no length here", "7")
        resp = await pool.post(pool.head("/1/messages", {}), b"{}")
        assert resp.status == 500 and pool.opened == 2 and len(seen) == 2
        await pool.aclose()


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
    b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}",
])
async def test_a_connection_the_server_closes_is_not_reused(answer: bytes) -> None:
    handler, _ = answering(answer)
    async with server(handler) as url:
        pool = Http1Pool(url)
        assert await post(pool) == (200, b"{}")
        assert await post(pool) == (200, b"{}")
        assert pool.opened == 2
        await pool.aclose()


@pytest.mark.parametrize(("answer", "error"), [
    (b"garbage\r\n\r\n", BadResponse),
    (b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n", BadResponse),
    (b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n", BadResponse),
    (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", BadResponse),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", BadResponse),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", BadResponse),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{\"partial", ConnectionLost),
    (b"", ConnectionLost),
])
async def test_bad_or_cut_answers_raise_and_drop_the_connection(answer: bytes, error: type[Exception]) -> None:
    handler, _ = answering(answer, close=True)
    async with server(handler) as url:
        pool = Http1Pool(url)
        with pytest.raises(error):
            await post(pool)
        assert pool._open == 0
        await pool.aclose()


async def test_a_refused_connection_is_not_sent() -> None:
    srv = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    srv.close()
    await srv.wait_closed()
    pool = Http1Pool(f"http://127.0.0.1:{port}")
    with pytest.raises(NotSent):
        await post(pool)
    assert pool._open == 0


async def test_a_hanging_answer_times_out_and_frees_its_connection() -> None:
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()
        writer.close()

    async with server(hang) as url:
        pool = Http1Pool(url, timeout=0.05, limit=1)
        with pytest.raises(TimeoutError):
            await post(pool)
        with pytest.raises(TimeoutError):  # the one pool slot came back
            await post(pool)
        await pool.aclose()


async def test_the_pool_never_opens_more_than_its_limit_and_queued_requests_get_a_connection() -> None:
    live = 0
    most = 0

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal live, most
        live += 1
        most = max(most, live)
        try:
            while True:
                await read_request(reader)
                await asyncio.sleep(0.002)
                writer.write(OK)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            live -= 1
            writer.close()

    async with server(slow) as url:
        pool = Http1Pool(url, limit=3)
        results = await asyncio.gather(*(post(pool) for _ in range(40)))
        assert results == [(200, b'{"ok": true}\n')] * 40
        assert most == 3 and pool.opened == 3
        await pool.aclose()


async def test_waiting_for_a_free_connection_is_bounded_by_the_connect_timeout() -> None:
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    async with server(hang) as url:
        pool = Http1Pool(url, limit=1, timeout=5, connect_timeout=0.05)
        first = asyncio.create_task(post(pool))
        await asyncio.sleep(0.01)
        with pytest.raises(ConnectTimeout):
            await post(pool)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert pool._open == 0
        await pool.aclose()


async def test_idle_connections_past_the_keepalive_timeout_are_replaced() -> None:
    handler, _ = answering(OK, OK)
    async with server(handler) as url:
        pool = Http1Pool(url, keepalive_timeout=0.0)
        await post(pool)
        await post(pool)
        assert pool.opened == 2
        await pool.aclose()


async def test_a_closed_pool_sends_nothing() -> None:
    handler, seen = answering(OK)
    async with server(handler) as url:
        pool = Http1Pool(url)
        await pool.aclose()
        with pytest.raises(NotSent):
            await post(pool)
    assert seen == []


def test_only_http_urls_are_taken() -> None:
    with pytest.raises(ValueError, match="http"):
        Http1Pool("ftp://example.com")
    pool = Http1Pool("https://graph.facebook.com/v24.0/")
    assert (pool.port, pool.host_header, pool.base_path) == (443, "graph.facebook.com", "/v24.0")
    assert pool.head("/1/messages", {"A": "b"}).startswith(
        b"POST /v24.0/1/messages HTTP/1.1\r\nHost: graph.facebook.com\r\nA: b\r\n")


async def test_tls(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    handler, seen = answering(OK, OK)
    async with server(handler, server_ctx) as url:
        pool = Http1Pool(url, ssl_context=ssl.create_default_context(cafile=str(cert)))
        assert await post(pool) == (200, b'{"ok": true}\n')
        assert await post(pool) == (200, b'{"ok": true}\n')
        await pool.aclose()
        untrusting = Http1Pool(url)  # the system's CAs do not know this certificate
        with pytest.raises(NotSent, match="CERTIFICATE_VERIFY_FAILED"):
            await post(untrusting)
    assert len(seen) == 2


def test_on_uvloop_as_serve_runs_it() -> None:
    """``tiergate serve`` runs on uvloop, whose transports are not asyncio.Transport subclasses."""
    import uvloop

    async def scenario() -> list[tuple[int, bytes]]:
        chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
        handler, _ = answering(OK, chunked)
        async with server(handler) as url:
            pool = Http1Pool(url)
            got = [await post(pool), await post(pool)]
            assert pool.opened == 1
            await pool.aclose()
            return got

    assert uvloop.run(scenario()) == [(200, b'{"ok": true}\n'), (200, b"{}")]


async def test_a_waiter_that_leaves_after_its_wake_up_passes_the_free_connection_on() -> None:
    gate = asyncio.Event()

    async def held(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await read_request(reader)
                await gate.wait()
                writer.write(OK)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async with server(held) as url:
        pool = Http1Pool(url, limit=1, connect_timeout=3.0)
        first = asyncio.create_task(post(pool))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(post(pool))
        await asyncio.sleep(0.01)
        third = asyncio.create_task(post(pool))
        await asyncio.sleep(0.05)
        wake = pool._wake_one

        def wake_then_leave() -> None:  # the woken waiter is cancelled before it can take its turn
            wake()
            if not second.done():
                second.cancel()

        pool._wake_one = wake_then_leave  # type: ignore[method-assign]
        gate.set()
        assert await first == (200, b'{"ok": true}\n')
        started = asyncio.get_running_loop().time()
        assert await asyncio.wait_for(third, 2.0) == (200, b'{"ok": true}\n')  # not after connect_timeout
        assert asyncio.get_running_loop().time() - started < 1.0
        assert second.cancelled()
        await pool.aclose()


async def test_cloud_provider_sends_the_cloud_api_request_meta_expects() -> None:
    from tiergate.adapters.provider.cloud import CloudProvider

    answer = b'HTTP/1.1 200 OK\r\nContent-Length: 58\r\n\r\n{"messaging_product":"whatsapp","messages":[{"id":"w.1"}]}'
    handler, seen = answering(answer)
    async with server(handler) as url:
        provider = CloudProvider(url, "secret-token-123")
        outcome = await provider.send("1065/x", {"messaging_product": "whatsapp", "to": "1", "type": "text"})
        await provider.aclose()
    assert (outcome.status, outcome.wamid) == ("accepted", "w.1")
    head, _, body = seen[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v24.0/1065%2Fx/messages HTTP/1.1"  # the id is one path segment
    assert b"Authorization: Bearer secret-token-123" in lines and b"Content-Type: application/json" in lines
    assert any(line.startswith(b"User-Agent: tiergate/") for line in lines)
    assert body == b'{"messaging_product":"whatsapp","to":"1","type":"text"}'
