"""Background jobs that run every so often until a stop event, surviving their own failures."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["run_every"]


async def run_every(stop: asyncio.Event, every: float, job: Callable[[], Awaitable[Any]], log: logging.Logger,
                    failure: str) -> None:
    """Run ``job`` now and then every ``every`` seconds until ``stop`` is set; a failing run is
    logged (``failure``) and the next one goes as planned. A set ``stop`` ends the wait at once."""
    while not stop.is_set():
        try:
            await job()
        except Exception:
            log.exception(failure)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every)
