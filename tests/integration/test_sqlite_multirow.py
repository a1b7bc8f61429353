"""The SQLite adapter writes many rows as multi-row statements (``RowsByValues``): the same rows,
changes and counts as one statement per row (``RowsByExecutemany``), found by the key's index."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import apsw
from hypothesis import given, settings
from hypothesis import strategies as st

from tiergate.adapters.store.sql import RowsByExecutemany, _runs, _update_values_sql
from tiergate.adapters.store.sqlite import SQLiteStore, _SQLiteTx


class _PerRow(RowsByExecutemany):
    """The reference: every ``*_many`` as one ``executemany`` (a statement run per row)."""

    def __init__(self, conn: apsw.Connection) -> None:
        self._conn = conn

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        if not rows:
            return 0
        before = self._conn.total_changes()
        self._conn.executemany(sql, rows)
        return self._conn.total_changes() - before


_TABLE = "CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER NOT NULL, state TEXT NOT NULL, log TEXT NOT NULL DEFAULT '')"
_STATES = ("queued", "sending", "sent")


@given(n=st.integers(0, 700), most=st.sampled_from([1, 2, 4, 8, 64]))
def test_runs_cover_the_rows_in_order_in_powers_of_two(n: int, most: int) -> None:
    rows = list(range(n))
    runs = list(_runs(rows, most))
    assert [r for _size, run in runs for r in run] == rows
    sizes = [size for size, _run in runs]
    assert all(size == len(run) for size, run in runs)
    assert all(size & (size - 1) == 0 and size <= most for size in sizes)
    below = [s for s in sizes if s < most]  # the rest after the full runs: each power at most once
    assert sizes == sorted(sizes, reverse=True) and len(below) == len(set(below))


_inserts = st.lists(st.tuples(st.integers(0, 300), st.integers(-5, 5), st.sampled_from(_STATES)),
                    max_size=200, unique_by=lambda r: r[0])
_updates = st.lists(st.tuples(st.integers(0, 400), st.integers(-5, 5), st.sampled_from(_STATES)),
                    max_size=200, unique_by=lambda r: r[0])


@settings(max_examples=60, deadline=None)
@given(inserts=_inserts, updates=_updates, guarded=st.booleans(), upsert=st.booleans())
def test_multirow_writes_match_a_statement_per_row(inserts: list[tuple[int, int, str]],
                                                   updates: list[tuple[int, int, str]],
                                                   guarded: bool, upsert: bool) -> None:
    results = []
    for make in (_SQLiteTx, _PerRow):
        conn = apsw.Connection(":memory:")
        conn.execute(_TABLE)
        tx = make(conn)
        rows = [(f"m{k:04d}", n, state) for k, n, state in inserts]
        suffix = "ON CONFLICT (id) DO UPDATE SET n = excluded.n + t.n" if upsert else ""

        async def writes(tx: Any = tx, rows: list[tuple[str, int, str]] = rows,
                         suffix: str = suffix) -> tuple[int, ...]:
            inserted = await tx.insert_many("t", ("id", "n", "state"), rows)
            again = await tx.insert_many("t", ("id", "n", "state"), rows[: len(rows) // 2], suffix) if upsert else 0
            changed = await tx.update_many(
                "t", ("state", "n"), [(state, n, f"[{n}]", f"m{k:04d}") for k, n, state in updates],
                extra="n = n + 100", appended=("log",), only_if=("state", ("queued", "sending")) if guarded else None)
            return inserted, again, changed

        counts = asyncio.run(writes())
        results.append((counts, conn.execute("SELECT * FROM t ORDER BY id").fetchall()))
        conn.close()
    assert results[0] == results[1]


def test_a_multirow_update_finds_its_rows_by_the_key_index(tmp_path: Any) -> None:
    async def plan() -> list[str]:
        async with SQLiteStore(str(tmp_path / "plan.db")) as store:
            conn = store._conn
            assert conn is not None
            sql = _update_values_sql("messages", ("state", "updated_at"), "attempts = attempts + 1", "id",
                                     ("history",), ("state", ("queued",)), 4)
            return [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, [None] * 16)]

    steps = asyncio.run(plan())
    assert any(s.startswith("SEARCH messages USING INDEX sqlite_autoindex_messages_1 (id=?)") for s in steps), steps
    assert not any(s.startswith("SCAN messages") for s in steps), steps
