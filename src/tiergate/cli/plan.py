"""``tiergate plan``: the fastest day-by-day schedule for a campaign to N new recipients."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from tiergate.cli import core_args
from tiergate.cli.app import app, console, err_console, fail, print_json
from tiergate.cli.chart import ChartError, write_chart
from tiergate.core.planner import Plan, history_from_reach, plan


@app.command("plan")
def plan_command(
    audience: str = typer.Option(..., "--audience", metavar="N", help="New distinct recipients to reach."),
    policy: str = typer.Option("classic", "--policy", help="Tier policy: classic or portfolio."),
    start_tier: str | None = typer.Option(
        None, "--start-tier", metavar="TIER", help="Tier in force at the start [default: the verified tier]."),
    daily_cap: str | None = typer.Option(None, "--daily-cap", metavar="N", help="Send at most N a day."),
    reserve: str = typer.Option(
        "0", "--reserve", metavar="F", help="Share of the limit kept for utility/authentication, in [0, 1)."),
    history_7d: str = typer.Option(
        "0", "--history-7d", metavar="N",
        help="Distinct recipients already reached over the last 7 days (taken as reached yesterday)."),
    history_30d: str | None = typer.Option(
        None, "--history-30d", metavar="N", help="... over the last 30 days (at least --history-7d)."),
    quality: str = typer.Option("GREEN", "--quality", help="Quality rating assumed throughout."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
    chart: Path | None = typer.Option(
        None, "--chart", metavar="FILE", help="Also draw the plan: FILE.svg, or FILE.png (needs matplotlib)."),
) -> None:
    """Plan a campaign: the tier, sends and running total each day, as fast as the ladder allows."""
    rules = core_args.policy(policy)
    tier = core_args.start_tier(start_tier, rules)
    size = core_args.count("--audience", audience)
    cap = core_args.count("--daily-cap", daily_cap, minimum=1)
    share = core_args.fraction("--reserve", reserve)
    recent = core_args.count("--history-7d", history_7d)
    month = core_args.count("--history-30d", history_30d, minimum=recent or 0)
    assert size is not None and recent is not None
    try:
        result = plan(size, rules, tier, history=history_from_reach(recent, month), daily_cap=cap,
                      reserve=share, quality=core_args.quality(quality))
    except ValueError as exc:
        fail(escape(str(exc)))
    if chart is not None:
        try:
            write_chart(result, chart)
        except ChartError as exc:
            fail(escape(str(exc)))
    if as_json:
        print_json(result.to_dict())
    else:
        _print_table(result)
    if chart is not None:
        (err_console if as_json else console).print(f"chart: {escape(str(chart))}")


def _print_table(result: Plan) -> None:
    table = Table(title=f"{result.audience:,} recipients, {result.policy} policy, from {result.start_tier.name}")
    for column in ("day", "tier", "send", "cumulative"):
        table.add_column(column, justify="left" if column == "tier" else "right")
    for day in result.days:
        table.add_row(str(day.day), day.tier.name, f"{day.send:,}", f"{day.cumulative:,}")
    console.print(table)
    console.print(f"done in {result.total_days} day(s); tier afterwards: {result.final_tier.name}")
