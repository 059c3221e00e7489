//! Appending to the log. One transaction takes a *batch* of requests: the append lock is
//! taken once, each request runs inside its own savepoint (so a refused request leaves its
//! neighbours untouched), positions and hashes continue from the head, the read models are
//! updated, and a single commit makes the whole batch durable before anyone is answered.
//! `group` assembles the batches from concurrent callers (group commit).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
        let mut tx = self.begin_append().await.map_err(BatchFailure::BeforeCommit)?;
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
    let mut results = Vec::with_capacity(requests.len());
    for request in requests {
        execute!(tx, sqlx::query("SAVEPOINT append_request"))?;
        let result = append_one(tx, projections, request, head_position, head_hash, recorded_at).await?;
        match &result {
            Ok(AppendOutcome::Appended(a)) => {
                let last = a.events.last().expect("an append has events");
                assert_eq!(last.position, head_position + a.receipt.event_count, "positions are gap-free");
                head_position = last.position;
                head_hash = last.hash;
                execute!(tx, sqlx::query("RELEASE SAVEPOINT append_request"))?;
            }
            Ok(AppendOutcome::AlreadyDone(_)) | Err(_) => {
                execute!(tx, sqlx::query("ROLLBACK TO SAVEPOINT append_request"))?;
                execute!(tx, sqlx::query("RELEASE SAVEPOINT append_request"))?;
            }
        }
        results.push(result);
    }
    assert_eq!(projections.position(), head_position, "the policy fold has seen exactly the log");
    super::project::record_projection_position(tx, readmodel::PROJECTION, head_position).await?;
    super::project::record_projection_position(tx, super::policy::PROJECTION, head_position).await?;
    Ok(results)
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
    request: &AppendRequest,
    head_position: Position,
    head_hash: Hash,
    recorded_at: DateTime<Utc>,
) -> Result<Result<AppendOutcome, Refusal>, StoreError> {
    if let Some(claim) = &request.idempotency {
        let previous: Option<(String, String)> = with_conn!(tx, |c| {
            sqlx::query_as("SELECT request_hash, receipt FROM idempotency_keys WHERE scope = $1 AND key = $2")
                .bind(&claim.scope)
                .bind(&claim.key)
                .fetch_optional(&mut *c)
                .await
        })?;
        if let Some((request_hash, receipt)) = previous {
            if request_hash != claim.request_hash {
                return Ok(Err(Refusal::KeyReused { key: claim.key.clone() }));
            }
            let receipt: Receipt = serde_json::from_str(&receipt).map_err(|e| {
                StoreError::Inconsistent(format!("stored receipt for key {} is unreadable: {e}", claim.key))
            })?;
            return Ok(Ok(AppendOutcome::AlreadyDone(receipt)));
        }
    }

    let mut versions: HashMap<StreamId, StreamVersion> = HashMap::with_capacity(request.expected.len());
    for (stream, expected) in &request.expected {
        let actual: i64 = with_conn!(tx, |c| {
            sqlx::query_scalar("SELECT COALESCE(MAX(stream_version), 0) FROM events WHERE stream_id = $1")
                .bind(stream.as_str())
                .fetch_one(&mut *c)
                .await
        })?;
        if actual != *expected {
            return Ok(Err(Refusal::Conflict { stream: stream.clone(), expected: *expected, actual }));
        }
        versions.insert(stream.clone(), actual);
    }

    let events = chain(request, &mut versions, head_position, head_hash, recorded_at);
    let changes: Vec<(Change, Position)> = changes_with_positions(&events).collect();

    // Unique values first: a clash refuses the request before anything else is written.
    for (change, position) in &changes {
        if let Change::Claim { claim, owner } = change {
            if let Some(holder) = super::project::claim(tx, claim, owner, *position).await? {
                return Ok(Err(Refusal::Taken { claim: claim.clone(), owner: holder }));
            }
        }
    }
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
    for e in &events {
        insert_event(tx, e).await?;
    }
    for (change, position) in &changes {
        if !matches!(change, Change::Claim { .. }) {
            super::project::apply(tx, change, *position).await?;
        }
    }
    // Past the last refusal: the policy fold sees the events only once they are certain to be
    // written with this batch.
    let outputs: Vec<crate::projection::Output> = events.iter().flat_map(|e| projections.apply(e)).collect();
    super::policy::persist(tx, &outputs).await?;

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
        execute!(tx, sqlx::query(
                "INSERT INTO idempotency_keys (scope, key, request_hash, receipt, position) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&claim.scope)
            .bind(&claim.key)
            .bind(&claim.request_hash)
            .bind(receipt_json)
            .bind(receipt.last_position))?;
    }
    Ok(Ok(AppendOutcome::Appended(Appended { receipt, events })))
}

/// Gives each event its position, stream version and hash, continuing the chain.
fn chain(
    request: &AppendRequest,
    versions: &mut HashMap<StreamId, StreamVersion>,
    head_position: Position,
    head_hash: Hash,
    recorded_at: DateTime<Utc>,
) -> Vec<RecordedEvent> {
    assert!(!request.events.is_empty(), "an append request has events");
    let metadata_json = canonical_json(&serde_json::to_value(&request.metadata).expect("metadata serialises"));
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
                    metadata: &metadata_json,
                    recorded_at_micros: recorded_at.timestamp_micros(),
                },
            );
            RecordedEvent {
                position,
                stream_id,
                stream_version: *version,
                stored_schema_version: event.schema_version(),
                event: event.clone(),
                metadata: request.metadata.clone(),
                recorded_at,
                hash,
            }
        })
        .collect()
}

fn changes_with_positions(events: &[RecordedEvent]) -> impl Iterator<Item = (Change, Position)> + '_ {
    events.iter().flat_map(|e| readmodel::changes(e).into_iter().map(move |c| (c, e.position)))
}

async fn insert_event(tx: &mut Tx, e: &RecordedEvent) -> Result<(), StoreError> {
    let payload = e.event.payload_json();
    let metadata = canonical_json(&serde_json::to_value(&e.metadata).expect("metadata serialises"));
    execute!(tx, sqlx::query(
            "INSERT INTO events (position, stream_id, stream_version, event_type, schema_version, payload, metadata, recorded_at, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(e.position)
        .bind(e.stream_id.as_str())
        .bind(e.stream_version)
        .bind(e.event.event_type())
        .bind(e.stored_schema_version)
        .bind(&payload)
        .bind(&metadata)
        .bind(e.recorded_at)
        .bind(e.hash.as_slice()))?;
    Ok(())
}
