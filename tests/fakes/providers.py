"""A base for test and benchmark providers that only answer sends.

What such a provider has beyond ``send`` is the rest of the ``Provider`` port done as nothing:
no phone-number state, no registration, no webhooks of its own. ``answers_inline`` says whether
it behaves like the sandbox (in-process, one write per message) or like a remote platform.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tiergate.ports import SenderInfo, SendOutcome

__all__ = ["SendOnlyProvider"]


class SendOnlyProvider:
    name = "send-only"

    def __init__(self, inline: bool = True) -> None:
        self.answers_inline = inline

    async def send(self, phone_number_id: str, body: dict[str, Any]) -> SendOutcome:
        raise NotImplementedError

    async def relay(self, method: str, path: str, payload: bytes = b"",
                    content_type: str = "", query: str = "") -> tuple[int, dict[str, Any]]:
        return 200, {"success": True}

    async def download(self, url: str) -> tuple[int, bytes, str]:
        return 404, b"", "text/plain"

    async def get_phone_number(self, phone_number_id: str, fields: Iterable[str]) -> dict[str, Any]:
        return {}

    async def register_sender(self, info: SenderInfo) -> None:
        return None

    def poll_events(self, now: float) -> list[dict[str, Any]]:
        return []

    def next_event_at(self) -> float | None:
        return None

    async def aclose(self) -> None:
        return None
