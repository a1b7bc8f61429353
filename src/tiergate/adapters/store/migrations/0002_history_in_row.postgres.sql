-- A message's state history moves into its own row (one JSON line per change, appended by the
-- UPDATE that changes the state): a history row and its index entry per change cost more than
-- the change itself.
ALTER TABLE messages ADD COLUMN history TEXT NOT NULL DEFAULT '';
UPDATE messages AS m SET history = e.lines
FROM (SELECT message_id, string_agg(json_build_array(at, state, reason)::text || chr(10), '' ORDER BY at, id) AS lines
      FROM message_events GROUP BY message_id) AS e
WHERE e.message_id = m.id;
DROP TABLE message_events;
