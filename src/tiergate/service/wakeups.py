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

__all__ = ["CHANGED", "DUE", "announce"]

DUE = "due"  # the channel (PostgreSQL prefixes it with the schema)
# A sender or scope changed (registered, tier, quality, pauses, throughput): dispatchers re-read the
# scopes they hold (and lease new ones) at once instead of at their next periodic refresh.
CHANGED = "scopes"

log = logging.getLogger("tiergate.wakeups")


async def announce(store: Store, channel: str = DUE) -> None:
    """Tell every listening dispatcher that queued work may be due now (or, on ``CHANGED``, that
    the senders and scopes it holds changed)."""
    try:
        await store.notify(channel)
    except Exception as exc:  # the polling fallback picks the work up
        log.warning("could not notify dispatchers (%s); they will find the work when they poll", exc)
