"""Graph API sync (issue 4): the sender's tier, quality, status and throughput read over real HTTP from
the fake Graph API and applied as a webhook would; the management-call budget stops a round."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.e2e.conftest import Harness, make_harness
from tests.fakes.fake_graph import FakeGraph

from tiergate.adapters.provider.cloud import CloudProvider

SENDER = "106540352242922"
TOKEN = "sync-token"


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraph]:
    async with FakeGraph(token=TOKEN) as fake:
        yield fake


@pytest.fixture
async def h(tmp_path: Path, graph: FakeGraph) -> AsyncIterator[Harness]:
    harness = await make_harness(tmp_path, provider=CloudProvider(graph.base_url, TOKEN))
    r = await harness.client.post("/v1/senders", json={
        "phone_number_id": SENDER, "display_phone_number": "+15550783881", "tier": "TIER_250", "quality": "GREEN"})
    assert r.status_code == 201, r.text
    try:
        yield harness
    finally:
        await harness.client.aclose()
        await harness.gateway.close()


async def test_sync_applies_what_changed_and_records_it(h: Harness, graph: FakeGraph) -> None:
    graph.set_phone_number(SENDER, whatsapp_business_manager_messaging_limit="TIER_2K", quality_rating="YELLOW")
    report = await h.gateway.sync.sync_all()
    assert report.checked == 1 and not report.errors and not report.throttled
    assert any("TIER_250 -> TIER_2K" in c for c in report.changed), report.changed
    assert any("GREEN -> YELLOW" in c for c in report.changed), report.changed
    sender = (await h.client.get(f"/v1/senders/{SENDER}")).json()
    assert sender["tier"] == "TIER_2K" and sender["limit"] == 2000 and sender["quality"] == "YELLOW"
    events = (await h.client.get(f"/v1/senders/{SENDER}/events")).json()
    assert any("graph sync" in str(e) for e in events), events
    again = await h.gateway.sync.sync_all()
    assert again.checked == 1 and again.changed == [], "a second round with nothing new changes nothing"


async def test_integer_limits_and_the_old_field_are_understood(h: Harness, graph: FakeGraph) -> None:
    graph.set_phone_number(SENDER, whatsapp_business_manager_messaging_limit=None, messaging_limit_tier="TIER_10K")
    await h.gateway.sync.sync_all()
    assert (await h.client.get(f"/v1/senders/{SENDER}")).json()["tier"] == "TIER_10K"


async def test_management_budget_error_stops_the_round(h: Harness, graph: FakeGraph) -> None:
    graph.add_fault(80007, on="get")
    report = await h.gateway.sync.sync_all()
    assert report.throttled and report.checked == 0 and report.errors
    assert (await h.client.get(f"/v1/senders/{SENDER}")).json()["tier"] == "TIER_250", "nothing applied"
