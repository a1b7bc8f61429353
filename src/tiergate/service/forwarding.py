"""Forwarding the platform's webhooks to each tenant's app.

Meta sends a business's webhooks to one callback URL: once that is tiergate (it must see inbound
messages, statuses and tier changes), the app that used to receive them would go deaf. So each
delivery's ``messages`` changes (inbound messages, statuses, errors) are split by the tenant that
owns the phone number, and each tenant's share is sent on to its ``webhook_url`` in Meta's own
shape, signed the way Meta signs (``X-Hub-Signature-256: sha256=<HMAC of the body>``) with the
tenant's secret, so the app's webhook handler keeps working unchanged. The app knows its messages
by the id tiergate answered with (the drop-in endpoint's ``messages[0].id``), so a status of a
message tiergate sent carries that id as ``id`` (and ``tiergate_message_id``), with the platform's
own as ``wamid``; a reply's ``context.id`` likewise.

Messages tiergate ends itself (expired in its queue, refused by policy at dispatch, refused by the
platform's answer to the send) get no status webhook from Meta; the app is told of each with a
``failed`` status of the same shape (``told_status``), once: the forward is written in the
transaction that marks the message told.

Durable and at least once, as Meta's own deliveries are: the forwards are written in the
transaction that stores the delivery, claimed with a hold (a crash mid-send retries), retried with
backoff on any non-2xx or network error, and given up after ``GIVE_UP`` (Meta retries for 7 days).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
from typing import Any

import orjson

from tiergate.clock import Clock
from tiergate.core.model import Message, Tenant
from tiergate.core.shapes import metadata, status_error, status_item, webhook
from tiergate.ports import Forward, NotFound, Store, WebhookSink
from tiergate.service.metrics import METRICS

log = logging.getLogger("tiergate.forwarding")

__all__ = ["GIVE_UP", "TOLD_CODES", "Forwarder", "inbound_media_ids", "retry_delay", "signature", "told_status"]

GIVE_UP = 7 * 86_400.0  # seconds after the delivery: what has not gone by then is failed for good
HOLD = 60.0  # a claimed forward is retried after this if its sender died mid-send
CACHE = 5.0  # seconds a number's tenant (and its webhook setting) is taken as read
TOLD_PER_BODY = 100  # statuses per forwarded body when telling apps of ended messages

# tiergate's own error codes, for ends the platform has no code for (in a range Meta does not use)
TOLD_CODES: dict[str, tuple[int, str]] = {
    "expired": (990001, "Expired in tiergate's queue: it could not be sent before its expiry"),
    "rejected": (990002, "Refused by tiergate's sending policy"),
    "failed": (990003, "Failed in tiergate before the platform accepted it"),
}
_META_CODE_OF_REASON = (  # a refusal the platform itself would have made: its code, so the app reacts alike
    ("recipient opted out of marketing", 131050),
    ("(131047)", 131047),
)


def signature(secret: str, body: bytes) -> str:
    """``X-Hub-Signature-256`` as Meta computes it."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def retry_delay(attempts: int, jitter: float) -> float:
    """10 s, 20 s, 40 s ... up to an hour, with up to 20% jitter (many apps down at once do not
    come back to a thundering herd)."""
    return min(3600.0, 10.0 * 2.0 ** min(20, max(0, attempts - 1))) * (1.0 + 0.2 * jitter)


