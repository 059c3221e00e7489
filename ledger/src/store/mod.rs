//! The event store and its read-model tables, on SQLite (embedded default) or PostgreSQL
//! (production), chosen by the database URL.
//!
//! One code path serves both engines: [`Db`] and [`Tx`] are enums over the two sqlx pools,
//! and the `with_pool!` / `with_conn!` macros expand the same body once per engine. This works
//! because every value we bind or read has the same Rust type on both (i64 fen, String,
//! bool, chrono dates and instants, byte vectors) and both accept `$n` placeholders. Where
//! the SQL must differ (locking), the engines get their own statement.

mod append;
mod bulk;
mod checkpoint;
mod copy_in;
mod group;
pub use group::{BATCH_REQUESTS_MAX, BatchObserver, GroupCommitStats};
mod import;
mod pgcopy;
mod policy;
mod project;
pub mod queries;
mod read;
mod rebuild;
mod rows;
mod select;
pub mod statements;
pub mod stream;
mod verify;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

pub use append::{AppendOutcome, AppendRequest, Appended, IdempotencyClaim, Receipt, Refusal};
pub use policy::PROJECTION as POLICY_PROJECTION;
pub use read::StoredEvent;
pub use rebuild::{RebuildOptions, RebuildReport};
pub use verify::{ChainBreak, VerifyReport};

use crate::event::{DecodeError, Position, StreamVersion};
use crate::ids::StreamId;

/// Expands `$body` once per engine with `$p` bound to that engine's pool.
macro_rules! with_pool {
    ($db:expr, |$p:ident| $body:expr) => {
        match $db {
            $crate::store::Db::Postgres($p) => $body,
            $crate::store::Db::Sqlite($p) => $body,
        }
    };
}
pub(crate) use with_pool;

/// Expands `$body` once per engine with `$c` bound to the transaction's connection.
macro_rules! with_conn {
    ($tx:expr, |$c:ident| $body:expr) => {
        match $tx {
            $crate::store::Tx::Postgres(t) => {
                let $c = &mut **t;
                $body
            }
            $crate::store::Tx::Sqlite(t, _) => {
                let $c = &mut **t;
                $body
            }
        }
    };
}
pub(crate) use with_conn;

/// Executes `$query` in the transaction on either engine; yields the rows affected.
macro_rules! execute {
    ($tx:expr, $query:expr) => {
        $crate::store::with_conn!($tx, |c| $query.execute(&mut *c).await.map(|r| r.rows_affected()))
    };
}
pub(crate) use execute;

/// Which engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Clone, Debug)]
pub enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// A write transaction holding the log's append lock.
pub(crate) enum Tx {
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>, SqliteWriter),
}

/// What a SQLite write transaction holds besides the transaction itself.
pub(crate) struct SqliteWriter {
    /// SQLite has one writer at a time; the in-process guard queues our own writers so they
    /// do not spin on SQLITE_BUSY.
    _turn: tokio::sync::OwnedMutexGuard<()>,
    /// Woken by every commit (see `checkpoint`).
    checkpointer: Option<Arc<checkpoint::Checkpointer>>,
}

impl Tx {
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Postgres(t) => t.commit().await,
            Tx::Sqlite(t, writer) => {
                t.commit().await?;
                if let Some(checkpointer) = &writer.checkpointer {
                    checkpointer.committed();
                }
                Ok(())
            }
        }
    }
}

