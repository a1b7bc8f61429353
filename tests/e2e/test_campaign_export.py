"""``GET /v1/campaigns/{id}/messages.csv``: every message of a campaign as CSV, a page at a time."""

from __future__ import annotations

import csv
import io

from tests.e2e.conftest import Harness
from tests.e2e.dashboard_world import HOUR, SENDER, campaign, numbers, register

from tiergate.service.exports import EXPORT_COLUMNS, _text, campaign_messages_csv


async def test_a_campaigns_messages_come_out_as_csv(harness: Harness) -> None:
    h = harness
    await register(h, SENDER, "+15550783881", tier="TIER_250", quality="GREEN")
    c = await campaign(h, SENDER, "launch", numbers(300, 0))
    await h.advance(HOUR)  # 250 go, 50 wait for the window

    r = await h.client.get(f"/v1/campaigns/{c['id']}/messages.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert f'filename="{c["id"]}-messages.csv"' in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert tuple(rows[0]) == EXPORT_COLUMNS and len(rows) == 300 == len(r.text.splitlines()) - 1
    by_state: dict[str, int] = {}
    for row in rows:
        by_state[row["state"]] = by_state.get(row["state"], 0) + 1
    assert by_state.get("queued") == 50 and sum(by_state.values()) == 300
    sent = next(row for row in rows if row["state"] != "queued")
    assert sent["wamid"] and sent["sent_at"].endswith("Z") and sent["attempts"] == "1"
    assert [row["id"] for row in rows] == sorted((row["id"] for row in rows), reverse=True)  # newest first

    queued = await h.client.get(f"/v1/campaigns/{c['id']}/messages.csv", params={"state": "queued"})
    assert len(list(csv.DictReader(io.StringIO(queued.text)))) == 50
    bad = await h.client.get(f"/v1/campaigns/{c['id']}/messages.csv", params={"state": "gone"})
    assert bad.status_code == 422 and "state" in bad.text
    missing = await h.client.get("/v1/campaigns/cmp_nope/messages.csv")
    assert missing.status_code == 404


async def test_pages_of_the_export_join_into_the_whole(harness: Harness) -> None:
    h = harness
    await register(h, SENDER, "+15550783881", tier="TIER_250", quality="GREEN")
    c = await campaign(h, SENDER, "launch", numbers(23, 0))
    tenant = (await h.client.get("/v1/tenant")).json()["id"]
    whole = "".join([chunk async for chunk in campaign_messages_csv(h.gateway.store, tenant, c["id"])])
    paged = "".join([chunk async for chunk in campaign_messages_csv(h.gateway.store, tenant, c["id"], page=5)])
    assert paged == whole and len(whole.splitlines()) == 24


def test_free_text_stays_on_one_line_and_is_never_a_formula() -> None:
    assert _text("=HYPERLINK(\"x\")") == "'=HYPERLINK(\"x\")"
    assert _text("-1 rate\nlimit") == "'-1 rate limit"
    assert _text("messaging limit (250/250)") == "messaging limit (250/250)"
