//! What the benchmark's append phases wrote: each table's rows before and after them, and
//! how many B-trees an inserted row of each table adds an entry to (the table's own and one
//! per index), read from the database's catalog. With the ceiling's rows (row 1), whose table
//! has entries of its own, this gives the bound that the work of an append puts on appends at
//! the ceiling's rate, measured in the same run.

use std::collections::BTreeMap;
use std::str::FromStr;

use sqlx::Connection as _;

/// Each table's rows, and the B-tree entries an inserted row adds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Tables(BTreeMap<String, (i64, u32)>);

/// One table's part of what a phase wrote.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct TableWritten {
    pub table: String,
    pub rows: i64,
    pub entries_per_row: u32,
}

/// The rows a run of appends added, per table (tables that did not grow are left out; rows
/// updated in place are not counted).
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Written {
    pub events: i64,
    pub tables: Vec<TableWritten>,
}

/// How many indexes a table (bound as `$1`) has, on SQLite and on PostgreSQL.
pub(super) const SQLITE_INDEXES: &str = "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = $1";
pub(super) const POSTGRES_INDEXES: &str = "SELECT COUNT(*) FROM pg_index WHERE indrelid = CAST($1 AS regclass)";

/// The B-tree entries an inserted row of a table with `indexes` indexes adds: the table's own
/// and one per index.
pub(super) fn entries_per_row(indexes: i64) -> u32 {
    1 + indexes as u32
}

impl Tables {
    /// Reads every table of the database at `url` (SQLite or PostgreSQL), on a connection of
    /// its own.
    pub(super) async fn read(url: &str) -> anyhow::Result<Tables> {
        // The tables, then each one's indexes and rows, on one connection.
        macro_rules! read_on {
            ($conn:expr, $tables:expr, $indexes:expr) => {{
                let mut c = $conn;
                let tables: Vec<String> = sqlx::query_scalar($tables).fetch_all(&mut c).await?;
                let mut out = BTreeMap::new();
                for table in tables {
                    let indexes: i64 = sqlx::query_scalar($indexes).bind(&table).fetch_one(&mut c).await?;
                    let rows: i64 =
                        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM \"{table}\"")))
                            .fetch_one(&mut c)
                            .await?;
                    out.insert(table, (rows, entries_per_row(indexes)));
                }
                Ok(Tables(out))
            }};
        }
        if url.starts_with("sqlite:") {
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?;
            read_on!(
                sqlx::SqliteConnection::connect_with(&options).await?,
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
                SQLITE_INDEXES
            )
        } else {
            read_on!(
                sqlx::PgConnection::connect(url).await?,
                "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = current_schema() AND c.relkind = 'r'",
                POSTGRES_INDEXES
            )
        }
    }

    /// What was added between `self` and `after`, for `events` appended meanwhile.
    pub(super) fn written_until(&self, after: &Tables, events: i64) -> Written {
        let mut tables: Vec<TableWritten> = after
            .0
            .iter()
            .filter_map(|(table, &(rows, entries_per_row))| {
                let before = self.0.get(table).map_or(0, |&(rows, _)| rows);
                (rows > before).then(|| TableWritten { table: table.clone(), rows: rows - before, entries_per_row })
            })
            .collect();
        tables.sort_by(|a, b| b.rows.cmp(&a.rows).then_with(|| a.table.cmp(&b.table)));
        Written { events, tables }
    }
}

impl Written {
    /// Rows inserted per appended event.
    pub(super) fn rows_per_event(&self) -> f64 {
        self.tables.iter().map(|t| t.rows).sum::<i64>() as f64 / self.events.max(1) as f64
    }

    /// B-tree entries those rows added, per appended event.
    pub(super) fn entries_per_event(&self) -> f64 {
        self.tables.iter().map(|t| t.rows * i64::from(t.entries_per_row)).sum::<i64>() as f64
            / self.events.max(1) as f64
    }

    /// Events a second that inserting the same entries allows at `ceiling_rate` rows a second
    /// of `ceiling_entries` entries each: an upper bound on appends of this kind, since it
    /// leaves out the rows updated in place and every other part of a command.
    pub(super) fn bound(&self, ceiling_rate: f64, ceiling_entries: u32) -> f64 {
        ceiling_rate * f64::from(ceiling_entries) / self.entries_per_event()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(rows: &[(&str, i64, u32)]) -> Tables {
        Tables(rows.iter().map(|&(t, n, e)| (t.to_owned(), (n, e))).collect())
    }

    #[test]
    fn what_the_appends_wrote_is_each_grown_tables_rows_and_their_entries_per_event() {
        let before = tables(&[("events", 100, 3), ("payments", 50, 4), ("lines", 10, 4), ("totals", 5, 2)]);
        let after = tables(&[("events", 120, 3), ("payments", 70, 4), ("lines", 15, 4), ("totals", 5, 2)]);
        let written = before.written_until(&after, 20);
        assert_eq!(
            written.tables,
            vec![
                TableWritten { table: "events".into(), rows: 20, entries_per_row: 3 },
                TableWritten { table: "payments".into(), rows: 20, entries_per_row: 4 },
                TableWritten { table: "lines".into(), rows: 5, entries_per_row: 4 },
            ]
        );
        assert_eq!(written.rows_per_event(), 2.25);
        // (20 * 3 + 20 * 4 + 5 * 4) / 20 entries per event.
        assert_eq!(written.entries_per_event(), 8.0);
        // 1,000 rows/s of 2 entries: 2,000 entries/s, a quarter of an event's 8 per event.
        assert_eq!(written.bound(1_000.0, 2), 250.0);
    }

    #[test]
    fn a_table_created_meanwhile_counts_all_its_rows() {
        let written = tables(&[("events", 1, 2)]).written_until(&tables(&[("events", 3, 2), ("new", 4, 1)]), 2);
        assert_eq!(
            written.tables.iter().map(|t| (t.table.as_str(), t.rows)).collect::<Vec<_>>(),
            [("new", 4), ("events", 2)]
        );
    }
}
