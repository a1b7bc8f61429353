"""The embedded store: one SQLite file in WAL mode, shared safely by several processes.

The driver is apsw, not the standard library's sqlite3: it binds parameters and builds rows with
less work per value and ships a current SQLite, which made tiergate's own statements ~1.35x faster
on the storage bench (BENCHMARKS.md). The file is an ordinary SQLite database either way.

One connection serves the whole process from the event loop: every call is a quick synchronous
step, and a lock keeps a transaction's statements together even when another thread (a test
client's portal, say) uses the same store. Write transactions start with ``BEGIN IMMEDIATE``, so
they take the database's single write lock up front: a lease check and the writes it guards, or a
lease take-over, are atomic across processes, and ``busy_timeout`` makes other writers wait.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import random
import threading
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import apsw

from tiergate.adapters.store.sql import Row, RowsByExecutemany, RowsByValues, SqlStore, Tx

__all__ = ["BackupFailed", "SQLiteStore", "backup_file"]

log = logging.getLogger(__name__)


def _without_memory_statistics() -> bool:
    """Turn off the memory statistics of apsw's SQLite (its own copy, not Python's ``sqlite3``).

    With them on, every allocation SQLite makes takes and releases a process-wide mutex to keep
    totals nobody here reads: 1.7% of the storage path's instructions (BENCHMARKS.md). The
    setting can change only while that SQLite is shut down, so only before the process opens its
    first connection (at import); a process that already has one keeps the statistics on.
    """
    if apsw.connections():
        return False
    apsw.shutdown()
    apsw.config(apsw.SQLITE_CONFIG_MEMSTATUS, 0)
    apsw.initialize()
    return True


_without_memory_statistics()


class _SQLiteTx(RowsByValues):
    """The primitives over one apsw connection (calls are synchronous and short); many rows go in
    multi-row statements (``RowsByValues``).

    Rows changed come from the connection's running total, as apsw cursors keep no rowcount: the
    difference over one call is what its statements changed (the schema has no triggers).
    """

    __slots__ = ("_conn",)

    def __init__(self, conn: apsw.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        before = self._conn.total_changes()
        self._conn.execute(sql, params)
        return self._conn.total_changes() - before

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        if not rows:
            return 0
        before = self._conn.total_changes()
        self._conn.executemany(sql, rows)
        return self._conn.total_changes() - before

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        cursor = self._conn.execute(sql, params)
        row: Row | None = next(cursor, None)
        cursor.close()  # ends the statement now, not when the cursor is collected
        return row

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._conn.execute(sql, params).fetchall()


def _ensure_floor(conn: apsw.Connection) -> None:
    """``floor()`` as PostgreSQL has it: SQLite has it only when built with its math functions (the
    SQLite apsw ships is); a build without them gets Python's."""
    try:
        conn.execute("SELECT floor(1.5)").fetchall()
    except apsw.SQLError:
        conn.create_scalar_function("floor", _floor, 1, deterministic=True)


def _floor(*args: Any) -> float | None:
    value = args[0]
    return None if value is None else float(math.floor(value))


class _ScanTx(RowsByExecutemany):
    """Reads on the store's second connection, in the store's own scan thread (``SQLiteStore.scanner``).

    SQLite releases the GIL while it works, so the event loop runs on meanwhile. The thread is the
    store's alone, not the loop's default executor: scans queue behind each other, never in front
    of the default executor's other work (DNS lookups of outgoing connections). Only reads: the
    writes stay on the main connection.
    """

    __slots__ = ("_store",)

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        raise RuntimeError("a scanner only reads")

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        raise RuntimeError("a scanner only reads")

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        row: Row | None = await self._store._in_scan_thread(sql, params, 1)
        return row

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        rows: list[Row] = await self._store._in_scan_thread(sql, params, None)
        return rows


