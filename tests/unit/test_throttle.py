"""The pair rate forgets recipients whose wait is over, without changing any answer; a sender's
pace comes down on 130429 and climbs back."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tiergate.core.throttle import PairRate, TokenBucket

ops = st.lists(st.tuples(st.sampled_from(["sent", "hold", "prune"]), st.integers(0, 30), st.integers(0, 40)),
               max_size=200)


@given(ops)
def test_pruning_never_changes_whether_a_recipient_must_wait(steps: list[tuple[str, int, int]]) -> None:
    pruned, kept = PairRate(prune_above=3), PairRate(prune_above=10**9)
    now = 0.0
    for op, recipient, amount in steps:
        now += amount / 10  # time only moves forward
        r = f"r{recipient}"
        if op == "sent":
            pruned.sent(r, now)
            kept.sent(r, now)
        elif op == "hold":
            pruned.hold(r, now + amount)
            kept.hold(r, now + amount)
        else:
            pruned.prune(now)
        for i in range(31):
            assert (pruned.ready_at(f"r{i}") > now) == (kept.ready_at(f"r{i}") > now)
            if kept.ready_at(f"r{i}") > now:
                assert pruned.ready_at(f"r{i}") == kept.ready_at(f"r{i}")


def test_a_worker_that_reaches_millions_keeps_only_the_recent_ones() -> None:
    pair = PairRate()
    for i in range(250_000):  # 1,000 a second: each waits 6 s
        now = i / 1000
        pair.sent(f"r{i}", now)
        if i % 1000 == 0:
            pair.prune(now)
    assert len(pair.next_ok) <= 100_001 and pair.prune_above == 100_000


def test_pruning_stays_amortized_when_most_entries_still_wait() -> None:
    pair = PairRate(prune_above=10)
    for i in range(40):
        pair.hold(f"r{i}", 1_000.0)  # a day's hold: nothing can be forgotten yet
    pair.prune(0.0)
    assert len(pair.next_ok) == 40 and pair.prune_above == 80  # not rebuilt again until it doubles


@given(ceiling=st.floats(1.0, 1000.0), events=st.lists(st.tuples(st.floats(0.0, 30.0), st.booleans()), max_size=60))
def test_a_slowed_bucket_stays_between_its_floor_and_ceiling_and_climbs_back(
        ceiling: float, events: list[tuple[float, bool]]) -> None:
    bucket = TokenBucket(ceiling)
    now = 1_000.0
    for wait, slow in events:
        now += wait
        bucket.available(now)  # brought up to ``now`` (it may have climbed meanwhile)
        before = bucket.rate
        changed = bucket.slow_down(now) if slow else False
        assert min(bucket.floor, ceiling) - 1e-9 <= bucket.rate <= ceiling
        if changed:
            assert bucket.rate == max(min(bucket.floor, ceiling), before / 2)
        assert bucket.tokens <= bucket.rate + 1e-9
    bucket.available(now + bucket.recovery + 1e-6)  # (the sum at epoch-like magnitudes may round down)
    assert bucket.rate == ceiling, "no 130429 for a whole recovery: back at the configured pace"


def test_slow_down_halves_once_per_hold_not_per_answer() -> None:
    bucket = TokenBucket(1000.0)
    assert bucket.slow_down(10.0) and bucket.rate == 500.0
    assert not bucket.slow_down(10.5), "a batch in flight answers 130429 together: one halving"
    assert bucket.slow_down(11.0) and bucket.rate < 500.0
    assert bucket.ceiling == 1000.0
