"""Read models for operators (dashboard, CLI): release timelines, tier ladders, campaign days.

Everything here is derived from durable state (the window ledger, sender events, message rows), so
every process of a scaled-out deployment shows the same picture.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Any

from tiergate.core.model import Campaign, Scope
from tiergate.core.policy import day_index, day_start, get_policy
from tiergate.core.tiers import Tier, parse_tier
from tiergate.ports import Store
from tiergate.service.forecast import plan_for_scope, utc_offset
from tiergate.service.views import campaign_counts

__all__ = ["campaign_day_edges", "campaign_days", "release_timeline", "tier_at", "tier_ladder", "workers_view"]

MAX_DAYS = 366  # a chart of more days is unreadable; the plan JSON has them all


async def release_timeline(store: Store, scope: Scope, now: float, *, hours: int = 24,
                           bucket: float = 3600.0) -> dict[str, Any]:
    """When counted recipients leave the rolling window over the next ``hours``: capacity freeing.

    ``available_after`` is the room the scope has once the bucket ends, if nothing else is sent.
    """
    releases = await store.window_releases(scope.id, now, bucket)
    freed_in = {k: n for k, n, _first, _last in releases}
    limit = parse_tier(scope.tier).limit
    used = sum(freed_in.values())
    remaining = None if limit is None else max(0, limit - used)
    buckets = []
    gone = 0
    for i in range(hours * 3600 // int(bucket)):
        freed = freed_in.get(i, 0)
        gone += freed
        buckets.append({"start": now + i * bucket, "end": now + (i + 1) * bucket, "freed": freed,
                        "available_after": None if limit is None else min(limit, max(0, limit - used + gone))})
    return {
        "scope_id": scope.id, "now": now, "tier": scope.tier, "limit": limit, "used_24h": used,
        "remaining": remaining, "next_release_at": releases[0][2] if releases else None,
        "last_release_at": releases[-1][3] if releases else None, "bucket_seconds": bucket, "buckets": buckets,
    }


def tier_ladder(scope: Scope) -> dict[str, Any]:
    """The policy's ladder with the scope's step marked, and what it takes to climb from each step."""
    policy = get_policy(scope.policy)
    current = parse_tier(scope.tier)
    steps: list[Tier] = list(policy.ladder)
    if current.known and current not in steps:  # a tier the platform reported off this policy's ladder
        steps.append(current)
        steps.sort(key=lambda t: t.capacity())
    rows = []
    for tier in steps:
        rung = policy.rung_of(tier)
        rule = policy.upgrade_rule(tier) if rung is not None else None
        if rule is not None:
            climb = rule.describe(tier)
        elif rung is not None and rung < policy.verified_rung:
            climb = "business verification"
        else:
            climb = None
        rows.append({"tier": tier.name, "limit": tier.limit, "rung": rung, "current": tier == current,
                     "reached": tier.capacity() <= current.capacity(), "climb": climb})
    return {"scope_id": scope.id, "policy": policy.name, "summary": policy.summary, "tier": scope.tier,
            "tier_source": scope.tier_source, "tier_updated_at": scope.tier_updated_at, "steps": rows}


def _tier_changes(events: list[dict[str, Any]]) -> list[tuple[float, str, str]]:
    """(at, old, new) of the tier changes among sender events, oldest first."""
    changes = []
    for e in events:
        if e["kind"] in ("tier_raised", "tier_lowered") and " -> " in e["detail"]:
            old, _, rest = e["detail"].partition(" -> ")
            changes.append((float(e["at"]), old.strip(), rest.split(" ")[0].strip()))
    changes.sort(key=lambda c: c[0])
    return changes


def tier_at(changes: list[tuple[float, str, str]], current: str, at: float) -> str:
    """The tier in force at ``at``: the old tier of the first change after it, else today's tier."""
    times = [c[0] for c in changes]
    i = bisect_right(times, at)
    return changes[i][1] if i < len(changes) else current


