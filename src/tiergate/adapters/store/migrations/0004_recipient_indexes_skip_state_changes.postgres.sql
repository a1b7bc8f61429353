-- On PostgreSQL a state change writes a new row version, and that version gets an entry in every
-- index whose predicate it matches: one plain (recipient) index cost two extra entries per message
-- (its admission and its outcome), about 3.5 us a row of each UPDATE. The two lookups by recipient
-- need only rows in given states, so each gets a partial index with exactly those states:
-- requeue_where(recipient=...) when a customer service window opens reads queued rows only;
-- marketing_sends_since reads marketing messages sent, or maybe sent, only.
-- (SQLite changes only the indexes whose columns an UPDATE sets: its plain index stays.)
DROP INDEX messages_recipient;
CREATE INDEX messages_recipient_queued ON messages (recipient) WHERE state = 'queued';
CREATE INDEX messages_marketing_recipient ON messages (recipient)
    WHERE category = 'MARKETING' AND state IN ('sent', 'delivered', 'read', 'unknown', 'sending');
