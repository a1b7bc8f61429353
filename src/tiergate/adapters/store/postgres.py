"""The scale-out store: PostgreSQL through psycopg 3 (async) and a connection pool.

The shared SQL runs unchanged but for placeholders (``?`` -> ``%s``). What PostgreSQL adds:
- row locks: ``apply_updates(lease=...)`` reads its scope rows ``FOR UPDATE`` before writing, so a
  lease cannot change hands mid-batch; ``acquire_scopes`` takes free scopes ``FOR UPDATE SKIP
  LOCKED``, so concurrent workers never take the same scope and never wait on each other;
- migrations under ``pg_advisory_xact_lock``, so processes starting together migrate once;
- ``notify``/``listen`` over LISTEN/NOTIFY, so a wake-up reaches every process.

A ``schema`` (keyword, or ``?schema=name`` in the URL) puts every table in that schema (created if
missing) and namespaces notification channels, so tests and tenants of a shared server stay apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
import psycopg
from psycopg import errors, sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from tiergate.adapters.store.sql import Columns, Row, SqlStore, Tx, literals

__all__ = ["PostgresStore"]

log = logging.getLogger(__name__)

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


@functools.lru_cache(maxsize=2048)
def _pg(query: str) -> str:
    """The shared ``?`` placeholders in psycopg's style (a literal ``%`` is doubled first)."""
    return query.replace("%", "%%").replace("?", "%s")


ColumnTypes = dict[tuple[str, str], str]  # (table, column) -> SQL type, e.g. "double precision"


