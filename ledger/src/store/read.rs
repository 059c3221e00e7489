//! Reading the log: one stream, several streams (to load a decision's facts), or everything
//! after a position (catch-up readers, replays, verification). Every read goes through the
//! upcaster (`Event::decode`), so callers only ever see current event shapes.

use chrono::{DateTime, Utc};

use super::{Store, StoreError, with_pool};
use crate::chain::Hash;
use crate::event::*;
use crate::ids::StreamId;

/// An event row exactly as stored (before decoding): what the hash chain covers.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredEvent {
    pub position: i64,
    pub stream_id: String,
    pub stream_version: i64,
    pub event_type: String,
    pub schema_version: i32,
    pub payload: String,
    pub metadata: String,
    pub recorded_at: DateTime<Utc>,
    pub hash: Vec<u8>,
}

/// The columns of an event row, in `StoredEvent`'s order (a macro, so that `concat!` can
/// build whole statements from it).
macro_rules! event_columns {
    () => {
        "position, stream_id, stream_version, event_type, schema_version, payload, metadata, recorded_at, hash"
    };
}

const COLUMNS: &str = event_columns!();

/// Up to `$3` events after `$1` up to `$2` (inclusive), in log order (catch-up, replays,
/// rebuilds, verification; through sqlx, and through rusqlite with `select::bind_numbered`).
pub(super) const EVENTS_IN_RANGE: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE position > $1 AND position <= $2 ORDER BY position LIMIT $3"
);

/// `EVENTS_IN_RANGE` keeping only the event types the policy fold reads
/// (`projection::EVENT_TYPES`): a policy replay of a SQLite file passes over demands, matches
/// and brokers without reading or decoding them (about a fifth of a year's events). SQLite
/// always reads it as a range of the rowid; PostgreSQL's plan for it depends on the table's
/// statistics, so replays there read every event (see `Store::decoded_pages`).
pub(super) static POLICY_EVENTS_IN_RANGE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let types: Vec<String> = crate::projection::EVENT_TYPES.iter().map(|t| format!("'{t}'")).collect();
    format!(
        "SELECT {COLUMNS} FROM events WHERE position > $1 AND position <= $2 AND event_type IN ({}) \
         ORDER BY position LIMIT $3",
        types.join(", ")
    )
});

/// Which events a read of the log returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Which {
    All,
    /// Only those the policy fold reads (`POLICY_EVENTS_IN_RANGE`).
    Policy,
}

impl Which {
    pub(super) fn sql(self) -> &'static str {
        match self {
            Which::All => EVENTS_IN_RANGE,
            Which::Policy => POLICY_EVENTS_IN_RANGE.as_str(),
        }
    }
}

impl StoredEvent {
    pub fn decode(&self) -> Result<RecordedEvent, StoreError> {
        StoredEventRef {
            position: self.position,
            stream_id: &self.stream_id,
            stream_version: self.stream_version,
            event_type: &self.event_type,
            schema_version: self.schema_version,
            payload: &self.payload,
            metadata: &self.metadata,
            recorded_at: self.recorded_at,
            hash: &self.hash,
        }
        .decode()
    }
}

/// A [`StoredEvent`] whose text lies in someone else's buffer (a page of a binary `COPY`:
/// `pgcopy::decode_page`), decoded without first copying it into strings of its own.
pub(super) struct StoredEventRef<'a> {
    pub position: i64,
    pub stream_id: &'a str,
    pub stream_version: i64,
    pub event_type: &'a str,
    pub schema_version: i32,
    pub payload: &'a str,
    pub metadata: &'a str,
    pub recorded_at: DateTime<Utc>,
    pub hash: &'a [u8],
}

impl StoredEventRef<'_> {
    pub(super) fn decode(&self) -> Result<RecordedEvent, StoreError> {
        let event = Event::decode(self.event_type, self.schema_version, self.payload)
            .map_err(|source| StoreError::Decode { position: self.position, source })?;
        let metadata: Metadata = serde_json::from_str(self.metadata).map_err(|e| StoreError::Decode {
            position: self.position,
            source: DecodeError::Payload { event_type: "metadata".into(), source: e },
        })?;
        let hash: Hash = super::append::to_hash(self.position, self.hash)?;
        Ok(RecordedEvent {
            position: self.position,
            stream_id: StreamId(self.stream_id.to_owned()),
            stream_version: self.stream_version,
            stored_schema_version: self.schema_version,
            event,
            metadata,
            recorded_at: self.recorded_at,
            hash,
        })
    }
}

