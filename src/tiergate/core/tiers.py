"""Messaging-limit tiers as the platform names them, parsed from every shape it has used.

The platform reports tiers as strings (``TIER_1K``), integers (``2000``; ``-1`` for unlimited) and,
over the years, strings this code has never seen. Parsing never raises: an unknown value is kept
with ``known=False`` so callers can report it and hold on to the last tier they trusted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["MAX_SET_LIMIT", "UNLIMITED", "Tier", "admission_tier", "parse_tier", "set_tier", "tier_for_limit"]

_TIER_RE = re.compile(r"^TIER_(\d+)(K|M)?$")
_MULT = {None: 1, "K": 1_000, "M": 1_000_000}


@dataclass(frozen=True, slots=True)
class Tier:
    """One step of a messaging-limit ladder.

    ``limit`` is the number of distinct counted recipients allowed in any rolling 24 h window;
    ``None`` means unlimited. ``known`` is False for a value the parser did not understand.
    """

    name: str
    limit: int | None
    known: bool = True

    @property
    def unlimited(self) -> bool:
        return self.known and self.limit is None

    def capacity(self) -> float:
        """The limit as a number usable in comparisons (``inf`` when unlimited or unknown)."""
        return float("inf") if self.limit is None else float(self.limit)

    def __str__(self) -> str:
        return self.name


UNLIMITED = Tier("TIER_UNLIMITED", None)
NOT_SET = Tier("TIER_NOT_SET", None, known=False)


def _name_for(limit: int) -> str:
    if limit >= 1_000_000 and limit % 1_000_000 == 0:
        return f"TIER_{limit // 1_000_000}M"
    if limit >= 1_000 and limit % 1_000 == 0:
        return f"TIER_{limit // 1_000}K"
    return f"TIER_{limit}"


def tier_for_limit(limit: int | None) -> Tier:
    """The tier whose limit is ``limit`` (``None`` or a negative number: unlimited)."""
    if limit is None or limit < 0:
        return UNLIMITED
    return Tier(_name_for(limit), limit)


def parse_tier(value: object) -> Tier:
    """Parse a tier from a platform string, an integer, or a numeric string. Never raises."""
    if isinstance(value, Tier):
        return value
    if isinstance(value, bool):  # bool is an int subclass; True is not a tier
        return Tier(str(value), None, known=False)
    if isinstance(value, int):
        return tier_for_limit(value)
    if isinstance(value, float) and value.is_integer():
        return tier_for_limit(int(value))
    if not isinstance(value, str):
        return Tier(repr(value), None, known=False)
    text = value.strip().upper()
    if text in ("TIER_UNLIMITED", "UNLIMITED"):
        return UNLIMITED
    if text == "TIER_NOT_SET":
        return NOT_SET
    if re.fullmatch(r"-?\d+", text):
        return tier_for_limit(int(text))
    match = _TIER_RE.match(text)
    if match:
        return Tier(text, int(match.group(1)) * _MULT[match.group(2)])
    return Tier(value, None, known=False)


MAX_SET_LIMIT = 1_000_000_000  # a limit a person may set: far above any the platform grants below unlimited


def set_tier(value: object) -> Tier:
    """A tier a person sets (registering or changing a sender), strictly: a tier name, a limit from 1
    to ``MAX_SET_LIMIT``, or -1 / TIER_UNLIMITED. ``parse_tier`` takes whatever the platform sends;
    a person's typo (``true``, ``TIER_7``'s cousin ``TIER_99999999M``, ``-5``) is refused instead."""
    tier = parse_tier(value)
    try:  # parse_tier reads any negative number as unlimited; a person means only -1 so
        negative = not isinstance(value, bool) and float(value) < -1  # type: ignore[arg-type]
    except (TypeError, ValueError):  # a tier name
        negative = False
    if isinstance(value, bool) or not tier.known or negative or (
            tier.limit is not None and not 1 <= tier.limit <= MAX_SET_LIMIT):
        raise ValueError(f"tier: {value!r} is not a tier: a name (TIER_250, TIER_1K, TIER_10K, TIER_UNLIMITED), "
                         f"a limit from 1 to {MAX_SET_LIMIT:,}, or -1 for unlimited")
    return tier


def admission_tier(tier: str, predicted: str | None, trust_model: bool) -> Tier:
    """The tier admission enforces: the platform's, or the model's prediction where the scope
    trusts the model and the prediction is higher (the platform's word wins otherwise)."""
    reported = parse_tier(tier)
    if trust_model and predicted:
        guess = parse_tier(predicted)
        if guess.known and guess.capacity() > reported.capacity():
            return guess
    return reported
