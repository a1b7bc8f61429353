"""Sortable unique ids: a prefix, 48 bits of milliseconds, 80 random bits (like ULID/UUIDv7).

Sortable ids keep inserts append-mostly in B-tree indexes on both SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def _b32(value: int, length: int) -> str:
    out = []
    for _ in range(length):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


def new_id(prefix: str, at: float | None = None) -> str:
    """``prefix_`` + 26 sortable characters; ``at`` (epoch seconds) defaults to wall time."""
    ms = int((time.time() if at is None else at) * 1000) & ((1 << 48) - 1)
    rand = int.from_bytes(os.urandom(10), "big")
    return f"{prefix}_{_b32(ms, 10)}{_b32(rand, 16)}"
