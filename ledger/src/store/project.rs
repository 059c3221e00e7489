//! Applies read-model [`Change`]s with SQL: the thin adapter under the pure projection in
//! `readmodel`. Every update must touch exactly the row it names; anything else means the
//! read model and the log disagree, and the transaction stops.

use super::rows::Rows;
use super::{StoreError, Tx, execute, with_conn};
use crate::event::Position;
use crate::ids::StreamId;
use crate::readmodel::{Change, CompleterRow};
use crate::vocabulary::MatchSide;

/// Claims a unique value for `owner`. Returns the current holder when it is taken.
pub(super) async fn claim(
    tx: &mut Tx,
    claim: &str,
    owner: &StreamId,
    position: Position,
) -> Result<Option<String>, StoreError> {
    let inserted = execute!(tx, sqlx::query("INSERT INTO unique_claims (claim, owner_stream, position) VALUES ($1, $2, $3) ON CONFLICT (claim) DO NOTHING")
            .bind(claim)
            .bind(owner.as_str())
            .bind(position))?
    ;
    if inserted == 1 {
        return Ok(None);
    }
    let holder: String = with_conn!(tx, |c| {
        sqlx::query_scalar("SELECT owner_stream FROM unique_claims WHERE claim = $1")
            .bind(claim)
            .fetch_one(&mut *c)
            .await
    })?;
    Ok(Some(holder))
}

/// Records that `projections` have seen the log up to `position` (one statement).
pub(super) async fn record_projection_positions(
    tx: &mut Tx,
    projections: &[&str],
    position: Position,
) -> Result<(), StoreError> {
    let mut rows = Rows::new(
        "INSERT INTO projection_positions (projection, position) VALUES",
        2,
        "ON CONFLICT (projection) DO UPDATE SET position = excluded.position",
    );
    for projection in projections {
        rows.push(vec![(*projection).into(), position.into()]);
    }
    let written = rows.write(tx).await?;
    assert_eq!(written, projections.len() as u64, "one row per projection");
    Ok(())
}

/// Runs an UPDATE that must change exactly one row.
macro_rules! update_one {
    ($tx:expr, $what:expr, $query:expr) => {{
        let n = execute!($tx, $query)?;
        if n != 1 {
            return Err(StoreError::Inconsistent(format!("{} changed {n} rows instead of 1", $what)));
        }
    }};
}

