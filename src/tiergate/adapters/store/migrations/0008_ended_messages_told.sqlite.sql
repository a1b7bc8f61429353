-- A message tiergate ends itself (expired in its queue, refused by policy at dispatch, failed before
-- the platform took it) gets no status webhook from Meta, so an app that hands tiergate its sends
-- would never hear of it. Such messages are told to the tenant's app as a 'failed' status of
-- tiergate's own (service/forwarding.py): `told` marks the ones done, in the transaction that
-- writes the forward, and this index holds exactly the ones still to tell (a few, briefly: state
-- changes of ordinary sends never touch it). What ended before this migration is not told.
ALTER TABLE messages ADD COLUMN told INTEGER NOT NULL DEFAULT 0;
UPDATE messages SET told = TRUE WHERE state IN ('failed', 'expired', 'rejected') AND wamid IS NULL;
CREATE INDEX messages_untold ON messages (updated_at)
    WHERE state IN ('failed', 'expired', 'rejected') AND wamid IS NULL AND told = FALSE;
