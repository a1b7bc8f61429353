"""Per-sender throughput and per-recipient pair-rate limits, as pure state over explicit time."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["PAIR_INTERVAL", "PairRate", "TokenBucket"]

PAIR_INTERVAL = 6.0  # the platform allows about one message per 6 s to the same recipient
_EPS = 1e-6  # token slack: float sums of tiny refills must not leave a bucket "almost" full forever


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second with a one-second burst: the platform's messages-per-second cap.

    The configured pace is ``ceiling``. When the platform answers 130429 ("slow down") the pace is
    halved (``slow_down``), at most once per ``hold`` seconds since a batch in flight answers all
    at once, and never below ``floor``; it then climbs back linearly to the ceiling over
    ``recovery`` seconds unless another 130429 comes: the sender settles just under whatever pace
    the platform really allows, instead of each message retrying at the configured one until its
    retries run out.
    """

    rate: float
    tokens: float = -1.0
    updated: float = 0.0
    ceiling: float = 0.0  # the configured pace (0: ``rate`` as given)
    floor: float = 1.0
    hold: float = 1.0
    recovery: float = 60.0
    slowed_to: float = 0.0
    slowed_at: float = -math.inf

    def __post_init__(self) -> None:
        if self.ceiling <= 0:
            self.ceiling = self.rate

    def _refill(self, now: float) -> None:
        if self.rate < self.ceiling and now > self.slowed_at:
            elapsed = now - self.slowed_at
            if elapsed >= self.recovery:
                self.rate = self.ceiling
            else:
                climbed = self.slowed_to + elapsed * (self.ceiling - self.slowed_to) / self.recovery
                self.rate = min(self.ceiling, max(self.rate, climbed))
        if self.tokens < 0:
            self.tokens, self.updated = self.rate, now
        elif now > self.updated:
            self.tokens = min(self.rate, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def slow_down(self, now: float) -> bool:
        """The platform said the sender is over its pace: halve it (see the class). True if it changed."""
        if now - self.slowed_at < self.hold:
            return False
        self._refill(now)
        slower = max(min(self.floor, self.ceiling), self.rate / 2)
        if slower >= self.rate:
            return False
        self.rate = self.slowed_to = slower
        self.slowed_at = now
        self.tokens = min(self.tokens, self.rate)
        return True

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
