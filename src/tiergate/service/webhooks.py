"""Applying platform webhooks: service windows, statuses, tiers, quality, restrictions, opt-outs.

The raw body is stored before anything is applied and marked applied after, so a crash mid-way
loses nothing: ``replay_unapplied`` re-applies what was stored and not finished. Each change is
applied once (its ``change_id``); a replay re-applies without that check, which is safe because
every application here is idempotent (statuses never move backwards, windows keep the latest
inbound time, tiers and pauses are set, not toggled).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
from typing import Any

import orjson

from tiergate.clock import Clock
from tiergate.core.admission import CSW_SPAN, TEMPLATE_CATEGORIES
from tiergate.core.model import STATUS_RANK, Message, MessageState
from tiergate.core.optout import is_start_keyword, is_stop_keyword
from tiergate.core.outcomes import plan_failure
from tiergate.core.signature import verify_signature
from tiergate.core.webhooks import (
    AccountUpdate,
    InboundMessage,
    QualityUpdate,
    StatusUpdate,
    TemplateUpdate,
    TierUpdate,
    UserPreference,
    WebhookError,
    WebhookEvent,
    load_body,
    parse_webhook,
)
from tiergate.ports import LedgerChange, MessageUpdate, NotFound, Store
from tiergate.service.dispatcher import Dispatcher
from tiergate.service.forwarding import Forwarder
from tiergate.service.metrics import METRICS
from tiergate.service.periodic import run_every
from tiergate.service.state import SenderState
from tiergate.service.wakeups import announce
from tiergate.settings import Settings

log = logging.getLogger("tiergate.webhooks")

__all__ = ["WebhookService"]

_STATUS_STATE = {
    "sent": MessageState.SENT,
    "delivered": MessageState.DELIVERED,
    "read": MessageState.READ,
    "played": MessageState.READ,
    "failed": MessageState.FAILED,
}
_FAILABLE = (MessageState.SENDING, MessageState.SENT, MessageState.UNKNOWN)
# Deliveries and change ids are kept this long after they came: the platform redelivers for up to
# 7 days, and a redelivery must still find its change ids to be recognised.
KEEP = 8 * 86_400.0
MEDIA_KEEP = 31 * 86_400.0  # the platform keeps media 30 days


_COUNTED_STATUSES = frozenset({"sent", "delivered", "read", "failed", "played", "deleted"})


class WebhookService:
    def __init__(self, settings: Settings, store: Store, clock: Clock, state: SenderState,
                 dispatcher: Dispatcher, forwarder: Forwarder | None = None) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.state = state
        self.dispatcher = dispatcher
        self.forwarder = forwarder
        self._rng = random.Random()

    # -- HTTP-facing ----------------------------------------------------------------------------
    def verify_handshake(self, mode: str | None, token: str | None) -> bool:
        expected = self.settings.verify_token
        return bool(expected) and mode == "subscribe" and token is not None and hmac.compare_digest(
            token.encode(), expected.encode())

    async def receive(self, raw: bytes, signature: str | None) -> tuple[int, str]:
        """Check the signature before parsing anything, store, then apply. Returns (status, message)."""
        if not self.settings.app_secret:
            return 403, "webhooks are disabled: set TIERGATE_APP_SECRET to the app secret to verify signatures"
        if not signature:
            return 401, "missing X-Hub-Signature-256 header"
        if not verify_signature(self.settings.app_secret, raw, signature):
            return 403, "invalid X-Hub-Signature-256 signature"
        try:
            body = load_body(raw)
        except WebhookError as exc:
            return 400, f"unreadable webhook body: {exc}"
        event_id = _event_id(raw)
        shares, media = await self.forwarder.shares(body) if self.forwarder is not None else ([], [])
        await self.store.add_webhook_event(event_id, raw, self.clock.now(), shares, media)
        try:
            applied = await self.apply_body(body)
        except Exception as exc:  # stored: the replay loop will try again
            log.exception("applying webhook %s failed; it will be replayed", event_id)
            await self.store.mark_webhook_applied(event_id, self.clock.now(), error=type(exc).__name__)
            return 200, "stored; applying failed and will be retried"
        await self.store.mark_webhook_applied(event_id, self.clock.now())
        return 200, f"{applied} changes applied"

    async def forward(self, body: Any) -> None:
        """Queue the tenants' shares of a delivery that did not come through ``receive`` (the
        sandbox's own events): stored as a delivery like any other, so it goes once."""
        shares, media = await self.forwarder.shares(body) if self.forwarder is not None else ([], [])
        if shares:
            raw = orjson.dumps(body)
            event_id, now = _event_id(raw), self.clock.now()
            if await self.store.add_webhook_event(event_id, raw, now, shares, media):
                await self.store.mark_webhook_applied(event_id, now)

    async def replay_unapplied(self) -> int:
        """Apply stored events that were never marked applied (after a crash)."""
        done = 0
        for event_id, raw in await self.store.unapplied_webhook_events():
            try:
                await self.apply_body(load_body(raw), dedupe=False)
                await self.store.mark_webhook_applied(event_id, self.clock.now())
                done += 1
            except WebhookError as exc:
                await self.store.mark_webhook_applied(event_id, self.clock.now(), error=str(exc))
        return done

    async def replay_unapplied_loop(self, stop: asyncio.Event, every: float = 30.0) -> None:
        await run_every(stop, every, self.replay_unapplied, log, "replaying stored webhooks failed")

    async def prune(self) -> int:
        """Forget deliveries past the platform's redelivery window (``KEEP``): the table would
        otherwise grow by every status of every message, forever. Media ids go after the
        platform's own 30 days (``MEDIA_KEEP``)."""
        now = self.clock.now()
        return await self.store.prune_webhooks(now - KEEP) + await self.store.prune_media(now - MEDIA_KEEP)

    async def prune_loop(self, stop: asyncio.Event, every: float = 3600.0) -> None:
        await run_every(stop, every, self.prune, log, "pruning old webhook deliveries failed")

    # -- application ----------------------------------------------------------------------------
    async def apply_body(self, body: Any, *, dedupe: bool = True) -> int:
        applied = 0
        for event in parse_webhook(body):
            key = f"{event.event_id}:{event.kind}"
            if dedupe and not await self.store.claim_change(key, self.clock.now()):
                continue
            try:
                await self.apply_event(event)
            except NotFound:
                log.info("webhook %s concerns nothing tiergate knows; kept and ignored", event.kind)
            METRICS.webhook_events.labels(kind=event.kind).inc()
            if isinstance(event, StatusUpdate):  # a known status, or "other": the platform picks the strings
                METRICS.statuses.labels(status=event.status if event.status in _COUNTED_STATUSES else "other").inc()
            applied += 1
        return applied

    async def apply_event(self, event: WebhookEvent) -> None:
        if isinstance(event, InboundMessage):
            await self._inbound(event)
        elif isinstance(event, StatusUpdate):
            await self._status(event)
        elif isinstance(event, TierUpdate):
            await self._tier(event)
        elif isinstance(event, QualityUpdate):
            await self._quality(event)
        elif isinstance(event, AccountUpdate):
            await self._account(event)
        elif isinstance(event, UserPreference):
            await self._preference(event)
        elif isinstance(event, TemplateUpdate):
            await self._template_category(event)
        # Unknown: stored with the raw event, nothing to change.

    async def _senders(self, event: WebhookEvent) -> list[Any]:
        senders = await self.state.senders_for(event.phone_number_id, event.waba_id)
        if not senders and event.display_phone_number:
            digits = "".join(ch for ch in event.display_phone_number if ch.isdigit())
            senders = [s for s in await self.store.list_senders() if s.display_phone_number == digits]
        return senders

    def _when(self, timestamp: float | None) -> float:
        """When a webhook says something happened, never later than now: a signed body's timestamp
        in the future (a sender's bug, a replay) must not open a service window for years."""
        now = self.clock.now()
        return now if timestamp is None or timestamp > now else timestamp

    async def _inbound(self, ev: InboundMessage) -> None:
        if not ev.phone_number_id:
            return
        sender = await self.store.get_sender(ev.phone_number_id)
        at = self._when(ev.timestamp)
        opened = ev.opens_window and await self.store.record_inbound(sender.id, ev.wa_id, at)
        if opened and at + CSW_SPAN > self.clock.now():
            # The service window is open: free-form replies and templates to this user go now.
            await self.store.requeue_where(sender_id=sender.id, recipient=ev.wa_id, now=self.clock.now())
            self.dispatcher.wake()
            await announce(self.store)  # workers of other processes too
        tenant = await self.store.get_tenant(sender.tenant_id)
        if ev.text and is_stop_keyword(ev.text, tenant.stop_keywords):  # defaults plus the tenant's own
            await self.store.set_opt_out(tenant.id, ev.wa_id, at, f"keyword: {ev.text.strip()[:40]}")
        elif ev.text and is_start_keyword(ev.text):
            await self.store.set_opt_in(tenant.id, ev.wa_id, at, f"keyword: {ev.text.strip()[:40]}")

    async def _status(self, ev: StatusUpdate) -> None:
        message = await self.store.get_message_by_wamid(ev.wamid)
        wamid = None
        if message is None:  # the send's answer was lost (timeout, crash): find it by its callback data
            message = await self._by_callback(ev)
            wamid = ev.wamid if message is not None else None
        target = _STATUS_STATE.get(ev.status)
        if message is None or target is None:
            return
        now = self.clock.now()
        if target is not MessageState.FAILED:
            rank = STATUS_RANK[target]
            lower = [s for s, r in STATUS_RANK.items() if r < rank and s is not MessageState.FAILED]
            note = "reconciled by a status webhook: " if message.state is MessageState.UNKNOWN else ""
            await self.store.apply_updates([MessageUpdate(
                message.id, target, now, reason=f"{note}{ev.status} (platform status)", only_from=lower,
                sent_at=self._when(ev.timestamp) if message.sent_at is None else None, wamid=wamid)])
            return
        if message.state not in _FAILABLE:
            return  # delivered/read stay so; a retry already queued is not disturbed
        error = ev.errors[0] if ev.errors else None
        plan = plan_failure(error.code if error else None, error.title if error else "failed",
                            error.details if error else "", attempts=message.attempts, now=now,
                            jitter=self._rng.random(), expires_at=message.expires_at)
        ledger: list[LedgerChange] = []
        if plan.release_slot and message.counted and message.slot_expiry is not None and (
                message.slot_previous is None or message.slot_previous <= now):
            ledger.append(LedgerChange(message.scope_id, message.to, message.slot_expiry, remove=True))
            self.dispatcher.release_slot(message.scope_id, message.to, message.slot_expiry,
                                         message.slot_previous, now)
        await self.store.apply_updates([MessageUpdate(
            message.id, plan.state, now, reason=plan.reason, next_attempt_at=plan.next_attempt_at,
            error_code=error.code if error else None, error_detail=(error.details or error.title) if error else None,
            clear_slot=bool(ledger), only_from=_FAILABLE, wamid=wamid)], ledger)
        if plan.pause_sender:
            await self.dispatcher.pause_sender(message.sender_id, plan.pause_sender,
                                               self.dispatcher.pause_end(plan, now), now)
        if plan.opt_out:
            await self.store.set_opt_out(message.tenant_id, message.to, now, plan.opt_out)
        if plan.state is MessageState.QUEUED:
            self.dispatcher.wake()
            await announce(self.store)  # workers of other processes too

    async def _by_callback(self, ev: StatusUpdate) -> Message | None:
        """The message whose id the send carried as ``biz_opaque_callback_data`` (no wamid known yet).

        Only a message of the same sender and recipient that has no other wamid matches, so an app's
        own callback data that happens to look like an id cannot touch a stranger's message.
        """
        if not ev.callback_data or not ev.callback_data.startswith("msg_"):
            return None
        try:
            message = await self.store.get_message(ev.callback_data)
        except NotFound:
            return None
        if message.sender_id != ev.phone_number_id or message.wamid not in (None, ev.wamid):
            return None
        if ev.recipient_id is not None and ev.recipient_id != message.to:
            return None
        return message

    async def _tier(self, ev: TierUpdate) -> None:
        senders = await self._senders(ev)
        source = f"webhook {ev.source_field}"
        scopes = {s.scope_id for s in senders}
        for scope_id in scopes:
            if not ev.per_business and not scope_id.startswith("sender:"):
                scope_senders = {s.id for s in senders if s.scope_id == scope_id}
                for sid in scope_senders:
                    await self.store.add_sender_event(
                        sid, self.clock.now(), "tier_ignored",
                        f"per-number {ev.raw_tier} ignored: the portfolio's limit applies")
                continue
            await self.state.set_tier(scope_id, ev.raw_tier, source)

    async def _quality(self, ev: QualityUpdate) -> None:
        for sender in await self._senders(ev):
            if ev.quality:
                await self.state.set_quality(sender.id, ev.quality, f"webhook {ev.field}")
            if ev.flagged is not None:
                await self.state.set_flagged(sender.id, ev.flagged, f"webhook {ev.field}")

    async def _account(self, ev: AccountUpdate) -> None:
        senders = await self._senders(ev)
        for sender in senders:
            for r in ev.restrictions:
                await self.state.restrict(sender.id, r.restriction_type, r.expiration, f"webhook {ev.event}")
            if ev.ban_state and ev.ban_state.upper() in ("DISABLE", "DISABLED", "BANNED", "SCHEDULE_FOR_DISABLE"):
                await self.state.set_status(sender.id, "BANNED" if "SCHEDULE" not in ev.ban_state.upper()
                                            else sender.status, f"webhook ban {ev.ban_state}")
            elif ev.ban_state and ev.ban_state.upper() in ("REINSTATE", "REINSTATED"):
                await self.state.set_status(sender.id, "CONNECTED", f"webhook ban {ev.ban_state}")

    async def _template_category(self, ev: TemplateUpdate) -> None:
        """A template's category as the platform has it (a recategorization, or the category a
        status change names): messages of it sent without a category from now on are queued,
        prioritized and capped as what it is (``Intake``)."""
        if ev.field == "template_category_update":
            category = ev.event
        elif ev.field == "message_template_status_update" and ev.raw is not None:
            category = ev.raw.get("message_template_category")
        else:
            return
        if category not in TEMPLATE_CATEGORIES or not ev.template_name or ev.language is None:
            return
        at = self._when(ev.timestamp)
        for tenant_id in sorted({s.tenant_id for s in await self._senders(ev)}):
            await self.store.set_template_categories(tenant_id, [(ev.template_name, ev.language, category)], at)

    async def _preference(self, ev: UserPreference) -> None:
        if not ev.phone_number_id:
            return
        sender = await self.store.get_sender(ev.phone_number_id)
        at = self._when(ev.timestamp)
        if ev.stops_marketing:
            await self.store.set_opt_out(sender.tenant_id, ev.wa_id, at, "user_preferences: stop marketing")
        elif ev.resumes_marketing:
            await self.store.set_opt_in(sender.tenant_id, ev.wa_id, at, "user_preferences: resume marketing")


def _event_id(raw: bytes) -> str:
    """A delivery's id: its body's hash (a redelivery of the same body is the same event)."""
    return "evt_" + hashlib.sha256(raw).hexdigest()[:40]
