"""Message retention through the gateway: ended messages go, a finished campaign reads the same."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import make_harness
from tests.e2e.dashboard_world import DAY, HOUR, SENDER, campaign, numbers, register

from tiergate.service.metrics import METRICS


async def test_a_finished_campaign_reads_the_same_after_its_messages_are_deleted(tmp_path: Path) -> None:
    h = await make_harness(tmp_path, message_retention_days=31)
    try:
        await register(h, SENDER, "+15550783881", tier="TIER_250", quality="GREEN")
        c = await campaign(h, SENDER, "launch", numbers(300, 0))
        r = await h.client.post("/v1/messages", json={"sender": SENDER, "to": "+5511990000001",
                                                      "template": {"name": "receipt", "language": "en_US"},
                                                      "category": "UTILITY"})
        assert r.status_code == 202, r.text
        single = r.json()["id"]
        await h.advance(2 * DAY + HOUR)  # 249 on day 1 (the single message took a slot), 51 on day 2
        assert await h.gateway.retention.prune() == (0, 0)  # nothing is old enough yet

        await h.advance(40 * DAY)
        before = (await h.client.get(f"/v1/campaigns/{c['id']}")).json()
        days_before = (await h.client.get(f"/v1/campaigns/{c['id']}/days")).json()
        assert before["done"] == 300 and before["archived_at"] is None
        assert [d["sent"] for d in days_before["days"][:3]] == [249, 51, 0]

        sample = METRICS.registry.get_sample_value
        pruned, archived = sample("tiergate_messages_pruned_total"), sample("tiergate_campaigns_archived_total")
        assert await h.gateway.retention.prune() == (1, 301)  # the campaign's 300 and the single message
        metrics = (await h.client.get("/metrics")).text
        assert sample("tiergate_messages_pruned_total") == (pruned or 0) + 301
        assert sample("tiergate_campaigns_archived_total") == (archived or 0) + 1
        assert "tiergate_messages_pruned_total" in metrics
        assert sample("tiergate_database_bytes") > 0  # set by the same /metrics read
        after = (await h.client.get(f"/v1/campaigns/{c['id']}")).json()
        assert after["archived_at"] == h.clock.now()
        assert {k: v for k, v in after.items() if k != "archived_at"} == \
            {k: v for k, v in before.items() if k != "archived_at"}
        assert (await h.client.get(f"/v1/campaigns/{c['id']}/days")).json() == days_before
        assert (await h.client.get(f"/v1/messages/{single}")).status_code == 404
        listed = await h.client.get("/v1/messages", params={"campaign_id": c["id"]})
        assert listed.status_code == 200 and listed.json() == []
        assert await h.gateway.retention.prune() == (0, 0)
    finally:
        await h.client.aclose()
        await h.gateway.close()
