-- The drop-in relays media calls (service/dropin.py): a media id is the platform's, reachable with
-- tiergate's token whoever asks, so each id a tenant may use is recorded: ids it uploaded through
-- tiergate, and ids of inbound media in the webhooks forwarded to it. The platform keeps media for
-- 30 days; older rows are pruned with the webhook deliveries.
CREATE TABLE media (
    id        TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    at        DOUBLE PRECISION NOT NULL
);
CREATE INDEX media_at ON media (at);
