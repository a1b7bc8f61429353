"""The storage port's contract: every test runs on SQLite and on PostgreSQL (see tests/conftest.py)."""

from __future__ import annotations

import asyncio
import math
import multiprocessing
from collections import Counter
from dataclasses import replace
from typing import Any

import apsw
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import StoreFactory

from tiergate.adapters.store import open_store
from tiergate.adapters.store.postgres import PostgresStore
from tiergate.adapters.store.sql import SqlStore, migrations
from tiergate.adapters.store.sqlite import SQLiteStore
from tiergate.core.model import (
    ApiKey,
    Campaign,
    CampaignArchive,
    Message,
    MessageState,
    NewMessage,
    Scope,
    Sender,
    Tenant,
)
from tiergate.ports import (
    ConflictError,
    CountedHistory,
    LeaseLost,
    LedgerChange,
    MessageUpdate,
    NotFound,
    RecipientFlags,
    WorkerLeases,
)

Q, SENDING, SENT = MessageState.QUEUED, MessageState.SENDING, MessageState.SENT
DAY = 86_400.0
T0 = 1_700_000_000.0


async def seed(store: SqlStore, tenant: str = "t1", scopes: tuple[str, ...] = ("100", "200")) -> None:
    """A tenant and, per id, a classic scope ``sender:<id>`` with its sender ``<id>``."""
    await store.create_tenant(Tenant(tenant, f"{tenant}-name", created_at=T0))
    for sender_id in scopes:
        await store.upsert_scope(Scope(f"sender:{sender_id}", tenant))
        await store.create_sender(Sender(sender_id, tenant, f"+{sender_id}", f"sender:{sender_id}", created_at=T0))


def new(to: str, sender: str = "100", tenant: str = "t1", **fields: Any) -> NewMessage:
    fields.setdefault("category", "MARKETING")
    return NewMessage(tenant_id=tenant, sender_id=sender, to=to, kind="template",
                      body={"to": to, "template": {"name": "hello"}}, **fields)


async def states(store: SqlStore, messages: list[Message]) -> list[str]:
    return [str((await store.get_message(m.id)).state) for m in messages]


# --------------------------------------------------------------------------------------------
# open_store and migrations
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("url", "adapter", "where"), [
    ("tiergate.db", SQLiteStore, "tiergate.db"),
    ("./data/x.db", SQLiteStore, "./data/x.db"),
    ("sqlite:///rel.db", SQLiteStore, "rel.db"),
    ("sqlite:////abs/x.db", SQLiteStore, "/abs/x.db"),
    (":memory:", SQLiteStore, ":memory:"),
    ("postgresql://u@h:5432/db", PostgresStore, "postgresql://u@h:5432/db"),
    ("postgres://u@h/db?schema=abc", PostgresStore, "postgres://u@h/db"),
])
def test_open_store_picks_the_adapter_from_the_url(url: str, adapter: type, where: str) -> None:
    store = open_store(url)
    assert type(store) is adapter
    assert getattr(store, "path", None) == where or getattr(store, "url", None) == where


@pytest.mark.parametrize("url", ["mysql://h/db", "", "sqlite:///", "http://x"])
def test_open_store_refuses_other_urls(url: str) -> None:
    with pytest.raises(ValueError, match="URL"):
        open_store(url)


def test_postgres_schema_option() -> None:
    assert PostgresStore("postgresql://h/db?schema=abc").schema == "abc"
    assert PostgresStore("postgresql://h/db", schema="xyz").connect_kwargs == {"options": "-c search_path=xyz"}
    with pytest.raises(ValueError, match="schema"):
        PostgresStore("postgresql://h/db", schema="bad name; drop")


async def test_memory_store_works() -> None:
    async with open_store(":memory:") as store:
        await seed(store)
        assert len(await store.list_senders()) == 2


async def test_migrations_apply_once(store: SqlStore, make_store: StoreFactory) -> None:
    expected = [version for version, _, _ in migrations(store.dialect)]
    assert expected and await store.schema_versions() == expected
    again = await make_store()  # another process starting on a migrated database
    assert await again.schema_versions() == expected


