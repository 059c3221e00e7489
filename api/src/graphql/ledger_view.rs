//! The event log itself through GraphQL: command results, events after a position, a
//! stream's events, the head, and chain verification.

use async_graphql::{Context, Json, Object, Result, SimpleObject};
use ledger::RecordedEvent;
use ledger::ids::StreamId;
use ledger::store::Receipt;
use uuid::Uuid;

use super::scalars::Position;
use super::{error, ledger, store_error};

/// Most events one query returns.
pub const EVENTS_PAGE_MAX: i32 = 1_000;

/// What a mutation did: the same answer for every repeat of its idempotency key.
pub struct CommandResult(pub Receipt);

#[Object]
impl CommandResult {
    async fn command(&self) -> &str {
        &self.0.command
    }
    /// The id of the thing created or acted on (new contract, payment, match ...).
    async fn id(&self) -> Uuid {
        self.0.subject_id
    }
    async fn first_position(&self) -> Position {
        Position(self.0.first_position)
    }
    async fn last_position(&self) -> Position {
        Position(self.0.last_position)
    }
    async fn event_count(&self) -> i32 {
        i32::try_from(self.0.event_count).unwrap_or(i32::MAX)
    }
    async fn recorded_at(&self) -> chrono::DateTime<chrono::Utc> {
        self.0.recorded_at
    }
    /// The events the command appended.
    async fn events(&self, ctx: &Context<'_>) -> Result<Vec<EventRecord>> {
        let events = ledger(ctx)
            .store()
            .read_all_after(self.0.first_position - 1, self.0.event_count)
            .await
            .map_err(store_error)?;
        Ok(events.into_iter().map(EventRecord).collect())
    }
}

/// One event of the log, with its payload in the current schema (old versions upcast).
pub struct EventRecord(pub RecordedEvent);

#[Object]
impl EventRecord {
    async fn position(&self) -> Position {
        Position(self.0.position)
    }
    async fn stream_id(&self) -> &str {
        self.0.stream_id.as_str()
    }
    async fn stream_version(&self) -> i32 {
        i32::try_from(self.0.stream_version).unwrap_or(i32::MAX)
    }
    async fn event_type(&self) -> &str {
        self.0.event.event_type()
    }
    /// The schema version the event was written with.
    async fn stored_schema_version(&self) -> i32 {
        self.0.stored_schema_version
    }
    async fn payload(&self) -> Json<serde_json::Value> {
        let tagged = serde_json::to_value(&self.0.event).unwrap_or_default();
        Json(tagged.get("data").cloned().unwrap_or_default())
    }
    async fn metadata(&self) -> Json<serde_json::Value> {
        Json(serde_json::to_value(&self.0.metadata).unwrap_or_default())
    }
    async fn recorded_at(&self) -> chrono::DateTime<chrono::Utc> {
        self.0.recorded_at
    }
    /// SHA-256 chain value after this event, hex.
    async fn hash(&self) -> String {
        hex::encode(self.0.hash)
    }
}

#[derive(SimpleObject)]
pub struct LedgerHead {
    pub position: Position,
    /// Hex SHA-256 chain value at `position` (empty log: 64 zeros).
    pub hash: String,
}

#[derive(SimpleObject)]
pub struct LedgerVerification {
    pub intact: bool,
    pub events_checked: i32,
    pub head_position: Position,
    pub head_hash: String,
    /// The first position where the chain breaks, if it does.
    pub first_broken_position: Option<Position>,
    pub problem: Option<String>,
}

fn check_page(first: i32) -> Result<i64> {
    if !(1..=EVENTS_PAGE_MAX).contains(&first) {
        return Err(error("VALIDATION_FAILED", format!("first: must be 1 to {EVENTS_PAGE_MAX}")));
    }
    Ok(i64::from(first))
}

#[derive(Default)]
pub struct LedgerQuery;

#[Object]
impl LedgerQuery {
    /// Events after a position, in log order (for catching up). Registrar, finance, admin.
    async fn events(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Position(0)")] after: Position,
        #[graphql(default = 100)] first: i32,
    ) -> Result<Vec<EventRecord>> {
        super::access::require_role(ctx, super::access::LOG_READERS, "read the event log")?;
        let events = ledger(ctx).store().read_all_after(after.0, check_page(first)?).await.map_err(store_error)?;
        Ok(events.into_iter().map(EventRecord).collect())
    }

    /// The events of one stream (e.g. `contract-<uuid>`), after a stream version. Registrar,
    /// finance, admin.
    async fn stream_events(
        &self,
        ctx: &Context<'_>,
        stream_id: String,
        #[graphql(default = 0)] after_version: i32,
        #[graphql(default = 100)] first: i32,
    ) -> Result<Vec<EventRecord>> {
        super::access::require_role(ctx, super::access::LOG_READERS, "read the event log")?;
        let stream = StreamId(stream_id);
        if stream.kind().is_none() {
            return Err(error("VALIDATION_FAILED", "streamId: must look like contract-<uuid>, achievement-<uuid> ..."));
        }
        let events = ledger(ctx)
            .store()
            .read_stream_after(&stream, i64::from(after_version.max(0)), check_page(first)?)
            .await
            .map_err(store_error)?;
        Ok(events.into_iter().map(EventRecord).collect())
    }

    /// The last position of the log and its chain value.
    async fn ledger_head(&self, ctx: &Context<'_>) -> Result<LedgerHead> {
        let head = ledger(ctx).store().head().await.map_err(store_error)?;
        let (position, hash) = head.unwrap_or((0, ledger::chain::GENESIS));
        Ok(LedgerHead { position: Position(position), hash: hex::encode(hash) })
    }

    /// Recomputes the whole hash chain and reports the first broken position. Registrar,
    /// finance, admin.
    async fn verify_ledger(&self, ctx: &Context<'_>) -> Result<LedgerVerification> {
        super::access::require_role(ctx, super::access::LOG_READERS, "verify the ledger")?;
        let report = ledger(ctx).store().verify_chain(|_| {}).await.map_err(store_error)?;
        Ok(LedgerVerification {
            intact: report.is_intact(),
            events_checked: i32::try_from(report.events_checked).unwrap_or(i32::MAX),
            head_position: Position(report.head_position),
            head_hash: report.head_hash,
            first_broken_position: report.first_break.as_ref().map(|b| Position(b.position)),
            problem: report.first_break.map(|b| b.problem),
        })
    }
}
