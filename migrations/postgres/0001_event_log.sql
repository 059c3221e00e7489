-- The append-only event log: the single source of truth. Everything else is a projection.
--
-- position:        global, gap-free, assigned in commit order by the appender under an
--                  advisory lock (a sequence would leave gaps and commit out of order).
-- stream_version:  1, 2, 3 ... per stream; (stream_id, stream_version) is unique, which is
--                  also the optimistic-concurrency backstop.
-- payload/metadata: canonical JSON text (sorted keys), exactly the bytes that were hashed;
--                  TEXT rather than JSONB because JSONB would re-serialise them.
-- hash:            SHA-256 over the previous event's hash and this event's canonical bytes.
CREATE TABLE events (
    position        BIGINT      PRIMARY KEY CHECK (position > 0),
    stream_id       TEXT        NOT NULL,
    stream_version  BIGINT      NOT NULL CHECK (stream_version > 0),
    event_type      TEXT        NOT NULL,
    schema_version  INTEGER     NOT NULL CHECK (schema_version > 0),
    payload         TEXT        NOT NULL,
    metadata        TEXT        NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL,
    hash            BYTEA       NOT NULL CHECK (octet_length(hash) = 32),
    CONSTRAINT events_stream_version_unique UNIQUE (stream_id, stream_version)
);

-- Immutability at the database level: corrections are new events, never edits.
CREATE FUNCTION events_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only: % on events is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TRIGGER events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_are_append_only();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_are_append_only();

-- Idempotency: a repeated key returns the first receipt and appends nothing.
-- scope is the caller (token subject), so two users' keys never collide.
CREATE TABLE idempotency_keys (
    scope           TEXT        NOT NULL,
    key             TEXT        NOT NULL,
    request_hash    TEXT        NOT NULL,
    receipt         TEXT        NOT NULL,
    position        BIGINT      NOT NULL,
    PRIMARY KEY (scope, key)
);

-- Cross-stream uniqueness (credit codes, contract numbers per seller, registration numbers),
-- claimed in the same transaction as the event that introduces the value.
CREATE TABLE unique_claims (
    claim           TEXT        PRIMARY KEY,
    owner_stream    TEXT        NOT NULL,
    position        BIGINT      NOT NULL
);
