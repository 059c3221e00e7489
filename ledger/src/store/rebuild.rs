//! `rebuild-projections`: empties the read-model tables and replays the whole log through the
//! same projection code the live appends use, in one transaction that holds the append lock,
//! so readers see either the old tables or the rebuilt ones and no append interleaves.

use serde::Serialize;

use super::copy_in::{CopyBuffer, TableCopy, table_of};
use super::policy::PgReader;
use super::read::Which;
use super::rows::{Expect, Rows, Sink, SqliteSink, blocking};
use super::{Store, StoreError, Tx, execute, with_conn};
use crate::event::{Position, RecordedEvent};
use crate::projection::Projections;
use crate::readmodel;

/// How a rebuild goes through the log. The defaults are the ones to use; tests make both
/// small, to cover pages and held updates with a few hundred events.
#[derive(Debug, Clone, Copy)]
pub struct RebuildOptions {
    /// Events replayed per page (each page's inserts are written at its end).
    pub page_rows: i64,
    /// Most rows with an update held back from one page to the next (see
    /// `Deferred::flush_page`).
    pub updates_held_max: usize,
}

impl Default for RebuildOptions {
    fn default() -> Self {
        RebuildOptions { page_rows: 5_000, updates_held_max: super::project::UPDATES_HELD_MAX }
    }
}

/// The read-model tables, emptied and refilled by a rebuild (children before parents).
pub const READ_MODEL_TABLES: [&str; 21] = [
    "subsidy_completer_lines",
    "subsidy_lines",
    "subsidy_completer_totals",
    "subsidy_totals",
    "incentive_lines",
    "incentive_totals",
    "turnover_lines",
    "turnover_cells",
    "policy_versions",
    "projection_positions",
    "unique_claims",
    "achievement_completers",
    "payment_reversals",
    "payments",
    "contracts",
    "matches",
    "demands",
    "achievements",
    "brokers",
    "accreditations",
    "organisations",
];

#[derive(Debug, Clone, Serialize)]
pub struct RebuildReport {
    pub events_replayed: i64,
    pub head_position: Position,
}

impl Store {
    /// Rebuilds every read model from the log. `progress` gets the last position replayed.
    pub async fn rebuild_projections(&self, progress: impl FnMut(Position)) -> Result<RebuildReport, StoreError> {
        self.rebuild_projections_with(RebuildOptions::default(), progress).await
    }

    /// [`Store::rebuild_projections`] with other [`RebuildOptions`].
    pub async fn rebuild_projections_with(
        &self,
        options: RebuildOptions,
        progress: impl FnMut(Position),
    ) -> Result<RebuildReport, StoreError> {
        self.rebuild(options, progress).await.map_err(claimed_twice)
    }

    async fn rebuild(
        &self,
        options: RebuildOptions,
        mut progress: impl FnMut(Position),
    ) -> Result<RebuildReport, StoreError> {
        assert!(options.page_rows > 0, "a rebuild page holds at least one event");
        if let Some(bulk) = &self.bulk {
            return self.rebuild_sqlite_file(bulk, options, &mut progress).await;
        }
        let tx = self.begin_append().await?;
        let mut runtime = self.policy_runtime.lock().await;
        runtime.invalidate();
        let mut projections = Projections::new();
        let mut target = TxRebuild { tx, dropped: Dropped::default() };
        let replayed = if matches!(self.db, super::Db::Postgres(_)) {
            target.empty_read_models().await?;
            let head = target.head().await?;
            let read_ahead = ReadAhead::new(self.clone(), PgReader::OwnConnection);
            let mut behind = WritesBehind::start(target, read_ahead);
            let replayed = match replay(&mut behind, head, options, &mut projections, &mut progress).await {
                Ok(replayed) => replayed,
                Err(e) => {
                    behind.abandon().await;
                    return Err(e);
                }
            };
            target = behind.finish().await?;
            replayed
        } else {
            rebuild_in(&mut target, options, &mut projections, &mut progress).await?
        };
        target.commit().await?;
        let head_position = projections.position();
        runtime.state = Some(projections);
        Ok(RebuildReport { events_replayed: replayed, head_position })
    }

