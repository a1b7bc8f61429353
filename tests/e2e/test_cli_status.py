"""``tiergate status``: the senders table from the store (all tenants) and from a running server (one tenant)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from tests.e2e.cli_server import Served, clean, register, tiergate

from tiergate.adapters.provider.sandbox import SandboxProvider
from tiergate.clock import VirtualClock
from tiergate.service.campaigns import CampaignRequest
from tiergate.service.gateway import Gateway
from tiergate.service.intake import SenderRequest
from tiergate.service.simulate import advance_to
from tiergate.settings import Settings

SENDER = "400000000000001"


async def seed(db: str) -> None:
    """A TIER_250 sender that sent its 250 an hour ago (1,000 more wait), then went RED."""
    clock = VirtualClock(time.time() - 3600)
    provider = SandboxProvider(clock, seed=3)
    gw = await Gateway.open(Settings(database_url=db, worker_id="seed"), clock=clock, provider=provider,
                            wall_clock=clock)
    try:
        tenant = await gw.auth.create_tenant("acme")
        await gw.intake.register_sender(tenant, SenderRequest(
            phone_number_id=SENDER, display_phone_number="+15550783881", tier="TIER_250", quality="GREEN",
            throughput_mps=1000))
        await gw.campaigns.create(tenant, CampaignRequest(
            sender=SENDER, template={"name": "promo"}, recipients=[{"to": f"+55119{i:08d}"} for i in range(1_250)]))
        await advance_to(gw, clock, clock.now() + 60)
        provider.set_quality(SENDER, "RED")
        await advance_to(gw, clock, clock.now() + 1)
    finally:
        await gw.close()


async def test_status_from_the_store(tmp_path: Path) -> None:
    db = str(tmp_path / "status.db")
    await seed(db)
    done = tiergate("status", "--database-url", db)
    assert done.returncode == 0, done.stderr
    out = clean(done.stdout)
    for expected in ("+15550783881", SENDER, "TIER_250 1/5", "250 / 250", "100%", "in 2", "RED",
                     "marketing: quality RED", "TIER_1K", "own window"):
        assert expected in out, (expected, done.stdout)
    assert re.search(r"in 2[23] h", out), out  # the 250 were sent an hour ago
    rows = json.loads(tiergate("status", "--database-url", db, "--json").stdout)
    assert [(r["id"], r["used_24h"], r["limit"], r["quality"]) for r in rows] == [(SENDER, 250, 250, "RED")]
    assert rows[0]["forecast"]["next_tier"] == "TIER_1K"


def test_status_from_a_running_server_shows_only_the_tenant(served: Served) -> None:
    register(served, "400000000000002", tier="TIER_1K", quality="GREEN")
    done = tiergate("status", "--url", served.url, "--api-key", served.key)
    assert done.returncode == 0, done.stderr
    out = clean(done.stdout)
    assert "400000000000002" in out and "TIER_1K 2/5" in out and "0 / 1,000" in out and "TIER_10K" in out
    with served.client() as c:
        tenant = c.post("/v1/tenants", json={"name": "other"}).json()
        other = c.post("/v1/keys", json={"tenant_id": tenant["id"]}).json()["key"]
    done = tiergate("status", TIERGATE_URL=served.url, TIERGATE_API_KEY=other)
    assert done.returncode == 0 and "no senders yet" in done.stdout


def test_status_errors_are_one_line(tmp_path: Path) -> None:
    for args, message in ((["--url", "http://127.0.0.1:9", "--api-key", "k"], "cannot reach tiergate"),
                          (["--database-url", "postgresql://nobody@127.0.0.1:9/x"], "cannot open")):
        done = tiergate("status", *args)
        assert done.returncode != 0 and message in clean(done.stderr), done.stderr
        assert done.stderr.strip().startswith("error:") and "Traceback" not in done.stderr
