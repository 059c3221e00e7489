-- An export looks up, for each of a year's lines, its achievement's title and its contract's
-- number. Through the primary key's index each lookup reads the table's row as well; these
-- covering indexes answer it alone (the year's lines of the benchmark's data read in 0.30 s
-- instead of 0.52 s). The export names them with INDEXED BY: without planner statistics
-- SQLite would keep to the primary key.
CREATE INDEX achievements_id_title ON achievements (id, title);
CREATE INDEX contracts_id_number ON contracts (id, contract_number);
