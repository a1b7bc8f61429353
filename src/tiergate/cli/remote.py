"""Talking to a running ``tiergate serve`` over its HTTP API, with every failure as one clear line.

The commands that act for a tenant (``campaign send``, ``status --url``) go through the API, like any
other client: the server's dispatcher does the sending, its key decides what the caller may see.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

import aiohttp
import orjson
import typer
from rich.markup import escape

from tiergate.cli.app import fail

__all__ = ["DEFAULT_URL", "JSON_OPTION", "KEY_OPTION", "URL_OPTION", "Remote", "RemoteError", "call_server"]

DEFAULT_URL = "http://127.0.0.1:8080"
# the options every command that talks to a running server takes
URL_OPTION = typer.Option(None, "--url", help=f"The running tiergate [TIERGATE_URL, {DEFAULT_URL}]")
KEY_OPTION = typer.Option(None, "--api-key", help="API key of the tenant [TIERGATE_API_KEY]")
JSON_OPTION = typer.Option(False, "--json", help="Print the answer as JSON.")


class RemoteError(Exception):
    """An answer the user can act on: the server's error message, and its status."""

    def __init__(self, status: int, message: str, details: list[Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details or []  # the server's error details (e.g. every refused row of a batch)


def _fail(message: str, hint: str = "", code: int = 2) -> NoReturn:
    fail(escape(message), escape(hint), code)


class Remote:
    """An API client for one base URL and key (``--url`` / TIERGATE_URL, ``--api-key`` / TIERGATE_API_KEY)."""

    def __init__(self, url: str | None, api_key: str | None, *, timeout: float = 30.0) -> None:
        self.url = (url or os.environ.get("TIERGATE_URL") or DEFAULT_URL).rstrip("/")
        self.key = api_key or os.environ.get("TIERGATE_API_KEY") or ""
        if not self.key:
            _fail("no API key: pass --api-key or set TIERGATE_API_KEY",
                  "`tiergate serve` prints an admin key at first start; `tiergate keys create --tenant NAME` "
                  "makes more")
        if not self.url.startswith(("http://", "https://")):
            _fail(f"--url must start with http:// or https://, not {self.url!r}", f"e.g. --url {DEFAULT_URL}")
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Remote:
        self._session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {self.key}"}, timeout=self.timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        assert self._session is not None, "use 'async with Remote(...)'"
        try:
            async with self._session.request(method, self.url + path, **kwargs) as r:
                raw = await r.read()
                status = r.status
        except (aiohttp.ClientConnectionError, OSError) as exc:
            self._unreachable(exc)
        except TimeoutError:
            _fail(f"tiergate at {self.url} did not answer within {self.timeout.total:g} s", code=1)
        return self._answer(status, raw, method, path)

    def _unreachable(self, exc: BaseException) -> NoReturn:
        _fail(f"cannot reach tiergate at {self.url}: {exc}",
              "start it with `tiergate serve`, or point --url / TIERGATE_URL at it", code=1)

    def _answer(self, status: int, raw: bytes, method: str, path: str) -> Any:
        """The JSON body of a success; for an error, one clear line (401) or a ``RemoteError``."""
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        if status == 401:
            _fail("the API key was refused (wrong or revoked)",
                  "check --api-key / TIERGATE_API_KEY; `tiergate keys create --tenant NAME` makes a new one")
        if status >= 400:
            error = body.get("error") if isinstance(body, dict) else None
            error = error if isinstance(error, dict) else {}
            details = error.get("details")
            raise RemoteError(status, error.get("message") or f"HTTP {status} from {method} {path}",
                              details if isinstance(details, list) else None)
        return body

    async def get(self, path: str, **params: Any) -> Any:
        return await self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    async def download(self, path: str, into: BinaryIO, on_chunk: Callable[[bytes], None] | None = None,
                       **params: Any) -> int:
        """Stream a GET's body into ``into`` (an export of any size); the bytes written. Errors as
        ``request``; a body cut off midway is a ``RemoteError`` too. The timeout is per read, not
        for the whole download."""
        assert self._session is not None, "use 'async with Remote(...)'"
        written = 0
        try:
            async with self._session.get(self.url + path, params={k: v for k, v in params.items() if v is not None},
                                         timeout=aiohttp.ClientTimeout(sock_read=self.timeout.total)) as r:
                if r.status >= 400:
                    self._answer(r.status, await r.read(), "GET", path)
                async for chunk in r.content.iter_chunked(1 << 16):
                    into.write(chunk)
                    written += len(chunk)
                    if on_chunk is not None:
                        on_chunk(chunk)
        except aiohttp.ClientPayloadError as exc:
            raise RemoteError(502, f"the download was cut off after {written:,} bytes: {exc}") from None
        except aiohttp.ClientConnectionError as exc:  # not OSError: a failed write to ``into`` is the caller's
            self._unreachable(exc)
        except TimeoutError:
            _fail(f"tiergate at {self.url} stopped sending for {self.timeout.total:g} s", code=1)
        return written

    async def upload_csv(self, path: str, file: Path, fields: dict[str, str]) -> Any:
        form = aiohttp.FormData()
        for name, value in fields.items():
            form.add_field(name, value)
        form.add_field("file", file.read_bytes(), filename=file.name, content_type="text/csv")
        return await self.request("POST", path, data=form)

    async def server_time(self) -> float:
        health = await self.get("/healthz")
        return float(health["time"])


def call_server(remote: Remote, call: Callable[[Remote], Awaitable[Any]]) -> Any:
    """Run ``call`` against the server; a refusal is one clear error line and exit 2."""
    async def main() -> Any:
        async with remote:
            try:
                return await call(remote)
            except RemoteError as exc:
                _fail(f"the server refused: {exc.message}")

    return asyncio.run(main())
