"""``tiergate simulate``: replay days of new recipients through admission and the tier policy."""

from __future__ import annotations

import asyncio
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from tiergate.cli import core_args
from tiergate.cli.app import app, console, err_console, fail, print_json
from tiergate.core.simulation import run_simulation


@app.command("simulate")
def simulate_command(
    daily: str = typer.Option(
        ..., "--daily", metavar="N,N,...",
        help="New distinct recipients enqueued (counted templates) at 00:00 of each day."),
    days: str | None = typer.Option(None, "--days", metavar="N", help="Days to run [default: one per --daily]."),
    policy: str = typer.Option("classic", "--policy", help="Tier policy: classic or portfolio."),
    start_tier: str | None = typer.Option(
        None, "--start-tier", metavar="TIER", help="Tier on day 1 [default: the verified tier]."),
    quality: str = typer.Option("GREEN", "--quality", help="Quality rating: GREEN, YELLOW or RED."),
    reserve: str = typer.Option(
        "0", "--reserve", metavar="F", help="Share of the limit kept for utility/authentication, in [0, 1)."),
    engine: str = typer.Option(
        "real", "--engine", metavar="real|model",
        help="real: the gateway itself (SQLite store, dispatcher, sandbox platform) under a virtual clock; "
             "model: the pure core model alone (instant, same JSON)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Simulate day by day: what is sent, what waits, and how the tier moves (violations must be 0)."""
    rules = core_args.policy(policy)
    tier = core_args.start_tier(start_tier, rules)
    counts = core_args.daily_counts(daily)
    length = core_args.count("--days", days, minimum=1)
    grade = core_args.quality(quality)
    share = core_args.fraction("--reserve", reserve)
    if engine not in ("real", "model"):
        fail(f"--engine must be real or model, not {escape(engine)!r}")
    try:
        if engine == "model":
            result = run_simulation(rules, tier, counts, days=length, quality=grade, reserve=share)
        else:
            result = _run_real(rules.name, tier.name, counts, length or len(counts), grade, share)
    except ValueError as exc:
        fail(escape(str(exc)))
    if as_json:
        print_json(result)
    else:
        _print_table(result)


def _run_real(policy: str, tier: str, daily: list[int], days: int, quality: str, reserve: float) -> dict[str, Any]:
    """The real path, with a progress bar (on stderr, so ``--json`` output stays clean)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tiergate.service.simulate import simulate_real_path

    with Progress(TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TextColumn("days"),
                  TimeElapsedColumn(), console=err_console, transient=True) as bar:
        task = bar.add_task("days", total=days)
        return asyncio.run(simulate_real_path(
            policy=policy, start_tier=tier, daily=daily, days=days, quality=quality, reserve=reserve,
            progress=lambda done, _total: bar.update(task, completed=done)))


def _print_table(result: dict[str, Any]) -> None:
    table = Table(title=f"{result['policy']} policy from {result['start_tier']}")
    columns = ("day", "tier", "limit", "enqueued", "sent", "backlog", "unique_7d", "tier_next")
    for column in columns:
        table.add_column(column, justify="left" if column.startswith("tier") else "right")
    for row in result["days"]:
        table.add_row(*(_cell(row[column]) for column in columns))
    console.print(table)
    verdict = "[green]0[/]" if result["violations"] == 0 else f"[bold red]{result['violations']}[/]"
    console.print(f"final tier: {result['final_tier']}; violations: {verdict}")


def _cell(value: object) -> str:
    if value is None:
        return "unlimited"
    return f"{value:,}" if isinstance(value, int) else str(value)
