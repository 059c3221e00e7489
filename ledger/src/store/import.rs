//! Bulk import: appends events that were already decided elsewhere (the data generator, a
//! migration from another system) at the end of the log, in their order, many rows per
//! statement.
//!
//! Every row is exactly what the normal append path would have written for the same event,
//! metadata and recording instant: the next gap-free position, the stream's next version,
//! the canonical payload and metadata JSON, the recording instant truncated to microseconds,
//! and the hash continuing the chain (`crate::chain`). So `verify-ledger` accepts an imported
//! log, and a log read back and imported again reproduces the same bytes and hashes.
//!
//! What it does NOT do, by design (this is the difference from `append_batch`):
//! - decide: the events are trusted to be what the domain decided (no expected-version
//!   check, no unique-value claims, no idempotency keys);
//! - update the read models or the policy projections: callers run
//!   [`Store::rebuild_projections`] afterwards, which also re-claims the unique values and
//!   stops at the first clash. Until then the read models lag the log.
//!
//! Rows are written with multi-row INSERTs of [`ROWS_PER_STATEMENT`] rows (9 parameters each,
//! well under SQLite's 32,766 per statement), [`ROWS_PER_TRANSACTION`] rows per transaction.
//! Each transaction takes the append lock and continues from the head it finds, so appends
//! by other writers between two transactions only move the imported events further down the
//! log (their stream versions are then read again from the log).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{Store, StoreError, Tx, with_conn};
use crate::chain::{ChainedFields, Hash, event_hash};
use crate::event::{Event, Metadata, Position, StreamVersion, canonical_json};
use crate::ids::StreamId;
use crate::time::to_micros;

/// Rows per INSERT statement.
const ROWS_PER_STATEMENT: usize = 1_000;
/// Rows per transaction (each takes the append lock once and commits once).
const ROWS_PER_TRANSACTION: usize = 20_000;
/// Streams per version lookup (`IN (...)` list).
const STREAMS_PER_LOOKUP: usize = 500;

const COLUMNS: usize = 9;

/// One row of the `events` table, ready to bind.
struct Row {
    position: Position,
    stream_id: StreamId,
    stream_version: StreamVersion,
    event_type: &'static str,
    schema_version: i32,
    payload: String,
    metadata: Arc<str>,
    recorded_at: DateTime<Utc>,
    hash: Hash,
}

impl Store {
    /// Appends `events` (each with its metadata and recording instant) at the end of the log,
    /// in order; returns the new head position. Read models are not updated: run
    /// [`Store::rebuild_projections`] afterwards.
    pub async fn import_events(&self, events: &[(Event, Metadata, DateTime<Utc>)]) -> Result<Position, StoreError> {
        self.import_events_with_progress(events, |_| {}).await
    }

    /// [`Store::import_events`], calling `progress` with the number of events imported so far
    /// after each transaction.
    pub async fn import_events_with_progress(
        &self,
        events: &[(Event, Metadata, DateTime<Utc>)],
        mut progress: impl FnMut(usize),
    ) -> Result<Position, StoreError> {
        let mut versions: HashMap<StreamId, StreamVersion> = HashMap::new();
        // The head our last transaction left, and whether every stream in the log up to it
        // was written by this import (then a stream we have not seen is new: version 0).
        let mut ours: Option<(Position, Hash)> = None;
        let mut all_streams_ours = false;
        let mut head_position = 0;
        let mut done = 0;
        let numbered = matches!(self.db, super::Db::Postgres(_));
        let insert_full: Arc<str> = insert_sql(ROWS_PER_STATEMENT, numbered).into();
        for chunk in events.chunks(ROWS_PER_TRANSACTION) {
            let mut tx = self.begin_append().await?;
            let (mut position, mut hash) = super::append::head(&mut tx).await?;
            match ours {
                None => all_streams_ours = position == 0,
                Some(head) if head == (position, hash) => {}
                Some(_) => {
                    // Another writer appended since our last commit: what we know of stream
                    // versions may be stale.
                    versions.clear();
                    all_streams_ours = false;
                }
            }
            if !all_streams_ours {
                load_versions(&mut tx, chunk, &mut versions).await?;
            }
            let mut rows = Vec::with_capacity(chunk.len());
            let mut previous_metadata: Option<(&Metadata, Arc<str>)> = None;
            for (event, metadata, recorded_at) in chunk {
                let stream_id = event.stream_id();
                let version = versions.entry(stream_id.clone()).or_insert(0);
                *version += 1;
                position += 1;
                // Events of one command share their metadata: serialise it once.
                let metadata_json = match &previous_metadata {
                    Some((m, json)) if *m == metadata => json.clone(),
                    _ => {
                        let json: Arc<str> =
                            canonical_json(&serde_json::to_value(metadata).expect("metadata serialises")).into();
                        previous_metadata = Some((metadata, json.clone()));
                        json
                    }
                };
                let payload = event.payload_json();
                let recorded_at = to_micros(*recorded_at);
                hash = event_hash(
                    &hash,
                    &ChainedFields {
                        position,
                        stream_id: stream_id.as_str(),
                        stream_version: *version,
                        event_type: event.event_type(),
                        schema_version: event.schema_version(),
                        payload: &payload,
                        metadata: &metadata_json,
                        recorded_at_micros: recorded_at.timestamp_micros(),
                    },
                );
                rows.push(Row {
                    position,
                    stream_id,
                    stream_version: *version,
                    event_type: event.event_type(),
                    schema_version: event.schema_version(),
                    payload,
                    metadata: metadata_json,
                    recorded_at,
                    hash,
                });
            }
            for statement_rows in rows.chunks(ROWS_PER_STATEMENT) {
                let sql = if statement_rows.len() == ROWS_PER_STATEMENT {
                    insert_full.clone()
                } else {
                    insert_sql(statement_rows.len(), numbered).into()
                };
                insert_rows(&mut tx, sql, statement_rows).await?;
            }
            tx.commit().await?;
            ours = Some((position, hash));
            head_position = position;
            done += chunk.len();
            progress(done);
        }
        Ok(head_position)
    }
}

