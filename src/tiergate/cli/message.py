"""``tiergate message send|import|show|list|cancel``: messages through a running server.

``send`` queues one (``POST /v1/messages``); ``import FILE.jsonl`` queues a file of them, a JSON object
a line shaped like that endpoint's body, in batches (``POST /v1/messages/batch``) with a progress bar,
and reports every refused line by its number; ``show``, ``list`` and ``cancel`` do what they say.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table

from tiergate.cli.app import app, console, fail, print_json
from tiergate.cli.remote import JSON_OPTION as JSON
from tiergate.cli.remote import KEY_OPTION as KEY
from tiergate.cli.remote import URL_OPTION as URL
from tiergate.cli.remote import Remote, RemoteError, call_server

__all__ = ["message_app", "read_jsonl"]

message_app = typer.Typer(help="Messages on a running server: send one, import many, look, cancel.",
                          no_args_is_help=True)
app.add_typer(message_app, name="message")

BATCH = 1000  # the most POST /v1/messages/batch takes


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _show(m: dict[str, Any]) -> None:
    console.print(f"[bold]{m['id']}[/]  {m['state']}" + (f": {escape(m['reason'])}" if m["reason"] else ""))
    console.print(f"to {m['to']} from {m['sender']}, {m['kind']} ({m['category']}), attempts {m['attempts']}")
    if m.get("wamid"):
        console.print(f"platform id: {m['wamid']}")
    if m["state"] == "queued" and m.get("next_attempt_at"):
        console.print(f"next attempt: {_when(m['next_attempt_at'])}")
    if m.get("error_code") is not None:
        console.print(f"[yellow]platform error {m['error_code']}:[/] {escape(m['error_detail'])}")
    history = m.get("history") or []
    if history:
        table = Table("at", "state", "why", box=None, pad_edge=False)
        for step in history:
            table.add_row(_when(step["at"]), step["state"], escape(step.get("reason", "")))
        console.print(table)


@message_app.command("send")
def send(
    to: str = typer.Argument(..., help="The recipient, in E.164 (+5511...)."),
    sender: str = typer.Option(..., "--sender", help="The sending number's phone_number_id."),
    template: str | None = typer.Option(None, "--template", help="A template's name."),
    language: str = typer.Option("en_US", "--language", help="The template's language."),
    params: list[str] = typer.Option([], "--param", help="A body parameter of the template, in order (repeat it)."),
    text: str | None = typer.Option(None, "--text", help="Free-form text (only inside the service window)."),
    category: str | None = typer.Option(None, "--category", help="MARKETING, UTILITY, AUTHENTICATION."),
    idempotency_key: str | None = typer.Option(None, "--idempotency-key", help="Sending it again returns the first."),
    expires_at: str | None = typer.Option(None, "--expires-at", help="Give up after this (ISO 8601 with an offset)."),
    url: str | None = URL, api_key: str | None = KEY, as_json: bool = JSON,
) -> None:
    """Queue one message; tiergate sends it as soon as the sender's limits allow."""
    if (template is None) == (text is None):
        fail("give --template NAME or --text TEXT (one of them)")
    if params and template is None:
        fail("--param goes with --template")
    body: dict[str, Any] = {"sender": sender, "to": to}
    if template is not None:
        body["template"] = {"name": template, "language": language}
        if params:
            body["template"]["components"] = [
                {"type": "body", "parameters": [{"type": "text", "text": p} for p in params]}]
    else:
        body["text"] = text
    optional = {"category": category, "idempotency_key": idempotency_key, "expires_at": expires_at}
    body |= {k: v for k, v in optional.items() if v is not None}
    message = call_server(Remote(url, api_key), lambda r: r.request("POST", "/v1/messages", json=body))
    if as_json:
        print_json(message)
    else:
        _show(message)


