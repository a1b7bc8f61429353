"""``tiergate webhook set URL`` / ``status`` / ``off``: forwarding the platform's webhooks to your app.

Through a running server (``PUT``/``GET``/``DELETE /v1/webhook``), for the tenant of the API key.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import typer
from rich.markup import escape

from tiergate.cli.app import app, console, print_json
from tiergate.cli.remote import JSON_OPTION as JSON
from tiergate.cli.remote import KEY_OPTION as KEY
from tiergate.cli.remote import URL_OPTION as URL
from tiergate.cli.remote import Remote, call_server

__all__ = ["webhook_app"]

webhook_app = typer.Typer(help="Forward the platform's webhooks (inbound messages, statuses) to your app.",
                          no_args_is_help=True)
app.add_typer(webhook_app, name="webhook")



def _call(method: str, url: str | None, api_key: str | None, as_json: bool, **kwargs: Any) -> None:
    async def call(remote: Remote) -> Any:
        seen = await remote.request(method, "/v1/webhook", **kwargs)
        return await remote.get("/v1/webhook") if method == "DELETE" else seen

    seen = call_server(Remote(url, api_key), call)
    if as_json:
        print_json(seen)
    else:
        _show(seen)


def _show(seen: dict[str, Any]) -> None:
    if not seen["url"]:
        console.print("webhooks are not forwarded" + (f" ({seen['canceled']:,} dropped when it was turned off)"
                                                      if seen["canceled"] else ""))
        return
    console.print(f"forwarding to [bold]{escape(seen['url'])}[/]: {seen['delivered']:,} delivered, "
                  f"{seen['pending']:,} waiting, {seen['failed']:,} failed")
    if seen.get("secret"):
        console.print(f"[bold yellow]signing secret (shown once, keep it):[/] {seen['secret']}")
    if seen["last_delivered_at"]:
        at = datetime.fromtimestamp(seen["last_delivered_at"], UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        console.print(f"last delivered: {at}")
    if seen["last_error"]:
        console.print(f"[yellow]last error:[/] {escape(seen['last_error'])}")


@webhook_app.command("set")
def set_url(
    target: str = typer.Argument(..., metavar="URL", help="Where your app takes Meta's webhooks (http:// or https://)."),
    secret: str | None = typer.Option(None, "--secret", help="Sign with this (e.g. the app secret your handler "
                                                            "verifies with); without it tiergate makes one."),
    url: str | None = URL, api_key: str | None = KEY, as_json: bool = JSON,
) -> None:
    """Forward inbound messages and statuses of your numbers to URL, signed as Meta signs."""
    _call("PUT", url, api_key, as_json, json={"url": target, **({"secret": secret} if secret else {})})


@webhook_app.command("status")
def status(url: str | None = URL, api_key: str | None = KEY, as_json: bool = JSON) -> None:
    """Where webhooks go, and what was delivered, waits or failed (with the last error)."""
    _call("GET", url, api_key, as_json)


@webhook_app.command("off")
def off(url: str | None = URL, api_key: str | None = KEY, as_json: bool = JSON) -> None:
    """Stop forwarding (what still waits is dropped)."""
    _call("DELETE", url, api_key, as_json)


@webhook_app.command("test")
def test(url: str | None = URL, api_key: str | None = KEY, as_json: bool = JSON) -> None:
    """Post a sample status to your app now, signed, and say whether it took it (exit 1 if not)."""
    answer = call_server(Remote(url, api_key), lambda r: r.request("POST", "/v1/webhook/test"))
    if as_json:
        print_json(answer)
    elif answer["delivered"]:
        console.print(f"your app at [bold]{escape(answer['url'])}[/] took the sample status")
    else:
        console.print(f"[bold red]your app at {escape(answer['url'])} did not take it:[/] {escape(answer['error'])}")
    if not answer["delivered"]:
        raise typer.Exit(1)
