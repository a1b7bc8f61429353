-- tiergate schema, SQLite dialect (see 0001_init.postgres.sql for the same tables on PostgreSQL).
-- Booleans are INTEGER 0/1, times REAL epoch seconds, JSON documents TEXT.

CREATE TABLE tenants (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    require_opt_in    INTEGER NOT NULL DEFAULT 0,
    marketing_cap_24h INTEGER NOT NULL DEFAULT 2,
    stop_keywords     TEXT NOT NULL DEFAULT '[]',
    created_at        REAL NOT NULL DEFAULT 0
);

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT,
    key_hash   TEXT NOT NULL UNIQUE,
    prefix     TEXT NOT NULL,
    is_admin   INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL DEFAULT 0,
    revoked_at REAL,
    label      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

CREATE TABLE scopes (
    id                 TEXT PRIMARY KEY,
    tenant_id          TEXT NOT NULL,
    policy             TEXT NOT NULL,
    tier               TEXT NOT NULL,
    tier_source        TEXT NOT NULL,
    tier_updated_at    REAL NOT NULL,
    predicted_tier     TEXT,
    quality            TEXT NOT NULL,
    reserve_fraction   REAL NOT NULL,
    trust_model        INTEGER NOT NULL,
    timezone           TEXT NOT NULL,
    upgrade_pending_at REAL,
    red_days           INTEGER NOT NULL,
    last_evaluated_day INTEGER,
    lease_owner        TEXT,
    lease_until        REAL
);
CREATE INDEX scopes_tenant ON scopes (tenant_id);
CREATE INDEX scopes_lease_owner ON scopes (lease_owner);

CREATE TABLE senders (
    id                   TEXT PRIMARY KEY,
    tenant_id            TEXT NOT NULL,
    display_phone_number TEXT NOT NULL,
    scope_id             TEXT NOT NULL,
    portfolio_id         TEXT,
    quality              TEXT NOT NULL,
    status               TEXT NOT NULL,
    throughput_mps       INTEGER NOT NULL,
    timezone             TEXT NOT NULL,
    paused               TEXT NOT NULL DEFAULT '{}',
    marketing_paused     TEXT NOT NULL DEFAULT '{}',
    created_at           REAL NOT NULL DEFAULT 0
);
CREATE INDEX senders_tenant ON senders (tenant_id);
CREATE INDEX senders_scope ON senders (scope_id);

CREATE TABLE sender_events (
    id        INTEGER PRIMARY KEY,
    sender_id TEXT NOT NULL,
    at        REAL NOT NULL,
    kind      TEXT NOT NULL,
    detail    TEXT NOT NULL
);
CREATE INDEX sender_events_sender ON sender_events (sender_id, at);

CREATE TABLE recipients (
    tenant_id      TEXT NOT NULL,
    phone          TEXT NOT NULL,
    opted_in_at    REAL,
    opt_in_source  TEXT,
    opted_out_at   REAL,
    opt_out_source TEXT,
    PRIMARY KEY (tenant_id, phone)
) WITHOUT ROWID;

CREATE TABLE csw (
    sender_id       TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    last_inbound_at REAL NOT NULL,
    PRIMARY KEY (sender_id, recipient)
) WITHOUT ROWID;

CREATE TABLE messages (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    sender_id       TEXT NOT NULL,
    scope_id        TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    kind            TEXT NOT NULL,
    category        TEXT NOT NULL,
    body            TEXT NOT NULL,
    priority        INTEGER NOT NULL,
    state           TEXT NOT NULL,
    reason          TEXT NOT NULL DEFAULT '',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    not_before      REAL,
    idempotency_key TEXT,
    expires_at      REAL,
    campaign_id     TEXT,
    metadata        TEXT NOT NULL DEFAULT '{}',
    wamid           TEXT,
    counted         INTEGER NOT NULL DEFAULT 0,
    slot_previous   REAL,
    slot_expiry     REAL,
    error_code      INTEGER,
    error_detail    TEXT NOT NULL DEFAULT '',
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL,
    sent_at         REAL
);
CREATE UNIQUE INDEX messages_idempotency ON messages (tenant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- claim_due reads due queued messages of a scope straight off this index, most urgent first;
-- next_due_at skip-scans it (one probe per priority level) instead of keeping a second index.
CREATE INDEX messages_claim ON messages (scope_id, priority, next_attempt_at, created_at)
    WHERE state = 'queued';
-- requeue_where(sender, recipient) when a window opens, marketing_sends_since: never changes
-- after insert, so state updates do not touch it.
CREATE INDEX messages_recipient ON messages (recipient);
CREATE INDEX messages_sending ON messages (scope_id) WHERE state = 'sending';
CREATE INDEX messages_campaign ON messages (campaign_id) WHERE campaign_id IS NOT NULL;
CREATE INDEX messages_wamid ON messages (wamid) WHERE wamid IS NOT NULL;
CREATE INDEX messages_counted ON messages (scope_id, sent_at) WHERE counted = TRUE AND sent_at IS NOT NULL;

CREATE TABLE message_events (
    id         INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL,
    at         REAL NOT NULL,
    state      TEXT NOT NULL,
    reason     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX message_events_message ON message_events (message_id);

CREATE TABLE campaigns (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    sender_id   TEXT NOT NULL,
    name        TEXT NOT NULL,
    template    TEXT NOT NULL,
    category    TEXT NOT NULL,
    state       TEXT NOT NULL,
    pacing      TEXT NOT NULL,
    spread_days INTEGER,
    start_at    REAL NOT NULL,
    deadline    REAL,
    quiet_hours TEXT,
    total       INTEGER NOT NULL,
    plan        TEXT NOT NULL,
    created_at  REAL NOT NULL
);
CREATE INDEX campaigns_tenant ON campaigns (tenant_id);

CREATE TABLE window_ledger (
    scope_id  TEXT NOT NULL,
    recipient TEXT NOT NULL,
    expiry    REAL NOT NULL,
    PRIMARY KEY (scope_id, recipient)
) WITHOUT ROWID;
CREATE INDEX window_ledger_expiry ON window_ledger (expiry);

CREATE TABLE webhook_events (
    id          TEXT PRIMARY KEY,
    body        BLOB NOT NULL,
    received_at REAL NOT NULL,
    applied_at  REAL,
    error       TEXT
);
CREATE INDEX webhook_events_unapplied ON webhook_events (received_at) WHERE applied_at IS NULL;

CREATE TABLE webhook_changes (
    id TEXT PRIMARY KEY,
    at REAL NOT NULL
) WITHOUT ROWID;
