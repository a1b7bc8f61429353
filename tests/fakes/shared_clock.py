"""A virtual clock shared by separate processes: one file holds the time, a driver moves it.

Multi-process tests need every worker, and the fake platform that judges them, to agree on the
time while days pass in seconds. ``FileClock(path).now()`` reads the file on every call (a few
microseconds); ``set``/``advance`` replace it atomically (write a sibling, then ``os.replace``),
so a reader sees either the old time or the new one, never half of it. Times round-trip exactly
(``repr`` of the float), so a recipient's expiry computed by tiergate and by the platform agree to
the bit. Tests only: the core takes any ``Clock``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["FileClock"]


class FileClock:
    """``tiergate.clock.Clock`` over a file; only the driver of a test calls ``set``/``advance``."""

    def __init__(self, path: str | os.PathLike[str], start: float | None = None) -> None:
        self.path = Path(path)
        if start is not None:
            self._write(start)

    def now(self) -> float:
        return float(self.path.read_text())

    def set(self, t: float) -> None:
        if t < self.now():
            raise ValueError("a virtual clock never goes backwards")
        self._write(t)

    def advance(self, seconds: float) -> None:
        self.set(self.now() + seconds)

    def _write(self, t: float) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        tmp.write_text(repr(float(t)))
        os.replace(tmp, self.path)
