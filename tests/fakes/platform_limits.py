"""The platform's own count of a sender's messaging limit, for the fake Graph API.

Multi-process tests need a judge that does not share any code with what it judges: this counts,
per phone number, the distinct recipients of business-initiated (template) messages over a
rolling 24 h, the way the platform does, from what actually reached it and at the time (from
the fake's clock) it did. A send that would take the count over the number's tier is refused
(131048, as the sandbox does) and counted as a violation. It also counts how often each message
was accepted, by its ``biz_opaque_callback_data`` (tiergate puts the message id there) or, without
one, by its whole body: a message accepted twice is a duplicate.

Deliberately its own implementation: a FIFO of (send time, recipient) with each recipient's
latest send time, its own table of tier names, and expiry written as ``sent + span <= now``.
"""

from __future__ import annotations

import hashlib
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["TIER_LIMITS", "PlatformLimits"]

DAY = 86_400.0
TIER_LIMITS: dict[str, int | None] = {
    "TIER_50": 50, "TIER_250": 250, "TIER_1K": 1_000, "TIER_2K": 2_000, "TIER_10K": 10_000,
    "TIER_100K": 100_000, "TIER_UNLIMITED": None,
}


@dataclass
class _Window:
    sends: deque[tuple[float, str]] = field(default_factory=deque)  # (time, recipient), time order
    latest: dict[str, float] = field(default_factory=dict)  # recipient -> latest counted send

    def count(self, now: float, span: float) -> int:
        while self.sends and self.sends[0][0] + span <= now:
            at, recipient = self.sends.popleft()
            if self.latest.get(recipient) == at:
                del self.latest[recipient]
        return len(self.latest)


class PlatformLimits:
    """Per phone number: the rolling distinct-recipient count, violations, and sends per message."""

    def __init__(self, span: float = DAY) -> None:
        self.span = span
        self.windows: dict[str, _Window] = {}
        self.violations: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()  # the highest count each number reached
        self.counted: Counter[str] = Counter()  # counted sends per number
        self.accepted: dict[str, list[tuple[str, str, str, float]]] = {}  # key -> [(wamid, number, to, at)]
        self.duplicates = 0

    @staticmethod
    def key_of(body: dict[str, Any]) -> str:
        callback = body.get("biz_opaque_callback_data")
        if isinstance(callback, str) and callback:
            return callback
        return hashlib.blake2b(orjson.dumps(body, option=orjson.OPT_SORT_KEYS), digest_size=12).hexdigest()

    def check(self, number: str, to: str, body: dict[str, Any], now: float, tier: str | None) -> bool:
        """Whether the platform takes this send; an over-the-limit one is a violation (False)."""
        if body.get("type") != "template":
            return True  # free-form: only possible inside a service window, never counted
        limit = TIER_LIMITS.get(tier or "TIER_250", 250)
        window = self.windows.setdefault(number, _Window())
        used = window.count(now, self.span)
        if to not in window.latest and limit is not None and used >= limit:
            self.violations[number] += 1
            return False
        if to not in window.latest:
            used += 1
        if window.latest.get(to, float("-inf")) < now:
            window.latest[to] = now
            window.sends.append((now, to))
        self.counted[number] += 1
        self.peak[number] = max(self.peak[number], used)
        return True

    def accept(self, key: str, wamid: str, number: str, to: str, now: float) -> None:
        seen = self.accepted.setdefault(key, [])
        if seen:
            self.duplicates += 1
        seen.append((wamid, number, to, now))

    def report(self) -> dict[str, Any]:
        return {
            "violations": sum(self.violations.values()),
            "violations_by_number": dict(self.violations),
            "peak_by_number": dict(self.peak),
            "counted_by_number": dict(self.counted),
            "accepted_messages": len(self.accepted),
            "accepted_sends": sum(len(v) for v in self.accepted.values()),
            "duplicates": self.duplicates,
            "duplicated_keys": sorted(k for k, v in self.accepted.items() if len(v) > 1)[:50],
        }