async def test_history_rows_of_schema_1_move_into_the_message_row(store_url: str, make_store: StoreFactory,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A database made by version 1 (history in message_events) keeps every history line."""
    import tiergate.adapters.store.sql as sql_module

    every = sql_module.migrations
    monkeypatch.setattr(sql_module, "migrations", lambda dialect: every(dialect)[:1])
    old = await make_store()  # no seed(): today's records have columns version 1 lacks (no foreign keys)
    async with old.transaction() as tx:
        await tx.execute(
            "INSERT INTO messages (id, tenant_id, sender_id, scope_id, recipient, kind, category, body, priority, "
            "state, reason, next_attempt_at, created_at, updated_at) VALUES "
            "('m1', 't1', '100', 'sender:100', '1', 'template', 'MARKETING', '{}', 2, 'sent', 'ok', ?, ?, ?), "
            "('m2', 't1', '100', 'sender:100', '2', 'template', 'MARKETING', '{}', 2, 'queued', 'accepted', ?, ?, ?)",
            (T0, T0, T0 + 2, T0, T0, T0))
        await tx.execute("INSERT INTO message_events (message_id, at, state, reason) VALUES "
                         "('m1', ?, 'sending', 'admitted'), ('m1', ?, 'queued', 'accepted'), "
                         "('m1', ?, 'sent', 'ok: \"quoted\"')", (T0 + 1, T0, T0 + 2))
    await old.close()
    monkeypatch.setattr(sql_module, "migrations", every)
    new_store = await make_store()
    assert await new_store.schema_versions() == [v for v, _, _ in every(new_store.dialect)]
    assert await new_store.message_history("m1") == [
        {"at": T0, "state": "queued", "reason": "accepted"},
        {"at": T0 + 1, "state": "sending", "reason": "admitted"},
        {"at": T0 + 2, "state": "sent", "reason": 'ok: "quoted"'},
    ]
    assert await new_store.message_history("m2") == []
    assert await new_store.message_history("nope") == []


async def test_concurrent_opens_migrate_once(store_url: str) -> None:
    stores = [open_store(store_url) for _ in range(4)]
    try:
        await asyncio.gather(*(s.open() for s in stores))
        for s in stores:
            assert await s.schema_versions() == [v for v, _, _ in migrations(s.dialect)]
        await seed(stores[0])
        assert [t.id for t in await stores[3].list_tenants()] == ["t1"]
    finally:
        for s in stores:
            await s.close()


# --------------------------------------------------------------------------------------------
# tenants, keys, scopes, senders
# --------------------------------------------------------------------------------------------
async def test_tenants(store: SqlStore) -> None:
    tenant = Tenant("t1", "acme", require_opt_in=True, marketing_cap_24h=3, stop_keywords=["STOP", "BAJA"],
                    created_at=T0)
    assert await store.create_tenant(tenant) == tenant
    assert await store.get_tenant("t1") == tenant
    assert await store.find_tenant_by_name("acme") == tenant
    assert await store.find_tenant_by_name("nobody") is None
    with pytest.raises(ConflictError):
        await store.create_tenant(tenant)
    with pytest.raises(ConflictError):
        await store.create_tenant(Tenant("t2", "acme"))
    await store.create_tenant(Tenant("t0", "zeta", created_at=T0 + 1))
    assert [t.id for t in await store.list_tenants()] == ["t1", "t0"]
    updated = await store.update_tenant("t1", {"marketing_cap_24h": 0, "stop_keywords": []})
    assert (updated.marketing_cap_24h, updated.stop_keywords, updated.require_opt_in) == (0, [], True)
    with pytest.raises(NotFound):
        await store.get_tenant("nope")
    with pytest.raises(NotFound):
        await store.update_tenant("nope", {"name": "x"})
    with pytest.raises(ValueError, match="bogus"):
        await store.update_tenant("t1", {"bogus": 1})
    with pytest.raises(ValueError, match="id"):
        await store.update_tenant("t1", {"id": "t9"})


async def test_api_keys(store: SqlStore) -> None:
    admin = ApiKey("k1", None, "hash1", "tg_ab", is_admin=True, created_at=T0, label="root")
    user = ApiKey("k2", "t1", "hash2", "tg_cd", created_at=T0 + 1)
    await store.create_api_key(admin)
    await store.create_api_key(user)
    with pytest.raises(ConflictError):
        await store.create_api_key(replace(user, id="k3"))  # the same hash
    assert await store.find_api_key("hash1") == admin
    assert [k.id for k in await store.list_api_keys()] == ["k1", "k2"]
    assert await store.list_api_keys("t1") == [user]
    assert await store.find_principal("hash2") is None  # its tenant does not exist (yet)
    tenant = await store.create_tenant(Tenant("t1", "one", require_opt_in=True, stop_keywords=["PARA"],
                                              webhook_url="http://127.0.0.1:9/h", webhook_secret="s" * 16,
                                              created_at=T0))
    assert await store.find_principal("hash2") == (user, tenant)
    assert await store.find_principal("hash1") is None  # a key of no tenant is nobody's principal
    await store.revoke_api_key("k2", T0 + 5)
    await store.revoke_api_key("k2", T0 + 9)
    assert await store.find_api_key("hash2") is None
    assert await store.find_principal("hash2") is None
    assert (await store.list_api_keys("t1"))[0].revoked_at == T0 + 5
    with pytest.raises(NotFound):
        await store.revoke_api_key("nope", T0)


async def test_scopes(store: SqlStore) -> None:
    scope = Scope("portfolio:9", "t1", policy="portfolio", tier="TIER_1K", tier_source="webhook",
                  tier_updated_at=T0, predicted_tier="TIER_10K", quality="GREEN", reserve_fraction=0.1,
                  trust_model=True, timezone="Europe/Madrid", upgrade_pending_at=T0 + 6 * 3600, red_days=1,
                  last_evaluated_day=19675)
    assert await store.upsert_scope(scope) == scope
    assert await store.get_scope("portfolio:9") == scope
    lowered = replace(scope, tier="TIER_250", predicted_tier=None, trust_model=False)
    await store.upsert_scope(lowered)
    assert await store.get_scope("portfolio:9") == lowered
    with pytest.raises(ConflictError):
        await store.upsert_scope(replace(scope, tenant_id="t2"))
    await store.upsert_scope(Scope("sender:1", "t2"))
    assert [s.id for s in await store.list_scopes()] == ["portfolio:9", "sender:1"]
    assert [s.id for s in await store.list_scopes("t2")] == ["sender:1"]
    assert (await store.update_scope("sender:1", {"tier": "TIER_2K", "red_days": 2})).tier == "TIER_2K"
    with pytest.raises(NotFound):
        await store.get_scope("sender:404")
    with pytest.raises(NotFound):
        await store.update_scope("sender:404", {"tier": "TIER_1K"})


async def test_senders_and_their_events(store: SqlStore) -> None:
    sender = Sender("100", "t1", "+1 555", "portfolio:9", portfolio_id="9", quality="YELLOW",
                    throughput_mps=1000, timezone="America/Bogota", paused={"spam": T0 + 60, "manual": None},
                    marketing_paused={"131049": None}, created_at=T0)
    await store.create_sender(sender)
    await store.create_sender(Sender("200", "t2", "+2", "sender:200", created_at=T0 + 1))
    with pytest.raises(ConflictError):
        await store.create_sender(replace(sender, tenant_id="t2"))
    assert await store.get_sender("100") == sender
    assert [s.id for s in await store.list_senders()] == ["100", "200"]
    assert [s.id for s in await store.list_senders("t2")] == ["200"]
    assert await store.senders_of_scope("portfolio:9") == [sender]
    updated = await store.update_sender("100", {"paused": {}, "status": "FLAGGED"})
    assert (updated.paused, updated.status, updated.marketing_paused) == ({}, "FLAGGED", {"131049": None})
    with pytest.raises(NotFound):
        await store.get_sender("404")

    for i, kind in enumerate(["registered", "paused", "resumed"]):
        await store.add_sender_event("100", T0 + i, kind, f"detail {i}")
    events = await store.sender_events("100")
    assert [e["kind"] for e in events] == ["resumed", "paused", "registered"]
    assert events[0] == {"at": T0 + 2, "kind": "resumed", "detail": "detail 2"}
    assert [e["kind"] for e in await store.sender_events("100", limit=1)] == ["resumed"]
    assert await store.sender_events("200") == []


# --------------------------------------------------------------------------------------------
# messages: insert, idempotency, reads
# --------------------------------------------------------------------------------------------
async def test_insert_messages_round_trip(store: SqlStore) -> None:
    await seed(store)
    submitted = new("573001", priority=0, idempotency_key="k1", expires_at=T0 + 60, campaign_id="c1",
                    metadata={"order": 7, "tags": ["a"]}, category="UTILITY")
    [message] = await store.insert_messages([submitted], T0)
    assert message.id.startswith("msg_")
    expected = Message(
        id=message.id, tenant_id="t1", sender_id="100", scope_id="sender:100", to="573001", kind="template",
        category="UTILITY", body=submitted.body, priority=0, state=Q, next_attempt_at=T0,
        idempotency_key="k1", expires_at=T0 + 60, campaign_id="c1", metadata={"order": 7, "tags": ["a"]},
        created_at=T0, updated_at=T0,
    )
    assert message == expected
    assert await store.get_message(message.id) == expected
    assert await store.message_history(message.id) == [{"at": T0, "state": "queued", "reason": "accepted"}]


async def test_a_large_batch_round_trips_every_character(store: SqlStore) -> None:
    """Big batches take the bulk path (COPY on PostgreSQL): tabs, newlines, backslashes, quotes and
    non-ASCII text in bodies and metadata, and missing values, must come back exactly."""
    await seed(store)
    tricky = ["tab\there", "line\nbreak", "back\\slash \\N", "quote ' \" done", "ação 日本 🎉", "\\.", ""]
    batch = [new(f"57{i:06d}", metadata={"note": tricky[i % len(tricky)], "i": i},
                 expires_at=None if i % 2 else T0 + i + 0.125, campaign_id=None if i % 3 else "c1")
             for i in range(120)]
    for m, text in zip(batch, tricky * 20, strict=False):
        m.body["template"] = {"name": text or "empty", "language": {"code": "pt_BR"}}
    inserted = await store.insert_messages(batch, T0)
    assert len(inserted) == 120 and await store.count_by_state() == {"queued": 120}
    for submitted, got in zip(batch, inserted, strict=True):
        stored = await store.get_message(got.id)
        assert stored == got
        assert (stored.body, stored.metadata, stored.expires_at, stored.campaign_id) == (
            submitted.body, submitted.metadata, submitted.expires_at, submitted.campaign_id)
    assert [m.to for m in await store.claim_due(["sender:100"], T0, 200)] == [m.to for m in batch]


async def test_insert_messages_with_a_start_time_and_an_initial_state(store: SqlStore) -> None:
    await seed(store)
    later, rejected = await store.insert_messages(
        [new("1", not_before=T0 + 3600), new("2", state=MessageState.REJECTED, reason="opted out")], T0
    )
    assert later.next_attempt_at == T0 + 3600 and later.state is Q
    assert (rejected.state, rejected.reason) == (MessageState.REJECTED, "opted out")
    assert await store.message_history(rejected.id) == [{"at": T0, "state": "rejected", "reason": "opted out"}]


async def test_enqueue_writes_what_insert_writes_without_the_answer(store: SqlStore) -> None:
    """``enqueue_messages`` (a campaign's call) makes no Message objects but writes the very rows
    ``insert_messages`` writes: keys repeated in the batch or already stored, shared metadata,
    start times, refused rows (told at once); it answers how many rows it inserted."""
    await seed(store)
    await seed(store, "t2", scopes=("300",))

    def batch(tenant: str, sender: str) -> list[NewMessage]:
        shared = {"campaign": "c1"}
        return [new("1", sender, tenant, idempotency_key="k1"), new("2", sender, tenant, idempotency_key="k1"),
                new("3", sender, tenant, metadata=shared, campaign_id="c1"),
                new("4", sender, tenant, metadata=shared, not_before=T0 + 60, expires_at=T0 + 99),
                new("5", sender, tenant, state=MessageState.REJECTED, reason="recipient opted out of marketing"),
                new("6", sender, tenant, idempotency_key="old"), new("7", sender, tenant)]

    await store.insert_messages([new("0", "100", "t1", idempotency_key="old")], T0)
    assert await store.enqueue_messages([new("0", "300", "t2", idempotency_key="old")], T0) == 1
    answered = await store.insert_messages(batch("t1", "100"), T0 + 1)
    assert len(answered) == 7 and answered[0] is answered[1] and answered[5].to == "0"
    assert await store.enqueue_messages(batch("t2", "300"), T0 + 1) == 5  # 1, 3, 4, 5, 7
    assert await store.enqueue_messages([], T0) == 0

    async def rows(tenant: str) -> list[tuple[Any, ...]]:
        async with store.reader() as tx:
            return list(await tx.fetchall(
                "SELECT recipient, kind, category, body, priority, state, reason, next_attempt_at, not_before, "
                "idempotency_key, expires_at, campaign_id, metadata, history, told, created_at FROM messages "
                "WHERE tenant_id = ? ORDER BY recipient", (tenant,)))

    assert await rows("t2") == await rows("t1")
    assert await store.untold_messages(10) == []  # the refused rows were told at submission, both ways


async def test_insert_messages_is_idempotent_per_tenant_key(store: SqlStore) -> None:
    await seed(store)
    await seed(store, "t2", scopes=("300",))
    first = await store.insert_messages([new("1", idempotency_key="a"), new("2")], T0)
    again = await store.insert_messages(
        [new("9", idempotency_key="a"), new("3", idempotency_key="b"), new("4", idempotency_key="b"),
         new("5", sender="300", tenant="t2", idempotency_key="a")],
        T0 + 10,
    )
    assert again[0] == first[0]  # the original, not the resubmitted recipient
    assert again[0].to == "1" and again[0].created_at == T0
    assert again[1] == again[2] and again[1].to == "3"  # a key repeated inside one batch
    assert again[3].tenant_id == "t2" and again[3].id != first[0].id  # keys are per tenant
    assert await store.count_by_state() == {"queued": 4}
    assert len(await store.message_history(first[0].id)) == 1


async def test_concurrent_inserts_of_one_key_keep_one_message(store: SqlStore, make_store: StoreFactory) -> None:
    await seed(store)
    other = await make_store()
    results = await asyncio.gather(*(s.insert_messages([new("1", idempotency_key="same")], T0)
                                     for s in (store, other, store, other)))
    assert len({r[0].id for r in results}) == 1
    assert await store.count_by_state() == {"queued": 1}


async def test_insert_for_an_unknown_sender_inserts_nothing(store: SqlStore) -> None:
    await seed(store)
    with pytest.raises(NotFound):
        await store.insert_messages([new("1"), new("2", sender="999")], T0)
    assert await store.count_by_state() == {}
    assert await store.insert_messages([], T0) == []
    # a caller that read the sender gives its scope: the store does not read it again
    given, looked_up = await store.insert_messages([new("3", scope_id="sender:100"), new("4", sender="200")], T0)
    assert (given.scope_id, looked_up.scope_id) == ("sender:100", "sender:200")


async def test_message_reads(store: SqlStore) -> None:
    await seed(store)
    await seed(store, "t2", scopes=("300",))
    a, b = await store.insert_messages([new("1", campaign_id="c1"), new("2", campaign_id="c2")], T0)
    c, = await store.insert_messages([new("3", campaign_id="c1")], T0 + 1)
    d, = await store.insert_messages([new("4", sender="300", tenant="t2")], T0 + 2)
    await store.apply_updates([MessageUpdate(b.id, SENT, T0 + 5, wamid="wamid.B", sent_at=T0 + 5)])
    with pytest.raises(NotFound):
        await store.get_message("msg_missing")
    assert (await store.get_message_by_wamid("wamid.B")).id == b.id  # type: ignore[union-attr]
    assert await store.get_message_by_wamid("wamid.none") is None
    assert [m.id for m in await store.list_messages("t1")] == [c.id, *sorted([a.id, b.id], reverse=True)]
    assert [m.id for m in await store.list_messages("t1", campaign_id="c1")] == [c.id, a.id]
    assert [m.id for m in await store.list_messages("t1", state="sent")] == [b.id]
    assert [m.id for m in await store.list_messages("t1", limit=1)] == [c.id]
    assert [m.id for m in await store.list_messages("t2")] == [d.id]
    assert [m.id for m in await store.list_messages("t1", recipient="3")] == [c.id]
    assert await store.list_messages("t1", recipient="4") == []  # t2's recipient
    first = await store.list_messages("t1", limit=2)
    rest = await store.list_messages("t1", limit=2, before=first[-1].id)
    assert [m.id for m in first + rest] == [m.id for m in await store.list_messages("t1")]
    assert [m.id for m in await store.list_messages("t1", campaign_id="c1", before=c.id)] == [a.id]
    assert await store.list_messages("t1", before=min(a.id, b.id)) == []
    assert await store.count_by_state() == {"queued": 3, "sent": 1}
    assert await store.count_by_state(tenant_id="t1") == {"queued": 2, "sent": 1}
    assert await store.count_by_state(campaign_id="c1") == {"queued": 2}
    assert await store.count_by_state(sender_id="300") == {"queued": 1}
    assert await store.count_by_state(tenant_id="t1", campaign_id="c2") == {"sent": 1}


# --------------------------------------------------------------------------------------------
# claiming
# --------------------------------------------------------------------------------------------
async def test_claim_due_orders_by_priority_then_due_time_then_age(store: SqlStore) -> None:
    await seed(store)
    old_marketing, = await store.insert_messages([new("1", priority=2)], T0)
    utility, retry = await store.insert_messages(
        [new("2", priority=1), new("3", priority=1, not_before=T0 + 1)], T0 + 2
    )
    auth, = await store.insert_messages([new("4", priority=0)], T0 + 3)
    future, = await store.insert_messages([new("5", priority=0, not_before=T0 + 100)], T0 + 3)
    other_scope, = await store.insert_messages([new("6", sender="200", priority=0)], T0)
    claimed = await store.claim_due(["sender:100"], T0 + 10, 10)
    assert [m.id for m in claimed] == [auth.id, retry.id, utility.id, old_marketing.id]
    assert [m.id for m in await store.claim_due(["sender:100"], T0 + 10, 2)] == [auth.id, retry.id]
    assert await store.claim_due(["sender:100"], T0 + 10, 0) == []
    assert await store.claim_due([], T0, 10) == []
    both = await store.claim_due(["sender:200", "sender:100"], T0 + 10, 3)
    assert [m.id for m in both] == [other_scope.id, auth.id, retry.id]
    assert await states(store, claimed) == ["queued"] * 4  # claiming changes nothing
    await store.apply_updates([MessageUpdate(auth.id, SENDING, T0 + 11)])
    assert auth.id not in [m.id for m in await store.claim_due(["sender:100"], T0 + 200, 10)]
    assert future.id in [m.id for m in await store.claim_due(["sender:100"], T0 + 200, 10)]


async def test_claim_due_skips_the_ids_it_is_told_to(store: SqlStore) -> None:
    """A batch whose write is still in flight is skipped, and the claim still fills its limit."""
    await seed(store, scopes=("100", "200"))
    ones = await store.insert_messages([new(f"a{i}") for i in range(6)], T0)
    twos = await store.insert_messages([new(f"b{i}", sender="200") for i in range(3)], T0)
    skip = [ones[0].id, ones[2].id, twos[1].id, "msg_not_there"]
    claimed = await store.claim_due(["sender:100"], T0, 3, exclude=skip)
    assert [m.id for m in claimed] == [ones[1].id, ones[3].id, ones[4].id]
    both = await store.claim_due(["sender:100", "sender:200"], T0, 20, exclude=skip)
    assert sorted(m.id for m in both) == sorted(m.id for m in [*ones, *twos] if m.id not in skip)
    assert len(await store.claim_due(["sender:100"], T0, 20, exclude=())) == 6


async def test_claim_due_across_many_scopes(store: SqlStore) -> None:
    senders = tuple(str(1000 + i) for i in range(130))  # more scopes than one UNION ALL chunk
    await seed(store, scopes=senders)
    inserted = await store.insert_messages(
        [new(f"r{i}", sender=s, priority=i % 3) for i, s in enumerate(senders)], T0
    )
    claimed = await store.claim_due([f"sender:{s}" for s in senders], T0, 50)
    assert len(claimed) == 50 and all(m.priority == 0 for m in claimed[:44])
    assert [m.priority for m in claimed] == sorted(m.priority for m in claimed)
    assert len(await store.claim_due([f"sender:{s}" for s in senders], T0, 1000)) == len(inserted)


async def test_claim_due_reaches_every_level_past_a_parked_backlog(store: SqlStore) -> None:
    """Not-due rows at an urgent level must not hide due rows of a later one (nor cap the claim)."""
    await seed(store)
    parked = await store.insert_messages([new(f"p{i}", priority=0, not_before=T0 + 500) for i in range(30)], T0)
    due = await store.insert_messages([new(f"d{i}", priority=2) for i in range(5)], T0)
    assert [m.id for m in await store.claim_due(["sender:100"], T0 + 1, 10)] == [m.id for m in due]
    assert [m.id for m in await store.claim_due(["sender:100", "sender:200"], T0 + 1, 3)] == [m.id for m in due[:3]]
    assert len(await store.claim_due(["sender:100"], T0 + 500, 100)) == 35
    assert await store.count_queued("sender:100") == 35
    assert await store.count_queued("sender:200") == 0
    await store.apply_updates([MessageUpdate(parked[0].id, SENDING, T0 + 2)])
    assert await store.count_queued("sender:100") == 34


async def test_park_for_capacity_parks_only_what_needs_a_new_slot(store: SqlStore) -> None:
    await seed(store)
    plain = await store.insert_messages([new(f"p{i}") for i in range(5)], T0)
    utility, = await store.insert_messages([new("u", category="UTILITY", priority=1)], T0)
    windowed, counted, expiring = await store.insert_messages(
        [new("w"), new("c"), new("x", expires_at=T0 + 50)], T0)
    later, = await store.insert_messages([new("l", not_before=T0 + 500)], T0)
    other, = await store.insert_messages([new("o", sender="200")], T0)
    await store.record_inbound("100", "w", T0 - 10)  # an open service window: its template is free
    await store.apply_updates([], [LedgerChange("sender:100", "c", T0 + 1000)])  # counted already: a re-send
    moved = await store.park_for_capacity("sender:100", categories=["MARKETING"], now=T0 + 1, until=T0 + 100,
                                          reason="messaging limit reached (5/5)", csw_since=T0 + 1 - 86_400,
                                          chunk=2)
    assert moved == 5
    for m in plain:
        got = await store.get_message(m.id)
        assert (got.state, got.next_attempt_at, got.reason) == (MessageState.QUEUED, T0 + 100,
                                                                "messaging limit reached (5/5)")
        assert [e["state"] for e in await store.message_history(m.id)] == ["queued", "queued"]
    for m in (utility, windowed, counted, expiring, other):  # not full, free, free, expires first, another scope
        assert (await store.get_message(m.id)).next_attempt_at == T0
    assert (await store.get_message(later.id)).next_attempt_at == T0 + 500
    assert {m.id for m in await store.claim_parked("sender:100", T0 + 1, 10)} == {m.id for m in plain}
    assert await store.park_for_capacity("sender:100", categories=[], now=T0 + 1, until=T0 + 100, reason="r",
                                         csw_since=T0) == 0
    with pytest.raises(ValueError, match="later than now"):
        await store.park_for_capacity("sender:100", categories=["MARKETING"], now=T0 + 1, until=T0 + 1, reason="r",
                                      csw_since=T0)


async def test_next_due_at(store: SqlStore) -> None:
    await seed(store)
    assert await store.next_due_at(["sender:100", "sender:200"]) is None
    assert await store.next_due_at([]) is None
    _, b = await store.insert_messages([new("1", not_before=T0 + 50), new("2", not_before=T0 + 20)], T0)
    await store.insert_messages([new("3", sender="200", not_before=T0 + 30)], T0)
    assert await store.next_due_at(["sender:100"]) == T0 + 20
    await store.apply_updates([MessageUpdate(b.id, SENDING, T0)])
    assert await store.next_due_at(["sender:100"]) == T0 + 50
    assert await store.next_due_at(["sender:100", "sender:200"]) == T0 + 30
    # the earliest due time may sit at any priority level
    await store.insert_messages([new("4", priority=0, not_before=T0 + 90), new("5", priority=1, not_before=T0 + 40),
                                 new("6", priority=7, not_before=T0 + 45)], T0)
    assert await store.next_due_at(["sender:100"]) == T0 + 40
    await store.insert_messages([new("7", priority=9, not_before=T0 + 1)], T0)
    assert await store.next_due_at(["sender:100", "sender:200"]) == T0 + 1


async def test_integer_times_are_accepted(store: SqlStore) -> None:
    await seed(store)
    m, = await store.insert_messages([new("1")], 1_700_000_000)
    await store.apply_updates([MessageUpdate(m.id, SENDING, 1_700_000_001, next_attempt_at=1_700_000_002,
                                             slot_expiry=1_700_086_401)],
                              [LedgerChange("sender:100", "1", 1_700_086_401), LedgerChange("sender:100", "2", 5.5)])
    got = await store.get_message(m.id)
    assert (got.updated_at, got.next_attempt_at, got.slot_expiry) == (1_700_000_001, 1_700_000_002, 1_700_086_401)
    assert await store.load_ledger("sender:100", 0) == [("2", 5.5), ("1", 1_700_086_401)]


# --------------------------------------------------------------------------------------------
# updates
# --------------------------------------------------------------------------------------------
async def test_apply_updates_changes_only_the_given_fields(store: SqlStore) -> None:
    await seed(store)
    m, = await store.insert_messages([new("1")], T0)
    n = await store.apply_updates([MessageUpdate(m.id, SENDING, T0 + 1, reason="admitted", add_attempt=True,
                                                 counted=True, slot_expiry=T0 + 1 + DAY, slot_previous=T0 - 5)])
    assert n == 1
    got = await store.get_message(m.id)
    assert (got.state, got.reason, got.attempts, got.counted, got.slot_expiry, got.slot_previous, got.updated_at) \
        == (SENDING, "admitted", 1, True, T0 + 1 + DAY, T0 - 5, T0 + 1)
    await store.apply_updates([MessageUpdate(m.id, SENT, T0 + 2, wamid="wamid.1", sent_at=T0 + 2)])
    got = await store.get_message(m.id)
    assert (got.state, got.reason, got.attempts, got.counted, got.slot_expiry, got.wamid, got.sent_at) \
        == (SENT, "admitted", 1, True, T0 + 1 + DAY, "wamid.1", T0 + 2)
    await store.apply_updates([MessageUpdate(m.id, MessageState.FAILED, T0 + 3, reason="undeliverable",
                                             error_code=131026, error_detail="Message undeliverable",
                                             clear_slot=True)])
    got = await store.get_message(m.id)
    assert (got.state, got.error_code, got.error_detail, got.slot_expiry, got.slot_previous, got.counted) \
        == (MessageState.FAILED, 131026, "Message undeliverable", None, None, True)
    assert await store.message_history(m.id) == [
        {"at": T0, "state": "queued", "reason": "accepted"},
        {"at": T0 + 1, "state": "sending", "reason": "admitted"},
        {"at": T0 + 2, "state": "sent", "reason": ""},
        {"at": T0 + 3, "state": "failed", "reason": "undeliverable"},
    ]
    await store.apply_updates([MessageUpdate(m.id, Q, T0 + 4, next_attempt_at=T0 + 60, add_attempt=True)])
    got = await store.get_message(m.id)
    assert (got.next_attempt_at, got.attempts) == (T0 + 60, 2)
    assert await store.apply_updates([]) == 0


async def test_bulk_updates_round_trip_every_value(store: SqlStore) -> None:
    """Batched updates and ledger writes (one JSON batch on PostgreSQL) keep text, floats to the last
    bit, booleans and missing values exact; a batch with a non-finite number (which JSON cannot
    carry) is written exactly too."""
    await seed(store)
    tricky = ["tab\there", "line\nbreak", "back\\slash \\N", "quote ' \" done", "ação 日本 🎉", "\\.", "null", ""]
    batch = await store.insert_messages([new(f"57{i:06d}") for i in range(len(tricky) * 8)], T0)
    expiries = [T0 + DAY + i / 7 + 1e-7 for i in range(len(batch))]  # no short decimal form
    await store.apply_updates(
        [MessageUpdate(m.id, SENDING, T0 + 0.1, reason=tricky[i % len(tricky)], add_attempt=True,
                       counted=i % 2 == 0, slot_expiry=expiries[i]) for i, m in enumerate(batch)],
        [LedgerChange("sender:100", m.to, expiries[i]) for i, m in enumerate(batch)],
    )
    for i, m in enumerate(batch):
        got = await store.get_message(m.id)
        assert (got.state, got.reason, got.counted, got.slot_expiry, got.wamid) == (
            SENDING, tricky[i % len(tricky)], i % 2 == 0, expiries[i], None)
    assert dict(await store.load_ledger("sender:100", T0)) == {m.to: expiries[i] for i, m in enumerate(batch)}
    await store.apply_updates([MessageUpdate(m.id, Q, T0 + 1, next_attempt_at=math.inf if i == 3 else T0 + 5)
                               for i, m in enumerate(batch)])
    assert [(await store.get_message(m.id)).next_attempt_at for m in batch] == [
        math.inf if i == 3 else T0 + 5 for i in range(len(batch))]


async def test_apply_updates_honours_only_from(store: SqlStore) -> None:
    await seed(store)
    a, b, c = await store.insert_messages([new("1"), new("2"), new("3")], T0)
    await store.apply_updates([MessageUpdate(b.id, SENT, T0 + 1)])
    n = await store.apply_updates([
        MessageUpdate(a.id, MessageState.DELIVERED, T0 + 2, only_from=[SENT]),  # a is queued: skipped
        MessageUpdate(b.id, MessageState.DELIVERED, T0 + 2, only_from=[SENT, SENDING]),
        MessageUpdate(c.id, SENDING, T0 + 2),
        MessageUpdate(c.id, SENT, T0 + 3, only_from=[SENDING]),  # sees the update just before it
        MessageUpdate(c.id, MessageState.UNKNOWN, T0 + 4, only_from=[SENDING]),  # c is sent by now
        MessageUpdate("msg_missing", SENT, T0 + 4, only_from=[SENDING]),
    ])
    assert n == 2  # messages changed: b, and c (twice)
    assert await states(store, [a, b, c]) == ["queued", "delivered", "sent"]
    assert [e["state"] for e in await store.message_history(a.id)] == ["queued"]
    assert [e["state"] for e in await store.message_history(c.id)] == ["queued", "sending", "sent"]


# --------------------------------------------------------------------------------------------
# the window ledger
# --------------------------------------------------------------------------------------------
async def test_ledger_keeps_the_latest_expiry_and_removes_only_a_matching_one(store: SqlStore) -> None:
    s = "sender:100"
    await store.apply_updates([], [LedgerChange(s, "a", T0 + 10), LedgerChange(s, "b", T0 + 20),
                                   LedgerChange(s, "a", T0 + 5), LedgerChange("sender:200", "a", T0 + 7)])
    assert await store.load_ledger(s, T0) == [("a", T0 + 10), ("b", T0 + 20)]
    await store.apply_updates([], [LedgerChange(s, "a", T0 + 5, remove=True),  # stale: a newer send counts
                                   LedgerChange(s, "b", T0 + 20, remove=True),
                                   LedgerChange(s, "c", T0 + 30, remove=True)])
    assert await store.load_ledger(s, T0) == [("a", T0 + 10)]
    await store.apply_updates([], [LedgerChange(s, "d", T0 + 1), LedgerChange(s, "d", T0 + 1, remove=True),
                                   LedgerChange(s, "d", T0 + 2)])  # in order, for the same recipient
    assert await store.load_ledger(s, T0) == [("d", T0 + 2), ("a", T0 + 10)]
    assert await store.load_ledger(s, T0 + 2) == [("a", T0 + 10)]  # expired at T0 + 2
    assert await store.prune_ledger(T0 + 7) == 2
    assert await store.load_ledger(s, 0) == [("a", T0 + 10)]
    assert await store.load_ledger("sender:200", 0) == []


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(
    st.lists(st.tuples(st.sampled_from("abcd"), st.integers(1, 6), st.booleans()), max_size=8),
    min_size=1, max_size=6,
))
async def test_ledger_matches_a_naive_model(store: SqlStore, batches: list[list[tuple[str, int, bool]]]) -> None:
    scope = f"sender:{id(batches)}-{len(await store.list_scopes())}"
    await store.upsert_scope(Scope(scope, "t1"))  # a fresh scope per example: examples share the store
    model: dict[str, float] = {}
    for batch in batches:
        changes = [LedgerChange(scope, r, float(e), remove) for r, e, remove in batch]
        await store.apply_updates([], changes)
        for r, e, remove in batch:
            if remove:
                if model.get(r) == e:
                    del model[r]
            else:
                model[r] = max(model.get(r, 0.0), float(e))
        assert dict(await store.load_ledger(scope, 0.0)) == model


# --------------------------------------------------------------------------------------------
# leases
# --------------------------------------------------------------------------------------------
async def test_leases_acquire_renew_expire_and_release(store: SqlStore) -> None:
    await seed(store, scopes=("100", "200", "300"))
    assert await store.acquire_scopes("w1", T0, ttl=30, limit=2) == ["sender:100", "sender:200"]
    assert await store.acquire_scopes("w2", T0 + 1, ttl=30, limit=5) == ["sender:300"]
    assert await store.acquire_scopes("w2", T0 + 20, ttl=30, limit=5) == ["sender:300"]  # renew only
    assert await store.acquire_scopes("w1", T0 + 25, ttl=30, limit=2) == ["sender:100", "sender:200"]
    # w1 stops renewing: its leases run out at T0 + 55 and w2 takes them
    assert await store.acquire_scopes("w2", T0 + 54, ttl=30, limit=5) == ["sender:300"]
    assert await store.acquire_scopes("w2", T0 + 55, ttl=30, limit=5) == ["sender:100", "sender:200", "sender:300"]
    assert await store.acquire_scopes("w1", T0 + 56, ttl=30, limit=2) == []
    await store.release_scopes("w2")
    assert await store.acquire_scopes("w1", T0 + 57, ttl=30, limit=1) == ["sender:100"]


async def test_a_worker_takes_up_to_its_share_and_gives_back_what_it_is_asked_to(store: SqlStore) -> None:
    """The share is every scope over the live workers (heartbeats renewed with the leases), rounded
    up: a worker that joins finds none free, the others give back their excess, and it takes that."""
    await seed(store, scopes=("100", "200", "300", "400", "500"))
    assert await store.acquire_scopes("w1", T0, ttl=30, limit=10) == [f"sender:{i}00" for i in range(1, 6)]
    assert await store.scope_share(T0, 10) == 5
    assert await store.acquire_scopes("w2", T0 + 1, ttl=30, limit=10) == []  # none free yet
    assert await store.scope_share(T0 + 1, 10) == 3 and await store.scope_share(T0 + 1, 2) == 2
    assert [(w.id, len(w.scopes)) for w in await store.list_workers(T0 + 1)] == [("w1", 5), ("w2", 0)]
    await store.release_scopes("w1", ["sender:400", "sender:500", "sender:999"])  # one it never held
    assert await store.acquire_scopes("w2", T0 + 2, ttl=30, limit=10) == ["sender:400", "sender:500"]
    assert await store.acquire_scopes("w1", T0 + 3, ttl=30, limit=10) == ["sender:100", "sender:200", "sender:300"]
    await store.release_scopes("w2", ["sender:100"])  # not w2's: nothing changes
    assert await store.acquire_scopes("w1", T0 + 4, ttl=30, limit=10) == ["sender:100", "sender:200", "sender:300"]
    # w2 stops: its scopes and its heartbeat go at once, and w1's share is everything again
    await store.release_scopes("w2")
    assert await store.scope_share(T0 + 5, 10) == 5
    assert len(await store.acquire_scopes("w1", T0 + 5, ttl=30, limit=10)) == 5
    # a worker that stops renewing leaves the count when its heartbeat runs out
    assert await store.acquire_scopes("w3", T0 + 6, ttl=30, limit=10) == []  # alive until T0 + 36
    assert await store.scope_share(T0 + 34, 10) == 3
    assert len(await store.acquire_scopes("w1", T0 + 34, ttl=30, limit=10)) == 5  # renewing takes nothing away
    assert await store.scope_share(T0 + 36, 10) == 5
    await store.acquire_scopes("w1", T0 + 40, ttl=30, limit=10)
    everything = tuple(f"sender:{i}00" for i in range(1, 6))
    assert await store.list_workers(T0 + 40) == [WorkerLeases("w1", T0 + 70, everything)]
    async with store.reader() as tx:  # a dead worker's heartbeat is swept by the next renewal
        assert await tx.fetchall("SELECT id FROM workers") == [("w1",)]


async def test_a_lost_lease_fences_off_every_write(store: SqlStore) -> None:
    await seed(store)
    m, = await store.insert_messages([new("1")], T0)
    assert await store.acquire_scopes("w1", T0, ttl=10, limit=5) == ["sender:100", "sender:200"]
    admit = [MessageUpdate(m.id, SENDING, T0 + 1, add_attempt=True, counted=True)]
    slot = [LedgerChange("sender:100", "1", T0 + 1 + DAY)]
    assert await store.apply_updates(admit, slot, lease=("w1", ["sender:100"])) == 1
    await store.apply_updates([MessageUpdate(m.id, Q, T0 + 2)])

    assert await store.acquire_scopes("w2", T0 + 11, ttl=10, limit=1) == ["sender:100"]  # w1's expired
    with pytest.raises(LeaseLost, match="sender:100"):
        await store.apply_updates(admit, [LedgerChange("sender:100", "2", T0 + DAY)],
                                  lease=("w1", ["sender:100", "sender:200"]))
    got = await store.get_message(m.id)
    assert (got.state, got.attempts) == (Q, 1)
    assert await store.load_ledger("sender:100", T0) == [("1", T0 + 1 + DAY)]
    # an expired lease nobody took over still fences nothing: the owner column is the fence
    assert await store.apply_updates([], [], lease=("w1", ["sender:200"])) == 0
    with pytest.raises(LeaseLost):
        await store.apply_updates([], [], lease=("w3", ["sender:404"]))


def _take_scopes(url: str, worker: str, start: Any) -> list[str]:
    start.wait(10)
    store = open_store(url)

    async def run() -> list[str]:
        async with store:
            return await store.acquire_scopes(worker, T0, ttl=60, limit=4)

    return asyncio.run(run())


async def test_workers_in_separate_processes_never_share_a_scope(store: SqlStore, store_url: str) -> None:
    await seed(store, scopes=tuple(str(100 + i) for i in range(10)))
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        start = manager.Event()
        with ctx.Pool(3) as pool:
            pending = [pool.apply_async(_take_scopes, (store_url, f"w{i}", start)) for i in range(3)]
            start.set()
            taken = await asyncio.to_thread(lambda: [p.get(60) for p in pending])
    assert sorted(len(t) for t in taken) == [2, 4, 4]
    assert len({s for t in taken for s in t}) == 10


# --------------------------------------------------------------------------------------------
# bulk moves
# --------------------------------------------------------------------------------------------
async def test_requeue_where(store: SqlStore) -> None:
    await seed(store)
    later = dict(next_attempt_at=T0 + 500)
    a, b, c, d = await store.insert_messages(
        [new("1", campaign_id="c1"), new("2"), new("1", sender="200"), new("3", not_before=T0 + 900)], T0
    )
    await store.apply_updates([MessageUpdate(x.id, Q, T0, **later) for x in (a, b, c)])  # type: ignore[arg-type]
    assert await store.requeue_where(sender_id="100", recipient="1", now=T0 + 5) == 1
    assert (await store.get_message(a.id)).next_attempt_at == T0 + 5
    assert await store.requeue_where(sender_id="100", recipient="1", now=T0 + 6) == 0  # already due
    assert await store.requeue_where(scope_id="sender:200", now=T0 + 7) == 1
    assert await store.requeue_where(campaign_id="c1", now=T0 + 8) == 0
    assert await store.requeue_where(scope_id="sender:100", now=T0 + 9) == 1  # d waits for its start
    assert [(await store.get_message(x.id)).next_attempt_at for x in (b, d)] == [T0 + 9, T0 + 900]
    await store.apply_updates([MessageUpdate(b.id, SENDING, T0 + 10)])
    await store.apply_updates([MessageUpdate(b.id, SENDING, T0 + 10, next_attempt_at=T0 + 600)])
    assert await store.requeue_where(now=T0 + 11) == 0  # only queued messages move


async def test_capacity_parked_messages_are_pulled_not_requeued(store: SqlStore) -> None:
    await seed(store)
    a, b, c, d = await store.insert_messages([new("1"), new("2"), new("3"), new("4", sender="200")], T0)
    full = "messaging limit reached (250/250 distinct recipients in 24 h)"
    await store.apply_updates([MessageUpdate(a.id, Q, T0, reason=full, next_attempt_at=T0 + 700),
                               MessageUpdate(b.id, Q, T0, reason=full, next_attempt_at=T0 + 600),
                               MessageUpdate(c.id, Q, T0, reason="pair rate", next_attempt_at=T0 + 500),
                               MessageUpdate(d.id, Q, T0, reason=full, next_attempt_at=T0 + 400)])
    assert [m.id for m in await store.claim_parked("sender:100", T0 + 1, 10)] == [b.id, a.id]  # claim order
    assert [m.id for m in await store.claim_parked("sender:100", T0 + 1, 1)] == [b.id]
    assert await store.claim_parked("sender:100", T0 + 650, 10) == [await store.get_message(a.id)]  # b is due
    assert await store.claim_parked("sender:100", T0, 0) == []
    # A requeue that keeps them parked moves only the others (the dispatcher pulls them as room frees).
    assert await store.requeue_where(scope_id="sender:100", now=T0 + 2, keep_capacity_parked=True) == 1
    assert [(await store.get_message(x.id)).next_attempt_at for x in (a, b, c)] == [T0 + 700, T0 + 600, T0 + 2]
    assert await store.requeue_where(scope_id="sender:100", now=T0 + 3) == 2


async def test_campaign_hold_resume_and_cancel(store: SqlStore) -> None:
    await seed(store)
    a, b, c = await store.insert_messages([new(str(i), campaign_id="c1") for i in range(3)], T0)
    other, = await store.insert_messages([new("9", campaign_id="c2")], T0)
    await store.apply_updates([MessageUpdate(a.id, SENT, T0 + 1)])
    assert await store.set_campaign_hold("c1", True, T0 + 2) == 2
    assert await states(store, [a, b, c, other]) == ["sent", "held", "held", "queued"]
    assert await store.claim_due(["sender:100"], T0 + 3, 10) == [await store.get_message(other.id)]
    assert await store.set_campaign_hold("c1", True, T0 + 3) == 0
    assert await store.set_campaign_hold("c1", False, T0 + 4) == 2
    assert await states(store, [b, c]) == ["queued", "queued"]
    assert [e["state"] for e in await store.message_history(b.id)] == ["queued", "held", "queued"]
    await store.set_campaign_hold("c1", True, T0 + 5)
    await store.apply_updates([MessageUpdate(c.id, Q, T0 + 6, only_from=[Q])])  # held: untouched
    assert await store.cancel_campaign_messages("c1", T0 + 7) == 2
    assert await states(store, [a, b, c, other]) == ["sent", "canceled", "canceled", "queued"]
    assert (await store.message_history(c.id))[-1] == {"at": T0 + 7, "state": "canceled",
                                                        "reason": "campaign canceled"}


_LIVE = ("queued", "held", "sending")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["queued", "sending", "sent", "failed", "delivered", "unknown"]),
                          st.booleans()), max_size=12),
       st.booleans())
async def test_live_counts_are_the_live_states_of_count_by_state(store: SqlStore, fates: list[tuple[str, bool]],
                                                                hold: bool) -> None:
    """``count_live`` (read off the partial indexes) agrees with a full count, whatever the mix."""
    if not await store.list_tenants():
        await seed(store)
    campaign = f"c{len(await store.list_campaigns('t1'))}-{id(fates)}"
    made = await store.insert_messages([new(str(i), campaign_id=campaign if in_campaign else None)
                                        for i, (_, in_campaign) in enumerate(fates)], T0)
    await store.apply_updates([MessageUpdate(m.id, MessageState(state), T0 + 1)
                               for m, (state, _) in zip(made, fates, strict=True) if state != "queued"])
    if hold:
        await store.set_campaign_hold(campaign, True, T0 + 2)
    every = await store.count_by_state()
    assert await store.count_live() == {state: every.get(state, 0) for state in _LIVE}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.text("abcdefgh", min_size=1, max_size=3), st.integers(-7200, 30 * 3600), max_size=30),
       st.sampled_from([3600.0, 900.0]))
async def test_window_releases_bucket_the_live_slots_by_when_they_free(store: SqlStore, ledger: dict[str, int],
                                                                       bucket: float) -> None:
    """Slot k frees in (now + k * bucket, now + (k + 1) * bucket]: one at exactly a bucket's end is
    free by then. Expired rows are not in the window."""
    scope = f"sender:r{len(await store.list_scopes())}"
    await store.upsert_scope(Scope(scope, "t1"))
    now = T0
    await store.apply_updates([], [LedgerChange(scope, r, now + s) for r, s in ledger.items()])
    model: dict[int, list[float]] = {}
    for s in ledger.values():
        if s > 0:
            model.setdefault(math.ceil(s / bucket) - 1, []).append(now + s)
    assert await store.window_releases(scope, now, bucket) == [
        (k, len(v), min(v), max(v)) for k, v in sorted(model.items())]


async def test_window_counts_are_the_ledgers_live_rows_by_scope(store: SqlStore) -> None:
    await store.apply_updates([], [LedgerChange("sender:100", r, T0 + e) for r, e in (("a", 10), ("b", 20), ("c", 5))]
                              + [LedgerChange("sender:200", "a", T0 + 30)])
    assert await store.window_counts(T0) == {"sender:100": 3, "sender:200": 1}
    assert await store.window_counts(T0 + 10) == {"sender:100": 1, "sender:200": 1}  # a expired at T0 + 10
    for scope in ("sender:100", "sender:200"):
        assert (await store.window_counts(T0 + 5)).get(scope, 0) == len(await store.load_ledger(scope, T0 + 5))
    assert await store.window_counts(T0 + 30) == {}


async def test_recover_inflight_turns_sending_into_unknown(store: SqlStore) -> None:
    await seed(store)
    a, b, c = await store.insert_messages([new("1"), new("2"), new("3", sender="200")], T0)
    await store.apply_updates([MessageUpdate(x.id, SENDING, T0 + 1) for x in (a, c)])
    assert await store.recover_inflight(["sender:100"], T0 + 60) == 1
    assert await states(store, [a, b, c]) == ["unknown", "queued", "sending"]
    last = (await store.message_history(a.id))[-1]
    assert last["state"] == "unknown" and last["at"] == T0 + 60 and "webhook" in last["reason"]
    assert await store.recover_inflight(["sender:100", "sender:200"], T0 + 61) == 1
    assert await store.recover_inflight([], T0 + 62) == 0


async def test_recover_inflight_holds_the_slots_of_counted_sends_from_the_takeover(store: SqlStore) -> None:
    """A dead worker's request may have reached the platform long after its admission: the slots
    of recovered counted sends last a full window from the takeover (never shortened)."""
    await seed(store)
    day = 86_400.0
    a, b, c = await store.insert_messages([new("1"), new("2"), new("3")], T0)
    await store.apply_updates(
        [MessageUpdate(a.id, SENDING, T0 + 1, counted=True, slot_expiry=T0 + 1 + day),
         MessageUpdate(b.id, SENDING, T0 + 1),  # not counted (a free-form reply): no slot
         MessageUpdate(c.id, SENDING, T0 + 1, counted=True, slot_expiry=T0 + 9 * day)],
        [LedgerChange("sender:100", "1", T0 + 1 + day), LedgerChange("sender:100", "3", T0 + 9 * day)])
    assert await store.recover_inflight(["sender:100"], T0 + 600, hold_until=T0 + 600 + day) == 3
    assert await store.load_ledger("sender:100", T0) == [("1", T0 + 600 + day), ("3", T0 + 9 * day)]
    got = {m.to: m for m in [await store.get_message(x.id) for x in (a, b, c)]}
    assert (got["1"].slot_expiry, got["2"].slot_expiry, got["3"].slot_expiry) == (T0 + 600 + day, None, T0 + 9 * day)
    assert {str(m.state) for m in got.values()} == {"unknown"}


# --------------------------------------------------------------------------------------------
# history queries
# --------------------------------------------------------------------------------------------
async def test_marketing_sends_since(store: SqlStore) -> None:
    await seed(store)
    await seed(store, "t2", scopes=("300",))
    rows = await store.insert_messages([new("1"), new("1"), new("1"), new("1"), new("2"), new("2"),
                                        new("1", category="UTILITY")], T0)
    sent_old, sent_new, inflight, failed, unknown, _queued, utility = rows
    await store.insert_messages([new("1", sender="300", tenant="t2")], T0)
    await store.apply_updates([
        MessageUpdate(sent_old.id, SENT, T0 + 10, sent_at=T0 + 10),
        MessageUpdate(sent_new.id, MessageState.READ, T0 + 5000, sent_at=T0 + 4000),
        MessageUpdate(inflight.id, SENDING, T0 + 4500),
        MessageUpdate(failed.id, MessageState.FAILED, T0 + 4600),
        MessageUpdate(unknown.id, MessageState.UNKNOWN, T0 + 4700),
        MessageUpdate(utility.id, SENT, T0 + 4800, sent_at=T0 + 4800),
    ])
    assert await store.marketing_sends_since("t1", ["1", "2", "3"], T0 + 10) == {
        "1": [T0 + 4000, T0 + 4500], "2": [T0 + 4700]}
    assert await store.marketing_sends_since("t1", ["1"], T0) == {"1": [T0 + 10, T0 + 4000, T0 + 4500]}
    assert await store.marketing_sends_since("t2", ["1"], T0) == {}
    assert await store.marketing_sends_since("t1", [], T0) == {}


async def test_counted_history(store: SqlStore) -> None:
    await seed(store)
    rows = await store.insert_messages([new("a"), new("b"), new("a"), new("c"), new("d")], T0)
    sends = [(rows[0], 100.0, True), (rows[1], DAY + 5, True), (rows[2], DAY + 7, True),
             (rows[3], DAY + 8, False), (rows[4], 2 * DAY, True)]
    await store.apply_updates([MessageUpdate(m.id, SENT, T0 + at, counted=counted, sent_at=T0 + at)
                               for m, at, counted in sends])
    assert await store.distinct_counted("sender:100", T0, T0 + 3 * DAY) == 3
    assert await store.distinct_counted("sender:100", T0 + 100, T0 + 2 * DAY) == 3  # (since, until]
    assert await store.distinct_counted("sender:100", T0 + 100, T0 + 2 * DAY - 1) == 2
    assert await store.distinct_counted("sender:200", T0, T0 + 3 * DAY) == 0
    # no live window: each recipient at the local day of its latest send (a and b one day, d the next)
    day1 = int((T0 + DAY + 7) // DAY)
    assert await store.counted_history("sender:100", T0, T0 + 3 * DAY, 0.0) == \
        CountedHistory([], [(day1, 2), (day1 + 1, 1)])
    # recent: those whose latest send is after the time given (a: DAY + 7, d: 2 DAY; b at DAY + 5 is not)
    assert (await store.counted_history("sender:100", T0, T0 + 3 * DAY, 0.0, recent_since=T0 + DAY + 6)).recent == 2
    await store.apply_updates([], [LedgerChange("sender:100", "d", T0 + 3 * DAY), LedgerChange("sender:100", "e",
                                                                                              T0 + 3 * DAY + 9)])
    found = await store.counted_history("sender:100", T0 + 100, T0 + 2 * DAY, 3600.0)
    in_window, by_day = found.in_window, found.by_day
    assert sorted(in_window) == [(T0 + 2 * DAY, 1), (T0 + 2 * DAY + 9, 1)]  # d at its send, e a day before it frees
    assert sorted(by_day) == [(int((T0 + DAY + 3600) // DAY), 2)]  # a and b; a's send at T0 + 100 is out of range


def _history_model(sends: list[tuple[float, str]], ledger: dict[str, float],
                   offset: float) -> tuple[list[tuple[float, int]], list[tuple[int, int]]]:
    """The forecast's history as it was computed in Python from every counted send (send order)."""
    in_window = {r: expiry - DAY for r, expiry in ledger.items()}
    latest_day: dict[str, int] = {}
    for sent_at, recipient in sorted(sends):
        if recipient in in_window:
            in_window[recipient] = sent_at
        else:
            latest_day[recipient] = int((sent_at + offset) // DAY)
    return (sorted(Counter(in_window.values()).items()), sorted(Counter(latest_day.values()).items()))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from("abcdef"), st.integers(0, 40 * 24), st.booleans()), max_size=25),
       st.dictionaries(st.sampled_from("abcdefg"), st.integers(-24, 48), max_size=5),
       st.sampled_from([0.0, 3600.0, -5 * 3600.0, 19800.0]))
