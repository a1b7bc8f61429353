"""A seeded gateway for the dashboard: senders, campaigns and history made on the real path, served over HTTP.

The browser test uses a small world (one sender, one campaign partly sent); ``scripts/screenshots``
uses the full one (a classic sender at the end of a multi-day campaign with utility traffic and a
quality episode, and a two-number portfolio part-way through a campaign). Both run the dispatcher and
the sandbox platform under a virtual clock, then serve the app with uvicorn on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.e2e.conftest import T0, Harness
from tests.fakes.served import served_app

from tiergate.api.app import create_app
from tiergate.service.intake import MessageRequest

HOUR = 3600.0
DAY = 86_400.0

SENDER = "106540352242922"
SENDER_PHONE = "+15550783881"
PORTFOLIO = "acme-eu"
PORTFOLIO_SENDERS = (("206540352242911", "+4930901820"), ("206540352242933", "+4930901821"))

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@dataclass
class World:
    harness: Harness
    sender: str = SENDER
    campaign: str = ""
    portfolio_campaign: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def numbers(n: int, base: int) -> list[str]:
    return [f"+55119{base + i:08d}" for i in range(n)]


async def _post(h: Harness, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = await h.client.post(path, json=body)
    assert r.status_code in (200, 201, 202), r.text
    data: dict[str, Any] = r.json()
    return data


async def register(h: Harness, pnid: str, phone: str, **extra: Any) -> dict[str, Any]:
    return await _post(h, "/v1/senders", {"phone_number_id": pnid, "display_phone_number": phone, **extra})


async def campaign(h: Harness, sender: str, name: str, recipients: list[str]) -> dict[str, Any]:
    return await _post(h, "/v1/campaigns", {"sender": sender, "name": name, "recipients": recipients,
                                            "template": {"name": "launch_promo", "language": "en_US"}})


async def quality(h: Harness, pnid: str, value: str) -> None:
    """The platform changes the number's quality rating; its webhook reaches the gateway."""
    h.provider.set_quality(pnid, value)
    await h.advance(1)


async def small_world(h: Harness) -> World:
    """One classic sender at TIER_1K with a quality episode, then a 2,500-recipient campaign part-way through day 1.

    The episode comes before the campaign: a pause that ends while messages are parked for capacity
    currently delays them a further day (the dispatcher's park slots are not reset by a resume).
    """
    await register(h, SENDER, SENDER_PHONE, tier="TIER_1K", quality="GREEN")
    await quality(h, SENDER, "YELLOW")
    await quality(h, SENDER, "RED")  # marketing pauses
    await h.advance(HOUR)
    await quality(h, SENDER, "GREEN")  # and resumes
    c = await campaign(h, SENDER, "January launch", numbers(2_500, 0))
    await h.advance(2 * HOUR)  # 1,000 go (the tier), 1,500 wait for the window
    return World(h, campaign=c["id"])


async def full_world(h: Harness, *, log: Any = print) -> World:
    """The screenshots' world, on day 6 at 12:30 UTC.

    Sender A (classic, TIER_1K, 20 % kept for utility): a trickle of utility messages all along, a
    quality episode early on day 1 (YELLOW, RED: marketing paused, GREEN again), then a 20,000-recipient
    campaign from 08:00 on day 1. Portfolio acme-eu (two numbers, TIER_2K): a 12,000-recipient campaign
    started at 07:00 on day 6, part-way through when the pictures are taken.
    """
    await register(h, SENDER, SENDER_PHONE, tier="TIER_1K", quality="GREEN", reserve_fraction=0.2)
    for pnid, phone in PORTFOLIO_SENDERS:
        await register(h, pnid, phone, tier="TIER_2K", quality="GREEN", policy="portfolio",
                       portfolio_id=PORTFOLIO)
    tenant = (await h.gateway.store.list_tenants())[0]
    # Utility traffic: 5 an hour for six days, each to a new recipient, due at its own moment.
    for i in range(6 * 24 * 5):
        await h.gateway.intake.submit(tenant, MessageRequest(
            sender=SENDER, to=numbers(1, 50_000_000 + i)[0], category="UTILITY",
            template={"name": "order_update", "language": "en_US"}, not_before=T0 + 60 + i * 720))
    await h.advance(2 * HOUR)
    await quality(h, SENDER, "YELLOW")
    await h.advance(2 * HOUR)
    await quality(h, SENDER, "RED")
    await h.advance(2 * HOUR)
    await quality(h, SENDER, "GREEN")
    await h.advance(T0 + 8 * HOUR - h.clock.now())
    c = await campaign(h, SENDER, "January launch", numbers(20_000, 0))
    log("campaign A created at day 1 08:00; simulating to day 6 07:00")
    for d in range(1, 6):
        await h.advance(T0 + d * DAY + 7 * HOUR - h.clock.now())
        log(f"  day {d + 1} 07:00")
    p = await campaign(h, PORTFOLIO_SENDERS[0][0], "Spring sale (EU)", numbers(12_000, 20_000))
    await h.advance(T0 + 5 * DAY + 12 * HOUR + 30 * 60 - h.clock.now())
    log(f"day 6 12:30: {h.provider.violations} violations")
    return World(h, campaign=c["id"], portfolio_campaign=p["id"])


@asynccontextmanager
async def served(h: Harness) -> AsyncIterator[str]:
    """The harness's app on a real socket (127.0.0.1, a free port) in this event loop; yields its URL."""
    async with served_app(create_app(h.gateway)) as url:
        yield url
