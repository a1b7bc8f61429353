-- Message retention (TIERGATE_MESSAGE_RETENTION_DAYS): a finished campaign's figures are kept here
-- before its messages are deleted, so its totals and its day-by-day sends read the same afterwards.
CREATE TABLE campaign_archives (
    campaign_id TEXT PRIMARY KEY,
    archived_at REAL NOT NULL,
    counts      TEXT NOT NULL,               -- {"state": messages, ...}
    sent_by_day TEXT NOT NULL,               -- [sent on day 1, day 2, ...] as the days view counts them
    pruned      INTEGER NOT NULL DEFAULT 0   -- every message of the campaign deleted
);
