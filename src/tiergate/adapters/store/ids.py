"""Ids for bulk inserts, in exactly the format of ``tiergate.ids.new_id`` but several times faster.

``new_id`` encodes digit by digit (about 7 us an id); a batch of 1,000 messages would spend more
time naming rows than storing them. Here one ``os.urandom`` call serves the batch, the millisecond
part is encoded once, and the 80-bit part goes out two base32 digits (10 bits) at a time.
"""

from __future__ import annotations

import os
import time

__all__ = ["id_floor", "new_ids"]

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case, as tiergate.ids
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]  # every 10-bit value as two digits
_MS_MASK = (1 << 48) - 1
_LOW40 = (1 << 40) - 1


def _digits40(value: int) -> str:
    p = _PAIRS
    return p[value >> 30] + p[(value >> 20) & 1023] + p[(value >> 10) & 1023] + p[value & 1023]


def _lead(prefix: str, at: float) -> str:
    ms = int(at * 1000) & _MS_MASK
    return f"{prefix}_{_PAIRS[ms >> 40]}{_digits40(ms & _LOW40)}"


def id_floor(prefix: str, at: float) -> str:
    """The lowest id made at ``at``'s millisecond: every id made earlier sorts below it, so
    ``id < id_floor(...)`` is an index range over the rows created before ``at``."""
    return _lead(prefix, at) + "0" * 16


def new_ids(prefix: str, count: int, at: float | None = None) -> list[str]:
    """``count`` ids ``prefix_`` + 26 characters: 48 bits of milliseconds (10 digits), 80 bits that
    start at a random point and count up through the batch (ULID's monotonic mode).

    Ascending ids go into the primary key's B-tree at one edge: a million random ones made the same
    millisecond (a campaign, the simulator's day) land at random leaves of it, each insert a cache
    miss and a half-empty page. Two batches of the same millisecond (other processes) overlap only
    if their random starts fall within a batch of each other: about ``count / 2**79``.
    """
    lead = _lead(prefix, time.time() if at is None else at)
    start = int.from_bytes(os.urandom(10), "big") >> 1  # 79 bits: a batch never wraps past 2**80
    p = _PAIRS
    out: list[str] = []
    value, end = start, start + count
    while value < end:
        # Ids of one block of 1,024 share all but their last two digits: those are made once.
        block = value >> 10
        stop = min(end, (block + 1) << 10)
        head = (f"{lead}{_digits40(value >> 40)}{p[(value >> 30) & 1023]}{p[(value >> 20) & 1023]}"
                f"{p[(value >> 10) & 1023]}")
        out += [head + last for last in p[value & 1023:(stop - 1 & 1023) + 1]]
        value = stop
    return out
