"""Clocks. Every component takes one, so tests and simulations never sleep.

Times are float seconds since the Unix epoch (UTC) throughout tiergate.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "SystemClock", "VirtualClock"]


class Clock(Protocol):
    def now(self) -> float: ...


class SystemClock:
    """Wall-clock time."""

    def now(self) -> float:
        return time.time()


class VirtualClock:
    """A clock that moves only when told to: simulations jump straight to the next wake-up."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def set(self, t: float) -> None:
        if t < self._now:
            raise ValueError("a virtual clock never goes backwards")
        self._now = float(t)

    def advance(self, seconds: float) -> None:
        self.set(self._now + seconds)
