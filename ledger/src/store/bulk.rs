//! Reading many rows on SQLite, off sqlx: read-only connections of our own (rusqlite on the
//! libsqlite3 that sqlx links), on blocking threads.
//!
//! Why: sqlx runs each SQLite connection on a worker thread and hands every row to the
//! calling task (a channel send, a wake-up, a copy of each value). On the benchmark machine
//! that delivers 140,000-170,000 event rows/s, of which SQLite's own work is a few percent;
//! the same query through rusqlite reads 420,000 rows/s into owned rows and 780,000 rows/s
//! with borrowed text. Verification and replays read every event, so they read here; so do
//! statements and exports, which read every line of a year (through `select`).
//!
//! Only committed rows are visible (each query reads one WAL snapshot), as through sqlx, and
//! the rows are the same: `recorded_at` is decoded as sqlx writes it (RFC 3339); any other
//! text there is reported as an unreadable row, never guessed at. Verification hashes the
//! stored bytes as they are; replays check them as UTF-8 when they turn them into events.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags};

use super::select::Param;
use super::{StoreError, StoredEvent};
use crate::chain::ChainedFields;
use crate::event::Position;

/// Opens read-only connections to one SQLite database file.
#[derive(Debug, Clone)]
pub(crate) struct BulkReader {
    path: PathBuf,
    /// Connections kept between short reads (a page of an export, a statement), which would
    /// otherwise each open the file and parse the schema again.
    pub(super) idle: Arc<Mutex<Vec<Connection>>>,
}

/// Connections kept idle, at most (more may be open at once; the rest are closed after use).
const IDLE_MAX: usize = 4;

/// How much of the database file a bulk reader maps (SQLite's default ceiling, 2 GiB less
/// 64 KiB; beyond it pages are read as usual).
const MMAP_BYTES: i64 = 0x7fff_0000;

impl BulkReader {
    /// For a database file; `None` for an in-memory database, which no other connection can
    /// open (its readers stay on sqlx).
    pub(crate) fn for_file(path: &Path) -> Option<BulkReader> {
        path.is_file().then(|| BulkReader { path: path.to_owned(), idle: Arc::default() })
    }

    /// The database file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A connection for short reads (pages of lines, statements). It reads through SQLite's
    /// page cache and does not map the file: the mapped pages would count in the process's
    /// resident memory, which an export keeps flat (with the mapping, an export of the
    /// benchmark's year ran 20 % faster but peaked at about 163 MiB instead of 32 MiB).
    fn open_unmapped(&self) -> Result<Connection, StoreError> {
        let conn =
            Connection::open_with_flags(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(bulk_error)?;
        // A reader waits only while another connection recovers the WAL.
        conn.busy_timeout(Duration::from_secs(30)).map_err(bulk_error)?;
        Ok(conn)
    }

    /// Runs `read` on a blocking thread with a connection kept from an earlier read, or a new
    /// one; the connection is kept for the next read afterwards (it holds no snapshot between
    /// statements).
    pub(crate) async fn with_connection<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = self.clone();
        tokio::task::spawn_blocking(move || {
            let kept = reader.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop();
            let conn = match kept {
                Some(conn) => conn,
                None => reader.open_unmapped()?,
            };
            let out = read(&conn);
            let mut idle = reader.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if idle.len() < IDLE_MAX && conn.is_autocommit() {
                idle.push(conn);
            }
            out
        })
        .await
        .map_err(|e| StoreError::Bulk(format!("the read's thread failed: {e}")))?
    }

    /// A connection for reading the whole log (verification, replays): it maps the file.
    pub(crate) fn open(&self) -> Result<Connection, StoreError> {
        let conn = self.open_unmapped()?;
        // Pages read from the file's mapping instead of copied out of the page cache: 7 %
        // faster verification here. Read-only, and nothing truncates the file under it (no
        // VACUUM; checkpoints only grow it).
        conn.pragma_update(None, "mmap_size", MMAP_BYTES).map_err(bulk_error)?;
        Ok(conn)
    }
}

