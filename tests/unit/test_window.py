"""The rolling window against a deliberately naive model: a plain list of counted sends.

Times are whole seconds (with a short span) so the naive arithmetic is exact.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiergate.core.window import DAY, RollingWindow, Slot, admit_stream

SPAN = 100.0


@dataclass
class NaiveWindow:
    """Every counted send ever made; usage recounted from scratch each time."""

    span: float = SPAN
    sends: list[tuple[float, str, int]] = field(default_factory=list)  # (time, recipient, send id)
    ids: Iterator[int] = field(default_factory=itertools.count)

    def add(self, at: float, recipient: str) -> int:
        send_id = next(self.ids)
        self.sends.append((at, recipient, send_id))
        return send_id

    def counted(self, now: float) -> set[str]:
        return {r for s, r, _ in self.sends if s <= now < s + self.span}

    def usage(self, now: float) -> int:
        return len(self.counted(now))

    def admits(self, recipient: str, now: float, capacity: float) -> bool:
        counted = self.counted(now)
        return recipient in counted or len(counted) < capacity

    def release(self, send_id: int) -> None:
        """Undo a send unless the recipient was counted again by a send as late or later."""
        at, recipient, _ = next(send for send in self.sends if send[2] == send_id)
        if any(r == recipient and s >= at for s, r, i in self.sends if i != send_id):
            return
        self.sends = [send for send in self.sends if send[2] != send_id]


# -- the basics ------------------------------------------------------------------------------
def test_a_recipient_counts_until_span_after_their_latest_send() -> None:
    window = RollingWindow(span=SPAN)
    window.record("a", 0.0)
    assert window.usage(99.0) == 1
    assert window.usage(100.0) == 0  # (t - span, t]: the send at 0 is out at exactly 100
    window.record("b", 100.0)
    window.record("b", 150.0)  # a re-send extends b to 250
    assert window.usage(249.0) == 1
    assert window.usage(250.0) == 0


def test_resends_are_free_even_when_full() -> None:
    window = RollingWindow(span=SPAN)
    assert isinstance(window.try_admit("a", 0.0, 1), Slot)
    assert window.try_admit("b", 1.0, 1) == 100.0  # deferred until a leaves
    assert isinstance(window.try_admit("a", 2.0, 1), Slot)  # a again: free
    assert window.usage(2.0) == 1
    assert window.try_admit("b", 3.0, 1) == 102.0  # a now leaves at 102


def test_deferral_time_is_when_enough_recipients_leave() -> None:
    window = RollingWindow(span=SPAN)
    for i in range(5):
        window.record(f"r{i}", float(i * 10))  # expiries 100, 110, 120, 130, 140
    assert window.release_time_for(5, 40.0) == 100.0
    assert window.release_time_for(3, 40.0) == 120.0  # usage must fall to 2: three must leave
    assert window.release_time_for(6, 40.0) == 40.0  # fits now
    assert window.release_time_for(0, 40.0) is None  # never
    assert window.release_time_for(3, 40.0) == 120.0  # cached answer
    window.record("r9", 41.0)
    assert window.release_time_for(3, 41.0) == 130.0  # the cache follows changes


def test_capacity_zero_defers_forever() -> None:
    window = RollingWindow(span=SPAN)
    assert window.try_admit("a", 0.0, 0) is None


def test_next_release_skips_stale_entries() -> None:
    window = RollingWindow(span=SPAN)
    window.record("a", 0.0)
    window.record("b", 5.0)
    window.record("a", 10.0)
    assert window.next_release_at(10.0) == 105.0  # b; a's first entry is stale
    assert window.releases(10.0) == [105.0, 110.0]
    assert RollingWindow().next_release_at(0.0) is None


def test_release_undoes_only_this_send() -> None:
    window = RollingWindow(span=SPAN)
    first = window.record("a", 0.0)
    assert first.previous is None
    again = window.record("a", 50.0)
    assert again.previous == 100.0
    assert not window.release(again, 60.0)  # the send at 0 still counts a, until 100 now
    assert window.expiry_of("a") == 100.0
    assert window.usage(99.0) == 1 and window.usage(100.0) == 0
    assert not window.release(again, 60.0)  # twice changes nothing


def test_release_after_a_later_send_changes_nothing() -> None:
    window = RollingWindow(span=SPAN)
    slot = window.record("a", 0.0)
    window.record("a", 10.0)
    assert not window.release(slot, 20.0)
    assert window.expiry_of("a") == 110.0


def test_release_of_a_lapsed_previous_removes_the_recipient() -> None:
    window = RollingWindow(span=SPAN)
    slot = window.record("a", 0.0)
    assert window.release(slot, 5.0)
    assert window.usage(5.0) == 0
    assert window.expiry_of("a") is None


def test_a_lapsed_recipient_is_not_reported_as_previously_counted() -> None:
    window = RollingWindow(span=SPAN)
    window.record("a", 0.0)
    slot = window.record("a", 150.0)  # the first send lapsed at 100 (not yet expired lazily)
    assert slot.previous is None


def test_back_dated_sends_are_exact() -> None:
    window = RollingWindow(span=SPAN)
    window.record("a", 50.0)
    window.record("b", 10.0)  # out of order: kept in the late heap
    window.record("a", 20.0)  # inside a's later send: nothing changes
    assert window.expiry_of("a") == 150.0
    assert window.usage(109.0) == 2
    assert window.usage(110.0) == 1
    assert window.next_release_at(110.0) == 150.0


def test_load_restores_live_state_only() -> None:
    window = RollingWindow(span=SPAN)
    window.load([("a", 150.0), ("b", 90.0), ("c", 120.0), ("a", 130.0)], now=100.0)
    assert sorted(window.items()) == [("a", 150.0), ("c", 120.0)]
    assert window.usage(100.0) == 2


def test_items_round_trip_through_load() -> None:
    window = RollingWindow()
    for i in range(50):
        window.record(f"r{i % 17}", i * 1000.0)
    copy = RollingWindow()
    copy.load(window.items(), now=49_000.0)
    assert sorted(copy.items()) == sorted(window.items())
    for t in (60_000.0, 100_000.0, 130_000.0):
        assert copy.usage(t) == window.usage(t)


def test_default_span_is_a_day() -> None:
    assert RollingWindow().span == DAY == 86_400.0


def test_memory_stays_proportional_to_live_recipients() -> None:
    window = RollingWindow(span=1e9)
    for i in range(200_000):
        window.record(f"r{i % 10}", float(i))  # ten recipients re-sent 20,000 times each
    assert len(window) == 10
    assert len(window._exp_q) + len(window._late) <= 4 * 10 + 4096 + 1
    admit_stream(window, [f"r{i % 10}" for i in range(50_000)], [2e5 + i for i in range(50_000)], 10)
    assert len(window._exp_q) <= 4 * 10 + 4096 + 1  # compacted at the end of the stream


def test_stream_rejects_times_going_back() -> None:
    window = RollingWindow(span=SPAN)
    with pytest.raises(ValueError, match="must not decrease"):
        admit_stream(window, ["a", "b"], [5.0, 4.0], 10)
    assert len(window) == 0  # nothing recorded
    with pytest.raises(ValueError, match="length"):
        admit_stream(window, ["a"], [1.0, 2.0], 10)


def test_stream_after_back_dated_state_falls_back_to_exact_calls() -> None:
    window = RollingWindow(span=SPAN)
    window.record("a", 50.0)
    window.record("b", 10.0)
    assert admit_stream(window, ["c", "d", "e"], [60.0, 111.0, 112.0], 2) == [False, True, False]


# -- properties against the naive model --------------------------------------------------------
recipients = st.sampled_from([f"r{i}" for i in range(12)])
steps = st.lists(
    st.tuples(st.sampled_from(["admit", "admit", "admit", "release"]), recipients,
              st.integers(min_value=0, max_value=40), st.integers(min_value=0, max_value=100)),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(steps, st.integers(min_value=0, max_value=8))
def test_window_matches_the_naive_model(ops: list[tuple[str, str, int, int]], capacity: int) -> None:
    """Decisions, usage, release semantics, deferral times and the limit, step by step."""
    window, naive = RollingWindow(span=SPAN), NaiveWindow()
    slots: list[tuple[Slot, int]] = []  # (slot, the naive send id)
    now = 0.0
    for op, recipient, gap, pick in ops:
        now += gap
        if op == "release" and slots:
            slot, send_id = slots.pop(pick % len(slots))
            counted_before = slot.recipient in naive.counted(now)
            released = window.release(slot, now)
            naive.release(send_id)
            if counted_before:  # True exactly when the recipient stops counting
                assert released == (slot.recipient not in naive.counted(now))
        else:
            expected = naive.admits(recipient, now, capacity)
            result = window.try_admit(recipient, now, capacity)
            assert isinstance(result, Slot) == expected
            if expected:
                assert isinstance(result, Slot)
                slots.append((result, naive.add(now, recipient)))
            elif result is not None:
                # deferred until T: nothing fits before T, and at T a new recipient fits
                assert result > now
                assert naive.usage(result - 1) >= capacity
                assert naive.usage(result) < capacity
            else:
                assert capacity == 0
        assert window.usage(now) == naive.usage(now)
        assert naive.usage(now) <= capacity  # never over the limit in any window
    for later in (now + 1, now + SPAN / 2, now + SPAN):
        assert window.usage(later) == naive.usage(later)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(recipients, st.sampled_from([0, 0, 1, 3, 20, 60])), max_size=150),
       st.integers(min_value=0, max_value=10), st.integers(min_value=0, max_value=3))
def test_stream_equals_call_by_call(pairs: list[tuple[str, int]], capacity: int, chunks: int) -> None:
    """The hand-inlined stream makes exactly the per-call decisions, also across several calls."""
    names, times, now = [], [], 0.0
    for recipient, gap in pairs:
        now += gap
        names.append(recipient)
        times.append(now)
    fast, slow = RollingWindow(span=SPAN), RollingWindow(span=SPAN)
    size = max(1, len(names) // (chunks + 1))
    decisions: list[bool] = []
    for start in range(0, len(names), size):
        decisions += admit_stream(fast, names[start:start + size], times[start:start + size], capacity)
    assert decisions == [isinstance(slow.try_admit(r, t, capacity), Slot) for r, t in zip(names, times, strict=True)]
    assert sorted(fast.items()) == sorted(slow.items())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(recipients, st.integers(min_value=0, max_value=500)), max_size=60),
       st.integers(min_value=0, max_value=700))
def test_back_dated_records_count_by_latest_send(sends: list[tuple[str, int]], extra: int) -> None:
    window = RollingWindow(span=SPAN)
    for recipient, at in sends:
        window.record(recipient, float(at))
    query = float(max((at for _, at in sends), default=0) + extra)
    latest: dict[str, int] = {}
    for recipient, at in sends:
        latest[recipient] = max(at, latest.get(recipient, at))
    assert window.usage(query) == sum(1 for at in latest.values() if at + SPAN > query)


def test_a_same_moment_duplicate_still_holds_the_recipient() -> None:
    window = RollingWindow(span=SPAN)
    first = window.record("a", 0.0)
    duplicate = window.record("a", 0.0)  # two templates to the same person in one batch
    assert duplicate.previous == duplicate.expiry
    assert not window.release(first, 1.0)  # the duplicate still counts "a"
    assert window.usage(1.0) == 1
    assert not window.release(duplicate, 1.0)  # never under-count


def test_a_back_dated_send_holds_the_recipient_after_a_release() -> None:
    window = RollingWindow(span=SPAN)
    later = window.record("a", 50.0)  # expiry 150
    window.record("a", 10.0)  # back-dated: holds "a" until 110
    assert not window.release(later, 60.0)  # still counted, by the back-dated send
    assert window.expiry_of("a") == 110.0
    assert window.usage(109.0) == 1 and window.usage(110.0) == 0


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.lists(recipients, max_size=6), st.sampled_from([0, 0, 10, 50, 120])), max_size=25))
def test_record_many_equals_one_by_one(batches: list[tuple[list[str], int]]) -> None:
    many, single = RollingWindow(span=SPAN), RollingWindow(span=SPAN)
    now = 0.0
    for names, gap in batches:
        now += gap
        many.record_many(names, now)
        for name in names:
            single.record(name, now)
        assert many.usage(now) == single.usage(now)
    assert sorted(many.items()) == sorted(single.items())


def test_unlimited_capacity_admits_everyone() -> None:
    window = RollingWindow()
    assert all(admit_stream(window, [f"r{i}" for i in range(1000)], [float(i) for i in range(1000)], math.inf))
    assert isinstance(window.try_admit("x", 2000.0, math.inf), Slot)