class _Checkpointer:
    """Copies the WAL back into the database file from its own thread, so that commits do not.

    SQLite's default runs a checkpoint inside the commit that takes the WAL past 1,000 pages: that
    commit then writes the pages back and syncs the WAL and the file (about 2 us a message on the
    storage bench, an eighth of its SQL). Here a commit only notes the WAL's size (the WAL hook,
    which replaces the automatic checkpoint), and past ``pages`` this thread runs a PASSIVE
    checkpoint on its own connection: it blocks no writer or reader, and SQLite releases the GIL
    while it writes. Should the thread fall behind (a long reader pinning the WAL, another process
    checkpointing), the writer itself checkpoints once the WAL is ``OVERDUE`` times larger.
    """

    OVERDUE = 16

    def __init__(self, path: str, flags: int, busy_ms: int, pages: int = 1000) -> None:
        self.pages = pages
        self.wal_pages = 0
        self.last: tuple[int, int] | None = None  # (WAL frames, frames checkpointed) of the last run
        self.runs = 0
        self.ran = threading.Event()  # set after each run (tests wait on it)
        self._wake = threading.Event()
        self._stopping = False
        self._conn = apsw.Connection(path, flags=flags)
        self._conn.set_busy_timeout(busy_ms)
        # A connection learns the file is in WAL mode from its first read; until then it cannot checkpoint.
        if self._conn.execute("PRAGMA journal_mode").fetchone() != ("wal",):
            self._conn.close()
            raise RuntimeError(f"{path} is not in WAL mode")
        self._thread = threading.Thread(target=self._run, name="tiergate-wal-checkpoint", daemon=True)
        self._thread.start()

    def hook(self, _conn: apsw.Connection, _name: str, pages: int) -> int:
        """Called by SQLite after each commit with the WAL's size in pages."""
        self.wal_pages = pages
        if pages >= self.pages:
            self._wake.set()
        return int(apsw.SQLITE_OK)

    @property
    def overdue(self) -> bool:
        return self.wal_pages >= self.OVERDUE * self.pages

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            try:
                self.last = self._conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_PASSIVE)
            except apsw.Error as exc:  # busy: another process checkpoints; the next commit wakes us again
                log.debug("WAL checkpoint skipped: %s", exc)
            self.runs += 1
            self.ran.set()

    def close(self) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join()
        self._conn.close()


