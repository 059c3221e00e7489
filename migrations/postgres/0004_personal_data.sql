-- Personal data (completers' resident ID numbers), never in the event log in clear.
-- Events and read models hold a reference, the masked number and a keyed fingerprint;
-- the number itself is sealed here (ChaCha20-Poly1305, key from configuration), written in
-- the transaction of the event that introduced it. This table is not a projection: a rebuild
-- leaves it alone. Deleting a row erases a number without touching the hash chain.
CREATE TABLE personal_data (
    reference           TEXT PRIMARY KEY,
    key_id              TEXT NOT NULL,
    nonce               BYTEA NOT NULL,
    ciphertext          BYTEA NOT NULL,
    created_position    BIGINT NOT NULL
);

ALTER TABLE achievement_completers ADD COLUMN id_number_masked TEXT;
ALTER TABLE achievement_completers ADD COLUMN id_reference TEXT;
ALTER TABLE achievement_completers ADD COLUMN id_fingerprint TEXT;
CREATE INDEX achievement_completers_fingerprint ON achievement_completers (id_fingerprint);