def read_jsonl(path: Path) -> tuple[list[tuple[int, dict[str, Any]]], list[dict[str, Any]]]:
    """(line number, object) for each message line, and the lines that are not one (blank lines skipped)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {escape(str(path))}: {escape(exc.strerror or str(exc))}")
    rows: list[tuple[int, dict[str, Any]]] = []
    errors: list[dict[str, Any]] = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            errors.append({"line": number, "error": f"not JSON: {exc}"})
            continue
        if not isinstance(item, dict):
            errors.append({"line": number, "error": "not a JSON object"})
            continue
        rows.append((number, item))
    return rows, errors


@message_app.command("import")
def import_file(
    file: Path = typer.Argument(..., help="One message a line, as JSON shaped like POST /v1/messages' body."),
    url: str | None = URL, api_key: str | None = KEY, as_json: bool = JSON,
) -> None:
    """Queue a file of messages, 1,000 a request; every refused line is reported by its number."""
    rows, errors = read_jsonl(file)
    if not rows:
        fail(f"{escape(str(file))} holds no message" + (f" (line {errors[0]['line']}: {errors[0]['error']})"
                                                         if errors else ""))
    queued = 0

    async def post_all(remote: Remote) -> None:
        nonlocal queued
        columns = (TextColumn("queueing"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn())
        with Progress(*columns, console=console, disable=as_json, transient=True) as progress:
            task = progress.add_task("queue", total=len(rows))
            for start in range(0, len(rows), BATCH):
                chunk = rows[start:start + BATCH]
                try:
                    answer = await remote.request("POST", "/v1/messages/batch",
                                                  json={"messages": [item for _, item in chunk]})
                    refused = answer["row_errors"]
                    queued += answer["accepted"]
                except RemoteError as exc:
                    if exc.status != 422:
                        raise
                    # all refused (details: each row), or the batch's shape (one message: the first error)
                    refused = exc.details if exc.details and "row" in exc.details[0] else [
                        {"row": _row_of(exc.message, len(chunk)), "error": exc.message}]
                errors.extend({"line": chunk[e["row"] - 1][0], "error": e.get("error", e.get("msg", ""))}
                              for e in refused)
                progress.advance(task, len(chunk))

    call_server(Remote(url, api_key, timeout=120.0), post_all)
    errors.sort(key=lambda e: e["line"])
    if as_json:
        print_json({"queued": queued, "refused": errors})
    else:
        console.print(f"[bold]{queued:,}[/] queued, {len(errors):,} refused")
        for e in errors[:20]:
            console.print(f"  line {e['line']}: {escape(e['error'])}")
        if len(errors) > 20:
            console.print(f"  ... and {len(errors) - 20:,} more (--json lists them all)")
    if not queued:
        raise typer.Exit(2)


def _row_of(message: str, size: int) -> int:
    """The row a shape error names (``messages.<index>.<field>: ...``), from 1; the first if none."""
    head = message.split(":", 1)[0].split(".")
    if len(head) > 1 and head[0] == "messages" and head[1].isdigit() and int(head[1]) < size:
        return int(head[1]) + 1
    return 1


@message_app.command("show")
def show(message_id: str = typer.Argument(..., help="The id tiergate gave the message."),
         url: str | None = URL, api_key: str | None = KEY, as_json: bool = JSON) -> None:
    """A message's state, why, and every state it went through."""
    message = call_server(Remote(url, api_key), lambda r: r.get(f"/v1/messages/{message_id}"))
    if as_json:
        print_json(message)
    else:
        _show(message)


@message_app.command("list")
def list_messages(
    state: str | None = typer.Option(None, "--state", help="Only this state (queued, sent, failed, ...)."),
    campaign: str | None = typer.Option(None, "--campaign", help="Only this campaign's."),
    to: str | None = typer.Option(None, "--to", help="Only those to this number (E.164)."),
    limit: int = typer.Option(20, "--limit", min=1, max=1000, help="How many (newest first)."),
    url: str | None = URL, api_key: str | None = KEY, as_json: bool = JSON,
) -> None:
    """The newest messages, with their state and why."""
    found = call_server(Remote(url, api_key), lambda r: r.get("/v1/messages", state=state, campaign_id=campaign, to=to,
                                                       limit=limit))
    if as_json:
        print_json(found)
        return
    if not found:
        console.print("no messages")
        return
    table = Table("id", "to", "state", "why", "updated")
    for column in table.columns[:3]:  # ids are for copying into show/cancel: never cut
        column.no_wrap = True
        column.overflow = "ignore"
    for m in found:
        table.add_row(m["id"], m["to"], m["state"], escape(m["reason"][:60]), _when(m["updated_at"]))
    console.print(table)


@message_app.command("cancel")
def cancel(message_id: str = typer.Argument(..., help="The id tiergate gave the message."),
           url: str | None = URL, api_key: str | None = KEY, as_json: bool = JSON) -> None:
    """Cancel a message that still waits (queued, or held by a paused campaign)."""
    message = call_server(Remote(url, api_key), lambda r: r.request("POST", f"/v1/messages/{message_id}/cancel"))
    if as_json:
        print_json(message)
    else:
        _show(message)