class SQLiteStore(SqlStore):
    """``Store`` on a SQLite file (or ``:memory:``, private to this store)."""

    dialect = "sqlite"
    # Pinned: without statistics the planner may pick a plan that sorts every due row; this index
    # yields them already in claim order, so a 1,000-row claim stops after 1,000 index entries.
    pins_indexes = True
    row_key = "rowid"  # the id is a second B-tree away (the table is keyed by rowid)

    def __init__(self, path: str = "tiergate.db", *, busy_timeout: float = 30.0, synchronous: str = "NORMAL",
                 journal_mode: str = "WAL", cache_mib: int = 64, page_size: int | None = 16384) -> None:
        super().__init__()
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")
        if journal_mode.upper() not in ("WAL", "MEMORY"):
            raise ValueError(f"journal_mode must be WAL or MEMORY, not {journal_mode!r}")
        if cache_mib < 1:
            raise ValueError(f"cache_mib must be at least 1, not {cache_mib!r}")
        if page_size is not None and (page_size < 512 or page_size > 65536 or page_size & (page_size - 1)):
            raise ValueError(f"page_size must be a power of two from 512 to 65536, not {page_size!r}")
        # Only a new file takes it (SQLite keeps an existing file's page size; None: SQLite's 4 KiB).
        # 16 KiB: a commit writes each changed page to the WAL as two write() calls (frame header,
        # page), so a 1,000-message batch's commits cost a third of the system calls with pages four
        # times larger: the storage bench's path ran 1.03-1.06x as fast (BENCHMARKS.md), listing
        # and claiming the same; 32 and 64 KiB were slower again (more bytes per changed row).
        self.page_size = page_size
        # WAL lets other processes read and write the file safely; MEMORY (no journal on disk) only
        # for a private throwaway file (the simulator's), where a crash loses nothing of value.
        self.journal_mode = journal_mode.upper()
        self.cache_mib = cache_mib
        self.path = path
        self.busy_timeout = busy_timeout
        # NORMAL in WAL mode: a commit survives a process crash (it may not survive a power cut);
        # OFF only for throwaway files (the simulator's).
        self.synchronous = synchronous.upper()
        self._conn: apsw.Connection | None = None
        self._tx: _SQLiteTx | None = None
        self._lock = threading.RLock()  # re-entrant: a nested transaction fails loudly, not a deadlock
        self._checkpointer: _Checkpointer | None = None
        self._scan_conn: apsw.Connection | None = None  # the scanner's, opened by its thread on first use
        self._scan_lock = threading.Lock()  # the scan thread's use of it against close()
        self._scan_thread: concurrent.futures.ThreadPoolExecutor | None = None

    async def open(self) -> None:
        if self._conn is not None:
            return
        if self.path != ":memory:" and not self.path.startswith("file:"):
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # NOMUTEX: SQLite's "multi-thread" mode for this connection, without a mutex taken and released
        # around every call (2.7% of the storage path's instructions). Safe here: every connection
        # is used by one thread at a time (``_lock``, ``_scan_lock``, the checkpointer's own thread),
        # and apsw refuses a concurrent call on one connection (ThreadingViolation) in any mode.
        flags = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE | apsw.SQLITE_OPEN_NOMUTEX
        if self.path.startswith("file:"):
            flags |= apsw.SQLITE_OPEN_URI
        conn = apsw.Connection(self.path, flags=flags, statementcachesize=512)
        conn.set_busy_timeout(int(self.busy_timeout * 1000))
        if self.page_size is not None:
            conn.execute(f"PRAGMA page_size = {self.page_size}")
        if self.path != ":memory:":
            if self.journal_mode == "WAL":
                await self._enable_wal(conn)
            else:
                conn.execute(f"PRAGMA journal_mode = {self.journal_mode}")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        conn.execute("PRAGMA temp_store = MEMORY")
        _ensure_floor(conn)
        conn.execute(f"PRAGMA cache_size = -{self.cache_mib * 1024}")  # page cache, in KiB
        self._conn, self._tx = conn, _SQLiteTx(conn)
        try:
            async with self.transaction() as tx:
                await self._migrate(tx)
            if conn.execute("PRAGMA journal_mode").fetchone() == ("wal",):
                self._checkpointer = _Checkpointer(self.path, flags, int(self.busy_timeout * 1000))
                conn.set_wal_hook(self._checkpointer.hook)
        except BaseException:
            await self.close()
            raise

    async def _enable_wal(self, conn: apsw.Connection) -> None:
        """Switch the file to WAL (a persistent setting; a no-op once done).

        The switch needs the database to itself, and SQLite answers "database is locked" at once,
        without its busy handler, while another process starting at the same moment holds a lock:
        so retry, up to ``busy_timeout``.
        """
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except (apsw.BusyError, apsw.LockedError):
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(random.uniform(0.005, 0.03))

    async def close(self) -> None:
        if self._scan_thread is not None:  # after the scans in flight, if any
            self._scan_thread.shutdown(wait=True)
            self._scan_thread = None
        with self._scan_lock:
            if self._scan_conn is not None:
                self._scan_conn.close()
                self._scan_conn = None
        with self._lock:
            if self._checkpointer is not None:  # first: the last connection closed checkpoints the rest
                self._checkpointer.close()
                self._checkpointer = None
            if self._conn is not None:
                self._conn.close()
            self._conn = self._tx = None

    def is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, (apsw.BusyError, apsw.LockedError))

    async def size_bytes(self) -> int:
        async with self.reader() as tx:
            row = await tx.fetchone("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()")
        size = row[0] if row else 0
        wal = Path(f"{self.path}-wal")
        return size + (wal.stat().st_size if self.path != ":memory:" and wal.exists() else 0)

    def wrote_nothing(self, exc: BaseException) -> bool:
        # The database is in this process: a transaction that raised, COMMIT included, was rolled
        # back (a COMMIT that succeeded raises nothing after it).
        return isinstance(exc, Exception)

    def is_unavailable(self, exc: BaseException) -> bool:
        # locked past busy_timeout (and the retries), disk or max_page_count full, an I/O error, a file
        # that cannot be opened or written (permissions, a read-only mount)
        return isinstance(exc, (apsw.BusyError, apsw.LockedError, apsw.FullError, apsw.IOError, apsw.CantOpenError,
                                apsw.ReadOnlyError))

    def _open_tx(self) -> tuple[apsw.Connection, _SQLiteTx]:
        if self._conn is None or self._tx is None:
            raise RuntimeError("the store is not open: call open() first")
        return self._conn, self._tx

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        with self._lock:
            conn, tx = self._open_tx()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield tx
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            if self._checkpointer is not None and self._checkpointer.overdue:
                self._checkpoint_now(conn)

    def _checkpoint_now(self, conn: apsw.Connection) -> None:
        """The writer's own checkpoint when the thread has fallen behind (see ``_Checkpointer``)."""
        with contextlib.suppress(apsw.BusyError):  # another connection is checkpointing: as good
            conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_PASSIVE)

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[Tx]:
        with self._lock:
            yield self._open_tx()[1]

    @asynccontextmanager
    async def scanner(self) -> AsyncIterator[Tx]:
        """Reads whose cost grows with the data run on a second connection in a worker thread (WAL
        lets it read committed data while the main connection writes). A file not in WAL mode, or
        a private ``:memory:`` database, has no second connection to give: its scans run inline."""
        if self._checkpointer is None:  # not WAL (the checkpointer runs exactly for WAL files)
            async with self.reader() as tx:
                yield tx
        else:
            yield _ScanTx(self)

    async def _in_scan_thread(self, sql: str, params: Sequence[Any], limit: int | None) -> Any:
        self._open_tx()  # raises once the store is closed
        if self._scan_thread is None:
            self._scan_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tiergate-scan")
        return await asyncio.get_running_loop().run_in_executor(self._scan_thread, self._scan, sql, params, limit)

    def _scan(self, sql: str, params: Sequence[Any], limit: int | None) -> Any:
        """In a worker thread: the rows of one read on the scanner's connection (``limit`` 1: the
        first row or None)."""
        with self._scan_lock:
            self._open_tx()  # raises once the store is closed
            if self._scan_conn is None:
                conn = apsw.Connection(self.path, flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_NOMUTEX | (
                    apsw.SQLITE_OPEN_URI if self.path.startswith("file:") else 0))
                conn.set_busy_timeout(int(self.busy_timeout * 1000))
                conn.execute("PRAGMA query_only = ON")
                _ensure_floor(conn)
                conn.execute(f"PRAGMA cache_size = -{self.cache_mib * 1024}")
                self._scan_conn = conn
            cursor = self._scan_conn.execute(sql, params)
            if limit == 1:
                row = next(cursor, None)
                cursor.close()
                return row
            return cursor.fetchall()


