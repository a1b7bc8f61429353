"""``Store.campaign_sends_between`` on both adapters: the dashboard's day-by-day actual sends."""

from __future__ import annotations

from tests.integration.test_store_contract import DAY, T0, new, seed

from tiergate.adapters.store.sql import SqlStore
from tiergate.core.model import Campaign, MessageState
from tiergate.ports import MessageUpdate


async def test_sends_are_bucketed_by_period_edges(store: SqlStore) -> None:
    await seed(store)
    await store.create_campaign(Campaign("c1", "t1", "100", "launch", {}, "MARKETING", created_at=T0))
    ours = await store.insert_messages([new(f"55119{i:08d}", campaign_id="c1") for i in range(6)], T0)
    other = await store.insert_messages([new("5511988887777")], T0)  # no campaign: never counted here
    # Sent at: the first edge exactly, inside day 1, the day-2 edge exactly, inside day 2, after the last edge.
    sent_at = [T0, T0 + 10, T0 + DAY, T0 + DAY + 5, T0 + 3 * DAY]
    updates = [MessageUpdate(m.id, MessageState.SENT, at, sent_at=at) for m, at in zip(ours, sent_at, strict=False)]
    updates.append(MessageUpdate(other[0].id, MessageState.SENT, T0 + 1, sent_at=T0 + 1))
    await store.apply_updates(updates)  # ours[5] stays queued: not sent, not counted

    assert await store.campaign_sends_between("c1", [T0, T0 + DAY, T0 + 2 * DAY]) == [2, 2]
    edges = [T0 - DAY, T0, T0 + DAY, T0 + 2 * DAY, T0 + 4 * DAY]
    assert await store.campaign_sends_between("c1", edges) == [0, 2, 2, 1]
    assert await store.campaign_sends_between("c1", [T0]) == []
    assert await store.campaign_sends_between("nope", [T0, T0 + DAY]) == [0]
