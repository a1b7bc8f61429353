"""Sortable unique ids: a prefix, 48 bits of milliseconds, 80 random bits (like ULID/UUIDv7).

Sortable ids keep inserts append-mostly in B-tree indexes on both SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def _b32(value: int, length: int) -> str:
    out = []
    for _ in range(length):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


_last = (-1, 0)  # (milliseconds, random part) of this process's latest id
_lock = threading.Lock()


def new_id(prefix: str, at: float | None = None) -> str:
    """``prefix_`` + 26 sortable characters; ``at`` (epoch seconds) defaults to wall time.

    Ids made by one process in the same millisecond count up from the first one's random part
    (ULID's monotonic mode), so they sort in the order they were made: records created at the same
    instant (a virtual clock, a burst) still list in creation order.
    """
    global _last
    ms = int((time.time() if at is None else at) * 1000) & ((1 << 48) - 1)
    with _lock:
        last_ms, last_rand = _last
        if ms == last_ms and last_rand < (1 << 80) - 1:
            rand = last_rand + 1
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1  # 79 bits: room to count up
        _last = (ms, rand)
    return f"{prefix}_{_b32(ms, 10)}{_b32(rand, 16)}"
