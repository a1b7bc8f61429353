"""The Store port, implemented once over a tiny async SQL interface shared by SQLite and PostgreSQL.

An adapter supplies a ``Tx`` (execute / executemany / fetchone / fetchall) inside ``transaction()``
(one atomic write transaction) or ``reader()`` (autocommit reads), and a few dialect hooks: the
row-locking clauses, which errors are worth retrying, and notifications. Every statement here is
written once, with ``?`` placeholders, in SQL both engines accept (``ON CONFLICT`` upserts, partial
indexes, ``TRUE``); the PostgreSQL adapter rewrites the placeholders. Only the schema differs per
dialect (``migrations/NNNN_name.<dialect>.sql``).

Lock order on PostgreSQL: multi-row writers touch scope rows, then message rows, then ledger rows,
each statement in key order, so concurrent batches mostly queue up behind each other; the rare
deadlock left (two batches whose statements interleave) rolls back and is retried (``_retried``).
"""

from __future__ import annotations

import asyncio
import functools
import importlib.resources
import itertools
import logging
import random
import re
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import fields
from itertools import compress, groupby
from operator import attrgetter, is_not, itemgetter
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, overload

import orjson

from tiergate.adapters.store.ids import id_floor, new_ids
from tiergate.core.model import (
    TERMINAL_STATES,
    ApiKey,
    Campaign,
    CampaignArchive,
    Message,
    MessageState,
    NewMessage,
    Scope,
    Sender,
    Tenant,
)
from tiergate.core.window import DAY
from tiergate.ports import (
    ConflictError,
    CountedHistory,
    Forward,
    LeaseLost,
    LedgerChange,
    MessageUpdate,
    NotFound,
    RecipientFlags,
    WorkerLeases,
)

__all__ = ["SqlStore", "Tx", "migrations"]

log = logging.getLogger(__name__)

Row = tuple[Any, ...]


