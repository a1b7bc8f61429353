"""Screenshots of the dashboard for docs/: a simulated world at the end of a multi-day campaign.

Run ``scripts/screenshots`` (it needs Debian's chromium at /usr/bin/chromium). The world is built on
the real path (API, dispatcher, sandbox platform, SQLite) under a virtual clock, served by uvicorn on
127.0.0.1, and photographed with Playwright: laptop pages for a sender, a campaign and the overview,
and the sender page at phone width. It also draws docs/plan.svg with ``tiergate plan --chart``'s code.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.async_api import Page, async_playwright  # noqa: E402
from tests.e2e.conftest import make_harness  # noqa: E402
from tests.e2e.dashboard_world import CHROMIUM, CHROMIUM_ARGS, SENDER, full_world, served  # noqa: E402

from tiergate.cli.chart import write_chart  # noqa: E402
from tiergate.core.planner import plan  # noqa: E402
from tiergate.core.policy import get_policy  # noqa: E402
from tiergate.core.tiers import parse_tier  # noqa: E402


async def settle(page: Page, selector: str) -> None:
    """The page has drawn its data (and its charts) once."""
    await page.wait_for_selector(selector)
    await page.wait_for_selector("#live .dot")
    await page.wait_for_timeout(300)


async def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tiergate-shots-") as tmp:
        h = await make_harness(Path(tmp))
        try:
            world = await full_world(h)
            print(f"world built in {time.perf_counter() - started:.0f} s")
            async with served(h) as url, async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    laptop = await browser.new_context(viewport={"width": 1280, "height": 860}, timezone_id="UTC")
                    page = await laptop.new_page()
                    await page.goto(f"{url}/?poll=60")
                    await page.fill("#key", h.key)
                    await page.click("#login-button")
                    await settle(page, "[data-testid=scope-card]")
                    await page.screenshot(path=str(out / "dashboard-overview.png"), full_page=True)
                    await page.goto(f"{url}/?poll=60#/sender/{SENDER}")
                    await settle(page, "[data-testid=forecast]")
                    await page.screenshot(path=str(out / "dashboard-sender.png"), full_page=True)
                    await page.goto(f"{url}/?poll=60#/campaign/{world.campaign}")
                    await settle(page, "[data-testid=plan-chart]")
                    await page.screenshot(path=str(out / "dashboard-campaign.png"), full_page=True)
                    phone = await browser.new_context(viewport={"width": 390, "height": 844}, timezone_id="UTC",
                                                      device_scale_factor=2, is_mobile=True, has_touch=True)
                    page = await phone.new_page()
                    await page.goto(f"{url}/?poll=60")
                    await page.fill("#key", h.key)
                    await page.click("#login-button")
                    await settle(page, "[data-testid=scope-card]")
                    await page.goto(f"{url}/?poll=60#/campaign/{world.campaign}")
                    await settle(page, "[data-testid=plan-chart]")
                    await page.screenshot(path=str(out / "dashboard-phone.png"))
                finally:
                    await browser.close()
        finally:
            await h.client.aclose()
            await h.gateway.close()
    classic = get_policy("classic")
    write_chart(plan(50_000, classic, parse_tier("TIER_1K")), out / "plan.svg")
    for name in ("dashboard-overview.png", "dashboard-sender.png", "dashboard-campaign.png", "dashboard-phone.png",
                 "plan.svg"):
        print(f"{out / name}: {(out / name).stat().st_size:,} bytes")
    print(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="folder for the pictures [docs/]")
    asyncio.run(main(parser.parse_args().out))
