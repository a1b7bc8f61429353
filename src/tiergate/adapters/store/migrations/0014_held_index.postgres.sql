-- Messages held by a paused campaign, by campaign: the live counts (Store.count_live, behind
-- /metrics' queue depth) read the held ones off this index as they read the queued ones off
-- messages_claim and the in-flight ones off messages_sending, instead of scanning every message
-- ever sent. A state changes to or from 'held' only on a pause or a resume, so the index follows
-- a campaign's pauses, not every send.
CREATE INDEX messages_held ON messages (campaign_id) WHERE state = 'held';
