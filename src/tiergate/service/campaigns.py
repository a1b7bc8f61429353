"""Campaigns: one template to an audience, planned over days, paused, resumed or canceled."""

from __future__ import annotations

from typing import Any

from tiergate.clock import Clock
from tiergate.core.model import Campaign, Tenant
from tiergate.core.window import DAY
from tiergate.ports import Store
from tiergate.service.forecast import plan_for_scope
from tiergate.service.intake import CampaignRequest, Intake, IntakeError, RowError
from tiergate.service.views import campaign_counts
from tiergate.service.wakeups import announce

__all__ = ["Campaigns"]


class Campaigns:
    def __init__(self, store: Store, clock: Clock, intake: Intake) -> None:
        self.store = store
        self.clock = clock
        self.intake = intake

    async def create(self, tenant: Tenant, req: CampaignRequest) -> tuple[Campaign, list[RowError]]:
        sender = await self.intake.sender_of(tenant, req.sender)
        scope = await self.store.get_scope(sender.scope_id)

        async def planned(total: int) -> list[dict[str, Any]]:
            """The plan for the recipients that passed validation (not the rows submitted)."""
            plan: list[dict[str, Any]] = []
            if req.pacing == "fastest":
                try:
                    plan = await plan_for_scope(self.store, scope, total, self.clock.now())
                except ValueError as exc:  # e.g. a tier of 0, or a reservation that leaves no room: a 4xx
                    raise IntakeError(str(exc), field="sender", status=409) from None
            elif req.spread_days:
                per_day = -(-total // req.spread_days)
                left, cumulative = total, 0
                for day in range(1, req.spread_days + 1):
                    send = min(per_day, left)
                    left -= send
                    cumulative += send
                    plan.append({"day": day, "tier": scope.tier, "send": send, "cumulative": cumulative})
            return plan

        return await self.intake.create_campaign(tenant, req, planned)

    async def act(self, campaign: Campaign, action: str) -> Campaign:
        now = self.clock.now()
        if campaign.state == "canceled":
            done = {"pause": "paused", "resume": "resumed", "cancel": "canceled"}.get(action, action)
            raise ValueError(f"campaign is {campaign.state}; it cannot be {done}")
        if action == "pause":
            if campaign.state == "paused":
                return campaign
            await self.store.set_campaign_hold(campaign.id, True, now)
            return await self.store.update_campaign(campaign.id, {"state": "paused"})
        if action == "resume":
            if campaign.state != "paused":
                return campaign
            await self.store.set_campaign_hold(campaign.id, False, now)
            await announce(self.store)
            return await self.store.update_campaign(campaign.id, {"state": "running"})
        if action == "cancel":
            if not await self.store.cancel_campaign_messages(campaign.id, now):
                _counts, ended, _archive = await campaign_counts(self.store, campaign.id)
                if ended >= campaign.total:  # every message sent or ended: there is nothing to cancel
                    raise ValueError("campaign is done (every message was sent or ended); it cannot be canceled")
            return await self.store.update_campaign(campaign.id, {"state": "canceled"})
        raise ValueError(f"unknown action {action!r}")

    @staticmethod
    def eta_from_plan(campaign: Campaign) -> float | None:
        return campaign.start_at + len(campaign.plan) * DAY if campaign.plan else None
