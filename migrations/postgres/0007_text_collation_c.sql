-- Every text column compares and sorts by its bytes (collation "C"), as SQLite's BINARY does.
--
-- Why: the keys are ids, codes and claims, compared in every index. Under the database's
-- default collation (C.UTF-8 or a locale on most servers; PostgreSQL 15 treats only "C" and
-- "POSIX" as byte order) each comparison goes through strcoll(), and sorts cannot use
-- abbreviated keys. In a rebuild of the benchmark's default year the server's statements took
-- 12.6 s instead of 14.3 s with it. Under C.UTF-8 the order is the same (code points, which
-- UTF-8 bytes follow); under another locale it now matches SQLite's.
--
-- Changing a column's collation rewrites its indexes, not its table. (No migration on SQLite:
-- its text columns already compare as bytes.)
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT c.table_name,
               string_agg(format('ALTER COLUMN %I TYPE TEXT COLLATE "C"', c.column_name), ', '
                          ORDER BY c.ordinal_position) AS clauses
        FROM information_schema.columns c
        JOIN information_schema.tables tb
          ON tb.table_schema = c.table_schema AND tb.table_name = c.table_name
         AND tb.table_type = 'BASE TABLE'
        WHERE c.table_schema = current_schema() AND c.data_type = 'text'
          AND c.table_name <> '_sqlx_migrations'
        GROUP BY c.table_name
        ORDER BY c.table_name
    LOOP
        EXECUTE format('ALTER TABLE %I %s', t.table_name, t.clauses);
    END LOOP;
END
$$;
