-- Statements "as of a time" look up the last position recorded by then
-- (SELECT MAX(position) FROM events WHERE recorded_at <= $1): without this index that
-- scans the whole log.
CREATE INDEX events_recorded_at ON events (recorded_at, position);
