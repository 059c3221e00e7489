//! The command handler: the I/O shell around the pure domain. For one command it checks the
//! idempotency key, loads the streams the decision needs, decides, and appends with the
//! versions it saw; when another writer got there first it reloads and decides again, a
//! bounded number of times. Streams it decided on recently come from an in-process cache
//! (`state_cache`) instead of the log; the version check makes a stale entry cost a retry,
//! never a wrong decision.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::actor::Actor;
use crate::command::Command;
use crate::domain::{self, Facts, Loaded};
use crate::error::DomainError;
use crate::event::{Metadata, StreamVersion};
use crate::ids::StreamId;
use crate::state_cache::StateCache;
use crate::store::{AppendOutcome, AppendRequest, IdempotencyClaim, Receipt, Refusal, Store, StoreError};

/// Attempts per command before giving up on a contended stream.
pub const ATTEMPTS_MAX: u32 = 10;
/// In-process stream locks (striped: a stream maps to one of these, so memory stays bounded
/// whatever the number of streams; unrelated streams rarely share a stripe).
const STREAM_LOCK_STRIPES: usize = 1024;
/// Rounds of "load what the decision still needs" (a match's demand needs the match first).
const LOAD_ROUNDS_MAX: usize = 4;
/// Longest idempotency key accepted.
pub const IDEMPOTENCY_KEY_CHARS_MAX: usize = 200;

/// Who asks, on which request, and under which idempotency key.
#[derive(Debug, Clone)]
pub struct CommandContext {
    pub actor: Actor,
    pub request_id: Option<String>,
    pub idempotency_key: Option<String>,
}

/// Why a command was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("idempotency key `{key}` was already used for a different request; use a new key for a new request")]
    IdempotencyKeyReused { key: String },
    #[error("{stream} kept changing while this command was decided ({attempts} attempts); try again")]
    Contention { stream: String, attempts: u32 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CommandError {
    pub fn code(&self) -> &'static str {
        match self {
            CommandError::Domain(e) => e.code(),
            CommandError::IdempotencyKeyReused { .. } => "IDEMPOTENCY_KEY_REUSED",
            CommandError::Contention { .. } => "CONFLICT",
            CommandError::Store(e) if e.is_transient() => "UNAVAILABLE",
            CommandError::Store(_) => "INTERNAL",
        }
    }
}

/// Counters for metrics.
#[derive(Debug, Default)]
pub struct LedgerStats {
    pub commands_committed: AtomicU64,
    pub events_appended: AtomicU64,
    pub concurrency_conflicts: AtomicU64,
    pub idempotent_replays: AtomicU64,
}

/// The ledger as the API sees it: commands in, receipts out.
#[derive(Clone)]
pub struct Ledger {
    store: Store,
    stats: Arc<LedgerStats>,
    stream_locks: Arc<[tokio::sync::Mutex<()>]>,
    states: Arc<StateCache>,
}

/// The fingerprint of a request for idempotency: the command's name and its input as the
/// caller sent it (canonical JSON), not the ids the server generated for it.
pub fn request_fingerprint(command_name: &str, input: &serde_json::Value) -> String {
    let mut h = Sha256::new();
    h.update(command_name.as_bytes());
    h.update([0]);
    h.update(crate::event::canonical_json(input).as_bytes());
    hex::encode(h.finalize())
}

impl Ledger {
    pub fn new(store: Store) -> Ledger {
        let stream_locks = (0..STREAM_LOCK_STRIPES).map(|_| tokio::sync::Mutex::new(())).collect();
        Ledger { store, stats: Arc::new(LedgerStats::default()), stream_locks, states: Arc::default() }
    }

    /// The cache of folded streams this ledger decides on (for tests and metrics).
    pub fn state_cache(&self) -> &StateCache {
        &self.states
    }

