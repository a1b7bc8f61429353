"""What the SQLite adapter sends to its engine, seen from outside: timed per statement, or recorded
and replayed alone.

Both wrap the apsw connections the adapter opens (this process only), so the adapter is measured as
it is, unchanged. The replay answers "how fast could this path go if Python cost nothing": the
same statements with the same parameters, in the same transactions, on a fresh file opened by the
adapter (same schema, pragmas and checkpoint thread), with nothing around them.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import apsw

from tiergate.adapters.store import sqlite as adapter

__all__ = ["Recorded", "record_sql", "replay", "time_sql"]


class _TracedConnection:
    """An apsw connection that adds up the time of each statement (by its first 90 characters) and,
    while ``recording`` holds a list, appends every call to it."""

    spent: collections.Counter[str] = collections.Counter()
    calls: collections.Counter[str] = collections.Counter()
    recording: list[tuple[str, str, tuple[Any, ...]]] | None = None

    def __init__(self, conn: apsw.Connection) -> None:
        self._conn = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def _traced(self, how: str, sql: str, *args: Any) -> Any:
        if self.recording is not None:
            self.recording.append((how, sql, args))
        key = ("many " if how == "executemany" else "") + " ".join(sql.split())[:90]
        started = time.perf_counter()
        try:
            return getattr(self._conn, how)(sql, *args)
        finally:
            self.spent[key] += time.perf_counter() - started
            self.calls[key] += 1

    def execute(self, sql: str, *args: Any) -> Any:
        return self._traced("execute", sql, *args)

    def executemany(self, sql: str, *args: Any) -> Any:
        return self._traced("executemany", sql, *args)


def time_sql() -> type[_TracedConnection]:
    """Route the adapter's connections through ``_TracedConnection``; its class counters fill up."""
    connect = apsw.Connection

    class _Module:
        def __getattr__(self, name: str) -> Any:
            return getattr(apsw, name)

        @staticmethod
        def Connection(*args: Any, **kwargs: Any) -> Any:  # apsw's name
            return _TracedConnection(connect(*args, **kwargs))

    adapter.apsw = _Module()  # type: ignore[assignment]
    return _TracedConnection


Recorded = list[tuple[str, str, tuple[Any, ...]]]


@contextmanager
def record_sql(calls: Recorded) -> Iterator[Recorded]:
    """Append to ``calls`` every call the adapter makes on its connections inside the block
    (``time_sql`` must be on)."""
    _TracedConnection.recording = calls
    try:
        yield calls
    finally:
        _TracedConnection.recording = None


def replay(conn: Any, calls: Recorded) -> float:
    """Seconds to run ``calls`` again on ``conn`` (a traced or plain connection), every row read."""
    conn = getattr(conn, "_conn", conn)  # the bare connection: no tracing in the timed loop
    started = time.perf_counter()
    for how, sql, args in calls:
        cursor = getattr(conn, how)(sql, *args)
        if how == "execute":
            for _row in cursor:
                pass
    return time.perf_counter() - started
