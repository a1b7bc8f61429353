-- Forwarding the platform's webhooks to each tenant's app (service/forwarding.py). Meta sends one
-- callback URL's worth of webhooks, to tiergate; an app that used to receive them (inbound messages,
-- statuses) gets its share from here. A row per (delivery, tenant), written in the transaction that
-- stores the delivery, so nothing is forwarded twice for one delivery or lost to a crash.
ALTER TABLE tenants ADD COLUMN webhook_url TEXT;
ALTER TABLE tenants ADD COLUMN webhook_secret TEXT NOT NULL DEFAULT '';

CREATE TABLE forwards (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    body            BLOB NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',  -- pending | delivered | failed | canceled
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    created_at      REAL NOT NULL,
    delivered_at    REAL,
    last_error      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX forwards_due ON forwards (next_attempt_at) WHERE state = 'pending';
CREATE INDEX forwards_tenant ON forwards (tenant_id, state);