    /// The state cache, for readers that outlive a borrow (`/metrics`).
    pub fn state_cache_handle(&self) -> Arc<StateCache> {
        self.states.clone()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn stats(&self) -> &LedgerStats {
        &self.stats
    }

    /// The counters, shared (for a metrics collector).
    pub fn stats_handle(&self) -> Arc<LedgerStats> {
        self.stats.clone()
    }

    /// Carries out `command` for `ctx.actor`. With an idempotency key, `fingerprint`
    /// identifies the request (see [`request_fingerprint`]); a repeat with the same key and
    /// fingerprint returns the first receipt and appends nothing.
    pub async fn execute(
        &self,
        ctx: &CommandContext,
        command: Command,
        fingerprint: &str,
    ) -> Result<Receipt, CommandError> {
        self.execute_with_personal_data(ctx, command, fingerprint, Vec::new()).await
    }

    /// [`execute`](Self::execute), storing `personal_data` (sealed by the caller, referred to by
    /// the command's events) in the same transaction as the events.
    #[tracing::instrument(name = "ledger.execute", skip_all, fields(command = command.name(), actor = %ctx.actor.user_id))]
    pub async fn execute_with_personal_data(
        &self,
        ctx: &CommandContext,
        command: Command,
        fingerprint: &str,
        personal_data: Vec<crate::personal::PersonalDataRow>,
    ) -> Result<Receipt, CommandError> {
        let idempotency = match &ctx.idempotency_key {
            Some(key) => Some(self.idempotency_claim(ctx, key, fingerprint)?),
            None => None,
        };
        let metadata = Metadata {
            actor: ctx.actor.user_id.clone(),
            role: ctx.actor.role,
            organisation_id: ctx.actor.organisation_id,
            request_id: ctx.request_id.clone(),
            idempotency_key: ctx.idempotency_key.clone(),
            command: command.name().to_owned(),
            command_id: Uuid::now_v7(),
        };
        // Commands of this process on the same stream take turns: deciding on a state that a
        // neighbour is about to change would only end in a conflict and a retry. Writers in
        // other processes are still caught by the expected-version check below.
        let _turn = self.stream_locks[stripe(&command.primary_stream())].lock().await;
        let mut last_conflict = String::new();
        for attempt in 1..=ATTEMPTS_MAX {
            // Checked after taking the turn: a repeat that queued behind its own first try
            // must get that try's receipt, not a decision against the state it produced.
            if let Some(receipt) = self.previous_receipt(idempotency.as_ref()).await? {
                return Ok(receipt);
            }
            let (mut facts, cached) = self.load_facts(&command, true).await?;
            let mut decided = domain::decide(&command, &ctx.actor, &facts);
            if decided.is_err() && !cached.is_empty() {
                // A cached stream may be behind the log (another process appended): a refusal
                // is only given on streams read from the log.
                self.states.forget(&cached);
                facts = self.load_facts(&command, false).await?.0;
                decided = domain::decide(&command, &ctx.actor, &facts);
            }
            let events = match decided {
                Ok(events) => events,
                Err(refused) => {
                    // The first try may have committed meanwhile in another process.
                    if let Some(receipt) = self.previous_receipt(idempotency.as_ref()).await? {
                        return Ok(receipt);
                    }
                    return Err(refused.into());
                }
            };
            let request = AppendRequest {
                expected: facts.versions(),
                events,
                metadata: metadata.clone(),
                idempotency: idempotency.clone(),
                subject_id: command.subject_id(),
                personal_data: personal_data.clone(),
            };
            let outcome = self.store.append(request).await;
            if !matches!(outcome, Ok(Ok(AppendOutcome::Appended(_)))) {
                // Stale, or committed with an unknown outcome: read these from the log next time.
                self.states.forget(facts.versions().iter().map(|(stream, _)| stream));
            }
            match outcome? {
                Ok(AppendOutcome::Appended(appended)) => {
                    self.states.advance(&appended.events);
                    self.stats.commands_committed.fetch_add(1, Ordering::Relaxed);
                    self.stats.events_appended.fetch_add(appended.events.len() as u64, Ordering::Relaxed);
                    return Ok(appended.receipt);
                }
                Ok(AppendOutcome::AlreadyDone(receipt)) => {
                    self.stats.idempotent_replays.fetch_add(1, Ordering::Relaxed);
                    return Ok(receipt);
                }
                Err(Refusal::Conflict { stream, .. }) => {
                    self.stats.concurrency_conflicts.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%stream, attempt, "concurrency conflict, deciding again");
                    last_conflict = stream.to_string();
                    tokio::time::sleep(backoff(attempt, metadata.command_id)).await;
                }
                Err(Refusal::KeyReused { key }) => return Err(CommandError::IdempotencyKeyReused { key }),
                Err(Refusal::Taken { claim, owner }) => return Err(taken(&claim, &owner).into()),
            }
        }
        Err(CommandError::Contention { stream: last_conflict, attempts: ATTEMPTS_MAX })
    }

