"""``classic``: the source article's rules (the default). Each phone number is its own scope.

TIER_250 (new, unverified) -> TIER_1K (Level 1) -> TIER_10K -> TIER_100K -> TIER_UNLIMITED.
TIER_250 -> TIER_1K only through verification. From TIER_1K up, at each local day boundary: 2 x the
current limit in distinct counted recipients over the 7 days just ended, quality not RED and not
FLAGGED -> the next day starts one rung higher. RED or FLAGGED on 7 consecutive day boundaries -> one
rung down (never below TIER_1K: quality does not undo a verification).
"""

from __future__ import annotations

from tiergate.core.policy.base import Policy, QualityDowngrade, Timing, VolumeUpgrade
from tiergate.core.tiers import parse_tier

__all__ = ["CLASSIC"]

CLASSIC = Policy(
    name="classic",
    summary="per phone number; 2x the limit in 7 days, judged at day boundaries; RED/FLAGGED 7 days: down",
    scope="sender",
    ladder=tuple(parse_tier(name) for name in ("TIER_250", "TIER_1K", "TIER_10K", "TIER_100K", "TIER_UNLIMITED")),
    verified_rung=1,
    upgrades=(
        VolumeUpgrade(
            first_rung=1,
            window_days=7,
            limit_factor=2.0,
            qualities=frozenset({"GREEN", "YELLOW", "UNKNOWN"}),
            timing=Timing.DAY_BOUNDARY,
        ),
    ),
    downgrade=QualityDowngrade(qualities=frozenset({"RED"}), streak_days=7, floor_rung=1),
)
