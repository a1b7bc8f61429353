"""``GET /v1/campaigns``: newest first, a page at a time, by sender or state; bad filters are 422s."""

from __future__ import annotations

from tests.e2e.conftest import Harness
from tests.e2e.dashboard_world import PORTFOLIO_SENDERS, SENDER, campaign, numbers, register


async def test_campaigns_list_newest_first_by_page_sender_and_state(harness: Harness) -> None:
    h = harness
    await register(h, SENDER, "+15550783881", tier="TIER_1K", quality="GREEN")
    other, phone = PORTFOLIO_SENDERS[0]
    await register(h, other, phone, tier="TIER_1K", quality="GREEN")
    made = [await campaign(h, SENDER if i % 2 == 0 else other, f"c{i}", numbers(3, 10 * i)) for i in range(5)]
    ids = [c["id"] for c in made]
    assert (await h.client.post(f"/v1/campaigns/{ids[1]}/pause")).status_code == 200

    async def listed(**params: object) -> list[str]:
        r = await h.client.get("/v1/campaigns", params=params)
        assert r.status_code == 200, r.text
        return [c["id"] for c in r.json()]

    assert await listed() == ids[::-1]
    assert await listed(limit=2) == [ids[4], ids[3]]
    assert await listed(limit=2, before=ids[3]) == [ids[2], ids[1]]
    assert await listed(limit=2, before=ids[1]) == [ids[0]]
    assert await listed(sender=SENDER) == [ids[4], ids[2], ids[0]]
    assert await listed(state="paused") == [ids[1]]
    assert await listed(sender=SENDER, state="paused") == []
    for bad, field in (({"state": "done"}, "state"), ({"limit": 0}, "limit"), ({"limit": 1001}, "limit")):
        r = await h.client.get("/v1/campaigns", params=bad)
        assert r.status_code == 422 and field in r.text, (bad, r.text)