async def test_counted_history_matches_the_python_model(store: SqlStore, sends: list[tuple[str, int, bool]],
                                                        ledger: dict[str, int], offset: float) -> None:
    """Hours on a grid, so no send sits within float rounding of a midnight."""
    scope = f"sender:h{len(await store.list_scopes())}"
    if not await store.list_tenants():
        await store.create_tenant(Tenant("t1", "t1-name", created_at=T0))
    await store.upsert_scope(Scope(scope, "t1"))
    sender = scope.split(":")[1]
    await store.create_sender(Sender(sender, "t1", "+1", scope, created_at=T0))
    made = await store.insert_messages([new(r, sender=sender) for r, _, _ in sends], T0)
    await store.apply_updates([MessageUpdate(m.id, SENT, T0 + h * 3600.0, counted=counted, sent_at=T0 + h * 3600.0)
                               for m, (_, h, counted) in zip(made, sends, strict=True)])
    now = T0 + 35 * DAY
    live = {r: now + h * 3600.0 for r, h in ledger.items()}
    await store.apply_updates([], [LedgerChange(scope, r, e) for r, e in live.items()])
    since = now - 30 * DAY
    expected = _history_model([(T0 + h * 3600.0, r) for r, h, counted in sends
                               if counted and since < T0 + h * 3600.0 <= now],
                              {r: e for r, e in live.items() if e > now}, offset)
    found = await store.counted_history(scope, since, now, offset, recent_since=now - 7 * DAY)
    assert (sorted(found.in_window), sorted(found.by_day)) == expected
    assert found.recent == await store.distinct_counted(scope, now - 7 * DAY, now)  # the same count, one read


