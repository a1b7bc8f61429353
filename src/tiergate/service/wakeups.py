"""Wake-ups between processes: "due work changed, look again".

Whoever makes messages due (intake, campaign resumes, webhooks that requeue, tier changes) calls
``announce(store)`` once per batch; every dispatcher ``listen``s on ``DUE`` and steps at once
instead of waiting for its polling interval. On PostgreSQL that is one NOTIFY that reaches every
worker on every machine; on SQLite it wakes the dispatcher of this process only (workers of other
processes fall back to polling).

A lost notification costs latency, never a message: the dispatcher still polls (``idle_wait``),
so a failed NOTIFY is logged and otherwise ignored: it must not fail the request that queued work.
"""

from __future__ import annotations

import logging

from tiergate.ports import Store

__all__ = ["DUE", "announce"]

DUE = "due"  # the channel (PostgreSQL prefixes it with the schema)

log = logging.getLogger("tiergate.wakeups")


async def announce(store: Store) -> None:
    """Tell every listening dispatcher that queued work may be due now."""
    try:
        await store.notify(DUE)
    except Exception as exc:  # the polling fallback picks the work up
        log.warning("could not notify dispatchers (%s); they will find the work when they poll", exc)
