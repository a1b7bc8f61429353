"""``portfolio``: the platform's rules since 2025-10-07. A business portfolio is one scope.

TIER_250 -> TIER_2K -> TIER_10K -> TIER_100K -> TIER_UNLIMITED. TIER_250 -> TIER_2K by verification,
or by 2,000 distinct counted recipients over 30 days with quality GREEN. From TIER_2K up: distinct
counted recipients over the last 7 days reach half the current limit with quality GREEN -> one rung up
6 hours after the threshold was crossed. Quality never lowers the tier.

The 30-day entry rule takes effect with the same 6 h delay as the others (the platform states
"within 6 hours" for every upgrade of this era). Windows are rolling (ending at the moment judged),
since these rules are not tied to day boundaries.
"""

from __future__ import annotations

from tiergate.core.policy.base import Policy, Timing, VolumeUpgrade
from tiergate.core.tiers import parse_tier

__all__ = ["PORTFOLIO", "UPGRADE_DELAY"]

UPGRADE_DELAY = 6 * 3600.0
_GREEN = frozenset({"GREEN"})

PORTFOLIO = Policy(
    name="portfolio",
    summary="per business portfolio; half the limit in 7 days with GREEN quality: up 6 h later; no downgrades",
    scope="portfolio",
    ladder=tuple(parse_tier(name) for name in ("TIER_250", "TIER_2K", "TIER_10K", "TIER_100K", "TIER_UNLIMITED")),
    verified_rung=1,
    upgrades=(
        VolumeUpgrade(
            first_rung=0,
            last_rung=0,
            window_days=30,
            fixed_threshold=2_000,
            qualities=_GREEN,
            timing=Timing.ON_CROSSING,
            delay=UPGRADE_DELAY,
        ),
        VolumeUpgrade(
            first_rung=1,
            window_days=7,
            limit_factor=0.5,
            qualities=_GREEN,
            timing=Timing.ON_CROSSING,
            delay=UPGRADE_DELAY,
        ),
    ),
)
