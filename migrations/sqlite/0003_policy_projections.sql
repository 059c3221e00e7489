-- The policy projections (DOMAIN.md "The three computations"), maintained in the appending
-- transaction from the pure fold in ledger/src/projection and rebuildable from the log.
-- Lines are never updated: each carries the position of the event that made it, so a
-- statement as of a position is the lines up to it. *_totals / turnover_cells hold the state
-- after the last line. Money is BIGINT fen.

-- Enacted policy versions (version 1 of each policy is the shipped default, in code).
CREATE TABLE policy_versions (
    policy              TEXT NOT NULL,
    version             INTEGER NOT NULL,
    rate                TEXT NOT NULL,
    cap_fen             BIGINT NOT NULL,
    cap_period          TEXT NOT NULL,
    basis               TEXT NOT NULL,
    effective_from      TEXT NOT NULL,
    effective_until     TEXT,
    source              TEXT NOT NULL,
    created_position    BIGINT NOT NULL,
    PRIMARY KEY (policy, version)
);

CREATE TABLE subsidy_lines (
    position            BIGINT NOT NULL,
    seq                 INTEGER NOT NULL,
    line_kind           TEXT NOT NULL,
    achievement_id      TEXT NOT NULL,
    cap_period          INTEGER NOT NULL,
    contract_id         TEXT NOT NULL,
    payment_id          TEXT NOT NULL,
    reversal_id         TEXT,
    line_date           TEXT NOT NULL,
    line_year           INTEGER NOT NULL,
    received_fen        BIGINT NOT NULL,
    eligible_fen        BIGINT NOT NULL,
    subsidy_fen         BIGINT NOT NULL,
    policy_version      INTEGER,
    reasons             TEXT,
    eligible_total_fen  BIGINT NOT NULL,
    subsidy_total_fen   BIGINT NOT NULL,
    cap_reached         BOOLEAN NOT NULL,
    PRIMARY KEY (position, seq)
);
CREATE INDEX subsidy_lines_year ON subsidy_lines (line_year, position);
CREATE INDEX subsidy_lines_achievement ON subsidy_lines (achievement_id, position);

CREATE TABLE subsidy_completer_lines (
    position            BIGINT NOT NULL,
    seq                 INTEGER NOT NULL,
    ordinal             INTEGER NOT NULL,
    completer_name      TEXT NOT NULL,
    share_basis_points  INTEGER NOT NULL,
    subsidy_fen         BIGINT NOT NULL,
    subsidy_total_fen   BIGINT NOT NULL,
    PRIMARY KEY (position, seq, ordinal)
);
CREATE INDEX subsidy_completer_lines_name ON subsidy_completer_lines (completer_name);

CREATE TABLE subsidy_totals (
    achievement_id          TEXT NOT NULL,
    cap_period              INTEGER NOT NULL,
    eligible_received_fen   BIGINT NOT NULL,
    subsidy_fen             BIGINT NOT NULL,
    cap_fen                 BIGINT NOT NULL,
    cap_reached             BOOLEAN NOT NULL,
    updated_position        BIGINT NOT NULL,
    PRIMARY KEY (achievement_id, cap_period)
);

CREATE TABLE subsidy_completer_totals (
    achievement_id      TEXT NOT NULL,
    cap_period          INTEGER NOT NULL,
    ordinal             INTEGER NOT NULL,
    completer_name      TEXT NOT NULL,
    share_basis_points  INTEGER NOT NULL,
    subsidy_fen         BIGINT NOT NULL,
    PRIMARY KEY (achievement_id, cap_period, ordinal)
);

CREATE TABLE incentive_lines (
    position            BIGINT NOT NULL,
    seq                 INTEGER NOT NULL,
    line_kind           TEXT NOT NULL,
    center_id           TEXT NOT NULL,
    incentive_year      INTEGER NOT NULL,
    contract_id         TEXT NOT NULL,
    payment_id          TEXT NOT NULL,
    reversal_id         TEXT,
    line_date           TEXT NOT NULL,
    line_year           INTEGER NOT NULL,
    received_fen        BIGINT NOT NULL,
    operating_fen       BIGINT NOT NULL,
    incentive_fen       BIGINT NOT NULL,
    policy_version      INTEGER,
    reasons             TEXT,
    operating_total_fen BIGINT NOT NULL,
    incentive_total_fen BIGINT NOT NULL,
    cap_reached         BOOLEAN NOT NULL,
    PRIMARY KEY (position, seq)
);
CREATE INDEX incentive_lines_year ON incentive_lines (line_year, position);
CREATE INDEX incentive_lines_center ON incentive_lines (center_id, incentive_year);

CREATE TABLE incentive_totals (
    center_id               TEXT NOT NULL,
    incentive_year          INTEGER NOT NULL,
    operating_amount_fen    BIGINT NOT NULL,
    incentive_fen           BIGINT NOT NULL,
    cap_fen                 BIGINT NOT NULL,
    cap_reached             BOOLEAN NOT NULL,
    updated_position        BIGINT NOT NULL,
    PRIMARY KEY (center_id, incentive_year)
);

CREATE TABLE turnover_lines (
    position                    BIGINT NOT NULL,
    seq                         INTEGER NOT NULL,
    line_kind                   TEXT NOT NULL,
    contract_id                 TEXT NOT NULL,
    payment_id                  TEXT,
    line_date                   TEXT NOT NULL,
    line_year                   INTEGER NOT NULL,
    contracts                   INTEGER NOT NULL,
    contract_amount_fen         BIGINT NOT NULL,
    tech_transaction_amount_fen BIGINT NOT NULL,
    received_fen                BIGINT NOT NULL,
    contract_type               TEXT NOT NULL,
    seller_kind                 TEXT NOT NULL,
    field                       TEXT,
    district                    TEXT NOT NULL,
    PRIMARY KEY (position, seq)
);
CREATE INDEX turnover_lines_year ON turnover_lines (line_year, position);

CREATE TABLE turnover_cells (
    year                        INTEGER NOT NULL,
    dimension                   TEXT NOT NULL,
    cell_key                    TEXT NOT NULL,
    contracts                   BIGINT NOT NULL,
    contract_amount_fen         BIGINT NOT NULL,
    tech_transaction_amount_fen BIGINT NOT NULL,
    received_fen                BIGINT NOT NULL,
    updated_position            BIGINT NOT NULL,
    PRIMARY KEY (year, dimension, cell_key)
);