# --------------------------------------------------------------------------------------------
# recipients and service windows
# --------------------------------------------------------------------------------------------
async def test_opt_in_and_out(store: SqlStore) -> None:
    assert await store.recipient_flags("t1", ["1"]) == {}
    await store.set_opt_in("t1", "1", T0, "form")
    await store.set_opt_out("t1", "2", T0, "STOP")
    await store.set_opt_in("t2", "2", T0, "form")
    assert await store.recipient_flags("t1", ["1", "2", "3"]) == {
        "1": RecipientFlags(opted_in_at=T0), "2": RecipientFlags(opted_out_at=T0)}
    await store.set_opt_out("t1", "1", T0 + 10, "STOP")
    assert await store.recipient_flags("t1", ["1"]) == {"1": RecipientFlags(T0, T0 + 10)}
    await store.set_opt_in("t1", "1", T0 + 20, "START")  # opting in again lifts the opt-out
    assert await store.recipient_flags("t1", ["1"]) == {"1": RecipientFlags(T0 + 20, None)}
    await store.set_opt_out("t1", "1", T0 + 15, "STOP")  # a late, older opt-out: ignored
    assert await store.recipient_flags("t1", ["1"]) == {"1": RecipientFlags(T0 + 20, None)}
    await store.set_opt_out("t1", "2", T0 + 30, "STOP")
    await store.set_opt_in("t1", "2", T0 + 25, "import")  # an older opt-in keeps the later opt-out
    assert await store.recipient_flags("t1", ["2"]) == {"2": RecipientFlags(T0 + 25, T0 + 30)}


