"""The dashboard in a real browser: Debian's Chromium driven by Playwright against uvicorn on 127.0.0.1.

The gateway behind it is seeded on the real path under a virtual clock (a TIER_1K sender, a campaign
of 2,500 part-way through day 1, a quality episode). The page must show the numbers the API gives,
follow the clock as it moves (live updates), show a tenant only its own senders, and fit a phone.
A screenshot of each page is kept in the test's tmp dir (and in $TIERGATE_ARTIFACTS when set).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright, expect
from tests.e2e.conftest import make_harness
from tests.e2e.dashboard_world import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DAY,
    SENDER,
    campaign,
    numbers,
    register,
    served,
    small_world,
)

pytestmark = pytest.mark.browser


def number(text: str) -> int:
    return int(text.replace(",", "").strip())


async def shot(page: Page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    await page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    artifacts = os.environ.get("TIERGATE_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(artifacts) / name)
    return path


async def test_dashboard_shows_what_the_api_says(tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/services (it installs Debian's chromium)", pytrace=False)
    h = await make_harness(tmp_path)
    try:
        world = await small_world(h)
        await check_in_browser(h, world, tmp_path)
    finally:
        await h.client.aclose()
        await h.gateway.close()


async def api(h: Any, path: str) -> Any:
    r = await h.client.get(path)
    assert r.status_code == 200, r.text
    return r.json()


async def check_in_browser(h: Any, world: Any, tmp_path: Path) -> None:
    other = (await h.client.post("/v1/tenants", json={"name": "other"})).json()
    other_key = (await h.client.post("/v1/keys", json={"tenant_id": other["id"]})).json()["key"]
    async with served(h) as url, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 900}, timezone_id="UTC")
            page = await context.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)

            # A wrong key is refused with a message; the right one logs in.
            await page.goto(f"{url}/?poll=1")
            await page.fill("#key", "tg_not-a-key")
            await page.click("#login-button")
            await expect(page.get_by_test_id("login-error")).to_contain_text("refused")
            problems.clear()  # the browser logs the 401 of that attempt
            await page.fill("#key", h.key)
            await page.click("#login-button")
            await expect(page.locator("#login")).to_be_hidden()

            # Overview: one scope card with the API's used / limit, the campaign listed.
            sender = await api(h, f"/v1/senders/{SENDER}")
            card = page.get_by_test_id("scope-card")
            await expect(card).to_have_count(1)
            await expect(card.get_by_test_id("overview-used")).to_have_text(
                f"{sender['used_24h']:,} / {sender['limit']:,}")
            await expect(page.get_by_test_id("campaign-row")).to_have_count(1)
            await expect(page.get_by_test_id("webhook-forwarding")).to_contain_text("Not forwarded")
            await shot(page, tmp_path, "dashboard-overview.png")
            # Forwarding to the app, once set, shows its URL and what was delivered.
            r = await h.client.put("/v1/webhook", json={"url": "http://127.0.0.1:9/hook"})
            assert r.status_code == 200, r.text
            await page.reload()
            forwarding = page.get_by_test_id("webhook-forwarding")
            await expect(forwarding).to_contain_text("http://127.0.0.1:9/hook")
            await expect(forwarding.get_by_test_id("webhook-delivered")).to_have_text("0")
            assert (await h.client.delete("/v1/webhook")).status_code == 204
            await page.reload()
            await expect(page.get_by_test_id("webhook-forwarding")).to_contain_text("Not forwarded")

            # Sender page: ladder step, gauge figures, release timeline and pause history as the API has them.
            await card.get_by_role("link").first.click()
            await expect(page.get_by_test_id("used")).to_have_text(f"{sender['used_24h']:,}")
            assert sender["used_24h"] == 1_000 and sender["limit"] == 1_000
            await expect(page.get_by_test_id("limit")).to_have_text(f"{sender['limit']:,}")
            await expect(page.get_by_test_id("remaining")).to_have_text(f"{sender['remaining']:,}")
            await expect(page.get_by_test_id("tier")).to_have_text(sender["tier"])
            await expect(page.get_by_test_id("quality")).to_have_text(sender["quality"])
            current = page.locator("[data-testid=ladder] rect[data-current=true]")
            await expect(current).to_have_count(1)
            assert "TIER_1K" in (await current.locator("title").text_content() or "")
            timeline = await api(h, f"/v1/senders/{SENDER}/timeline")
            freed = sum(b["freed"] for b in timeline["buckets"])
            await expect(page.get_by_test_id("freed-24h")).to_have_text(f"{freed:,} recipients leave the window")
            assert freed == sender["used_24h"]  # all of them were sent within the last 24 h
            history = page.get_by_test_id("history")
            await expect(history).to_contain_text("paused")
            await expect(history).to_contain_text("quality RED")
            await expect(history).to_contain_text("resumed")
            await expect(page.locator(f"a[href='#/campaign/{world.campaign}']")).to_have_count(1)  # its campaigns
            forecast = sender["forecast"]
            await expect(page.get_by_test_id("forecast-next")).to_have_text(forecast["next_tier"])
            await expect(page.get_by_test_id("forecast-needed")).to_have_text(f"{forecast['more_recipients_needed']:,}")
            await shot(page, tmp_path, "dashboard-sender.png")

            # Campaign page: progress by state and the day-by-day plan, as the API has them.
            await page.goto(f"{url}/?poll=1#/campaign/{world.campaign}")
            c = await api(h, f"/v1/campaigns/{world.campaign}")
            await expect(page.get_by_test_id("done")).to_have_text(f"{c['done']:,}")
            await expect(page.get_by_test_id("total")).to_have_text(f"{c['total']:,}")
            for state, count in c["counts"].items():
                await expect(page.get_by_test_id(f"count-{state}")).to_have_text(f"{count:,}")
            rows = page.get_by_test_id("plan-table").locator("tbody tr")
            await expect(rows).to_have_count(len(c["plan"]))
            for i, planned in enumerate(c["plan"]):
                cells = rows.nth(i).locator("td")
                await expect(cells.nth(2)).to_have_text(planned["tier"])
                assert number(await cells.nth(3).inner_text()) == planned["send"]
            await expect(page.locator("[data-testid=plan-chart] rect[data-day='1']")).to_have_attribute(
                "data-sent", str(c["done"]))
            await shot(page, tmp_path, "dashboard-campaign.png")

            # Live: the clock moves a day on; the open page follows without a reload.
            await h.advance(DAY)
            c = await api(h, f"/v1/campaigns/{world.campaign}")
            assert c["done"] == 2_000
            await expect(page.get_by_test_id("done")).to_have_text("2,000")
            await expect(page.locator("[data-testid=plan-chart] rect[data-day='2']")).to_have_attribute(
                "data-sent", "1000")

            # A phone: one column, nothing wider than the screen.
            await page.set_viewport_size({"width": 390, "height": 844})
            await page.goto(f"{url}/?poll=1#/sender/{SENDER}")
            await expect(page.get_by_test_id("used")).to_be_visible()
            overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"the page is {overflow}px wider than a phone"
            await shot(page, tmp_path, "dashboard-phone.png")
            assert not problems, problems

            # Another tenant's key sees none of this tenant's senders or campaigns.
            await page.click("#logout")
            await page.fill("#key", other_key)
            await page.click("#login-button")
            await page.goto(f"{url}/?poll=1#/")
            await expect(page.get_by_text("No senders yet")).to_be_visible()
            await page.goto(f"{url}/?poll=1#/campaign/{world.campaign}")
            await expect(page.get_by_text("not found").first).to_be_visible()
        finally:
            await browser.close()


async def test_an_archived_campaign_says_so_and_shows_its_kept_figures(tmp_path: Path) -> None:
    """Message retention deleted the campaign's messages: the page shows the archived figures and says so."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/services (it installs Debian's chromium)", pytrace=False)
    h = await make_harness(tmp_path, message_retention_days=31)
    try:
        await register(h, SENDER, "+15550783881", tier="TIER_250", quality="GREEN")
        c = await campaign(h, SENDER, "launch", numbers(300, 0))
        await h.advance(42 * DAY)
        assert await h.gateway.retention.prune() == (1, 300)
        kept = await api(h, f"/v1/campaigns/{c['id']}")
        assert kept["archived_at"] is not None and kept["done"] == 300
        async with served(h) as url, async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await (await browser.new_context(timezone_id="UTC")).new_page()
                problems: list[str] = []
                page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
                await page.goto(f"{url}/?poll=1")
                await page.fill("#key", h.key)
                await page.click("#login-button")
                await page.goto(f"{url}/?poll=1#/campaign/{c['id']}")
                await expect(page.get_by_test_id("campaign-archived")).to_contain_text("archived")
                await expect(page.get_by_test_id("done")).to_have_text("300")
                for state, n in kept["counts"].items():
                    await expect(page.get_by_test_id(f"count-{state}")).to_have_text(f"{n:,}")
                assert not problems, problems
            finally:
                await browser.close()
    finally:
        await h.client.aclose()
        await h.gateway.close()