/// A technical failure of the store (never a business rule: those are `DomainError`s).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored event at position {position} cannot be read: {source}")]
    Decode { position: Position, source: DecodeError },
    #[error("`{0}` is not a supported database URL: use sqlite:<path> or postgres://user@host/db")]
    UnsupportedUrl(String),
    #[error("cannot create the database directory {path}: {source}")]
    CreateDir { path: String, source: std::io::Error },
    /// The thread that commits append batches (see `group`) could not be started.
    #[error("cannot start the store's commit thread: {0}")]
    CommitThread(#[source] std::io::Error),
    /// A read model disagrees with the log (a projection bug): stop rather than serve it.
    #[error("read model inconsistent with the log: {0}")]
    Inconsistent(String),
    /// The shared transaction of a group commit failed; every request in it is told this
    /// (see `group`). `transient` is that of the original error.
    #[error("the commit shared with other requests failed: {message}")]
    Batch { message: String, transient: bool },
    /// A read on SQLite's bulk-read connection failed (see `bulk`).
    #[error("database error (SQLite bulk read): {0}")]
    Bulk(String),
    /// A write on the connection that rebuilds a SQLite file's read models failed (see
    /// `rows::SqliteSink`).
    #[error("database error (SQLite write): {0}")]
    SqliteWrite(#[source] rusqlite::Error),
}

impl StoreError {
    /// Whether retrying later may succeed (connection lost, database restarting, pool busy).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Database(e) => {
                matches!(
                    e,
                    sqlx::Error::Io(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::WorkerCrashed
                ) || e.as_database_error().is_some_and(|d| {
                    // 57P01 admin_shutdown, 57P03 cannot_connect_now, 08xxx connection exceptions,
                    // 40001/40P01 serialization failure / deadlock; SQLite 5/6 BUSY/LOCKED.
                    d.code().is_some_and(|c| {
                        c.starts_with("08") || ["57P01", "57P03", "40001", "40P01", "5", "6"].contains(&c.as_ref())
                    })
                })
            }
            StoreError::Batch { transient, .. } => *transient,
            StoreError::SqliteWrite(e) => matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            _ => false,
        }
    }

    pub(crate) fn batch(message: &str, transient: bool) -> StoreError {
        StoreError::Batch { message: message.to_owned(), transient }
    }
}

/// Connection settings beyond the URL.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Most connections the pool opens.
    pub max_connections: u32,
    /// How long a caller waits for a free connection.
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { max_connections: 16, acquire_timeout: Duration::from_secs(10) }
    }
}

/// The event store.
#[derive(Clone)]
pub struct Store {
    pub(crate) db: Db,
    sqlite_writer: Arc<tokio::sync::Mutex<()>>,
    /// The policy projections' fold, kept in step with the log (see `policy`).
    policy_runtime: Arc<tokio::sync::Mutex<policy::PolicyRuntime>>,
    /// Appends waiting for the next shared commit.
    group: Arc<group::GroupCommit>,
    /// PostgreSQL: the connections of the append batches, opened on the commit thread (see
    /// `group`), so that their answers wake that thread directly.
    batch_pool: Option<sqlx::PgPool>,
    /// SQLite: the one connection every write transaction runs on (see
    /// [`SQLITE_WRITER_CACHE_KIB`]).
    sqlite_write_pool: Option<sqlx::SqlitePool>,
    /// Held while the policy projections are folded ahead of the first append (see
    /// `policy::Store::spawn_policy_warm_up`); appends wait for it before taking the append lock.
    policy_warm_up: Arc<tokio::sync::Mutex<()>>,
    /// SQLite: the task that checkpoints the WAL outside the append commits (see `checkpoint`).
    checkpointer: Option<Arc<checkpoint::Checkpointer>>,
    /// SQLite database file: where verification, replays, statements and exports read (see
    /// `bulk` and `select`).
    bulk: Option<bulk::BulkReader>,
}

/// SQLite: the page cache of the connection that writes (8 MiB). Appends run on a
/// connection of their own, not one of the readers' pool: a connection that starts a
/// transaction after *another* connection's commit throws its whole page cache away, so
/// batches on whichever pooled connection was free read every index page they touched
/// again (about a pread per page), and they queued for a connection behind the readers.
/// The writer's own commits leave its cache valid, so the upper levels of the indexes it
/// writes stay in memory from one batch to the next.
///
/// Why not larger: on a database file under 1 GiB, every commit walks the whole cache. A
/// B-tree balance briefly renumbers a page to the never-used "pending byte" page (262,145
/// with 4 KiB pages), the cache remembers that number as the largest it has held, and the
/// commit's truncation of the cache beyond the file's end then scans every cached page
/// (SQLite 3.51's `pcache1TruncateUnsafe`). At 64 MiB that was about a seventh of the
/// writer's time. With 8 MiB (or SQLite's default 2 MiB) 64 concurrent commands were about
/// a fifth faster and a lone one unchanged within the spread; the bulk import, whose
/// transactions touch far more pages, lost up to a fifth (BENCHMARKS.md, twenty-ninth stop).
const SQLITE_WRITER_CACHE_KIB: u32 = 8 * 1024;