async def test_inbound_times_only_move_forward(store: SqlStore) -> None:
    assert await store.record_inbound("100", "1", T0) is True
    assert await store.record_inbound("100", "1", T0 + 5) is True
    assert await store.record_inbound("100", "1", T0 + 2) is False
    assert await store.record_inbound("100", "1", T0 + 5) is False
    assert await store.record_inbound("200", "1", T0 + 1) is True
    assert await store.last_inbound("100", ["1", "2"]) == {"1": T0 + 5}
    assert await store.last_inbound("200", ["1"]) == {"1": T0 + 1}
    assert await store.last_inbound("100", []) == {}


# --------------------------------------------------------------------------------------------
# campaigns and webhooks
# --------------------------------------------------------------------------------------------
async def test_campaigns(store: SqlStore) -> None:
    campaign = Campaign("c1", "t1", "100", "spring", {"name": "promo", "language": {"code": "es"}}, "MARKETING",
                        pacing="spread", spread_days=3, start_at=T0, deadline=T0 + 5 * DAY, quiet_hours=(21, 8),
                        total=300, plan=[{"day": 0, "count": 100}], created_at=T0)
    assert await store.create_campaign(campaign) == campaign
    assert await store.get_campaign("c1") == campaign
    with pytest.raises(ConflictError):
        await store.create_campaign(campaign)
    await store.create_campaign(Campaign("c2", "t1", "100", "b", {}, "UTILITY", created_at=T0 + 1))
    await store.create_campaign(Campaign("c3", "t2", "300", "c", {}, "UTILITY", created_at=T0))
    assert [c.id for c in await store.list_campaigns("t1")] == ["c2", "c1"]  # newest first
    await store.create_campaign(Campaign("c4", "t1", "200", "d", {}, "UTILITY", state="paused", created_at=T0 + 2))
    await store.create_campaign(Campaign("c5", "t1", "100", "e", {}, "UTILITY", created_at=T0 + 2))
    assert [c.id for c in await store.list_campaigns("t1")] == ["c5", "c4", "c2", "c1"]  # same time: by id
    assert [c.id for c in await store.list_campaigns("t1", limit=2)] == ["c5", "c4"]
    assert [c.id for c in await store.list_campaigns("t1", limit=2, before="c4")] == ["c2", "c1"]
    assert [c.id for c in await store.list_campaigns("t1", before="c1")] == []
    assert [c.id for c in await store.list_campaigns("t1", before="c9")] == []  # not a campaign: nothing
    assert [c.id for c in await store.list_campaigns("t1", sender_id="100")] == ["c5", "c2", "c1"]
    assert [c.id for c in await store.list_campaigns("t1", state="paused")] == ["c4"]
    assert [c.id for c in await store.list_campaigns("t1", sender_id="200", state="running")] == []
    updated = await store.update_campaign("c1", {"state": "paused", "quiet_hours": None, "plan": []})
    assert (updated.state, updated.quiet_hours, updated.plan, updated.total) == ("paused", None, [], 300)
    with pytest.raises(NotFound):
        await store.get_campaign("c9")


