//! `verify-ledger`: recomputes the hash chain from the stored bytes and reports the first
//! position where it breaks (a changed row, a missing or reordered position, a bad hash).

use serde::Serialize;

use super::{Store, StoreError};
use crate::chain::{ChainedFields, GENESIS, Hash, event_hash};
use crate::event::Position;

/// Rows read per query while verifying.
const PAGE_ROWS: i64 = 5_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainBreak {
    pub position: Position,
    pub problem: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub events_checked: i64,
    pub head_position: Position,
    /// Hex of the last verified hash (the head's when the chain is intact).
    pub head_hash: String,
    pub first_break: Option<ChainBreak>,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.first_break.is_none()
    }
}

impl Store {
    /// Verifies the whole chain. `progress` is called after each page with the last position
    /// checked, for progress bars on long logs.
    pub async fn verify_chain(&self, mut progress: impl FnMut(Position)) -> Result<VerifyReport, StoreError> {
        let mut previous: Hash = GENESIS;
        let mut expected_position: Position = 1;
        let mut checked = 0i64;
        loop {
            let rows = self.read_stored_after(expected_position - 1, PAGE_ROWS).await?;
            let Some(last) = rows.last() else { break };
            let last_position = last.position;
            for row in &rows {
                let broken = |problem: String| VerifyReport {
                    events_checked: checked,
                    head_position: expected_position - 1,
                    head_hash: hex::encode(previous),
                    first_break: Some(ChainBreak { position: row.position, problem }),
                };
                if row.position != expected_position {
                    return Ok(broken(format!(
                        "expected position {expected_position}, found {} (a gap)",
                        row.position
                    )));
                }
                let computed = event_hash(
                    &previous,
                    &ChainedFields {
                        position: row.position,
                        stream_id: &row.stream_id,
                        stream_version: row.stream_version,
                        event_type: &row.event_type,
                        schema_version: row.schema_version,
                        payload: &row.payload,
                        metadata: &row.metadata,
                        recorded_at_micros: row.recorded_at.timestamp_micros(),
                    },
                );
                if row.hash.as_slice() != computed.as_slice() {
                    return Ok(broken(format!(
                        "stored hash {} differs from the recomputed {}: the row or one before it was altered",
                        hex::encode(&row.hash),
                        hex::encode(computed)
                    )));
                }
                previous = computed;
                expected_position += 1;
                checked += 1;
            }
            progress(last_position);
        }
        Ok(VerifyReport {
            events_checked: checked,
            head_position: expected_position - 1,
            head_hash: hex::encode(previous),
            first_break: None,
        })
    }
}
