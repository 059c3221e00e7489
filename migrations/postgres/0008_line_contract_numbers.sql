-- Each subsidy and incentive line carries its contract's number (合同编号). The number is fixed
-- when the contract is signed (no event changes it), so the copy cannot go stale; an export then
-- prints it without looking the contract up for each line (about half of an export's lookups:
-- BENCHMARKS.md, twenty-fifth stop). The fold puts it in each line it makes.
--
-- The lines already written take it from their contract. Every line's contract is in
-- `contracts` (a line is made from a payment on a signed contract); a line without one is an
-- inconsistency, and SET NOT NULL stops the migration on it rather than leave a blank.
ALTER TABLE subsidy_lines ADD COLUMN contract_number TEXT COLLATE "C";
UPDATE subsidy_lines l SET contract_number = k.contract_number FROM contracts k WHERE k.id = l.contract_id;
ALTER TABLE subsidy_lines ALTER COLUMN contract_number SET NOT NULL;

ALTER TABLE incentive_lines ADD COLUMN contract_number TEXT COLLATE "C";
UPDATE incentive_lines l SET contract_number = k.contract_number FROM contracts k WHERE k.id = l.contract_id;
ALTER TABLE incentive_lines ALTER COLUMN contract_number SET NOT NULL;