pub(crate) fn bulk_error(e: rusqlite::Error) -> StoreError {
    StoreError::Bulk(e.to_string())
}

/// `recorded_at` as sqlx writes a `DateTime<Utc>` on SQLite.
pub(crate) fn recorded_at(position: Position, stored: &[u8]) -> Result<DateTime<Utc>, StoreError> {
    let text = text(position, "recorded_at", stored)?;
    DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc)).map_err(|e| {
        StoreError::Inconsistent(format!("event {position} has recorded_at {text:?}, not an RFC 3339 time: {e}"))
    })
}

fn text<'t>(position: Position, column: &str, stored: &'t [u8]) -> Result<&'t str, StoreError> {
    std::str::from_utf8(stored)
        .map_err(|e| StoreError::Inconsistent(format!("event {position} has a {column} that is not UTF-8: {e}")))
}

/// The columns of one row of `read::EVENTS_IN_RANGE`, borrowed from SQLite's row buffer: the
/// texts as stored bytes, checked as UTF-8 only when turned into an owned event.
pub(crate) struct EventRowRef<'r> {
    pub position: Position,
    pub stream_id: &'r [u8],
    pub stream_version: i64,
    pub event_type: &'r [u8],
    pub schema_version: i32,
    pub payload: &'r [u8],
    pub metadata: &'r [u8],
    pub recorded_at: &'r [u8],
    pub hash: &'r [u8],
}

impl<'r> EventRowRef<'r> {
    pub(crate) fn read(row: &'r rusqlite::Row<'r>) -> Result<EventRowRef<'r>, StoreError> {
        let bytes = |i: usize| -> Result<&'r [u8], StoreError> {
            row.get_ref(i).and_then(|v| v.as_bytes().map_err(Into::into)).map_err(bulk_error)
        };
        Ok(EventRowRef {
            position: row.get(0).map_err(bulk_error)?,
            stream_id: bytes(1)?,
            stream_version: row.get(2).map_err(bulk_error)?,
            event_type: bytes(3)?,
            schema_version: row.get(4).map_err(bulk_error)?,
            payload: bytes(5)?,
            metadata: bytes(6)?,
            recorded_at: bytes(7)?,
            hash: bytes(8)?,
        })
    }

    /// The fields the hash chain covers, as stored.
    pub(crate) fn chained(&self) -> Result<ChainedFields<'r, [u8]>, StoreError> {
        Ok(ChainedFields {
            position: self.position,
            stream_id: self.stream_id,
            stream_version: self.stream_version,
            event_type: self.event_type,
            schema_version: self.schema_version,
            payload: self.payload,
            metadata: self.metadata,
            recorded_at_micros: recorded_at(self.position, self.recorded_at)?.timestamp_micros(),
        })
    }

    pub(crate) fn to_owned(&self) -> Result<StoredEvent, StoreError> {
        let text = |column, stored| text(self.position, column, stored).map(str::to_owned);
        Ok(StoredEvent {
            position: self.position,
            stream_id: text("stream_id", self.stream_id)?,
            stream_version: self.stream_version,
            event_type: text("event_type", self.event_type)?,
            schema_version: self.schema_version,
            payload: text("payload", self.payload)?,
            metadata: text("metadata", self.metadata)?,
            recorded_at: recorded_at(self.position, self.recorded_at)?,
            hash: self.hash.to_vec(),
        })
    }
}

/// Up to `limit` events (of those `which` selects) after `after` up to `upto` (inclusive),
/// in log order.
pub(crate) fn stored_page(
    conn: &Connection,
    which: super::read::Which,
    after: Position,
    upto: Position,
    limit: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut statement = conn.prepare(which.sql()).map_err(bulk_error)?;
    super::select::bind_numbered(&mut statement, &[Param::BigInt(after), Param::BigInt(upto), Param::BigInt(limit)])?;
    let mut rows = statement.raw_query();
    let mut page = Vec::with_capacity(usize::try_from(limit).unwrap_or(0).min(8_192));
    while let Some(row) = rows.next().map_err(bulk_error)? {
        page.push(EventRowRef::read(row)?.to_owned()?);
    }
    Ok(page)
}
