"""Storage adapters: pick one from a database URL.

``open_store(url)`` returns an adapter that is not yet connected: ``await store.open()`` (connects
and migrates) or ``async with open_store(url) as store:``.
"""

from __future__ import annotations

from typing import Any

from tiergate.adapters.store.sql import SqlStore
from tiergate.ports import Store

__all__ = ["SqlStore", "open_store"]

_SQLITE_PREFIX = "sqlite:///"


def open_store(url: str, **options: Any) -> SqlStore:
    """The adapter for ``url``; ``options`` go to its constructor (e.g. ``schema=`` on PostgreSQL).

    - a file path, ``sqlite:///relative.db``, ``sqlite:////absolute/path.db`` or ``:memory:`` -> SQLite
    - ``postgresql://...`` (or ``postgres://...``; ``?schema=name`` selects a schema) -> PostgreSQL
    """
    url = url.strip()
    if url in (":memory:", "sqlite://", f"{_SQLITE_PREFIX}:memory:"):
        from tiergate.adapters.store.sqlite import SQLiteStore

        return SQLiteStore(":memory:", **options)
    if url.startswith(("postgresql://", "postgres://")):
        from tiergate.adapters.store.postgres import PostgresStore  # psycopg is an optional dependency

        return PostgresStore(url, **options)
    if url.startswith(_SQLITE_PREFIX):
        path = url[len(_SQLITE_PREFIX):]
    elif url and "://" not in url:
        path = url
    else:
        raise ValueError(
            f"unsupported database URL {url!r}: use a file path, sqlite:///path.db, :memory: "
            "or postgresql://user@host:port/dbname"
        )
    if not path:
        raise ValueError(f"database URL {url!r} names no file")
    from tiergate.adapters.store.sqlite import SQLiteStore

    return SQLiteStore(path, **options)


def _conforms(store: SqlStore) -> Store:
    """Never called: makes mypy check that the shared implementation satisfies the Store port."""
    return store
