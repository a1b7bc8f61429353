"""The SQLite adapter writes many rows as multi-row statements (``RowsByValues``): the same rows,
changes and counts as one statement per row (``RowsByExecutemany``), found by the key's index."""

from __future__ import annotations

import asyncio
from typing import Any

import apsw
from hypothesis import given, settings
from hypothesis import strategies as st

from tiergate.adapters.store.sql import RowsByExecutemany, _runs, _update_values_sql
from tiergate.adapters.store.sqlite import SQLiteStore, _SQLiteTx


class _PerRow(_SQLiteTx):
    """The reference: the same connection's ``*_many`` as one ``executemany`` (a statement run per row)."""

    insert_many = RowsByExecutemany.insert_many
    update_many = RowsByExecutemany.update_many


# ``x`` has no type: it keeps what it is given, so 1, 1.0 and True bound alike would show.
_TABLE = ("CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER NOT NULL, state TEXT NOT NULL, x, "
          "log TEXT NOT NULL DEFAULT '')")
_STATES = ("queued", "sending", "sent")


@given(n=st.integers(0, 700), most=st.sampled_from([1, 2, 4, 8, 64]))
def test_runs_cover_the_rows_in_order_in_powers_of_two(n: int, most: int) -> None:
    rows = list(range(n))
    runs = [(size, rows[start:start + size]) for start, size in _runs(n, most)]
    assert [r for _size, run in runs for r in run] == rows
    sizes = [size for size, _run in runs]
    assert all(size == len(run) for size, run in runs)
    assert all(size & (size - 1) == 0 and size <= most for size in sizes)
    below = [s for s in sizes if s < most]  # the rest after the full runs: each power at most once
    assert sizes == sorted(sizes, reverse=True) and len(below) == len(set(below))


_X = st.sampled_from([1, 1.0, True, 0, False, 0.0, None, "1", "", b"1"])


def _rows(keys: int, how: str) -> st.SearchStrategy[list[tuple[int, int, str, Any]]]:
    """Rows keyed by distinct ints. ``same``: every column but the key one value (drawn once), so
    that multi-row statements bind them once for all rows; ``equal``: ``x`` equal in every row
    but not of one type (1, 1.0, True), which must not be bound as one."""
    keys_ = st.lists(st.integers(0, keys), max_size=200, unique=True)
    if how == "same":
        return st.tuples(st.integers(-5, 5), st.sampled_from(_STATES), _X).flatmap(
            lambda v: keys_.map(lambda ks: [(k, *v) for k in ks]))
    if how == "equal":
        return st.sampled_from([(1, 1.0, True), (0, 0.0, False)]).flatmap(
            lambda kinds: st.lists(st.tuples(st.integers(0, keys), st.just(1), st.just("sent"), st.sampled_from(kinds)),
                                   min_size=2, max_size=20, unique_by=lambda r: r[0]))
    return st.lists(st.tuples(st.integers(0, keys), st.integers(-5, 5), st.sampled_from(_STATES), _X),
                    max_size=200, unique_by=lambda r: r[0])


_HOW = st.sampled_from(["random", "same", "equal"])


@settings(max_examples=80, deadline=None)
@given(data=st.data(), guarded=st.booleans(), upsert=st.booleans())
def test_multirow_writes_match_a_statement_per_row(data: st.DataObject, guarded: bool, upsert: bool) -> None:
    inserts = data.draw(_rows(300, data.draw(_HOW)), "inserts")
    updates = data.draw(_rows(400, data.draw(_HOW)), "updates")
    results = []
    for make in (_SQLiteTx, _PerRow):
        conn = apsw.Connection(":memory:")
        conn.execute(_TABLE)
        tx = make(conn)
        rows = [(f"m{k:04d}", n, state, x) for k, n, state, x in inserts]
        suffix = "ON CONFLICT (id) DO UPDATE SET n = excluded.n + t.n" if upsert else ""

        async def writes(tx: Any = tx, rows: list[tuple[Any, ...]] = rows, suffix: str = suffix) -> tuple[int, ...]:
            columns = ("id", "n", "state", "x")
            inserted = await tx.insert_many("t", columns, rows)
            again = await tx.insert_many("t", columns, rows[: len(rows) // 2], suffix) if upsert else 0
            changed = await tx.update_many(
                "t", ("state", "n", "x"), [(state, n, x, f"[{n}]", f"m{k:04d}") for k, n, state, x in updates],
                extra="n = n + 100", appended=("log",), only_if=("state", ("queued", "sending")) if guarded else None)
            return inserted, again, changed

        counts = asyncio.run(writes())
        results.append((counts, conn.execute("SELECT *, typeof(x) FROM t ORDER BY id").fetchall()))
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


def test_a_multirow_update_binds_shared_values_once_and_lists_only_what_differs(tmp_path: Any) -> None:
    # state and updated_at shared (?1, ?2), history line shared (?3): VALUES holds (reason, id).
    sql = _update_values_sql("messages", ("state", "updated_at", "reason"), "", "id", ("history",), None, 2, (0, 1, 3))
    assert "FROM (VALUES (?4, ?5), (?6, ?7)) AS v" in sql
    assert "state = ?1" in sql and "updated_at = ?2" in sql and "history = messages.history || ?3" in sql
    assert "reason = v.column1" in sql and sql.endswith("WHERE messages.id = v.column2")
    # Every column, the key too, the same in all rows: no batch has that, but the plain form serves it.
    every = _update_values_sql("messages", ("state",), "", "id", (), None, 2, (0, 1))
    assert "FROM (VALUES (?1, ?2), (?3, ?4)) AS v" in every

    async def run() -> list[tuple[Any, ...]]:
        async with SQLiteStore(str(tmp_path / "shared.db")) as store:
            conn = store._conn
            assert conn is not None
            conn.execute(_TABLE)
            conn.execute("INSERT INTO t (id, n, state) VALUES ('a', 0, 'queued'), ('b', 0, 'queued')")
            tx = _SQLiteTx(conn)
            rows = [(7, "sent", 1, "l;", "a"), (7, "sent", 2, "l;", "b")]  # n, state, log shared; x, key differ
            changed = await tx.update_many("t", ("n", "state", "x"), rows, appended=("log",))
            assert changed == 2
            return conn.execute("SELECT id, n, state, x, log FROM t ORDER BY id").fetchall()

    assert asyncio.run(run()) == [("a", 7, "sent", 1, "l;"), ("b", 7, "sent", 2, "l;")]


def test_apsw_sqlite_runs_without_memory_statistics_unless_a_connection_came_first() -> None:
    import subprocess
    import sys

    fresh = ("import apsw, tiergate.adapters.store.sqlite as s\n"
             "c = apsw.Connection(':memory:'); c.execute('CREATE TABLE t (x)')\n"
             "c.execute('INSERT INTO t VALUES (randomblob(100000))')\n"
             "print(apsw.memory_used(), s._without_memory_statistics())")
    out = subprocess.run([sys.executable, "-c", fresh], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0", "False"]  # off from import on; with a connection open, nothing is changed
