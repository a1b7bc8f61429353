"""``tiergate status``: every sender at a glance, from the store (all tenants) or a running server (one tenant)."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from tiergate.cli.admin import DB, _when, read_store_or_server
from tiergate.cli.app import app, console, fail, print_json
from tiergate.cli.campaign import duration
from tiergate.cli.remote import Remote, RemoteError
from tiergate.core.policy import get_policy
from tiergate.core.tiers import parse_tier

__all__ = ["render"]

QUALITY_STYLE = {"GREEN": "green", "YELLOW": "yellow", "RED": "bold red"}


async def _from_store(gw: Any) -> tuple[list[dict[str, Any]], float]:
    from tiergate.service.views import sender_view

    now = gw.clock.now()
    rows = []
    for s in await gw.store.list_senders():
        view = await sender_view(gw.store, s, now)
        rows.append(view)
    return rows, now


async def _from_server(remote: Remote) -> tuple[list[dict[str, Any]], float]:
    async with remote:
        try:
            listed = await remote.get("/v1/senders")
            rows = [await remote.get(f"/v1/senders/{s['id']}") for s in listed]
        except RemoteError as exc:
            fail(escape(exc.message))
        return rows, await remote.server_time()


@app.command()
def status(
    json_out: bool = typer.Option(False, "--json", help="Print the senders as JSON."),
    database_url: str = DB,
    url: str | None = typer.Option(None, "--url", help="Ask a running tiergate instead of the store [TIERGATE_URL]"),
    api_key: str | None = typer.Option(None, "--api-key", help="With --url: the tenant's key [TIERGATE_API_KEY]"),
) -> None:
    """Senders at a glance: tier, used/limit, next release, quality, paused reasons, next tier."""
    rows, now = read_store_or_server(database_url, url, api_key, _from_store, _from_server)
    if json_out:
        print_json(rows)
        return
    if not rows:
        console.print("no senders yet: register one with POST /v1/senders")
        return
    console.print(render(rows, now))


def _usage(used: int, limit: int | None) -> Text:
    if limit is None:
        return Text(f"{used:,} / unlimited")
    share = used / limit if limit else 1.0
    style = "bold red" if share >= 0.95 else "yellow" if share >= 0.7 else "green"
    filled = round(min(1.0, share) * 10)
    text = Text(f"{used:,} / {limit:,} ")
    text.append("█" * filled, style=style).append("░" * (10 - filled), style="dim")
    text.append(f" {share:.0%}", style=style)
    return text


def _tier(r: dict[str, Any]) -> Text:
    text = Text(r["tier"], style="bold")
    try:
        ladder = get_policy(r["policy"]).ladder
        rung = ladder.index(parse_tier(r["tier"]))
        text.append(f" {rung + 1}/{len(ladder)}", style="dim")
    except ValueError:
        text.append(" (off the ladder)", style="dim")
    return text


def _release(at: float | None, now: float) -> Text:
    if at is None:
        return Text("-", style="dim")
    return Text(f"in {duration(at - now)}\n").append(_when(at), style="dim")


def _next_tier(f: dict[str, Any] | None, now: float) -> Text:
    if not f or not f.get("next_tier"):
        return Text((f or {}).get("status") or "-", style="dim")
    text = Text(f["next_tier"])
    if f.get("predicted_at"):
        text.append(f" in {duration(f['predicted_at'] - now)}")
    if f.get("more_recipients_needed"):
        text.append(f"\n{f['more_recipients_needed']:,} more recipients", style="dim")
    elif f.get("status") not in (None, "earned", "reachable"):
        text.append(f"\n{f['status']}", style="dim")
    return text


def _paused(r: dict[str, Any], now: float) -> Text:
    text = Text()
    for field, what in (("paused_reasons", "all"), ("marketing_paused_reasons", "marketing")):
        for reason, until in r[field].items():
            if text:
                text.append("\n")
            text.append(f"{what}: ", style="bold red").append(reason)
            if until:
                text.append(f" (until {_when(until)}, in {duration(until - now)})", style="dim")
    return text or Text("-", style="dim")


def render(rows: list[dict[str, Any]], now: float) -> Table:
    """The status table: one row per sender, portfolio senders sharing one window next to each other."""
    table = Table(title=f"senders at {_when(now)} UTC", title_justify="left", show_lines=True)
    table.add_column("sender")
    table.add_column("scope")
    table.add_column("tier")
    table.add_column("used / limit (24 h)")
    table.add_column("next release")
    table.add_column("quality")
    table.add_column("status")
    table.add_column("next tier")
    table.add_column("paused")
    for r in sorted(rows, key=lambda r: (r["scope_id"], r["id"])):
        scope = r["scope_id"].replace("sender:", "own window").replace("portfolio:", "portfolio ")
        if scope.startswith("own window"):
            scope = "own window"
        table.add_row(
            Text(f"+{r['display_phone_number'].lstrip('+')}\n").append(r["id"], style="dim"),
            Text(scope).append(f"\n{r['policy']}", style="dim"),
            _tier(r),
            _usage(r["used_24h"], r["limit"]),
            _release(r["next_release_at"], now),
            Text(r["quality"], style=QUALITY_STYLE.get(r["quality"], "")),
            Text(r["status"], style="" if r["status"] == "CONNECTED" else "yellow"),
            _next_tier(r.get("forecast"), now),
            _paused(r, now),
        )
    return table
