"""Parsing of the planning commands' flags into core values, with one clear error line each.

Numbers arrive as text so every bad value (``-5``, ``1e3``, ``abc``) gets the same style of message
from ``fail()`` rather than a usage dump.
"""

from __future__ import annotations

from rich.markup import escape

from tiergate.cli.app import fail
from tiergate.core.policy import QUALITIES, Policy, get_policy, parse_quality
from tiergate.core.tiers import Tier, parse_tier

__all__ = ["count", "daily_counts", "fraction", "policy", "quality", "start_tier"]


def _fail(message: str, hint: str = "") -> None:
    fail(escape(message), escape(hint))


def count(flag: str, text: str | None, minimum: int = 0) -> int | None:
    """A whole number of at least ``minimum`` (``None`` passes through: the flag was not given)."""
    if text is None:
        return None
    try:
        value = int(text.strip().replace("_", ""))
    except ValueError:
        _fail(f"{flag} must be a whole number, not {text!r}")
        raise
    if value < minimum:
        _fail(f"{flag} must be at least {minimum:,}, not {value:,}")
    return value


def fraction(flag: str, text: str) -> float:
    """A share in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        _fail(f"{flag} must be a number in [0, 1), not {text!r}")
        raise
    if not 0.0 <= value < 1.0:
        _fail(f"{flag} must be in [0, 1), not {text}")
    return value


def policy(text: str) -> Policy:
    try:
        return get_policy(text)
    except ValueError as exc:
        _fail(str(exc))
        raise


def start_tier(text: str | None, rules: Policy) -> Tier:
    """The tier to start from; by default the policy's verified tier (TIER_1K classic, TIER_2K portfolio)."""
    if text is None:
        return rules.verified_tier
    tier = parse_tier(text)
    if not tier.known:
        _fail(f"unknown tier {text!r}: use {rules.ladder[0].name} ... {rules.ladder[-1].name} or a number")
    return tier


def quality(text: str) -> str:
    try:
        return parse_quality(text, strict=True)
    except ValueError:
        _fail(f"unknown quality {text!r}: use one of {', '.join(QUALITIES)}")
        raise


def daily_counts(text: str) -> list[int]:
    """``1000,1000`` -> [1000, 1000]: new recipients enqueued at the start of each day."""
    parts = [part.strip() for part in text.split(",")]
    if not text.strip() or any(not part for part in parts):
        _fail(f"--daily must be comma-separated whole numbers, not {text!r}", "e.g. --daily 1000,1000")
    values = []
    for part in parts:
        value = count("--daily", part)
        assert value is not None
        values.append(value)
    return values
