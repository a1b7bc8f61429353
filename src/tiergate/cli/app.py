"""The typer application every command module registers on, and the error style they share."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import orjson
import typer
from rich.console import Console
from rich.markup import escape

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


def partial_for(path: Path, force: bool) -> Path:
    """Where to write the new file ``path`` first: a hidden ``.partial`` beside it, moved into place
    once complete, so a failed write never leaves half a file. Refuses (one clear error) a folder,
    an existing file unless ``force``, and a folder that does not exist."""
    shown = escape(str(path))
    if path.is_dir():
        fail(f"{shown} is a folder", "give a file name")
    if path.exists() and not force:
        fail(f"{shown} exists", "choose a new name, or add --force to replace it")
    if not path.parent.is_dir():
        fail(f"no folder {escape(str(path.parent))}", "create it first")
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    return partial