async def test_the_database_size_grows_with_the_messages(store: SqlStore) -> None:
    await seed(store)
    empty = await store.size_bytes()
    assert empty > 0
    for batch in range(4):
        await store.insert_messages([new(f"+5730010{batch}{i:04d}") for i in range(1_000)], T0)
    assert await store.size_bytes() > empty + 4_000 * 100  # each message over 100 bytes, with its indexes


async def test_retention_deletes_ended_single_messages_and_keeps_what_is_live_or_untold(store: SqlStore) -> None:
    await seed(store)
    old = await store.insert_messages([new(f"+5730000000{i}") for i in range(6)], T0)
    young = await store.insert_messages([new("+57300000010")], T0 + 40 * DAY)
    done = MessageState.DELIVERED
    await store.apply_updates([
        MessageUpdate(old[0].id, done, T0 + 1),  # ended long ago: goes
        MessageUpdate(old[1].id, MessageState.CANCELED, T0 + 1),  # goes
        MessageUpdate(old[2].id, MessageState.FAILED, T0 + 1, reason="expired by tiergate"),  # untold: stays
        MessageUpdate(old[3].id, SENDING, T0 + 1),  # in flight: stays
        # old[4] stays queued
        MessageUpdate(old[5].id, done, T0 + 39 * DAY),  # ended after the cutoff: stays
        MessageUpdate(young[0].id, done, T0 + 40 * DAY),
    ])
    before = T0 + 31 * DAY
    assert await store.prune_messages(before, chunk=1) == 2  # chunks of one row: the loop goes on
    with pytest.raises(NotFound):
        await store.get_message(old[0].id)
    assert await store.count_by_state() == {"failed": 1, "sending": 1, "queued": 1, "delivered": 2}
    await store.mark_told([old[2].id], [], T0 + 2)  # the app was told: now it may go
    assert await store.prune_messages(before) == 1
    assert await store.prune_messages(before) == 0
    assert await store.count_by_state() == {"sending": 1, "queued": 1, "delivered": 2}


async def test_two_retention_passes_at_once_delete_each_message_once(store: SqlStore) -> None:
    """Every process runs retention: two passes over the same rows both finish, and between them
    every ended message went exactly once (on PostgreSQL they run on two connections at once)."""
    await seed(store)
    for batch in range(3):
        done = await store.insert_messages([new(f"+5730020{batch}{i:04d}") for i in range(1_000)], T0)
        await store.apply_updates([MessageUpdate(m.id, MessageState.DELIVERED, T0 + 1) for m in done])
    first, second = await asyncio.gather(store.prune_messages(T0 + 31 * DAY, chunk=100),
                                         store.prune_messages(T0 + 31 * DAY, chunk=100))
    assert await store.count_by_state() == {}
    assert 3_000 - 2 * 100 <= first + second <= 3_000  # a re-run after a deadlock counts anew


async def test_retention_archives_a_finished_campaign_then_deletes_its_messages(store: SqlStore) -> None:
    await seed(store)
    for cid in ("c1", "c2", "c3"):
        await store.create_campaign(Campaign(cid, "t1", "100", cid, {}, "MARKETING", total=2, created_at=T0))
    await store.create_campaign(Campaign("c4", "t1", "100", "c4", {}, "MARKETING", created_at=T0 + 35 * DAY))
    by = {cid: await store.insert_messages([new(f"+57300{cid[1]}0000{i}", campaign_id=cid) for i in range(2)], T0)
          for cid in ("c1", "c2", "c3")}
    await store.apply_updates([MessageUpdate(m.id, MessageState.READ, T0 + DAY, sent_at=T0 + DAY)
                               for cid in ("c1", "c2") for m in by[cid]]
                              + [MessageUpdate(by["c3"][0].id, MessageState.READ, T0 + DAY)])  # c3: one waits
    await store.apply_updates([MessageUpdate(by["c2"][1].id, MessageState.READ, T0 + 32 * DAY)])  # c2: too recent
    single = await store.insert_messages([new("+57300999999")], T0)
    before = T0 + 31 * DAY
    assert [c.id for c in await store.finished_campaigns(before)] == ["c1"]
    # A campaign's messages stay until it is archived, however old.
    assert await store.prune_messages(before) == 0
    archive = CampaignArchive("c1", T0 + 40 * DAY, {"read": 2}, [0, 2])
    assert await store.archive_campaign(archive) is True
    assert await store.archive_campaign(replace(archive, counts={"read": 9})) is False  # the first one stays
    assert await store.campaign_archive("c1") == archive
    assert await store.campaign_archive("c2") is None
    assert await store.finished_campaigns(before) == []
    assert await store.prune_messages(before, chunk=1) == 2
    assert await store.count_by_state(campaign_id="c1") == {}
    assert await store.count_by_state(campaign_id="c2") == {"read": 2}
    assert await store.count_by_state(campaign_id="c3") == {"read": 1, "queued": 1}
    assert (await store.get_message(single[0].id)).state is Q  # queued: never pruned
    assert await store.prune_messages(before) == 0


