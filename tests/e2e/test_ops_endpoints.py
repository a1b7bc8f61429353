"""/healthz and /metrics answer from small reads: what is live (the backlog, the windows), not every
message ever sent."""

from __future__ import annotations

from tests.e2e.conftest import Harness
from tests.e2e.dashboard_world import HOUR, SENDER, campaign, numbers, register

from tiergate.adapters.store.sql import migrations
from tiergate.service.metrics import METRICS


async def test_metrics_show_the_backlog_by_state_and_each_windows_use(harness: Harness) -> None:
    h = harness
    await register(h, SENDER, "+15550783881", tier="TIER_250", quality="GREEN")
    c = await campaign(h, SENDER, "launch", numbers(300, 0))
    await h.advance(HOUR)  # 250 go, 50 wait for the window

    def gauges() -> dict[str, float | None]:
        sample = METRICS.registry.get_sample_value
        return {**{state: sample("tiergate_queue_depth", {"state": state}) for state in ("queued", "held", "sending")},
                "used": sample("tiergate_window_used", {"scope": f"sender:{SENDER}"}),
                "usage": sample("tiergate_window_usage_ratio", {"scope": f"sender:{SENDER}"})}

    assert (await h.client.get("/metrics")).status_code == 200
    assert gauges() == {"queued": 50, "held": 0, "sending": 0, "used": 250, "usage": 1.0}
    assert (await h.client.post(f"/v1/campaigns/{c['id']}/pause")).status_code == 200
    await h.client.get("/metrics")
    assert gauges() == {"queued": 0, "held": 50, "sending": 0, "used": 250, "usage": 1.0}
    assert METRICS.registry.get_sample_value("tiergate_queue_depth", {"state": "sent"}) is None  # ended: counters


async def test_status_webhooks_are_counted_by_status(harness: Harness) -> None:
    h = harness
    sample = METRICS.registry.get_sample_value
    before = {s: sample("tiergate_statuses_total", {"status": s}) or 0 for s in ("delivered", "other")}
    await register(h, SENDER, "+15550783881", tier="TIER_250", quality="GREEN")
    await campaign(h, SENDER, "launch", numbers(20, 0))
    await h.advance(HOUR)  # the sandbox platform reports what it delivered, as webhooks
    assert (sample("tiergate_statuses_total", {"status": "delivered"}) or 0) > before["delivered"]
    body = {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp", "metadata": {"phone_number_id": SENDER},
        "statuses": [{"id": "wamid.unknown", "status": "reborn", "timestamp": "1700000000", "recipient_id": "1"}]}}]}]}
    await h.gateway.webhooks.apply_body(body)
    assert sample("tiergate_statuses_total", {"status": "other"}) == before["other"] + 1  # no label per new string
    assert sample("tiergate_statuses_total", {"status": "reborn"}) is None


async def test_healthz_names_the_schema_it_runs_on(harness: Harness) -> None:
    body = (await harness.client.get("/healthz")).json()
    assert body["status"] == "ok" and body["provider"] == "sandbox"
    assert body["schema"] == migrations("sqlite")[-1][0]