    /// On a SQLite file: the same replay, written through a connection of our own (see
    /// [`SqliteSink`]) that holds the append lock for its transaction: our own writers queue
    /// behind the in-process guard, other processes behind SQLite's write lock.
    async fn rebuild_sqlite_file(
        &self,
        bulk: &super::bulk::BulkReader,
        options: RebuildOptions,
        progress: &mut impl FnMut(Position),
    ) -> Result<RebuildReport, StoreError> {
        let _turn = self.sqlite_writer.clone().lock_owned().await;
        let mut runtime = self.policy_runtime.lock().await;
        runtime.invalidate();
        let mut projections = Projections::new();
        let connection = blocking(|| open_rebuild_connection(bulk.path()))?;
        let mut rebuild = SqliteRebuild {
            sink: SqliteSink { connection },
            read_ahead: ReadAhead::new(self.clone(), PgReader::Pool),
            dropped_indexes: Vec::new(),
        };
        let rebuilt = match rebuild_in(&mut rebuild, options, &mut projections, progress).await {
            Ok(replayed) => blocking(|| rebuild.commit()).map(|()| replayed),
            Err(e) => Err(e),
        };
        let replayed = match rebuilt {
            Ok(replayed) => replayed,
            Err(e) => {
                // Closing the connection would roll back too; a failed rollback changes
                // nothing the caller can act on, so the rebuild's own error is the one told.
                let _ = blocking(|| rebuild.sink.connection.execute_batch("ROLLBACK"));
                return Err(e);
            }
        };
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.committed();
        }
        let head_position = projections.position();
        runtime.state = Some(projections);
        Ok(RebuildReport { events_replayed: replayed, head_position })
    }

    /// Every row of every read-model table, as sorted text lines: for comparing a rebuilt
    /// state with the live one.
    pub async fn dump_read_models(&self) -> Result<Vec<String>, StoreError> {
        let mut lines = Vec::new();
        for table in READ_MODEL_TABLES {
            lines.extend(self.dump_table(table).await?);
        }
        Ok(lines)
    }
}

impl Store {
    /// One sorted text line per row of `table` (`col=value|...`, NULL as `∅`). The table name
    /// comes from [`READ_MODEL_TABLES`], the column names from the database catalog.
    async fn dump_table(&self, table: &'static str) -> Result<Vec<String>, StoreError> {
        let columns: Vec<String> = match &self.db {
            super::Db::Postgres(p) => {
                sqlx::query_scalar(
                    "SELECT column_name::text FROM information_schema.columns \
                     WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
                )
                .bind(table)
                .fetch_all(p)
                .await?
            }
            super::Db::Sqlite(p) => {
                sqlx::query_scalar("SELECT name FROM pragma_table_info($1) ORDER BY cid")
                    .bind(table)
                    .fetch_all(p)
                    .await?
            }
        };
        assert!(!columns.is_empty(), "table {table} has no columns");
        let line = columns
            .iter()
            .map(|c| format!("'{c}=' || COALESCE(CAST({c} AS TEXT), '∅')"))
            .collect::<Vec<_>>()
            .join(" || '|' || ");
        let sql = format!("SELECT '{table}: ' || {line} FROM {table}");
        let mut lines: Vec<String> =
            super::with_pool!(&self.db, |p| sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_all(p).await)?;
        lines.sort();
        Ok(lines)
    }
}

/// The page cache of a SQLite rebuild's connection, in KiB. The rebuild is one long
/// transaction that changes far more pages than the default cache (2 MiB) holds, and SQLite
/// then spills dirty pages to the WAL mid-transaction and reads them back. Measured on the
/// benchmark's default data (555,598 events): 23.5 s with the default cache, 19.4-21.3 s with
/// this one, for 270 MiB more peak memory. The cache is bounded by this figure, whatever the
/// size of the log. (An in-memory database, rebuilt through sqlx, has no file to spill to.)
const SQLITE_REBUILD_CACHE_KIB: i64 = 262_144;

/// What a rebuild writes to and reads from: an append transaction through sqlx, or a SQLite
/// file's own rebuild connection.
trait Rebuilding: Replaying {
    /// Empties every read-model table.
    async fn empty_read_models(&mut self) -> Result<(), StoreError>;
    /// The last position of the log (0 when empty); the log does not move while the rebuild
    /// holds the append lock.
    async fn head(&mut self) -> Result<Position, StoreError>;
}

