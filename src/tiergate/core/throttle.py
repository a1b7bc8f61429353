"""Per-sender throughput and per-recipient pair-rate limits, as pure state over explicit time."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["PAIR_INTERVAL", "PairRate", "TokenBucket"]

PAIR_INTERVAL = 6.0  # the platform allows about one message per 6 s to the same recipient
_EPS = 1e-6  # token slack: float sums of tiny refills must not leave a bucket "almost" full forever


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second with a one-second burst: the platform's messages-per-second cap."""

    rate: float
    tokens: float = -1.0
    updated: float = 0.0

    def _refill(self, now: float) -> None:
        if self.tokens < 0:
            self.tokens, self.updated = self.rate, now
        elif now > self.updated:
            self.tokens = min(self.rate, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def take(self, now: float, cost: float = 1.0) -> bool:
        self._refill(now)
        if self.tokens >= cost - _EPS:
            self.tokens = max(0.0, self.tokens - cost)
            return True
        return False

    def can_take(self, now: float, cost: float = 1.0) -> bool:
        self._refill(now)
        return self.tokens >= cost - _EPS

    def available(self, now: float) -> float:
        self._refill(now)
        return self.tokens

    def next_token_at(self, now: float, cost: float = 1.0) -> float:
        self._refill(now)
        missing = cost - self.tokens
        if missing <= _EPS:
            return now
        # Always strictly later than ``now``: at epoch magnitudes a tiny wait rounds back to ``now``.
        return max(now + missing / self.rate, math.nextafter(now, math.inf))


@dataclass(slots=True)
class PairRate:
    """Earliest next send per recipient of one sender (the pair limit, and per-recipient back-offs)."""

    interval: float = PAIR_INTERVAL
    next_ok: dict[str, float] = field(default_factory=dict)
    prune_above: int = 100_000  # entries; doubled past what a pruning keeps, so pruning stays amortized O(1)

    def ready_at(self, recipient: str) -> float:
        return self.next_ok.get(recipient, float("-inf"))

    def sent(self, recipient: str, now: float) -> None:
        self.next_ok[recipient] = max(self.next_ok.get(recipient, now), now + self.interval)

    def hold(self, recipient: str, until: float) -> None:
        """Keep this recipient waiting until ``until`` (131056 back-off, 131049's day)."""
        self.next_ok[recipient] = max(self.next_ok.get(recipient, until), until)

    def prune(self, now: float) -> None:
        """Forget recipients whose wait is over: a worker that reaches millions of recipients must
        not keep one entry each for its lifetime. Runs only once the map has doubled since the last
        pruning (long holds, like 131049's day, may keep many entries that are still waiting)."""
        if len(self.next_ok) > self.prune_above:
            self.next_ok = {r: t for r, t in self.next_ok.items() if t > now}
            self.prune_above = max(self.prune_above, 2 * len(self.next_ok))
