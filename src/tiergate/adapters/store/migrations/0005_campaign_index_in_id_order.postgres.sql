-- Listing a campaign's messages newest first (the API, the dashboard, `campaign send` waiting for
-- capacity) read every message of the campaign and sorted them: 60 ms for 150,000, growing with the
-- campaign, and on SQLite the store's one connection waits meanwhile. Ids begin with their creation
-- time, so with the id in the index the newest come first and the read stops after the page.
-- Counting and changing a campaign's messages use the same index by its first column, as before.
DROP INDEX messages_campaign;
CREATE INDEX messages_campaign ON messages (campaign_id, id) WHERE campaign_id IS NOT NULL;
