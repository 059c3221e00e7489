//! Appending to the log. One transaction takes a *batch* of requests: the append lock is
//! taken once, each request runs inside its own savepoint (so a refused request leaves its
//! neighbours untouched), positions and hashes continue from the head, the read models are
//! updated, and a single commit makes the whole batch durable before anyone is answered.
//! `group` assembles the batches from concurrent callers (group commit).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::rows::{Expect, Rows, values_list};
use super::{Store, StoreError, Tx, execute, with_conn};
use crate::chain::{ChainedFields, GENESIS, Hash, event_hash};
use crate::event::*;
use crate::ids::StreamId;
use crate::readmodel::{self, Change};
use crate::time::to_micros;

/// A caller's idempotency key: the first request with it is carried out, repeats return its
/// receipt. `request_hash` fingerprints the request so a key reused for different input is
/// refused instead of silently answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyClaim {
    pub scope: String,
    pub key: String,
    pub request_hash: String,
}

/// What a decided command asks the store to record.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    /// Every stream the decision read, with the version it saw (0: the stream did not exist).
    pub expected: Vec<(StreamId, StreamVersion)>,
    pub events: Vec<Event>,
    pub metadata: Metadata,
    pub idempotency: Option<IdempotencyClaim>,
    /// The id the caller is told about (the thing created or acted on).
    pub subject_id: Uuid,
    /// Sealed personal data the events refer to, stored with them (see `personal`).
    pub personal_data: Vec<crate::personal::PersonalDataRow>,
}

/// What a caller is told once its events are durable; stored with the idempotency key so a
/// repeat gets exactly the same answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub command: String,
    pub subject_id: Uuid,
    pub first_position: Position,
    pub last_position: Position,
    pub event_count: i64,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Appended {
    pub receipt: Receipt,
    pub events: Vec<RecordedEvent>,
}

#[derive(Debug, Clone)]
pub enum AppendOutcome {
    Appended(Appended),
    /// The idempotency key was used before with the same request: nothing was appended.
    AlreadyDone(Receipt),
}

/// Why one request of a batch was not appended. Its neighbours are unaffected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("stream {stream} is at version {actual}, the decision saw {expected}")]
    Conflict { stream: StreamId, expected: StreamVersion, actual: StreamVersion },
    #[error("idempotency key `{key}` was already used for a different request")]
    KeyReused { key: String },
    #[error("`{claim}` is already taken by {owner}")]
    Taken { claim: String, owner: String },
}

/// Why a batch was not committed, and whether its commit was attempted (then its outcome is
/// unknown: the connection may have failed after the database made it durable).
#[derive(Debug)]
pub(crate) enum BatchFailure {
    BeforeCommit(StoreError),
    AtCommit(StoreError),
}

