//! Reading a query's rows on the faster of two paths: on a SQLite database file through the
//! bulk reader (rusqlite on a blocking thread: see `bulk` for why), elsewhere through sqlx.
//! The SQL text is the same on both; its parameters are `$1`..`$n`, bound by number on both
//! (never by the order they first appear in the text).
//!
//! A row type read on both paths derives `sqlx::FromRow` (columns by name) and implements
//! [`BulkRow`] (columns in the SELECT's order, by name for the reader). The bulk reader
//! checks each name against the statement's on the first row of every query, so a row type
//! and its SELECT that drift apart stop the read as an inconsistency instead of putting one
//! column's value in another's field.

use chrono::NaiveDate;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use rusqlite::types::FromSql;

use super::bulk::bulk_error;
use super::{Store, StoreError, with_pool};

/// A query parameter, bound with the same type on both paths.
#[derive(Debug, Clone)]
pub(super) enum Param {
    BigInt(i64),
    Int(i32),
    Bool(bool),
    Text(String),
}

/// `$query` with `$params` bound in order (as `$1`..`$n`), on whichever engine.
macro_rules! bound {
    ($query:expr, $params:expr) => {{
        let mut query = $query;
        for param in $params {
            query = match param {
                Param::BigInt(v) => query.bind(v),
                Param::Int(v) => query.bind(v),
                Param::Bool(v) => query.bind(v),
                Param::Text(v) => query.bind(v),
            };
        }
        query
    }};
}

/// A row the bulk reader can read: its columns in the order of the SELECT.
pub(super) trait BulkRow: Sized + Send + Unpin + 'static {
    fn from_bulk(columns: &mut Columns<'_, '_>) -> Result<Self, StoreError>;
}

/// The rows that sqlx can read on both engines.
pub(super) trait SqlxRow:
    Send
    + Unpin
    + 'static
    + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
    + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
{
}

impl<T> SqlxRow for T where
    T: Send
        + Unpin
        + 'static
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
{
}

/// One row's columns, read left to right.
pub(super) struct Columns<'s, 'r> {
    row: &'r rusqlite::Row<'s>,
    next: usize,
    /// Compare each column's name with the one asked for (the first row of a query).
    check_names: bool,
}

impl Columns<'_, '_> {
    /// The next column, which must be called `name`.
    pub(super) fn get<T: FromSql>(&mut self, name: &str) -> Result<T, StoreError> {
        let index = self.next;
        self.next += 1;
        if self.check_names {
            let actual = self.row.as_ref().column_name(index).map_err(bulk_error)?;
            if actual != name {
                return Err(StoreError::Inconsistent(format!(
                    "column {index} of the query is `{actual}`, where its row type reads `{name}`"
                )));
            }
        }
        self.row.get(index).map_err(bulk_error)
    }

    /// A date column, stored as sqlx writes a `NaiveDate` on SQLite (`YYYY-MM-DD`).
    pub(super) fn date(&mut self, name: &str) -> Result<NaiveDate, StoreError> {
        let text: String = self.get(name)?;
        parse_date(name, &text)
    }
}

fn parse_date(name: &str, text: &str) -> Result<NaiveDate, StoreError> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| StoreError::Inconsistent(format!("unreadable date `{text}` in column `{name}`")))
}

/// Binds `params` to a rusqlite statement's `$1`..`$n` by number: SQLite itself numbers `$n`
/// parameters in the order they first appear in the text, which is not always theirs. Read
/// the rows with `raw_query`.
pub(super) fn bind_numbered(statement: &mut rusqlite::Statement<'_>, params: &[Param]) -> Result<(), StoreError> {
    if statement.parameter_count() != params.len() {
        return Err(StoreError::Inconsistent(format!(
            "a query with {} parameters was given {}",
            statement.parameter_count(),
            params.len()
        )));
    }
    for (i, param) in params.iter().enumerate() {
        let name = format!("${}", i + 1);
        let index = statement.parameter_index(&name).map_err(bulk_error)?.ok_or_else(|| {
            StoreError::Inconsistent(format!("a query given {} parameters has no {name}", params.len()))
        })?;
        match param {
            Param::BigInt(v) => statement.raw_bind_parameter(index, v),
            Param::Int(v) => statement.raw_bind_parameter(index, v),
            Param::Bool(v) => statement.raw_bind_parameter(index, v),
            Param::Text(v) => statement.raw_bind_parameter(index, v),
        }
        .map_err(bulk_error)?;
    }
    Ok(())
}

