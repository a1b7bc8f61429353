"""The typer application every command module registers on, and the error style they share."""

from __future__ import annotations

import sys
from typing import NoReturn

import orjson
import typer
from rich.console import Console

app = typer.Typer(
    name="tiergate",
    help="Governed sending for the WhatsApp Business Platform: exact tier accounting, queueing, planning.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def fail(message: str, hint: str = "", code: int = 2) -> NoReturn:
    """One clear line (and what to do about it) on stderr, no traceback, non-zero exit."""
    err_console.print(f"[bold red]error:[/] {message}" + (f"\n[dim]hint:[/] {hint}" if hint else ""))
    raise typer.Exit(code)


def print_json(data: object) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
