"""``tiergate campaign send FILE.csv`` and ``tiergate campaign status ID``: campaigns through a running server.

``send`` uploads the CSV to ``POST /v1/campaigns/csv`` and follows the campaign with a live progress
bar until every message is done, or until what is left waits for capacity (or a pause, or a start
time): then it says when the next send will happen and exits 0. The server keeps sending either way.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from tiergate.cli.app import app, console, fail, partial_for, print_json
from tiergate.cli.remote import KEY_OPTION as KEY
from tiergate.cli.remote import URL_OPTION as URL
from tiergate.cli.remote import Remote, RemoteError

__all__ = ["campaign_app", "describe_wait", "duration"]

campaign_app = typer.Typer(help="Campaigns on a running server: send a CSV, follow progress.", no_args_is_help=True)
app.add_typer(campaign_app, name="campaign")

SUCCESS = ("sent", "delivered", "read")
FINAL_OTHER = ("failed", "expired", "rejected", "canceled", "unknown")


def duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def summary(c: dict[str, Any]) -> str:
    counts = c["counts"]
    parts = [f"{sum(counts.get(s, 0) for s in SUCCESS):,} sent"]
    parts += [f"{counts[s]:,} {s}" for s in ("sending", "queued", "held", *FINAL_OTHER) if counts.get(s)]
    return ", ".join(parts)


def describe_wait(waiting: list[dict[str, Any]], now: float) -> tuple[float, str] | None:
    """(when the next of these queued messages is due, the commonest reason) if none is due now."""
    times = [m["next_attempt_at"] for m in waiting if m.get("next_attempt_at") is not None]
    if not times or min(times) <= now:
        return None
    reason, _ = Counter(m["reason"] or "waiting" for m in waiting).most_common(1)[0]
    return min(times), reason


def _read_csv(path: Path) -> None:
    if not path.exists():
        fail(f"no such file: {escape(str(path))}", "give the path of a CSV with a 'to' column")
    if not path.is_file():
        fail(f"{escape(str(path))} is not a file", "give the path of a CSV with a 'to' column")
    try:
        with path.open("rb") as f:
            f.read(1)
    except OSError as exc:
        fail(f"cannot read {escape(str(path))}: {escape(exc.strerror or str(exc))}")


@campaign_app.command("send")
def send(
    file: Path = typer.Argument(..., metavar="FILE.csv", help="Recipients: a 'to' column, optional param1..paramN."),
    sender: str = typer.Option(..., "--sender", help="The sender's phone number id."),
    template: str = typer.Option(..., "--template", help="The approved template's name."),
    language: str = typer.Option("en_US", "--language", help="The template's language code."),
    category: str = typer.Option("MARKETING", "--category", help="MARKETING, UTILITY or AUTHENTICATION."),
    name: str = typer.Option("", "--name", help="A name to recognise the campaign by (default: the file name)."),
    pacing: str = typer.Option("fastest", "--pacing",
                               help="fastest (as soon as capacity allows) or spread (an even share a day)."),
    spread_days: int | None = typer.Option(None, "--spread-days", min=1, max=365,
                                           help="With --pacing spread: over how many days."),
    start_at: str | None = typer.Option(None, "--start-at",
                                        help="Not before this time: ISO 8601 with an offset, or epoch seconds."),
    deadline: str | None = typer.Option(None, "--deadline",
                                        help="What has not gone by then expires (ISO 8601 or epoch seconds)."),
    quiet_hours: str | None = typer.Option(None, "--quiet-hours",
                                           help="e.g. 21-8: none from 21:00 to 08:00 in each recipient's local time."),
    url: str | None = URL,
    api_key: str | None = KEY,
    interval: float = typer.Option(1.0, "--interval", min=0.05, help="Seconds between progress checks."),
    detach: bool = typer.Option(False, "--detach", help="Create the campaign and exit; do not follow it."),
    as_json: bool = typer.Option(False, "--json", help="Print the created campaign as JSON (implies --detach)."),
) -> None:
    """Send a template to every recipient of a CSV, then follow it until done or waiting for capacity."""
    _read_csv(file)
    category = category.upper()
    if category not in ("MARKETING", "UTILITY", "AUTHENTICATION"):
        fail(f"--category must be MARKETING, UTILITY or AUTHENTICATION, not {escape(category)!r}")
    if pacing not in ("fastest", "spread"):
        fail(f"--pacing must be fastest or spread, not {escape(pacing)!r}")
    if (pacing == "spread") != (spread_days is not None):
        fail("--pacing spread and --spread-days go together", "e.g. --pacing spread --spread-days 7")
    fields = {"sender": sender, "template": template, "language": language, "category": category,
              "name": name or file.stem, "pacing": pacing}
    optional = {"spread_days": spread_days, "start_at": start_at, "deadline": deadline, "quiet_hours": quiet_hours}
    fields.update({k: str(v) for k, v in optional.items() if v is not None})
    remote = Remote(url, api_key)

    async def main() -> None:
        async with remote:
            try:
                c = await remote.upload_csv("/v1/campaigns/csv", file, fields)
            except RemoteError as exc:
                hint = "see `tiergate status` for your senders" if exc.status == 404 else ""
                fail(f"the campaign was not created: {escape(exc.message)}", hint)
            if as_json:
                print_json(c)
                return
            console.print(f"campaign [bold]{escape(c['id'])}[/] created: {c['total']:,} recipients"
                          + (f", planned over {len(c['plan'])} day(s)" if c["plan"] else ""))
            errors = c.get("row_errors") or []
            for e in errors[:5]:
                console.print(f"  [yellow]skipped row {e['row']}:[/] {escape(e['error'])}")
            if len(errors) > 5:
                console.print(f"  [yellow]... and {len(errors) - 5:,} more rows skipped[/]")
            if detach:
                console.print(f"follow it with `tiergate campaign status {c['id']} --follow`")
                return
            await follow(remote, c["id"], interval)

    asyncio.run(main())


@campaign_app.command("status")
def status(
    campaign_id: str = typer.Argument(..., metavar="ID", help="The campaign id (cmp_...)."),
    follow_it: bool = typer.Option(False, "--follow", help="Show a live progress bar until done or waiting."),
    url: str | None = URL,
    api_key: str | None = KEY,
    interval: float = typer.Option(1.0, "--interval", min=0.05, help="Seconds between progress checks."),
    as_json: bool = typer.Option(False, "--json", help="Print the campaign as JSON."),
) -> None:
    """One campaign's progress by state and its plan; --follow to watch it."""
    remote = Remote(url, api_key)

    async def main() -> None:
        async with remote:
            c = await _campaign(remote, campaign_id)
            if as_json:
                print_json(c)
            elif follow_it:
                await follow(remote, campaign_id, interval)
            else:
                console.print(f"[bold]{escape(c['name'] or c['id'])}[/] ({c['state']}): {c['done']:,} of "
                              f"{c['total']:,} done; {summary(c)}")
                if c["eta"] and c["done"] < c["total"]:
                    console.print(f"planned finish: {when(c['eta'])}")

    asyncio.run(main())