class Tx(Protocol):
    """The primitives a dialect provides, bound to one connection (inside a transaction or not).

    The ``*_many`` methods write many rows with one statement shape; ``RowsByExecutemany`` gives
    them for any dialect through ``executemany``. PostgreSQL runs them as one set-based statement
    over ``unnest``ed arrays instead: a statement per row costs it far more than a row per statement.
    SQLite runs them as multi-row statements (``RowsByValues``).
    """

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...  # rows changed
    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int: ...  # total changed
    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...
    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    async def insert_many(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                          suffix: str = "") -> int:
        """INSERT the rows; ``suffix`` is an ON CONFLICT clause (its target rows must be distinct)."""
        ...

    async def update_many(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                          extra: str = "", key: str = "id", appended: Sequence[str] = (),
                          only_if: tuple[str, tuple[str, ...]] | None = None) -> int:
        """Per row ``(*values, *appended values, key value)``: SET each column to its value, append
        to each ``appended`` text column (and ``extra`` assignments) WHERE ``key`` matches, and
        ``only_if`` = (column, values) holds one of the values. A key appears at most once in ``rows``."""
        ...

    async def delete_many(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
        """DELETE the rows whose ``columns`` equal one of ``rows``."""
        ...


class RowsByExecutemany:
    """The ``*_many`` primitives of ``Tx`` as one ``executemany`` each (any dialect)."""

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        raise NotImplementedError

    async def insert_many(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                          suffix: str = "") -> int:
        return await self.executemany(_insert_sql(table, tuple(columns), suffix), rows)

    async def update_many(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                          extra: str = "", key: str = "id", appended: Sequence[str] = (),
                          only_if: tuple[str, tuple[str, ...]] | None = None) -> int:
        sql = _update_sql(table, tuple(columns), extra, key, tuple(appended), only_if)
        return await self.executemany(sql, rows)

    async def delete_many(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
        return await self.executemany(_delete_sql(table, tuple(columns)), rows)


class RowsByValues(RowsByExecutemany):
    """``insert_many`` and ``update_many`` as multi-row statements, for an in-process engine (SQLite).

    ``executemany`` runs its statement once per row, and every run opens a cursor on the table and
    on each index, seeks each one from its root and halts. One statement over a run of rows (an
    INSERT with many ``VALUES`` rows, an ``UPDATE ... FROM (VALUES ...)`` joined on the key) does
    that once per run. Runs are cut in powers of two (128, 64, ..., 1 rows), so that a handful of
    statement shapes serve every batch size from the driver's statement cache.

    A column whose value is the same in every row of the call (a campaign's tenant, sender, state
    and first history line; an outcome's time and reason) is bound once per statement, as a
    numbered parameter that each row repeats: binding a text copies it, and a batch's rows mostly
    differ only in their id, recipient and body. With both, the storage bench's one-write path
    takes 0.83x the instructions it took with a statement a row (callgrind, BENCHMARKS.md).
    """

    rows_per_statement = 128  # 0.98x the instructions of 64 rows; 256 took long to prepare
    max_variables = 32766  # SQLite's limit on ``?`` per statement (since 3.32)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        raise NotImplementedError

    async def insert_many(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                          suffix: str = "") -> int:
        changed = 0
        shared, params = _bindings(rows)
        for start, n in _runs(len(rows), self._per_statement(len(columns))):
            sql = _insert_values_sql(table, tuple(columns), suffix, n, shared)
            changed += await self.execute(sql, params(start, n))
        return changed

    async def update_many(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                          extra: str = "", key: str = "id", appended: Sequence[str] = (),
                          only_if: tuple[str, tuple[str, ...]] | None = None) -> int:
        shape = (table, tuple(columns), extra, key, tuple(appended), only_if)
        if len(rows) == 1:  # no join for one row
            return await self.execute(_update_sql(*shape), rows[0])
        changed = 0
        shared, params = _bindings(rows)
        for start, n in _runs(len(rows), self._per_statement(len(columns) + len(appended) + 1)):
            changed += await self.execute(_update_values_sql(*shape, n, shared), params(start, n))
        return changed

    def _per_statement(self, width: int) -> int:
        most = min(self.rows_per_statement, self.max_variables // max(width, 1))
        return 1 << (most.bit_length() - 1)  # the largest power of two within both limits


def _bindings(rows: Sequence[Sequence[Any]]) -> tuple[tuple[int, ...], Callable[[int, int], list[Any]]]:
    """(positions of the columns equal in every row, a function giving the parameters of the rows
    ``[start, start + size)``: those columns' values once, then each row's other values in turn).

    Equal means the same binding: same value and, for numbers, the same type (``1 == 1.0 ==
    True``; a text or NULL equals only its own kind). The rows are turned into columns once; a
    statement's parameters are then laid out by slice assignment, with no tuple made per row.
    """
    n = len(rows)
    if n < 2:
        return (), lambda start, size: [value for row in rows[start:start + size] for value in row]
    columns = rows.columns if isinstance(rows, Columns) else list(zip(*rows, strict=True))
    shared = tuple(i for i, column in enumerate(columns)
                   if column[-1] == (first := column[0]) and column.count(first) == n
                   and (first is None or type(first) is str or len(set(map(type, column))) == 1))
    values = [columns[i][0] for i in shared]
    varying = [column for i, column in enumerate(columns) if i not in shared]
    width, head = len(varying), len(values)

    def params(start: int, size: int) -> list[Any]:
        out: list[Any] = [None] * (head + width * size)
        out[:head] = values
        for j, column in enumerate(varying):
            out[head + j::width] = column[start:start + size]
        return out

    return shared, params


def _runs(count: int, most: int) -> Iterator[tuple[int, int]]:
    """(start, size) of runs of ``most`` rows out of ``count``, then the rest in falling powers of
    two (1000 rows by 64: 15 x 64, 32, 8)."""
    start, left = 0, count
    size = most
    while left:
        while size > left:
            size >>= 1
        yield start, size
        start += size
        left -= size


_IDENTIFIER_LIKE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@functools.lru_cache(maxsize=256)
def _insert_sql(table: str, columns: tuple[str, ...], suffix: str) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({_marks(len(columns))}) {suffix}"


@functools.lru_cache(maxsize=256)
def _update_sql(table: str, columns: tuple[str, ...], extra: str, key: str, appended: tuple[str, ...] = (),
                only_if: tuple[str, tuple[str, ...]] | None = None) -> str:
    sets = ", ".join([*(f"{c} = ?" for c in columns), *(f"{c} = {c} || ?" for c in appended),
                      *([extra] if extra else [])])
    guard = "" if only_if is None else f" AND {only_if[0]} IN ({literals(only_if[1])})"
    return f"UPDATE {table} SET {sets} WHERE {key} = ?{guard}"


@functools.lru_cache(maxsize=512)
def _values_rows(width: int, n: int, shared: tuple[int, ...]) -> str:
    """``n`` VALUES rows of ``width`` columns: each column in ``shared`` is one parameter for all
    rows (``?1``, ``?2``, ...), the others one per row, numbered on, row by row."""
    number = {column: i for i, column in enumerate(shared, 1)}
    params = itertools.count(len(shared) + 1)
    return ", ".join(
        "(" + ", ".join(f"?{number[c]}" if c in number else f"?{next(params)}" for c in range(width)) + ")"
        for _ in range(n))


@functools.lru_cache(maxsize=256)
def _insert_values_sql(table: str, columns: tuple[str, ...], suffix: str, n: int,
                       shared: tuple[int, ...] = ()) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES {_values_rows(len(columns), n, shared)} {suffix}"


@functools.lru_cache(maxsize=512)
def _update_values_sql(table: str, columns: tuple[str, ...], extra: str, key: str, appended: tuple[str, ...],
                       only_if: tuple[str, tuple[str, ...]] | None, n: int, shared: tuple[int, ...] = ()) -> str:
    """``_update_sql`` over ``n`` rows at once: the rows as a VALUES list joined on the key (each
    key at most once, so each target row is updated at most once).

    A column equal in every row (``shared``: a batch's state, time, reason and history line) is set
    straight from its one parameter, so the VALUES list carries only what differs (an outcome's id
    and wamid): two columns of a row instead of nine for SQLite to copy into its ephemeral table,
    and a statement text a quarter as long for the driver's statement cache to hash and compare.
    """
    width = len(columns) + len(appended) + 1
    if width - 1 in shared:  # one key for every row (no batch has that): the plain form
        shared = ()
    number = {column: i for i, column in enumerate(shared, 1)}
    varying = [c for c in range(width) if c not in number]
    value = {c: f"?{number[c]}" if c in number else f"v.column{varying.index(c) + 1}" for c in range(width)}
    sets = ", ".join([*(f"{c} = {value[i]}" for i, c in enumerate(columns)),
                      *(f"{c} = {table}.{c} || {value[i]}" for i, c in enumerate(appended, len(columns))),
                      *([extra] if extra else [])])
    guard = "" if only_if is None else f" AND {table}.{only_if[0]} IN ({literals(only_if[1])})"
    params = itertools.count(len(shared) + 1)
    rows = ", ".join("(" + ", ".join(f"?{next(params)}" for _ in varying) + ")" for _ in range(n))
    return f"UPDATE {table} SET {sets} FROM (VALUES {rows}) AS v WHERE {table}.{key} = {value[width - 1]}{guard}"


def literals(values: Sequence[str]) -> str:
    """``'a', 'b'``: SQL string literals of our own constants (state names), never of user input."""
    for v in values:
        if not _IDENTIFIER_LIKE.match(v):
            raise ValueError(f"not a plain constant: {v!r}")
    return ", ".join(f"'{v}'" for v in values)


@functools.lru_cache(maxsize=256)
def _delete_sql(table: str, columns: tuple[str, ...]) -> str:
    return f"DELETE FROM {table} WHERE {' AND '.join(f'{c} = ?' for c in columns)}"


# --------------------------------------------------------------------------------------------
# Records <-> rows
# --------------------------------------------------------------------------------------------
R = TypeVar("R")


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _chunks(items: Sequence[R], size: int) -> Iterator[Sequence[R]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _dumps(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _loads(text: str | bytes | None) -> Any:
    return None if text is None else orjson.loads(text)


def _pair(text: str | None) -> tuple[int, int] | None:
    hours = _loads(text)
    return None if hours is None else (int(hours[0]), int(hours[1]))


class _Table(Generic[R]):
    """How one record type maps to its table: column names, JSON fields, 0/1 booleans, renames."""

    def __init__(self, name: str, record: type[R], what: str, *, json: Sequence[str] = (),
                 bools: Sequence[str] = (), rename: dict[str, str] | None = None,
                 decode: dict[str, Callable[[Any], Any]] | None = None,
                 reader: Callable[[Row], R] | None = None) -> None:
        self.name, self.record, self.what = name, record, what
        self._reader = reader
        self.fields = [f.name for f in fields(record)]  # type: ignore[arg-type]
        renames = rename or {}
        self.columns = [renames.get(f, f) for f in self.fields]
        self.column_of = dict(zip(self.fields, self.columns, strict=True))
        self.json = frozenset(json)
        decoders: dict[str, Callable[[Any], Any]] = {f: _loads for f in json}
        decoders |= {f: bool for f in bools}
        decoders |= decode or {}
        self._decode_at = [(i, decoders[f]) for i, f in enumerate(self.fields) if f in decoders]
        self._encode_at = [i for i, f in enumerate(self.fields) if f in self.json]
        columns = ", ".join(self.columns)
        self.select = f"SELECT {columns} FROM {name}"
        self.insert = f"INSERT INTO {name} ({columns}) VALUES ({_marks(len(self.columns))}) ON CONFLICT DO NOTHING"

    def to_row(self, record: R) -> list[Any]:
        values = [getattr(record, f) for f in self.fields]
        for i in self._encode_at:
            values[i] = _dumps(values[i])
        return values

    def from_row(self, row: Row) -> R:
        if self._reader is not None:
            return self._reader(row)
        values = list(row)
        for i, decode in self._decode_at:
            values[i] = decode(values[i])
        return self.record(*values)

    def assignments(self, changes: dict[str, Any]) -> tuple[str, list[Any]]:
        """``col = ?, ...`` and its parameters for a partial update; unknown fields are an error."""
        unknown = set(changes) - set(self.fields) | ({"id"} & set(changes))
        if unknown:
            raise ValueError(f"cannot update {self.what} field(s): {', '.join(sorted(unknown))}")
        sets = ", ".join(f"{self.column_of[f]} = ?" for f in changes)
        params = [_dumps(v) if f in self.json else v for f, v in changes.items()]
        return sets, params


TENANTS = _Table("tenants", Tenant, "tenant", json=["stop_keywords"], bools=["require_opt_in"])
API_KEYS = _Table("api_keys", ApiKey, "API key", bools=["is_admin"])
SCOPES = _Table("scopes", Scope, "scope", bools=["trust_model"])
SENDERS = _Table("senders", Sender, "sender", json=["paused", "marketing_paused"])
CAMPAIGNS = _Table("campaigns", Campaign, "campaign", json=["template", "plan", "quiet_hours"],
                   decode={"quiet_hours": _pair})
_STATES = {state.value: state for state in MessageState}
_VALUES = {state: state.value for state in MessageState}  # a dict lookup, not the enum's value property
# A live key and its tenant in one read (Store.find_principal): the key's columns, then the tenant's.
_PRINCIPAL = (f"SELECT {', '.join('k.' + c for c in API_KEYS.columns)}, "
              f"{', '.join('t.' + c for c in TENANTS.columns)} FROM api_keys AS k "
              "JOIN tenants AS t ON t.id = k.tenant_id WHERE k.key_hash = ? AND k.revoked_at IS NULL")


_FIELD_AT = {f.name: i for i, f in enumerate(fields(Message))}
_BODY, _STATE, _METADATA, _COUNTED, _ERROR_DETAIL = (
    _FIELD_AT[f] for f in ("body", "state", "metadata", "counted", "error_detail"))


def _message_from_row(row: Row) -> Message:
    """The hot path of claim_due: the row as it comes (its columns are Message's fields, in order),
    then the few columns stored otherwise decoded in place (0.75 against 0.90 us a row for
    unpacking it into 26 names and passing them on; about twice as fast as the generic decoder)."""
    m = Message(*row)
    m.body = orjson.loads(row[_BODY])
    m.state = _STATES[row[_STATE]]
    metadata = row[_METADATA]
    m.metadata = {} if metadata == "{}" else orjson.loads(metadata)
    m.counted = bool(row[_COUNTED])
    if row[_ERROR_DETAIL] is None:
        m.error_detail = ""
    return m


MESSAGES = _Table("messages", Message, "message", json=["body", "metadata"], bools=["counted"],
                  rename={"to": "recipient"}, reader=_message_from_row)

# What a new message sets; the other columns start at their defaults (fewer values to bind).
_NEW_MESSAGE_COLUMNS = ("id", "tenant_id", "sender_id", "scope_id", "recipient", "kind", "category", "body",
                        "priority", "state", "reason", "next_attempt_at", "not_before", "idempotency_key",
                        "expires_at", "campaign_id", "metadata", "created_at", "updated_at", "history")
_HISTORY = ("history",)
_LEDGER_COLUMNS = ("scope_id", "recipient", "expiry")
_LEDGER_KEY = attrgetter("scope_id", "recipient")
_LEDGER_ROW = attrgetter(*_LEDGER_COLUMNS)
_ROW_KEY = itemgetter(0, 1)
_REMOVE = attrgetter("remove")
_LEDGER_KEEP_LATEST = ("ON CONFLICT (scope_id, recipient) DO UPDATE SET expiry = excluded.expiry "
                       "WHERE excluded.expiry > window_ledger.expiry")
# MessageUpdate fields that set the column of the same name when not None.
_OPTIONAL_FIELDS = ("reason", "next_attempt_at", "wamid", "error_code", "error_detail", "counted",
                    "slot_expiry", "slot_previous", "sent_at")
_CLAIM_ORDER = "priority, next_attempt_at, created_at"
CAPACITY_REASON = "messaging limit"  # how admission's deferral for a full window reads (core.admission)
# Sends that count against the marketing frequency cap (a 'sending' one may already have left).
# PostgreSQL's partial index messages_marketing_recipient (migration 0004) lists these same states:
# change both, or the cap's lookup no longer matches the index and scans.
_MARKETING_STATES = ("sent", "delivered", "read", "unknown", "sending")
# Ended by tiergate with no status webhook to come: the app is told (Store.untold_messages). This
# repeats the condition of the partial index messages_untold (migration 0011) word for word, so
# both engines read the few such rows off it. Canceled ones are not told: the app canceled them.
# Spelled with OR, not IN (...): SQLite evaluates an index's condition on every state change, and
# an IN list of constants costs it an ephemeral table each time (migration 0011).
_TOLD_STATES = ("failed", "expired", "rejected")


def _untold(of: str = "") -> str:
    """The condition, on the columns of table alias ``of`` (e.g. ``"m."``) if given."""
    states = " OR ".join(f"{of}state = {literals([s])}" for s in _TOLD_STATES)
    return f"({states}) AND {of}wamid IS NULL AND {of}told = FALSE"


_UNTOLD = _untold()
# Not ended (not in TERMINAL_STATES, where the views count a message done): waiting (queued, or held
# by a paused campaign) or in flight. Retention never deletes these.
_LIVE_STATES = tuple(sorted(state.value for state in MessageState if state not in TERMINAL_STATES))
# Each not-ended state and the partial index that holds exactly its rows (Store.count_live).
_LIVE_INDEXES = (("queued", "messages_claim"), ("held", "messages_held"), ("sending", "messages_sending"))
assert tuple(sorted(state for state, _ in _LIVE_INDEXES)) == _LIVE_STATES, "a live state without its index"
_FORWARD_COLUMNS = ("id", "tenant_id", "event_id", "body", "next_attempt_at", "created_at")


class _ToldElsewhere(Exception):
    """Another process told some of these messages first: roll back this transaction's forwards."""


_RECOVERED_REASON = ("the worker stopped while this send was in flight: the platform may or may not have "
                     "it; a status webhook settles it")


def _state(value: str) -> str:
    return str(MessageState(value))


_optional_values = attrgetter(*_OPTIONAL_FIELDS)
_ID = attrgetter("id")
_NONES = (None,) * len(_OPTIONAL_FIELDS)
_SLOT_FIELDS = tuple(f.startswith("slot_") for f in _OPTIONAL_FIELDS)
# One UPDATE statement of a batch: (generation, columns, extra assignments, history appended,
# states required, its rows).
_Group = tuple[int, tuple[str, ...], str, bool, tuple[str, ...] | None, Sequence[tuple[Any, ...]]]


def _update_groups(
    updates: Sequence[MessageUpdate],
) -> Iterator[_Group]:
    """(generation, columns, extra assignments, history appended, states required, rows) per
    statement shape.

    Each update sets only what it carries, so an engine maintains only the indexes on those
    columns. A message's n-th update of the batch is in generation n: generations run in order, so
    each message's updates apply in order (and a guard sees the state the earlier ones left), and
    a statement touches each message at most once.
    """
    repeats = len(set(map(_ID, updates))) != len(updates)  # rare: then generations are counted
    if not repeats and (one := _one_shape(updates)) is not None:
        return iter((one,))
    return _groups_by_update(updates, repeats)


def _groups_by_update(
    updates: Sequence[MessageUpdate], repeats: bool,
) -> Iterator[_Group]:
    """``_update_groups`` for any batch, an update at a time (``repeats``: some id comes twice)."""
    seen: dict[str, int] = {}
    groups: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
    encoded: dict[tuple[Any, ...], str] = {}
    shape: tuple[Any, ...] | None = None
    rows: list[tuple[Any, ...]] = []
    for u in updates:
        generation = 0
        if repeats:
            generation = seen.get(u.id, 0)
            seen[u.id] = generation + 1
        values = _optional_values(u)
        given = tuple(map(is_not, values, _NONES))  # which optional fields this update sets
        if u.clear_slot:
            given = tuple(g and not slot for g, slot in zip(given, _SLOT_FIELDS, strict=True))
        state = str(u.state)
        if u.history:
            # A batch's updates mostly share their time, state and reason: each line is encoded once.
            key = (u.at, state, u.reason, u.earlier)
            line = encoded.get(key)
            if line is None:
                line = encoded[key] = _history_lines(*key)
            row = (state, u.at, *compress(values, given), line, u.id)
        else:
            row = (state, u.at, *compress(values, given), u.id)
        guard = None if u.only_from is None else tuple(sorted(str(s) for s in u.only_from))
        group = (generation, given, u.add_attempt, u.clear_slot, u.history, guard)
        if group != shape:  # a batch's updates mostly share one shape: a dict lookup per run of them
            shape, rows = group, groups.setdefault(group, [])
        rows.append(row)
    for group, rows in sorted(groups.items(), key=lambda g: g[0][0]):
        yield _statement(*group, rows)


def _statement(
    generation: int, given: tuple[bool, ...], add_attempt: bool, clear_slot: bool, history: bool,
    guard: tuple[str, ...] | None, rows: Sequence[tuple[Any, ...]],
) -> _Group:
    """One of ``_update_groups``' statement shapes, from what its updates have in common."""
    extra = [*(["attempts = attempts + 1"] if add_attempt else []),
             *(["slot_expiry = NULL", "slot_previous = NULL"] if clear_slot else [])]
    return (generation, ("state", "updated_at", *compress(_OPTIONAL_FIELDS, given)), ", ".join(extra), history,
            guard, rows)


def _one_shape(updates: Sequence[MessageUpdate]) -> _Group | None:
    """``_update_groups``' one statement when every update has the same shape, else None.

    The common case (a dispatcher batch's outcomes: the same state, reason and time, each with its
    own id and wamid), done a column at a time (a list per field, ``tuple.count`` to compare)
    instead of an update at a time, and handed on as columns (``Columns``): 1,000 updates take
    ~0.3 of the general loop's time.
    """
    n = len(updates)
    if n < 2:
        return None
    # One state (its text binds once), one set of flags and one guard for all.
    shape: list[list[Any]] = [[u.state for u in updates], [u.add_attempt for u in updates],
                              [u.clear_slot for u in updates], [u.history for u in updates],
                              [u.only_from for u in updates]]
    for column in shape:
        if column.count(column[0]) != n:
            return None
    first = updates[0]
    optional: list[list[Any]] = [  # _OPTIONAL_FIELDS, in order
        [u.reason for u in updates], [u.next_attempt_at for u in updates], [u.wamid for u in updates],
        [u.error_code for u in updates], [u.error_detail for u in updates], [u.counted for u in updates],
        [u.slot_expiry for u in updates], [u.slot_previous for u in updates], [u.sent_at for u in updates]]
    given = []
    for column in optional:
        nones = column.count(None)
        if 0 < nones < n:  # set in some updates, not in others: two shapes
            return None
        given.append(nones == 0)
    if first.clear_slot:
        given = [g and not slot for g, slot in zip(given, _SLOT_FIELDS, strict=True)]
    state = str(first.state)
    ats = [u.at for u in updates]
    columns: list[Sequence[Any]] = [(state,) * n, ats, *compress(optional, given)]
    guard = None if first.only_from is None else tuple(sorted(str(s) for s in first.only_from))
    if first.history:
        reasons, earliers = optional[0], [u.earlier for u in updates]
        if ats.count(ats[0]) == n and reasons.count(reasons[0]) == n and earliers.count(earliers[0]) == n:
            columns.append((_history_lines(ats[0], state, reasons[0], earliers[0]),) * n)
        else:
            cache: dict[tuple[Any, ...], str] = {}
            columns.append([cache.get(key) or cache.setdefault(key, _history_lines(*key))
                            for key in zip(ats, (state,) * n, reasons, earliers, strict=True)])
    columns.append([u.id for u in updates])
    return _statement(0, tuple(given), first.add_attempt, first.clear_slot, first.history, guard, Columns(columns))


class Columns(Sequence[tuple[Any, ...]]):
    """Rows kept as their columns, each a sequence with one value per row (what ``_one_shape``
    makes): ``_bindings`` reads the columns as they are instead of turning rows back into columns,
    and anything else reads them as ordinary rows."""

    __slots__ = ("columns",)

    def __init__(self, columns: Sequence[Sequence[Any]]) -> None:
        self.columns = columns

    def __len__(self) -> int:
        return len(self.columns[0])

    @overload
    def __getitem__(self, index: int) -> tuple[Any, ...]: ...

    @overload
    def __getitem__(self, index: slice) -> list[tuple[Any, ...]]: ...

    def __getitem__(self, index: int | slice) -> tuple[Any, ...] | list[tuple[Any, ...]]:
        if isinstance(index, slice):
            return list(zip(*(column[index] for column in self.columns), strict=True))
        return tuple(column[index] for column in self.columns)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return zip(*self.columns, strict=True)


def _history_lines(at: float, state: str, reason: str | None,
                   earlier: tuple[tuple[MessageState, str | None], ...]) -> str:
    """The history lines one update appends: the states it passed through first, then its own."""
    line = history_entry(at, state, reason)
    if earlier:
        line = "".join(history_entry(at, str(passed), why) for passed, why in earlier) + line
    return line


def history_entry(at: float, state: str, reason: str | None) -> str:
    """One line of a message's ``history`` column: ``[at, state, reason]`` as JSON.

    The history lives in the message's own row, appended by the same UPDATE that changes the
    state: no row (and no index entry) per change, and it can never disagree with the state.
    """
    return orjson.dumps((at, state, reason or "")).decode() + "\n"


def _history(text: str) -> list[dict[str, Any]]:
    entries = (orjson.loads(line) for line in text.splitlines() if line)
    return [{"at": at, "state": state, "reason": reason} for at, state, reason in entries]


# Each counted recipient of a scope's range once, at its latest send (Store.counted_history): those
# in the live window grouped by that time (part 1), the others by local day (part 0), and how many
# sent to after a given time (part 2). MAX over the counted index's
# range of the scope, grouped by recipient; floor() is in both engines (SQLite's math functions,
# which the adapter provides where its SQLite lacks them).
_COUNTED_HISTORY = """WITH latest AS (
    SELECT recipient, MAX(sent_at) AS last FROM messages
    WHERE scope_id = ? AND counted = TRUE AND sent_at IS NOT NULL AND sent_at > ? AND sent_at <= ?
    GROUP BY recipient)
SELECT 1, COALESCE(l.last, w.expiry - ?), COUNT(*) FROM window_ledger AS w
    LEFT JOIN latest AS l ON l.recipient = w.recipient
    WHERE w.scope_id = ? AND w.expiry > ? GROUP BY 2
UNION ALL
SELECT 0, floor((l.last + ?) / ?), COUNT(*) FROM latest AS l
    WHERE NOT EXISTS (SELECT 1 FROM window_ledger AS w WHERE w.scope_id = ? AND w.recipient = l.recipient
                      AND w.expiry > ?)
    GROUP BY 2
UNION ALL
SELECT 2, 0.0, COUNT(*) FROM latest AS l WHERE l.last > ?"""

# The distinct priority levels of each scope's queued messages: a skip-scan of ``messages_claim``
# (one probe per level), so no second index has to follow every state change.
_LEVELS_CTE = """WITH RECURSIVE levels (scope_id, priority) AS (
    SELECT v.column1, (SELECT priority FROM messages WHERE scope_id = v.column1 AND state = 'queued'
                       ORDER BY priority LIMIT 1)
    FROM (VALUES {values}) AS v
    UNION ALL
    SELECT l.scope_id, (SELECT priority FROM messages WHERE scope_id = l.scope_id AND state = 'queued'
                        AND priority > l.priority ORDER BY priority LIMIT 1)
    FROM levels AS l WHERE l.priority IS NOT NULL
)
"""
_LEVELS = _LEVELS_CTE + "SELECT scope_id, priority FROM levels WHERE priority IS NOT NULL"
_NEXT_DUE = _LEVELS_CTE + """SELECT MIN((
    SELECT next_attempt_at FROM messages WHERE scope_id = l.scope_id AND state = 'queued'
    AND priority = l.priority ORDER BY next_attempt_at LIMIT 1))
FROM levels AS l WHERE l.priority IS NOT NULL"""


# --------------------------------------------------------------------------------------------
# Migrations
# --------------------------------------------------------------------------------------------
def _statements(script: str) -> list[str]:
    """Split a migration into statements (``--`` comment lines dropped; no ``;`` inside statements)."""
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def migrations(dialect: str) -> list[tuple[int, str, list[str]]]:
    """(version, file name, statements) of ``migrations/NNNN_<name>.<dialect>.sql``, in order."""
    folder = importlib.resources.files("tiergate.adapters.store").joinpath("migrations")
    suffix = f".{dialect}.sql"
    found = [
        (int(entry.name.split("_", 1)[0]), entry.name, _statements(entry.read_text(encoding="utf-8")))
        for entry in folder.iterdir()
        if entry.name.endswith(suffix)
    ]
    return sorted(found)


# --------------------------------------------------------------------------------------------
# Retries of transactions that lost a lock race
# --------------------------------------------------------------------------------------------
S = TypeVar("S", bound="SqlStore")
P = ParamSpec("P")
T = TypeVar("T")
_RETRIES = 5


def _retried(
    method: Callable[Concatenate[S, P], Awaitable[T]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
    """Re-run a whole transaction that hit a deadlock or a lock timeout: it rolled back, nothing stuck."""

    async def run(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        attempt = 0
        while True:
            try:
                return await method(self, *args, **kwargs)
            except Exception as exc:
                attempt += 1
                if attempt > _RETRIES or not self.is_transient(exc):
                    raise
                log.info("retrying %s after %s", method.__name__, exc)
                await asyncio.sleep(random.uniform(0.005, 0.02) * 2**attempt)

    functools.update_wrapper(run, method)
    return run


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------
class SqlStore(ABC):
    """Every ``Store`` method, once. Subclasses connect, provide transactions and dialect hooks."""

    dialect: str = ""  # picks the migration files
    concurrent_calls = False  # see the port
    row_key: str = "id"  # the cheapest key to find a messages row by in a subquery (SQLite: its rowid)
    lock_rows: str = ""  # appended to SELECTs of rows the transaction then changes (" FOR UPDATE")
    skip_locked: str = ""  # appended to the lease-taking SELECT so workers never take the same scope
    pins_indexes = False  # the planner needs telling which index some reads must use (see ``_using``)
    max_params: int = 500  # ids per IN (...) list

    def __init__(self) -> None:
        self._listeners: dict[str, list[Callable[[], None]]] = {}
        self._claim_index = self._using("messages_claim")  # the claims' index, named where it must be

    def _using(self, index: str) -> str:
        """`` INDEXED BY index`` after a table name, on an engine whose planner must be told."""
        return f" INDEXED BY {index}" if self.pins_indexes else ""

    # -- what a dialect provides -------------------------------------------------------------
    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """One write transaction: committed when the block ends, rolled back if it raises."""

    @abstractmethod
    def reader(self) -> AbstractAsyncContextManager[Tx]:
        """A connection for reads that need no transaction (each statement sees committed data)."""

    def scanner(self) -> AbstractAsyncContextManager[Tx]:
        """Like ``reader``, for reads whose cost grows with the data (a campaign's counts, a scope's
        30 days of sends): an engine whose calls block the event loop runs these elsewhere, so a
        dashboard's poll of a million-message campaign never stalls the dispatcher."""
        return self.reader()

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    def is_transient(self, exc: BaseException) -> bool:
        """Whether a failed transaction may simply be run again (deadlock, lock wait)."""
        return False

    @abstractmethod
    async def size_bytes(self) -> int: ...

    def is_unavailable(self, exc: BaseException) -> bool:
        """See the port: the engine could not be used just now (each adapter says which errors)."""
        return False

    def wrote_nothing(self, exc: BaseException) -> bool:
        """See the port; unknown, so no by default (an adapter that can tell says yes)."""
        return False

    def _in(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """``column IN (?, ...)`` and its parameters (PostgreSQL binds one array instead)."""
        return f"{column} IN ({_marks(len(values))})", list(values)

    def _not_in(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """``NOT (column IN (...))`` and its parameters."""
        where, params = self._in(column, values)
        return f"NOT ({where})", params

    async def __aenter__(self: S) -> S:
        await self.open()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def _migrate(self, tx: Tx) -> list[int]:
        """Apply the dialect's pending migrations in the caller's transaction; returns their versions."""
        await tx.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
        )
        done = {row[0] for row in await tx.fetchall("SELECT version FROM schema_migrations")}
        applied = []
        for version, name, statements in migrations(self.dialect):
            if version in done:
                continue
            for statement in statements:
                await tx.execute(statement)
            await tx.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                             (version, name, time.time()))
            applied.append(version)
        if applied:
            log.info("applied %s migrations %s", self.dialect, applied)
        return applied

    async def schema_versions(self) -> list[int]:
        """The migration versions applied to this database (for health checks and tests)."""
        async with self.reader() as tx:
            return [row[0] for row in await tx.fetchall("SELECT version FROM schema_migrations ORDER BY version")]

    # -- generic record helpers --------------------------------------------------------------
    async def _create(self, table: _Table[R], record: R, taken: str = "") -> R:
        async with self.transaction() as tx:
            if not await tx.execute(table.insert, table.to_row(record)):
                raise ConflictError(f"{table.what} {getattr(record, 'id', '')!r} already exists{taken}")
        return record

    async def _get(self, table: _Table[R], record_id: str) -> R:
        async with self.reader() as tx:
            row = await tx.fetchone(f"{table.select} WHERE id = ?", (record_id,))
        if row is None:
            raise NotFound(f"{table.what} {record_id!r} not found")
        return table.from_row(row)

    async def _list(self, table: _Table[R], where: str = "", params: Sequence[Any] = (),
                    order: str = "created_at, id", scan: bool = False) -> list[R]:
        """Matching records in ``order``; ``scan`` for a read that may walk many rows (see ``scanner``)."""
        async with (self.scanner() if scan else self.reader()) as tx:
            rows = await tx.fetchall(f"{table.select} {where} ORDER BY {order}", params)
        return [table.from_row(row) for row in rows]

    async def _update(self, table: _Table[R], record_id: str, changes: dict[str, Any]) -> R:
        sets, params = table.assignments(changes)
        async with self.transaction() as tx:
            if sets:
                await tx.execute(f"UPDATE {table.name} SET {sets} WHERE id = ?", [*params, record_id])
            row = await tx.fetchone(f"{table.select} WHERE id = ?", (record_id,))
        if row is None:
            raise NotFound(f"{table.what} {record_id!r} not found")
        return table.from_row(row)

    # -- tenants and API keys ----------------------------------------------------------------
    async def create_tenant(self, tenant: Tenant) -> Tenant:
        """ConflictError when the id or the name is taken (names identify tenants to operators)."""
        return await self._create(TENANTS, tenant, f", or the name {tenant.name!r} is taken")

    async def get_tenant(self, tenant_id: str) -> Tenant:
        return await self._get(TENANTS, tenant_id)

    async def find_tenant_by_name(self, name: str) -> Tenant | None:
        found = await self._list(TENANTS, "WHERE name = ?", (name,))
        return found[0] if found else None

    async def list_tenants(self) -> list[Tenant]:
        return await self._list(TENANTS)

    async def update_tenant(self, tenant_id: str, fields: dict[str, Any]) -> Tenant:
        return await self._update(TENANTS, tenant_id, fields)

    async def create_api_key(self, key: ApiKey) -> ApiKey:
        return await self._create(API_KEYS, key, ", or a key with this hash does")

    async def find_api_key(self, key_hash: str) -> ApiKey | None:
        found = await self._list(API_KEYS, "WHERE key_hash = ? AND revoked_at IS NULL", (key_hash,))
        return found[0] if found else None

    async def find_principal(self, key_hash: str) -> tuple[ApiKey, Tenant] | None:
        async with self.reader() as tx:
            row = await tx.fetchone(_PRINCIPAL, (key_hash,))
        if row is None:
            return None
        values, split = tuple(row), len(API_KEYS.columns)
        return API_KEYS.from_row(values[:split]), TENANTS.from_row(values[split:])

    async def list_api_keys(self, tenant_id: str | None = None) -> list[ApiKey]:
        if tenant_id is None:
            return await self._list(API_KEYS)
        return await self._list(API_KEYS, "WHERE tenant_id = ?", (tenant_id,))

    async def revoke_api_key(self, key_id: str, at: float) -> None:
        """Keeps the first revocation time when revoked twice."""
        async with self.transaction() as tx:
            await tx.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (at, key_id))
            if await tx.fetchone("SELECT 1 FROM api_keys WHERE id = ?", (key_id,)) is None:
                raise NotFound(f"API key {key_id!r} not found")

    # -- senders and scopes ------------------------------------------------------------------
    async def upsert_scope(self, scope: Scope) -> Scope:
        """Insert or overwrite every setting (leases are kept); ConflictError if another tenant owns it."""
        columns = ", ".join(SCOPES.columns)
        sets = ", ".join(f"{c} = excluded.{c}" for c in SCOPES.columns if c != "id")
        async with self.transaction() as tx:
            changed = await tx.execute(
                f"INSERT INTO scopes ({columns}) VALUES ({_marks(len(SCOPES.columns))}) "
                f"ON CONFLICT (id) DO UPDATE SET {sets} WHERE scopes.tenant_id = excluded.tenant_id",
                SCOPES.to_row(scope),
            )
        if not changed:
            raise ConflictError(f"scope {scope.id!r} belongs to another tenant")
        return scope

    async def get_scope(self, scope_id: str) -> Scope:
        return await self._get(SCOPES, scope_id)

    async def list_scopes(self, tenant_id: str | None = None) -> list[Scope]:
        if tenant_id is None:
            return await self._list(SCOPES, order="id")
        return await self._list(SCOPES, "WHERE tenant_id = ?", (tenant_id,), order="id")

    async def update_scope(self, scope_id: str, fields: dict[str, Any]) -> Scope:
        return await self._update(SCOPES, scope_id, fields)

    async def create_sender(self, sender: Sender) -> Sender:
        return await self._create(SENDERS, sender)

    async def get_sender(self, sender_id: str) -> Sender:
        return await self._get(SENDERS, sender_id)

    async def list_senders(self, tenant_id: str | None = None) -> list[Sender]:
        if tenant_id is None:
            return await self._list(SENDERS)
        return await self._list(SENDERS, "WHERE tenant_id = ?", (tenant_id,))

    async def senders_of_scope(self, scope_id: str) -> list[Sender]:
        return await self._list(SENDERS, "WHERE scope_id = ?", (scope_id,))

    async def update_sender(self, sender_id: str, fields: dict[str, Any]) -> Sender:
        return await self._update(SENDERS, sender_id, fields)

    async def add_sender_event(self, sender_id: str, at: float, kind: str, detail: str) -> None:
        async with self.transaction() as tx:
            await tx.execute("INSERT INTO sender_events (sender_id, at, kind, detail) VALUES (?, ?, ?, ?)",
                             (sender_id, at, kind, detail))

    async def sender_events(self, sender_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """The latest ``limit`` events, newest first."""
        async with self.reader() as tx:
            rows = await tx.fetchall(
                "SELECT at, kind, detail FROM sender_events WHERE sender_id = ? ORDER BY at DESC, id DESC LIMIT ?",
                (sender_id, limit),
            )
        return [{"at": at, "kind": kind, "detail": detail} for at, kind, detail in rows]

    # -- messages ----------------------------------------------------------------------------
    async def insert_messages(self, messages: Sequence[NewMessage], now: float) -> list[Message]:
        """Insert in order; a message whose (tenant, idempotency_key) exists returns the original.

        Keys repeated inside the batch return the first one's message. Concurrent inserts of one key
        (two API nodes) are settled by the unique index: the loser reads the winner's row.
        NotFound if a sender does not exist (nothing is inserted).
        """
        out, _inserted = await self._insert(messages, now, answer=True)
        return out

    async def enqueue_messages(self, messages: Sequence[NewMessage], now: float) -> int:
        """``insert_messages`` without the answer: the same rows, and no ``Message`` made for each
        (0.35 of the insert's 0.85 us of Python a message). How many rows were inserted."""
        _out, inserted = await self._insert(messages, now, answer=False)
        return inserted

    @_retried
    async def _insert(self, messages: Sequence[NewMessage], now: float, answer: bool) -> tuple[list[Message], int]:
        """(the messages, if ``answer``, else []; rows inserted)."""
        if not messages:
            return [], 0
        ids = new_ids("msg", len(messages), now)
        async with self.transaction() as tx:
            scope_of = {m.sender_id: m.scope_id for m in messages if m.scope_id is not None}
            unknown = {m.sender_id for m in messages if m.sender_id not in scope_of}
            if unknown:
                scope_of |= await self._scopes_of_senders(tx, unknown)
            out: list[Message] = []
            told: list[str] = []  # refused at submission (a campaign's opted-out rows): the app knows
            rows: list[tuple[Any, ...]] = []
            first_of_key: dict[tuple[str, str], int] = {}
            dumps = orjson.dumps
            # A campaign's rows share their first history line and, often, one metadata object:
            # each is encoded once per batch (the objects are alive for the loop, so ids are unique).
            lines: dict[tuple[str, str], str] = {}
            metadata_text: dict[int, str] = {}
            for i, (new, message_id) in enumerate(zip(messages, ids, strict=True)):
                if new.idempotency_key is not None:
                    first = first_of_key.setdefault((new.tenant_id, new.idempotency_key), i)
                    if first != i:
                        if answer:
                            out.append(out[first])
                        continue
                scope_id = scope_of[new.sender_id]
                state = new.state if type(new.state) is MessageState else MessageState(new.state)
                value = _VALUES[state]
                due = now if new.not_before is None else new.not_before
                if answer:  # positional, in Message's field order: a batch makes a thousand (kwargs cost ~1.7x)
                    out.append(Message(
                        message_id, new.tenant_id, new.sender_id, scope_id, new.to, new.kind, new.category,
                        new.body, new.priority, state, new.reason, 0, due, new.idempotency_key, new.expires_at,
                        new.campaign_id, new.metadata, None, False, None, None, None, "", now, now, None,
                    ))
                if value in _TOLD_STATES:
                    told.append(message_id)
                if not new.metadata:  # most messages: each its own empty dict
                    meta = "{}"
                elif (cached := metadata_text.get(id(new.metadata))) is not None:
                    meta = cached
                else:
                    meta = metadata_text[id(new.metadata)] = dumps(new.metadata).decode()
                line = lines.get((value, new.reason))
                if line is None:
                    line = lines[(value, new.reason)] = history_entry(now, value, new.reason or "accepted")
                rows.append((message_id, new.tenant_id, new.sender_id, scope_id, new.to, new.kind, new.category,
                             dumps(new.body).decode(), new.priority, value, new.reason, due, new.not_before,
                             new.idempotency_key, new.expires_at, new.campaign_id, meta, now, now, line))
            # Ids are new: only an idempotency key can conflict (then the original is answered).
            inserted = await tx.insert_many("messages", _NEW_MESSAGE_COLUMNS, rows,
                                            "ON CONFLICT DO NOTHING" if first_of_key else "")
            if first_of_key:  # rows whose key existed were not inserted: answer with the originals
                originals = await self._messages_by_key(tx, list(first_of_key))
                replaced = {ids[i]: originals[key] for key, i in first_of_key.items() if originals[key].id != ids[i]}
                if replaced:
                    if answer:
                        out = [replaced.get(m.id, m) for m in out]
                    told = [message_id for message_id in told if message_id not in replaced]
            for chunk in _chunks(told, self.max_params):
                await tx.execute(f"UPDATE messages SET told = TRUE WHERE id IN ({_marks(len(chunk))})", chunk)
        return out, inserted

    async def _scopes_of_senders(self, tx: Tx, sender_ids: set[str]) -> dict[str, str]:
        wanted = sorted(sender_ids)
        found: dict[str, str] = {}
        for chunk in _chunks(wanted, self.max_params):
            rows = await tx.fetchall(f"SELECT id, scope_id FROM senders WHERE id IN ({_marks(len(chunk))})", chunk)
            found.update(rows)
        missing = [s for s in wanted if s not in found]
        if missing:
            raise NotFound(f"sender {missing[0]!r} not found")
        return found

    async def _messages_by_key(self, tx: Tx, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Message]:
        found: dict[tuple[str, str], Message] = {}
        by_tenant = groupby(sorted(keys), key=lambda k: k[0])
        for tenant_id, group in by_tenant:
            idem_keys = [k for _, k in group]
            for chunk in _chunks(idem_keys, self.max_params):
                rows = await tx.fetchall(
                    f"{MESSAGES.select} WHERE tenant_id = ? AND idempotency_key IN ({_marks(len(chunk))})",
                    [tenant_id, *chunk],
                )
                for row in rows:
                    message = MESSAGES.from_row(row)
                    found[(tenant_id, message.idempotency_key or "")] = message
        return found

    async def get_message(self, message_id: str) -> Message:
        return await self._get(MESSAGES, message_id)

    async def get_message_by_wamid(self, wamid: str) -> Message | None:
        found = await self._list(MESSAGES, "WHERE wamid = ?", (wamid,), order="created_at, id LIMIT 1")
        return found[0] if found else None

    async def message_history(self, message_id: str) -> list[dict[str, Any]]:
        """Every state the message went through, oldest first."""
        async with self.reader() as tx:
            row = await tx.fetchone("SELECT history FROM messages WHERE id = ?", (message_id,))
        return [] if row is None else _history(row[0])

    async def claim_due(self, scope_ids: Sequence[str], now: float, limit: int,
                        exclude: Sequence[str] = ()) -> list[Message]:
        """Queued messages due by ``now`` in these scopes, most urgent first (priority, due, age).

        One index range per scope and priority level (``messages_claim`` holds exactly this order),
        merged in SQL with UNION ALL. Per level, because a range over a whole scope cannot stop at
        ``next_attempt_at <= now``: with fewer due rows than the limit it walked every parked row of
        the scope (20 ms a claim with a million parked). An IN list over scopes would sort every due
        row of every scope. Scopes take turns (each one's first, then each one's second, ...): a
        plain merge by urgency let one sender's backlog fill every batch, and the throttle then
        starved every other sender.
        """
        if not scope_ids or limit <= 0:
            return []
        skip, skip_params = ("", []) if not exclude else self._not_in("id", exclude)
        per_level = (f"SELECT * FROM ({MESSAGES.select}{self._claim_index} WHERE scope_id = ? AND state = 'queued' "
                     f"AND priority = ? AND next_attempt_at <= ?{f' AND {skip}' if skip else ''} "
                     f"ORDER BY next_attempt_at, created_at LIMIT ?) AS s{{}}")
        claimed: list[Message] = []
        async with self.reader() as tx:
            for chunk in _chunks(sorted(set(scope_ids)), 100):
                levels = await tx.fetchall(_LEVELS.format(values=", ".join(["(?)"] * len(chunk))), chunk)
                if not levels:
                    continue
                params: list[Any] = []
                for scope_id, priority in levels:
                    params += (scope_id, priority, now, *skip_params, limit)
                if len(levels) == 1:  # one index range, already in claim order: no merge, no sort of wide rows
                    claimed += map(_message_from_row, await tx.fetchall(per_level.format(0), params))
                    continue
                query = " UNION ALL ".join(per_level.format(i) for i in range(len(levels)))
                order = _CLAIM_ORDER
                if len(chunk) > 1:
                    order = f"ROW_NUMBER() OVER (PARTITION BY scope_id ORDER BY {_CLAIM_ORDER}), {_CLAIM_ORDER}"
                query = f"SELECT * FROM ({query}) AS due ORDER BY {order} LIMIT ?"
                params.append(limit)
                claimed += map(_message_from_row, await tx.fetchall(query, params))
        if len(scope_ids) > 100:
            turn: Counter[str] = Counter()
            ranked = []
            for m in claimed:  # each scope's rows come in its own claim order
                turn[m.scope_id] += 1
                ranked.append((turn[m.scope_id], m.priority, m.next_attempt_at, m.created_at, m))
            ranked.sort(key=itemgetter(0, 1, 2, 3))
            claimed = [r[-1] for r in ranked]
        return claimed[:limit]

    async def claim_parked(self, scope_id: str, now: float, limit: int) -> list[Message]:
        """Not-yet-due messages of the scope parked for capacity, in claim order (see the port)."""
        if limit <= 0:
            return []
        async with self.reader() as tx:
            rows = await tx.fetchall(
                f"{MESSAGES.select}{self._claim_index} WHERE scope_id = ? AND state = 'queued' "
                f"AND next_attempt_at > ? AND reason LIKE '{CAPACITY_REASON}%' ORDER BY {_CLAIM_ORDER} LIMIT ?",
                (scope_id, now, limit))
        return [MESSAGES.from_row(row) for row in rows]

    async def next_due_at(self, scope_ids: Sequence[str]) -> float | None:
        """When the earliest queued message of these scopes is due.

        A skip-scan of ``messages_claim``: per scope, walk its distinct priorities (one probe each)
        and take the first due time of each, so no second index has to follow every state change.
        """
        if not scope_ids:
            return None
        earliest: float | None = None
        async with self.reader() as tx:
            for chunk in _chunks(sorted(set(scope_ids)), self.max_params):
                row = await tx.fetchone(_NEXT_DUE.format(values=", ".join(["(?)"] * len(chunk))), chunk)
                if row is not None and row[0] is not None:
                    earliest = row[0] if earliest is None else min(earliest, row[0])
        return earliest

    @_retried
    async def apply_updates(
        self,
        updates: Sequence[MessageUpdate],
        ledger: Sequence[LedgerChange] = (),
        lease: tuple[str, Sequence[str]] | None = None,
    ) -> int:
        """Apply message updates and window-ledger changes in one transaction.

        Updates apply in order; ``only_from`` is checked against the state left by the earlier
        updates of the same batch. Ledger upserts keep the later expiry; removals only delete a row
        whose expiry is exactly the one given (a newer send keeps the recipient counted).
        """
        ordered = sorted(updates, key=attrgetter("id"))  # stable: keeps each message's own order
        async with self.transaction() as tx:
            if lease is not None:
                await self._check_lease(tx, lease[0], lease[1])
            changed = 0
            # A guard (``only_from``) is part of its UPDATE's WHERE: the engine checks it on the row
            # it locks for the write, so a racing writer (a status webhook) cannot slip in between.
            for generation, columns, extra, history, guard, rows in _update_groups(ordered):
                count = await tx.update_many("messages", columns, rows, extra, appended=_HISTORY if history else (),
                                             only_if=None if guard is None else ("state", guard))
                if generation == 0:
                    changed += count
            await self._apply_ledger(tx, ledger)
        return changed

    async def _check_lease(self, tx: Tx, worker_id: str, scope_ids: Sequence[str]) -> None:
        wanted = sorted(set(scope_ids))
        held: set[str] = set()
        for chunk in _chunks(wanted, self.max_params):
            where, params = self._in("id", chunk)
            rows = await tx.fetchall(f"SELECT id, lease_owner FROM scopes WHERE {where} ORDER BY id{self.lock_rows}",
                                     params)
            held.update(scope_id for scope_id, owner in rows if owner == worker_id)
        lost = [s for s in wanted if s not in held]
        if lost:
            raise LeaseLost(f"worker {worker_id!r} no longer holds scope(s) {', '.join(lost)}")

    async def _apply_ledger(self, tx: Tx, ledger: Sequence[LedgerChange]) -> None:
        # Sorted by key (lock order); stable, so the changes to one recipient keep their order, and
        # each run of upserts or of removals is one statement. Within a run of upserts only the
        # latest expiry of a recipient matters (and a statement may touch a row only once).
        if not ledger:
            return
        if not any(map(_REMOVE, ledger)):  # the common case: upserts only, a recipient once each
            rows = sorted(map(_LEDGER_ROW, ledger))  # the rows' own order is the key's (0.7x the time)
            if len(set(map(_ROW_KEY, rows))) == len(rows):
                await tx.insert_many("window_ledger", _LEDGER_COLUMNS, rows, _LEDGER_KEEP_LATEST)
                return
        ordered = sorted(ledger, key=_LEDGER_KEY)
        for remove, run in groupby(ordered, key=_REMOVE):
            if remove:
                await tx.delete_many("window_ledger", _LEDGER_COLUMNS, list(map(_LEDGER_ROW, run)))
                continue
            latest: dict[tuple[str, str], float] = {}
            for c in run:
                key = (c.scope_id, c.recipient)
                if key not in latest or c.expiry > latest[key]:
                    latest[key] = c.expiry
            await tx.insert_many("window_ledger", _LEDGER_COLUMNS, [(*key, e) for key, e in latest.items()],
                                 _LEDGER_KEEP_LATEST)

    async def _move(self, tx: Tx, where: str, params: Sequence[Any], state: str, reason: str, now: float) -> int:
        """Move every message matching ``where`` to ``state``, its history line appended by the same UPDATE."""
        return await tx.execute(
            f"UPDATE messages SET state = ?, reason = ?, updated_at = ?, history = history || ? {where}",
            (state, reason, now, history_entry(now, state, reason), *params),
        )

    async def park_for_capacity(self, scope_id: str, *, categories: Sequence[str], now: float, until: float,
                                reason: str, csw_since: float, chunk: int = 20_000) -> int:
        """Park the scope's due templates of these (full) categories that would need a new slot, per
        priority level and ``chunk`` rows a transaction, so no other writer waits long (see the port)."""
        if until <= now:  # the parked rows would still be due: the chunk loop would never end
            raise ValueError(f"park_for_capacity: until ({until}) must be later than now ({now})")
        if not categories:
            return 0
        entry = history_entry(now, "queued", reason)
        query = (
            "UPDATE messages SET next_attempt_at = ?, reason = ?, updated_at = ?, history = history || ? "
            f"WHERE {self.row_key} IN (SELECT {self.row_key} FROM messages{self._claim_index} WHERE scope_id = ? "
            "AND state = 'queued' AND priority = ? AND next_attempt_at <= ? "
            f"AND kind = 'template' AND category IN ({_marks(len(categories))}) "
            "AND (expires_at IS NULL OR expires_at > ?) "
            "AND NOT EXISTS (SELECT 1 FROM csw WHERE csw.sender_id = messages.sender_id "
            "AND csw.recipient = messages.recipient AND csw.last_inbound_at > ?) "
            "AND NOT EXISTS (SELECT 1 FROM window_ledger AS w WHERE w.scope_id = messages.scope_id "
            "AND w.recipient = messages.recipient AND w.expiry > ?) LIMIT ?)"
        )
        async with self.reader() as tx:
            levels = await tx.fetchall(_LEVELS.format(values="(?)"), (scope_id,))
        moved = 0
        for _scope, priority in levels:
            while True:
                async with self.transaction() as tx:
                    n = await tx.execute(query, (until, reason, now, entry, scope_id, priority, now, *categories,
                                                 until, csw_since, now, chunk))
                moved += n
                if n < chunk:
                    break
                await asyncio.sleep(0)  # let the loop serve others between chunks
        return moved

    @_retried
    async def requeue_where(
        self, *, scope_id: str | None = None, sender_id: str | None = None, recipient: str | None = None,
        campaign_id: str | None = None, now: float, keep_capacity_parked: bool = False,
    ) -> int:
        """Make matching queued messages due now (capacity freed, a window opened).

        Messages held back by their own ``not_before`` (a scheduled start) stay where they are, and
        with ``keep_capacity_parked`` those waiting for the messaging limit (pulled by the dispatcher).
        """
        where = ["state = 'queued'", "next_attempt_at > ?", "(not_before IS NULL OR not_before <= ?)"]
        if keep_capacity_parked:
            where.append(f"reason NOT LIKE '{CAPACITY_REASON}%'")
        params: list[Any] = [now, now]
        for column, value in (("scope_id", scope_id), ("sender_id", sender_id), ("recipient", recipient),
                              ("campaign_id", campaign_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        async with self.transaction() as tx:
            return await tx.execute(f"UPDATE messages SET next_attempt_at = ? WHERE {' AND '.join(where)}",
                                    (now, *params))

    @_retried
    async def set_campaign_hold(self, campaign_id: str, hold: bool, now: float) -> int:
        """Hold: queued -> held. Release: held -> queued (due when it was due before)."""
        source, target, reason = (("queued", "held", "campaign paused") if hold
                                  else ("held", "queued", "campaign resumed"))
        async with self.transaction() as tx:
            return await self._move(tx, "WHERE campaign_id = ? AND state = ?", (campaign_id, source),
                                    target, reason, now)

    @_retried
    async def cancel_campaign_messages(self, campaign_id: str, now: float) -> int:
        async with self.transaction() as tx:
            return await self._move(tx, "WHERE campaign_id = ? AND state IN ('queued', 'held')", (campaign_id,),
                                    "canceled", "campaign canceled", now)

    @_retried
    async def cancel_message(self, message_id: str, now: float, reason: str) -> bool:
        async with self.transaction() as tx:
            return bool(await self._move(tx, "WHERE id = ? AND state IN ('queued', 'held')", (message_id,),
                                         "canceled", reason, now))

    @_retried
    async def recover_inflight(self, scope_ids: Sequence[str], now: float, hold_until: float | None = None) -> int:
        """After a crash: messages left ``sending`` in these scopes become ``unknown`` (never re-sent);
        with ``hold_until``, their counted slots (ledger rows and the messages' own) last at least
        that long (see the port)."""
        moved = 0
        async with self.transaction() as tx:
            for chunk in _chunks(sorted(set(scope_ids)), self.max_params):
                where = f"WHERE scope_id IN ({_marks(len(chunk))}) AND state = 'sending'"
                if hold_until is not None:
                    slots = await tx.fetchall(
                        f"SELECT DISTINCT scope_id, recipient FROM messages {where} AND counted = TRUE", chunk)
                    await tx.executemany("UPDATE window_ledger SET expiry = ? WHERE scope_id = ? AND recipient = ? "
                                         "AND expiry < ?", [(hold_until, sc, rc, hold_until) for sc, rc in slots])
                    await tx.execute(f"UPDATE messages SET slot_expiry = ? {where} AND counted = TRUE "
                                     "AND slot_expiry < ?", (hold_until, *chunk, hold_until))
                moved += await self._move(tx, where, chunk, "unknown", _RECOVERED_REASON, now)
        return moved

    async def count_by_state(self, tenant_id: str | None = None, campaign_id: str | None = None,
                             sender_id: str | None = None) -> dict[str, int]:
        where, params = self._filters(tenant_id=tenant_id, campaign_id=campaign_id, sender_id=sender_id)
        async with self.scanner() as tx:
            rows = await tx.fetchall(f"SELECT state, COUNT(*) FROM messages {where} GROUP BY state", params)
        return {state: int(count) for state, count in rows}

    async def count_queued(self, scope_id: str) -> int:
        """Queued messages of the scope, due or not, counted off the claim index (no table scan)."""
        async with self.reader() as tx:
            row = await tx.fetchone(
                f"SELECT COUNT(*) FROM messages{self._claim_index} WHERE scope_id = ? AND state = 'queued'",
                (scope_id,))
        return int(row[0]) if row else 0

    async def count_live(self) -> dict[str, int]:
        """Messages not ended yet, by state: each state is counted off its partial index (queued
        off ``messages_claim``, held off ``messages_held``, sending off ``messages_sending``), so the
        cost follows the backlog, not every message ever sent."""
        parts = [f"SELECT '{state}', COUNT(*) FROM messages{self._using(index)} WHERE state = '{state}'"
                 for state, index in _LIVE_INDEXES]
        async with self.reader() as tx:
            rows = await tx.fetchall(" UNION ALL ".join(parts))
        return {state: int(count) for state, count in rows}

    async def list_messages(self, tenant_id: str, *, campaign_id: str | None = None, state: str | None = None,
                            recipient: str | None = None, limit: int = 100,
                            before: str | None = None) -> list[Message]:
        """The newest ``limit`` matching messages, newest first; ``before`` (an id) pages on.

        Ids begin with their creation time, so newest first is id order: read backwards off the
        primary key, or off ``messages_campaign`` (campaign_id, id), the scan stops after ``limit``
        matches instead of sorting every message of the tenant or campaign. A recipient's few are
        read off ``messages_recipient``. A state that is rare in a big campaign still walks the
        campaign's rows (0.3 s a million): a scan, off the event loop where the engine needs it."""
        where, params = self._filters(tenant_id=tenant_id, campaign_id=campaign_id, recipient=recipient,
                                      state=None if state is None else _state(state))
        if before is not None:
            where, params = f"{where} AND id < ?", [*params, before]
        return await self._list(MESSAGES, where, [*params, limit], order="id DESC LIMIT ?", scan=True)

    @staticmethod
    def _filters(**equal: str | None) -> tuple[str, list[str]]:
        given = {column: value for column, value in equal.items() if value is not None}
        if not given:
            return "", []
        return "WHERE " + " AND ".join(f"{column} = ?" for column in given), list(given.values())

    async def marketing_sends_since(self, tenant_id: str, recipients: Sequence[str],
                                    since: float) -> dict[str, list[float]]:
        """Per recipient, the times (sorted) of marketing messages sent, or maybe sent, after ``since``.

        A message still ``sending`` or ``unknown`` has no ``sent_at``: its last change (admission)
        stands in, so the frequency cap counts it rather than risk an extra send.
        """
        sends: dict[str, list[float]] = {}
        states = ", ".join(f"'{s}'" for s in _MARKETING_STATES)
        async with self.reader() as tx:
            for chunk in _chunks(sorted(set(recipients)), self.max_params):
                where, params = self._in("recipient", chunk)
                rows = await tx.fetchall(
                    f"SELECT recipient, COALESCE(sent_at, updated_at) AS at FROM messages "
                    f"WHERE tenant_id = ? AND category = 'MARKETING' AND {where} "
                    f"AND state IN ({states}) AND COALESCE(sent_at, updated_at) > ?",
                    [tenant_id, *params, since],
                )
                for recipient, at in rows:
                    sends.setdefault(recipient, []).append(at)
        for times in sends.values():
            times.sort()
        return sends

    async def distinct_counted(self, scope_id: str, since: float, until: float) -> int:
        """Distinct recipients of counted sends of the scope with sent_at in (since, until]."""
        async with self.scanner() as tx:
            row = await tx.fetchone(
                "SELECT COUNT(DISTINCT recipient) FROM messages WHERE scope_id = ? AND counted = TRUE "
                "AND sent_at IS NOT NULL AND sent_at > ? AND sent_at <= ?",
                (scope_id, since, until),
            )
        return int(row[0]) if row else 0

    async def counted_history(self, scope_id: str, since: float, now: float, utc_offset: float,
                              recent_since: float | None = None) -> CountedHistory:
        """One aggregate over the scope's counted sends (see the port): a million sends come back as
        a few thousand rows, not a million."""
        async with self.scanner() as tx:
            rows = await tx.fetchall(_COUNTED_HISTORY, (
                scope_id, since, now, DAY, scope_id, now, utc_offset, DAY, scope_id, now,
                now if recent_since is None else recent_since))
        return CountedHistory(in_window=[(at, int(n)) for part, at, n in rows if part == 1],
                              by_day=[(int(day), int(n)) for part, day, n in rows if part == 0],
                              recent=sum(int(n) for part, _, n in rows if part == 2))

    # -- the window ledger -------------------------------------------------------------------
    async def load_ledger(self, scope_id: str, now: float) -> list[tuple[str, float]]:
        """(recipient, expiry) still counted at ``now``, earliest expiry first."""
        async with self.reader() as tx:
            rows = await tx.fetchall(
                "SELECT recipient, expiry FROM window_ledger WHERE scope_id = ? AND expiry > ? "
                "ORDER BY expiry, recipient",
                (scope_id, now),
            )
        return [(recipient, expiry) for recipient, expiry in rows]

    async def window_counts(self, now: float) -> dict[str, int]:
        """Recipients each scope's window counts at ``now`` (its ledger rows not yet expired), counted
        in SQL off the expiry index: no row is loaded."""
        async with self.reader() as tx:
            rows = await tx.fetchall(
                f"SELECT scope_id, COUNT(*) FROM window_ledger{self._using('window_ledger_expiry')} "
                "WHERE expiry > ? GROUP BY scope_id", (now,))
        return {scope_id: int(count) for scope_id, count in rows}

    async def window_releases(self, scope_id: str, now: float,
                              bucket: float) -> list[tuple[int, int, float, float]]:
        """The scope's live window by when its slots free, aggregated in SQL (see the port)."""
        async with self.scanner() as tx:
            rows = await tx.fetchall(
                "SELECT -floor((? - expiry) / ?) - 1, COUNT(*), MIN(expiry), MAX(expiry) FROM window_ledger "
                "WHERE scope_id = ? AND expiry > ? GROUP BY 1 ORDER BY 1", (now, bucket, scope_id, now))
        return [(int(k), int(n), first, last) for k, n, first, last in rows]

    @_retried
    async def prune_ledger(self, now: float) -> int:
        async with self.transaction() as tx:
            return await tx.execute("DELETE FROM window_ledger WHERE expiry <= ?", (now,))

    # -- recipients --------------------------------------------------------------------------
    async def set_opt_in(self, tenant_id: str, recipient: str, at: float, source: str) -> None:
        """Record an opt-in; it lifts an earlier opt-out (a later opt-out stays)."""
        await self.set_opt_ins(tenant_id, [(recipient, at, source)])

    async def set_opt_ins(self, tenant_id: str, entries: Sequence[tuple[str, float, str]]) -> int:
        """Record many opt-ins (recipient, time, source) in one transaction: an import of consent
        collected elsewhere is all in or all out. Each lifts an earlier opt-out, not a later one."""
        async with self.transaction() as tx:
            await tx.executemany(
                """INSERT INTO recipients (tenant_id, phone, opted_in_at, opt_in_source) VALUES (?, ?, ?, ?)
                ON CONFLICT (tenant_id, phone) DO UPDATE SET
                    opted_in_at = excluded.opted_in_at, opt_in_source = excluded.opt_in_source,
                    opted_out_at = CASE WHEN recipients.opted_out_at <= excluded.opted_in_at
                                        THEN NULL ELSE recipients.opted_out_at END,
                    opt_out_source = CASE WHEN recipients.opted_out_at <= excluded.opted_in_at
                                          THEN NULL ELSE recipients.opt_out_source END""",
                [(tenant_id, recipient, at, source) for recipient, at, source in entries],
            )
        return len(entries)

    async def set_opt_out(self, tenant_id: str, recipient: str, at: float, source: str) -> None:
        """Record an opt-out, unless the recipient opted in again after ``at`` (a late duplicate)."""
        async with self.transaction() as tx:
            await tx.execute(
                """INSERT INTO recipients (tenant_id, phone, opted_out_at, opt_out_source) VALUES (?, ?, ?, ?)
                ON CONFLICT (tenant_id, phone) DO UPDATE SET
                    opted_out_at = excluded.opted_out_at, opt_out_source = excluded.opt_out_source
                WHERE recipients.opted_in_at IS NULL OR recipients.opted_in_at <= excluded.opted_out_at""",
                (tenant_id, recipient, at, source),
            )

    async def recipient_flags(self, tenant_id: str, recipients: Sequence[str]) -> dict[str, RecipientFlags]:
        """Flags of the recipients with any record (absent: never opted in or out)."""
        flags: dict[str, RecipientFlags] = {}
        async with self.reader() as tx:
            for chunk in _chunks(sorted(set(recipients)), self.max_params):
                where, params = self._in("phone", chunk)
                rows = await tx.fetchall(
                    f"SELECT phone, opted_in_at, opted_out_at FROM recipients WHERE tenant_id = ? AND {where}",
                    [tenant_id, *params],
                )
                flags.update((phone, RecipientFlags(opted_in, opted_out)) for phone, opted_in, opted_out in rows)
        return flags

    async def record_inbound(self, sender_id: str, recipient: str, at: float) -> bool:
        """Keep the latest inbound time of the pair; True when it moved forward."""
        async with self.transaction() as tx:
            return bool(await tx.execute(
                """INSERT INTO csw (sender_id, recipient, last_inbound_at) VALUES (?, ?, ?)
                ON CONFLICT (sender_id, recipient) DO UPDATE SET last_inbound_at = excluded.last_inbound_at
                WHERE excluded.last_inbound_at > csw.last_inbound_at""",
                (sender_id, recipient, at),
            ))

    async def last_inbound(self, sender_id: str, recipients: Sequence[str]) -> dict[str, float]:
        found: dict[str, float] = {}
        async with self.reader() as tx:
            for chunk in _chunks(sorted(set(recipients)), self.max_params):
                where, params = self._in("recipient", chunk)
                rows = await tx.fetchall(f"SELECT recipient, last_inbound_at FROM csw WHERE sender_id = ? AND {where}",
                                         [sender_id, *params])
                found.update(rows)
        return found

    # -- campaigns ---------------------------------------------------------------------------
    async def create_campaign(self, campaign: Campaign) -> Campaign:
        return await self._create(CAMPAIGNS, campaign)

    async def get_campaign(self, campaign_id: str) -> Campaign:
        return await self._get(CAMPAIGNS, campaign_id)

    async def list_campaigns(self, tenant_id: str, *, sender_id: str | None = None, state: str | None = None,
                             limit: int | None = None, before: str | None = None) -> list[Campaign]:
        """Newest first (see the port)."""
        where, equal = self._filters(tenant_id=tenant_id, sender_id=sender_id, state=state)
        params: list[Any] = list(equal)
        if before is not None:
            where += " AND (created_at, id) < (SELECT c.created_at, c.id FROM campaigns AS c WHERE c.id = ?)"
            params.append(before)
        order = "created_at DESC, id DESC"
        if limit is not None:
            order += " LIMIT ?"
            params.append(limit)
        return await self._list(CAMPAIGNS, where, params, order=order)

    async def update_campaign(self, campaign_id: str, fields: dict[str, Any]) -> Campaign:
        return await self._update(CAMPAIGNS, campaign_id, fields)

    async def campaign_sends_between(self, campaign_id: str, edges: Sequence[float]) -> list[int]:
        """One aggregate over the campaign's rows: a bucket per period, no floor() (dialects differ on it)."""
        periods = [(edges[i], edges[i + 1]) for i in range(len(edges) - 1)]
        if not periods:
            return []
        sums = ", ".join("SUM(CASE WHEN sent_at >= ? AND sent_at < ? THEN 1 ELSE 0 END)" for _ in periods)
        async with self.scanner() as tx:
            row = await tx.fetchone(
                f"SELECT {sums} FROM messages WHERE campaign_id = ? AND sent_at IS NOT NULL",
                [*(t for period in periods for t in period), campaign_id],
            )
        return [int(n or 0) for n in (row or ())] or [0] * len(periods)

    # -- message retention -------------------------------------------------------------------
    async def finished_campaigns(self, before: float, limit: int = 100) -> list[Campaign]:
        """Each candidate's messages are read off ``messages_campaign``; only campaigns made before
        ``before`` are candidates (a younger one has messages changed since), so a pass reads little."""
        async with self.scanner() as tx:
            rows = await tx.fetchall(
                f"{CAMPAIGNS.select} WHERE created_at < ? "
                "AND NOT EXISTS (SELECT 1 FROM campaign_archives AS a WHERE a.campaign_id = campaigns.id) "
                "AND NOT EXISTS (SELECT 1 FROM messages AS m WHERE m.campaign_id = campaigns.id "
                f"AND (m.updated_at >= ? OR m.state IN ({literals(_LIVE_STATES)}) OR ({_untold('m.')}))) "
                "ORDER BY created_at, id LIMIT ?", (before, before, limit))
        return [CAMPAIGNS.from_row(row) for row in rows]

    async def archive_campaign(self, archive: CampaignArchive) -> bool:
        async with self.transaction() as tx:
            return await tx.execute(
                "INSERT INTO campaign_archives (campaign_id, archived_at, counts, sent_by_day) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (campaign_id) DO NOTHING",
                (archive.campaign_id, archive.archived_at, _dumps(archive.counts), _dumps(archive.sent_by_day)),
            ) == 1

    async def campaign_archive(self, campaign_id: str) -> CampaignArchive | None:
        async with self.reader() as tx:
            row = await tx.fetchone("SELECT campaign_id, archived_at, counts, sent_by_day FROM campaign_archives "
                                    "WHERE campaign_id = ?", (campaign_id,))
        if row is None:
            return None
        return CampaignArchive(row[0], row[1], {str(k): int(v) for k, v in _loads(row[2]).items()},
                               [int(n) for n in _loads(row[3])])

    @_retried
    async def prune_messages(self, before: float, chunk: int = 5_000) -> int:
        """A message of no campaign goes once it ended before ``before``: the scan is an id range
        (ids begin with their creation time, and a row changed before ``before`` was made before
        it). A campaign's messages go all together, once the campaign is archived. Every process
        runs it: two deleting the same rows may deadlock on PostgreSQL, and the loser runs again."""
        ended = f"state NOT IN ({literals(_LIVE_STATES)}) AND NOT ({_UNTOLD})"
        gone = await self._delete_where("messages", f"id < ? AND campaign_id IS NULL AND updated_at < ? AND {ended}",
                                        (id_floor("msg", before), before), chunk)
        async with self.reader() as tx:
            archived = [row[0] for row in await tx.fetchall(
                "SELECT campaign_id FROM campaign_archives WHERE pruned = FALSE ORDER BY archived_at")]
        for campaign_id in archived:
            gone += await self._delete_where("messages", f"campaign_id = ? AND {ended}", (campaign_id,), chunk)
            async with self.transaction() as tx:  # done, unless something came alive since (then next time)
                await tx.execute("UPDATE campaign_archives SET pruned = TRUE WHERE campaign_id = ? AND NOT EXISTS "
                                 "(SELECT 1 FROM messages WHERE campaign_id = ?)", (campaign_id, campaign_id))
        return gone

    # -- raw webhook events ------------------------------------------------------------------
    async def add_webhook_event(self, event_id: str, body: bytes, received_at: float,
                                forwards: Sequence[tuple[str, bytes]] = (),
                                media: Sequence[tuple[str, str]] = ()) -> bool:
        """Store a raw delivery first; False if this id is already stored. Its forwards to tenants'
        apps are queued in the same transaction, and only with a new event: a redelivery of the
        same body is forwarded once."""
        async with self.transaction() as tx:
            new = bool(await tx.execute(
                "INSERT INTO webhook_events (id, body, received_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (event_id, bytes(body), received_at),
            ))
            if new:
                await self._queue_forwards(tx, forwards, event_id, received_at)
                await self._record_media(tx, media, received_at)
            return new

    async def set_template_categories(self, tenant_id: str, entries: Sequence[tuple[str, str, str]],
                                      at: float) -> int:
        latest = {(name, language): category for name, language, category in entries}  # one row each
        if not latest:
            return 0
        async with self.transaction() as tx:
            return await tx.insert_many(
                "template_categories", ("tenant_id", "name", "language", "category", "updated_at"),
                [(tenant_id, name, language, category, at) for (name, language), category in latest.items()],
                "ON CONFLICT (tenant_id, name, language) DO UPDATE SET category = excluded.category, "
                "updated_at = excluded.updated_at WHERE excluded.updated_at >= template_categories.updated_at")

    async def template_categories(self, tenant_id: str, names: Sequence[str]) -> dict[tuple[str, str], str]:
        found: dict[tuple[str, str], str] = {}
        async with self.reader() as tx:
            for chunk in _chunks(sorted(set(names)), self.max_params - 1):
                where, params = self._in("name", chunk)
                rows = await tx.fetchall(f"SELECT name, language, category FROM template_categories "
                                         f"WHERE tenant_id = ? AND {where}", [tenant_id, *params])
                found.update({(name, language): category for name, language, category in rows})
        return found

    async def list_template_categories(self, tenant_id: str) -> list[tuple[str, str, str, float]]:
        async with self.reader() as tx:
            rows = await tx.fetchall("SELECT name, language, category, updated_at FROM template_categories "
                                     "WHERE tenant_id = ? ORDER BY name, language", (tenant_id,))
        return [(name, language, category, updated_at) for name, language, category, updated_at in rows]

    async def add_media(self, entries: Sequence[tuple[str, str]], at: float) -> None:
        async with self.transaction() as tx:
            await self._record_media(tx, entries, at)

    @staticmethod
    async def _record_media(tx: Tx, entries: Sequence[tuple[str, str]], at: float) -> None:
        first = dict(reversed(entries))  # media id -> its first tenant (an id once in a statement)
        if first:
            rows = [(media_id, tenant, at) for media_id, tenant in first.items()]
            await tx.insert_many("media", ("id", "tenant_id", "at"), rows, "ON CONFLICT DO NOTHING")

    async def media_tenant(self, media_id: str) -> str | None:
        async with self.reader() as tx:
            row = await tx.fetchone("SELECT tenant_id FROM media WHERE id = ?", (media_id,))
        return None if row is None else str(row[0])

    async def prune_media(self, before: float, chunk: int = 5_000) -> int:
        return await self._delete_older("media", "at < ?", before, chunk)

    @staticmethod
    async def _queue_forwards(tx: Tx, forwards: Sequence[tuple[str, bytes]], event_id: str, at: float) -> None:
        """(tenant id, body) pairs onto the forwards queue, due at once."""
        if forwards:
            ids = new_ids("fwd", len(forwards), at)
            rows = [(fid, tenant, event_id, bytes(raw), at, at)
                    for fid, (tenant, raw) in zip(ids, forwards, strict=True)]
            await tx.insert_many("forwards", _FORWARD_COLUMNS, rows)

    async def claim_forwards(self, now: float, limit: int, hold: float) -> list[Forward]:
        """Due forwards, oldest first, hidden from other claims until ``now + hold``. The guard on
        ``next_attempt_at`` in the UPDATE makes a concurrent claimer of the same rows (another API
        node) update none of them once the first has committed."""
        async with self.transaction() as tx:
            due = [row[0] for row in await tx.fetchall(
                "SELECT id FROM forwards WHERE state = 'pending' AND next_attempt_at <= ? "
                "ORDER BY next_attempt_at LIMIT ?", (now, limit))]
            if not due:
                return []
            among, params = self._in("id", due)
            rows = await tx.fetchall(
                f"UPDATE forwards SET next_attempt_at = ?, attempts = attempts + 1 WHERE {among} "
                "AND state = 'pending' AND next_attempt_at <= ? RETURNING id, tenant_id, body, attempts, created_at",
                [now + hold, *params, now])
        claimed = [Forward(r[0], r[1], bytes(r[2]), int(r[3]), float(r[4])) for r in rows]
        return sorted(claimed, key=lambda f: (f.created_at, f.id))

    async def finish_forward(self, forward_id: str, *, delivered_at: float | None = None, error: str = "",
                             next_attempt_at: float | None = None) -> None:
        """Delivered, or failed for now (due again at ``next_attempt_at``), or for good."""
        params: tuple[Any, ...]
        if delivered_at is not None:
            sql, params = ("UPDATE forwards SET state = 'delivered', delivered_at = ?, last_error = '' "
                           "WHERE id = ? AND state = 'pending'"), (delivered_at, forward_id)
        elif next_attempt_at is not None:
            sql, params = ("UPDATE forwards SET next_attempt_at = ?, last_error = ? WHERE id = ? AND state = 'pending'",
                           (next_attempt_at, error[:500], forward_id))
        else:
            sql, params = ("UPDATE forwards SET state = 'failed', last_error = ? WHERE id = ? AND state = 'pending'",
                           (error[:500], forward_id))
        async with self.transaction() as tx:
            await tx.execute(sql, params)

    async def forward_counts(self, tenant_id: str) -> dict[str, Any]:
        """Forwards by state, the latest error and the latest delivery time."""
        async with self.reader() as tx:
            counts = {row[0]: int(row[1]) for row in await tx.fetchall(
                "SELECT state, COUNT(*) FROM forwards WHERE tenant_id = ? GROUP BY state", (tenant_id,))}
            error = await tx.fetchone(
                "SELECT last_error FROM forwards WHERE tenant_id = ? AND last_error <> '' "
                "ORDER BY created_at DESC LIMIT 1", (tenant_id,))
            delivered = await tx.fetchone(
                "SELECT MAX(delivered_at) FROM forwards WHERE tenant_id = ? AND state = 'delivered'", (tenant_id,))
        return {"counts": counts, "last_error": error[0] if error else "",
                "last_delivered_at": delivered[0] if delivered else None}

    async def cancel_forwards(self, tenant_id: str, at: float) -> int:
        async with self.transaction() as tx:
            return await tx.execute("UPDATE forwards SET state = 'canceled', delivered_at = ? "
                                    "WHERE tenant_id = ? AND state = 'pending'", (at, tenant_id))

    async def prune_forwards(self, before: float, chunk: int = 5_000) -> int:
        """Finished forwards (delivered, failed or canceled) created before ``before`` are deleted."""
        return await self._delete_older("forwards", "state <> 'pending' AND created_at < ?", before, chunk)

    async def untold_messages(self, limit: int) -> list[Message]:
        """Read off ``messages_untold`` (migration 0011), whose condition this repeats word for word."""
        async with self.reader() as tx:
            rows = await tx.fetchall(f"{MESSAGES.select} WHERE {_UNTOLD} ORDER BY updated_at LIMIT ?", (limit,))
        return [MESSAGES.from_row(row) for row in rows]

    @_retried
    async def mark_told(self, message_ids: Sequence[str], forwards: Sequence[tuple[str, bytes]], at: float) -> bool:
        """The guard ``told = FALSE`` under the rows' write locks: of two processes telling the same
        messages, the second finds fewer rows to change, and rolls back its forwards."""
        try:
            async with self.transaction() as tx:
                changed = 0
                for chunk in _chunks(sorted(set(message_ids)), self.max_params):
                    changed += await tx.execute(
                        f"UPDATE messages SET told = TRUE WHERE id IN ({_marks(len(chunk))}) AND told = FALSE", chunk)
                if changed != len(set(message_ids)):
                    raise _ToldElsewhere
                await self._queue_forwards(tx, forwards, "told", at)
        except _ToldElsewhere:
            return False
        return True

    async def mark_webhook_applied(self, event_id: str, at: float, error: str | None = None) -> None:
        """Done with an event (``error`` keeps why applying it failed; it is not retried)."""
        async with self.transaction() as tx:
            if not await tx.execute("UPDATE webhook_events SET applied_at = ?, error = ? WHERE id = ?",
                                    (at, error, event_id)):
                raise NotFound(f"webhook event {event_id!r} not found")

    async def unapplied_webhook_events(self, limit: int = 100) -> list[tuple[str, bytes]]:
        """Stored but not yet applied events, oldest first."""
        async with self.reader() as tx:
            rows = await tx.fetchall(
                "SELECT id, body FROM webhook_events WHERE applied_at IS NULL ORDER BY received_at, id LIMIT ?",
                (limit,),
            )
        return [(event_id, bytes(body)) for event_id, body in rows]

    async def claim_change(self, change_id: str, at: float) -> bool:
        """True the first time a webhook change id is seen (redeliveries return False)."""
        async with self.transaction() as tx:
            return bool(await tx.execute(
                "INSERT INTO webhook_changes (id, at) VALUES (?, ?) ON CONFLICT DO NOTHING", (change_id, at)
            ))

    async def prune_webhooks(self, before: float, chunk: int = 5_000) -> int:
        """Delete applied deliveries received, and change ids seen, before ``before``; returns how
        many rows went. In short transactions of ``chunk`` rows, so a writer never waits long."""
        return (await self._delete_older("webhook_events", "applied_at IS NOT NULL AND received_at < ?", before, chunk)
                + await self._delete_older("webhook_changes", "at < ?", before, chunk))

    async def _delete_older(self, table: str, older: str, before: float, chunk: int) -> int:
        """Delete the rows of ``table`` matching ``older`` (one ``?``: ``before``)."""
        return await self._delete_where(table, older, (before,), chunk)

    async def _delete_where(self, table: str, where: str, params: Sequence[Any], chunk: int) -> int:
        """Delete the rows of ``table`` matching ``where``, ``chunk`` rows a transaction, so a writer
        never waits long behind a clean-up; returns how many went. Until a chunk finds nothing: a
        short chunk may only mean another process deleted some of its rows first."""
        gone = 0
        while True:
            async with self.transaction() as tx:
                done = await tx.execute(
                    f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {where} LIMIT ?)", (*params, chunk))
            gone += done
            if done == 0:
                return gone
            await asyncio.sleep(0)  # between chunks, the API and the dispatcher get their turn

    # -- scope leases ------------------------------------------------------------------------
    @_retried
    async def acquire_scopes(self, worker_id: str, now: float, ttl: float, limit: int) -> list[str]:
        """Renew this worker's heartbeat and leases, and take free or expired scopes up to its share
        (``scope_share``: never more than ``limit`` held in all).

        A lease is only ever taken when free or expired, and ``apply_updates(lease=...)`` fences on
        the owner column under a row lock, so a worker whose lease was taken over can write nothing.
        """
        until = now + ttl
        async with self.transaction() as tx:
            await tx.execute("INSERT INTO workers (id, seen_until) VALUES (?, ?) "
                             "ON CONFLICT (id) DO UPDATE SET seen_until = excluded.seen_until", (worker_id, until))
            # Workers that died (ids are per process by default): gone from the count, now from the table.
            await tx.execute("DELETE FROM workers WHERE seen_until <= ?", (now,))
            await tx.execute("UPDATE scopes SET lease_until = ? WHERE lease_owner = ?", (until, worker_id))
            held = [row[0] for row in await tx.fetchall("SELECT id FROM scopes WHERE lease_owner = ?", (worker_id,))]
            room = await self._share(tx, now, limit) - len(held)
            if room > 0:
                free = [row[0] for row in await tx.fetchall(
                    f"SELECT id FROM scopes WHERE (lease_owner IS NULL OR lease_until <= ?) "
                    f"ORDER BY id LIMIT ?{self.skip_locked}",
                    (now, room),
                )]
                if free:
                    await tx.execute(
                        f"UPDATE scopes SET lease_owner = ?, lease_until = ? WHERE id IN ({_marks(len(free))})",
                        (worker_id, until, *free),
                    )
                    held += free
        return sorted(held)

    async def scope_share(self, now: float, limit: int) -> int:
        """How many scopes a worker should hold: every scope over the live workers, rounded up, at
        most ``limit``."""
        async with self.reader() as tx:
            return await self._share(tx, now, limit)

    @staticmethod
    async def _share(tx: Tx, now: float, limit: int) -> int:
        scopes = await tx.fetchone("SELECT COUNT(*) FROM scopes")
        workers = await tx.fetchone("SELECT COUNT(*) FROM workers WHERE seen_until > ?", (now,))
        total, live = int(scopes[0]) if scopes else 0, max(int(workers[0]) if workers else 0, 1)
        return min(limit, -(-total // live))

    async def release_scopes(self, worker_id: str, scope_ids: Sequence[str] | None = None) -> None:
        """Give up these scopes (for another worker to take), or, without ``scope_ids``, every scope
        and the heartbeat (the worker is stopping: its share goes to the others at once)."""
        async with self.transaction() as tx:
            if scope_ids is None:
                await tx.execute("UPDATE scopes SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?",
                                 (worker_id,))
                await tx.execute("DELETE FROM workers WHERE id = ?", (worker_id,))
                return
            for chunk in _chunks(list(scope_ids), self.max_params - 1):
                await tx.execute(f"UPDATE scopes SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ? "
                                 f"AND id IN ({_marks(len(chunk))})", (worker_id, *chunk))

    async def list_workers(self, now: float) -> list[WorkerLeases]:
        async with self.reader() as tx:
            alive: dict[str, float] = {worker: float(until) for worker, until in await tx.fetchall(
                "SELECT id, seen_until FROM workers WHERE seen_until > ?", (now,))}
            held = await tx.fetchall("SELECT lease_owner, id FROM scopes WHERE lease_owner IS NOT NULL "
                                     "AND lease_until > ? ORDER BY lease_owner, id", (now,))
        scopes: dict[str, list[str]] = {worker: [] for worker in alive}
        for owner, scope_id in held:
            scopes.setdefault(owner, []).append(scope_id)
        return [WorkerLeases(worker, alive.get(worker), tuple(ids)) for worker, ids in sorted(scopes.items())]

    # -- wake-ups ----------------------------------------------------------------------------
    async def notify(self, channel: str) -> None:
        """Wake this process's listeners of ``channel`` (PostgreSQL also wakes other processes)."""
        for callback in list(self._listeners.get(channel, ())):
            callback()

    async def listen(self, channel: str, callback: Callable[[], None]) -> Callable[[], Awaitable[None]]:
        """Call ``callback`` on every ``notify(channel)``; returns an async function that stops it.

        Listening is in place when this returns, so no notification sent afterwards is missed.
        """
        self._listeners.setdefault(channel, []).append(callback)

        async def stop() -> None:
            callbacks = self._listeners.get(channel, [])
            if callback in callbacks:
                callbacks.remove(callback)

        return stop
