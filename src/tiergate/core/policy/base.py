"""What a tier policy is: a ladder and a few rules (data), and one engine that applies them (functions).

A policy era (``classic``, ``portfolio``, the next one) is a ``Policy`` value: its ladder, the rung a
verification event grants, its volume upgrades and its quality downgrade. The engine methods on
``Policy`` are the same for every era, so adding an era is one module with one value in it.

The engine is pure and takes explicit state: the caller keeps a ``PolicyState`` per scope, counts
distinct recipients (``reach``: a mapping from a window length in days to the distinct counted
recipients over it) and calls

- ``end_of_day(state, reach, at)`` at each local day boundary ``at``, with ``reach`` over the whole
  local days ending at ``at`` (day-boundary rules and quality downgrades);
- ``observe(state, reach, now)`` after counted sends (and after tier or quality changes), with
  ``reach`` over rolling windows ending at ``now`` (threshold crossings, which schedule an upgrade);
- ``apply_due(state, now)`` when a scheduled upgrade falls due (``state.pending_upgrade_at``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from itertools import pairwise

from tiergate.core.tiers import Tier

__all__ = [
    "QUALITIES",
    "Policy",
    "PolicyState",
    "QualityDowngrade",
    "Timing",
    "VolumeUpgrade",
    "parse_quality",
]

QUALITIES = ("GREEN", "YELLOW", "RED", "UNKNOWN")
_QUALITY_ALIASES = {
    "GREEN": "GREEN", "HIGH": "GREEN",
    "YELLOW": "YELLOW", "MEDIUM": "YELLOW",
    "RED": "RED", "LOW": "RED",
    "UNKNOWN": "UNKNOWN", "NA": "UNKNOWN", "": "UNKNOWN",
}


def parse_quality(value: str, *, strict: bool = False) -> str:
    """The platform's quality rating as GREEN, YELLOW, RED or UNKNOWN (older High/Medium/Low too).

    An unrecognised value is UNKNOWN, or a ``ValueError`` when ``strict`` (user input).
    """
    quality = _QUALITY_ALIASES.get(value.strip().upper())
    if quality is None:
        if strict:
            raise ValueError(f"unknown quality {value!r}: use one of {', '.join(QUALITIES)}")
        return "UNKNOWN"
    return quality


class Timing(StrEnum):
    DAY_BOUNDARY = "day_boundary"  # judged when a local day ends; the next day starts one rung up
    ON_CROSSING = "on_crossing"  # judged continuously; one rung up ``delay`` after the crossing


@dataclass(frozen=True, slots=True)
class VolumeUpgrade:
    """One rung up when distinct counted recipients over ``window_days`` reach a threshold.

    The threshold is ``ceil(limit_factor * current limit)``, or ``fixed_threshold`` when the factor
    is 0. It applies on rungs ``first_rung`` .. ``last_rung`` (``None``: up to the top) while the
    quality rating is one of ``qualities`` and (if ``blocked_when_flagged``) the scope is not FLAGGED.
    """

    first_rung: int
    window_days: int
    qualities: frozenset[str]
    timing: Timing
    limit_factor: float = 0.0
    fixed_threshold: int = 0
    last_rung: int | None = None
    delay: float = 0.0
    blocked_when_flagged: bool = True

    def threshold(self, tier: Tier) -> int:
        if self.limit_factor == 0 or tier.limit is None:
            return self.fixed_threshold
        return math.ceil(self.limit_factor * tier.limit)

    def allows(self, quality: str, flagged: bool) -> bool:
        return quality in self.qualities and not (flagged and self.blocked_when_flagged)

    def covers(self, rung: int) -> bool:
        return rung >= self.first_rung and (self.last_rung is None or rung <= self.last_rung)

    def describe(self, tier: Tier) -> str:
        when = "at the next day boundary" if self.timing is Timing.DAY_BOUNDARY else (
            f"{self.delay / 3600:g} h after the crossing")
        return (f"{self.threshold(tier):,} distinct counted recipients in {self.window_days} days "
                f"with quality {'/'.join(sorted(self.qualities))}: one rung up {when}")


@dataclass(frozen=True, slots=True)
class QualityDowngrade:
    """One rung down after ``streak_days`` consecutive day boundaries in a bad quality (or FLAGGED).

    Never below ``floor_rung``: quality does not undo a verification.
    """

    qualities: frozenset[str]
    streak_days: int
    floor_rung: int
    flagged_counts: bool = True

    def bad(self, quality: str, flagged: bool) -> bool:
        return quality in self.qualities or (flagged and self.flagged_counts)


@dataclass(frozen=True, slots=True)
class PolicyState:
    """A scope's tier as the policy model sees it, and the memory the rules need.

    ``quality``: the platform's rating (GREEN unless told otherwise); ``flagged``: the sender is
    FLAGGED; ``red_streak``: consecutive day boundaries in a downgrading quality;
    ``pending_upgrade_at``: when a crossed threshold takes effect; ``changed_at``/``reason``: when
    and why the tier last moved.
    """

    tier: Tier
    quality: str = "GREEN"
    flagged: bool = False
    red_streak: int = 0
    pending_upgrade_at: float | None = None
    changed_at: float | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class _Place:
    rung: int | None
    above: Tier | None
    below: Tier | None
    rule: VolumeUpgrade | None


@dataclass(frozen=True, slots=True)
class Policy:
    """A policy era: data (ladder, rules) plus the engine that applies them to a ``PolicyState``."""

    name: str
    summary: str
    scope: str  # "sender" (each phone number is a scope) or "portfolio" (one scope per business portfolio)
    ladder: tuple[Tier, ...]
    verified_rung: int
    upgrades: tuple[VolumeUpgrade, ...]
    downgrade: QualityDowngrade | None = None
    _capacities: tuple[float, ...] = field(init=False, repr=False, compare=False)
    _places: dict[Tier, _Place] = field(init=False, repr=False, compare=False)
    _windows: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        capacities = tuple(t.capacity() for t in self.ladder)
        if not self.ladder or any(not t.known for t in self.ladder):
            raise ValueError(f"policy {self.name}: the ladder needs known tiers")
        if any(a >= b for a, b in pairwise(capacities)):
            raise ValueError(f"policy {self.name}: ladder limits must increase")
        if not 0 <= self.verified_rung < len(self.ladder):
            raise ValueError(f"policy {self.name}: verified_rung outside the ladder")
        object.__setattr__(self, "_capacities", capacities)
        object.__setattr__(self, "_places", {})
        object.__setattr__(self, "_windows", tuple(sorted({rule.window_days for rule in self.upgrades})))

    # -- the ladder -------------------------------------------------------------------------
    @property
    def entry_tier(self) -> Tier:
        return self.ladder[0]

    @property
    def verified_tier(self) -> Tier:
        return self.ladder[self.verified_rung]

    @property
    def reach_windows(self) -> tuple[int, ...]:
        """The window lengths (days) the rules count distinct recipients over."""
        return self._windows

    def rung_of(self, tier: Tier) -> int | None:
        """The rung whose rules apply to ``tier``: its own, or the highest below an off-ladder tier
        (0 below the ladder). ``None`` for a tier the parser did not understand."""
        return self._place(tier).rung

    def tier_above(self, tier: Tier) -> Tier | None:
        return self._place(tier).above

    def tier_below(self, tier: Tier) -> Tier | None:
        return self._place(tier).below

    def upgrade_rule(self, tier: Tier) -> VolumeUpgrade | None:
        """The volume rule that can lift ``tier`` one rung (``None``: top, verification only, unknown)."""
        return self._place(tier).rule

    def _place(self, tier: Tier) -> _Place:
        """Where ``tier`` sits on the ladder, worked out once per tier (the planner asks often)."""
        place = self._places.get(tier)
        if place is None:
            if len(self._places) > 256:  # unknown tier strings could be many: stay bounded
                self._places.clear()
            place = self._places[tier] = self._locate(tier)
        return place

    def _locate(self, tier: Tier) -> _Place:
        if not tier.known:
            return _Place(None, None, None, None)
        capacity = tier.capacity()
        pairs = list(zip(self.ladder, self._capacities, strict=True))
        below_or_equal = [i for i, (_, c) in enumerate(pairs) if c <= capacity]
        rung = below_or_equal[-1] if below_or_equal else 0
        above = next((t for t, c in pairs if c > capacity), None)
        lower = [t for t, c in pairs if c < capacity]
        rule = None if above is None else next((r for r in self.upgrades if r.covers(rung)), None)
        return _Place(rung, above, lower[-1] if lower else None, rule)

    # -- events -----------------------------------------------------------------------------
    def verify(self, state: PolicyState, at: float) -> PolicyState:
        """A verification event: at least the verified rung from now on."""
        target = self.verified_tier
        if state.tier.known and state.tier.capacity() >= target.capacity():
            return state
        return replace(state, tier=target, pending_upgrade_at=None, red_streak=0, changed_at=at,
                       reason="verification")

    def end_of_day(self, state: PolicyState, reach: Mapping[int, int], at: float) -> PolicyState:
        """The tier the day starting at ``at`` begins with.

        ``reach[n]``: distinct counted recipients over the ``n`` whole local days ending at ``at``.
        """
        tier = state.tier
        if not tier.known:
            return state
        streak = state.red_streak
        downgrade = self.downgrade
        if downgrade is not None:
            streak = streak + 1 if downgrade.bad(state.quality, state.flagged) else 0
            if streak >= downgrade.streak_days:
                lower = self.tier_below(tier)
                floor = self._capacities[downgrade.floor_rung]
                if lower is not None and lower.capacity() >= floor:
                    return replace(state, tier=lower, red_streak=0, pending_upgrade_at=None, changed_at=at,
                                   reason=f"quality {self._badness(state)} on {streak} consecutive days")
                streak = downgrade.streak_days  # at the floor: stays bad, goes no lower
        rule = self.upgrade_rule(tier)
        if rule is not None and rule.timing is Timing.DAY_BOUNDARY and rule.allows(state.quality, state.flagged):
            count, threshold = self._reach(reach, rule.window_days), rule.threshold(tier)
            if count >= threshold:
                above = self.tier_above(tier)
                assert above is not None  # upgrade_rule() found a rung above
                return replace(state, tier=above, red_streak=streak, changed_at=at,
                               reason=f"{count:,} distinct counted recipients in {rule.window_days} days "
                               f">= {threshold:,}")
        return state if streak == state.red_streak else replace(state, red_streak=streak)

    def observe(self, state: PolicyState, reach: Mapping[int, int], now: float) -> PolicyState:
        """Schedule an upgrade if a continuously judged threshold is reached at ``now``.

        ``reach[n]``: distinct counted recipients over the rolling ``n`` days ending at ``now``.
        """
        if state.pending_upgrade_at is not None:
            return state
        rule = self.upgrade_rule(state.tier)
        if rule is None or rule.timing is not Timing.ON_CROSSING or not rule.allows(state.quality, state.flagged):
            return state
        if self._reach(reach, rule.window_days) >= rule.threshold(state.tier):
            return replace(state, pending_upgrade_at=now + rule.delay)
        return state

    def apply_due(self, state: PolicyState, now: float) -> PolicyState:
        """Carry out a scheduled upgrade that is due by ``now`` (dropped if quality no longer allows it)."""
        at = state.pending_upgrade_at
        if at is None or at > now:
            return state
        rule = self.upgrade_rule(state.tier)
        above = self.tier_above(state.tier)
        if rule is None or above is None or not rule.allows(state.quality, state.flagged):
            return replace(state, pending_upgrade_at=None)
        return replace(state, tier=above, pending_upgrade_at=None, changed_at=at,
                       reason=f"{rule.threshold(state.tier):,} distinct counted recipients in "
                       f"{rule.window_days} days reached {rule.delay / 3600:g} h earlier")

    def can_move(self, state: PolicyState) -> bool:
        """Whether the tier may still move without an outside event (verification, a new quality)."""
        if not state.tier.known:
            return False
        if state.pending_upgrade_at is not None:
            return True
        rule = self.upgrade_rule(state.tier)
        if rule is not None and rule.allows(state.quality, state.flagged):
            return True
        downgrade = self.downgrade
        if downgrade is None or not downgrade.bad(state.quality, state.flagged):
            return False
        lower = self.tier_below(state.tier)
        return lower is not None and lower.capacity() >= self._capacities[downgrade.floor_rung]

    # -- helpers ----------------------------------------------------------------------------
    def _reach(self, reach: Mapping[int, int], days: int) -> int:
        try:
            return reach[days]
        except KeyError:
            raise ValueError(
                f"policy {self.name} needs the distinct recipients over {days} days (reach[{days}])"
            ) from None

    @staticmethod
    def _badness(state: PolicyState) -> str:
        return "FLAGGED" if state.flagged else state.quality