/// Runs `sql` with `params` on a bulk-read connection and hands each row to `each`
/// (`false` from it stops the read).
pub(super) fn bulk_rows<R: BulkRow>(
    conn: &rusqlite::Connection,
    sql: &str,
    params: &[Param],
    mut each: impl FnMut(R) -> bool,
) -> Result<(), StoreError> {
    let mut statement = conn.prepare(sql).map_err(bulk_error)?;
    bind_numbered(&mut statement, params)?;
    let mut rows = statement.raw_query();
    let mut first = true;
    while let Some(row) = rows.next().map_err(bulk_error)? {
        let mut columns = Columns { row, next: 0, check_names: first };
        first = false;
        let r = R::from_bulk(&mut columns)?;
        if columns.next != row.as_ref().column_count() {
            return Err(StoreError::Inconsistent(format!(
                "the query returns {} columns, its row type reads {}",
                row.as_ref().column_count(),
                columns.next
            )));
        }
        if !each(r) {
            break;
        }
    }
    Ok(())
}

/// Rows sent per message by a streamed bulk read.
const STREAM_CHUNK: usize = 1_000;

impl Store {
    /// All rows of `sql` (parameters `$1`..`$n` = `params`).
    pub(super) async fn select<R: BulkRow + SqlxRow>(
        &self,
        sql: String,
        params: Vec<Param>,
    ) -> Result<Vec<R>, StoreError> {
        if let Some(reader) = &self.bulk {
            return reader
                .with_connection(move |conn| {
                    let mut out = Vec::new();
                    bulk_rows(conn, &sql, &params, |r| {
                        out.push(r);
                        true
                    })?;
                    Ok(out)
                })
                .await;
        }
        let rows = with_pool!(&self.db, |p| {
            bound!(sqlx::query_as::<_, R>(sqlx::AssertSqlSafe(sql)), params).fetch_all(p).await
        })?;
        Ok(rows)
    }

    /// The rows of `sql` as a stream, for results that grow with the data: nothing holds more
    /// than a chunk of them. On the bulk path a blocking thread reads ahead by a few chunks,
    /// and stops when the stream is dropped.
    pub(super) fn select_stream<R: BulkRow + SqlxRow>(
        &self,
        sql: &'static str,
        params: Vec<Param>,
    ) -> BoxStream<'_, Result<R, StoreError>> {
        if let Some(reader) = self.bulk.clone() {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<R>, StoreError>>(2);
            tokio::spawn(async move {
                let errors = tx.clone();
                let read = reader
                    .with_connection(move |conn| {
                        let mut chunk = Vec::with_capacity(STREAM_CHUNK);
                        let mut listening = true;
                        bulk_rows(conn, sql, &params, |r| {
                            chunk.push(r);
                            if chunk.len() == STREAM_CHUNK {
                                listening = tx.blocking_send(Ok(std::mem::take(&mut chunk))).is_ok();
                            }
                            listening
                        })?;
                        if listening && !chunk.is_empty() {
                            let _ = tx.blocking_send(Ok(chunk));
                        }
                        Ok(())
                    })
                    .await;
                if let Err(e) = read {
                    let _ = errors.send(Err(e)).await;
                }
            });
            return futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|chunk| (chunk, rx)) })
                .flat_map(|chunk| {
                    let items: Vec<Result<R, StoreError>> = match chunk {
                        Ok(rows) => rows.into_iter().map(Ok).collect(),
                        Err(e) => vec![Err(e)],
                    };
                    futures_util::stream::iter(items)
                })
                .boxed();
        }
        let rows: BoxStream<'_, Result<R, sqlx::Error>> =
            with_pool!(&self.db, |p| bound!(sqlx::query_as::<_, R>(sql), params).fetch(p).boxed());
        rows.map(|r| r.map_err(StoreError::from)).boxed()
    }
}

#[cfg(test)]
mod tests {
    use futures_util::TryStreamExt;

    use super::*;
    use crate::store::StoreOptions;

    #[derive(Debug, PartialEq, sqlx::FromRow)]
    struct Pair {
        a: i64,
        b: String,
    }