impl Store {
    /// All events of one stream, in version order.
    pub async fn read_stream(&self, stream: &StreamId) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_stream_after(stream, 0, i64::MAX).await
    }

    /// Events of one stream after `after_version`, at most `limit`.
    pub async fn read_stream_after(
        &self,
        stream: &StreamId,
        after_version: StreamVersion,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        // The limit is written into the statement, not bound: the bundled SQLite (3.51)
        // prepares a statement with a bound `LIMIT` again every time it is bound (checked with
        // `SQLITE_STMTSTATUS_REPREPARE`: once per execution, even for the same value).
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE stream_id = $1 AND stream_version > $2 ORDER BY stream_version LIMIT {}",
            limit.max(0)
        );
        let rows: Vec<StoredEvent> = with_pool!(&self.db, |p| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(stream.as_str()).bind(after_version).fetch_all(p).await
        })?;
        rows.iter().map(StoredEvent::decode).collect()
    }

    /// Stored rows after `after` in position order, at most `limit` (undecoded).
    pub async fn read_stored_after(&self, after: Position, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2");
        let rows = with_pool!(&self.db, |p| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(after).bind(limit).fetch_all(p).await
        })?;
        Ok(rows)
    }

    /// Stored rows after `after` up to `upto` (inclusive) in position order, at most `limit`
    /// (undecoded).
    pub(super) async fn stored_in_range(
        &self,
        after: Position,
        upto: Position,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        Ok(with_pool!(&self.db, |p| {
            sqlx::query_as(EVENTS_IN_RANGE).bind(after).bind(upto).bind(limit).fetch_all(p).await
        })?)
    }

    /// Events after `after` in position order, at most `limit`. Because positions are
    /// assigned under the append lock in commit order, a reader that continues from the last
    /// position it saw never misses an event committed later.
    pub async fn read_all_after(&self, after: Position, limit: i64) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_stored_after(after, limit).await?.iter().map(StoredEvent::decode).collect()
    }

    /// The last position and its hash; `None` for an empty log.
    pub async fn head(&self) -> Result<Option<(Position, Hash)>, StoreError> {
        let row: Option<(i64, Vec<u8>)> = with_pool!(&self.db, |p| {
            sqlx::query_as("SELECT position, hash FROM events ORDER BY position DESC LIMIT 1").fetch_optional(p).await
        })?;
        row.map(|(position, hash)| Ok((position, super::append::to_hash(position, &hash)?))).transpose()
    }

    /// The hash of the event at `position` (the chain value a statement as of it cites).
    pub async fn hash_at(&self, position: Position) -> Result<Option<Hash>, StoreError> {
        let row: Option<Vec<u8>> = with_pool!(&self.db, |p| {
            sqlx::query_scalar("SELECT hash FROM events WHERE position = $1").bind(position).fetch_optional(p).await
        })?;
        row.map(|hash| super::append::to_hash(position, &hash)).transpose()
    }

    /// The last position recorded at or before `at` (for statements "as of" a time).
    pub async fn position_at(&self, at: DateTime<Utc>) -> Result<Position, StoreError> {
        let p: Option<i64> = with_pool!(&self.db, |p| {
            sqlx::query_scalar("SELECT MAX(position) FROM events WHERE recorded_at <= $1").bind(at).fetch_one(p).await
        })?;
        Ok(p.unwrap_or(0))
    }

    /// The whole event lists of several streams, for loading a decision's facts. Only what a
    /// decision folds is read and decoded (every command on a stream not in the state cache
    /// pays for this read), by a statement with nothing but the stream bound (see
    /// `read_stream_after` on a bound `LIMIT`).
    pub async fn read_streams(&self, streams: &[StreamId]) -> Result<Vec<(StreamId, Vec<Event>)>, StoreError> {
        let mut out = Vec::with_capacity(streams.len());
        for stream in streams {
            let rows: Vec<(i64, i64, String, i32, String)> = with_pool!(&self.db, |p| {
                sqlx::query_as(
                    "SELECT position, stream_version, event_type, schema_version, payload FROM events \
                     WHERE stream_id = $1 ORDER BY stream_version",
                )
                .bind(stream.as_str())
                .fetch_all(p)
                .await
            })?;
            let mut events = Vec::with_capacity(rows.len());
            for (expected, (position, version, event_type, schema_version, payload)) in (1..).zip(rows) {
                if version != expected {
                    return Err(StoreError::Inconsistent(format!(
                        "stream {stream} has version {version} where {expected} was due (event {position})"
                    )));
                }
                events.push(
                    Event::decode(&event_type, schema_version, &payload)
                        .map_err(|source| StoreError::Decode { position, source })?,
                );
            }
            out.push((stream.clone(), events));
        }
        Ok(out)
    }
}

impl Store {
    /// The request fingerprint and receipt stored under an idempotency key, if any.
    pub async fn idempotency_receipt(
        &self,
        scope: &str,
        key: &str,
    ) -> Result<Option<(String, super::Receipt)>, StoreError> {
        let row: Option<(String, String)> = with_pool!(&self.db, |p| {
            sqlx::query_as("SELECT request_hash, receipt FROM idempotency_keys WHERE scope = $1 AND key = $2")
                .bind(scope)
                .bind(key)
                .fetch_optional(p)
                .await
        })?;
        row.map(|(hash, receipt)| {
            let receipt = serde_json::from_str(&receipt)
                .map_err(|e| StoreError::Inconsistent(format!("stored receipt for key {key} is unreadable: {e}")))?;
            Ok((hash, receipt))
        })
        .transpose()
    }
}

impl Store {
    /// Sealed personal data by reference (for finance, who may open it).
    pub async fn personal_data(
        &self,
        references: &[uuid::Uuid],
    ) -> Result<Vec<crate::personal::PersonalDataRow>, StoreError> {
        let mut rows = Vec::with_capacity(references.len());
        for reference in references {
            let row: Option<(String, Vec<u8>, Vec<u8>)> = with_pool!(&self.db, |p| {
                sqlx::query_as("SELECT key_id, nonce, ciphertext FROM personal_data WHERE reference = $1")
                    .bind(reference.to_string())
                    .fetch_optional(p)
                    .await
            })?;
            if let Some((key_id, nonce, ciphertext)) = row {
                rows.push(crate::personal::PersonalDataRow { reference: *reference, key_id, nonce, ciphertext });
            }
        }
        Ok(rows)
    }
}
