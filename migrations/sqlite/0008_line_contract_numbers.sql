-- Each subsidy and incentive line carries its contract's number (合同编号). The number is fixed
-- when the contract is signed (no event changes it), so the copy cannot go stale; an export then
-- prints it without looking the contract up for each line (about half of an export's lookups:
-- BENCHMARKS.md, twenty-fifth stop). The fold puts it in each line it makes.
--
-- The lines already written take it from their contract. Every line's contract is in
-- `contracts` (a line is made from a payment on a signed contract); a line without one is an
-- inconsistency, and the NOT NULL check stops the migration on it rather than leave a blank.
-- (SQLite adds a NOT NULL column only with a default; the writers always give the number.)
ALTER TABLE subsidy_lines ADD COLUMN contract_number TEXT NOT NULL DEFAULT '';
UPDATE subsidy_lines SET contract_number = (SELECT k.contract_number FROM contracts k WHERE k.id = subsidy_lines.contract_id);

ALTER TABLE incentive_lines ADD COLUMN contract_number TEXT NOT NULL DEFAULT '';
UPDATE incentive_lines SET contract_number = (SELECT k.contract_number FROM contracts k WHERE k.id = incentive_lines.contract_id);

-- Migration 0006's covering index of contracts served only those lookups.
DROP INDEX contracts_id_number;
