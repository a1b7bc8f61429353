"""Admission: admit now, defer until when, or reject why; reservations and class priority."""

from __future__ import annotations

import math
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiergate.core.admission import (
    Category,
    Decision,
    Gate,
    MessageFacts,
    ScopeLimits,
    decide,
    priority_of,
)
from tiergate.core.window import DAY, RollingWindow


def template(recipient: str, category: Category = Category.MARKETING, csw_open: bool = False) -> MessageFacts:
    return MessageFacts(recipient=recipient, is_template=True, category=category, csw_open=csw_open)


def test_inside_the_service_window_nothing_is_counted_or_held() -> None:
    window = RollingWindow()
    limits = ScopeLimits(limit=0, paused={"spam": None})
    for facts in (MessageFacts("a", False, Category.SERVICE, True), template("b", csw_open=True)):
        decision = decide(window, facts, limits, 0.0)
        assert decision.gate is Gate.ADMIT and not decision.counted
    assert window.usage(0.0) == 0


def test_free_form_outside_the_window_is_rejected_with_the_platform_code() -> None:
    decision = decide(RollingWindow(), MessageFacts("a", False, Category.SERVICE, False), ScopeLimits(1000), 0.0)
    assert decision.gate is Gate.REJECT
    assert "131047" in decision.reason


def test_counted_admission_takes_a_slot_and_defers_when_full() -> None:
    window = RollingWindow()
    limits = ScopeLimits(limit=2)
    first = decide(window, template("a"), limits, 0.0)
    assert first.gate is Gate.ADMIT and first.counted and first.slot is not None
    decide(window, template("b"), limits, 10.0)
    deferred = decide(window, template("c"), limits, 20.0)
    assert deferred == Decision(Gate.DEFER, until=DAY, reason=deferred.reason)
    assert "2/2" in deferred.reason
    assert decide(window, template("a"), limits, 30.0).gate is Gate.ADMIT  # re-sends are free
    assert decide(window, template("c"), limits, DAY + 10.0).gate is Gate.ADMIT  # b left at DAY + 10


def test_unlimited_and_zero_limits() -> None:
    window = RollingWindow()
    for i in range(100):
        assert decide(window, template(f"r{i}"), ScopeLimits(limit=None), 0.0).gate is Gate.ADMIT
    never = decide(RollingWindow(), template("a"), ScopeLimits(limit=0), 0.0)
    assert never.gate is Gate.DEFER and never.until is None  # waits for an event (a tier change)


def test_pauses_defer_counted_sends_until_every_pause_ends() -> None:
    limits = ScopeLimits(limit=10, paused={"spam limit": 500.0, "restricted": 900.0, "old": 50.0})
    decision = decide(RollingWindow(), template("a", Category.UTILITY), limits, 100.0)
    assert decision.gate is Gate.DEFER and decision.until == 900.0 and "restricted" in decision.reason
    open_ended = ScopeLimits(limit=10, paused={"spam limit": 500.0, "operator": None})
    assert decide(RollingWindow(), template("a"), open_ended, 100.0).until is None
    lapsed = ScopeLimits(limit=10, paused={"old": 50.0})
    assert decide(RollingWindow(), template("a"), lapsed, 100.0).gate is Gate.ADMIT


def test_quality_pause_holds_marketing_only() -> None:
    limits = ScopeLimits(limit=10, marketing_paused={"quality RED": None})
    window = RollingWindow()
    marketing = decide(window, template("a"), limits, 0.0)
    assert marketing.gate is Gate.DEFER and "marketing paused" in marketing.reason
    for category in (Category.UTILITY, Category.AUTHENTICATION):
        assert decide(window, template(f"x-{category}", category), limits, 0.0).gate is Gate.ADMIT


