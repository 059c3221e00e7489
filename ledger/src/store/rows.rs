//! Multi-row INSERTs for the append path: a batch's rows of one table are collected while
//! the batch is decided and written with a few statements at its end, instead of one round
//! trip per row.
//!
//! SQLite gets `?` placeholders (numbered `$n` ones make its binding quadratic in the number
//! of parameters); PostgreSQL gets `$n`. Statements stay under both engines' parameter limits.
//!
//! Rows go to a [`Sink`]: an append's transaction ([`Tx`], through sqlx), or the connection
//! of our own that rebuilds the read models of a SQLite file ([`SqliteSink`]), which prepares
//! one single-row statement per write and runs it for every row. A rebuild on PostgreSQL
//! sends the rows of plain INSERTs with `COPY` instead (`copy_in`).

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, Utc};

use super::{StoreError, Tx, with_conn};

/// Most parameters in one statement (SQLite allows 32,766; PostgreSQL 65,535).
const PARAMETERS_MAX: usize = 30_000;
/// Statements of at most this many rows are kept prepared on their connection; longer ones
/// are parsed and planned each time. The text changes with the row count, so keeping every
/// one would fill the connection's statement cache (100 statements) with texts used once.
/// A lone command writes one to six rows per table; planning alone took PostgreSQL 0.03-0.1 ms
/// for each of its seven or so statements (warm, `EXPLAIN (ANALYZE, SUMMARY)`).
pub(super) const PREPARED_ROWS_MAX: usize = 8;

