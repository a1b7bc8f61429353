"""``tiergate serve`` (API + dispatcher) and ``tiergate worker`` (dispatcher alone, for scale-out)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import typer

from tiergate.cli.app import app, console, fail
from tiergate.service.gctune import tune_gc
from tiergate.settings import Settings

__all__ = ["load_settings", "shown_url"]


def shown_url(url: str) -> str:
    """The database URL for messages and logs: a password in it is replaced by ``***``."""
    parts = urlsplit(url)
    if "://" not in url or not parts.password:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def load_settings(**overrides: Any) -> Settings:
    try:
        return Settings.from_env(**overrides)
    except ValueError as exc:
        fail(str(exc), "check the TIERGATE_* environment variables and flags")


def _install_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


async def _open(settings: Settings):  # type: ignore[no-untyped-def]
    from tiergate.service.gateway import Gateway

    try:
        return await Gateway.open(settings)
    except Exception as exc:  # a bad URL, an unreachable database: one line, not a traceback
        fail(f"cannot open {shown_url(settings.database_url)!r}: {str(exc).replace(settings.database_url, '***')}",
             "check TIERGATE_DATABASE_URL / --database-url")


def _listen(host: str, port: int) -> socket.socket:
    """Bind the API's address before anything else starts: a port in use or a host that does not
    resolve is one line and exit 2, not a traceback after the store was opened (and the admin key
    printed). The bound socket goes to uvicorn, so nothing can take the port in between."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror}", "check --host / TIERGATE_HOST")
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
             "is another tiergate (or something else) running there? pick another --port / TIERGATE_PORT")
    return sock


async def _serve(settings: Settings, dispatch: bool) -> None:
    import uvicorn
    from fastapi import FastAPI

    from tiergate.api.app import create_app

    listening = _listen(settings.host, settings.port)
    gateway = await _open(settings)
    key = await gateway.auth.bootstrap(settings.api_key)
    replayed = await gateway.webhooks.replay_unapplied()
    stop = asyncio.Event()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(gateway.run(stop, dispatch=dispatch))
        try:
            yield
        finally:
            stop.set()
            await task

    api = create_app(gateway, lifespan=lifespan)
    console.print(f"[bold]tiergate[/] on http://{settings.host}:{settings.port}  "
                  f"(store {shown_url(settings.database_url)}, provider {gateway.provider.name}, "
                  f"dispatcher {'on' if dispatch else 'off'})")
    if key:
        console.print(f"[bold yellow]admin API key (shown once, keep it):[/] {key}")
    if replayed:
        console.print(f"re-applied {replayed} stored webhook events")
    config = uvicorn.Config(api, host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
                            access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    try:
        await server.serve(sockets=[listening])
    finally:
        stop.set()
        await gateway.close()
        listening.close()


@app.command()
def serve(
    host: str = typer.Option(None, help="Address to listen on [TIERGATE_HOST, 127.0.0.1]"),
    port: int = typer.Option(None, help="Port [TIERGATE_PORT, 8080]"),
    database_url: str = typer.Option(None, help="SQLite path or postgresql:// URL [TIERGATE_DATABASE_URL]"),
    provider: str = typer.Option(None, help="sandbox or cloud [TIERGATE_PROVIDER]"),
    no_dispatch: bool = typer.Option(False, "--no-dispatch", help="API only: leave sending to workers"),
    message_retention_days: float = typer.Option(
        None, help="Delete ended messages older than this; a finished campaign's figures are kept "
                   "[TIERGATE_MESSAGE_RETENTION_DAYS, 0: keep every message; at least 31]"),
) -> None:
    """Run the HTTP API and the dispatcher (embedded default: ./tiergate.db + the sandbox)."""
    settings = load_settings(host=host, port=port, database_url=database_url, provider=provider,
                             message_retention_days=message_retention_days)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tune_gc()
    asyncio.run(_serve(settings, dispatch=not no_dispatch))


async def _work(settings: Settings) -> None:
    gateway = await _open(settings)
    stop = asyncio.Event()
    _install_signals(stop)
    console.print(f"[bold]tiergate worker[/] {gateway.dispatcher.worker_id} on {shown_url(settings.database_url)}")
    try:
        await gateway.run(stop, dispatch=True, sync=False)
    finally:
        await gateway.close()


@app.command()
def worker(
    database_url: str = typer.Option(None, help="postgresql:// URL (or SQLite path) [TIERGATE_DATABASE_URL]"),
    provider: str = typer.Option(None, help="sandbox or cloud [TIERGATE_PROVIDER]"),
    worker_id: str = typer.Option(None, help="A stable name for this worker [host:pid]"),
) -> None:
    """Run a dispatcher alone: it leases scopes, admits and sends; run several for scale-out."""
    settings = load_settings(database_url=database_url, provider=provider, worker_id=worker_id)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tune_gc()
    asyncio.run(_work(settings))
