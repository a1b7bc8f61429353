"""What the benchmarks that also run on PostgreSQL share: the ``--postgres-url`` option, and a
schema of their own for one run, dropped after it (so runs never see each other's tables)."""

from __future__ import annotations

import argparse
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg

DEFAULT_URL = os.environ.get("TIERGATE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def add_postgres_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--postgres-url", default=DEFAULT_URL,
                        help="PostgreSQL to measure on [TIERGATE_TEST_DATABASE_URL, the local test database]")


@asynccontextmanager
async def temporary_schema(url: str) -> AsyncIterator[tuple[str, psycopg.AsyncConnection[Any]]]:
    """A new schema's name, and an autocommit connection for statements of the benchmark's own."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
        await admin.execute(f"CREATE SCHEMA {schema}")
        try:
            yield schema, admin
        finally:
            await admin.execute(f"DROP SCHEMA {schema} CASCADE")