class _PgTx:
    """The primitives over one pooled connection; the ``*_many`` ones are one statement per call."""

    __slots__ = ("_conn", "_types")

    def __init__(self, conn: psycopg.AsyncConnection[Any], types: ColumnTypes) -> None:
        self._conn, self._types = conn, types

    async def execute(self, query: str, params: Sequence[Any] = ()) -> int:
        cursor = await self._conn.execute(_pg(query), params)
        return cursor.rowcount

    async def executemany(self, query: str, rows: Sequence[Sequence[Any]]) -> int:
        if not rows:
            return 0
        async with self._conn.cursor() as cursor:
            await cursor.executemany(_pg(query), rows)  # pipelined: one round trip for the batch
            return cursor.rowcount

    async def fetchone(self, query: str, params: Sequence[Any] = ()) -> Row | None:
        cursor = await self._conn.execute(_pg(query), params)
        return await cursor.fetchone()

    async def fetchall(self, query: str, params: Sequence[Any] = ()) -> list[Row]:
        cursor = await self._conn.execute(_pg(query), params)
        return await cursor.fetchall()

    async def insert_many(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                          suffix: str = "") -> int:
        if not rows:
            return 0
        if not suffix and len(rows) >= _COPY_FROM:
            # No conflict to settle: COPY, whose rows psycopg formats in C (the unnest arrays' binary
            # dump runs in Python, and was half of a campaign insert's time).
            async with self._conn.cursor() as cursor, cursor.copy(
                    f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    await copy.write_row(row)
            return len(rows)
        source, params = self._rows(table, columns, rows)
        cursor = await self._conn.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM {source} {suffix}", params
        )
        return cursor.rowcount

    async def update_many(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                          extra: str = "", key: str = "id", appended: Sequence[str] = (),
                          only_if: tuple[str, tuple[str, ...]] | None = None) -> int:
        if not rows:
            return 0
        names = [*columns, *appended, key]
        source, params = self._rows(table, names, rows)
        sets = ", ".join([*(f"{c} = v.{c}" for c in columns), *(f"{c} = t.{c} || v.{c}" for c in appended),
                          *([extra] if extra else [])])
        guard = "" if only_if is None else f" AND t.{only_if[0]} IN ({literals(only_if[1])})"
        cursor = await self._conn.execute(
            f"UPDATE {table} AS t SET {sets} FROM {source} WHERE t.{key} = v.{key}{guard}", params
        )
        return cursor.rowcount

    async def delete_many(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
        if not rows:
            return 0
        source, params = self._rows(table, columns, rows)
        match = " AND ".join(f"t.{c} = v.{c}" for c in columns)
        cursor = await self._conn.execute(f"DELETE FROM {table} AS t USING {source} WHERE {match}", params)
        return cursor.rowcount

    def _rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> tuple[str, list[Any]]:
        """A batch of rows as one relation ``v`` with these column names (SQL text, parameters).

        One JSON array of arrays, typed back column by column in SQL: orjson writes it in C, where
        psycopg's array dumpers loop in Python per element (their binary dump was still ~15% of a
        worker's time). JSON has no NaN or infinity (orjson writes ``null``), so a batch with one
        takes the arrays instead.
        """
        types = [self._types[(table, c)] for c in columns]
        if isinstance(rows, Columns):  # orjson writes lists and tuples, not other sequences
            rows = list(rows)
        if _JSON_TYPES.issuperset(types) and all(
            math.isfinite(sum(filter(None, (row[i] for row in rows))))
            for i, t in enumerate(types) if t == "double precision"
        ):
            with contextlib.suppress(TypeError):  # a value JSON cannot carry: the arrays take it
                batch = orjson.dumps(rows).decode()
                fields = ", ".join(f"(r->>{i})::{t} AS {c}"
                                   for i, (c, t) in enumerate(zip(columns, types, strict=True)))
                return f"(SELECT {fields} FROM jsonb_array_elements(%s::jsonb) AS e (r)) AS v", [batch]
        arrays, casts = self._arrays(table, columns, rows)
        return f"unnest({casts}) AS v ({', '.join(columns)})", arrays

    def _arrays(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> tuple[list[Any], str]:
        """One array parameter per column, and ``%b::type[], ...`` to unnest them with.

        Binary parameters (``%b``): psycopg dumps a list in text format in Python, element by element
        (quoting, escaping), which cost more than the statement itself; the binary dump is ~3x faster.
        """
        types = [self._types[(table, c)] for c in columns]
        arrays: list[Any] = []
        for sql_type, values in zip(types, zip(*rows, strict=True), strict=True):
            if sql_type == "double precision":  # an int among floats would make psycopg guess an int array
                arrays.append([None if v is None else float(v) for v in values])
            else:
                arrays.append(list(values))
        return arrays, ", ".join(f"%b::{t}[]" for t in types)


_JSON_TYPES = frozenset({"text", "double precision", "integer", "bigint", "boolean"})  # exact through JSON
_COPY_FROM = 50  # rows: below this, one INSERT statement is as quick as a COPY's extra round trips


def _split_schema(url: str) -> tuple[str, str | None]:
    """Take a ``schema=`` query parameter out of the URL (libpq would reject it)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@"))
    return urlunsplit(parts)


class _Subscription:
    """One LISTEN connection and the task relaying its notifications (reconnects if it drops)."""

    def __init__(self, store: PostgresStore, channel: str, callback: Callable[[], None]) -> None:
        self.store, self.channel, self.callback = store, channel, callback
        self.conn: psycopg.AsyncConnection[Any] | None = None
        self.task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        conn = await psycopg.AsyncConnection.connect(self.store.url, autocommit=True, **self.store.connect_kwargs)
        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        self.conn = conn

    async def relay(self) -> None:
        while True:
            try:
                if self.conn is None:
                    await self.connect()
                    self.wake()  # notifications may have been missed while disconnected
                assert self.conn is not None
                async for _ in self.conn.notifies():
                    self.wake()
            except psycopg.Error as exc:
                log.warning("LISTEN %s lost its connection (%s); reconnecting", self.channel, exc)
            await self.drop()
            await asyncio.sleep(self.store.reconnect_delay)

    def wake(self) -> None:
        try:
            self.callback()
        except Exception:  # a failing listener must not end the subscription
            log.exception("listener of %s failed", self.channel)

    async def drop(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                await conn.close()

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.drop()
        self.store.subscriptions.discard(self)


class PostgresStore(SqlStore):
    """``Store`` on PostgreSQL: ``PostgresStore("postgresql://user@host/db", schema="tiergate")``."""

    dialect = "postgres"
    concurrent_calls = True  # a pool: a write in flight does not hold up the next claim
    lock_rows = " FOR UPDATE"
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str, *, schema: str | None = None, min_size: int = 1, max_size: int = 8,
                 connect_timeout: float = 10.0) -> None:
        super().__init__()
        self.url, url_schema = _split_schema(url)
        self.schema = schema or url_schema
        if self.schema is not None and not _IDENTIFIER.match(self.schema):
            raise ValueError(f"schema {self.schema!r}: use letters, digits and '_' (at most 63)")
        self.min_size, self.max_size = min_size, max_size
        self.connect_timeout = connect_timeout
        self.connect_kwargs: dict[str, Any] = {}
        if self.schema is not None:
            self.connect_kwargs["options"] = f"-c search_path={self.schema}"
        self.subscriptions: set[_Subscription] = set()
        self.reconnect_delay = 1.0  # seconds between attempts to restore a lost LISTEN connection
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None
        self._namespace = ""  # the schema the tables live in, prefixed to notification channels
        self._types: ColumnTypes = {}

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, connect_timeout=max(1, int(self.connect_timeout)),
                **self.connect_kwargs,
            )
        except psycopg.OperationalError as exc:
            raise ConnectionError(f"cannot reach PostgreSQL at {_redacted(self.url)}: {exc}") from exc
        async with conn:
            await self._migrate_once(conn)
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            self.url, min_size=self.min_size, max_size=self.max_size, open=False, name="tiergate",
            kwargs={"autocommit": True, **self.connect_kwargs},
        )
        await pool.open(wait=True, timeout=self.connect_timeout)
        self._pool = pool

    async def _migrate_once(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Create the schema if asked and migrate, one process at a time (advisory lock)."""
        if self.schema is None:
            row = await (await conn.execute("SELECT current_schema()")).fetchone()
            if row is None or row[0] is None:
                raise RuntimeError("search_path names no existing schema: create it or pass schema=")
            self._namespace = row[0]
        else:
            self._namespace = self.schema
        digest = hashlib.blake2b(f"tiergate:migrate:{self._namespace}".encode(), digest_size=8).digest()
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (int.from_bytes(digest, "big", signed=True),))
            if self.schema is not None:
                await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
            await self._migrate(_PgTx(conn, self._types))
            rows = await (await conn.execute(
                "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute AS a "
                "JOIN pg_class AS c ON c.oid = a.attrelid JOIN pg_namespace AS n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped",
                (self._namespace,),
            )).fetchall()
            self._types = {(table, column): sql_type for table, column, sql_type in rows}

    async def close(self) -> None:
        for subscription in list(self.subscriptions):
            await subscription.stop()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def _in(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """``column = ANY(?)`` over one array parameter: a statement with hundreds of placeholders costs
        psycopg more to build (and the server more to parse) than running it."""
        return f"{column} = ANY(?)", [list(values)]

    def _not_in(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """A hashed anti-join over one JSON text parameter (orjson builds it in C): an array
        parameter is dumped element by element in Python, and ``<> ALL`` compares every row with
        every value."""
        return f"{column} NOT IN (SELECT jsonb_array_elements_text(?::jsonb))", [orjson.dumps(list(values)).decode()]

    def is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, errors.DeadlockDetected | errors.SerializationFailure | errors.LockNotAvailable)

    async def size_bytes(self) -> int:
        async with self.reader() as tx:
            row = await tx.fetchone(
                "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class AS c "
                "JOIN pg_namespace AS n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() "
                "AND c.relkind = 'r'")
        return int(row[0]) if row else 0

    def wrote_nothing(self, exc: BaseException) -> bool:
        # A lost connection (OperationalError) may have been lost at the COMMIT, after the server
        # committed; anything else failed in a transaction the server rolled back.
        return isinstance(exc, Exception) and not isinstance(exc, psycopg.OperationalError)

    def is_unavailable(self, exc: BaseException) -> bool:
        # the server unreachable or going away, out of disk or connections (psycopg's OperationalError
        # covers SQLSTATE classes 08, 53, 57), no pooled connection within its timeout
        return isinstance(exc, psycopg.OperationalError | PoolTimeout)

    def _open_pool(self) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
        if self._pool is None:
            raise RuntimeError("the store is not open: call open() first")
        return self._pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self._open_pool().connection() as conn, conn.transaction():
            yield _PgTx(conn, self._types)

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[Tx]:
        async with self._open_pool().connection() as conn:
            yield _PgTx(conn, self._types)

    # -- wake-ups between processes ----------------------------------------------------------
    def _channel(self, channel: str) -> str:
        name = f"{self._namespace}.{channel}" if self._namespace not in ("", "public") else channel
        return name[:63]

    async def notify(self, channel: str) -> None:
        """NOTIFY every process listening on ``channel`` (in this schema), this one included."""
        async with self.reader() as tx:
            await tx.execute("SELECT pg_notify(?, '')", (self._channel(channel),))

    async def listen(self, channel: str, callback: Callable[[], None]) -> Callable[[], Awaitable[None]]:
        """LISTEN on a dedicated connection and call ``callback`` per notification.

        Returns an async function that stops listening. LISTEN is active when this returns; if the
        connection drops it reconnects and calls ``callback`` once (a wake-up may have been missed).
        """
        subscription = _Subscription(self, self._channel(channel), callback)
        await subscription.connect()
        subscription.task = asyncio.create_task(subscription.relay(), name=f"listen:{channel}")
        self.subscriptions.add(subscription)
        return subscription.stop
