"""POSTing a forwarded webhook to a tenant's app with aiohttp (one session, connections reused)."""

from __future__ import annotations

import aiohttp

__all__ = ["AiohttpSink"]


class AiohttpSink:
    """``WebhookSink`` over aiohttp: any 2xx is taken; redirects are not followed (a webhook URL
    that moved must be changed, not chased)."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> str | None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
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