def _highest_during(changes: list[tuple[float, str, str]], current: str, start: float, end: float) -> str:
    tiers = [tier_at(changes, current, start)]
    times = [c[0] for c in changes]
    tiers += [c[2] for c in changes[bisect_left(times, start):bisect_left(times, end)]]
    return max(tiers, key=lambda t: parse_tier(t).capacity())


def campaign_day_edges(campaign: Campaign, scope: Scope, now: float) -> tuple[list[float], int]:
    """The starts of the campaign's days in the scope's local time (day 1: the one it was made in),
    one more for the end of the last, as many as its plan or up to today; and today's number."""
    offset = utc_offset(scope.timezone, campaign.created_at)
    first = day_index(campaign.created_at, offset)
    today = day_index(now, offset) - first + 1
    n = min(MAX_DAYS, max(len(campaign.plan), today, 1))
    return [day_start(first + k, offset) for k in range(n + 1)], today


async def campaign_days(store: Store, campaign: Campaign, scope: Scope, now: float) -> dict[str, Any]:
    """The campaign day by day: planned sends and tier (its plan) against what was sent and the tier then.

    Day 1 is the scope's local day the campaign was planned in (its creation), as the planner counts.
    ``finish_by``: the end of the last day of a fresh plan for what is still waiting; ``planned_finish``:
    the end of the plan's last day; ``finished_day``: the last day anything was sent, once nothing waits.
    """
    edges, today = campaign_day_edges(campaign, scope, now)
    n = len(edges) - 1
    plan = campaign.plan
    _counts, done, archive = await campaign_counts(store, campaign.id)
    if archive is None:
        sent = await store.campaign_sends_between(campaign.id, edges)
    else:  # its messages are gone (message retention): the days as they were counted then
        sent = (archive.sent_by_day + [0] * n)[:n]
    changes = _tier_changes(await store.sender_events(campaign.sender_id, 1000))
    days = []
    sent_cumulative = 0
    for k in range(n):
        planned = plan[k] if k < len(plan) else None
        past = k < today
        sent_cumulative += sent[k]
        days.append({
            "day": k + 1, "start": edges[k], "end": edges[k + 1],
            "planned": planned["send"] if planned else 0,
            "planned_cumulative": planned["cumulative"] if planned else (plan[-1]["cumulative"] if plan else 0),
            "planned_tier": planned["tier"] if planned else None,
            "sent": sent[k] if past else None,
            "sent_cumulative": sent_cumulative if past else None,
            "tier": _highest_during(changes, scope.tier, max(edges[k], campaign.created_at),
                                    min(edges[k + 1], now)) if past else None,
        })
    waiting = campaign.total - done
    finish_by: float | None = None
    if waiting > 0 and campaign.state == "running":
        ahead = await plan_for_scope(store, scope, waiting, now)
        if ahead:
            offset = utc_offset(scope.timezone, campaign.created_at)
            finish_by = day_start(day_index(now, offset) + len(ahead), offset)
    finished_day: int | None = None
    if waiting <= 0:
        finished_day = max((k + 1 for k in range(min(n, today)) if sent[k]), default=None)
    return {"campaign_id": campaign.id, "now": now, "timezone": scope.timezone, "today": today,
            "waiting": waiting, "finish_by": finish_by, "finished_day": finished_day,
            "planned_finish": edges[len(plan)] if plan and len(plan) <= n else None, "days": days}


async def workers_view(store: Store, now: float, max_scopes: int) -> dict[str, Any]:
    """The dispatchers (scale-out), the scopes each holds, one worker's share, and the scopes no live
    lease covers (the next worker to renew takes them). ``now`` is wall-clock time, as leases are."""
    workers = await store.list_workers(now)
    held = {scope for w in workers for scope in w.scopes}
    return {"share": await store.scope_share(now, max_scopes),
            "workers": [{"id": w.id, "alive_until": w.alive_until, "scopes": list(w.scopes)} for w in workers],
            "free": sorted(sc.id for sc in await store.list_scopes() if sc.id not in held)}
