"""``trust_model``: a scope that trusts the policy model is admitted by the tier the model says it
has earned, until the platform reports a tier (rules.md, "Who decides the tier")."""

from __future__ import annotations

from typing import Any

from tiergate.adapters.store import open_store
from tiergate.clock import VirtualClock
from tiergate.core.model import NewMessage, Scope, Sender, Tenant
from tiergate.core.tiers import admission_tier
from tiergate.ports import LedgerChange, MessageState, MessageUpdate
from tiergate.service.dispatcher import Dispatcher
from tiergate.service.forecast import refresh_predictions
from tiergate.service.state import SenderState

T0 = 1_767_571_200.0
HOUR = 3600.0


async def crossed_portfolio(store: Any, *, trust: bool) -> Scope:
    """A portfolio scope at TIER_2K whose 1,000 counted sends (half its limit) crossed 7 h ago."""
    await store.create_tenant(Tenant("t1", "t1", created_at=T0))
    scope = await store.upsert_scope(Scope("portfolio:p1", "t1", policy="portfolio", tier="TIER_2K",
                                           quality="GREEN", trust_model=trust))
    await store.create_sender(Sender("100", "t1", "+100", scope.id, created_at=T0))
    sent_at = T0 - 7 * HOUR
    messages = await store.insert_messages(
        [NewMessage(tenant_id="t1", sender_id="100", to=f"5511{i:09d}", kind="template", category="MARKETING",
                    body={}, priority=2) for i in range(1000)], sent_at - 1)
    await store.apply_updates([MessageUpdate(m.id, MessageState.SENT, sent_at, counted=True, sent_at=sent_at)
                               for m in messages],
                              [LedgerChange(scope.id, m.to, sent_at + 86_400) for m in messages])
    return scope


async def test_a_trusting_scope_is_admitted_by_the_earned_tier_until_the_platform_speaks() -> None:
    async with open_store(":memory:") as store:
        scope = await crossed_portfolio(store, trust=True)
        assert await refresh_predictions(store, T0) == ([scope.id], [])
        scope = await store.get_scope(scope.id)
        assert scope.predicted_tier == "TIER_10K"
        assert Dispatcher._limit(scope) == 10_000
        assert await refresh_predictions(store, T0 + 60) == ([], [])  # unchanged: nothing to announce

        clock = VirtualClock(T0 + 120)
        state = SenderState(store, clock, on_capacity=lambda *_: None)
        await state.set_tier(scope.id, "TIER_10K", "webhook")  # the platform confirms: its word replaces ours
        scope = await store.get_scope(scope.id)
        assert (scope.tier, scope.predicted_tier) == ("TIER_10K", None)
        assert Dispatcher._limit(scope) == 10_000


async def test_a_scope_that_does_not_trust_the_model_keeps_the_platforms_tier() -> None:
    async with open_store(":memory:") as store:
        scope = await crossed_portfolio(store, trust=False)
        assert await refresh_predictions(store, T0) == ([], [])
        assert (await store.get_scope(scope.id)).predicted_tier is None
        assert Dispatcher._limit(scope) == 2_000
        # A prediction left from when it trusted the model is dropped, and never used meanwhile.
        await store.update_scope(scope.id, {"predicted_tier": "TIER_10K"})
        assert Dispatcher._limit(await store.get_scope(scope.id)) == 2_000
        assert await refresh_predictions(store, T0) == ([], [scope.id])
        assert (await store.get_scope(scope.id)).predicted_tier is None


async def test_no_prediction_before_the_upgrade_is_due() -> None:
    async with open_store(":memory:") as store:
        await crossed_portfolio(store, trust=True)
        assert await refresh_predictions(store, T0 - 2 * HOUR) == ([], [])  # 5 h after the crossing: not yet


def test_admission_tier() -> None:
    assert admission_tier("TIER_2K", "TIER_10K", True).limit == 10_000
    assert admission_tier("TIER_2K", "TIER_10K", False).limit == 2_000
    assert admission_tier("TIER_10K", "TIER_2K", True).limit == 10_000  # never below the platform's
    assert admission_tier("TIER_2K", "TIER_BOGUS", True).limit == 2_000
    assert admission_tier("TIER_2K", None, True).limit == 2_000
