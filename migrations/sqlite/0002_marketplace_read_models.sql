-- Read models of the marketplace, maintained in the same transaction as the events that
-- change them (so they are never behind the log) and rebuildable from the log at any time
-- (`techmarket rebuild-projections`). Money columns are BIGINT fen and say so (`_fen`).
-- *_position columns name the event that created / last changed the row (provenance).

CREATE TABLE organisations (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    kind                TEXT NOT NULL,
    credit_code         TEXT NOT NULL,
    division_code       TEXT NOT NULL,
    registered_on       TEXT NOT NULL,
    created_position    BIGINT NOT NULL,
    updated_position    BIGINT NOT NULL
);
CREATE INDEX organisations_kind ON organisations (kind);

CREATE TABLE accreditations (
    id                  TEXT PRIMARY KEY,
    organisation_id     TEXT NOT NULL,
    kind                TEXT NOT NULL,
    effective_from      TEXT NOT NULL,
    effective_until     TEXT,
    document_number     TEXT NOT NULL,
    revoked_from        TEXT,
    revocation_reason   TEXT,
    created_position    BIGINT NOT NULL,
    updated_position    BIGINT NOT NULL
);
CREATE INDEX accreditations_organisation ON accreditations (organisation_id);

CREATE TABLE brokers (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    agency_id           TEXT,
    certificate_number  TEXT,
    created_position    BIGINT NOT NULL
);

CREATE TABLE achievements (
    id                  TEXT PRIMARY KEY,
    owner_id            TEXT NOT NULL,
    title               TEXT NOT NULL,
    field               TEXT NOT NULL,
    description         TEXT NOT NULL,
    patent_numbers      TEXT NOT NULL,
    maturity            INTEGER NOT NULL,
    asking_price_fen    BIGINT,
    transfer_modes      TEXT NOT NULL,
    status              TEXT NOT NULL,
    completers_locked   BOOLEAN NOT NULL,
    listed_on           TEXT NOT NULL,
    created_position    BIGINT NOT NULL,
    updated_position    BIGINT NOT NULL
);
CREATE INDEX achievements_owner ON achievements (owner_id);
CREATE INDEX achievements_field ON achievements (field);

CREATE TABLE achievement_completers (
    achievement_id      TEXT NOT NULL,
    ordinal             INTEGER NOT NULL,
    name                TEXT NOT NULL,
    share_basis_points  INTEGER NOT NULL,
    PRIMARY KEY (achievement_id, ordinal)
);

CREATE TABLE demands (
    id                  TEXT PRIMARY KEY,
    enterprise_id       TEXT NOT NULL,
    title               TEXT NOT NULL,
    field               TEXT NOT NULL,
    description         TEXT NOT NULL,
    budget_fen          BIGINT,
    deadline            TEXT,
    status              TEXT NOT NULL,
    posted_on           TEXT NOT NULL,
    created_position    BIGINT NOT NULL,
    updated_position    BIGINT NOT NULL
);
CREATE INDEX demands_enterprise ON demands (enterprise_id);
CREATE INDEX demands_field ON demands (field);

CREATE TABLE matches (
    id                  TEXT PRIMARY KEY,
    broker_id           TEXT NOT NULL,
    achievement_id      TEXT NOT NULL,
    demand_id           TEXT NOT NULL,
    note                TEXT NOT NULL,
    owner_answer        TEXT,
    enterprise_answer   TEXT,
    status              TEXT NOT NULL,
    proposed_on         TEXT NOT NULL,
    created_position    BIGINT NOT NULL,
    updated_position    BIGINT NOT NULL
);
CREATE INDEX matches_broker ON matches (broker_id);
CREATE INDEX matches_achievement ON matches (achievement_id);
CREATE INDEX matches_demand ON matches (demand_id);

CREATE TABLE contracts (
    id                                      TEXT PRIMARY KEY,
    contract_number                         TEXT NOT NULL,
    contract_type                           TEXT NOT NULL,
    title                                   TEXT NOT NULL,
    seller_id                               TEXT NOT NULL,
    buyer_id                                TEXT NOT NULL,
    achievement_id                          TEXT,
    match_id                                TEXT,
    broker_id                               TEXT,
    operating_center_id                     TEXT,
    contract_amount_fen                     BIGINT NOT NULL,
    tech_transaction_amount_fen             BIGINT NOT NULL,
    signed_on                               TEXT NOT NULL,
    status                                  TEXT NOT NULL,
    registration_number                     TEXT,
    registered_on                           TEXT,
    certified_tech_transaction_amount_fen   BIGINT,
    terminated_on                           TEXT,
    settled_fen                             BIGINT NOT NULL,
    reversed_fen                            BIGINT NOT NULL,
    created_position                        BIGINT NOT NULL,
    updated_position                        BIGINT NOT NULL
);
CREATE INDEX contracts_seller ON contracts (seller_id);
CREATE INDEX contracts_buyer ON contracts (buyer_id);
CREATE INDEX contracts_achievement ON contracts (achievement_id);
CREATE INDEX contracts_signed_on ON contracts (signed_on);
CREATE INDEX contracts_registered_on ON contracts (registered_on);

CREATE TABLE payments (
    id                  TEXT PRIMARY KEY,
    contract_id         TEXT NOT NULL,
    amount_fen          BIGINT NOT NULL,
    settled_at          TEXT NOT NULL,
    settlement_date     TEXT NOT NULL,
    bank_reference      TEXT NOT NULL,
    reversed_fen        BIGINT NOT NULL,
    created_position    BIGINT NOT NULL,
    updated_position    BIGINT NOT NULL
);
CREATE INDEX payments_contract ON payments (contract_id);
CREATE INDEX payments_settlement_date ON payments (settlement_date);

CREATE TABLE payment_reversals (
    id                  TEXT PRIMARY KEY,
    payment_id          TEXT NOT NULL,
    contract_id         TEXT NOT NULL,
    amount_fen          BIGINT NOT NULL,
    reversed_at         TEXT NOT NULL,
    reversal_date       TEXT NOT NULL,
    reason              TEXT NOT NULL,
    created_position    BIGINT NOT NULL
);
CREATE INDEX payment_reversals_payment ON payment_reversals (payment_id);
CREATE INDEX payment_reversals_contract ON payment_reversals (contract_id);

-- How far each projection has applied the log (equal to the head after every commit,
-- because projections are updated in the appending transaction).
CREATE TABLE projection_positions (
    projection          TEXT PRIMARY KEY,
    position            BIGINT NOT NULL
);
