-- Every webhook delivery was kept forever, raw, with the id of every change in it (about three
-- status webhooks a message: millions of rows a month). The platform redelivers for at most 7
-- days, so what was applied longer ago than that is deleted (Store.prune_webhooks), in chunks
-- read off these indexes, oldest first; finished forwards to tenants' apps likewise
-- (Store.prune_forwards).
CREATE INDEX webhook_events_received ON webhook_events (received_at) WHERE applied_at IS NOT NULL;
CREATE INDEX webhook_changes_at ON webhook_changes (at);
CREATE INDEX forwards_finished ON forwards (created_at) WHERE state <> 'pending';
