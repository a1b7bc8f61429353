"""Shared fixtures: stores on both adapters, and a throwaway PostgreSQL schema.

``store`` (and ``make_store`` for more connections to the same database) run every test that uses
them once on SQLite (a file in tmp_path) and once on PostgreSQL (a fresh schema in the database at
$TIERGATE_TEST_DATABASE_URL). An unreachable PostgreSQL fails those tests; it never skips them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import pytest

from tiergate.adapters.store import SqlStore, open_store

PG_URL_ENV = "TIERGATE_TEST_DATABASE_URL"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"

StoreFactory = Callable[..., Awaitable[SqlStore]]


def pg_base_url() -> str:
    return os.environ.get(PG_URL_ENV, DEFAULT_PG_URL)


def with_search_path(url: str, schema: str) -> str:
    """``url`` whose connections use ``schema`` (libpq ``options=-csearch_path=...``)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
    query.append(("options", f"-csearch_path={schema}"))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _admin(sql: str) -> None:
    url = pg_base_url()
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is unreachable at {url} (set {PG_URL_ENV}; .ci/run starts it): {exc}",
                    pytrace=False)


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh, empty schema in the test database, dropped (with everything in it) afterwards."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    _admin(f"CREATE SCHEMA {schema}")
    yield schema
    _admin(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
def pg_url(pg_schema: str) -> str:
    """A database URL whose connections work in a fresh schema (see ``pg_schema``)."""
    return with_search_path(pg_base_url(), pg_schema)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """A URL for an empty database of each adapter."""
    if request.param == "sqlite":
        return str(tmp_path / "tiergate.db")
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
async def make_store(store_url: str) -> AsyncIterator[StoreFactory]:
    """Open more stores on the same database (another process's view of it); all closed at the end."""
    opened: list[SqlStore] = []

    async def make(**options: Any) -> SqlStore:
        store = open_store(store_url, **options)
        await store.open()
        opened.append(store)
        return store

    yield make
    for store in reversed(opened):
        await store.close()


@pytest.fixture
async def store(make_store: StoreFactory) -> SqlStore:
    """An open, migrated, empty store: parametrized over SQLite and PostgreSQL."""
    return await make_store()