/// What the replay of a rebuild reads its pages from and writes its rows to.
trait Replaying: Sink {
    /// The next page of at most `page_rows` events (the same on every call) after `after` up
    /// to `head`, decoded; empty at the end.
    async fn next_page(
        &mut self,
        after: Position,
        head: Position,
        page_rows: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError>;
}

/// A rebuild in an append transaction through sqlx: on PostgreSQL (where it writes behind
/// the replay, see [`WritesBehind`]), and on an in-memory SQLite database.
struct TxRebuild {
    tx: Tx,
    /// PostgreSQL: what `empty_read_models` dropped, to be made again.
    dropped: Dropped,
}

/// PostgreSQL: the keys and indexes a rebuild drops from the read-model tables (see
/// `empty_read_models`).
#[derive(Default)]
struct Dropped {
    /// The primary keys and unique constraints: a table and the statement that adds its
    /// constraint again, before the first statement that names the table (updates and
    /// upserts find their rows through it, and `ON CONFLICT` needs it), or before the commit.
    keys: Vec<(String, String)>,
    /// The definitions of the other indexes, created again before the commit.
    indexes: Vec<String>,
}

/// The read-model tables' primary keys and unique constraints: their table, the statement
/// that adds one again and the one that drops it.
const KEYS: &str = "\
    SELECT t.relname::text, \
      format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s', n.nspname, t.relname, k.conname, pg_get_constraintdef(k.oid)), \
      format('ALTER TABLE %I.%I DROP CONSTRAINT %I', n.nspname, t.relname, k.conname) \
    FROM pg_constraint k \
    JOIN pg_class t ON t.oid = k.conrelid \
    JOIN pg_namespace n ON n.oid = t.relnamespace \
    WHERE n.nspname = current_schema() AND t.relname = ANY($1) AND k.contype IN ('p', 'u') \
    ORDER BY t.relname, k.conname";

/// The read-model tables' indexes that back no constraint and are not unique, with their
/// definitions and their quoted, schema-qualified names. (Unique indexes outside a
/// constraint stay: there are none, and a rebuild would not know when one is needed.)
const SECONDARY_INDEXES: &str = "\
    SELECT pg_get_indexdef(x.indexrelid), format('%I.%I', n.nspname, c.relname) \
    FROM pg_index x \
    JOIN pg_class c ON c.oid = x.indexrelid \
    JOIN pg_class t ON t.oid = x.indrelid \
    JOIN pg_namespace n ON n.oid = t.relnamespace \
    WHERE n.nspname = current_schema() AND t.relname = ANY($1) \
      AND NOT x.indisunique \
      AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid) \
    ORDER BY c.relname";

impl TxRebuild {
    /// Adds again the keys and creates again the indexes that `empty_read_models` dropped
    /// (each from its whole table), and commits.
    async fn commit(mut self) -> Result<(), StoreError> {
        self.make_keys(None).await?;
        for definition in std::mem::take(&mut self.dropped.indexes) {
            execute!(&mut self.tx, sqlx::query(sqlx::AssertSqlSafe(definition)))?;
        }
        Ok(self.tx.commit().await?)
    }

    /// Adds again the dropped keys of `table` (of every table for `None`). A key whose table
    /// holds one value twice fails here, as the inserts would have with it (a unique
    /// violation).
    async fn make_keys(&mut self, table: Option<&str>) -> Result<(), StoreError> {
        let keys = std::mem::take(&mut self.dropped.keys);
        let (make, keep) = keys.into_iter().partition(|(of, _)| table.is_none_or(|table| table == of));
        self.dropped.keys = keep;
        for (_, add) in make {
            execute!(&mut self.tx, sqlx::query(sqlx::AssertSqlSafe(add)))?;
        }
        Ok(())
    }
}

/// The log read and decoded ahead of the rebuild by [`Store::decoded_pages`], from the first
/// page asked for to the head.
struct ReadAhead {
    store: Store,
    reader: PgReader,
    pages: Option<tokio::sync::mpsc::Receiver<Result<Vec<RecordedEvent>, StoreError>>>,
}

impl ReadAhead {
    fn new(store: Store, reader: PgReader) -> ReadAhead {
        ReadAhead { store, reader, pages: None }
    }