def test_reservation_keeps_a_share_for_utility_and_authentication() -> None:
    limits = ScopeLimits(limit=100, reserve_fraction=0.1)
    assert limits.capacity_for(Category.MARKETING) == 90
    assert limits.capacity_for(Category.UTILITY) == 100
    assert ScopeLimits(limit=1000, reserve_fraction=0.05).capacity_for(Category.MARKETING) == 950
    assert ScopeLimits(limit=15, reserve_fraction=0.1).capacity_for(Category.MARKETING) == 13  # ceil(1.5) kept
    assert ScopeLimits(limit=None, reserve_fraction=0.1).capacity_for(Category.MARKETING) == math.inf
    window = RollingWindow()
    admitted = [decide(window, template(f"m{i}"), limits, 0.0).gate for i in range(95)]
    assert admitted.count(Gate.ADMIT) == 90
    assert decide(window, template("otp", Category.AUTHENTICATION), limits, 1.0).gate is Gate.ADMIT
    assert decide(window, template("bill", Category.UTILITY), limits, 1.0).gate is Gate.ADMIT


def test_priority_authentication_and_replies_then_utility_then_marketing() -> None:
    order = sorted(Category, key=priority_of)
    assert order[-1] is Category.MARKETING
    assert priority_of(Category.AUTHENTICATION) < priority_of(Category.UTILITY) < priority_of(Category.MARKETING)
    assert priority_of(Category.SERVICE) == priority_of(Category.AUTHENTICATION)


def test_category_parsing() -> None:
    assert Category.parse(" marketing ") is Category.MARKETING
    with pytest.raises(ValueError, match="unknown category"):
        Category.parse("promo")


# -- properties against a naive model ------------------------------------------------------------
messages = st.lists(
    st.tuples(st.sampled_from([f"r{i}" for i in range(15)]),
              st.sampled_from([Category.MARKETING, Category.MARKETING, Category.UTILITY, Category.AUTHENTICATION]),
              st.integers(min_value=0, max_value=30_000)),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(messages, st.integers(min_value=1, max_value=10), st.sampled_from([0.0, 0.1, 0.25, 0.5]))
def test_reservations_and_the_limit_hold_in_every_window(
    stream: list[tuple[str, Category, int]], limit: int, reserve: float
) -> None:
    """Marketing never uses the reserved share; nothing ever exceeds the limit; re-sends are free."""
    limits = ScopeLimits(limit=limit, reserve_fraction=reserve)
    marketing_cap = limit - math.ceil(limit * reserve)
    window = RollingWindow()
    sends: list[tuple[float, str]] = []
    now = 0.0
    for recipient, category, gap in stream:
        now += gap
        counted = {r for t, r in sends if t <= now < t + DAY}
        decision = decide(window, template(recipient, category), limits, now)
        cap = marketing_cap if category is Category.MARKETING else limit
        should = recipient in counted or len(counted) < cap
        assert (decision.gate is Gate.ADMIT) == should
        if decision.gate is Gate.ADMIT:
            sends.append((now, recipient))
            counted.add(recipient)
        assert len(counted) <= limit


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(min_value=0, max_value=40), st.integers(min_value=0, max_value=3 * 3600)),
                min_size=1, max_size=120),
       st.integers(min_value=1, max_value=12))
def test_deferral_never_loses_a_message(arrivals: list[tuple[int, int]], limit: int) -> None:
    """A queue driven only by decide() and its defer times sends every message, in time, within the limit."""
    window, limits = RollingWindow(), ScopeLimits(limit=limit)
    pending: deque[tuple[str, float]] = deque()
    arrivals_at = sorted((float(at), f"r{who}") for who, at in arrivals)
    sent: list[tuple[float, str]] = []
    now, i = 0.0, 0
    while i < len(arrivals_at) or pending:
        while i < len(arrivals_at) and arrivals_at[i][0] <= now:
            pending.append((arrivals_at[i][1], arrivals_at[i][0]))
            i += 1
        wake = arrivals_at[i][0] if i < len(arrivals_at) else math.inf
        while pending:
            decision = decide(window, template(pending[0][0]), limits, now)
            if decision.gate is not Gate.ADMIT:
                assert decision.until is not None and decision.until > now
                wake = min(wake, decision.until)
                break
            sent.append((now, pending.popleft()[0]))
        assert len(sent) + len(pending) == i  # nothing lost, nothing duplicated
        if wake == math.inf:
            break
        now = wake
    assert len(sent) == len(arrivals_at)
    for t, _ in sent:
        assert len({r for s, r in sent if s <= t < s + DAY}) <= limit