    /// Loads every stream the decision needs, asking the domain until nothing is missing;
    /// from the cache where it has them (and `use_cache`), else from the log. Returns the
    /// facts and which of their streams came from the cache.
    async fn load_facts(&self, command: &Command, use_cache: bool) -> Result<(Facts, Vec<StreamId>), StoreError> {
        let mut facts = Facts::new();
        let mut cached = Vec::new();
        for _ in 0..LOAD_ROUNDS_MAX {
            let needed = domain::streams_needed(command, &facts);
            if needed.is_empty() {
                return Ok((facts, cached));
            }
            let mut missing = Vec::with_capacity(needed.len());
            for stream in needed {
                match use_cache.then(|| self.states.get(&stream)).flatten() {
                    Some(loaded) => {
                        facts.insert(stream.clone(), loaded);
                        cached.push(stream);
                    }
                    None => missing.push(stream),
                }
            }
            if missing.is_empty() {
                continue;
            }
            for (stream, events) in self.store.read_streams(&missing).await? {
                let version = StreamVersion::try_from(events.len()).expect("stream length fits i64");
                let loaded = Loaded { version, state: domain::fold(&stream, &events) };
                self.states.offer(&stream, &loaded);
                facts.insert(stream, loaded);
            }
        }
        assert!(domain::streams_needed(command, &facts).is_empty(), "{} needs more load rounds", command.name());
        Ok((facts, cached))
    }

    fn idempotency_claim(
        &self,
        ctx: &CommandContext,
        key: &str,
        fingerprint: &str,
    ) -> Result<IdempotencyClaim, CommandError> {
        let key = key.trim();
        if key.is_empty() || key.chars().count() > IDEMPOTENCY_KEY_CHARS_MAX {
            return Err(DomainError::invalid(
                "idempotencyKey",
                "idempotency_key_length",
                format!("must be 1 to {IDEMPOTENCY_KEY_CHARS_MAX} characters"),
            )
            .into());
        }
        // Stored and looked up as text: PostgreSQL refuses NUL in text, and no client needs
        // control characters in a key.
        if key.chars().any(char::is_control) {
            return Err(DomainError::invalid(
                "idempotencyKey",
                "no_control_characters",
                "must not contain control characters",
            )
            .into());
        }
        Ok(IdempotencyClaim {
            scope: ctx.actor.user_id.clone(),
            key: key.to_owned(),
            request_hash: fingerprint.to_owned(),
        })
    }

    /// The receipt of an earlier request with the same key and input, if there was one.
    async fn previous_receipt(&self, claim: Option<&IdempotencyClaim>) -> Result<Option<Receipt>, CommandError> {
        let Some(claim) = claim else { return Ok(None) };
        match self.store.idempotency_receipt(&claim.scope, &claim.key).await? {
            None => Ok(None),
            Some((hash, _)) if hash != claim.request_hash => {
                Err(CommandError::IdempotencyKeyReused { key: claim.key.clone() })
            }
            Some((_, receipt)) => {
                self.stats.idempotent_replays.fetch_add(1, Ordering::Relaxed);
                Ok(Some(receipt))
            }
        }
    }
}

fn stripe(stream: &StreamId) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    stream.hash(&mut h);
    (h.finish() % STREAM_LOCK_STRIPES as u64) as usize
}

/// Exponential backoff with jitter (from the command id's random bits, so concurrent
/// commands spread out): about 1, 2, 4 ... ms, capped at 64 ms.
fn backoff(attempt: u32, command_id: Uuid) -> Duration {
    let base_us = 1_000u64 << attempt.min(6);
    let jitter_us = (command_id.as_u128() as u64) % base_us;
    Duration::from_micros(base_us / 2 + jitter_us)
}

/// A unique value already used elsewhere, in domain terms.
fn taken(claim: &str, owner: &str) -> DomainError {
    let (kind, value) = claim.split_once(':').unwrap_or(("value", claim));
    let what = match kind {
        "credit_code" => "unified social credit code",
        "contract_number" => "contract number (per seller)",
        "registration_number" => "registration number",
        _ => "value",
    };
    DomainError::AlreadyTaken {
        what,
        value: value.rsplit(':').next().unwrap_or(value).to_owned(),
        owner: owner.to_owned(),
    }
}
