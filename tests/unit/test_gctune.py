"""Garbage-collector settings for long batch work are applied for the call and then restored."""

from __future__ import annotations

import gc

import pytest

from tiergate.service.gctune import THRESHOLDS, tuned_gc


def test_tuned_gc_applies_the_thresholds_and_restores_the_previous_ones() -> None:
    before = gc.get_threshold()
    with tuned_gc():
        assert gc.get_threshold() == THRESHOLDS
    assert gc.get_threshold() == before


def test_tuned_gc_restores_them_when_the_call_fails() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), tuned_gc():
        raise RuntimeError("boom")
    assert gc.get_threshold() == before