/// Applies one change made by the event at `position`, now. Reached only through
/// [`Deferred::apply`], which keeps payments and reversals for its multi-row statements.
async fn apply(tx: &mut Tx, change: &Change, position: Position) -> Result<(), StoreError> {
    match change {
        Change::Claim { claim: key, owner } => {
            // Replays (rebuild) re-claim; live appends claim before applying (see append).
            if let Some(holder) = claim(tx, key, owner, position).await? {
                return Err(StoreError::Inconsistent(format!("{key} claimed by both {holder} and {owner}")));
            }
        }
        Change::InsertOrganisation(r) => {
            execute!(tx, sqlx::query(
                    "INSERT INTO organisations (id, name, kind, credit_code, division_code, registered_on, created_position, updated_position) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                )
                .bind(&r.id)
                .bind(&r.name)
                .bind(r.kind)
                .bind(&r.credit_code)
                .bind(&r.division_code)
                .bind(r.registered_on)
                .bind(position))?;
        }
        Change::InsertAccreditation(r) => {
            execute!(tx, sqlx::query(
                    "INSERT INTO accreditations (id, organisation_id, kind, effective_from, effective_until, document_number, created_position, updated_position) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                )
                .bind(&r.id)
                .bind(&r.organisation_id)
                .bind(r.kind)
                .bind(r.effective_from)
                .bind(r.effective_until)
                .bind(&r.document_number)
                .bind(position))?;
            update_one!(
                tx,
                format!("accrediting organisation {}", r.organisation_id),
                sqlx::query("UPDATE organisations SET updated_position = $1 WHERE id = $2").bind(position).bind(&r.organisation_id)
            );
        }
        Change::RevokeAccreditation { id, revoked_from, reason } => update_one!(
            tx,
            format!("revoking accreditation {id}"),
            sqlx::query("UPDATE accreditations SET revoked_from = $1, revocation_reason = $2, updated_position = $3 WHERE id = $4")
                .bind(*revoked_from)
                .bind(reason)
                .bind(position)
                .bind(id)
        ),
        Change::InsertBroker(r) => {
            execute!(tx, sqlx::query("INSERT INTO brokers (id, name, agency_id, certificate_number, created_position) VALUES ($1, $2, $3, $4, $5)")
                    .bind(&r.id)
                    .bind(&r.name)
                    .bind(&r.agency_id)
                    .bind(&r.certificate_number)
                    .bind(position))?;
        }
        Change::InsertAchievement(r) => {
            execute!(tx, sqlx::query(
                    "INSERT INTO achievements (id, owner_id, title, field, description, patent_numbers, maturity, asking_price_fen, \
                     transfer_modes, status, completers_locked, listed_on, created_position, updated_position) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'listed', FALSE, $10, $11, $11)",
                )
                .bind(&r.id)
                .bind(&r.owner_id)
                .bind(&r.title)
                .bind(r.field)
                .bind(&r.description)
                .bind(&r.patent_numbers)
                .bind(r.maturity)
                .bind(r.asking_price_fen)
                .bind(&r.transfer_modes)
                .bind(r.listed_on)
                .bind(position))?;
        }
        Change::ReviseAchievement(r) => update_one!(
            tx,
            format!("revising achievement {}", r.id),
            sqlx::query(
                "UPDATE achievements SET title = $1, field = $2, description = $3, patent_numbers = $4, maturity = $5, \
                 asking_price_fen = $6, transfer_modes = $7, updated_position = $8 WHERE id = $9",
            )
            .bind(&r.title)
            .bind(r.field)
            .bind(&r.description)
            .bind(&r.patent_numbers)
            .bind(r.maturity)
            .bind(r.asking_price_fen)
            .bind(&r.transfer_modes)
            .bind(position)
            .bind(&r.id)
        ),
        Change::ReplaceCompleters { achievement_id, completers } => {
            replace_completers(tx, achievement_id, completers).await?;
        }
        Change::LockCompleters { achievement_id } => update_one!(
            tx,
            format!("locking completers of {achievement_id}"),
            sqlx::query("UPDATE achievements SET completers_locked = TRUE, updated_position = $1 WHERE id = $2")
                .bind(position)
                .bind(achievement_id)
        ),
        Change::WithdrawAchievement { achievement_id } => update_one!(
            tx,
            format!("withdrawing {achievement_id}"),
            sqlx::query("UPDATE achievements SET status = 'withdrawn', updated_position = $1 WHERE id = $2")
                .bind(position)
                .bind(achievement_id)
        ),
        Change::InsertDemand(r) => {
            execute!(tx, sqlx::query(
                    "INSERT INTO demands (id, enterprise_id, title, field, description, budget_fen, deadline, status, posted_on, created_position, updated_position) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8, $9, $9)",
                )
                .bind(&r.id)
                .bind(&r.enterprise_id)
                .bind(&r.title)
                .bind(r.field)
                .bind(&r.description)
                .bind(r.budget_fen)
                .bind(r.deadline)
                .bind(r.posted_on)
                .bind(position))?;
        }
        Change::CloseDemand { demand_id } => update_one!(
            tx,
            format!("closing demand {demand_id}"),
            sqlx::query("UPDATE demands SET status = 'closed', updated_position = $1 WHERE id = $2").bind(position).bind(demand_id)
        ),
        Change::InsertMatch(r) => {
            execute!(tx, sqlx::query(
                    "INSERT INTO matches (id, broker_id, achievement_id, demand_id, note, status, proposed_on, created_position, updated_position) \
                     VALUES ($1, $2, $3, $4, $5, 'proposed', $6, $7, $7)",
                )
                .bind(&r.id)
                .bind(&r.broker_id)
                .bind(&r.achievement_id)
                .bind(&r.demand_id)
                .bind(&r.note)
                .bind(r.proposed_on)
                .bind(position))?;
        }
        Change::AnswerMatch { match_id, side, answer } => {
            let set_answer = match side {
                MatchSide::Owner => "UPDATE matches SET owner_answer = $1, updated_position = $2 WHERE id = $3",
                MatchSide::Enterprise => "UPDATE matches SET enterprise_answer = $1, updated_position = $2 WHERE id = $3",
            };
            update_one!(
                tx,
                format!("answering match {match_id}"),
                sqlx::query(set_answer).bind(*answer).bind(position).bind(match_id)
            );
            // The status follows from both answers (same rule as `Match::status`).
            update_one!(
                tx,
                format!("updating the status of match {match_id}"),
                sqlx::query(
                    "UPDATE matches SET status = CASE \
                       WHEN owner_answer = 'declined' OR enterprise_answer = 'declined' THEN 'declined' \
                       WHEN owner_answer = 'accepted' AND enterprise_answer = 'accepted' THEN 'accepted' \
                       ELSE 'proposed' END \
                     WHERE id = $1",
                )
                .bind(match_id)
            );
        }
        Change::InsertContract(r) => {
            execute!(tx, sqlx::query(
                    "INSERT INTO contracts (id, contract_number, contract_type, title, seller_id, buyer_id, achievement_id, match_id, \
                     broker_id, operating_center_id, contract_amount_fen, tech_transaction_amount_fen, signed_on, status, \
                     settled_fen, reversed_fen, created_position, updated_position) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'signed', 0, 0, $14, $14)",
                )
                .bind(&r.id)
                .bind(&r.contract_number)
                .bind(r.contract_type)
                .bind(&r.title)
                .bind(&r.seller_id)
                .bind(&r.buyer_id)
                .bind(&r.achievement_id)
                .bind(&r.match_id)
                .bind(&r.broker_id)
                .bind(&r.operating_center_id)
                .bind(r.contract_amount_fen)
                .bind(r.tech_transaction_amount_fen)
                .bind(r.signed_on)
                .bind(position))?;
        }
        Change::RegisterContract { contract_id, registration_number, registered_on, certified_fen } => update_one!(
            tx,
            format!("registering contract {contract_id}"),
            sqlx::query(
                "UPDATE contracts SET status = 'registered', registration_number = $1, registered_on = $2, \
                 certified_tech_transaction_amount_fen = $3, updated_position = $4 WHERE id = $5",
            )
            .bind(registration_number)
            .bind(*registered_on)
            .bind(*certified_fen)
            .bind(position)
            .bind(contract_id)
        ),
        Change::AmendContract { contract_id, contract_amount_fen, tech_transaction_amount_fen } => update_one!(
            tx,
            format!("amending contract {contract_id}"),
            sqlx::query(
                "UPDATE contracts SET contract_amount_fen = $1, tech_transaction_amount_fen = $2, updated_position = $3 WHERE id = $4",
            )
            .bind(*contract_amount_fen)
            .bind(*tech_transaction_amount_fen)
            .bind(position)
            .bind(contract_id)
        ),
        Change::TerminateContract { contract_id, terminated_on } => update_one!(
            tx,
            format!("terminating contract {contract_id}"),
            sqlx::query("UPDATE contracts SET status = 'terminated', terminated_on = $1, updated_position = $2 WHERE id = $3")
                .bind(*terminated_on)
                .bind(position)
                .bind(contract_id)
        ),
        Change::InsertPayment(_) | Change::InsertReversal(_) => {
            unreachable!("payments and reversals are written by `Deferred`, never one by one")
        }
        Change::InsertPolicyVersion(r) => {
            execute!(
                tx,
                sqlx::query(
                    "INSERT INTO policy_versions (policy, version, rate, cap_fen, cap_period, basis, effective_from, effective_until, source, created_position) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(r.policy)
                .bind(r.version)
                .bind(&r.rate)
                .bind(r.cap_fen)
                .bind(r.cap_period)
                .bind(r.basis)
                .bind(r.effective_from)
                .bind(r.effective_until)
                .bind(&r.source)
                .bind(position)
            )?;
        }
    }
    Ok(())
}

async fn replace_completers(tx: &mut Tx, achievement_id: &str, completers: &[CompleterRow]) -> Result<(), StoreError> {
    execute!(tx, sqlx::query("DELETE FROM achievement_completers WHERE achievement_id = $1").bind(achievement_id))?;
    for r in completers {
        execute!(tx, sqlx::query(
                "INSERT INTO achievement_completers (achievement_id, ordinal, name, share_basis_points, id_number_masked, id_reference, id_fingerprint) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(achievement_id)
            .bind(r.ordinal)
            .bind(&r.name)
            .bind(r.share_basis_points)
            .bind(&r.id_number_masked)
            .bind(&r.id_reference)
            .bind(&r.id_fingerprint))?;
    }
    Ok(())
}

/// Read-model changes held back to the end of a batch (or a rebuild page) and then written
/// with a few multi-row statements: payments and reversals, which are most of the traffic,
/// and the running sums they add to their contract and payment. Every other change (but a
/// claim, which touches only `unique_claims`) first writes what is held back, so each row
/// still sees its changes in log order; the sums are applied after the inserts, so a row
/// inserted earlier in the same batch is there to add to.
pub(super) struct Deferred {
    payments: Rows,
    reversals: Rows,
    /// Per contract: fen added to `settled_fen` and to `reversed_fen`.
    contracts: Sums<2>,
    /// Per payment: fen added to `reversed_fen`.
    payments_reversed: Sums<1>,
}

impl Default for Deferred {
    fn default() -> Self {
        Deferred {
            payments: Rows::new(
                "INSERT INTO payments (id, contract_id, amount_fen, settled_at, settlement_date, bank_reference, \
                 reversed_fen, created_position, updated_position) VALUES",
                9,
                "",
            ),
            reversals: Rows::new(
                "INSERT INTO payment_reversals (id, payment_id, contract_id, amount_fen, reversed_at, reversal_date, reason, \
                 created_position) VALUES",
                8,
                "",
            ),
            contracts: Sums::new(
                "UPDATE contracts SET settled_fen = settled_fen + v.column2, reversed_fen = reversed_fen + v.column3, \
                 updated_position = v.column4 FROM (VALUES",
                ") AS v WHERE contracts.id = v.column1",
            ),
            payments_reversed: Sums::new(
                "UPDATE payments SET reversed_fen = reversed_fen + v.column2, updated_position = v.column3 FROM (VALUES",
                ") AS v WHERE payments.id = v.column1",
            ),
        }
    }
}

/// `N` amounts added to columns of rows by id, with the position of the last addition (the
/// row's new `updated_position`), kept in the order the rows were first touched; written by
/// one `UPDATE ... FROM (VALUES (id, sum 1 .. sum N, position), ...)`.
struct Sums<const N: usize> {
    head: &'static str,
    tail: &'static str,
    rows: hashlink::LinkedHashMap<String, ([i64; N], Position)>,
}

impl<const N: usize> Sums<N> {
    fn new(head: &'static str, tail: &'static str) -> Self {
        Sums { head, tail, rows: hashlink::LinkedHashMap::new() }
    }

    fn add(&mut self, id: &str, fen: [i64; N], position: Position) {
        let (sums, last) = self.rows.entry(id.to_owned()).or_insert(([0; N], position));
        for (sum, add) in sums.iter_mut().zip(fen) {
            *sum = sum.checked_add(add).expect("a batch's sums fit in i64 fen");
        }
        assert!(position >= *last, "changes are applied in log order");
        *last = position;
    }

    /// Writes the sums; each id must name exactly one row.
    async fn write(&mut self, tx: &mut Tx) -> Result<(), StoreError> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let expected = self.rows.len() as u64;
        let mut update = Rows::new(self.head, N + 2, self.tail);
        for (id, (sums, position)) in self.rows.drain() {
            let mut row = Vec::with_capacity(N + 2);
            row.push(id.into());
            row.extend(sums.map(Into::into));
            row.push(position.into());
            update.push(row);
        }
        let changed = update.write(tx).await?;
        if changed != expected {
            return Err(StoreError::Inconsistent(format!(
                "adding payments with `{}` changed {changed} rows instead of {expected}",
                self.head
            )));
        }
        Ok(())
    }
}

impl Deferred {
    /// Applies `change` made by the event at `position`, now or at the next [`flush`](Self::flush).
    pub(super) async fn apply(&mut self, tx: &mut Tx, change: &Change, position: Position) -> Result<(), StoreError> {
        match change {
            Change::InsertPayment(r) => {
                self.payments.push(vec![
                    r.id.as_str().into(),
                    r.contract_id.as_str().into(),
                    r.amount_fen.into(),
                    r.settled_at.into(),
                    r.settlement_date.into(),
                    r.bank_reference.as_str().into(),
                    0i64.into(),
                    position.into(),
                    position.into(),
                ]);
                self.contracts.add(&r.contract_id, [r.amount_fen, 0], position);
            }
            Change::InsertReversal(r) => {
                self.reversals.push(vec![
                    r.id.as_str().into(),
                    r.payment_id.as_str().into(),
                    r.contract_id.as_str().into(),
                    r.amount_fen.into(),
                    r.reversed_at.into(),
                    r.reversal_date.into(),
                    r.reason.as_str().into(),
                    position.into(),
                ]);
                self.payments_reversed.add(&r.payment_id, [r.amount_fen], position);
                self.contracts.add(&r.contract_id, [0, r.amount_fen], position);
            }
            Change::Claim { .. } => apply(tx, change, position).await?,
            _ => {
                self.flush(tx).await?;
                apply(tx, change, position).await?;
            }
        }
        Ok(())
    }

    /// Writes everything held back: the inserts, then the sums (which may add to them).
    pub(super) async fn flush(&mut self, tx: &mut Tx) -> Result<(), StoreError> {
        self.payments.write(tx).await?;
        self.reversals.write(tx).await?;
        self.contracts.write(tx).await?;
        self.payments_reversed.write(tx).await
    }
}
