"""``tiergate template list|set``: the category tiergate sends each template as.

A template message names its template, not its category; tiergate learns categories from the
template calls its drop-in relays and from the platform's template webhooks, and ``set`` tells it
one it has not seen (``GET``/``PUT /v1/templates``, for the tenant of the API key).
"""

from __future__ import annotations

from datetime import UTC, datetime

import typer
from rich.table import Table

from tiergate.cli.app import app, console, print_json
from tiergate.cli.remote import JSON_OPTION as JSON
from tiergate.cli.remote import KEY_OPTION as KEY
from tiergate.cli.remote import URL_OPTION as URL
from tiergate.cli.remote import Remote, call_server

__all__ = ["template_app"]

template_app = typer.Typer(help="Template categories: what a template message is sent as.", no_args_is_help=True)
app.add_typer(template_app, name="template")


@template_app.command("list")
def list_templates(url: str | None = URL, api_key: str | None = KEY, as_json: bool = JSON) -> None:
    """Every template tiergate knows the category of (others go as MARKETING)."""
    found = call_server(Remote(url, api_key), lambda r: r.get("/v1/templates"))
    if as_json:
        print_json(found)
        return
    if not found:
        console.print("no templates known yet: template messages without a category go as MARKETING")
        return
    table = Table("name", "language", "category", "since")
    for t in found:
        since = datetime.fromtimestamp(t["updated_at"], UTC).strftime("%Y-%m-%d %H:%M UTC")
        table.add_row(t["name"], t["language"], t["category"], since)
    console.print(table)


@template_app.command("set")
def set_template(
    name: str = typer.Argument(..., help="The template's name (lowercase, digits, underscores)."),
    language: str = typer.Argument(..., help="Its language code, e.g. en_US."),
    category: str = typer.Argument(..., help="MARKETING, UTILITY or AUTHENTICATION, as the platform has it."),
    url: str | None = URL, api_key: str | None = KEY, as_json: bool = JSON,
) -> None:
    """Tell tiergate a template's category (for one not created or listed through it)."""
    saved = call_server(Remote(url, api_key), lambda r: r.request(
        "PUT", "/v1/templates", json={"name": name, "language": language, "category": category}))
    if as_json:
        print_json(saved)
    else:
        console.print(f"{saved['name']} ({saved['language']}) goes as [bold]{saved['category']}[/]")
