"""Live sender and scope state: tiers, quality, flags, restrictions, pauses.

Webhooks, the Graph API sync and operators all change state through these methods, so a tier
reported any way has the same effect: recorded with its source, visible in the sender's history,
and, when it raises capacity or lifts a pause, deferred messages become due at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tiergate.clock import Clock
from tiergate.core.model import Scope, Sender
from tiergate.core.policy import get_policy
from tiergate.core.tiers import parse_tier, set_tier
from tiergate.ports import NotFound, Store
from tiergate.service.intake import QUALITIES

log = logging.getLogger("tiergate.state")

__all__ = ["SenderState"]

QUALITY_PAUSE = "quality RED: marketing paused (utility and authentication continue)"
FLAG_PAUSE = "number FLAGGED: marketing paused"
STATUS_PAUSE_PREFIX = "status "
BLOCKING_STATUSES = {"BANNED", "DELETED", "DISABLED", "DISCONNECTED", "RESTRICTED", "MIGRATED"}


class SenderState:
    def __init__(self, store: Store, clock: Clock, on_capacity: Callable[[str | None, str | None], Any],
                 on_change: Callable[[str | None, str | None], Any] | None = None) -> None:
        """``on_capacity(scope_id, sender_id)`` is called when capacity may have grown (wake-ups),
        ``on_change`` when anything else the dispatcher holds in memory changed (a pause, a lower tier)."""
        self._on_change = on_change
        self.store = store
        self.clock = clock
        self._on_capacity = on_capacity

    async def _event(self, sender_ids: list[str], kind: str, detail: str) -> None:
        now = self.clock.now()
        for sid in sender_ids:
            await self.store.add_sender_event(sid, now, kind, detail)

    async def _wake(self, scope_id: str | None = None, sender_id: str | None = None) -> None:
        now = self.clock.now()
        # Those waiting for the messaging limit stay parked: the dispatcher pulls them in order as
        # the (new) limit allows, instead of every one of a large backlog being rewritten and re-decided.
        if scope_id is not None:
            await self.store.requeue_where(scope_id=scope_id, now=now, keep_capacity_parked=True)
        if sender_id is not None:
            await self.store.requeue_where(sender_id=sender_id, now=now, keep_capacity_parked=True)
        result = self._on_capacity(scope_id, sender_id)
        if hasattr(result, "__await__"):
            await result

    async def _changed(self, scope_id: str | None = None, sender_id: str | None = None) -> None:
        if self._on_change is not None:
            result = self._on_change(scope_id, sender_id)
            if hasattr(result, "__await__"):
                await result

    # -- tiers ---------------------------------------------------------------------------------
    async def set_tier(self, scope_id: str, raw: object, source: str) -> Scope | None:
        """Apply an authoritative tier. Unknown values are recorded and the last known tier kept."""
        scope = await self.store.get_scope(scope_id)
        senders = [s.id for s in await self.store.senders_of_scope(scope_id)]
        tier = parse_tier(raw)
        if not tier.known:
            await self._event(senders, "tier_unknown", f"{source} reported tier {raw!r}; kept {scope.tier}")
            log.warning("scope %s: unknown tier %r from %s; keeping %s", scope_id, raw, source, scope.tier)
            return None
        if tier.name == scope.tier:
            return scope
        old = parse_tier(scope.tier)
        scope = await self.store.update_scope(
            # The platform's word replaces the model's prediction (trust_model), whichever way it went.
            scope_id, {"tier": tier.name, "tier_source": source, "tier_updated_at": self.clock.now(),
                       "predicted_tier": None}
        )
        raised = tier.capacity() > old.capacity()
        await self._event(senders, "tier_raised" if raised else "tier_lowered", f"{old.name} -> {tier.name} ({source})")
        if raised:
            await self._wake(scope_id=scope_id)
        else:
            await self._changed(scope_id=scope_id)  # a lower tier holds for new admissions at once
        return scope

    async def verified(self, scope_id: str, source: str) -> Scope | None:
        """Business verification done: a scope at the entry tier moves to the policy's next step."""
        scope = await self.store.get_scope(scope_id)
        policy = get_policy(scope.policy)
        target = policy.verified_tier
        if parse_tier(scope.tier).capacity() >= target.capacity():
            return scope
        return await self.set_tier(scope_id, target.name, f"{source} (verification)")

    # -- quality, flags, status, restrictions --------------------------------------------------
    async def _set_pause(self, sender: Sender, field: str, reason: str, until: float | None, on: bool) -> Sender:
        pauses: dict[str, float | None] = dict(getattr(sender, field))
        if on == (reason in pauses and (pauses[reason] is None or (pauses[reason] or 0) > self.clock.now())):
            return sender
        if on:
            pauses[reason] = until
        else:
            pauses.pop(reason, None)
        sender = await self.store.update_sender(sender.id, {field: pauses})
        await self._event([sender.id], "paused" if on else "resumed", reason)
        if not on:
            await self._wake(sender_id=sender.id)
        else:
            await self._changed(sender_id=sender.id)
        return sender

    async def set_quality(self, sender_id: str, quality: str, source: str) -> Sender:
        quality = quality.upper()
        sender = await self.store.get_sender(sender_id)
        if quality not in ("GREEN", "YELLOW", "RED", "NA", "UNKNOWN"):
            await self._event([sender_id], "quality_unknown", f"{source} reported quality {quality!r}")
            return sender
        if quality != sender.quality:
            sender = await self.store.update_sender(sender_id, {"quality": quality})
            await self._event([sender_id], "quality", f"{quality} ({source})")
            scope = await self.store.get_scope(sender.scope_id)
            if scope.policy == "classic" or scope.id == f"sender:{sender_id}":
                await self.store.update_scope(scope.id, {"quality": quality})
            await self._changed(sender_id=sender_id)  # YELLOW slows marketing
        return await self._set_pause(sender, "marketing_paused", QUALITY_PAUSE, None, quality == "RED")

    async def set_flagged(self, sender_id: str, flagged: bool, source: str) -> Sender:
        sender = await self.store.get_sender(sender_id)
        return await self._set_pause(sender, "marketing_paused", FLAG_PAUSE, None, flagged)

    async def set_status(self, sender_id: str, status: str, source: str) -> Sender:
        status = status.upper()
        sender = await self.store.get_sender(sender_id)
        if status != sender.status:
            sender = await self.store.update_sender(sender_id, {"status": status})
            await self._event([sender_id], "status", f"{status} ({source})")
        if status == "FLAGGED":
            sender = await self.set_flagged(sender_id, True, source)
        for reason in [r for r in sender.paused if r.startswith(STATUS_PAUSE_PREFIX)]:
            if reason != STATUS_PAUSE_PREFIX + status:
                sender = await self._set_pause(sender, "paused", reason, None, False)
        if status in BLOCKING_STATUSES:
            sender = await self._set_pause(sender, "paused", STATUS_PAUSE_PREFIX + status, None, True)
        return sender

    async def restrict(self, sender_id: str, restriction: str, until: float | None, source: str) -> Sender:
        """RESTRICTED_BIZ_INITIATED_MESSAGING and the like: counted sending waits until ``until``."""
        sender = await self.store.get_sender(sender_id)
        return await self._set_pause(sender, "paused", f"{restriction} ({source})", until, True)

    async def resume(self, sender_id: str, reasons: list[str]) -> Sender:
        sender = await self.store.get_sender(sender_id)
        for reason in reasons:
            for field in ("paused", "marketing_paused"):
                if reason in getattr(sender, field):
                    sender = await self._set_pause(sender, field, reason, None, False)
        return sender

    # -- lookups -------------------------------------------------------------------------------
    async def senders_for(self, phone_number_id: str | None, waba_id: str | None) -> list[Sender]:
        """The senders an event concerns: by phone number id, else every sender of the portfolio."""
        if phone_number_id:
            try:
                return [await self.store.get_sender(phone_number_id)]
            except NotFound:
                return []
        if waba_id:
            return [s for s in await self.store.list_senders() if s.portfolio_id == waba_id]
        return []

    async def operator_update(self, sender: Sender, patch: dict[str, Any]) -> Sender:
        """An operator's PATCH: tier and quality set here are authoritative. Everything is checked
        before anything changes (ValueError names the field), so a refused PATCH changes nothing."""
        tier = set_tier(patch["tier"]) if "tier" in patch else None
        if "quality" in patch and str(patch["quality"]).strip().upper() not in QUALITIES:
            raise ValueError(f"quality: one of {', '.join(QUALITIES)}, not {patch['quality']!r}")
        unknown = [r for r in patch.get("resume") or [] if r not in sender.paused and r not in sender.marketing_paused]
        if unknown:
            raise ValueError(f"resume: {unknown[0][:120]!r} is not one of this sender's pauses "
                             f"({', '.join(map(repr, [*sender.paused, *sender.marketing_paused])) or 'none'})")
        if tier is not None:
            await self.set_tier(sender.scope_id, tier.name, "operator")
        if patch.get("verified"):
            await self.verified(sender.scope_id, "operator")
        if "quality" in patch:
            await self.set_quality(sender.id, str(patch["quality"]), "operator")
        scope_fields: dict[str, Any] = {k: patch[k] for k in ("reserve_fraction", "trust_model") if k in patch}
        if scope_fields:
            await self.store.update_scope(sender.scope_id, scope_fields)
            await self._wake(scope_id=sender.scope_id)
        if "throughput_mps" in patch:
            await self.store.update_sender(sender.id, {"throughput_mps": int(patch["throughput_mps"])})
            await self._changed(sender_id=sender.id)
        if patch.get("resume"):
            await self.resume(sender.id, list(patch["resume"]))
        return await self.store.get_sender(sender.id)
