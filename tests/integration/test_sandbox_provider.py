"""The sandbox plays the platform: its own limit count, violations, webhooks, replies, quality, tiers."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tiergate.adapters.provider.sandbox import SandboxProvider
from tiergate.clock import VirtualClock
from tiergate.core.webhooks import InboundMessage, QualityUpdate, StatusUpdate, TierUpdate, parse_webhook
from tiergate.ports import SenderInfo

DAY = 86_400.0
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a day boundary


def template(to: str) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "to": to, "type": "template",
            "template": {"name": "promo", "language": {"code": "en"}}}


def text(to: str, body: str = "hi") -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": body}}


def info(pnid: str = "1001", tier: str = "TIER_250", policy: str = "classic", portfolio: str | None = None,
         quality: str = "GREEN") -> SenderInfo:
    return SenderInfo(pnid, f"+1 555 000 {pnid}", portfolio, policy, tier, quality)


async def make(tier: str = "TIER_250", start: float = T0 + 3_600,
               **options: Any) -> tuple[SandboxProvider, VirtualClock]:
    clock = VirtualClock(start)
    sandbox = SandboxProvider(clock, seed=options.pop("seed", 1), **options)
    await sandbox.register_sender(info(tier=tier))
    return sandbox, clock


def events(sandbox: SandboxProvider, now: float) -> list[Any]:
    return [e for body in sandbox.poll_events(now) for e in parse_webhook(body)]


async def send_many(sandbox: SandboxProvider, recipients: list[str], pnid: str = "1001") -> None:
    for r in recipients:
        assert (await sandbox.send(pnid, template(r))).status == "accepted"


def people(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:06d}" for i in range(n)]


# ------------------------------------------------------------------------------------------------
# The limit
# ------------------------------------------------------------------------------------------------
async def test_sends_over_the_tier_are_accepted_then_fail_131048_and_count_as_violations() -> None:
    sandbox, clock = await make("TIER_250")
    await send_many(sandbox, people("4917", 300))
    assert sandbox.violations == 50
    assert sandbox.usage("sender:1001") == 250
    assert sandbox.stats["delivered"] == 250
    clock.advance(10)
    failed = [e for e in events(sandbox, clock.now()) if isinstance(e, StatusUpdate) and e.status == "failed"]
    assert len(failed) == 50
    assert {e.error_code for e in failed} == {131048}
    assert all("messaging limit" in e.errors[0].details for e in failed)
    assert [r.outcome for r in sandbox.received].count("violation") == 50


async def test_a_counted_recipient_costs_nothing_again_and_capacity_frees_after_24h() -> None:
    sandbox, clock = await make("TIER_250")
    first = people("4917", 250)
    await send_many(sandbox, first)
    await send_many(sandbox, first[:10])  # already counted
    assert sandbox.violations == 0
    clock.advance(DAY - 1)
    await sandbox.send("1001", template("4990000001"))
    assert sandbox.violations == 1
    clock.advance(1)  # the first sends are exactly 24 h old: they no longer count
    await send_many(sandbox, people("4918", 250))
    assert sandbox.violations == 1
    assert sandbox.usage("sender:1001") == 250


async def test_replies_inside_the_service_window_are_not_counted_nor_held_by_the_limit() -> None:
    sandbox, clock = await make("TIER_250")
    await send_many(sandbox, people("4917", 250))
    sandbox.inbound("1001", "+49 170 0000001", text="hello?")
    assert sandbox.window_open("1001", "491700000001")
    assert (await sandbox.send("1001", text("+491700000001"))).status == "accepted"
    assert (await sandbox.send("1001", template("+491700000001"))).status == "accepted"
    assert sandbox.violations == 0
    assert sandbox.usage("sender:1001") == 250
    clock.advance(5)
    inbound = [e for e in events(sandbox, clock.now()) if isinstance(e, InboundMessage)]
    assert [(e.wa_id, e.text, e.phone_number_id) for e in inbound] == [("491700000001", "hello?", "1001")]


async def test_free_form_outside_the_window_fails_131047_asynchronously() -> None:
    sandbox, clock = await make("TIER_1K")
    outcome = await sandbox.send("1001", text("+491700000002"))
    assert outcome.status == "accepted"
    clock.advance(5)
    statuses = [e for e in events(sandbox, clock.now()) if isinstance(e, StatusUpdate)]
    assert [(s.status, s.error_code, s.wamid) for s in statuses] == [("failed", 131047, outcome.wamid)]
    assert sandbox.usage("sender:1001") == 0


async def test_undeliverable_recipients_fail_131026_are_not_counted_and_stay_undeliverable() -> None:
    sandbox, clock = await make("TIER_1K", undeliverable_share=0.2)
    recipients = people("4917", 500)
    await send_many(sandbox, recipients)
    bad = {r.to for r in sandbox.received if r.outcome == "undeliverable"}
    assert 50 < len(bad) < 150
    assert sandbox.usage("sender:1001") == 500 - len(bad)
    await send_many(sandbox, sorted(bad)[:5])
    assert {r.outcome for r in sandbox.received[-5:]} == {"undeliverable"}
    clock.advance(10)
    codes = {e.error_code for e in events(sandbox, clock.now()) if isinstance(e, StatusUpdate) and e.status == "failed"}
    assert codes == {131026}


async def test_portfolio_senders_share_one_count() -> None:
    clock = VirtualClock(T0)
    sandbox = SandboxProvider(clock, seed=2)
    await sandbox.register_sender(info("2001", "TIER_2K", "portfolio", "acme"))
    await sandbox.register_sender(info("2002", "TIER_2K", "portfolio", "acme"))
    await send_many(sandbox, people("33", 900), pnid="2001")
    await send_many(sandbox, people("34", 900), pnid="2002")
    await send_many(sandbox, people("33", 100), pnid="2002")  # the same people count once per portfolio
    assert sandbox.usage("portfolio:acme") == 1_800
    await send_many(sandbox, people("35", 300), pnid="2002")
    assert sandbox.violations == 100
    assert sandbox.scope_violations == {"portfolio:acme": 100}
    assert sandbox.scope_of("2001") == sandbox.scope_of("2002") == "portfolio:acme"


async def test_throughput_beyond_the_number_rate_can_be_refused_with_130429() -> None:
    sandbox, clock = await make("TIER_UNLIMITED", enforce_throughput=True, throughput_mps=80)
    outcomes = [await sandbox.send("1001", template(f"4917{i:06d}")) for i in range(81)]
    assert [o.code for o in outcomes].count(130429) == 1
    clock.advance(1)
    assert (await sandbox.send("1001", template("491799999999"))).status == "accepted"


# ------------------------------------------------------------------------------------------------
# Webhooks
# ------------------------------------------------------------------------------------------------
async def test_status_webhooks_have_the_platform_shape_and_order() -> None:
    sandbox, clock = await make("TIER_1K", read_share=1.0)
    outcome = await sandbox.send("1001", template("+447700900123"))
    assert sandbox.next_event_at() == clock.now() + sandbox.sent_delay
    clock.advance(120)
    bodies = sandbox.poll_events(clock.now())
    assert len(bodies) == 3
    body = bodies[0]
    assert body["object"] == "whatsapp_business_account"
    change = body["entry"][0]["changes"][0]
    assert change["field"] == "messages"
    assert change["value"]["messaging_product"] == "whatsapp"
    assert change["value"]["metadata"] == {"display_phone_number": "15550001001", "phone_number_id": "1001"}
    status = change["value"]["statuses"][0]
    assert status["id"] == outcome.wamid and status["recipient_id"] == "447700900123"
    assert status["pricing"]["billable"] is True
    parsed = [e for b in bodies for e in parse_webhook(b)]
    assert [(e.status, e.wamid) for e in parsed if isinstance(e, StatusUpdate)] == [
        ("sent", outcome.wamid), ("delivered", outcome.wamid), ("read", outcome.wamid)]
    times = [float(b["entry"][0]["changes"][0]["value"]["statuses"][0]["timestamp"]) for b in bodies]
    assert times == sorted(times)
    assert sandbox.poll_events(clock.now()) == []


async def test_statuses_can_be_batched_and_limited_to_some_kinds() -> None:
    sandbox, clock = await make("TIER_1K", statuses=("delivered",), webhook_batch=50)
    await send_many(sandbox, people("4917", 120))
    clock.advance(10)
    bodies = sandbox.poll_events(clock.now())
    assert [len(b["entry"][0]["changes"][0]["value"]["statuses"]) for b in bodies] == [50, 50, 20]
    assert {e.status for b in bodies for e in parse_webhook(b) if isinstance(e, StatusUpdate)} == {"delivered"}


async def test_replies_come_from_a_share_of_recipients_and_open_their_window() -> None:
    sandbox, clock = await make("TIER_1K", reply_share=0.3, reply_delay=60.0)
    await send_many(sandbox, people("4917", 200))
    clock.advance(30)
    assert not any(isinstance(e, InboundMessage) for e in events(sandbox, clock.now()))
    clock.advance(60)
    inbound = [e for e in events(sandbox, clock.now()) if isinstance(e, InboundMessage)]
    assert 30 < len(inbound) < 90
    assert all(e.contact_name and e.text for e in inbound)
    assert all(sandbox.window_open("1001", e.wa_id) for e in inbound)


async def test_stop_replies_are_plain_inbound_texts() -> None:
    sandbox, clock = await make("TIER_1K", reply_share=1.0, stop_share=1.0, reply_delay=1.0)
    await send_many(sandbox, ["4917000001"])
    clock.advance(2)
    inbound = [e for e in events(sandbox, clock.now()) if isinstance(e, InboundMessage)]
    assert [e.text for e in inbound] == ["STOP"]


async def test_many_blocks_lower_quality_at_the_day_boundary_and_flag_the_number() -> None:
    sandbox, clock = await make("TIER_1K", block_share=0.2, quality_sample=50)
    await send_many(sandbox, people("4917", 200))
    clock.set(T0 + DAY)
    quality = [e for e in events(sandbox, clock.now()) if isinstance(e, QualityUpdate)]
    assert [(q.quality, q.flagged, q.phone_number_id) for q in quality] == [("RED", True, "1001")]
    assert sandbox.quality_of("1001") == "RED"
    assert (await sandbox.get_phone_number("1001", ["status", "quality_rating"]))["status"] == "FLAGGED"
    blocked = people("4917", 200)
    await send_many(sandbox, blocked)
    assert sandbox.stats["blocked"] > 0  # blocked recipients are undeliverable from then on


async def test_quality_recovers_when_blocks_stop() -> None:
    sandbox, clock = await make("TIER_1K", quality_sample=10)
    sandbox.set_quality("1001", "RED")
    await send_many(sandbox, people("4917", 20))
    clock.set(T0 + DAY)
    quality = [e for e in events(sandbox, clock.now()) if isinstance(e, QualityUpdate)]
    assert [(q.quality, q.flagged) for q in quality] == [("RED", True), ("GREEN", False)]


# ------------------------------------------------------------------------------------------------
# Tiers: the sandbox applies the policy, reports, then enforces
# ------------------------------------------------------------------------------------------------
async def daily_campaign(sandbox: SandboxProvider, clock: VirtualClock, per_day: list[int]) -> list[TierUpdate]:
    """Send ``per_day[d]`` new recipients on day d (at 01:00 UTC); the tier updates seen up to the end."""
    updates: list[TierUpdate] = []
    for day, count in enumerate(per_day):
        clock.set(T0 + day * DAY + 3_600)
        updates += [e for e in events(sandbox, clock.now()) if isinstance(e, TierUpdate)]
        await send_many(sandbox, people(f"9{day:02d}", count))
    clock.set(T0 + len(per_day) * DAY + 3_600)
    return updates + [e for e in events(sandbox, clock.now()) if isinstance(e, TierUpdate)]


async def test_classic_article_example_1_level_2_from_day_3() -> None:
    sandbox, clock = await make("TIER_1K", start=T0)
    updates = await daily_campaign(sandbox, clock, [1000, 1000])
    assert [(u.tier.name, u.event, u.per_business) for u in updates] == [("TIER_10K", "UPGRADE", False)]
    assert sandbox.tier_of("sender:1001") == "TIER_10K"
    assert (await sandbox.get_phone_number("1001", ["messaging_limit_tier"]))["messaging_limit_tier"] == "TIER_10K"
    await send_many(sandbox, people("77", 5000))
    assert sandbox.violations == 0  # the sandbox enforces its new tier


async def test_classic_article_example_2_level_2_from_day_8_not_before() -> None:
    sandbox, clock = await make("TIER_1K", start=T0)
    early = await daily_campaign(sandbox, clock, [50, 150, 200, 400, 400, 400])
    assert early == []
    late = await daily_campaign_continue(sandbox, clock, day=6, count=400)
    assert [u.tier.name for u in late] == ["TIER_10K"]
    assert clock.now() == T0 + 7 * DAY + 3_600


async def daily_campaign_continue(sandbox: SandboxProvider, clock: VirtualClock, day: int,
                                  count: int) -> list[TierUpdate]:
    clock.set(T0 + day * DAY + 3_600)
    await send_many(sandbox, people(f"9{day:02d}", count))
    clock.set(T0 + (day + 1) * DAY + 3_600)
    return [e for e in events(sandbox, clock.now()) if isinstance(e, TierUpdate)]


async def test_classic_tier_250_moves_only_by_verification() -> None:
    sandbox, clock = await make("TIER_250", start=T0)
    assert await daily_campaign(sandbox, clock, [250] * 8) == []
    assert sandbox.verify("1001") == "TIER_1K"
    updates = [e for e in events(sandbox, clock.now()) if isinstance(e, TierUpdate)]
    assert [(u.tier.name, u.old_tier and u.old_tier.name) for u in updates] == [("TIER_1K", "TIER_250")]


async def test_classic_red_quality_blocks_upgrades_and_seven_red_days_downgrade() -> None:
    sandbox, clock = await make("TIER_10K", start=T0, quality_sample=10**9)
    sandbox.set_quality("1001", "RED")
    updates = await daily_campaign(sandbox, clock, [20_000, 0, 0, 0, 0, 0, 0])
    assert [(u.tier.name, u.event) for u in updates] == [("TIER_1K", "DOWNGRADE")]
    assert sandbox.tier_of("sender:1001") == "TIER_1K"


async def test_classic_quality_never_undoes_a_verification() -> None:
    sandbox, clock = await make("TIER_1K", start=T0, quality_sample=10**9)
    sandbox.set_quality("1001", "RED")
    assert await daily_campaign(sandbox, clock, [0] * 10) == []
    assert sandbox.tier_of("sender:1001") == "TIER_1K"


async def test_portfolio_moves_up_six_hours_after_crossing_half_the_limit() -> None:
    clock = VirtualClock(T0)
    sandbox = SandboxProvider(clock, seed=4)
    await sandbox.register_sender(info("2001", "TIER_2K", "portfolio", "acme"))
    await sandbox.register_sender(info("2002", "TIER_2K", "portfolio", "acme"))
    await send_many(sandbox, people("33", 600), pnid="2001")
    clock.advance(60)
    await send_many(sandbox, people("34", 400), pnid="2002")  # 1,000 = half of 2K: threshold crossed now
    crossed = clock.now()
    clock.set(crossed + 6 * 3_600 - 1)
    assert not [e for e in events(sandbox, clock.now()) if isinstance(e, TierUpdate)]
    assert sandbox.tier_of("portfolio:acme") == "TIER_2K"
    clock.set(crossed + 6 * 3_600)
    updates = [e for e in events(sandbox, clock.now()) if isinstance(e, TierUpdate)]
    assert sandbox.tier_of("portfolio:acme") == "TIER_10K"
    assert {(u.tier.name, u.per_business) for u in updates} == {("TIER_10K", True)}
    fields = {u.field for u in updates}
    assert fields == {"phone_number_quality_update", "business_capability_update"}
    assert {u.phone_number_id for u in updates if u.field == "phone_number_quality_update"} == {"2001", "2002"}


async def test_portfolio_leaves_tier_250_after_2000_recipients_in_30_days() -> None:
    clock = VirtualClock(T0)
    sandbox = SandboxProvider(clock, seed=4)
    await sandbox.register_sender(info("2001", "TIER_250", "portfolio", "acme"))
    updates = await daily_campaign_portfolio(sandbox, clock, days=8, per_day=250)
    assert [u.tier.name for u in updates] == ["TIER_2K", "TIER_2K"]
    assert sandbox.violations == 0


async def daily_campaign_portfolio(sandbox: SandboxProvider, clock: VirtualClock, days: int,
                                   per_day: int) -> list[TierUpdate]:
    updates: list[TierUpdate] = []
    for day in range(days):
        clock.set(T0 + day * DAY)
        updates += [e for e in events(sandbox, clock.now()) if isinstance(e, TierUpdate)]
        await send_many(sandbox, people(f"8{day:02d}", per_day), pnid="2001")
    clock.advance(6 * 3_600)
    return updates + [e for e in events(sandbox, clock.now()) if isinstance(e, TierUpdate)]


async def test_portfolio_does_not_move_up_unless_every_number_is_green() -> None:
    clock = VirtualClock(T0)
    sandbox = SandboxProvider(clock, seed=4)
    await sandbox.register_sender(info("2001", "TIER_2K", "portfolio", "acme"))
    await sandbox.register_sender(info("2002", "TIER_2K", "portfolio", "acme", quality="YELLOW"))
    await send_many(sandbox, people("33", 1_500), pnid="2001")
    clock.advance(7 * 3_600)
    assert sandbox.tier_of("portfolio:acme") == "TIER_2K"
    sandbox.set_quality("2002", "GREEN")  # recovery: the threshold holds, the move follows 6 h later
    clock.advance(6 * 3_600)
    sandbox.poll_events(clock.now())
    assert sandbox.tier_of("portfolio:acme") == "TIER_10K"


# ------------------------------------------------------------------------------------------------
# Determinism and the independent count
# ------------------------------------------------------------------------------------------------
async def scenario(seed: int) -> tuple[list[Any], list[Any]]:
    sandbox, clock = await make("TIER_250", seed=seed, reply_share=0.2, block_share=0.05,
                                undeliverable_share=0.1, read_share=0.5)
    bodies: list[Any] = []
    for i in range(400):
        await sandbox.send("1001", template(f"4917{i % 310:06d}"))
        clock.advance(7)
        bodies += sandbox.poll_events(clock.now())
    return [tuple(r) for r in sandbox.received], bodies


async def test_the_same_seed_gives_the_same_platform() -> None:
    first, again, other = await scenario(9), await scenario(9), await scenario(10)
    assert first == again
    assert first != other


@settings(max_examples=60, deadline=None)
@given(
    limit=st.sampled_from([1, 2, 3, 5]),
    sends=st.lists(st.tuples(st.integers(0, 7), st.one_of(st.floats(0, 3 * DAY), st.sampled_from([0.0, DAY, 2 * DAY]))),
                   max_size=60),
)
async def test_violations_match_a_brute_force_count(limit: int, sends: list[tuple[int, float]]) -> None:
    """Replays random send streams and checks the sandbox against the definition, recomputed naively."""
    tier = {1: "TIER_1", 2: "TIER_2", 3: "TIER_3", 5: "TIER_5"}[limit]
    clock = VirtualClock(T0)
    sandbox = SandboxProvider(clock, seed=0)
    await sandbox.register_sender(info(tier=tier))
    counted: list[tuple[float, str]] = []  # the counted sends so far
    expected = 0
    for who, at in sorted(sends, key=lambda send: send[1]):
        clock.set(T0 + at)
        now, recipient = clock.now(), f"31600000{who}"
        live = {r for t, r in counted if now - t < DAY}
        if recipient in live or len(live) < limit:
            counted.append((now, recipient))
        else:
            expected += 1
        await sandbox.send("1001", template(recipient))
    assert sandbox.violations == expected


async def test_registering_again_keeps_the_tier_and_quality_the_platform_decided() -> None:
    sandbox, clock = await make("TIER_1K", start=T0)
    await daily_campaign(sandbox, clock, [1000, 1000])
    assert sandbox.tier_of("sender:1001") == "TIER_10K"
    await sandbox.register_sender(info(tier="TIER_1K", quality="UNKNOWN"))  # a tiergate that lags behind
    assert sandbox.tier_of("sender:1001") == "TIER_10K"
    assert sandbox.quality_of("1001") == "GREEN"


async def test_set_tier_is_reported_and_enforced() -> None:
    sandbox, clock = await make("TIER_1K")
    sandbox.set_tier("1001", "TIER_250")
    updates = [e for e in events(sandbox, clock.now()) if isinstance(e, TierUpdate)]
    assert [(u.tier.name, u.event) for u in updates] == [("TIER_250", "DOWNGRADE")]
    await send_many(sandbox, people("4917", 251))
    assert sandbox.violations == 1


async def test_an_unknown_quality_at_registration_starts_green() -> None:
    clock = VirtualClock(T0)
    sandbox = SandboxProvider(clock)
    await sandbox.register_sender(info("3001", "TIER_2K", "portfolio", "p", quality="UNKNOWN"))
    assert sandbox.quality_of("3001") == "GREEN"
    assert (await sandbox.get_phone_number("3001", ["quality_rating"]))["quality_rating"] == "GREEN"