async def test_webhook_events_and_changes(store: SqlStore) -> None:
    body = b'{"object":"whatsapp_business_account","entry":[]}\x00\xff'
    assert await store.add_webhook_event("e1", body, T0) is True
    assert await store.add_webhook_event("e1", b"again", T0 + 1) is False
    assert await store.add_webhook_event("e0", b"{}", T0 + 2) is True
    assert await store.unapplied_webhook_events() == [("e1", body), ("e0", b"{}")]
    assert await store.unapplied_webhook_events(limit=1) == [("e1", body)]
    await store.mark_webhook_applied("e1", T0 + 3)
    await store.mark_webhook_applied("e0", T0 + 3, error="bad payload")
    assert await store.unapplied_webhook_events() == []
    with pytest.raises(NotFound):
        await store.mark_webhook_applied("e9", T0)
    assert await store.claim_change("wamid.1:delivered", T0) is True
    assert await store.claim_change("wamid.1:delivered", T0 + 1) is False
    assert await store.claim_change("wamid.1:read", T0 + 1) is True



async def test_forwards_are_queued_once_per_delivery_and_claimed_finished_and_counted(store: SqlStore) -> None:
    await seed(store)
    await seed(store, "t2", scopes=("300",))
    shares = [("t1", b'{"a":1}\x00\xff'), ("t2", b'{"b":2}')]
    assert await store.add_webhook_event("e1", b"{}", T0, shares) is True
    assert await store.add_webhook_event("e1", b"{}", T0 + 1, shares) is False  # a redelivery: no new forwards
    first = sorted(await store.claim_forwards(T0, 10, hold=60), key=lambda f: f.tenant_id)
    assert [(f.tenant_id, f.body, f.attempts) for f in first] == [("t1", b'{"a":1}\x00\xff', 1), ("t2", b'{"b":2}', 1)]
    assert await store.claim_forwards(T0 + 59, 10, hold=60) == []  # held while being sent
    t1, t2 = first
    await store.finish_forward(t1.id, delivered_at=T0 + 1)
    await store.finish_forward(t2.id, error="HTTP 500 from the app", next_attempt_at=T0 + 10)
    assert await store.claim_forwards(T0 + 9, 10, hold=60) == []
    again = await store.claim_forwards(T0 + 10, 10, hold=60)
    assert [(f.id, f.attempts) for f in again] == [(t2.id, 2)]
    await store.finish_forward(t2.id, error="gave up")  # no next attempt: failed for good
    await store.finish_forward(t1.id, error="late")  # finished already: nothing changes
    assert await store.forward_counts("t1") == {"counts": {"delivered": 1}, "last_error": "",
                                                "last_delivered_at": T0 + 1}
    assert await store.forward_counts("t2") == {"counts": {"failed": 1}, "last_error": "gave up",
                                                "last_delivered_at": None}
    assert await store.claim_forwards(T0 + 10_000, 10, hold=60) == []


async def test_forwards_of_a_tenant_can_be_canceled_and_old_ones_pruned(store: SqlStore) -> None:
    await seed(store)
    await store.add_webhook_event("e1", b"{}", T0, [("t1", b"1")])
    await store.add_webhook_event("e2", b"[]", T0 + 5, [("t1", b"2")])
    [one] = await store.claim_forwards(T0, 1, hold=60)
    await store.finish_forward(one.id, delivered_at=T0 + 1)
    assert await store.cancel_forwards("t1", T0 + 6) == 1
    assert (await store.forward_counts("t1"))["counts"] == {"delivered": 1, "canceled": 1}
    assert await store.claim_forwards(T0 + 100, 10, hold=60) == []
    assert await store.prune_forwards(before=T0 + 1) == 1  # the first (delivered, made at T0)
    assert (await store.forward_counts("t1"))["counts"] == {"canceled": 1}


async def test_two_claimers_of_the_same_due_forwards_get_each_once(store: SqlStore) -> None:
    await seed(store)
    await store.add_webhook_event("e1", b"{}", T0, [("t1", str(i).encode()) for i in range(30)])
    got = await asyncio.gather(*(store.claim_forwards(T0, 30, hold=60) for _ in range(4)))
    ids = [f.id for batch in got for f in batch]
    assert len(ids) == 30 and len(set(ids)) == 30


async def test_messages_tiergate_ended_are_told_once_with_their_forwards(store: SqlStore) -> None:
    await seed(store)
    expired, refused, failed, sent, canceled, at_intake, queued = await store.insert_messages(
        [new("1"), new("2"), new("3"), new("4"), new("5", campaign_id="c1"),
         new("6", state=MessageState.REJECTED, reason="recipient opted out of marketing"), new("7")], T0)
    await store.apply_updates([
        MessageUpdate(expired.id, MessageState.EXPIRED, T0 + 3, reason="expired before it could be sent"),
        MessageUpdate(refused.id, MessageState.REJECTED, T0 + 1, reason="recipient opted out of marketing"),
        MessageUpdate(failed.id, MessageState.FAILED, T0 + 2, reason="failed", error_code=131026),
        MessageUpdate(sent.id, MessageState.SENT, T0 + 2, wamid="wamid.4", sent_at=T0 + 2),
    ])
    await store.cancel_campaign_messages("c1", T0 + 4)  # the app canceled it: nothing to tell
    untold = await store.untold_messages(10)
    assert [m.id for m in untold] == [refused.id, failed.id, expired.id]  # oldest change first
    assert untold[1].error_code == 131026
    assert [m.id for m in await store.untold_messages(1)] == [refused.id]
    assert await store.mark_told([refused.id, failed.id], [("t1", b'{"told":1}')], T0 + 10) is True
    assert [m.id for m in await store.untold_messages(10)] == [expired.id]
    # someone told one of them first: nothing of this call is written
    assert await store.mark_told([expired.id, failed.id], [("t1", b'{"told":2}')], T0 + 11) is False
    [forward] = await store.claim_forwards(T0 + 20, 10, hold=60)
    assert (forward.tenant_id, forward.body) == ("t1", b'{"told":1}')
    assert await store.mark_told([expired.id], [], T0 + 12) is True  # no webhook URL: only marked
    assert await store.untold_messages(10) == []
    assert queued.state is Q and at_intake.state is MessageState.REJECTED and canceled.campaign_id == "c1"


async def test_two_processes_telling_the_same_ended_messages_write_one_forward(store: SqlStore) -> None:
    await seed(store)
    ended = await store.insert_messages([new(str(i)) for i in range(20)], T0)
    await store.apply_updates([MessageUpdate(m.id, MessageState.EXPIRED, T0 + 1) for m in ended])
    ids = [m.id for m in await store.untold_messages(100)]
    won = await asyncio.gather(*(store.mark_told(ids, [("t1", str(i).encode())], T0 + 2) for i in range(4)))
    assert sorted(won) == [False, False, False, True]
    assert len(await store.claim_forwards(T0 + 3, 10, hold=60)) == 1


async def test_media_ids_keep_their_first_tenant_and_are_pruned(store: SqlStore) -> None:
    await store.add_media([("111", "t1"), ("222", "t1"), ("111", "t2")], T0)
    await store.add_media([("222", "t2"), ("333", "t2")], T0 + 10)  # 222 stays t1's
    assert [await store.media_tenant(m) for m in ("111", "222", "333", "444")] == ["t1", "t1", "t2", None]
    # with a new delivery only: a redelivery records nothing again (and forwards nothing)
    assert await store.add_webhook_event("e1", b"{}", T0 + 20, [("t3", b"{}")], [("555", "t3")]) is True
    assert await store.add_webhook_event("e1", b"{}", T0 + 21, [("t3", b"{}")], [("666", "t3")]) is False
    assert [await store.media_tenant(m) for m in ("555", "666")] == ["t3", None]
    assert await store.prune_media(before=T0 + 5, chunk=1) == 2
    assert [await store.media_tenant(m) for m in ("111", "222", "333")] == [None, None, "t2"]


async def test_template_categories_keep_the_latest_per_tenant_name_and_language(store: SqlStore) -> None:
    assert await store.template_categories("t1", []) == {}
    await store.set_template_categories("t1", [("code", "en_US", "AUTHENTICATION"), ("sale", "en_US", "MARKETING"),
                                               ("sale", "es", "UTILITY"), ("sale", "es", "MARKETING")], T0)
    await store.set_template_categories("t2", [("code", "en_US", "UTILITY")], T0)
    await store.set_template_categories("t1", [("code", "en_US", "MARKETING")], T0 - 5)  # older news: kept out
    await store.set_template_categories("t1", [("sale", "en_US", "UTILITY")], T0 + 5)  # a recategorization
    assert await store.template_categories("t1", ["code", "sale", "other"]) == {
        ("code", "en_US"): "AUTHENTICATION", ("sale", "en_US"): "UTILITY", ("sale", "es"): "MARKETING"}
    assert await store.template_categories("t2", ["code"]) == {("code", "en_US"): "UTILITY"}
    names = [f"t{i}" for i in range(2_500)]  # more names than one statement binds
    await store.set_template_categories("t3", [(n, "en", "UTILITY") for n in names], T0)
    assert len(await store.template_categories("t3", names)) == 2_500


async def test_opt_ins_import_in_one_transaction_and_respect_later_opt_outs(store: SqlStore) -> None:
    await seed(store)
    await store.set_opt_out("t1", "2", T0 + 5, "STOP")
    assert await store.set_opt_ins("t1", [("1", T0, "crm"), ("2", T0, "crm"), ("3", T0 + 9, "form")]) == 3
    flags = await store.recipient_flags("t1", ["1", "2", "3", "4"])
    assert flags == {"1": RecipientFlags(T0, None), "2": RecipientFlags(T0, T0 + 5), "3": RecipientFlags(T0 + 9, None)}
    assert await store.set_opt_ins("t1", [("2", T0 + 6, "crm")]) == 1  # a newer opt-in lifts the opt-out
    assert (await store.recipient_flags("t1", ["2"]))["2"] == RecipientFlags(T0 + 6, None)
    assert await store.recipient_flags("t2", ["1"]) == {}


async def test_old_applied_deliveries_and_change_ids_are_pruned_in_chunks(store: SqlStore) -> None:
    for i in range(5):
        await store.add_webhook_event(f"old{i}", b"{}", T0 + i)
        await store.mark_webhook_applied(f"old{i}", T0 + i)
        await store.claim_change(f"wamid.{i}:read", T0 + i)
    await store.add_webhook_event("old-unapplied", b"{}", T0)  # never applied: kept for the replay
    await store.add_webhook_event("new", b"[]", T0 + 100)
    await store.mark_webhook_applied("new", T0 + 100)
    await store.claim_change("wamid.new:read", T0 + 100)
    assert await store.prune_webhooks(before=T0 + 50, chunk=2) == 10
    assert await store.unapplied_webhook_events() == [("old-unapplied", b"{}")]
    assert await store.add_webhook_event("new", b"[]", T0 + 101) is False  # still known
    assert await store.claim_change("wamid.new:read", T0 + 101) is False
    assert await store.claim_change("wamid.0:read", T0 + 101) is True  # forgotten
    assert await store.prune_webhooks(before=T0 + 50) == 0

