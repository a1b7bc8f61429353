-- A message's state history moves into its own row (one JSON line per change, appended by the
-- UPDATE that changes the state): a history row and its index entry per change cost more than
-- the change itself.
ALTER TABLE messages ADD COLUMN history TEXT NOT NULL DEFAULT '';
UPDATE messages SET history = COALESCE((
    SELECT group_concat(line, '') FROM (
        SELECT json_array(e.at, e.state, e.reason) || char(10) AS line FROM message_events AS e
        WHERE e.message_id = messages.id ORDER BY e.at, e.id)), '')
WHERE id IN (SELECT message_id FROM message_events);
DROP TABLE message_events;
