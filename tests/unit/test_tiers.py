"""Tier parsing: every shape the platform uses, and never a crash on anything else."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tiergate.core.tiers import UNLIMITED, Tier, parse_tier, tier_for_limit


@pytest.mark.parametrize(
    ("value", "name", "limit"),
    [
        ("TIER_50", "TIER_50", 50),
        ("TIER_250", "TIER_250", 250),
        ("TIER_1K", "TIER_1K", 1_000),
        ("TIER_2K", "TIER_2K", 2_000),
        ("TIER_10K", "TIER_10K", 10_000),
        ("TIER_100K", "TIER_100K", 100_000),
        ("tier_1k", "TIER_1K", 1_000),
        ("  TIER_10K ", "TIER_10K", 10_000),
        ("TIER_1M", "TIER_1M", 1_000_000),
        (2000, "TIER_2K", 2_000),
        (250, "TIER_250", 250),
        ("2000", "TIER_2K", 2_000),
        (1000.0, "TIER_1K", 1_000),
        (1500, "TIER_1500", 1_500),
    ],
)
def test_platform_shapes_parse_to_limits(value: object, name: str, limit: int) -> None:
    tier = parse_tier(value)
    assert (tier.name, tier.limit, tier.known) == (name, limit, True)


@pytest.mark.parametrize("value", ["TIER_UNLIMITED", "unlimited", -1, "-1", -5, None])
def test_unlimited_shapes(value: object) -> None:
    tier = parse_tier(value) if value is not None else tier_for_limit(None)
    assert tier == UNLIMITED
    assert tier.unlimited and tier.capacity() == math.inf


@pytest.mark.parametrize("value", ["TIER_NOT_SET", "TIER_HUGE", "garbage", True, 1.5, [1], {"a": 1}])
def test_unknown_values_are_kept_and_reported(value: object) -> None:
    tier = parse_tier(value)
    assert not tier.known
    assert not tier.unlimited  # an unknown tier is never mistaken for "no limit"
    assert tier.limit is None


def test_unknown_string_keeps_its_original_spelling() -> None:
    assert parse_tier("Tier_Mystery").name == "Tier_Mystery"


def test_a_tier_passes_through() -> None:
    tier = Tier("TIER_1K", 1000)
    assert parse_tier(tier) is tier
    assert str(tier) == "TIER_1K"


@given(st.one_of(st.text(), st.integers(), st.floats(allow_nan=True), st.none(), st.booleans(),
                 st.lists(st.integers())))
def test_parsing_never_raises(value: object) -> None:
    tier = parse_tier(value)
    assert isinstance(tier, Tier)
    assert tier.known or tier.limit is None


@given(st.integers(min_value=0, max_value=10**9))
def test_limits_round_trip_through_names(limit: int) -> None:
    tier = tier_for_limit(limit)
    assert parse_tier(tier.name).limit == limit
    assert parse_tier(limit) == tier
