"""Bulk ids (``adapters.store.ids``): the format of ``tiergate.ids.new_id``, unique, ascending."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from tiergate.adapters.store.ids import new_ids
from tiergate.ids import new_id

SHAPE = re.compile(r"msg_[0-9a-hjkmnp-tv-z]{26}\Z")


@given(count=st.integers(0, 3000), at=st.floats(0, 2**47 / 1000, allow_nan=False))
def test_a_batch_is_unique_ascending_and_shaped_like_single_ids(count: int, at: float) -> None:
    ids = new_ids("msg", count, at)
    assert len(ids) == count
    assert all(SHAPE.match(i) for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == count  # ascending: the primary key grows at one edge
    single = new_id("msg", at)
    assert all(i[:14] == single[:14] for i in ids)  # the same millisecond digits as new_id's


def test_batches_of_one_millisecond_do_not_collide() -> None:
    """Each batch starts at its own random point of 2**79."""
    seen: set[str] = set()
    for _ in range(200):
        batch = new_ids("msg", 500, 1_767_571_200.0)
        assert seen.isdisjoint(batch)
        seen.update(batch)


def test_the_upper_half_carries_into_the_next_digits() -> None:
    """Counting across a 2**40 boundary changes the upper digits too (ids stay ascending)."""
    import os
    from unittest import mock

    start = ((1 << 40) - 2) << 1  # new_ids halves the random number: its start is 2**40 - 2
    with mock.patch.object(os, "urandom", return_value=start.to_bytes(10, "big")):
        ids = new_ids("msg", 4, 0.0)
    assert ids == sorted(ids) and len(set(ids)) == 4
    assert ids[1][14:22] != ids[2][14:22]


def test_single_ids_of_one_millisecond_sort_in_the_order_they_were_made() -> None:
    at = 1_700_000_000.123
    made = [new_id("cmp", at) for _ in range(200)]
    assert made == sorted(made) and len(set(made)) == 200
    later = new_id("cmp", at + 0.001)
    assert later > made[-1]


_DIGITS = "0123456789abcdefghjkmnpqrstvwxyz"


@given(start=st.integers(0, 2**79 - 1), count=st.integers(0, 2100))
def test_each_id_counts_up_from_the_batch_start(start: int, count: int) -> None:
    """The random part of the i-th id is exactly start + i, across every 1,024-id block and carry."""
    import os
    from unittest import mock

    with mock.patch.object(os, "urandom", return_value=(start << 1).to_bytes(10, "big")):
        ids = new_ids("msg", count, 0.0)

    def counter(id_: str) -> int:
        value = 0
        for digit in id_[-16:]:
            value = value * 32 + _DIGITS.index(digit)
        return value

    assert [counter(i) for i in ids] == list(range(start, start + count))
