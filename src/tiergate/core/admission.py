"""Admission: may this message go now, later (when), or never (why)?

A pure decision over the scope's window, the message's facts and ``now``. Storage and the
dispatcher persist what it decides; nothing here does I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

from tiergate.core.window import DAY, RollingWindow, Slot

__all__ = [
    "CSW_SPAN",
    "TEMPLATE_CATEGORIES",
    "Category",
    "Decision",
    "Gate",
    "MessageFacts",
    "ScopeLimits",
    "decide",
    "priority_of",
]


# The customer service window: free-form replies, and no new count, for 24 h after the recipient's
# latest message to the sender.
CSW_SPAN = DAY


class Category(StrEnum):
    AUTHENTICATION = "AUTHENTICATION"
    UTILITY = "UTILITY"
    MARKETING = "MARKETING"
    SERVICE = "SERVICE"  # free-form replies inside the customer service window

    @classmethod
    def parse(cls, value: str) -> Category:
        try:
            return cls(value.strip().upper())
        except ValueError:
            raise ValueError(
                f"unknown category {value!r}: use one of {', '.join(c.value for c in cls)}"
            ) from None


# What a template may be (Meta's three): SERVICE is for free-form replies only.
TEMPLATE_CATEGORIES = frozenset({Category.MARKETING.value, Category.UTILITY.value, Category.AUTHENTICATION.value})


_PRIORITY = {Category.AUTHENTICATION: 0, Category.SERVICE: 0, Category.UTILITY: 1, Category.MARKETING: 2}


def priority_of(category: Category) -> int:
    """Lower goes first: authentication and replies, then utility, then marketing."""
    return _PRIORITY[category]


class Gate(StrEnum):
    ADMIT = "admit"
    DEFER = "defer"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class MessageFacts:
    recipient: str
    is_template: bool
    category: Category
    csw_open: bool


@dataclass(frozen=True, slots=True)
class ScopeLimits:
    """What constrains counted sends of one scope right now.

    ``limit``: distinct recipients per rolling window (``None`` = unlimited). ``reserve_fraction``:
    share of the limit kept for utility and authentication. ``paused``: reasons counted sending is
    paused (spam limit, restriction) with the time each ends (``None`` = until an event lifts it).
    ``marketing_paused``: reasons marketing alone is paused (quality RED/FLAGGED).
    """

    limit: int | None
    reserve_fraction: float = 0.0
    paused: dict[str, float | None] = field(default_factory=dict)
    marketing_paused: dict[str, float | None] = field(default_factory=dict)

    def capacity_for(self, category: Category) -> float:
        if self.limit is None:
            return math.inf
        if category is Category.MARKETING and self.reserve_fraction > 0:
            return self.limit - math.ceil(self.limit * self.reserve_fraction)
        return float(self.limit)


@dataclass(frozen=True, slots=True)
class Decision:
    gate: Gate
    counted: bool = False
    until: float | None = None  # DEFER: earliest time to look again (None: wait for an event)
    reason: str = ""
    slot: Slot | None = None  # ADMIT of a counted send: what to undo on definite non-delivery


ADMIT_IN_WINDOW = Decision(Gate.ADMIT, counted=False, reason="inside the customer service window")


def _pause_in_force(pauses: dict[str, float | None], now: float) -> tuple[str, float | None] | None:
    """The pause that holds sending longest at ``now`` (reason, end; ``None`` end: until an event)."""
    active = {r: t for r, t in pauses.items() if t is None or t > now}
    if not active:
        return None
    if any(t is None for t in active.values()):
        reason = next(r for r, t in active.items() if t is None)
        return reason, None
    reason = max(active, key=lambda r: active[r] or 0.0)
    return reason, active[reason]


def decide(window: RollingWindow, msg: MessageFacts, limits: ScopeLimits, now: float) -> Decision:
    """Admit, defer (until when) or reject one message; admitting a counted send takes its slot."""
    if msg.csw_open:
        return ADMIT_IN_WINDOW
    if not msg.is_template:
        return Decision(
            Gate.REJECT,
            reason="free-form message outside the customer service window: the platform rejects it "
            "(131047); send a template, or wait for the recipient to write in",
        )
    if limits.paused:
        pause = _pause_in_force(limits.paused, now)
        if pause is not None:
            return Decision(Gate.DEFER, until=pause[1], reason=f"counted sending paused: {pause[0]}")
    if msg.category is Category.MARKETING and limits.marketing_paused:
        pause = _pause_in_force(limits.marketing_paused, now)
        if pause is not None:
            return Decision(Gate.DEFER, until=pause[1], reason=f"marketing paused: {pause[0]}")
    capacity = limits.capacity_for(msg.category)
    result = window.try_admit(msg.recipient, now, capacity)
    if isinstance(result, Slot):
        return Decision(Gate.ADMIT, counted=True, slot=result, reason="within the messaging limit")
    return Decision(
        Gate.DEFER,
        until=result,
        reason=f"messaging limit reached ({window.usage(now)}/{limits.limit} distinct recipients in 24 h)",
    )