    /// `Rebuilding::next_page`: the pipeline starts at the first call, with its arguments.
    async fn next_page(
        &mut self,
        after: Position,
        head: Position,
        page_rows: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let (store, reader) = (&self.store, self.reader);
        let pages = self.pages.get_or_insert_with(|| store.decoded_pages(Which::All, after, head, page_rows, reader));
        pages.recv().await.unwrap_or_else(|| Ok(Vec::new()))
    }
}

impl Sink for TxRebuild {
    /// A statement reads and writes only the table it names (a table it does not know: any
    /// table), through its key.
    async fn write_rows(&mut self, rows: &mut Rows, expect: Expect) -> Result<(), StoreError> {
        if !self.dropped.keys.is_empty() {
            self.make_keys(table_of(rows.postgres_statement().0)).await?;
        }
        self.tx.write_rows(rows, expect).await
    }
}

impl Rebuilding for TxRebuild {
    /// On PostgreSQL, `TRUNCATE`: the rebuild then fills empty tables and indexes. After a
    /// `DELETE` each insert found the deleted row of its key in every unique index and
    /// checked it in the table, and each update added to indexes already twice their size.
    /// `TRUNCATE` keeps the old rows for a rollback as `DELETE` does, but it locks the tables
    /// until the commit: readers wait for the rebuilt rows instead of reading the old ones.
    ///
    /// Then, on PostgreSQL, the indexes that are not unique and back no constraint
    /// ([`SECONDARY_INDEXES`]) are dropped, and created again from the whole tables before
    /// the commit: the server sorts each table once instead of descending a B-tree for every
    /// row. Half of the server's samples in a rebuild with them were index inserts
    /// (`btinsert`). The primary keys go too ([`KEYS`]), each added again before the first
    /// statement that needs it, or before the commit: in a rebuild of the benchmark's default
    /// year that kept them, their inserts were a third of the writing server's samples. The
    /// drops are part of the transaction: a failed rebuild leaves them as they were, and
    /// until the commit no reader sees the tables (`TRUNCATE` locks them).
    async fn empty_read_models(&mut self) -> Result<(), StoreError> {
        let statements = match &self.tx {
            Tx::Postgres(_) => vec![format!("TRUNCATE {}", READ_MODEL_TABLES.join(", "))],
            Tx::Sqlite(..) => READ_MODEL_TABLES.map(|table| format!("DELETE FROM {table}")).to_vec(),
        };
        for sql in statements {
            execute!(&mut self.tx, sqlx::query(sqlx::AssertSqlSafe(sql)))?;
        }
        if let Tx::Postgres(tx) = &mut self.tx {
            let indexes: Vec<(String, String)> =
                sqlx::query_as(SECONDARY_INDEXES).bind(READ_MODEL_TABLES.to_vec()).fetch_all(&mut **tx).await?;
            if !indexes.is_empty() {
                let names: Vec<&str> = indexes.iter().map(|(_, name)| name.as_str()).collect();
                let drop = format!("DROP INDEX {}", names.join(", "));
                sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&mut **tx).await?;
            }
            self.dropped.indexes = indexes.into_iter().map(|(definition, _)| definition).collect();
            let keys: Vec<(String, String, String)> =
                sqlx::query_as(KEYS).bind(READ_MODEL_TABLES.to_vec()).fetch_all(&mut **tx).await?;
            if !keys.is_empty() {
                let drops: Vec<&str> = keys.iter().map(|(_, _, drop)| drop.as_str()).collect();
                sqlx::raw_sql(sqlx::AssertSqlSafe(drops.join("; "))).execute(&mut **tx).await?;
            }
            self.dropped.keys = keys.into_iter().map(|(table, add, _)| (table, add)).collect();
        }
        Ok(())
    }

    async fn head(&mut self) -> Result<Position, StoreError> {
        let head: Option<i64> = with_conn!(&mut self.tx, |c| sqlx::query_scalar("SELECT MAX(position) FROM events")
            .fetch_one(&mut *c)
            .await)?;
        Ok(head.unwrap_or(0))
    }
}