# --------------------------------------------------------------------------------------------
# wake-ups
# --------------------------------------------------------------------------------------------
async def test_notify_wakes_listeners_until_they_stop(store: SqlStore, make_store: StoreFactory) -> None:
    first, second = asyncio.Event(), asyncio.Event()
    calls: list[str] = []

    def on_wake() -> None:
        calls.append("first")
        first.set()

    stop = await store.listen("wake", on_wake)
    sender = store if isinstance(store, SQLiteStore) else await make_store()  # another process on PostgreSQL
    await sender.notify("other-channel")
    await sender.notify("wake")
    await asyncio.wait_for(first.wait(), timeout=10)
    assert calls == ["first"]
    await stop()
    await stop()  # idempotent
    stop_second = await store.listen("wake", second.set)
    await sender.notify("wake")
    await asyncio.wait_for(second.wait(), timeout=10)  # delivered after the first stopped listening
    assert calls == ["first"]
    await stop_second()


async def test_a_listener_survives_a_lost_connection_and_a_failing_callback(pg_url: str) -> None:
    async with open_store(pg_url) as store:
        assert isinstance(store, PostgresStore)
        store.reconnect_delay = 0.01
        woken, failed = asyncio.Event(), asyncio.Event()
        calls = 0

        def flaky() -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                failed.set()
                raise RuntimeError("a listener bug")
            woken.set()

        stop = await store.listen("wake", flaky)
        await store.notify("wake")  # the first call raises: logged, the subscription lives on
        await asyncio.wait_for(failed.wait(), timeout=10)  # delivered before the connection is cut
        [subscription] = store.subscriptions
        assert subscription.conn is not None
        async with store.reader() as tx:
            await tx.execute("SELECT pg_terminate_backend(?)", (subscription.conn.info.backend_pid,))
        await asyncio.wait_for(woken.wait(), timeout=10)  # reconnected: one wake-up for what it missed
        woken.clear()
        await store.notify("wake")
        await asyncio.wait_for(woken.wait(), timeout=10)
        await stop()
        assert store.subscriptions == set()


async def test_sqlite_creates_the_folder_of_its_file(tmp_path: Any) -> None:
    async with open_store(f"sqlite:///{tmp_path}/new/folder/tiergate.db") as store:
        await seed(store)
    assert (tmp_path / "new" / "folder" / "tiergate.db").exists()


async def test_sqlite_checkpoints_the_wal_from_its_own_thread(tmp_path: Any) -> None:
    """Commits only note the WAL's size; past the threshold the checkpoint thread copies it back."""
    async with SQLiteStore(str(tmp_path / "t.db")) as store:
        checkpointer = store._checkpointer
        assert checkpointer is not None
        checkpointer.pages = 5
        checkpointer.OVERDUE = 1_000_000  # the writer never checkpoints itself here: the thread is alone
        await seed(store)
        for batch in range(5):
            await store.insert_messages([new(f"+5730000{batch}{i:03d}") for i in range(100)], T0)
        assert await asyncio.to_thread(checkpointer.ran.wait, 10)
        assert checkpointer.last is not None
        frames, copied = checkpointer.last
        assert frames > 0 and copied > 0
        assert await store.count_by_state() == {"queued": 500}
    assert store._checkpointer is None
    async with SQLiteStore(str(tmp_path / "t.db")) as store:  # the data made it to the file
        assert await store.count_by_state() == {"queued": 500}


async def test_sqlite_writer_checkpoints_itself_when_the_thread_falls_behind(tmp_path: Any) -> None:
    """With the thread stopped, the WAL still stops growing: the writer checkpoints past OVERDUE."""
    async with SQLiteStore(str(tmp_path / "t.db")) as store:
        checkpointer = store._checkpointer
        assert checkpointer is not None
        checkpointer.pages = 2  # overdue past 32 pages (128 KiB)
        checkpointer._stopping = True
        checkpointer._wake.set()
        checkpointer._thread.join()
        await seed(store)
        for batch in range(20):  # ~2.5 MiB of WAL without a checkpoint
            await store.insert_messages([new(f"+573000{batch:02d}{i:03d}") for i in range(100)], T0)
        assert checkpointer.runs == 0
        assert (tmp_path / "t.db-wal").stat().st_size < 1024 * 1024
        assert await store.count_by_state() == {"queued": 2000}


async def test_sqlite_scans_run_in_a_worker_thread_on_a_second_connection(tmp_path: Any) -> None:
    """Reads that grow with the data (a campaign's counts) run in the store's own scan thread, see every
    commit made before them, and cannot write."""
    import threading

    async with SQLiteStore(str(tmp_path / "t.db")) as store:
        await seed(store)
        threads: list[str] = []
        scan = store._scan

        def spy(*args: Any) -> Any:
            threads.append(threading.current_thread().name)
            return scan(*args)

        store._scan = spy  # type: ignore[method-assign]
        for i in range(3):  # each read right after a commit sees it
            await store.insert_messages([new(f"+5730000{i}", campaign_id="c1")], T0)
            assert await store.count_by_state(campaign_id="c1") == {"queued": i + 1}
        assert threads and all(name.startswith("tiergate-scan") for name in threads)
        assert store._scan_conn is not None and store._scan_conn is not store._conn
        async with store.scanner() as tx:
            with pytest.raises(RuntimeError, match="only reads"):
                await tx.execute("DELETE FROM messages")
            assert await tx.fetchone("SELECT COUNT(*) FROM messages") == (3,)
        with pytest.raises(apsw.ReadOnlyError):  # the connection itself is read-only too
            await asyncio.to_thread(scan, "DELETE FROM messages", (), None)
    assert store._scan_conn is None  # closed with the store
    with pytest.raises(RuntimeError, match="not open"):
        await store.count_by_state()


async def test_sqlite_store_shared_by_threads_without_sqlite_mutexes(tmp_path: Any) -> None:
    """The connections open in SQLite's multi-thread mode (no mutex per call): the store's own locks
    keep each connection to one thread at a time. Four threads, each with its own event loop, insert,
    claim, write and scan on one store at once: every write lands once and every read is whole."""
    import threading

    async with SQLiteStore(str(tmp_path / "t.db")) as store:
        await seed(store)
        assert store._conn is not None and store._conn.open_flags & apsw.SQLITE_OPEN_NOMUTEX
        errors: list[BaseException] = []

        async def work(k: int) -> None:
            for i in range(25):
                batch = [new(f"+57300{k}{i:02d}{j}", campaign_id=f"c{k}") for j in range(4)]
                inserted = await store.insert_messages(batch, T0)
                await store.apply_updates([MessageUpdate(m.id, MessageState.SENT, T0, reason="accepted",
                                                         wamid=f"wamid.{m.id}") for m in inserted[:2]])
                counts = await store.count_by_state(campaign_id=f"c{k}")  # the scan thread's connection
                assert sum(counts.values()) == 4 * (i + 1), counts

        def thread(k: int) -> None:
            try:
                asyncio.run(work(k))
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=thread, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert await store.count_by_state() == {"queued": 200, "sent": 200}


async def test_sqlite_scans_run_inline_without_wal(tmp_path: Any) -> None:
    """The simulator's file (no WAL) and a private :memory: database have no second connection."""
    for store in (SQLiteStore(str(tmp_path / "sim.db"), journal_mode="MEMORY"), SQLiteStore(":memory:")):
        async with store:
            await seed(store)
            await store.insert_messages([new("+573000001", campaign_id="c1")], T0)
            assert await store.count_by_state(campaign_id="c1") == {"queued": 1}
            assert store._scan_conn is None


async def test_sqlite_settings_for_a_throwaway_file(tmp_path: Any) -> None:
    """The simulator's file: no journal on disk and a large cache; bad settings are refused up front."""
    async with SQLiteStore(str(tmp_path / "sim.db"), synchronous="OFF", journal_mode="MEMORY", cache_mib=256,
                           page_size=16384) as store:
        await store.create_tenant(Tenant("t1", "acme", created_at=T0))
        assert (await store.get_tenant("t1")).name == "acme"
        assert store._conn is not None
        assert store._conn.execute("PRAGMA journal_mode").fetchone() == ("memory",)
        assert store._conn.execute("PRAGMA cache_size").fetchone() == (-256 * 1024,)
        assert store._conn.execute("PRAGMA page_size").fetchone() == (16384,)
        assert store._checkpointer is None  # no WAL, nothing to checkpoint
    # An existing file keeps the page size it was made with (SQLite's rule): asking is harmless.
    async with SQLiteStore(str(tmp_path / "sim.db"), page_size=4096) as store:
        assert (await store.get_tenant("t1")).name == "acme"
        assert store._conn is not None
        assert store._conn.execute("PRAGMA page_size").fetchone() == (16384,)
    async with SQLiteStore(str(tmp_path / "new.db")) as store:  # a new file: 16 KiB pages unless told
        assert store._conn is not None
        assert store._conn.execute("PRAGMA page_size").fetchone() == (16384,)
    async with SQLiteStore(str(tmp_path / "small.db"), page_size=None) as store:  # SQLite's own default
        assert store._conn is not None
        assert store._conn.execute("PRAGMA page_size").fetchone() == (4096,)
    for bad in (256, 12288, 131072):
        with pytest.raises(ValueError, match="page_size"):
            SQLiteStore(str(tmp_path / "x.db"), page_size=bad)
    with pytest.raises(ValueError, match="journal_mode"):
        SQLiteStore(str(tmp_path / "x.db"), journal_mode="DELETE")
    with pytest.raises(ValueError, match="cache_mib"):
        SQLiteStore(str(tmp_path / "x.db"), cache_mib=0)


async def test_messages_to_tell_are_read_off_their_partial_index(store: SqlStore) -> None:
    """``untold_messages`` repeats the condition of ``messages_untold`` word for word: both
    engines' planners can use the index (a scan of every message each round otherwise)."""
    from tiergate.adapters.store.sql import _UNTOLD

    await seed(store)
    async with store.transaction() as tx:
        if store.dialect == "postgres":
            await tx.execute("SET LOCAL enable_seqscan = off")  # a tiny table: prove the index is usable
        explain = "EXPLAIN QUERY PLAN" if store.dialect == "sqlite" else "EXPLAIN"
        plan = await tx.fetchall(f"{explain} SELECT id FROM messages WHERE {_UNTOLD} ORDER BY updated_at LIMIT 5")
    steps = " | ".join(str(row[-1]) for row in plan)
    assert "messages_untold" in steps, steps


async def test_a_page_of_a_large_campaign_is_its_newest_messages_read_in_index_order(store: SqlStore) -> None:
    """Newest first off the (campaign_id, id) index: no sort of the whole campaign (SQLite's plan
    says so; PostgreSQL's planner picks by its statistics, so only the answer is checked there)."""
    await seed(store)
    for batch in range(4):
        await store.insert_messages([new(f"55119{batch}{i:07d}", campaign_id="big") for i in range(300)], T0 + batch)
    page = await store.list_messages("t1", campaign_id="big", limit=10)
    assert len(page) == 10 and all(m.created_at == T0 + 3 for m in page)
    assert [m.id for m in page] == sorted((m.id for m in page), reverse=True)
    if store.dialect == "sqlite":
        async with store.reader() as tx:
            plan = await tx.fetchall("EXPLAIN QUERY PLAN SELECT id FROM messages WHERE tenant_id = ? AND "
                                     "campaign_id = ? ORDER BY id DESC LIMIT 10", ("t1", "big"))
        steps = " | ".join(str(row[-1]) for row in plan)
        assert "messages_campaign" in steps and "TEMP B-TREE" not in steps, steps