class Forwarder:
    # A round (``batch`` posts, ``concurrency`` at a time, each up to the sink's 10 s timeout) must
    # end well inside ``HOLD``, or another process would claim its forwards again mid-send.
    def __init__(self, store: Store, clock: Clock, sink: WebhookSink, *, batch: int = 32,
                 concurrency: int = 16) -> None:
        self.store = store
        self.clock = clock
        self.sink = sink
        self.batch = batch
        self.concurrency = concurrency
        self._rng = random.Random()
        self._tenants: dict[str, tuple[float, Tenant | None]] = {}  # by phone number id: (read at, tenant)

    def forget(self) -> None:
        """A tenant's webhook setting changed here: read it again (other processes: within ``CACHE``)."""
        self._tenants.clear()

    # -- what to forward (at receive time) -----------------------------------------------------
    async def shares(self, body: Any) -> tuple[list[tuple[str, bytes]], list[tuple[str, str]]]:
        """(tenant id, body) for each tenant with a webhook URL whose numbers this delivery is about,
        and the (media id, tenant id) of every inbound media object in those shares: the app learns
        those ids here, and may then fetch them through the drop-in.

        Only ``messages`` changes (what an app acts on); account-level changes (tiers, quality,
        capability) are tiergate's business. Anything not shaped like a delivery forwards nothing.
        """
        entries = body.get("entry") if isinstance(body, dict) else None
        if not isinstance(entries, list):
            return [], []
        tenants: dict[str, Tenant | None] = {}  # by phone number id
        kept: dict[str, list[dict[str, Any]]] = {}  # tenant id -> its entries
        for entry in entries:
            changes = entry.get("changes") if isinstance(entry, dict) else None
            if not isinstance(changes, list):
                continue
            mine: dict[str, list[Any]] = {}
            for change in changes:
                pnid = _phone_number_id(change)
                if pnid is None:
                    continue
                if pnid not in tenants:
                    tenants[pnid] = await self._tenant_of(pnid)
                tenant = tenants[pnid]
                if tenant is not None and tenant.webhook_url:
                    mine.setdefault(tenant.id, []).append(await self._annotated(change, tenant.id))
            for tenant_id, own in mine.items():
                kept.setdefault(tenant_id, []).append({**entry, "changes": own})
        obj = body.get("object", "whatsapp_business_account")
        media = [(media_id, tenant_id) for tenant_id, own in kept.items() for entry in own
                 for change in entry["changes"] for media_id in inbound_media_ids(change)]
        return [(tenant_id, orjson.dumps({"object": obj, "entry": own})) for tenant_id, own in kept.items()], media

    async def _tenant_of(self, phone_number_id: str) -> Tenant | None:
        """The number's tenant, read at most every ``CACHE`` seconds (every status webhook asks)."""
        now = self.clock.now()
        cached = self._tenants.get(phone_number_id)
        if cached is not None and now - cached[0] < CACHE:
            return cached[1]
        try:
            sender = await self.store.get_sender(phone_number_id)
            tenant: Tenant | None = await self.store.get_tenant(sender.tenant_id)
        except NotFound:
            tenant = None
        if len(self._tenants) > 100_000:
            self._tenants.clear()
        self._tenants[phone_number_id] = (now, tenant)
        return tenant

    async def _annotated(self, change: dict[str, Any], tenant_id: str) -> dict[str, Any]:
        """The change under the ids the app knows: each status of a message tiergate sent for this
        tenant, and each inbound message's ``context`` (a reply to one), name tiergate's id as
        ``id`` and the platform's as ``wamid``."""
        value = change["value"]
        statuses, inbound = value.get("statuses"), value.get("messages")
        if isinstance(statuses, list) and statuses:
            out = []
            for status in statuses:
                message = await self._own_message(status.get("id") if isinstance(status, dict) else None, tenant_id)
                if message is not None:
                    status = {**status, "id": message.id, "wamid": status["id"], "tiergate_message_id": message.id}
                out.append(status)
            value = {**value, "statuses": out}
        if isinstance(inbound, list) and inbound:
            replies = []
            for item in inbound:
                context = item.get("context") if isinstance(item, dict) else None
                if isinstance(context, dict):
                    message = await self._own_message(context.get("id"), tenant_id)
                    if message is not None:
                        item = {**item, "context": {**context, "id": message.id, "wamid": context["id"]}}
                replies.append(item)
            value = {**value, "messages": replies}
        return {**change, "value": value}

    async def _own_message(self, wamid: Any, tenant_id: str) -> Message | None:
        """The tenant's message the platform knows as ``wamid``, if tiergate sent it."""
        if not isinstance(wamid, str) or not wamid:
            return None
        message = await self.store.get_message_by_wamid(wamid)
        return message if message is not None and message.tenant_id == tenant_id else None

    # -- telling apps of messages tiergate ended ---------------------------------------------
    async def tell_ended(self, limit: int = 500) -> int:
        """One round: a ``failed`` status to each app for the messages tiergate ended itself since
        the last round (``TOLD_PER_BODY`` to a body, per number); those of tenants without a
        webhook URL are only marked. Returns how many messages were settled (0 if another process
        took them first)."""
        ended = await self.store.untold_messages(limit)
        if not ended:
            return 0
        tenants = await self._read_tenants({m.tenant_id for m in ended})
        statuses: dict[tuple[str, str], list[dict[str, Any]]] = {}  # (tenant, number) -> its statuses
        for m in ended:
            tenant = tenants[m.tenant_id]
            if tenant is not None and tenant.webhook_url:
                statuses.setdefault((m.tenant_id, m.sender_id), []).append(told_status(m))
        forwards: list[tuple[str, bytes]] = []
        for (tenant_id, number), items in statuses.items():
            try:
                sender = await self.store.get_sender(number)
                display = "".join(ch for ch in sender.display_phone_number if ch.isdigit())  # as Meta writes it
                entry_id = sender.portfolio_id or number
            except NotFound:  # deleted since: the app still hears of its message
                display, entry_id = "", number
            for i in range(0, len(items), TOLD_PER_BODY):
                value = {"messaging_product": "whatsapp", "metadata": metadata(display, number),
                         "statuses": items[i:i + TOLD_PER_BODY]}
                forwards.append((tenant_id, orjson.dumps(webhook(entry_id, [("messages", value)]))))
        if not await self.store.mark_told([m.id for m in ended], forwards, self.clock.now()):
            return 0
        return len(ended)

    async def _read_tenants(self, ids: set[str]) -> dict[str, Tenant | None]:
        """Each tenant as it is now (None if it is gone): read once a round, not once a forward."""
        found: dict[str, Tenant | None] = {}
        for tenant_id in ids:
            try:
                found[tenant_id] = await self.store.get_tenant(tenant_id)
            except NotFound:
                found[tenant_id] = None
        return found

    # -- delivery (a loop in every serving process; claims keep them apart) --------------------
    async def deliver_due(self) -> int:
        """One round: claim what is due, send it, record each outcome. Returns how many were sent."""
        now = self.clock.now()
        due = await self.store.claim_forwards(now, self.batch, HOLD)
        if not due:
            return 0
        tenants = await self._read_tenants({f.tenant_id for f in due})
        gate = asyncio.Semaphore(self.concurrency)

        async def one(f: Forward) -> bool:
            async with gate:
                return await self._deliver(f, tenants[f.tenant_id])

        return sum(await asyncio.gather(*(one(f) for f in due)))

    async def _deliver(self, f: Forward, tenant: Tenant | None) -> bool:
        if tenant is None or not tenant.webhook_url:
            await self.store.finish_forward(f.id, error="forwarding was turned off")
            return False
        error = await self._post(tenant.webhook_url, tenant.webhook_secret, f.body)
        now = self.clock.now()
        if error is None:
            await self.store.finish_forward(f.id, delivered_at=now)
            METRICS.forwards.labels(outcome="delivered").inc()
            return True
        if now - f.created_at >= GIVE_UP:
            log.warning("forward %s to tenant %s failed for good after %d attempts: %s",
                        f.id, f.tenant_id, f.attempts, error)
            await self.store.finish_forward(f.id, error=error)
            METRICS.forwards.labels(outcome="failed").inc()
        else:
            await self.store.finish_forward(f.id, error=error,
                                            next_attempt_at=now + retry_delay(f.attempts, self._rng.random()))
            METRICS.forwards.labels(outcome="retried").inc()
        return False

    async def test(self, tenant: Tenant) -> str | None:
        """Post a sample delivery (a ``sent`` status of a made-up message, marked ``tiergate_test``)
        to the tenant's URL now, signed as every forward is: None when the app took it, else why
        not. Nothing is stored or retried: it is for setting an app up."""
        if not tenant.webhook_url:
            raise ValueError("no webhook URL is set")
        now = self.clock.now()
        status = {**status_item(f"tiergate_test_{int(now)}", "sent", now, "0"), "tiergate_test": True}
        value = {"messaging_product": "whatsapp", "metadata": metadata("", "0"), "statuses": [status]}
        body = orjson.dumps(webhook("0", [("messages", value)]))
        return await self._post(tenant.webhook_url, tenant.webhook_secret, body)

    async def _post(self, url: str, secret: str, body: bytes) -> str | None:
        headers = {"Content-Type": "application/json", "User-Agent": "tiergate-forwarder"}
        if secret:
            headers["X-Hub-Signature-256"] = signature(secret, body)
        return await self.sink.post(url, body, headers)

    async def run(self, stop: asyncio.Event, idle: float = 1.0) -> None:
        """Deliver until ``stop``; prune what finished more than a week ago, now and then."""
        rounds = 0
        try:
            while not stop.is_set():
                try:
                    sent = await self.tell_ended()
                    sent += await self.deliver_due()
                    rounds += 1
                    if rounds % 3600 == 1:
                        await self.store.prune_forwards(self.clock.now() - GIVE_UP)
                except Exception:  # the store or the network: try again next round
                    log.exception("forwarding webhooks failed; retrying")
                    sent = 0
                if not sent:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), idle)
        finally:
            await self.close()

    async def close(self) -> None:
        await self.sink.close()