/// `INSERT INTO events (...) VALUES ($1, ... $9), ($10, ...) ...` for `rows` rows; with
/// anonymous `?` placeholders when not `numbered` (SQLite: binding thousands of `$n`
/// parameters is quadratic there, because each bind looks its parameter's name up in a list).
fn insert_sql(rows: usize, numbered: bool) -> String {
    let mut sql = String::with_capacity(120 + rows * 60);
    sql.push_str(
        "INSERT INTO events (position, stream_id, stream_version, event_type, schema_version, payload, metadata, recorded_at, hash) VALUES ",
    );
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..COLUMNS {
            if c > 0 {
                sql.push_str(", ");
            }
            if numbered {
                sql.push('$');
                sql.push_str(&(r * COLUMNS + c + 1).to_string());
            } else {
                sql.push('?');
            }
        }
        sql.push(')');
    }
    sql
}

async fn insert_rows(tx: &mut Tx, sql: Arc<str>, rows: &[Row]) -> Result<(), StoreError> {
    with_conn!(tx, |c| {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for r in rows {
            query = query
                .bind(r.position)
                .bind(r.stream_id.as_str())
                .bind(r.stream_version)
                .bind(r.event_type)
                .bind(r.schema_version)
                .bind(r.payload.as_str())
                .bind(&*r.metadata)
                .bind(r.recorded_at)
                .bind(r.hash.as_slice());
        }
        query.execute(&mut *c).await.map(|_| ())
    })?;
    Ok(())
}

/// Reads the current version of every stream of `chunk` that `versions` does not hold yet
/// (0 for a stream with no events), through the transaction that holds the append lock.
async fn load_versions(
    tx: &mut Tx,
    chunk: &[(Event, Metadata, DateTime<Utc>)],
    versions: &mut HashMap<StreamId, StreamVersion>,
) -> Result<(), StoreError> {
    let mut missing: Vec<StreamId> =
        chunk.iter().map(|(e, _, _)| e.stream_id()).filter(|s| !versions.contains_key(s)).collect();
    missing.sort();
    missing.dedup();
    for streams in missing.chunks(STREAMS_PER_LOOKUP) {
        let placeholders = (1..=streams.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
        let sql: Arc<str> = format!(
            "SELECT stream_id, MAX(stream_version) FROM events WHERE stream_id IN ({placeholders}) GROUP BY stream_id"
        )
        .into();
        let found: Vec<(String, i64)> = with_conn!(tx, |c| {
            let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
            for s in streams {
                query = query.bind(s.as_str());
            }
            query.fetch_all(&mut *c).await
        })?;
        for s in streams {
            versions.insert(s.clone(), 0);
        }
        for (stream, version) in found {
            versions.insert(StreamId(stream), version);
        }
    }
    Ok(())
}
