//! The policy projections in the store: the pure fold (`crate::projection`) kept in memory
//! and in step with the log, its outputs written in the appending transaction, and replays of
//! any prefix of the log for statements "as of" a position.
//!
//! The in-memory state is a cache of the log, never a source: under the append lock it first
//! folds whatever other processes appended since it last looked, and if a batch fails after
//! folding (so the state holds events that never committed) it is dropped and rebuilt from
//! the log before the next append.

use super::{Store, StoreError, Tx, execute, with_conn, with_pool};
use crate::event::Position;
use crate::projection::{Output, Projections};

/// Events read per query when catching up or replaying.
const PAGE_ROWS: i64 = 5_000;

/// The in-memory fold, `None` until first needed or after a failed batch.
#[derive(Default)]
pub(crate) struct PolicyRuntime {
    pub(crate) state: Option<Projections>,
}

impl PolicyRuntime {
    pub(crate) fn invalidate(&mut self) {
        self.state = None;
    }
}

/// The name under which the policy projections record their position.
pub const PROJECTION: &str = "policy";

/// Brings the in-memory fold up to `head`, reading through the append transaction; returns it.
pub(super) async fn caught_up<'r>(
    tx: &mut Tx,
    runtime: &'r mut PolicyRuntime,
    head: Position,
) -> Result<&'r mut Projections, StoreError> {
    if runtime.state.as_ref().is_some_and(|s| s.position() > head) {
        // Ahead of the log: a batch folded and then never committed (a panic on the way).
        runtime.invalidate();
    }
    let state = runtime.state.get_or_insert_with(Projections::new);
    while state.position() < head {
        let rows: Vec<super::StoredEvent> = with_conn!(tx, |c| {
            sqlx::query_as(
                "SELECT position, stream_id, stream_version, event_type, schema_version, payload, metadata, recorded_at, hash \
                 FROM events WHERE position > $1 AND position <= $2 ORDER BY position LIMIT $3",
            )
            .bind(state.position())
            .bind(head)
            .bind(PAGE_ROWS)
            .fetch_all(&mut *c)
            .await
        })?;
        if rows.is_empty() {
            return Err(StoreError::Inconsistent(format!(
                "events after {} up to {head} are missing",
                state.position()
            )));
        }
        for row in &rows {
            state.apply(&row.decode()?);
        }
    }
    Ok(state)
}

impl Store {
    /// Folds the log up to `upto` (inclusive) from scratch: the projections as they stood at
    /// that position, and every output they made on the way.
    pub async fn replay_policy(&self, upto: Position) -> Result<(Projections, Vec<Output>), StoreError> {
        let mut state = Projections::new();
        let mut outputs = Vec::new();
        let mut after = 0;
        loop {
            let rows: Vec<super::StoredEvent> = with_pool!(&self.db, |p| {
                sqlx::query_as(
                    "SELECT position, stream_id, stream_version, event_type, schema_version, payload, metadata, recorded_at, hash \
                     FROM events WHERE position > $1 AND position <= $2 ORDER BY position LIMIT $3",
                )
                .bind(after)
                .bind(upto)
                .bind(PAGE_ROWS)
                .fetch_all(p)
                .await
            })?;
            let Some(last) = rows.last() else { break };
            after = last.position;
            for row in &rows {
                outputs.extend(state.apply(&row.decode()?));
            }
        }
        Ok((state, outputs))
    }
}

fn reasons(r: &[crate::projection::Reason]) -> Option<String> {
    crate::projection::Reason::join(r)
}

/// Writes the outputs of the fold: lines are inserted, totals replace the previous ones.
pub(super) async fn persist(tx: &mut Tx, outputs: &[Output]) -> Result<(), StoreError> {
    for output in outputs {
        persist_one(tx, output).await?;
    }
    Ok(())
}