/// A value to bind, whatever its SQL type.
#[derive(Debug, Clone)]
pub(super) enum Value {
    Int(Option<i64>),
    Int32(Option<i32>),
    Text(Option<String>),
    Bool(bool),
    Date(Option<NaiveDate>),
    Time(DateTime<Utc>),
    Bytes(Vec<u8>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(Some(v))
    }
}
impl From<Option<i64>> for Value {
    fn from(v: Option<i64>) -> Value {
        Value::Int(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Value {
        Value::Int32(Some(v))
    }
}
impl From<Option<i32>> for Value {
    fn from(v: Option<i32>) -> Value {
        Value::Int32(v)
    }
}
impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(Some(v))
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(Some(v.to_owned()))
    }
}
impl From<Option<String>> for Value {
    fn from(v: Option<String>) -> Value {
        Value::Text(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}
impl From<NaiveDate> for Value {
    fn from(v: NaiveDate) -> Value {
        Value::Date(Some(v))
    }
}
impl From<Option<NaiveDate>> for Value {
    fn from(v: Option<NaiveDate>) -> Value {
        Value::Date(v)
    }
}
impl From<DateTime<Utc>> for Value {
    fn from(v: DateTime<Utc>) -> Value {
        Value::Time(v)
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Value {
        Value::Bytes(v)
    }
}

/// The rows of one statement with a VALUES list (an INSERT, or an UPDATE or DELETE that
/// joins one), collected until [`Rows::write`].
pub(super) struct Rows {
    /// `INSERT INTO t (a, b, c) VALUES`
    head: Cow<'static, str>,
    columns: usize,
    /// What follows the VALUES list (`ON CONFLICT ...`), or "".
    tail: Cow<'static, str>,
    /// Another head and tail around the list on PostgreSQL, where the statement differs.
    postgres: Option<(&'static str, &'static str)>,
    values: Vec<Value>,
}

impl Rows {
    pub(super) fn new(head: impl Into<Cow<'static, str>>, columns: usize, tail: impl Into<Cow<'static, str>>) -> Rows {
        Rows { head: head.into(), columns, tail: tail.into(), postgres: None, values: Vec::new() }
    }

    /// On PostgreSQL, `head` and `tail` go around the list of rows instead.
    pub(super) fn on_postgres(mut self, head: &'static str, tail: &'static str) -> Rows {
        self.postgres = Some((head, tail));
        self
    }

    /// Rows collected and not yet written.
    pub(super) fn len(&self) -> usize {
        self.values.len() / self.columns
    }

    /// The text before and after the list of rows on PostgreSQL.
    pub(super) fn postgres_statement(&self) -> (&str, &str) {
        self.postgres.unwrap_or((&self.head, &self.tail))
    }

    pub(super) fn columns(&self) -> usize {
        self.columns
    }

    /// The values collected, row after row.
    pub(super) fn values(&self) -> &[Value] {
        &self.values
    }

    /// Forgets the rows collected (they were written another way).
    pub(super) fn clear(&mut self) {
        self.values.clear();
    }

    pub(super) fn push(&mut self, row: Vec<Value>) {
        assert_eq!(row.len(), self.columns, "{}: a row of {} values", self.head, row.len());
        self.values.extend(row);
    }

    /// Writes the rows collected so far, which must affect what `expect` says, and forgets
    /// them.
    pub(super) async fn write(&mut self, sink: &mut impl Sink, expect: Expect) -> Result<(), StoreError> {
        if self.values.is_empty() {
            return expect.check(0);
        }
        sink.write_rows(self, expect).await
    }

    /// The rows collected, one `Vec` each, taken out: `self` keeps its statement.
    pub(super) fn take_rows(&mut self) -> Vec<Vec<Value>> {
        let values = std::mem::take(&mut self.values);
        let mut rows = Vec::with_capacity(values.len() / self.columns);
        let mut values = values.into_iter();
        while values.len() > 0 {
            rows.push(values.by_ref().take(self.columns).collect());
        }
        rows
    }

    /// The rows collected, taken out: `self` keeps its statement and no rows.
    pub(super) fn take(&mut self) -> Rows {
        Rows {
            head: self.head.clone(),
            columns: self.columns,
            tail: self.tail.clone(),
            postgres: self.postgres,
            values: std::mem::take(&mut self.values),
        }
    }
}

/// How many rows a write must affect. The sink checks it where the statements run, which for
/// a rebuild on PostgreSQL is a task of its own that writes while the replay goes on (see
/// `rebuild`): so the count is a demand handed over with the rows, not a value handed back.
#[derive(Debug, Clone)]
pub(super) enum Expect {
    /// Any number: upserts, deletes of what may be absent, lines.
    Any,
    /// Exactly this many, or this code is wrong (an INSERT without `ON CONFLICT` adds every
    /// row or fails): a bug to stop on.
    Exactly(u64, &'static str),
    /// Exactly this many changed, or the log is not consistent with itself (`what` names the
    /// change): an error the rebuild or the append reports.
    Changed(u64, String),
}

impl Expect {
    /// `affected` rows against the demand.
    pub(super) fn check(self, affected: u64) -> Result<(), StoreError> {
        match self {
            Expect::Any => Ok(()),
            Expect::Exactly(expected, why) => {
                assert_eq!(affected, expected, "{why}");
                Ok(())
            }
            Expect::Changed(expected, _) if affected == expected => Ok(()),
            Expect::Changed(expected, what) => {
                Err(StoreError::Inconsistent(format!("{what} changed {affected} rows instead of {expected}")))
            }
        }
    }
}

/// Where [`Rows`] are written.
pub(super) trait Sink {
    /// Writes `rows`, which must affect what `expect` says, and forgets them.
    async fn write_rows(&mut self, rows: &mut Rows, expect: Expect) -> Result<(), StoreError>;
}

impl Sink for Tx {
    /// A few multi-row statements.
    async fn write_rows(&mut self, rows: &mut Rows, expect: Expect) -> Result<(), StoreError> {
        expect.check(rows.write_statements(self).await?)
    }
}

/// A SQLite connection of our own (rusqlite on the libsqlite3 that sqlx links), inside a write
/// transaction it began: the rebuild of a SQLite file writes through it.
///
/// Why not the rebuild's sqlx transaction: a profile of the rebuild (`perf`, the benchmark's
/// default data) spent about a quarter of its samples around the multi-row statements
/// rather than in them: parsing each new statement text, the statement journal that SQLite
/// keeps for every multi-row statement inside a transaction (written to a temporary file),
/// sqlx's copy of every value and its hand-off of each statement to its worker thread. One
/// prepared single-row statement run for each row needs none of them.
pub(super) struct SqliteSink {
    pub(super) connection: rusqlite::Connection,
}

impl Sink for SqliteSink {
    async fn write_rows(&mut self, rows: &mut Rows, expect: Expect) -> Result<(), StoreError> {
        let sql = rows.sql(1, false);
        let values = std::mem::take(&mut rows.values);
        let columns = rows.columns;
        let connection = &self.connection;
        blocking(|| {
            let mut statement = connection.prepare(&sql).map_err(StoreError::SqliteWrite)?;
            let mut affected = 0u64;
            for row in values.chunks_exact(columns) {
                for (i, value) in row.iter().enumerate() {
                    bind(&mut statement, i + 1, value).map_err(StoreError::SqliteWrite)?;
                }
                affected += statement.raw_execute().map_err(StoreError::SqliteWrite)? as u64;
            }
            Ok(affected)
        })
        .and_then(|affected| expect.check(affected))
    }
}

impl Rows {
    /// The rows in a few multi-row statements, through sqlx.
    async fn write_statements(&mut self, tx: &mut Tx) -> Result<u64, StoreError> {
        let postgres = matches!(tx, Tx::Postgres(_));
        let rows_per_statement = (PARAMETERS_MAX / self.columns).max(1);
        let values = std::mem::take(&mut self.values);
        let mut values = values.into_iter();
        let mut left = values.len() / self.columns;
        let mut affected = 0;
        while left > 0 {
            let rows = left.min(rows_per_statement);
            left -= rows;
            let sql = self.sql(rows, postgres);
            let chunk: Vec<Value> = values.by_ref().take(rows * self.columns).collect();
            affected += with_conn!(tx, |c| {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(rows <= PREPARED_ROWS_MAX);
                for v in chunk {
                    query = match v {
                        Value::Int(v) => query.bind(v),
                        Value::Int32(v) => query.bind(v),
                        Value::Text(v) => query.bind(v),
                        Value::Bool(v) => query.bind(v),
                        Value::Date(v) => query.bind(v),
                        Value::Time(v) => query.bind(v),
                        Value::Bytes(v) => query.bind(v),
                    };
                }
                query.execute(&mut *c).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(affected)
    }

    /// The statement for `rows` rows, on PostgreSQL (`$n` placeholders) or SQLite (`?`).
    fn sql(&self, rows: usize, postgres: bool) -> String {
        let (head, tail) = match self.postgres {
            Some((head, tail)) if postgres => (head, tail),
            _ => (&*self.head, &*self.tail),
        };
        let mut sql = format!("{head} {}", values_list(rows, self.columns, postgres));
        if !tail.is_empty() {
            sql.push(' ');
            sql.push_str(tail);
        }
        sql
    }
}

/// Binds `value` as sqlx does on SQLite, so a row reads back the same whichever path wrote
/// it: integers and booleans as integers, dates as `%F` text, instants as RFC 3339 text
/// (`to_rfc3339_opts(AutoSi, false)`: `+00:00`, only the fraction digits needed), bytes as a
/// blob. A test below holds both paths to the same stored values.
fn bind(statement: &mut rusqlite::Statement<'_>, index: usize, value: &Value) -> rusqlite::Result<()> {
    match value {
        Value::Int(v) => statement.raw_bind_parameter(index, v),
        Value::Int32(v) => statement.raw_bind_parameter(index, v),
        Value::Text(v) => statement.raw_bind_parameter(index, v.as_deref()),
        Value::Bool(v) => statement.raw_bind_parameter(index, v),
        Value::Date(v) => statement.raw_bind_parameter(index, v.map(|d| d.format("%F").to_string())),
        Value::Time(v) => statement.raw_bind_parameter(index, v.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false)),
        Value::Bytes(v) => statement.raw_bind_parameter(index, v.as_slice()),
    }
}

/// Runs SQLite's work on this thread, first moving the runtime's other tasks off it where the
/// runtime allows it (a multi-threaded one); on a current-thread runtime it just runs.
pub(super) fn blocking<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(runtime) if runtime.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// `($1, $2), ($3, $4)` (PostgreSQL) or `(?, ?), (?, ?)` (SQLite): `rows` tuples of
/// `columns` parameters, for a VALUES list.
pub(super) fn values_list(rows: usize, columns: usize, numbered: bool) -> String {
    let mut sql = String::with_capacity(rows * columns * 5);
    let mut n = 0;
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..columns {
            if c > 0 {
                sql.push_str(", ");
            }
            n += 1;
            if numbered {
                sql.push('$');
                sql.push_str(&n.to_string());
            } else {
                sql.push('?');
            }
        }
        sql.push(')');
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One row of every kind of value, `key` first.
    fn every_kind(key: i64) -> Vec<Value> {
        let date = NaiveDate::from_ymd_opt(2024, 2, 29).expect("a date");
        let at = |nanos| date.and_hms_nano_opt(23, 59, 58, nanos).expect("a time").and_utc();
        vec![
            key.into(),
            Value::Int(None),
            Value::Int32(Some(-7)),
            Value::Int32(None),
            "完成人 ✓ 'quoted'".into(),
            Value::Text(None),
            true.into(),
            false.into(),
            date.into(),
            Value::Date(None),
            at(0).into(),
            at(120_000_000).into(),
            at(123_456_789).into(),
            vec![0u8, 1, 255].into(),
        ]
    }

    #[tokio::test]
    async fn a_sqlite_rebuild_connection_stores_every_value_as_the_append_path_does() {
        let dir = std::env::temp_dir().join(format!("techmarket-rows-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        let file = dir.join("rows.db");
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&file).create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.expect("open the file");
        let columns: Vec<String> = (0..14).map(|i| format!("c{i}")).collect();
        // No declared types, so SQLite converts nothing on the way in.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE TABLE t ({})", columns.join(", "))))
            .execute(&pool)
            .await
            .expect("a table");
        let insert = format!("INSERT INTO t ({}) VALUES", columns.join(", "));

        // The append path: sqlx, in a transaction of the store's kind.
        let turn = std::sync::Arc::new(tokio::sync::Mutex::new(())).lock_owned().await;
        let writer = super::super::SqliteWriter { _turn: turn, checkpointer: None };
        let mut tx = Tx::Sqlite(pool.begin().await.expect("begin"), writer);
        let mut rows = Rows::new(insert.clone(), 14, "");
        rows.push(every_kind(1));
        rows.write(&mut tx, Expect::Exactly(1, "one row through sqlx")).await.expect("written through sqlx");
        tx.commit().await.expect("commit");

        // The rebuild's own connection.
        let mut sink = SqliteSink { connection: rusqlite::Connection::open(&file).expect("open again") };
        let mut rows = Rows::new(insert, 14, "");
        rows.push(every_kind(2));
        rows.push(every_kind(3));
        rows.write(&mut sink, Expect::Exactly(2, "two rows through rusqlite")).await.expect("written through rusqlite");
        assert_eq!(rows.len(), 0, "written rows are forgotten");

        // The type and the stored value of every column, as SQLite sees them.
        let shown = columns[1..].iter().map(|c| format!("typeof({c}) || ':' || quote({c})")).collect::<Vec<_>>();
        let sql = format!("SELECT c0, {} FROM t ORDER BY c0", shown.join(" || ' | ' || "));
        let stored: Vec<(i64, String)> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&pool).await.expect("read back");
        assert_eq!(stored.iter().map(|(key, _)| *key).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(stored[1].1, stored[0].1, "the same row through both paths");
        assert_eq!(stored[2].1, stored[0].1, "and for every row of a write");
        assert_eq!(
            stored[0].1,
            "null:NULL | integer:-7 | null:NULL | text:'完成人 ✓ ''quoted''' | null:NULL | integer:1 | integer:0 | \
             text:'2024-02-29' | null:NULL | text:'2024-02-29T23:59:58+00:00' | text:'2024-02-29T23:59:58.120+00:00' | \
             text:'2024-02-29T23:59:58.123456789+00:00' | blob:X'0001FF'"
        );
        drop(sink);
        pool.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn placeholders_follow_the_engine() {
        let rows = Rows::new("INSERT INTO t (a, b) VALUES", 2, "ON CONFLICT (a) DO NOTHING");
        assert_eq!(rows.sql(2, true), "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) ON CONFLICT (a) DO NOTHING");
        assert_eq!(rows.sql(1, false), "INSERT INTO t (a, b) VALUES (?, ?) ON CONFLICT (a) DO NOTHING");
        let rows = Rows::new("DELETE FROM t WHERE a IN (VALUES", 1, ")")
            .on_postgres("DELETE FROM t WHERE a = ANY(ARRAY[", "])");
        assert_eq!(rows.sql(2, true), "DELETE FROM t WHERE a = ANY(ARRAY[ ($1), ($2) ])");
        assert_eq!(rows.sql(2, false), "DELETE FROM t WHERE a IN (VALUES (?), (?) )");
    }
}