async def follow(remote: Remote, campaign_id: str, interval: float) -> None:
    """A progress bar over done/total until everything is done, or the rest is waiting (then say until when)."""
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[detail]}"), TimeElapsedColumn())
    previous_done = -1
    last_check = 0.0
    with Progress(*columns, console=console, transient=False) as progress:
        c = await remote.get(f"/v1/campaigns/{campaign_id}")
        task = progress.add_task(c["name"] or c["id"], total=c["total"], completed=c["done"], detail=summary(c))
        while True:
            progress.update(task, completed=c["done"], detail=summary(c))
            counts = c["counts"]
            if c["done"] >= c["total"]:
                break
            if c["state"] in ("paused", "canceled"):
                progress.stop()
                console.print(f"the campaign is {c['state']}: {c['total'] - c['done']:,} messages not sent"
                              + (f"; resume it with `tiergate campaign resume {campaign_id}`"
                                 if c["state"] == "paused" else ""))
                return
            stalled = c["done"] == previous_done and not counts.get("sending")
            if stalled and time.monotonic() - last_check >= interval:
                last_check = time.monotonic()
                if counts.get("held") and not counts.get("queued"):
                    progress.stop()
                    console.print(f"{counts['held']:,} messages are held (the campaign is paused)")
                    return
                waiting = await remote.get("/v1/messages", campaign_id=campaign_id, state="queued", limit=1000)
                now = await remote.server_time()
                wait = describe_wait(waiting, now)
                if wait is not None:
                    progress.stop()
                    at, reason = wait
                    left = c["total"] - c["done"]
                    console.print(f"{left:,} messages wait: {escape(reason)}")
                    console.print(f"the next send: [bold]{when(at)}[/] (in {duration(at - now)}); "
                                  f"the server sends them then. Follow with `tiergate campaign status {campaign_id}"
                                  f" --follow` or on the dashboard: {remote.url}/#/campaign/{campaign_id}")
                    return
            previous_done = c["done"]
            await asyncio.sleep(interval)
            c = await remote.get(f"/v1/campaigns/{campaign_id}")
    failed = sum(c["counts"].get(s, 0) for s in FINAL_OTHER)
    console.print(f"done: {summary(c)}" + (f" ([yellow]{failed:,} not delivered[/])" if failed else ""))