impl Store {
    /// Appends a batch in one transaction; returns one result per request, in order. An
    /// `Err` means nothing of the batch was committed, as far as we know.
    pub async fn append_batch(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<Result<AppendOutcome, Refusal>>, StoreError> {
        self.append_batch_inner(&requests)
            .await
            .map_err(|(BatchFailure::BeforeCommit(e) | BatchFailure::AtCommit(e))| e)
    }

    pub(crate) async fn append_batch_inner(
        &self,
        requests: &[AppendRequest],
    ) -> Result<Vec<Result<AppendOutcome, Refusal>>, BatchFailure> {
        // A warm-up in progress folds the log without the append lock; waiting for it here,
        // outside the lock, leaves only what was appended since for `caught_up` under it.
        drop(self.policy_warm_up.lock().await);
        let mut tx = self.begin_batch().await.map_err(BatchFailure::BeforeCommit)?;
        let mut runtime = self.policy_runtime.lock().await;
        // Whatever fails after the fold has seen the batch leaves it holding events that were
        // never committed: drop it, the next append rebuilds it from the log.
        let results = match append_in(&mut tx, &mut runtime, requests).await {
            Ok(results) => results,
            Err(e) => {
                runtime.invalidate();
                return Err(BatchFailure::BeforeCommit(e));
            }
        };
        if let Err(e) = tx.commit().await {
            runtime.invalidate();
            return Err(BatchFailure::AtCommit(e.into()));
        }
        Ok(results)
    }
}

async fn append_in(
    tx: &mut Tx,
    runtime: &mut super::policy::PolicyRuntime,
    requests: &[AppendRequest],
) -> Result<Vec<Result<AppendOutcome, Refusal>>, StoreError> {
    let (mut head_position, mut head_hash) = head(tx).await?;
    let projections = super::policy::caught_up(tx, runtime, head_position).await?;
    let recorded_at = to_micros(Utc::now());
    let mut batch = Batch::load(tx, requests).await?;
    let mut results = Vec::with_capacity(requests.len());
    for request in requests {
        let result = append_one(tx, projections, &mut batch, request, head_position, head_hash, recorded_at).await?;
        if let Ok(AppendOutcome::Appended(a)) = &result {
            let last = a.events.last().expect("an append has events");
            assert_eq!(last.position, head_position + a.receipt.event_count, "positions are gap-free");
            head_position = last.position;
            head_hash = last.hash;
        }
        results.push(result);
    }
    batch.write(tx).await?;
    assert_eq!(projections.position(), head_position, "the policy fold has seen exactly the log");
    super::project::record_projection_positions(tx, &[readmodel::PROJECTION, super::policy::PROJECTION], head_position)
        .await?;
    Ok(results)
}

const EVENTS_INSERT: &str = "INSERT INTO events (position, stream_id, stream_version, event_type, schema_version, payload, metadata, recorded_at, hash) VALUES";
const KEYS_INSERT: &str = "INSERT INTO idempotency_keys (scope, key, request_hash, receipt, position) VALUES";
/// Streams or keys per `IN (...)` lookup.
const LOOKUP_CHUNK: usize = 500;

/// What a batch knows and writes beyond one request: the stream versions and idempotency
/// keys it read once for all its requests (kept current as its requests append), and the
/// rows (events, keys, payments, policy outputs) it writes with a few multi-row statements at
/// its end.
/// Reads of these tables inside the batch go through here, never to the unwritten tables.
struct Batch {
    versions: HashMap<StreamId, StreamVersion>,
    keys: HashMap<(String, String), (String, Receipt)>,
    events: Rows,
    key_rows: Rows,
    read_model: super::project::Deferred,
    policy: super::policy::PolicyWriter,
}

impl Batch {
    async fn load(tx: &mut Tx, requests: &[AppendRequest]) -> Result<Batch, StoreError> {
        let numbered = matches!(tx, Tx::Postgres(_));
        let mut streams: Vec<&str> = requests.iter().flat_map(|r| r.expected.iter().map(|(s, _)| s.as_str())).collect();
        streams.sort_unstable();
        streams.dedup();
        let mut versions = HashMap::with_capacity(streams.len());
        for chunk in streams.chunks(LOOKUP_CHUNK) {
            // One index lookup per stream (a correlated MAX): with `IN (...) GROUP BY` the
            // PostgreSQL planner chose to scan the events table once the list was long.
            let sql = format!(
                "SELECT v.column1, (SELECT MAX(e.stream_version) FROM events e WHERE e.stream_id = v.column1) \
                 FROM (VALUES {}) AS v",
                values_list(chunk.len(), 1, numbered)
            );
            let found: Vec<(String, Option<i64>)> = with_conn!(tx, |c| {
                let mut query =
                    sqlx::query_as(sqlx::AssertSqlSafe(sql)).persistent(chunk.len() <= super::rows::PREPARED_ROWS_MAX);
                for s in chunk {
                    query = query.bind(*s);
                }
                query.fetch_all(&mut *c).await
            })?;
            versions.extend(found.into_iter().filter_map(|(s, v)| Some((StreamId(s), v?))));
        }
        let wanted: std::collections::HashSet<(&str, &str)> = requests
            .iter()
            .filter_map(|r| r.idempotency.as_ref())
            .map(|c| (c.scope.as_str(), c.key.as_str()))
            .collect();
        let mut pairs: Vec<(&str, &str)> = wanted.iter().copied().collect();
        pairs.sort_unstable();
        let mut keys = HashMap::new();
        for chunk in pairs.chunks(LOOKUP_CHUNK) {
            // Joined on the whole primary key (scope, key), so each pair is an index lookup.
            let sql = format!(
                "SELECT k.scope, k.key, k.request_hash, k.receipt FROM (VALUES {}) AS v \
                 JOIN idempotency_keys k ON k.scope = v.column1 AND k.key = v.column2",
                values_list(chunk.len(), 2, numbered)
            );
            let found: Vec<(String, String, String, String)> = with_conn!(tx, |c| {
                let mut query =
                    sqlx::query_as(sqlx::AssertSqlSafe(sql)).persistent(chunk.len() <= super::rows::PREPARED_ROWS_MAX);
                for (scope, key) in chunk {
                    query = query.bind(*scope).bind(*key);
                }
                query.fetch_all(&mut *c).await
            })?;
            for (scope, key, request_hash, receipt) in found {
                if !wanted.contains(&(scope.as_str(), key.as_str())) {
                    continue;
                }
                let receipt: Receipt = serde_json::from_str(&receipt).map_err(|e| {
                    StoreError::Inconsistent(format!("stored receipt for key {key} is unreadable: {e}"))
                })?;
                keys.insert((scope, key), (request_hash, receipt));
            }
        }
        Ok(Batch {
            versions,
            keys,
            events: Rows::new(EVENTS_INSERT, 9, ""),
            key_rows: Rows::new(KEYS_INSERT, 5, ""),
            read_model: super::project::Deferred::default(),
            policy: super::policy::PolicyWriter::default(),
        })
    }

