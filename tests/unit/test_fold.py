"""An inline send's admission and answer folded into one update (``dispatcher.folded``)."""

from __future__ import annotations

import dataclasses

from tiergate.core.model import MessageState
from tiergate.ports import MessageUpdate
from tiergate.service.dispatcher import folded

ADMISSION = MessageUpdate("m1", MessageState.SENDING, 10.0, reason="admitted: within the messaging limit",
                          add_attempt=True, counted=True, slot_expiry=86_410.0, slot_previous=5.0)


def test_folded_carries_every_field() -> None:
    """Every field comes from the answer except the ones the fold decides; a new field of
    MessageUpdate that the fold forgets fails here."""
    answer = MessageUpdate("m1", MessageState.SENT, 10.5, reason="accepted by the platform", next_attempt_at=None,
                           wamid="wamid.1", error_code=7, error_detail="d", slot_expiry=86_411.0,
                           sent_at=10.5, only_from=(MessageState.SENDING,), history=True)
    one = folded(ADMISSION, answer)
    decided = {"add_attempt", "counted", "slot_expiry", "slot_previous", "only_from", "earlier"}
    for f in dataclasses.fields(MessageUpdate):
        if f.name not in decided:
            assert getattr(one, f.name) == getattr(answer, f.name), f.name
    assert one.add_attempt and one.counted is True and one.only_from is None
    # the answer's later expiry, the admission's previous
    assert (one.slot_expiry, one.slot_previous) == (86_411.0, 5.0)
    assert one.earlier == ((MessageState.SENDING, "admitted: within the messaging limit"),)


def test_folded_keeps_the_admission_slot_unless_the_answer_frees_it() -> None:
    kept = folded(ADMISSION, MessageUpdate("m1", MessageState.SENT, 10.0, reason="accepted"))
    assert (kept.slot_expiry, kept.slot_previous, kept.clear_slot) == (86_410.0, 5.0, False)
    freed = folded(ADMISSION, MessageUpdate("m1", MessageState.FAILED, 10.0, reason="failed: (131026)",
                                            error_code=131026, clear_slot=True))
    assert (freed.slot_expiry, freed.slot_previous, freed.clear_slot) == (None, None, True)
    assert freed.state is MessageState.FAILED and freed.add_attempt
