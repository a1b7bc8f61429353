"""Garbage-collector settings for long-running batch work.

The dispatcher allocates a few objects per message (rows, messages, updates) while its rolling
windows and the sandbox keep millions alive. With CPython's default thresholds (700, 10, 10) a
young collection runs every few hundred allocations and the older generations are rescanned
often: that was ~25% of a 200k-recipient simulation's time and ~12% of a PostgreSQL worker's
CPU (BENCHMARKS.md). Nothing here creates reference cycles on the hot path, so collecting less
often costs no memory to speak of.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["THRESHOLDS", "tune_gc", "tuned_gc"]

THRESHOLDS = (50_000, 50, 100)


def tune_gc() -> None:
    """For a process that runs the dispatcher until it stops (``tiergate serve``/``worker``):
    what exists at start (modules, settings) is frozen out of every scan, and collections run
    less often."""
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)


@contextmanager
def tuned_gc() -> Iterator[None]:
    """The same thresholds for one long call (a simulation), restored afterwards."""
    before = gc.get_threshold()
    gc.set_threshold(*THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)
