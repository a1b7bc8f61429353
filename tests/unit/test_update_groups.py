"""``apply_updates`` groups a batch into statement shapes; a batch of one shape takes a
column-at-a-time shortcut (``_one_shape``) that must give exactly what the update-at-a-time loop
gives, and must decline every batch of more than one shape."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tiergate.adapters.store.sql import _groups_by_update, _one_shape, _update_groups
from tiergate.core.model import MessageState
from tiergate.ports import MessageUpdate

_STATES = st.sampled_from([MessageState.SENDING, MessageState.SENT, MessageState.QUEUED])


def _update(id_: str, fields: dict[str, Any]) -> MessageUpdate:
    return MessageUpdate(id_, **fields)


# Each optional field drawn from few values, None among them, so that batches often share a shape
# (every draw the same) and often do not (a field set in some updates only).
_FIELDS = st.fixed_dictionaries({
    "state": _STATES,
    "at": st.sampled_from([10.0, 11.0, 10]),
    "reason": st.sampled_from([None, "accepted", "admitted"]),
    "next_attempt_at": st.sampled_from([None, 20.0]),
    "add_attempt": st.booleans(),
    "wamid": st.sampled_from([None, "wamid.a", "wamid.b"]),
    "error_code": st.sampled_from([None, 131000]),
    "error_detail": st.sampled_from([None, "", "details"]),
    "counted": st.sampled_from([None, True, False]),
    "slot_expiry": st.sampled_from([None, 86410.0]),
    "slot_previous": st.sampled_from([None, 5.0]),
    "clear_slot": st.booleans(),
    "sent_at": st.sampled_from([None, 10.0]),
    "only_from": st.sampled_from([None, (MessageState.SENDING,), (MessageState.QUEUED, MessageState.SENDING)]),
    "history": st.booleans(),
    "earlier": st.sampled_from([(), ((MessageState.SENDING, "admitted"),)]),
})


_NAMES = ("state", "at", "reason", "next_attempt_at", "add_attempt", "wamid", "error_code", "error_detail",
          "counted", "slot_expiry", "slot_previous", "clear_slot", "sent_at", "only_from", "history", "earlier")


@st.composite
def _batches(draw: st.DrawFn) -> list[MessageUpdate]:
    """Updates of distinct ids: one shape drawn for all, then one field (or none) drawn afresh in
    some rows, so that a batch differs from one shape in a single place as often as not."""
    n = draw(st.integers(0, 30))
    base = draw(_FIELDS)
    varying = draw(st.sampled_from((None, *_NAMES)))
    per_row = draw(st.sampled_from([(), ("wamid",), ("wamid", "at", "reason")]))
    out = []
    for i in range(n):
        fields = dict(base)
        if varying is not None and draw(st.booleans()):
            fields[varying] = draw(_FIELDS)[varying]
        for name in per_row:  # values that may differ row to row within one shape
            if fields[name] is not None and draw(st.booleans()):
                fields[name] = f"{fields[name]}.{i}" if isinstance(fields[name], str) else fields[name] + i
        out.append(_update(f"m{i:03d}", fields))
    return out


@settings(max_examples=800, deadline=None)
@given(updates=_batches())
def test_one_shape_matches_the_update_at_a_time_loop(updates: list[MessageUpdate]) -> None:
    by_update = list(_groups_by_update(updates, repeats=False))
    one = _one_shape(updates)
    if one is not None:  # its rows come as columns (``Columns``): the same rows, read as rows
        assert [(*one[:-1], list(one[-1]))] == by_update
        assert len(updates) >= 2 and list(one[-1][1:3]) == one[-1][1:3] == by_update[0][-1][1:3]
    assert [(*g[:-1], list(g[-1])) for g in _update_groups(updates)] == by_update


def test_a_dispatcher_batch_takes_the_shortcut() -> None:
    updates = [MessageUpdate(f"m{i}", MessageState.SENT, 10.0, reason="accepted", add_attempt=True, counted=True,
                             slot_expiry=86410.0, wamid=f"wamid.{i}", sent_at=10.0,
                             earlier=((MessageState.SENDING, "admitted"),)) for i in range(100)]
    one = _one_shape(updates)
    assert one is not None
    generation, columns, extra, history, guard, rows = one
    assert columns == ("state", "updated_at", "reason", "wamid", "counted", "slot_expiry", "sent_at")
    assert (generation, extra, history, guard) == (0, "attempts = attempts + 1", True, None)
    assert rows[7][3] == "wamid.7" and rows[7][-1] == "m7"


def test_two_shapes_are_declined() -> None:
    updates = [MessageUpdate("m1", MessageState.SENT, 10.0, wamid="w1"), MessageUpdate("m2", MessageState.SENT, 10.0)]
    assert _one_shape(updates) is None
    assert len(list(_update_groups(updates))) == 2
