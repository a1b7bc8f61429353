"""A campaign's messages as CSV, made a page at a time: any size, bounded memory, the loop free
between pages.

What a user asks after a campaign: who got it, who did not and why. One row per message, newest
first, with times in ISO 8601 UTC (a spreadsheet reads them; the API's epoch seconds it does not).
"""

from __future__ import annotations

import asyncio
import csv
import functools
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from tiergate.core.model import Message
from tiergate.ports import Store

__all__ = ["EXPORT_COLUMNS", "campaign_messages_csv"]

EXPORT_COLUMNS = ("id", "to", "state", "reason", "error_code", "error_detail", "wamid", "attempts",
                  "created_at", "sent_at", "updated_at")
_FORMULA_START = ("=", "+", "-", "@", "\t")  # what a spreadsheet would run as a formula


def _text(value: str) -> str:
    """Free text (a reason, the platform's error detail) on one line, never read as a formula."""
    if not value:
        return value
    if "\n" in value or "\r" in value:
        value = " ".join(value.splitlines())
    return "'" + value if value.startswith(_FORMULA_START) else value


@functools.lru_cache(maxsize=4096)  # a batch's messages share their times: each is formatted once
def _time(at: float | None) -> str:
    return "" if at is None else datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _row(m: Message) -> tuple[object, ...]:
    return (m.id, m.to, m.state.value, _text(m.reason), "" if m.error_code is None else m.error_code,
            _text(m.error_detail or ""), m.wamid or "", m.attempts, _time(m.created_at), _time(m.sent_at),
            _time(m.updated_at))


async def campaign_messages_csv(store: Store, tenant_id: str, campaign_id: str, state: str | None = None,
                                page: int = 1000) -> AsyncIterator[str]:
    """The header, then a chunk of rows per page of ``Store.list_messages`` (newest first). Each row is
    one line: free text has its line breaks folded, so a line count is a row count."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    before: str | None = None
    while True:
        messages = await store.list_messages(tenant_id, campaign_id=campaign_id, state=state, limit=page,
                                             before=before)
        writer.writerows(_row(m) for m in messages)
        yield out.getvalue()
        out.seek(0)
        out.truncate()
        if len(messages) < page:
            return
        before = messages[-1].id
        await asyncio.sleep(0)  # the next page's read may not wait on anything: let the loop run first