async fn persist_one(tx: &mut Tx, output: &Output) -> Result<(), StoreError> {
    match output {
        Output::SubsidyLine(l) => {
            execute!(
                tx,
                sqlx::query(
                    "INSERT INTO subsidy_lines (position, seq, line_kind, achievement_id, cap_period, contract_id, payment_id, reversal_id, \
                     line_date, line_year, received_fen, eligible_fen, subsidy_fen, policy_version, reasons, eligible_total_fen, \
                     subsidy_total_fen, cap_reached) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
                )
                .bind(l.position)
                .bind(l.seq as i32)
                .bind(l.kind.as_str())
                .bind(l.achievement_id.to_string())
                .bind(l.period)
                .bind(l.contract_id.to_string())
                .bind(l.payment_id.to_string())
                .bind(l.reversal_id.map(|r| r.to_string()))
                .bind(l.date)
                .bind(l.year())
                .bind(l.received.fen())
                .bind(l.eligible.fen())
                .bind(l.subsidy.fen())
                .bind(l.policy_version.map(|v| v as i32))
                .bind(reasons(&l.reasons))
                .bind(l.eligible_total.fen())
                .bind(l.subsidy_total.fen())
                .bind(l.cap_reached)
            )?;
            for c in &l.completers {
                execute!(
                    tx,
                    sqlx::query(
                        "INSERT INTO subsidy_completer_lines (position, seq, ordinal, completer_name, share_basis_points, subsidy_fen, subsidy_total_fen) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(l.position)
                    .bind(l.seq as i32)
                    .bind(c.ordinal as i32)
                    .bind(&c.name)
                    .bind(c.share_basis_points as i32)
                    .bind(c.amount.fen())
                    .bind(c.total.fen())
                )?;
            }
        }
        Output::SubsidyTotal(t) => {
            execute!(
                tx,
                sqlx::query(
                    "INSERT INTO subsidy_totals (achievement_id, cap_period, eligible_received_fen, subsidy_fen, cap_fen, cap_reached, updated_position) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (achievement_id, cap_period) DO UPDATE SET \
                     eligible_received_fen = excluded.eligible_received_fen, subsidy_fen = excluded.subsidy_fen, cap_fen = excluded.cap_fen, \
                     cap_reached = excluded.cap_reached, updated_position = excluded.updated_position",
                )
                .bind(t.achievement_id.to_string())
                .bind(t.period)
                .bind(t.eligible_received.fen())
                .bind(t.subsidy.fen())
                .bind(t.cap.fen())
                .bind(t.cap_reached)
                .bind(t.position)
            )?;
            for c in &t.completers {
                execute!(
                    tx,
                    sqlx::query(
                        "INSERT INTO subsidy_completer_totals (achievement_id, cap_period, ordinal, completer_name, share_basis_points, subsidy_fen) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (achievement_id, cap_period, ordinal) DO UPDATE SET \
                         completer_name = excluded.completer_name, share_basis_points = excluded.share_basis_points, subsidy_fen = excluded.subsidy_fen",
                    )
                    .bind(t.achievement_id.to_string())
                    .bind(t.period)
                    .bind(c.ordinal as i32)
                    .bind(&c.name)
                    .bind(c.share_basis_points as i32)
                    .bind(c.subsidy.fen())
                )?;
            }
        }
        Output::IncentiveLine(l) => {
            execute!(
                tx,
                sqlx::query(
                    "INSERT INTO incentive_lines (position, seq, line_kind, center_id, incentive_year, contract_id, payment_id, reversal_id, \
                     line_date, line_year, received_fen, operating_fen, incentive_fen, policy_version, reasons, operating_total_fen, \
                     incentive_total_fen, cap_reached) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
                )
                .bind(l.position)
                .bind(l.seq as i32)
                .bind(l.kind.as_str())
                .bind(l.center_id.to_string())
                .bind(l.incentive_year)
                .bind(l.contract_id.to_string())
                .bind(l.payment_id.to_string())
                .bind(l.reversal_id.map(|r| r.to_string()))
                .bind(l.date)
                .bind(l.year())
                .bind(l.received.fen())
                .bind(l.operating.fen())
                .bind(l.incentive.fen())
                .bind(l.policy_version.map(|v| v as i32))
                .bind(reasons(&l.reasons))
                .bind(l.operating_total.fen())
                .bind(l.incentive_total.fen())
                .bind(l.cap_reached)
            )?;
        }
        Output::IncentiveTotal(t) => {
            execute!(
                tx,
                sqlx::query(
                    "INSERT INTO incentive_totals (center_id, incentive_year, operating_amount_fen, incentive_fen, cap_fen, cap_reached, updated_position) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (center_id, incentive_year) DO UPDATE SET \
                     operating_amount_fen = excluded.operating_amount_fen, incentive_fen = excluded.incentive_fen, cap_fen = excluded.cap_fen, \
                     cap_reached = excluded.cap_reached, updated_position = excluded.updated_position",
                )
                .bind(t.center_id.to_string())
                .bind(t.year)
                .bind(t.operating_amount.fen())
                .bind(t.incentive.fen())
                .bind(t.cap.fen())
                .bind(t.cap_reached)
                .bind(t.position)
            )?;
        }
        Output::TurnoverLine(l) => {
            execute!(
                tx,
                sqlx::query(
                    "INSERT INTO turnover_lines (position, seq, line_kind, contract_id, payment_id, line_date, line_year, contracts, \
                     contract_amount_fen, tech_transaction_amount_fen, received_fen, contract_type, seller_kind, field, district) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                )
                .bind(l.position)
                .bind(l.seq as i32)
                .bind(l.kind.as_str())
                .bind(l.contract_id.to_string())
                .bind(l.payment_id.map(|p| p.to_string()))
                .bind(l.date)
                .bind(l.year())
                .bind(l.contracts as i32)
                .bind(l.contract_amount.fen())
                .bind(l.tech_transaction_amount.fen())
                .bind(l.received.fen())
                .bind(l.dims.contract_type.as_str())
                .bind(l.dims.seller_kind.as_str())
                .bind(l.dims.field.map(|f| f.as_str()))
                .bind(&l.dims.district)
            )?;
        }
        Output::TurnoverCell(c) => {
            execute!(
                tx,
                sqlx::query(
                    "INSERT INTO turnover_cells (year, dimension, cell_key, contracts, contract_amount_fen, tech_transaction_amount_fen, received_fen, updated_position) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (year, dimension, cell_key) DO UPDATE SET \
                     contracts = excluded.contracts, contract_amount_fen = excluded.contract_amount_fen, \
                     tech_transaction_amount_fen = excluded.tech_transaction_amount_fen, received_fen = excluded.received_fen, \
                     updated_position = excluded.updated_position",
                )
                .bind(c.year)
                .bind(c.dimension)
                .bind(&c.key)
                .bind(c.figures.contracts)
                .bind(c.figures.contract_amount.fen())
                .bind(c.figures.tech_transaction_amount.fen())
                .bind(c.figures.received.fen())
                .bind(c.position)
            )?;
        }
    }
    Ok(())
}
