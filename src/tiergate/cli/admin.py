"""Operator commands on the store: ``keys``, ``sync`` (``status`` lives in cli/status.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

import typer
from rich.table import Table

from tiergate.cli.app import app, console, fail, print_json
from tiergate.cli.remote import Remote
from tiergate.cli.serve import load_settings, shown_url
from tiergate.ports import NotFound

T = TypeVar("T")

keys_app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


def _run(database_url: str | None, body: Callable[[Any], Awaitable[T]]) -> T:
    from tiergate.service.gateway import Gateway

    settings = load_settings(database_url=database_url)

    async def main() -> T:
        try:
            gateway = await Gateway.open(settings)
        except Exception as exc:
            fail(f"cannot open {shown_url(settings.database_url)!r}: {str(exc).replace(settings.database_url, '***')}",
                 "check TIERGATE_DATABASE_URL / --database-url")
        try:
            return await body(gateway)
        finally:
            await gateway.close()

    return asyncio.run(main())


def read_store_or_server(database_url: str | None, url: str | None, api_key: str | None,
                         from_store: Callable[[Any], Awaitable[T]],
                         from_server: Callable[[Remote], Coroutine[Any, Any, T]]) -> T:
    """What an operator command shows: read from a running server when given its URL or a key,
    else from the store itself."""
    if url or api_key:
        return asyncio.run(from_server(Remote(url, api_key)))
    return _run(database_url, from_store)


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


DB = typer.Option(None, "--database-url", help="SQLite path or postgresql:// URL [TIERGATE_DATABASE_URL]")


@keys_app.command("create")
def keys_create(tenant: str = typer.Option(..., help="Tenant name (created if new)"),
                admin: bool = typer.Option(False, help="An admin key (manages tenants and keys)"),
                label: str = typer.Option("", help="A note to recognise the key by"),
                database_url: str = DB) -> None:
    """Create an API key for a tenant and print it once."""
    async def body(gw: Any) -> str:
        t = await gw.store.find_tenant_by_name(tenant)
        if t is None:
            try:
                t = await gw.auth.create_tenant(tenant)
            except ValueError as exc:
                fail(str(exc))
        _, plaintext = await gw.auth.create_key(t.id, admin=admin, label=label)
        return str(plaintext)

    key = _run(database_url, body)
    console.print(f"[bold]new API key for {tenant}[/] (shown once, store it now):")
    print(key)


@keys_app.command("list")
def keys_list(json_out: bool = typer.Option(False, "--json"), database_url: str = DB) -> None:
    """List API keys (prefixes only: keys are stored hashed)."""
    async def body(gw: Any) -> list[dict[str, Any]]:
        names = {t.id: t.name for t in await gw.store.list_tenants()}
        return [{"id": k.id, "tenant": names.get(k.tenant_id, k.tenant_id), "prefix": k.prefix,
                 "admin": k.is_admin, "label": k.label, "created_at": k.created_at, "revoked_at": k.revoked_at}
                for k in await gw.store.list_api_keys()]

    rows = _run(database_url, body)
    if json_out:
        print_json(rows)
        return
    table = Table("id", "tenant", "prefix", "admin", "label", "created", "revoked")
    for r in rows:
        table.add_row(r["id"], r["tenant"], r["prefix"] + "…", "yes" if r["admin"] else "", r["label"],
                      _when(r["created_at"]), _when(r["revoked_at"]))
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str, database_url: str = DB) -> None:
    """Revoke a key by id: requests with it get 401 from now on."""
    async def body(gw: Any) -> None:
        try:
            await gw.store.revoke_api_key(key_id, gw.clock.now())
        except NotFound:
            fail(f"no key with id {key_id!r}", "see `tiergate keys list`")

    _run(database_url, body)
    console.print(f"revoked {key_id}")


@app.command()
def sync(json_out: bool = typer.Option(False, "--json"), database_url: str = DB) -> None:
    """Read every sender's tier, quality, status and throughput from the Graph API once."""
    async def body(gw: Any) -> Any:
        return await gw.sync.sync_all()

    report = _run(database_url, body)
    data = {"checked": report.checked, "changed": report.changed, "errors": report.errors,
            "throttled": report.throttled}
    if json_out:
        print_json(data)
    else:
        console.print(f"checked {report.checked} senders; {len(report.changed)} changes")
        for line in report.changed:
            console.print(f"  {line}")
        for line in report.errors:
            console.print(f"  [red]{line}[/]")
    if report.errors and not report.checked:
        raise typer.Exit(1)
