"""Local days: where day boundaries fall for a scope with a fixed offset from UTC.

An offset in seconds keeps the core free of time-zone databases; the service passes the offset that
applies to the scope's zone (UTC, offset 0, unless the sender set one).
"""

from __future__ import annotations

import math

from tiergate.core.window import DAY

__all__ = ["DAY", "day_index", "day_start", "next_day_start"]


def day_index(t: float, utc_offset: float = 0.0) -> int:
    """The local day containing ``t`` (day 0 starts at the epoch's local midnight)."""
    return math.floor((t + utc_offset) / DAY)


def day_start(day: int, utc_offset: float = 0.0) -> float:
    """The moment local day ``day`` begins."""
    return day * DAY - utc_offset


def next_day_start(t: float, utc_offset: float = 0.0) -> float:
    """The first day boundary strictly after ``t``."""
    return day_start(day_index(t, utc_offset) + 1, utc_offset)
