"""``tiergate backup``: a consistent copy of the embedded SQLite database, safe while it is in use.

Copying ``tiergate.db`` with ``cp`` while ``tiergate serve`` runs can catch it mid-write, and misses
what still sits in its WAL file. This takes one read snapshot instead, checks the copy, and only then
puts it in place: an interrupted or failed backup leaves nothing half-written at the destination.
PostgreSQL has its own tools (``pg_dump``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import typer

from tiergate.cli.app import app, console, fail, partial_for
from tiergate.cli.serve import load_settings, shown_url


@app.command()
def backup(
    destination: Path = typer.Argument(..., help="The new file to write (e.g. backups/tiergate-2026-11-27.db)"),
    database_url: str = typer.Option(None, help="The SQLite database to copy [TIERGATE_DATABASE_URL, ./tiergate.db]"),
    force: bool = typer.Option(False, "--force", help="Replace the destination if it exists"),
) -> None:
    """Copy the SQLite database consistently, even while tiergate serve is running."""
    from tiergate.adapters.store import open_store
    from tiergate.adapters.store.sqlite import BackupFailed, SQLiteStore, backup_file

    url = load_settings(database_url=database_url).database_url
    if url.startswith(("postgresql://", "postgres://")):
        fail(f"{shown_url(url)} is PostgreSQL: back it up with its own tools",
             "pg_dump --format=custom --file tiergate.dump 'postgresql://...'")
    try:
        store = open_store(url)
    except ValueError as exc:
        fail(str(exc), "give the file with --database-url or TIERGATE_DATABASE_URL")
    if not isinstance(store, SQLiteStore) or not Path(store.path).is_file():
        fail(f"no database file at {url!r}", "give the file with --database-url or TIERGATE_DATABASE_URL")
    source = Path(store.path)
    destination = destination.expanduser()
    if destination.exists() and destination.resolve() == source.resolve():
        fail("the destination is the database itself", "choose another file")
    partial = partial_for(destination, force)
    started = time.monotonic()
    try:
        with console.status(f"copying {source} ..."):
            messages, version = backup_file(str(source), str(partial))
    except BackupFailed as exc:
        fail(f"backup failed: {exc}", "nothing was written at the destination")
    os.replace(partial, destination)  # in place only once checked: never a half-written backup
    size = destination.stat().st_size
    console.print(f"backup written: {destination} ({size / 1e6:,.1f} MB, {messages:,} messages, schema {version}) "
                  f"in {time.monotonic() - started:.1f} s")
    console.print(f"[dim]restore: stop tiergate, then copy it over {source} (and delete {source.name}-wal and "
                  f"{source.name}-shm beside it, if any)[/]")
