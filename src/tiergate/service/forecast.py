"""The policy model applied to stored scopes: upgrade forecasts and campaign plans.

The platform decides tiers; this is what the model predicts from the scope's counted history,
for the API, the dashboard and campaign plans (and for admission only where a scope trusts it).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from tiergate.core.planner import Forecast, forecast, plan
from tiergate.core.policy import PolicyState, Timing, day_start, get_policy, parse_quality
from tiergate.core.tiers import parse_tier
from tiergate.core.window import DAY
from tiergate.ports import Store

__all__ = ["forecast_scope", "history_batches", "plan_for_scope", "policy_state", "refresh_predictions",
           "utc_offset"]

HISTORY_DAYS = 30


def utc_offset(tz_name: str, at: float) -> float:
    """The scope's offset from UTC in seconds at ``at`` (0 for UTC or an unknown zone)."""
    try:
        offset = datetime.fromtimestamp(at, UTC).astimezone(ZoneInfo(tz_name)).utcoffset()
    except Exception:
        return 0.0
    return offset.total_seconds() if offset else 0.0


def policy_state(scope: Any) -> PolicyState:
    return PolicyState(tier=parse_tier(scope.tier), quality=parse_quality(scope.quality or "UNKNOWN"),
                       red_streak=scope.red_days, pending_upgrade_at=scope.upgrade_pending_at)


async def _history(store: Store, scope: Any, now: float, offset: float) -> tuple[list[tuple[float, int]], int]:
    """(time, recipients whose latest counted send was then) over the last 30 days, and the
    distinct counted recipients of the last 7 days, from one read.

    Recipients still in the 24 h window keep their exact send time; older ones are placed at the
    start of the local day of their latest send, which is all day-based rules need. (A recipient
    whose send is still unanswered has no send time yet: it is placed 24 h before its slot frees,
    which errs late, never early.) The store aggregates: a big sender's million sends of the month
    come back as a few thousand rows.
    """
    history = await store.counted_history(scope.id, now - HISTORY_DAYS * DAY, now, offset, recent_since=now - 7 * DAY)
    batches = Counter({day_start(day, offset): n for day, n in history.by_day})
    for at, n in history.in_window:
        batches[at] += n
    return sorted(batches.items()), history.recent


async def history_batches(store: Store, scope: Any, now: float, offset: float) -> list[tuple[float, int]]:
    """The scope's last 30 days as the policy reads them (see ``_history``)."""
    return (await _history(store, scope, now, offset))[0]


def crossing_state(policy: str, state: PolicyState, history: list[tuple[float, int]], now: float) -> PolicyState:
    """A threshold judged on crossing (the portfolio era) takes effect some hours after the send
    that crossed it; the platform does not say when that was, so replay the scope's own counted
    sends through the policy to find it. (The history places each recipient at their latest send,
    so a crossing is found no earlier than it happened: the prediction errs late, never early.)"""
    if state.pending_upgrade_at is not None:
        return state
    rules = get_policy(policy)
    rule = rules.upgrade_rule(state.tier)
    if rule is None or rule.timing is not Timing.ON_CROSSING:
        return state
    span = rule.window_days * DAY
    times = [t for t, _n in history]
    counts = [n for _t, n in history]
    running = 0
    first = 0
    for i, t in enumerate(times):
        running += counts[i]
        while times[first] <= t - span:
            running -= counts[first]
            first += 1
        crossed = rules.observe(state, {rule.window_days: running}, t)
        if crossed.pending_upgrade_at is not None:
            # Still pending, or overdue (the platform's webhook has not come yet): any moment now.
            return replace(crossed, pending_upgrade_at=max(crossed.pending_upgrade_at, now + 1.0))
    return state


async def _forecast(store: Store, scope: Any, now: float) -> tuple[Forecast, int]:
    """The policy model's next step for the scope, from its stored history, and the distinct
    counted recipients of its last 7 days (ValueError: no model)."""
    offset = utc_offset(scope.timezone, now)
    history, unique_7d = await _history(store, scope, now, offset)
    state = crossing_state(scope.policy, policy_state(scope), history, now)
    return (forecast(scope.policy, state, now, history=history, reserve=scope.reserve_fraction, utc_offset=offset),
            unique_7d)


async def forecast_scope(store: Store, scope: Any, now: float) -> dict[str, Any]:
    try:
        result, unique_7d = await _forecast(store, scope, now)
    except ValueError as exc:
        return {"policy": scope.policy, "current_tier": scope.tier, "next_tier": None, "note": str(exc)}
    return {
        "policy": scope.policy,
        "current_tier": scope.tier,
        "next_tier": result.next_tier.name if result.next_tier else None,
        "predicted_at": result.at,
        "more_recipients_needed": result.needed,
        "days_needed": result.days,
        "unique_7d": unique_7d,
        "status": result.status,
        "note": result.reason,
    }


async def plan_for_scope(store: Store, scope: Any, audience: int, now: float,
                         daily_cap: int | None = None) -> list[dict[str, Any]]:
    """The fastest day-by-day plan for ``audience`` new recipients from this scope's situation."""
    offset = utc_offset(scope.timezone, now)
    history = await history_batches(store, scope, now, offset)
    result = plan(audience, get_policy(scope.policy), policy_state(scope), history=history, daily_cap=daily_cap,
                  reserve=scope.reserve_fraction, start_at=now, utc_offset=offset)
    return list(result.to_dict()["days"])


def _earned_tier(result: Forecast, tier: str, now: float) -> str | None:
    """The higher tier the model says is earned by now (due "any moment now" counts), if any."""
    nxt, at = result.next_tier, result.at
    if result.status != "earned" or nxt is None or at is None or at > now + 1.0:
        return None
    return nxt.name if nxt.capacity() > parse_tier(tier).capacity() else None


async def refresh_predictions(store: Store, now: float) -> tuple[list[str], list[str]]:
    """For the scopes that trust the model: record the tier the policy says they have earned by now
    (``predicted_tier``), which admission may use before the platform confirms it, and drop a
    prediction that no longer holds (the platform's own tier caught up, quality fell, ...).

    Returns (scopes whose usable tier rose, scopes whose prediction was dropped). An earned upgrade
    the platform has not reported yet reads as due "any moment now" (a second ahead): that counts.
    """
    raised: list[str] = []
    dropped: list[str] = []
    for scope in await store.list_scopes():
        if not scope.trust_model and scope.predicted_tier is None:
            continue
        predicted: str | None = None
        if scope.trust_model:
            with contextlib.suppress(ValueError):  # a policy the model does not know: nothing to predict
                predicted = _earned_tier((await _forecast(store, scope, now))[0], scope.tier, now)
        if predicted == scope.predicted_tier:
            continue
        await store.update_scope(scope.id, {"predicted_tier": predicted})
        (raised if predicted is not None else dropped).append(scope.id)
    return raised, dropped