def told_status(message: Message) -> dict[str, Any]:
    """A ``failed`` status in Meta's shape for a message tiergate ended itself, under the id the
    app was given. A refusal by the platform keeps its code; a refusal the platform would have made
    gets the platform's code; the rest get tiergate's own (``TOLD_CODES``). ``tiergate_state`` says
    which state it ended in, ``error_data.details`` why."""
    state = message.state.value
    if message.error_code is not None:
        error = status_error(message.error_code, details=message.error_detail or message.reason or None)
    else:
        code = next((c for text, c in _META_CODE_OF_REASON if text in message.reason), None)
        if code is not None:
            error = status_error(code, details=message.reason)
        else:
            code, title = TOLD_CODES.get(state, TOLD_CODES["failed"])
            error = status_error(code, title=title, details=message.reason or title)
            del error["href"]  # Meta's error-code page does not list tiergate's codes
    item = status_item(message.id, "failed", message.updated_at, message.to, errors=[error])
    item["tiergate_message_id"] = message.id
    item["tiergate_state"] = state
    return item


def inbound_media_ids(change: Any) -> list[str]:
    """The ``id`` of each media object (image, audio, video, document, sticker) of the inbound
    messages of a ``messages`` change."""
    value = change.get("value") if isinstance(change, dict) else None
    messages = value.get("messages") if isinstance(value, dict) else None
    found: list[str] = []
    for message in messages if isinstance(messages, list) else ():
        kind = message.get("type") if isinstance(message, dict) else None
        media = message.get(kind) if isinstance(kind, str) and kind in _MEDIA_TYPES else None
        media_id = media.get("id") if isinstance(media, dict) else None
        if isinstance(media_id, str | int) and str(media_id):
            found.append(str(media_id))
    return found


_MEDIA_TYPES = frozenset({"image", "audio", "video", "document", "sticker"})


def _phone_number_id(change: Any) -> str | None:
    """The number a ``messages`` change is about (``value.metadata.phone_number_id``)."""
    if not isinstance(change, dict) or change.get("field") != "messages":
        return None
    value = change.get("value")
    metadata = value.get("metadata") if isinstance(value, dict) else None
    pnid = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
    return str(pnid) if isinstance(pnid, str | int) and str(pnid) else None
