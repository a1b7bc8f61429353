"""``tiergate workers``: the dispatchers of a scaled-out deployment and the scopes each holds."""

from __future__ import annotations

import time
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from tiergate.cli.admin import DB, read_store_or_server
from tiergate.cli.app import app, console, fail, print_json
from tiergate.cli.campaign import duration
from tiergate.cli.remote import Remote, RemoteError

__all__ = ["render"]

SHOWN = 6  # scope ids listed per worker; the rest are counted


async def _from_store(gw: Any) -> tuple[dict[str, Any], float]:
    from tiergate.service.operator_views import workers_view

    now = gw.dispatcher.wall.now()
    return await workers_view(gw.store, now, gw.dispatcher.config.max_scopes), now


async def _from_server(remote: Remote) -> tuple[dict[str, Any], float]:
    async with remote:
        try:
            return await remote.get("/v1/workers"), time.time()
        except RemoteError as exc:
            fail(escape(exc.message), "it needs an admin key" if exc.status == 403 else "")


@app.command()
def workers(
    json_out: bool = typer.Option(False, "--json", help="Print them as JSON."),
    database_url: str = DB,
    url: str | None = typer.Option(None, "--url", help="Ask a running tiergate instead of the store [TIERGATE_URL]"),
    api_key: str | None = typer.Option(None, "--api-key", help="With --url: an admin key [TIERGATE_API_KEY]"),
) -> None:
    """Dispatchers at a glance: alive or not, the scopes each holds, the share, scopes nobody holds."""
    view, now = read_store_or_server(database_url, url, api_key, _from_store, _from_server)
    if json_out:
        print_json(view)
        return
    console.print(render(view, now))


def render(view: dict[str, Any], now: float) -> Table:
    table = Table(title=f"workers (share: {view['share']:,} scope(s) each)", title_justify="left")
    table.add_column("worker")
    table.add_column("heartbeat")
    table.add_column("scopes", justify="right")
    table.add_column("held")
    for w in view["workers"]:
        alive = (Text(f"for {duration(w['alive_until'] - now)} more", style="green") if w["alive_until"] is not None
                 else Text("stopped renewing", style="bold red"))
        held = w["scopes"]
        table.add_row(escape(w["id"]), alive, f"{len(held):,}", _listed(held) or Text("-", style="dim"))
    free = view["free"]
    if free:
        table.add_row(Text("(nobody)", style="yellow"), Text("-", style="dim"), f"{len(free):,}", _listed(free))
    if not view["workers"] and not free:
        table.caption = "no scopes yet: register a sender"
    elif not view["workers"]:
        table.caption = "no worker is running: start `tiergate serve` or `tiergate worker`"
    return table


def _listed(scope_ids: list[str]) -> str:
    """The first ``SHOWN`` ids, and how many more."""
    more = f" (+{len(scope_ids) - SHOWN:,} more)" if len(scope_ids) > SHOWN else ""
    return escape(", ".join(scope_ids[:SHOWN]) + more)
