-- Distinct recipients of counted sends over a span (the policy's 7-day history, forecasts, the
-- simulator's daily figures) read straight off the index, without a table lookup per send.
DROP INDEX messages_counted;
CREATE INDEX messages_counted ON messages (scope_id, sent_at, recipient) WHERE counted = TRUE AND sent_at IS NOT NULL;
