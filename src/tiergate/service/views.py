"""Read models: what a sender's or campaign's status looks like to a user (API, CLI, dashboard)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from tiergate.core.model import TERMINAL_STATES, Campaign, CampaignArchive, Message, MessageState, Scope, Sender
from tiergate.core.tiers import admission_tier
from tiergate.core.window import DAY
from tiergate.ports import Store
from tiergate.service.forecast import forecast_scope

__all__ = ["campaign_counts", "campaign_view", "message_view", "sender_view", "window_view"]


async def window_view(store: Store, scope: Scope, now: float) -> dict[str, Any]:
    """Usage of the scope's rolling 24 h window, from the durable ledger (true in every process),
    aggregated by the store: the same few rows for a window of 250 or of 100,000."""
    releases = await store.window_releases(scope.id, now, 3600.0)
    tier = admission_tier(scope.tier, scope.predicted_tier, scope.trust_model)
    used = sum(n for _k, n, _first, _last in releases)
    limit = tier.limit
    return {
        "tier": scope.tier,
        "limit": limit,
        "used_24h": used,
        "remaining": None if limit is None else max(0, limit - used),
        "next_release_at": releases[0][2] if releases else None,
    }


async def sender_view(store: Store, sender: Sender, now: float, *, with_forecast: bool = True) -> dict[str, Any]:
    scope = await store.get_scope(sender.scope_id)
    win = await window_view(store, scope, now)
    view: dict[str, Any] = {
        "id": sender.id,
        "display_phone_number": sender.display_phone_number,
        "portfolio_id": sender.portfolio_id,
        "scope_id": scope.id,
        "policy": scope.policy,
        "tier": scope.tier,
        "tier_source": scope.tier_source,
        "trust_model": scope.trust_model,
        "predicted_tier": scope.predicted_tier,
        "limit": win["limit"],
        "used_24h": win["used_24h"],
        "remaining": win["remaining"],
        "next_release_at": win["next_release_at"],
        "quality": sender.quality,
        "status": sender.status,
        "throughput_mps": sender.throughput_mps,
        "timezone": sender.timezone,
        "reserve_fraction": scope.reserve_fraction,
        "paused_reasons": {k: v for k, v in sender.paused.items() if v is None or v > now},
        "marketing_paused_reasons": {k: v for k, v in sender.marketing_paused.items() if v is None or v > now},
        "forecast": await forecast_scope(store, scope, now) if with_forecast else None,
    }
    return view


def message_view(m: Message, history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "id": m.id, "state": m.state.value, "reason": m.reason, "sender": m.sender_id, "to": m.to,
        "kind": m.kind, "category": m.category, "attempts": m.attempts, "wamid": m.wamid,
        "next_attempt_at": m.next_attempt_at if m.state in (MessageState.QUEUED, MessageState.HELD) else None,
        "expires_at": m.expires_at, "error_code": m.error_code, "error_detail": m.error_detail or "",
        "campaign_id": m.campaign_id, "idempotency_key": m.idempotency_key, "metadata": m.metadata,
        "created_at": m.created_at, "updated_at": m.updated_at, "sent_at": m.sent_at, "history": history,
    }


async def campaign_counts(store: Store, campaign_id: str) -> tuple[dict[str, int], int, CampaignArchive | None]:
    """The campaign's messages by state, how many of them are done, and its archive: once message
    retention has deleted the messages, the counts are the archive's."""
    archive = await store.campaign_archive(campaign_id)
    counts = archive.counts if archive is not None else await store.count_by_state(campaign_id=campaign_id)
    done = sum(n for state, n in counts.items() if MessageState(state) in TERMINAL_STATES)
    return counts, done, archive


async def campaign_view(store: Store, c: Campaign, now: float) -> dict[str, Any]:
    counts, done, archive = await campaign_counts(store, c.id)
    eta: float | None = None
    if done >= c.total:
        eta = now if c.state != "canceled" else None
    elif c.plan:
        eta = c.start_at + len(c.plan) * DAY
    data = asdict(c)
    data.update({"sender": c.sender_id, "counts": counts, "done": done, "eta": eta,
                 "archived_at": None if archive is None else archive.archived_at})
    data["quiet_hours"] = list(c.quiet_hours) if c.quiet_hours else None
    return data
