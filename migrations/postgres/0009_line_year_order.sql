-- A year's lines are read in pages of (position, seq) order (`ledger::store::stream`). The index
-- `(line_year, position)` gave the positions in order but not the seqs within a position, so each
-- page was sorted after it was read. Without planner statistics (a database no `ANALYZE` has run
-- on) PostgreSQL then read and sorted every line from the page's start to the end of the range
-- for each page, an export's cost growing with the square of its pages; on SQLite the page
-- starts were sorted too. With `seq` in the index a page is its first rows, in order, whatever
-- the planner knows (BENCHMARKS.md, twenty-fifth stop).
DROP INDEX subsidy_lines_year;
CREATE INDEX subsidy_lines_year ON subsidy_lines (line_year, position, seq);

DROP INDEX incentive_lines_year;
CREATE INDEX incentive_lines_year ON incentive_lines (line_year, position, seq);
