"""POSTing a forwarded webhook to a tenant's app with aiohttp (one session, connections reused)."""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

__all__ = ["AiohttpSink", "is_private_address"]


def is_private_address(host: str) -> bool:
    """Loopback, private, link-local (cloud metadata), multicast, reserved or unspecified: an
    address a tenant's webhook must not reach on a shared deployment."""
    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return False
    return bool(ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
                or ip.is_unspecified)


class _PublicOnly(AbstractResolver):
    """Resolves as usual and drops private addresses, at connect time: a name that resolves to one
    (or is re-pointed at one after the URL was accepted) connects nowhere."""

    def __init__(self) -> None:
        self._inner = ThreadedResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = [r for r in await self._inner.resolve(host, port, family) if not is_private_address(r["host"])]
        if not found:
            raise OSError(errno.EACCES, f"{host} resolves only to private addresses (TIERGATE_FORWARD_PRIVATE_URLS=0)")
        return found

    async def close(self) -> None:
        await self._inner.close()


class AiohttpSink:
    """``WebhookSink`` over aiohttp: any 2xx is taken; redirects are not followed (a webhook URL
    that moved must be changed, not chased). With ``allow_private=False`` (a shared deployment),
    private and loopback addresses are refused, whether written in the URL or resolved."""

    def __init__(self, timeout: float = 10.0, *, allow_private: bool = True) -> None:
        self.timeout = timeout
        self.allow_private = allow_private
        self._session: aiohttp.ClientSession | None = None

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> str | None:
        if not self.allow_private and is_private_address(URL(url).host or ""):
            return "the URL is a private address (TIERGATE_FORWARD_PRIVATE_URLS=0)"
        if self._session is None:
            connector: Any = None if self.allow_private else aiohttp.TCPConnector(resolver=_PublicOnly())
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout),
                                                  connector=connector)
        try:
            async with self._session.post(url, data=body, headers=headers, allow_redirects=False) as r:
                await r.read()
                return None if 200 <= r.status < 300 else f"HTTP {r.status} from the app"
        except TimeoutError:
            return f"no answer within {self.timeout:g} s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return f"{type(exc).__name__}: {exc}"[:300]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
