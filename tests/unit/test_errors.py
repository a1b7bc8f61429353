"""The error-code table: the platform's advice per code, bounded retries, and slot release."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tiergate.core.errors import (
    RULES,
    TRANSPORT_RULE,
    UNLISTED_RULE,
    Action,
    classify,
    definitely_not_counted,
    is_final,
    verdict,
)

FINAL_CODES = [131026, 131050, 131047, 132000, 132001, 132012, 132015, 132016, 368, 131031, 131021, 131051,
               131045, 133010, 131042, 130497, 131064]
RETRY_CODES = [130429, 131000, 131016, 131057, 4, 80007]


@pytest.mark.parametrize("code", FINAL_CODES)
def test_codes_that_retrying_cannot_fix_are_final(code: int) -> None:
    assert classify(code).action is Action.FINAL
    assert is_final(code)
    assert verdict(code, 1).final


@pytest.mark.parametrize("code", RETRY_CODES)
def test_transient_codes_are_retried_with_a_delay(code: int) -> None:
    v = verdict(code, 1)
    assert v.action is Action.RETRY and v.delay is not None and v.delay > 0


def test_the_special_cases() -> None:
    assert classify(131056).action is Action.RETRY_RECIPIENT
    assert [verdict(131056, n).delay for n in (1, 2, 3)] == [4.0, 16.0, 64.0]  # 4^n seconds
    assert classify(131049).action is Action.RETRY_AFTER_24H
    assert verdict(131049, 1, jitter=0.99).delay == pytest.approx(86_400 * (1 + 0.25 * 0.99))
    assert classify(131048).action is Action.PAUSE_SENDER
    assert classify(190).action is Action.PAUSE_SENDER
    assert classify(130472).action is Action.NOT_A_FAILURE
    assert verdict(130429, 1).slow_sender


def test_codes_without_a_rule_and_answers_without_a_code() -> None:
    assert classify(999_999) is UNLISTED_RULE
    assert verdict(999_999, UNLISTED_RULE.max_attempts).action is Action.RETRY
    last = verdict(999_999, UNLISTED_RULE.max_attempts + 1)
    assert last.final and last.exhausted and last.code == 999_999
    assert classify(None) is TRANSPORT_RULE
    assert classify(None, 503) is TRANSPORT_RULE
    assert classify(None, 429).action is Action.RETRY
    assert classify(None, 404).action is Action.FINAL


def test_retry_after_is_a_floor() -> None:
    assert verdict(130429, 1, retry_after=30).delay == 30
    assert verdict(131000, 3, retry_after=0.5).delay == 20.0


def test_definitely_not_counted_is_conservative() -> None:
    assert definitely_not_counted(131026)
    assert definitely_not_counted(131049)
    assert not definitely_not_counted(131000)  # might have gone out
    assert not definitely_not_counted(131048)  # spam stop: keep the slot
    assert not definitely_not_counted(None)
    assert not definitely_not_counted(123_456)  # an unknown code in a status webhook
    assert definitely_not_counted(131048, synchronous=True)  # refused before acceptance
    assert definitely_not_counted(100, synchronous=True)
    assert not definitely_not_counted(131000, synchronous=True)
    assert not definitely_not_counted(None, synchronous=True)


def test_every_rule_has_a_reason_and_retry_rules_are_bounded() -> None:
    for code, rule in RULES.items():
        assert rule.reason, code
        if rule.action in (Action.RETRY, Action.RETRY_RECIPIENT, Action.RETRY_AFTER_24H):
            assert 0 < rule.max_attempts <= 10 and rule.base_delay > 0, code


codes = st.one_of(st.sampled_from(sorted(RULES)), st.integers(-5, 200_000), st.none())


@given(code=codes, attempt=st.integers(1, 30), jitter=st.floats(0, 1, exclude_max=True),
       http_status=st.one_of(st.none(), st.sampled_from([400, 401, 404, 429, 500, 502, 503])))
def test_delays_never_undercut_the_advice_and_retries_end(code: int | None, attempt: int, jitter: float,
                                                         http_status: int | None) -> None:
    rule = classify(code, http_status)
    v = verdict(code, attempt, http_status=http_status, jitter=jitter)
    if v.delay is not None:
        assert rule.delay_for(attempt) <= v.delay <= rule.max_delay * 1.25
        assert attempt <= rule.max_attempts
    if attempt > max(rule.max_attempts, 0) and v.action not in (Action.FINAL, Action.PAUSE_SENDER,
                                                                 Action.NOT_A_FAILURE):
        raise AssertionError(f"code {code} still retried at attempt {attempt}")


@given(code=codes, attempt=st.integers(1, 12))
def test_nominal_delays_grow_with_the_attempt(code: int | None, attempt: int) -> None:
    rule = classify(code)
    assert rule.delay_for(attempt + 1) >= rule.delay_for(attempt)


@given(code=st.sampled_from([None, 1, 130429, 131000, 131016, 131048, 131049, 131056, 999_999]),
       attempts=st.integers(1, 12), jitter=st.floats(0.0, 1.0), life=st.floats(0.0, 200_000.0))
def test_no_retry_is_planned_at_or_after_expires_at(code: int | None, attempts: int, jitter: float,
                                                    life: float) -> None:
    from tiergate.core.model import MessageState
    from tiergate.core.outcomes import plan_failure

    now = 1_000_000.0
    plan = plan_failure(code, "t", "d", attempts=attempts, now=now, jitter=jitter, expires_at=now + life)
    if plan.state is MessageState.QUEUED:
        assert plan.next_attempt_at is not None and plan.next_attempt_at < now + life
    else:
        assert plan.state in (MessageState.EXPIRED, MessageState.FAILED)
        assert plan.next_attempt_at is None
    free = plan_failure(code, "t", "d", attempts=attempts, now=now, jitter=jitter)
    assert (plan.state is MessageState.EXPIRED) == (free.state is MessageState.QUEUED
                                                    and free.next_attempt_at is not None
                                                    and free.next_attempt_at >= now + life)


def test_answers_that_reach_beyond_the_message() -> None:
    from tiergate.core.model import MessageState
    from tiergate.core.outcomes import plan_failure

    for code in (368, 131031):  # final, and the sender stops for a day
        plan = plan_failure(code, "t", "d", attempts=1, now=0.0, jitter=0.0)
        assert plan.state is MessageState.FAILED and plan.pause_sender and plan.pause_for == 86_400.0
    stop = plan_failure(131050, "t", "d", attempts=1, now=0.0, jitter=0.0)
    assert stop.state is MessageState.FAILED and stop.opt_out and not stop.pause_sender
    slow = plan_failure(130429, "t", "d", attempts=1, now=0.0, jitter=0.0)
    assert slow.state is MessageState.QUEUED and slow.slow_sender
    assert not plan_failure(131000, "t", "d", attempts=1, now=0.0, jitter=0.0).slow_sender


def test_a_message_that_keeps_tripping_a_sender_pause_fails_after_a_day_of_them() -> None:
    from tiergate.core.errors import Action, verdict

    assert verdict(131048, 24).action is Action.PAUSE_SENDER
    last = verdict(131048, 25)
    assert last.action is Action.FINAL and last.exhausted and "pauses" in last.reason