async def _campaign(remote: Remote, campaign_id: str, action: str | None = None) -> Any:
    """The campaign (after ``action``: pause, resume, cancel), or one clear error and exit 2."""
    try:
        if action is None:
            return await remote.get(f"/v1/campaigns/{campaign_id}")
        return await remote.request("POST", f"/v1/campaigns/{campaign_id}/{action}")
    except RemoteError as exc:
        fail(escape(exc.message), "campaign ids start with cmp_; `tiergate campaign list` shows them"
             if exc.status == 404 else "")


def _act(action: str, campaign_id: str, url: str | None, api_key: str | None, as_json: bool) -> None:
    remote = Remote(url, api_key)

    async def main() -> None:
        async with remote:
            c = await _campaign(remote, campaign_id, action)
            if as_json:
                print_json(c)
                return
            console.print(f"[bold]{escape(c['name'] or c['id'])}[/] is {c['state']}: {c['done']:,} of "
                          f"{c['total']:,} done; {summary(c)}")

    asyncio.run(main())


def _action_command(action: str, doc: str) -> None:
    """``tiergate campaign pause|resume|cancel ID``: one command per action, the same shape."""

    def command(campaign_id: str = typer.Argument(..., metavar="ID", help="The campaign id (cmp_...)."),
                url: str | None = URL, api_key: str | None = KEY,
                as_json: bool = typer.Option(False, "--json", help="Print the campaign as JSON.")) -> None:
        _act(action, campaign_id, url, api_key, as_json)

    command.__doc__ = doc
    campaign_app.command(action)(command)


_action_command("pause", "Hold what has not been sent yet (resume sends it; nothing is lost).")
_action_command("resume", "Send what a pause held, in its place in the queue.")
_action_command("cancel", "Cancel what has not been sent yet (final: a canceled campaign cannot be resumed).")


@campaign_app.command("list")
def list_campaigns(url: str | None = URL, api_key: str | None = KEY,
                   sender: str | None = typer.Option(None, "--sender", help="Only this sender's (phone_number_id)."),
                   state: str | None = typer.Option(None, "--state", help="Only those running, paused or canceled."),
                   limit: int = typer.Option(20, "--limit", min=1, max=1000, help="How many, newest first."),
                   as_json: bool = typer.Option(False, "--json", help="Print the campaigns as JSON.")) -> None:
    """Your tenant's campaigns, newest first: state and progress."""
    remote = Remote(url, api_key)

    async def main() -> None:
        async with remote:
            try:
                campaigns = await remote.get("/v1/campaigns", sender=sender, state=state, limit=limit)
            except RemoteError as exc:
                fail(escape(exc.message))
            if as_json:
                print_json(campaigns)
                return
            if not campaigns:
                console.print("no campaigns yet: `tiergate campaign send FILE.csv` makes one" if not (sender or state)
                              else "no campaigns match")
            for c in campaigns:
                console.print(f"{escape(c['id'])}  [bold]{escape(c['name'])}[/]  {c['state']}  "
                              f"{c['done']:,}/{c['total']:,} done; {summary(c)}")
            if len(campaigns) == limit:
                console.print(f"[dim](the newest {limit}; --limit for more)[/]")

    asyncio.run(main())


@campaign_app.command("export")
def export(campaign_id: str = typer.Argument(..., metavar="ID", help="The campaign id (cmp_...)."),
           output: Path | None = typer.Option(None, "--output", "-o", help="The CSV file [ID-messages.csv]."),
           state: str | None = typer.Option(None, "--state", help="Only the messages in this state (e.g. failed)."),
           force: bool = typer.Option(False, "--force", help="Replace the file if it exists."),
           url: str | None = URL, api_key: str | None = KEY) -> None:
    """Write a campaign's messages to a CSV file: recipient, state, reason, error code, wamid, times."""
    target = output or Path(f"{campaign_id}-messages.csv")
    partial = partial_for(target, force)
    remote = Remote(url, api_key)

    async def main() -> int:
        async with remote:
            c = await _campaign(remote, campaign_id)
            expected = c["total"] if state is None else c["counts"].get(state, 0)
            lines = 0
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          console=console, transient=True) as progress, partial.open("wb") as into:
                task = progress.add_task(escape(c["name"] or c["id"]), total=expected)

                def seen(chunk: bytes) -> None:
                    nonlocal lines
                    lines += chunk.count(b"\n")
                    progress.update(task, completed=max(0, lines - 1))  # the header is a line too

                try:
                    await remote.download(f"/v1/campaigns/{campaign_id}/messages.csv", into, seen, state=state)
                except RemoteError as exc:
                    fail(escape(exc.message))
            return max(0, lines - 1)

    try:
        rows = asyncio.run(main())
    except OSError as exc:
        partial.unlink(missing_ok=True)
        fail(f"cannot write {escape(str(target))}: {escape(str(exc))}")
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(target)
    console.print(f"wrote {rows:,} messages to {escape(str(target))}")
