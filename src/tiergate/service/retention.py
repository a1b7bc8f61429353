"""Message retention: ended messages are deleted once older than ``TIERGATE_MESSAGE_RETENTION_DAYS``.

Without it the database grows by every message ever sent (a million a day is ~0.8 GB a day on
SQLite). A message goes with its history once it ended (delivered, read, failed, expired, rejected,
canceled, unknown, or sent and never heard of again) before the cutoff; nothing waiting or in flight
ever goes, nor a failure tiergate has not told the app about yet. A campaign goes as a whole, once
every one of its messages ended before the cutoff: its totals by state and its sends day by day are
archived first, so the campaign reads the same afterwards. 0 (the default) keeps everything.
"""

from __future__ import annotations

import asyncio
import logging

from tiergate.clock import Clock
from tiergate.core.model import CampaignArchive
from tiergate.ports import Store
from tiergate.service.metrics import METRICS
from tiergate.service.operator_views import campaign_day_edges
from tiergate.service.periodic import run_every
from tiergate.settings import MIN_MESSAGE_RETENTION_DAYS

__all__ = ["Retention"]

log = logging.getLogger(__name__)
DAY = 86_400.0


class Retention:
    """One pass (``prune``) archives the finished campaigns and deletes what has ended; ``loop`` runs it hourly."""

    def __init__(self, store: Store, clock: Clock, days: float) -> None:
        if 0 < days < MIN_MESSAGE_RETENTION_DAYS:
            raise ValueError(f"message retention: at least {MIN_MESSAGE_RETENTION_DAYS} days (or 0 to keep every "
                             "message)")
        self.store, self.clock, self.days = store, clock, days

    async def prune(self) -> tuple[int, int]:
        """(campaigns archived, messages deleted) by this pass."""
        if not self.days:
            return 0, 0
        now = self.clock.now()
        before = now - self.days * DAY
        archived = 0
        while campaigns := await self.store.finished_campaigns(before, limit=100):
            for campaign in campaigns:
                sender = await self.store.get_sender(campaign.sender_id)
                scope = await self.store.get_scope(sender.scope_id)
                edges, _ = campaign_day_edges(campaign, scope, now)
                sent = await self.store.campaign_sends_between(campaign.id, edges)
                while sent and not sent[-1]:
                    sent.pop()
                counts = await self.store.count_by_state(campaign_id=campaign.id)
                if await self.store.archive_campaign(CampaignArchive(campaign.id, now, counts, sent)):
                    archived += 1
                    METRICS.archived.inc()
        deleted = await self.store.prune_messages(before)
        METRICS.pruned.inc(deleted)
        if archived or deleted:
            log.info("message retention (%g days): %d campaign(s) archived, %d message(s) deleted",
                     self.days, archived, deleted)
        return archived, deleted

    async def loop(self, stop: asyncio.Event, every: float = 3600.0) -> None:
        await run_every(stop, every, self.prune, log, "message retention: pruning failed")
