"""Ids for bulk inserts, in exactly the format of ``tiergate.ids.new_id`` but several times faster.

``new_id`` encodes digit by digit (about 7 us an id); a batch of 1,000 messages would spend more
time naming rows than storing them. Here one ``os.urandom`` call serves the batch, the millisecond
part is encoded once, and the 80 random bits go out two base32 digits (10 bits) at a time.
"""

from __future__ import annotations

import os
import time

__all__ = ["new_ids"]

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case, as tiergate.ids
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]  # every 10-bit value as two digits
_MS_MASK = (1 << 48) - 1
_LOW40 = (1 << 40) - 1


def _digits40(value: int) -> str:
    p = _PAIRS
    return p[value >> 30] + p[(value >> 20) & 1023] + p[(value >> 10) & 1023] + p[value & 1023]


def new_ids(prefix: str, count: int, at: float | None = None) -> list[str]:
    """``count`` ids ``prefix_`` + 26 characters: 48 bits of milliseconds (10 digits), 80 random bits."""
    ms = int((time.time() if at is None else at) * 1000) & _MS_MASK
    lead = f"{prefix}_{_PAIRS[ms >> 40]}{_digits40(ms & _LOW40)}"
    noise = os.urandom(10 * count)
    from_bytes, p = int.from_bytes, _PAIRS
    out = []
    for i in range(0, 10 * count, 10):  # inlined: a call per half would double the cost
        hi = from_bytes(noise[i : i + 5], "big")
        lo = from_bytes(noise[i + 5 : i + 10], "big")
        out.append(
            f"{lead}{p[hi >> 30]}{p[(hi >> 20) & 1023]}{p[(hi >> 10) & 1023]}{p[hi & 1023]}"
            f"{p[lo >> 30]}{p[(lo >> 20) & 1023]}{p[(lo >> 10) & 1023]}{p[lo & 1023]}"
        )
    return out