    fn version(&self, stream: &StreamId) -> StreamVersion {
        self.versions.get(stream).copied().unwrap_or(0)
    }

    async fn write(&mut self, tx: &mut Tx) -> Result<(), StoreError> {
        self.events.write(tx, Expect::Any).await?;
        self.key_rows.write(tx, Expect::Any).await?;
        self.read_model.flush(tx).await?;
        self.policy.write(tx).await
    }
}

/// The last position and hash of the log (0 and the genesis hash when empty).
pub(super) async fn head(tx: &mut Tx) -> Result<(Position, Hash), StoreError> {
    let row: Option<(i64, Vec<u8>)> = with_conn!(tx, |c| {
        sqlx::query_as("SELECT position, hash FROM events ORDER BY position DESC LIMIT 1").fetch_optional(&mut *c).await
    })?;
    Ok(match row {
        None => (0, GENESIS),
        Some((position, hash)) => (position, to_hash(position, &hash)?),
    })
}

pub(super) fn to_hash(position: Position, bytes: &[u8]) -> Result<Hash, StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Inconsistent(format!("event {position} has a hash of {} bytes, not 32", bytes.len())))
}

async fn append_one(
    tx: &mut Tx,
    projections: &mut crate::projection::Projections,
    batch: &mut Batch,
    request: &AppendRequest,
    head_position: Position,
    head_hash: Hash,
    recorded_at: DateTime<Utc>,
) -> Result<Result<AppendOutcome, Refusal>, StoreError> {
    if let Some(claim) = &request.idempotency
        && let Some((request_hash, receipt)) = batch.keys.get(&(claim.scope.clone(), claim.key.clone()))
    {
        if *request_hash != claim.request_hash {
            return Ok(Err(Refusal::KeyReused { key: claim.key.clone() }));
        }
        return Ok(Ok(AppendOutcome::AlreadyDone(receipt.clone())));
    }

    let mut versions: HashMap<StreamId, StreamVersion> = HashMap::with_capacity(request.expected.len());
    for (stream, expected) in &request.expected {
        let actual = batch.version(stream);
        if actual != *expected {
            return Ok(Err(Refusal::Conflict { stream: stream.clone(), expected: *expected, actual }));
        }
        versions.insert(stream.clone(), actual);
    }

    let metadata = canonical_json(&serde_json::to_value(&request.metadata).expect("metadata serialises"));
    let (events, payloads) = chain(request, &metadata, &mut versions, head_position, head_hash, recorded_at);
    let changes: Vec<(Change, Position)> = changes_with_positions(&events).collect();

    // Unique values first: a clash refuses the request before anything else is written. With
    // several claims, a clash on a later one must undo the earlier ones: a savepoint.
    let claims = changes.iter().filter(|(c, _)| matches!(c, Change::Claim { .. })).count();
    if claims > 1 {
        execute!(tx, sqlx::query("SAVEPOINT append_request"))?;
    }
    for (change, position) in &changes {
        if let Change::Claim { claim, owner } = change
            && let Some(holder) = super::project::claim(tx, claim, owner, *position).await?
        {
            if claims > 1 {
                execute!(tx, sqlx::query("ROLLBACK TO SAVEPOINT append_request"))?;
                execute!(tx, sqlx::query("RELEASE SAVEPOINT append_request"))?;
            }
            return Ok(Err(Refusal::Taken { claim: claim.clone(), owner: holder }));
        }
    }
    if claims > 1 {
        execute!(tx, sqlx::query("RELEASE SAVEPOINT append_request"))?;
    }
    // Past the last refusal: from here a failure is an error of the whole batch.
    for row in &request.personal_data {
        execute!(
            tx,
            sqlx::query(
                "INSERT INTO personal_data (reference, key_id, nonce, ciphertext, created_position) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(row.reference.to_string())
            .bind(&row.key_id)
            .bind(&row.nonce)
            .bind(&row.ciphertext)
            .bind(events[0].position)
        )?;
    }
    for (e, payload) in events.iter().zip(payloads) {
        batch.events.push(vec![
            e.position.into(),
            e.stream_id.as_str().into(),
            e.stream_version.into(),
            e.event.event_type().into(),
            e.stored_schema_version.into(),
            payload.into(),
            metadata.as_str().into(),
            e.recorded_at.into(),
            e.hash.to_vec().into(),
        ]);
    }
    for (change, position) in &changes {
        if !matches!(change, Change::Claim { .. }) {
            batch.read_model.apply(tx, change, *position).await?;
        }
    }
    // The policy fold sees the events only once they are certain to be written with this batch.
    for e in &events {
        batch.policy.add(&projections.apply(e));
    }
    batch.versions.extend(versions);

    let receipt = Receipt {
        command: request.metadata.command.clone(),
        subject_id: request.subject_id,
        first_position: events[0].position,
        last_position: events[events.len() - 1].position,
        event_count: i64::try_from(events.len()).expect("small"),
        recorded_at,
    };
    if let Some(claim) = &request.idempotency {
        let receipt_json = serde_json::to_string(&receipt).expect("receipts serialise");
        batch.key_rows.push(vec![
            claim.scope.as_str().into(),
            claim.key.as_str().into(),
            claim.request_hash.as_str().into(),
            receipt_json.into(),
            receipt.last_position.into(),
        ]);
        batch.keys.insert((claim.scope.clone(), claim.key.clone()), (claim.request_hash.clone(), receipt.clone()));
    }
    Ok(Ok(AppendOutcome::Appended(Appended { receipt, events })))
}

/// Gives each event its position, stream version and hash, continuing the chain; returns
/// the events with their payloads as hashed (canonical JSON), to be stored as they are.
fn chain(
    request: &AppendRequest,
    metadata_json: &str,
    versions: &mut HashMap<StreamId, StreamVersion>,
    head_position: Position,
    head_hash: Hash,
    recorded_at: DateTime<Utc>,
) -> (Vec<RecordedEvent>, Vec<String>) {
    assert!(!request.events.is_empty(), "an append request has events");
    let mut position = head_position;
    let mut hash = head_hash;
    request
        .events
        .iter()
        .map(|event| {
            let stream_id = event.stream_id();
            let version = versions.get_mut(&stream_id).unwrap_or_else(|| {
                panic!("{} appends to {stream_id}, which its decision did not read", request.metadata.command)
            });
            *version += 1;
            position += 1;
            let payload = event.payload_json();
            hash = event_hash(
                &hash,
                &ChainedFields {
                    position,
                    stream_id: stream_id.as_str(),
                    stream_version: *version,
                    event_type: event.event_type(),
                    schema_version: event.schema_version(),
                    payload: &payload,
                    metadata: metadata_json,
                    recorded_at_micros: recorded_at.timestamp_micros(),
                },
            );
            let recorded = RecordedEvent {
                position,
                stream_id,
                stream_version: *version,
                stored_schema_version: event.schema_version(),
                event: event.clone(),
                metadata: request.metadata.clone(),
                recorded_at,
                hash,
            };
            (recorded, payload)
        })
        .unzip()
}

fn changes_with_positions(events: &[RecordedEvent]) -> impl Iterator<Item = (Change, Position)> + '_ {
    events.iter().flat_map(|e| readmodel::changes(e).into_iter().map(move |c| (c, e.position)))
}
