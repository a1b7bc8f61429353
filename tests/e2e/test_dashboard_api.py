"""The dashboard's page and read endpoints over the ASGI app: tenant-scoped, numbers from the ledger."""

from __future__ import annotations

import httpx
from tests.e2e.conftest import T0, Harness
from tests.e2e.dashboard_world import DAY, HOUR, SENDER, campaign, numbers, register


async def other_tenant(h: Harness) -> httpx.AsyncClient:
    tenant = (await h.client.post("/v1/tenants", json={"name": "other"})).json()
    key = (await h.client.post("/v1/keys", json={"tenant_id": tenant["id"]})).json()["key"]
    return httpx.AsyncClient(transport=h.client._transport, base_url=str(h.client.base_url),
                             headers={"Authorization": f"Bearer {key}"})


async def test_page_and_files_are_served_without_a_key(harness: Harness) -> None:
    anonymous = httpx.AsyncClient(transport=harness.client._transport, base_url=str(harness.client.base_url))
    page = await anonymous.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/dashboard/app.js" in page.text and "default-src 'self'" in page.headers["content-security-policy"]
    for path, kind in (("/dashboard/app.js", "javascript"), ("/dashboard/app.css", "text/css")):
        r = await anonymous.get(path)
        assert r.status_code == 200 and kind in r.headers["content-type"], path
    assert (await anonymous.get("/dashboard/__init__.py")).status_code == 404
    assert (await anonymous.get(f"/v1/senders/{SENDER}/timeline")).status_code == 401


async def test_timeline_ladder_and_days_follow_the_ledger(harness: Harness) -> None:
    h = harness
    await register(h, SENDER, "+15550783881", tier="TIER_1K", quality="GREEN")
    c = await campaign(h, SENDER, "launch", numbers(1_500, 0))
    await h.advance(5 * HOUR)

    tl = (await h.client.get(f"/v1/senders/{SENDER}/timeline")).json()
    assert (tl["limit"], tl["used_24h"], tl["remaining"]) == (1_000, 1_000, 0)
    assert len(tl["buckets"]) == 24 and tl["now"] == T0 + 5 * HOUR
    assert sum(b["freed"] for b in tl["buckets"]) == 1_000
    # Sent from 00:00:00 at 80/s, each held 24 h plus the safety margin (30 s): all free in the hour from
    # 00:00 next day (bucket 19 counting from 05:00), none before.
    assert [i for i, b in enumerate(tl["buckets"]) if b["freed"]] == [19]
    assert tl["buckets"][19]["available_after"] == 1_000
    assert tl["buckets"][0]["available_after"] == 0

    ladder = (await h.client.get(f"/v1/senders/{SENDER}/ladder")).json()
    assert [s["tier"] for s in ladder["steps"]] == ["TIER_250", "TIER_1K", "TIER_10K", "TIER_100K", "TIER_UNLIMITED"]
    assert [s["current"] for s in ladder["steps"]] == [False, True, False, False, False]
    assert ladder["steps"][0]["climb"] == "business verification"
    assert "2,000 distinct counted recipients in 7 days" in ladder["steps"][1]["climb"]

    days = (await h.client.get(f"/v1/campaigns/{c['id']}/days")).json()
    assert days["today"] == 1 and days["waiting"] == 500
    assert [(d["planned"], d["planned_tier"]) for d in days["days"]] == [(1_000, "TIER_1K"), (500, "TIER_1K")]
    assert [(d["sent"], d["tier"]) for d in days["days"]] == [(1_000, "TIER_1K"), (None, None)]
    assert days["finish_by"] == T0 + 2 * DAY  # the rest goes on day 2, when the window frees

    await h.advance(DAY)
    days = (await h.client.get(f"/v1/campaigns/{c['id']}/days")).json()
    assert [d["sent"] for d in days["days"]] == [1_000, 500] and days["waiting"] == 0 and days["finish_by"] is None
    assert days["finished_day"] == 2 and days["planned_finish"] == T0 + 2 * DAY


async def test_tier_changes_show_on_the_day_they_were_in_force(harness: Harness) -> None:
    h = harness
    await register(h, SENDER, "+15550783881", tier="TIER_1K", quality="GREEN")
    c = await campaign(h, SENDER, "launch", numbers(4_000, 0))
    await h.advance(2 * DAY + HOUR)  # 1,000 + 1,000: the day-2 boundary raises the tier to 10K
    days = (await h.client.get(f"/v1/campaigns/{c['id']}/days")).json()["days"]
    assert [d["tier"] for d in days[:3]] == ["TIER_1K", "TIER_1K", "TIER_10K"]
    assert [d["sent"] for d in days[:3]] == [1_000, 1_000, 2_000]


async def test_other_tenants_get_404_for_every_dashboard_endpoint(harness: Harness) -> None:
    h = harness
    await register(h, SENDER, "+15550783881")
    c = await campaign(h, SENDER, "launch", numbers(3, 0))
    other = await other_tenant(h)
    for path in (f"/v1/senders/{SENDER}/timeline", f"/v1/senders/{SENDER}/ladder", f"/v1/campaigns/{c['id']}/days",
                 "/v1/senders/nope/timeline", "/v1/campaigns/nope/days"):
        r = await other.get(path)
        assert r.status_code == 404, (path, r.text)
        assert "not found" in r.json()["error"]["message"]
    assert (await other.get("/v1/senders")).json() == []
