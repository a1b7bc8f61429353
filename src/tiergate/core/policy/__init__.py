"""Tier policies: each era of the platform's rules is a ``Policy`` value registered here.

``get_policy(name)`` finds one; adding an era is a module defining a ``Policy`` plus one line in
``POLICIES``.
"""

from __future__ import annotations

from tiergate.core.policy.base import (
    QUALITIES,
    Policy,
    PolicyState,
    QualityDowngrade,
    Timing,
    VolumeUpgrade,
    parse_quality,
)
from tiergate.core.policy.classic import CLASSIC
from tiergate.core.policy.days import day_index, day_start, next_day_start
from tiergate.core.policy.history import SendHistory
from tiergate.core.policy.portfolio import PORTFOLIO

__all__ = [
    "CLASSIC",
    "DEFAULT_POLICY",
    "POLICIES",
    "PORTFOLIO",
    "QUALITIES",
    "Policy",
    "PolicyState",
    "QualityDowngrade",
    "SendHistory",
    "Timing",
    "VolumeUpgrade",
    "day_index",
    "day_start",
    "get_policy",
    "next_day_start",
    "parse_quality",
]

POLICIES: dict[str, Policy] = {policy.name: policy for policy in (CLASSIC, PORTFOLIO)}
DEFAULT_POLICY = CLASSIC.name


def get_policy(name: str | Policy) -> Policy:
    """The policy called ``name`` (a ``Policy`` passes through); ``ValueError`` names the known ones."""
    if isinstance(name, Policy):
        return name
    policy = POLICIES.get(name.strip().lower())
    if policy is None:
        raise ValueError(f"unknown policy {name!r}: use one of {', '.join(sorted(POLICIES))}")
    return policy