impl Replaying for TxRebuild {
    async fn next_page(
        &mut self,
        after: Position,
        head: Position,
        page_rows: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        // In-memory SQLite (PostgreSQL reads ahead, see `WritesBehind`): through the
        // transaction's own connection (a second connection from the pool might not be free).
        let rows: Vec<super::StoredEvent> = with_conn!(&mut self.tx, |c| {
            sqlx::query_as(super::read::EVENTS_IN_RANGE).bind(after).bind(head).bind(page_rows).fetch_all(&mut *c).await
        })?;
        rows.iter().map(super::StoredEvent::decode).collect()
    }
}

/// The rebuild of a SQLite file: writes through its own connection; the events are read and
/// decoded ahead on threads of their own, on a connection of their own (see `bulk`).
struct SqliteRebuild {
    sink: SqliteSink,
    read_ahead: ReadAhead,
    /// The definitions of the indexes `empty_read_models` dropped, created again at the
    /// commit.
    dropped_indexes: Vec<String>,
}

/// The read-model tables' indexes that are not unique (on a SQLite file), with their
/// definitions: dropped by a rebuild once it has emptied the tables, created again from the
/// whole tables before its commit. Each is then one sort of its table instead of a B-tree
/// descent per row at a scattered key. Unique indexes (primary keys, `UNIQUE`) stay: the
/// rebuild's updates and upserts find their rows through them, and they refuse a value
/// written twice as they go. The drops are part of the rebuild's transaction: a failed
/// rebuild leaves them as they were, and readers see the indexes throughout (each reads the
/// last committed schema).
const SQLITE_SECONDARY_INDEXES: &str = "\
    SELECT m.name, m.sql FROM sqlite_master m \
    JOIN pragma_index_list(m.tbl_name) l ON l.name = m.name \
    WHERE m.type = 'index' AND m.sql IS NOT NULL AND NOT l.\"unique\" AND m.tbl_name IN (SELECT value FROM json_each(?1)) \
    ORDER BY m.name";

impl SqliteRebuild {
    /// Creates again the indexes that `empty_read_models` dropped, then commits.
    fn commit(&mut self) -> Result<(), StoreError> {
        let connection = &self.sink.connection;
        for definition in std::mem::take(&mut self.dropped_indexes) {
            connection.execute_batch(&definition).map_err(StoreError::SqliteWrite)?;
        }
        connection.execute_batch("COMMIT").map_err(StoreError::SqliteWrite)
    }
}

impl Sink for SqliteRebuild {
    async fn write_rows(&mut self, rows: &mut Rows, expect: Expect) -> Result<(), StoreError> {
        self.sink.write_rows(rows, expect).await
    }
}

