"""Several processes starting at once on an empty database: each one opens, exactly one migrates.

This is what a deployment does (N workers and API nodes restarted together), so it runs in real
separate processes released together by a barrier, on both engines; on PostgreSQL also with a
schema that does not exist yet (``?schema=``), which the first process creates.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import psycopg
import pytest
from tests.conftest import pg_base_url

from tiergate.adapters.store import open_store
from tiergate.adapters.store.sql import migrations

PROCESSES = 6


def _open_and_report(url: str, barrier: Any) -> tuple[list[int], list[int]]:
    """In a child process: wait for the others, open (migrate) the store, report the versions seen."""

    async def run() -> tuple[list[int], list[int]]:
        store = open_store(url)
        barrier.wait(30)
        await store.open()
        try:
            async with store.reader() as tx:
                rows = await tx.fetchall("SELECT version FROM schema_migrations ORDER BY version")
            return await store.schema_versions(), [row[0] for row in rows]
        finally:
            await store.close()

    return asyncio.run(run())


async def _start_together(url: str) -> list[tuple[list[int], list[int]]]:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(PROCESSES)
        with ctx.Pool(PROCESSES) as pool:
            pending = [pool.apply_async(_open_and_report, (url, barrier)) for _ in range(PROCESSES)]
            return await asyncio.to_thread(lambda: [p.get(120) for p in pending])


def _assert_migrated_once(results: list[tuple[list[int], list[int]]], dialect: str) -> None:
    expected = [version for version, _, _ in migrations(dialect)]
    assert len(results) == PROCESSES
    for versions, rows in results:
        assert versions == expected
        assert rows == expected  # one row per version: nobody applied a migration twice


@pytest.fixture
def fresh_schema() -> Iterator[str]:
    """A schema name that does not exist yet (dropped afterwards if a test created it)."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    yield name
    with psycopg.connect(pg_base_url(), autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.mark.postgres
async def test_processes_starting_together_on_postgres_migrate_once(pg_url: str) -> None:
    _assert_migrated_once(await _start_together(pg_url), "postgres")


@pytest.mark.postgres
async def test_processes_starting_together_create_a_missing_schema_once(fresh_schema: str) -> None:
    base = pg_base_url()
    url = f"{base}{'&' if '?' in base else '?'}{urlencode({'schema': fresh_schema})}"
    _assert_migrated_once(await _start_together(url), "postgres")


async def test_processes_starting_together_on_sqlite_migrate_once(tmp_path: Any) -> None:
    _assert_migrated_once(await _start_together(str(tmp_path / "fresh" / "tiergate.db")), "sqlite")
