"""The ``tiergate`` command line. Each command lives in its own module and registers on ``app``."""

from __future__ import annotations

from tiergate.cli import commands as _commands  # noqa: F401  (registers every command)
from tiergate.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    app()
