"""Graph API sync: read each sender's tier, quality, status and throughput from the platform.

Applied through the same state service as webhooks, so a missed webhook is repaired on the next
sync. Management calls have their own budget (error 4 / 80007): on those the round stops and the
next one waits twice as long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from tiergate.clock import Clock
from tiergate.ports import Provider, ProviderError, Store
from tiergate.service.state import SenderState

log = logging.getLogger("tiergate.sync")

__all__ = ["SYNC_FIELDS", "GraphSync", "SyncReport"]

SYNC_FIELDS = (
    "id", "display_phone_number", "quality_rating", "status", "throughput",
    "whatsapp_business_manager_messaging_limit", "messaging_limit_tier",
)
_BUDGET_CODES = {4, 80007, 17, 613}


@dataclass(slots=True)
class SyncReport:
    checked: int = 0
    changed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    throttled: bool = False


class GraphSync:
    def __init__(self, store: Store, provider: Provider, clock: Clock, state: SenderState) -> None:
        self.store = store
        self.provider = provider
        self.clock = clock
        self.state = state

    async def sync_all(self, tenant_id: str | None = None, pause_between: float = 0.0) -> SyncReport:
        report = SyncReport()
        for sender in await self.store.list_senders(tenant_id):
            try:
                data = await self.provider.get_phone_number(sender.id, SYNC_FIELDS)
            except ProviderError as exc:
                report.errors.append(f"{sender.id}: {exc}")
                if exc.code in _BUDGET_CODES:
                    report.throttled = True
                    log.warning("management API budget reached (%s); stopping this sync round", exc.code)
                    break
                continue
            report.checked += 1
            report.changed += [f"{sender.id}: {c}" for c in await self.apply(sender.id, data)]
            if pause_between:
                await asyncio.sleep(pause_between)
        return report

    async def apply(self, sender_id: str, data: dict[str, Any]) -> list[str]:
        """Apply one phone number's Graph fields; returns what changed."""
        changed: list[str] = []
        sender = await self.store.get_sender(sender_id)
        scope = await self.store.get_scope(sender.scope_id)
        tier = data.get("whatsapp_business_manager_messaging_limit")
        if tier is None and scope.id.startswith("sender:"):
            tier = data.get("messaging_limit_tier")
        if isinstance(tier, dict):  # some API versions wrap it: {"current_limit": "TIER_2K"}
            tier = tier.get("current_limit") or tier.get("tier")
        if tier is not None:
            updated = await self.state.set_tier(scope.id, tier, "graph sync")
            if updated is not None and updated.tier != scope.tier:
                changed.append(f"tier {scope.tier} -> {updated.tier}")
        quality = data.get("quality_rating")
        if isinstance(quality, str) and quality.upper() != sender.quality:
            await self.state.set_quality(sender_id, quality, "graph sync")
            changed.append(f"quality {sender.quality} -> {quality.upper()}")
        status = data.get("status")
        if isinstance(status, str) and status.upper() != sender.status:
            await self.state.set_status(sender_id, status, "graph sync")
            changed.append(f"status {sender.status} -> {status.upper()}")
        throughput = data.get("throughput")
        level = throughput.get("level") if isinstance(throughput, dict) else None
        if isinstance(level, str):
            mps = 1000 if level.upper() == "HIGH" else None
            if mps is not None and sender.throughput_mps != mps:
                await self.store.update_sender(sender_id, {"throughput_mps": mps})
                changed.append(f"throughput {sender.throughput_mps} -> {mps} mps")
        return changed

    async def run_forever(self, stop: asyncio.Event, interval: float) -> None:
        wait = interval
        while not stop.is_set():
            try:
                report = await self.sync_all(pause_between=1.0)
                wait = interval * 2 if report.throttled else interval
            except Exception:
                log.exception("graph sync failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)
