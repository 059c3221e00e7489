-- The append-only event log: the single source of truth. Everything else is a projection.
-- See migrations/postgres/0001_event_log.sql for the meaning of each column; the two sets
-- keep the same names.
CREATE TABLE events (
    position        INTEGER     PRIMARY KEY CHECK (position > 0),
    stream_id       TEXT        NOT NULL,
    stream_version  INTEGER     NOT NULL CHECK (stream_version > 0),
    event_type      TEXT        NOT NULL,
    schema_version  INTEGER     NOT NULL CHECK (schema_version > 0),
    payload         TEXT        NOT NULL,
    metadata        TEXT        NOT NULL,
    recorded_at     TEXT        NOT NULL,
    hash            BLOB        NOT NULL CHECK (length(hash) = 32),
    UNIQUE (stream_id, stream_version)
);

-- Immutability at the database level: corrections are new events, never edits.
CREATE TRIGGER events_no_update
    BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event log is append-only: UPDATE on events is not allowed');
END;

CREATE TRIGGER events_no_delete
    BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event log is append-only: DELETE on events is not allowed');
END;

CREATE TABLE idempotency_keys (
    scope           TEXT        NOT NULL,
    key             TEXT        NOT NULL,
    request_hash    TEXT        NOT NULL,
    receipt         TEXT        NOT NULL,
    position        INTEGER     NOT NULL,
    PRIMARY KEY (scope, key)
);

CREATE TABLE unique_claims (
    claim           TEXT        PRIMARY KEY,
    owner_stream    TEXT        NOT NULL,
    position        INTEGER     NOT NULL
);