impl Rebuilding for SqliteRebuild {
    async fn empty_read_models(&mut self) -> Result<(), StoreError> {
        let connection = &self.sink.connection;
        self.dropped_indexes = blocking(|| {
            for table in READ_MODEL_TABLES {
                connection.execute(&format!("DELETE FROM {table}"), []).map_err(StoreError::SqliteWrite)?;
            }
            let tables = serde_json::to_string(&READ_MODEL_TABLES).expect("names serialise");
            let mut statement = connection.prepare(SQLITE_SECONDARY_INDEXES).map_err(StoreError::SqliteWrite)?;
            let indexes = statement
                .query_map([tables], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(StoreError::SqliteWrite)?;
            for (name, _) in &indexes {
                let quoted = name.replace('"', "\"\"");
                connection.execute_batch(&format!("DROP INDEX \"{quoted}\"")).map_err(StoreError::SqliteWrite)?;
            }
            Ok::<_, StoreError>(indexes.into_iter().map(|(_, definition)| definition).collect())
        })?;
        Ok(())
    }

    async fn head(&mut self) -> Result<Position, StoreError> {
        let connection = &self.sink.connection;
        let head: Option<i64> = blocking(|| connection.query_row("SELECT MAX(position) FROM events", [], |r| r.get(0)))
            .map_err(StoreError::SqliteWrite)?;
        Ok(head.unwrap_or(0))
    }
}

impl Replaying for SqliteRebuild {
    async fn next_page(
        &mut self,
        after: Position,
        head: Position,
        page_rows: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_ahead.next_page(after, head, page_rows).await
    }
}

/// A rebuild's inserts into `unique_claims` that fail on its key: the log claims a value
/// twice (a credit code, a contract number, a registration number), which live appends
/// refuse; told as the inconsistency it is, with the value where the database names it.
fn claimed_twice(e: StoreError) -> StoreError {
    let told = match &e {
        StoreError::Database(sqlx::Error::Database(d)) if d.is_unique_violation() => {
            let detail = d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().and_then(|pg| pg.detail());
            (d.message().contains("unique_claims") || d.table() == Some("unique_claims"))
                .then(|| detail.map_or_else(|| d.message().to_owned(), str::to_owned))
        }
        StoreError::SqliteWrite(rusqlite::Error::SqliteFailure(f, Some(message)))
            if f.code == rusqlite::ErrorCode::ConstraintViolation && message.contains("unique_claims") =>
        {
            Some(message.clone())
        }
        _ => None,
    };
    match told {
        Some(what) => StoreError::Inconsistent(format!(
            "the log claims a unique value twice ({what}): the rebuild stopped and changed nothing"
        )),
        None => e,
    }
}

/// A read-write connection to the SQLite file at `path`, set up as the pool's are for what a
/// rebuild does (foreign keys checked, commits fsynced, waiting on a busy file), with the
/// rebuild's page cache, and inside a write transaction.
fn open_rebuild_connection(path: &std::path::Path) -> Result<rusqlite::Connection, StoreError> {
    use rusqlite::OpenFlags;
    let connection = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(StoreError::SqliteWrite)?;
    connection.busy_timeout(std::time::Duration::from_secs(30)).map_err(StoreError::SqliteWrite)?;
    connection
        .execute_batch(&format!(
            "PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL; PRAGMA cache_size = -{SQLITE_REBUILD_CACHE_KIB}; \
             BEGIN IMMEDIATE"
        ))
        .map_err(StoreError::SqliteWrite)?;
    Ok(connection)
}

/// Empties the read models and replays the log into them.
async fn rebuild_in(
    target: &mut impl Rebuilding,
    options: RebuildOptions,
    projections: &mut Projections,
    progress: &mut impl FnMut(Position),
) -> Result<i64, StoreError> {
    target.empty_read_models().await?;
    let head = target.head().await?;
    replay(target, head, options, projections, progress).await
}

/// Replays the log up to `head` into emptied read models: every line is written, but of the
/// totals only the final value of each (the intermediate ones would be overwritten anyway).
async fn replay(
    target: &mut impl Replaying,
    head: Position,
    options: RebuildOptions,
    projections: &mut Projections,
    progress: &mut impl FnMut(Position),
) -> Result<i64, StoreError> {
    let mut replayed = 0i64;
    let mut policy = super::policy::PolicyWriter::default();
    let mut read_model = super::project::Deferred::default();
    let mut after: Position = 0;
    loop {
        let page = target.next_page(after, head, options.page_rows).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for recorded in &page {
            for change in readmodel::changes(recorded) {
                read_model.apply(target, &change, recorded.position).await?;
            }
            policy.add(&projections.apply(recorded));
            replayed += 1;
        }
        // A page's payments and lines in a few multi-row statements; the totals (last value
        // per key) at the end.
        read_model.flush_page(target, options.updates_held_max).await?;
        policy.write_lines(target).await?;
        progress(after);
    }
    read_model.flush(target).await?;
    policy.write(target).await?;
    super::project::record_projection_positions(target, &[readmodel::PROJECTION, super::policy::PROJECTION], after)
        .await?;
    Ok(replayed)
}

/// A rebuild's writes on PostgreSQL, handed over in order to a writer task that only sends
/// them: the replay folds the next pages, and turns the rows of plain INSERTs into `COPY`
/// text (see `copy_in`), while the server stores the rows of the pages before.
///
/// Why: in a profile of the rebuild (`perf record -a`, nineteenth stop) the client and the
/// server took turns, and 40 % of the samples on two cores were idle. Each statement's demand
/// on the rows it affects ([`Expect`]) goes with it and is checked on the writer task; the
/// first error stops the writer, drops its transaction (a rollback) and is what the next
/// write, or [`WritesBehind::finish`], returns.
struct WritesBehind {
    /// Rows of plain INSERTs held as `COPY` text. A statement is queued after what is held
    /// for its table, which it may update.
    copies: CopyBuffer,
    writes: Option<tokio::sync::mpsc::Sender<Write>>,
    writer: Option<tokio::task::JoinHandle<Result<TxRebuild, StoreError>>>,
    read_ahead: ReadAhead,
}

/// What the writer task sends.
enum Write {
    Copy(TableCopy),
    Statements(Rows, Expect),
}

/// Writes queued at most. A page of 5,000 events makes about twenty statements, and a full
/// [`CopyBuffer`] 16 MiB of text in a `COPY` per table: a few pages, or a few times that
/// text, wait at most.
const WRITES_QUEUED_MAX: usize = 64;

impl WritesBehind {
    fn start(target: TxRebuild, read_ahead: ReadAhead) -> WritesBehind {
        let (writes, mut queued) = tokio::sync::mpsc::channel::<Write>(WRITES_QUEUED_MAX);
        let writer = tokio::spawn(async move {
            let mut target = target;
            while let Some(write) = queued.recv().await {
                match write {
                    Write::Copy(copy) => match &mut target.tx {
                        Tx::Postgres(tx) => copy.send(tx).await?,
                        Tx::Sqlite(..) => unreachable!("a COPY is sent on PostgreSQL only"),
                    },
                    Write::Statements(mut rows, expect) => target.write_rows(&mut rows, expect).await?,
                }
            }
            Ok(target)
        });
        WritesBehind { copies: CopyBuffer::default(), writes: Some(writes), writer: Some(writer), read_ahead }
    }