    impl BulkRow for Pair {
        fn from_bulk(c: &mut Columns<'_, '_>) -> Result<Self, StoreError> {
            Ok(Pair { a: c.get("a")?, b: c.get("b")? })
        }
    }

    /// A SQLite file store, which reads through the bulk reader, and an in-memory one, which
    /// reads through sqlx (no other connection can open it).
    async fn stores() -> (Store, Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("techmarket-select-{}", uuid::Uuid::now_v7()));
        let url = format!("sqlite:{}", dir.join("ledger.db").display());
        let file = Store::connect(&url, &StoreOptions::default()).await.expect("open a SQLite file");
        assert!(file.bulk.is_some(), "a SQLite file is read through the bulk reader");
        let memory = Store::connect("sqlite::memory:", &StoreOptions::default()).await.expect("open in memory");
        assert!(memory.bulk.is_none(), "an in-memory database is read through sqlx");
        (file, memory, dir)
    }

    #[tokio::test]
    async fn parameters_are_bound_by_their_number_not_by_where_they_first_appear() {
        let (file, memory, dir) = stores().await;
        // `$2` appears first: bound in order of appearance, `b` would get 7 and `a` "x".
        let sql = "SELECT $2 || '' AS b0, $1 AS a, $2 AS b";
        let sql = format!("SELECT a, b FROM ({sql}) WHERE $1 > 0");
        for store in [&file, &memory] {
            let rows: Vec<Pair> =
                store.select(sql.clone(), vec![Param::BigInt(7), Param::Text("x".into())]).await.expect("select");
            assert_eq!(rows, vec![Pair { a: 7, b: "x".into() }]);
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_row_type_that_does_not_match_its_select_stops_the_read() {
        let (file, _memory, dir) = stores().await;
        let swapped = file.select::<Pair>("SELECT 'x' AS b, 7 AS a".to_owned(), vec![]).await;
        assert!(
            matches!(&swapped, Err(StoreError::Inconsistent(m)) if m.contains("`b`") && m.contains("`a`")),
            "{swapped:?}"
        );
        let extra = file.select::<Pair>("SELECT 7 AS a, 'x' AS b, 1 AS c".to_owned(), vec![]).await;
        assert!(matches!(&extra, Err(StoreError::Inconsistent(m)) if m.contains("3 columns")), "{extra:?}");
        let short = file.select::<Pair>("SELECT 7 AS a, 'x' AS b WHERE $1".to_owned(), vec![]).await;
        assert!(matches!(&short, Err(StoreError::Inconsistent(m)) if m.contains("1 parameters")), "{short:?}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_streamed_read_gives_every_row_in_order_across_chunks_on_both_paths() {
        let (file, memory, dir) = stores().await;
        const SQL: &str = "WITH RECURSIVE n(a) AS (SELECT 1 UNION ALL SELECT a + 1 FROM n WHERE a < $1) \
                           SELECT a, 'row ' || a AS b FROM n ORDER BY a";
        let count = STREAM_CHUNK as i64 * 2 + 7;
        let expected: Vec<Pair> = (1..=count).map(|a| Pair { a, b: format!("row {a}") }).collect();
        for store in [&file, &memory] {
            let rows: Vec<Pair> =
                store.select_stream(SQL, vec![Param::BigInt(count)]).try_collect().await.expect("stream");
            assert_eq!(rows, expected);
        }
        // Dropped after its first row, a stream of a billion rows (unsorted, so SQLite yields
        // them as it makes them): the reading thread stops and gives its connection back,
        // instead of reading on for minutes.
        const ENDLESS: &str = "WITH RECURSIVE n(a) AS (SELECT 1 UNION ALL SELECT a + 1 FROM n WHERE a < $1) \
                               SELECT a, 'row ' || a AS b FROM n";
        let reader = file.bulk.clone().expect("a file store has a bulk reader");
        let idle = || reader.idle.lock().expect("idle connections").len();
        assert_eq!(idle(), 1, "the reads above gave their connection back");
        let mut stream = file.select_stream::<Pair>(ENDLESS, vec![Param::BigInt(1_000_000_000)]);
        assert_eq!(stream.try_next().await.expect("first").map(|p| p.a), Some(1));
        drop(stream);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while idle() == 0 {
            assert!(std::time::Instant::now() < deadline, "the dropped stream's thread still reads");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