/// Advisory-lock key that serialises appends on PostgreSQL (any constant unique to us).
const APPEND_LOCK_KEY: i64 = 0x7465_6368_6d6b_7401; // "techmkt\x01"
/// `BEGIN` and the append lock as one simple query: one round trip to the server per batch,
/// not two (the key is our constant, not input).
static BEGIN_APPEND: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("BEGIN; SELECT pg_advisory_xact_lock({APPEND_LOCK_KEY})"));

static PG_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");
static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

impl Store {
    /// Opens the database at `url`: `sqlite:<path>` (created if missing, with its directory)
    /// or `postgres://...`.
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Store, StoreError> {
        let mut checkpointer = None;
        let mut bulk = None;
        let mut batch_pool = None;
        let mut sqlite_write_pool = None;
        let group = group::GroupCommit::start().map_err(StoreError::CommitThread)?;
        let db = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let connect = PgConnectOptions::from_str(url)?.application_name("techmarket");
            let pool = PgPoolOptions::new()
                .max_connections(options.max_connections)
                .acquire_timeout(options.acquire_timeout)
                .connect_with(connect.clone())
                .await?;
            batch_pool = Some(group.batch_pool(connect, options.acquire_timeout));
            Db::Postgres(pool)
        } else if url.starts_with("sqlite:") {
            let connect = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                // WAL lets readers proceed while one writer commits; FULL makes each commit
                // durable before it is acknowledged.
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(30))
                .foreign_keys(true)
                .pragma("wal_autocheckpoint", checkpoint::SAFETY_NET_PAGES.to_string());
            if let Some(dir) = Path::new(connect.get_filename()).parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|source| StoreError::CreateDir { path: dir.display().to_string(), source })?;
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(options.max_connections)
                .acquire_timeout(options.acquire_timeout)
                .connect_with(connect.clone())
                .await?;
            sqlite_write_pool = Some(
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(options.acquire_timeout)
                    // Kept open: closing it would throw its warm page cache away.
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .connect_with(
                        connect
                            .clone()
                            .pragma("cache_size", format!("-{SQLITE_WRITER_CACHE_KIB}"))
                            // A multi-row statement inside a transaction keeps a statement
                            // journal; in memory, not in a temporary file opened, written
                            // and closed for every statement of every batch.
                            .pragma("temp_store", "memory"),
                    )
                    .await?,
            );
            bulk = bulk::BulkReader::for_file(connect.get_filename());
            checkpointer = checkpoint::Checkpointer::spawn(connect).map(Arc::new);
            Db::Sqlite(pool)
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        };
        Ok(Store {
            db,
            sqlite_writer: Arc::new(tokio::sync::Mutex::new(())),
            policy_runtime: Arc::new(tokio::sync::Mutex::new(policy::PolicyRuntime::default())),
            group: Arc::new(group),
            batch_pool,
            sqlite_write_pool,
            policy_warm_up: Arc::default(),
            checkpointer,
            bulk,
        })
    }

    /// SQLite: WAL checkpoints completed by the store's checkpoint task (0 on PostgreSQL).
    pub fn wal_checkpoints(&self) -> u64 {
        self.checkpointer.as_ref().map_or(0, |c| c.completed())
    }

    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Postgres(_) => Backend::Postgres,
            Db::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Applies pending migrations. Safe to run on every start and from several processes.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.db {
            Db::Postgres(p) => PG_MIGRATOR.run(p).await?,
            Db::Sqlite(p) => SQLITE_MIGRATOR.run(p).await?,
        }
        Ok(())
    }

    /// Applies the migrations numbered up to `version` only: for tests of what a later
    /// migration makes of rows written before it.
    #[cfg(any(test, feature = "testkit"))]
    pub async fn migrate_to(&self, version: i64) -> Result<(), StoreError> {
        match &self.db {
            Db::Postgres(p) => PG_MIGRATOR.run_to(version, p).await?,
            Db::Sqlite(p) => SQLITE_MIGRATOR.run_to(version, p).await?,
        }
        Ok(())
    }

    /// Checks that the database answers (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(&self.db, |p| sqlx::query("SELECT 1").execute(p).await.map(|_| ()))?;
        Ok(())
    }

    pub async fn close(&self) {
        if let Some(p) = &self.batch_pool {
            p.close().await;
        }
        if let Some(p) = &self.sqlite_write_pool {
            p.close().await;
        }
        with_pool!(&self.db, |p| p.close().await);
    }

    /// Begins a write transaction that holds the log's append lock until commit: positions
    /// and the hash chain are assigned under it, so they are gap-free in commit order.
    pub(crate) async fn begin_append(&self) -> Result<Tx, StoreError> {
        self.begin_append_on(None).await
    }

    /// `begin_append` for an append batch: on PostgreSQL on one of the commit thread's own
    /// connections.
    pub(crate) async fn begin_batch(&self) -> Result<Tx, StoreError> {
        self.begin_append_on(self.batch_pool.as_ref()).await
    }

    async fn begin_append_on(&self, batch_pool: Option<&sqlx::PgPool>) -> Result<Tx, StoreError> {
        match &self.db {
            Db::Postgres(p) => {
                let p = batch_pool.unwrap_or(p);
                let t = p.begin_with(sqlx::AssertSqlSafe(BEGIN_APPEND.as_str())).await?;
                Ok(Tx::Postgres(t))
            }
            Db::Sqlite(_) => {
                let writer = self.sqlite_write_pool.as_ref().expect("Store::connect opens a SQLite store's writer");
                let turn = self.sqlite_writer.clone().lock_owned().await;
                let t = writer.begin_with("BEGIN IMMEDIATE").await?;
                Ok(Tx::Sqlite(t, SqliteWriter { _turn: turn, checkpointer: self.checkpointer.clone() }))
            }
        }
    }

    /// The current version of each stream (0 when it has no events).
    pub async fn stream_versions(&self, streams: &[StreamId]) -> Result<Vec<(StreamId, StreamVersion)>, StoreError> {
        let mut out = Vec::with_capacity(streams.len());
        for s in streams {
            let v: i64 = with_pool!(&self.db, |p| {
                sqlx::query_scalar("SELECT COALESCE(MAX(stream_version), 0) FROM events WHERE stream_id = $1")
                    .bind(s.as_str())
                    .fetch_one(p)
                    .await
            })?;
            out.push((s.clone(), v));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection's journal mode, synchronous level, automatic checkpoint mark and page cache.
    async fn settings(c: &mut sqlx::SqliteConnection) -> (String, i64, i64, i64) {
        let journal = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut *c).await.expect("journal");
        let synchronous = sqlx::query_scalar("PRAGMA synchronous").fetch_one(&mut *c).await.expect("synchronous");
        let mark = sqlx::query_scalar("PRAGMA wal_autocheckpoint").fetch_one(&mut *c).await.expect("mark");
        let cache = sqlx::query_scalar("PRAGMA cache_size").fetch_one(&mut *c).await.expect("cache");
        (journal, synchronous, mark, cache)
    }

    #[tokio::test]
    async fn every_sqlite_connection_runs_wal_with_full_sync_and_the_writer_its_own_cache_and_memory_journals() {
        let dir = std::env::temp_dir().join(format!("techmarket-pragmas-{}", uuid::Uuid::now_v7()));
        let url = format!("sqlite:{}", dir.join("ledger.db").display());
        let store = Store::connect(&url, &StoreOptions::default()).await.expect("open a SQLite store");
        let Db::Sqlite(pool) = &store.db else { unreachable!("a sqlite: URL opens SQLite") };
        // Two connections held at once: the settings are those of every pooled connection.
        let mut connections = vec![pool.acquire().await.expect("first"), pool.acquire().await.expect("second")];
        for c in &mut connections {
            let (journal, synchronous, mark, _) = settings(c).await;
            assert_eq!((journal.as_str(), synchronous, mark), ("wal", 2, 10_000), "WAL, FULL, the safety net");
        }
        drop(connections);
        // The writes' own connection: the same durability, and its larger page cache.
        let Tx::Sqlite(mut tx, _writer) = store.begin_append().await.expect("begin a write") else {
            unreachable!("a sqlite: URL writes on SQLite")
        };
        let (journal, synchronous, mark, cache) = settings(&mut tx).await;
        assert_eq!(
            (journal.as_str(), synchronous, mark, cache),
            ("wal", 2, 10_000, -i64::from(SQLITE_WRITER_CACHE_KIB)),
            "the writer: WAL, FULL, the safety net, its own page cache"
        );
        let temp_store: i64 = sqlx::query_scalar("PRAGMA temp_store").fetch_one(&mut *tx).await.expect("temp_store");
        assert_eq!(temp_store, 2, "the writer keeps its statement journals in memory");
        tx.rollback().await.expect("roll back");
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
