"""Stopping the child processes tests and benchmarks start (workers, the fake Graph API)."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterable
from typing import Any

__all__ = ["stop_processes"]


def stop_processes(procs: Iterable[subprocess.Popen[Any]], timeout: float) -> None:
    """SIGTERM every one still running first (they shut down in parallel), then wait for each up to
    ``timeout`` seconds, SIGKILL what is left, and close their stdout pipes."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