class BackupFailed(Exception):
    """The copy could not be made or did not check out (nothing is left at the destination)."""


def backup_file(source: str, destination: str, busy_timeout: float = 30.0) -> tuple[int, int]:
    """Copy the database file ``source`` into the new file ``destination``, consistently and while
    other processes use it, and check the copy: (messages in it, its schema version).

    ``VACUUM INTO`` from a read-only connection: one read snapshot (in WAL mode writers carry on
    meanwhile), compacted, and the source is never written to. The copy must then open, pass
    SQLite's quick check and hold tiergate's tables; if not, it is removed.
    """
    try:
        conn = apsw.Connection(source, flags=apsw.SQLITE_OPEN_READONLY)
        try:
            conn.set_busy_timeout(int(busy_timeout * 1000))
            conn.execute("VACUUM INTO ?", (destination,))
        finally:
            conn.close()
        copy = apsw.Connection(destination, flags=apsw.SQLITE_OPEN_READONLY)
        try:
            verdict = copy.execute("PRAGMA quick_check").fetchall()
            if verdict != [("ok",)]:
                raise BackupFailed(f"the copy fails SQLite's check: {verdict[:3]}")
            if not copy.table_exists(None, "messages") or not copy.table_exists(None, "schema_migrations"):
                raise BackupFailed(f"{source} is not a tiergate database (no messages or schema_migrations table)")
            messages = copy.execute("SELECT COUNT(*) FROM messages").fetchone()
            version = copy.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
            return (messages[0] if messages else 0), (version[0] if version and version[0] else 0)
        finally:
            copy.close()
    except BaseException as exc:
        Path(destination).unlink(missing_ok=True)
        if isinstance(exc, apsw.Error):
            raise BackupFailed(str(exc)) from exc
        raise