    /// Sends the rows still held and waits for every write: the rebuild's transaction, or
    /// the first error.
    async fn finish(mut self) -> Result<TxRebuild, StoreError> {
        let copies = self.copies.drain_all();
        self.queue_copies(copies).await?;
        self.stopped().await.expect("a replay that ended well saw no write fail")
    }

    /// After a failed replay: waits for the writer, whose transaction is then dropped (rolled
    /// back) before the replay's error is returned.
    async fn abandon(mut self) {
        drop(self.stopped().await);
    }

    async fn queue_copies(&mut self, copies: Vec<TableCopy>) -> Result<(), StoreError> {
        for copy in copies {
            self.queue(Write::Copy(copy)).await?;
        }
        Ok(())
    }

    async fn queue(&mut self, write: Write) -> Result<(), StoreError> {
        let writes = self.writes.as_ref().expect("no write after the writer stopped");
        if writes.send(write).await.is_ok() {
            return Ok(());
        }
        // The writer stopped early, which it does only on an error: that error is the answer.
        match self.stopped().await.expect("the writer is waited for once") {
            Err(e) => Err(e),
            Ok(_) => unreachable!("the writer stops early only on an error"),
        }
    }

    /// Ends the queue and waits for the writer (a panic there goes on here); `None` when it
    /// was waited for before, its outcome already told.
    async fn stopped(&mut self) -> Option<Result<TxRebuild, StoreError>> {
        self.writes = None;
        let writer = self.writer.take()?;
        Some(match writer.await {
            Ok(written) => written,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        })
    }
}

impl Sink for WritesBehind {
    async fn write_rows(&mut self, rows: &mut Rows, expect: Expect) -> Result<(), StoreError> {
        if let Some(taken) = self.copies.take(rows) {
            expect.check(taken)?;
            if self.copies.is_full() {
                let copies = self.copies.drain_all();
                self.queue_copies(copies).await?;
            }
            return Ok(());
        }
        let copies = self.copies.drain_for(rows);
        self.queue_copies(copies).await?;
        self.queue(Write::Statements(rows.take(), expect)).await
    }
}

impl Replaying for WritesBehind {
    async fn next_page(
        &mut self,
        after: Position,
        head: Position,
        page_rows: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_ahead.next_page(after, head, page_rows).await
    }
}
