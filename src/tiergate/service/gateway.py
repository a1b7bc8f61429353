"""The composition root: one object that wires store, provider, clock and the services.

``serve``, ``worker``, ``simulate`` and the tests all build a ``Gateway``; only here do adapters
meet services, so swapping SQLite for PostgreSQL or the sandbox for the Cloud API is a setting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import TYPE_CHECKING, Any

from tiergate.adapters.outbound import AiohttpSink
from tiergate.clock import Clock, SystemClock
from tiergate.core.tiers import parse_tier
from tiergate.ports import Provider, Store
from tiergate.service.auth import Auth
from tiergate.service.campaigns import Campaigns
from tiergate.service.dispatcher import Dispatcher, DispatcherConfig
from tiergate.service.dropin import DropIn
from tiergate.service.forecast import refresh_predictions
from tiergate.service.forwarding import Forwarder
from tiergate.service.intake import Intake
from tiergate.service.metrics import METRICS
from tiergate.service.periodic import run_every
from tiergate.service.retention import Retention
from tiergate.service.state import SenderState
from tiergate.service.sync import GraphSync
from tiergate.service.wakeups import CHANGED, announce
from tiergate.service.webhooks import WebhookService
from tiergate.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("tiergate")

__all__ = ["Gateway", "make_provider"]


def make_provider(settings: Settings, clock: Clock) -> Provider:
    if settings.provider == "cloud":
        from tiergate.adapters.provider.cloud import CloudProvider

        return CloudProvider(settings.graph_url, settings.access_token)
    from tiergate.adapters.provider.sandbox import SandboxProvider

    return SandboxProvider(clock, seed=settings.sandbox_seed, reply_share=settings.sandbox_reply_share,
                           undeliverable_share=settings.sandbox_undeliverable_share)


class Gateway:
    def __init__(self, settings: Settings, store: Store, provider: Provider, clock: Clock,
                 wall_clock: Clock | None = None, dispatcher_config: DispatcherConfig | None = None) -> None:
        self.settings = settings
        self.store = store
        self.provider = provider
        self.clock = clock
        worker_id = settings.worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self.auth = Auth(store, clock)
        self.intake = Intake(store, clock, provider)
        config = dispatcher_config or DispatcherConfig(batch_size=settings.batch_size, max_scopes=settings.max_scopes,
                                                       lease_ttl=settings.lease_ttl,
                                                       max_in_flight=settings.max_in_flight,
                                                       write_behind=settings.write_behind)
        self.dispatcher = Dispatcher(store, provider, clock, worker_id=worker_id,
                                     wall_clock=wall_clock or SystemClock(), config=config)
        self.state = SenderState(store, clock, self._capacity_changed, self._state_changed)
        self.campaigns = Campaigns(store, clock, self.intake)
        self.forwarder = Forwarder(store, clock, AiohttpSink(allow_private=settings.forward_private_urls))
        self.webhooks = WebhookService(settings, store, clock, self.state, self.dispatcher, self.forwarder)
        self.retention = Retention(store, clock, settings.message_retention_days)
        self.sync = GraphSync(store, provider, clock, self.state)
        self.dropin = DropIn(self.intake, self.provider)
        self._extras: list[Any] = []

    @classmethod
    async def open(cls, settings: Settings, *, clock: Clock | None = None, provider: Provider | None = None,
                   store: Store | None = None, **kwargs: Any) -> Gateway:
        from tiergate.adapters.store import open_store

        clock = clock or SystemClock()
        if store is None:
            store = open_store(settings.database_url)
        await store.open()
        provider = provider or make_provider(settings, clock)
        gateway = cls(settings, store, provider, clock, **kwargs)
        await gateway._register_existing_senders()
        return gateway

    async def _register_existing_senders(self) -> None:
        """A sandbox starts empty: tell it the senders (and tiers) the store already knows."""
        from tiergate.ports import SenderInfo

        for sender in await self.store.list_senders():
            scope = await self.store.get_scope(sender.scope_id)
            await self.provider.register_sender(SenderInfo(
                sender.id, sender.display_phone_number, sender.portfolio_id, scope.policy, scope.tier,
                sender.quality))

    async def close(self) -> None:
        if self.dispatcher.holds_leases:  # not a CLI's gateway: it may share a running worker's id
            with contextlib.suppress(Exception):
                await self.store.release_scopes(self.dispatcher.worker_id)
        await self.provider.aclose()
        await self.store.close()

    async def _capacity_changed(self, scope_id: str | None, sender_id: str | None) -> None:
        """Queued messages were made due: wake this dispatcher and, through the store, every worker."""
        self.dispatcher.forget_parks(scope_id, sender_id)
        await self._state_changed(scope_id, sender_id)
        self.dispatcher.wake()
        await announce(self.store)

    async def _state_changed(self, scope_id: str | None, sender_id: str | None) -> None:
        """A sender or scope changed: every dispatcher re-reads what it holds before its next batch."""
        self.dispatcher.request_refresh()
        await announce(self.store, CHANGED)

    async def pump_provider_events(self) -> int:
        """Apply the webhooks the provider produced itself (the sandbox) through the webhook path."""
        bodies = self.provider.poll_events(self.clock.now())
        for body in bodies:
            await self.webhooks.apply_body(body)
            await self.webhooks.forward(body)  # the app hears the sandbox as it would the platform
        return len(bodies)

    async def refresh_gauges(self) -> None:
        """The gauges /metrics reads: each from a query whose cost follows what is live (the backlog,
        the windows' recipients), never the number of messages ever sent."""
        counts = await self.store.count_live()
        for state, count in counts.items():
            METRICS.queue_depth.labels(state=state).set(count)
        METRICS.database_bytes.set(await self.store.size_bytes())
        used_by_scope = await self.store.window_counts(self.clock.now())
        for scope in await self.store.list_scopes():
            used = used_by_scope.get(scope.id, 0)
            limit = parse_tier(scope.tier).limit
            METRICS.window_used.labels(scope=scope.id).set(used)
            METRICS.window_usage.labels(scope=scope.id).set(used / limit if limit else 0.0)

    def mount_extras(self, app: FastAPI) -> None:
        """Routes that live outside the API module (the dashboard), if installed."""
        try:
            from tiergate.api.dashboard import mount
        except ImportError:
            return
        mount(app, self)

    # -- background work in real time -----------------------------------------------------------
    async def run(self, stop: asyncio.Event, *, dispatch: bool = True, sync: bool = True) -> None:
        """Dispatcher, provider-event pump and periodic Graph sync until ``stop`` is set."""
        tasks = []
        if dispatch:
            tasks.append(asyncio.create_task(self.dispatcher.run_forever(stop), name="dispatcher"))
        tasks.append(asyncio.create_task(self._pump_loop(stop), name="provider-events"))
        tasks.append(asyncio.create_task(self.webhooks.replay_unapplied_loop(stop), name="webhook-replay"))
        tasks.append(asyncio.create_task(self.webhooks.prune_loop(stop), name="webhook-prune"))
        if self.settings.message_retention_days:
            tasks.append(asyncio.create_task(self.retention.loop(stop), name="message-retention"))
        tasks.append(asyncio.create_task(self._predict_loop(stop), name="predictions"))
        tasks.append(asyncio.create_task(self.forwarder.run(stop), name="forwarding"))
        if sync and self.settings.sync_interval > 0 and self.provider.name == "cloud":
            tasks.append(asyncio.create_task(self.sync.run_forever(stop, self.settings.sync_interval), name="sync"))
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def refresh_predictions(self) -> None:
        """Scopes that trust the model: admit by the tier it says they earned, until the platform speaks."""
        raised, dropped = await refresh_predictions(self.store, self.clock.now())
        for scope_id in raised:
            log.info("scope %s: the policy model says a higher tier is earned; admitting by it (trust_model)",
                     scope_id)
            await self._capacity_changed(scope_id, None)
        for scope_id in dropped:
            await self._state_changed(scope_id, None)

    async def _predict_loop(self, stop: asyncio.Event, every: float = 60.0) -> None:
        await run_every(stop, every, self.refresh_predictions, log, "refreshing the model's tier predictions failed")

    async def _pump_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                if await self.pump_provider_events():
                    continue
            except Exception:
                log.exception("applying provider events failed")
            nxt = self.provider.next_event_at()
            wait = 1.0 if nxt is None else min(1.0, max(0.01, nxt - self.clock.now()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)
