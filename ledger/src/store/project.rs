//! Applies read-model [`Change`]s with SQL: the thin adapter under the pure projection in
//! `readmodel`. Changes are held back and written per table with a few multi-row statements
//! at the end of an append batch or of a rebuild page ([`Deferred`]). Every update must touch
//! exactly the rows it names; anything else means the read model and the log disagree, and
//! the transaction stops.

use std::collections::HashSet;

use super::rows::{Expect, Rows, Sink, Value};
use super::{StoreError, Tx, execute, with_conn};
use crate::event::Position;
use crate::ids::StreamId;
use crate::readmodel::Change;
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
    tx: &mut impl Sink,
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
    rows.write(tx, Expect::Exactly(projections.len() as u64, "one row per projection")).await
}

/// Read-model changes held back to the end of an append batch (or a rebuild page) and then
/// written per table with a few multi-row statements, instead of one or two statements per
/// change. [`flush`](Self::flush) writes them in an order that gives every row the value it
/// would have had with the changes applied one by one in log order:
/// 1. unique claims (rebuild only: live appends claim before deciding to write, see append);
/// 2. the completers of achievements whose list is replaced are deleted (an achievement
///    inserted in the same flush has none to delete);
/// 3. every insert;
/// 4. the column assignments to existing rows ([`Patches`]): per row, a later value of a
///    column replaces an earlier one, so one statement per set of columns is enough; the
///    matches' come first, because
/// 5. the status of answered matches follows from both answers, and is written right after
///    them, before the other tables' assignments;
/// 6. the running sums of payments and reversals ([`Sums`]), which only add (a contract with
///    assignments too gets its sums in the same statement: one new version of the row).
///
/// The one change that step 2 cannot order (the completers of one achievement replaced twice
/// before a flush) flushes first.
pub(super) struct Deferred {
    claims: Rows,
    completers_deleted: Rows,
    /// Achievements whose new completers are among the held-back inserts.
    completers_inserted: HashSet<String>,
    /// Achievements among the held-back inserts.
    achievements_inserted: HashSet<String>,
    inserts: Inserts,
    organisations: Patches,
    accreditations: Patches,
    achievements: Patches,
    demands: Patches,
    matches: Patches,
    contracts: Patches,
    /// A rebuild's rows inserted and not yet written, per table: their updates are applied to
    /// these rows instead of being written as `UPDATE`s (see [`Deferred::flush_page`]).
    held: HeldTables,
    /// Matches with a new answer, whose status is derived again after the patches.
    matches_answered: hashlink::LinkedHashSet<String>,
    /// Per contract: fen added to `settled_fen` and to `reversed_fen`.
    contract_sums: Sums<2>,
    /// Per payment: fen added to `reversed_fen`.
    payment_sums: Sums<1>,
}

/// The held-back inserts, one multi-row INSERT per table.
struct Inserts {
    organisations: Rows,
    accreditations: Rows,
    brokers: Rows,
    achievements: Rows,
    completers: Rows,
    demands: Rows,
    matches: Rows,
    contracts: Rows,
    payments: Rows,
    reversals: Rows,
    policy_versions: Rows,
}

impl Default for Inserts {
    fn default() -> Self {
        Inserts {
            organisations: Rows::new(
                "INSERT INTO organisations (id, name, kind, credit_code, division_code, registered_on, created_position, \
                 updated_position) VALUES",
                8,
                "",
            ),
            accreditations: Rows::new(
                "INSERT INTO accreditations (id, organisation_id, kind, effective_from, effective_until, document_number, \
                 created_position, updated_position) VALUES",
                8,
                "",
            ),
            brokers: Rows::new(
                "INSERT INTO brokers (id, name, agency_id, certificate_number, created_position) VALUES",
                5,
                "",
            ),
            achievements: ACHIEVEMENTS.insert(),
            completers: Rows::new(
                "INSERT INTO achievement_completers (achievement_id, ordinal, name, share_basis_points, id_number_masked, \
                 id_reference, id_fingerprint) VALUES",
                7,
                "",
            ),
            demands: DEMANDS.insert(),
            matches: MATCHES.insert(),
            contracts: CONTRACTS.insert(),
            payments: PAYMENTS.insert(),
            reversals: Rows::new(
                "INSERT INTO payment_reversals (id, payment_id, contract_id, amount_fen, reversed_at, reversal_date, reason, \
                 created_position) VALUES",
                8,
                "",
            ),
            policy_versions: Rows::new(
                "INSERT INTO policy_versions (policy, version, rate, cap_fen, cap_period, basis, effective_from, effective_until, \
                 source, created_position) VALUES",
                10,
                "",
            ),
        }
    }
}

impl Inserts {
    /// Each INSERT must add every row it carries.
    async fn write(&mut self, tx: &mut impl Sink) -> Result<(), StoreError> {
        for rows in [
            &mut self.organisations,
            &mut self.accreditations,
            &mut self.brokers,
            &mut self.achievements,
            &mut self.completers,
            &mut self.demands,
            &mut self.matches,
            &mut self.contracts,
            &mut self.payments,
            &mut self.reversals,
            &mut self.policy_versions,
        ] {
            let expected = Expect::Exactly(rows.len() as u64, "an INSERT without ON CONFLICT adds every row or fails");
            rows.write(tx, expected).await?;
        }
        Ok(())
    }
}

impl Default for Deferred {
    fn default() -> Self {
        Deferred {
            // A plain INSERT, so that a rebuild on PostgreSQL sends it as a `COPY`: a value the
            // log claims twice fails it (see `rebuild::claimed_twice`). As an upsert that
            // counted its rows it took a fifth of the server's time in a rebuild.
            claims: Rows::new("INSERT INTO unique_claims (claim, owner_stream, position) VALUES", 3, ""),
            // PostgreSQL plans `IN (VALUES ...)` as a scan of the whole table (a hash semi join,
            // whatever the number of ids), and `= ANY(ARRAY[...])` with the primary key.
            completers_deleted: Rows::new("DELETE FROM achievement_completers WHERE achievement_id IN (VALUES", 1, ")")
                .on_postgres("DELETE FROM achievement_completers WHERE achievement_id = ANY(ARRAY[", "])"),
            completers_inserted: HashSet::new(),
            achievements_inserted: HashSet::new(),
            inserts: Inserts::default(),
            organisations: Patches::new("organisations"),
            accreditations: Patches::new("accreditations"),
            achievements: Patches::new("achievements"),
            demands: Patches::new("demands"),
            matches: Patches::new("matches"),
            contracts: Patches::new("contracts"),
            held: HeldTables::default(),
            matches_answered: hashlink::LinkedHashSet::new(),
            contract_sums: Sums::new("contracts", ["settled_fen", "reversed_fen"]),
            payment_sums: Sums::new("payments", ["reversed_fen"]),
        }
    }
}

impl Deferred {
    /// Takes `change`, made by the event at `position`, to be written at the next
    /// [`flush`](Self::flush).
    pub(super) async fn apply(
        &mut self,
        tx: &mut impl Sink,
        change: &Change,
        position: Position,
    ) -> Result<(), StoreError> {
        let inserts = &mut self.inserts;
        match change {
            Change::Claim { claim, owner } => {
                self.claims.push(vec![claim.as_str().into(), owner.as_str().into(), position.into()]);
            }
            Change::InsertOrganisation(r) => inserts.organisations.push(vec![
                r.id.as_str().into(),
                r.name.as_str().into(),
                r.kind.into(),
                r.credit_code.as_str().into(),
                r.division_code.as_str().into(),
                r.registered_on.into(),
                position.into(),
                position.into(),
            ]),
            Change::InsertAccreditation(r) => {
                inserts.accreditations.push(vec![
                    r.id.as_str().into(),
                    r.organisation_id.as_str().into(),
                    r.kind.into(),
                    r.effective_from.into(),
                    r.effective_until.into(),
                    r.document_number.as_str().into(),
                    position.into(),
                    position.into(),
                ]);
                self.organisations.set(&r.organisation_id, vec![], position);
            }
            Change::RevokeAccreditation { id, revoked_from, reason } => self.accreditations.set(
                id,
                vec![("revoked_from", (*revoked_from).into()), ("revocation_reason", reason.as_str().into())],
                position,
            ),
            Change::InsertBroker(r) => inserts.brokers.push(vec![
                r.id.as_str().into(),
                r.name.as_str().into(),
                r.agency_id.clone().into(),
                r.certificate_number.clone().into(),
                position.into(),
            ]),
            Change::InsertAchievement(r) => {
                self.achievements_inserted.insert(r.id.clone());
                self.inserts.achievements.push(vec![
                    r.id.as_str().into(),
                    r.owner_id.as_str().into(),
                    r.title.as_str().into(),
                    r.field.into(),
                    r.description.as_str().into(),
                    r.patent_numbers.as_str().into(),
                    r.maturity.into(),
                    r.asking_price_fen.into(),
                    r.transfer_modes.as_str().into(),
                    "listed".into(),
                    false.into(),
                    r.listed_on.into(),
                    position.into(),
                    position.into(),
                ]);
            }
            Change::ReviseAchievement(r) => self.achievements.set(
                &r.id,
                vec![
                    ("title", r.title.as_str().into()),
                    ("field", r.field.into()),
                    ("description", r.description.as_str().into()),
                    ("patent_numbers", r.patent_numbers.as_str().into()),
                    ("maturity", r.maturity.into()),
                    ("asking_price_fen", r.asking_price_fen.into()),
                    ("transfer_modes", r.transfer_modes.as_str().into()),
                ],
                position,
            ),
            Change::ReplaceCompleters { achievement_id, completers } => {
                if self.completers_inserted.contains(achievement_id) {
                    // The held-back rows are the ones to replace: write them first.
                    self.flush(tx).await?;
                }
                if !self.achievements_inserted.contains(achievement_id) {
                    self.completers_deleted.push(vec![achievement_id.as_str().into()]);
                }
                for r in completers {
                    self.inserts.completers.push(vec![
                        achievement_id.as_str().into(),
                        r.ordinal.into(),
                        r.name.as_str().into(),
                        r.share_basis_points.into(),
                        r.id_number_masked.clone().into(),
                        r.id_reference.clone().into(),
                        r.id_fingerprint.clone().into(),
                    ]);
                }
                if !completers.is_empty() {
                    self.completers_inserted.insert(achievement_id.clone());
                }
            }
            Change::LockCompleters { achievement_id } => {
                self.achievements.set(achievement_id, vec![("completers_locked", true.into())], position)
            }
            Change::WithdrawAchievement { achievement_id } => {
                self.achievements.set(achievement_id, vec![("status", "withdrawn".into())], position)
            }
            Change::InsertDemand(r) => inserts.demands.push(vec![
                r.id.as_str().into(),
                r.enterprise_id.as_str().into(),
                r.title.as_str().into(),
                r.field.into(),
                r.description.as_str().into(),
                r.budget_fen.into(),
                r.deadline.into(),
                "open".into(),
                r.posted_on.into(),
                position.into(),
                position.into(),
            ]),
            Change::CloseDemand { demand_id } => {
                self.demands.set(demand_id, vec![("status", "closed".into())], position)
            }
            Change::InsertMatch(r) => inserts.matches.push(vec![
                r.id.as_str().into(),
                r.broker_id.as_str().into(),
                r.achievement_id.as_str().into(),
                r.demand_id.as_str().into(),
                r.note.as_str().into(),
                Value::Text(None),
                Value::Text(None),
                "proposed".into(),
                r.proposed_on.into(),
                position.into(),
                position.into(),
            ]),
            Change::AnswerMatch { match_id, side, answer } => {
                let column = match side {
                    MatchSide::Owner => "owner_answer",
                    MatchSide::Enterprise => "enterprise_answer",
                };
                self.matches.set(match_id, vec![(column, answer.as_str().into())], position);
                self.matches_answered.insert(match_id.clone());
            }
            Change::InsertContract(r) => inserts.contracts.push(vec![
                r.id.as_str().into(),
                r.contract_number.as_str().into(),
                r.contract_type.into(),
                r.title.as_str().into(),
                r.seller_id.as_str().into(),
                r.buyer_id.as_str().into(),
                r.achievement_id.clone().into(),
                r.match_id.clone().into(),
                r.broker_id.clone().into(),
                r.operating_center_id.clone().into(),
                r.contract_amount_fen.into(),
                r.tech_transaction_amount_fen.into(),
                r.signed_on.into(),
                "signed".into(),
                Value::Text(None),
                Value::Date(None),
                Value::Int(None),
                Value::Date(None),
                0i64.into(),
                0i64.into(),
                position.into(),
                position.into(),
            ]),
            Change::RegisterContract { contract_id, registration_number, registered_on, certified_fen } => {
                self.contracts.set(
                    contract_id,
                    vec![
                        ("status", "registered".into()),
                        ("registration_number", registration_number.as_str().into()),
                        ("registered_on", (*registered_on).into()),
                        ("certified_tech_transaction_amount_fen", (*certified_fen).into()),
                    ],
                    position,
                )
            }
            Change::AmendContract { contract_id, contract_amount_fen, tech_transaction_amount_fen } => {
                self.contracts.set(
                    contract_id,
                    vec![
                        ("contract_amount_fen", (*contract_amount_fen).into()),
                        ("tech_transaction_amount_fen", (*tech_transaction_amount_fen).into()),
                    ],
                    position,
                )
            }
            Change::TerminateContract { contract_id, terminated_on } => self.contracts.set(
                contract_id,
                vec![("status", "terminated".into()), ("terminated_on", (*terminated_on).into())],
                position,
            ),
            Change::InsertPayment(r) => {
                inserts.payments.push(vec![
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
                self.contract_sums.add(&r.contract_id, [r.amount_fen, 0], position);
            }
            Change::InsertReversal(r) => {
                inserts.reversals.push(vec![
                    r.id.as_str().into(),
                    r.payment_id.as_str().into(),
                    r.contract_id.as_str().into(),
                    r.amount_fen.into(),
                    r.reversed_at.into(),
                    r.reversal_date.into(),
                    r.reason.as_str().into(),
                    position.into(),
                ]);
                self.payment_sums.add(&r.payment_id, [r.amount_fen], position);
                self.contract_sums.add(&r.contract_id, [0, r.amount_fen], position);
            }
            Change::InsertPolicyVersion(r) => inserts.policy_versions.push(vec![
                r.policy.into(),
                r.version.into(),
                r.rate.as_str().into(),
                r.cap_fen.into(),
                r.cap_period.into(),
                r.basis.into(),
                r.effective_from.into(),
                r.effective_until.into(),
                r.source.as_str().into(),
                position.into(),
            ]),
        }
        Ok(())
    }

    /// Writes everything held back, in the order described on [`Deferred`].
    pub(super) async fn flush(&mut self, tx: &mut impl Sink) -> Result<(), StoreError> {
        self.flush_with(tx, false).await
    }

    /// A rebuild's flush after each page: like [`flush`](Self::flush), but the updates of
    /// existing rows (patches, the statuses of answered matches, and the sums) stay held back until
    /// `updates_held_max` rows wait for one ([`UPDATES_HELD_MAX`] by default), or the last page. Per row, those updates
    /// merge (a later value replaces an earlier one, sums add, the later position wins), so
    /// each row is then updated once or twice in the rebuild instead of after every page
    /// that touches it. Rows already written are all a held update needs: every insert is
    /// still written at the end of its page. On PostgreSQL every update of a row writes a
    /// new version of it and an entry in each of its table's indexes: the rebuild of the
    /// benchmark's year spent about a third of the server's time updating contracts.
    ///
    /// The achievements, demands, matches and contracts go further: a rebuild holds their
    /// inserted rows too, and applies their updates to those rows, so each is written once,
    /// whole ([`HeldTables`]). The held updates of the contracts had taken 1.86 s of the
    /// server's 9.3 s in a rebuild of the benchmark's year; those of the achievements and
    /// matches, written alone after the last page, about 1.1 s of a 5 s tail.
    pub(super) async fn flush_page(&mut self, tx: &mut impl Sink, updates_held_max: usize) -> Result<(), StoreError> {
        self.hold_inserted()?;
        let held = self.updates_held();
        self.flush_with(tx, held < updates_held_max).await
    }

    /// Rows with a held-back update, and held rows.
    fn updates_held(&self) -> usize {
        [&self.organisations, &self.accreditations, &self.achievements, &self.demands, &self.matches, &self.contracts]
            .iter()
            .map(|p| p.rows.len())
            .sum::<usize>()
            + self.contract_sums.rows.len()
            + self.payment_sums.rows.len()
            + self.held.len()
    }

    /// Takes the rows inserted since the last flush into the held ones, and applies the
    /// assignments and sums waiting for any held row to it: a later value replaces an earlier
    /// one, sums add, the later position wins (what the `UPDATE` would have done). A held
    /// match's status is derived from its answers, as [`Self::write_match_statuses`] would.
    fn hold_inserted(&mut self) -> Result<(), StoreError> {
        let (held, inserts) = (&mut self.held, &mut self.inserts);
        held.achievements.take(&mut inserts.achievements)?;
        held.demands.take(&mut inserts.demands)?;
        held.matches.take(&mut inserts.matches)?;
        held.contracts.take(&mut inserts.contracts)?;
        held.achievements.patch(&mut self.achievements);
        held.demands.patch(&mut self.demands);
        held.matches.patch(&mut self.matches);
        held.contracts.patch(&mut self.contracts);
        held.contracts.add(&mut self.contract_sums);
        let matches = &mut held.matches;
        self.matches_answered.retain(|id| !matches.derive_match_status(id));
        Ok(())
    }

    async fn flush_with(&mut self, tx: &mut impl Sink, hold_updates: bool) -> Result<(), StoreError> {
        let claims = Expect::Exactly(self.claims.len() as u64, "an INSERT without ON CONFLICT adds every row or fails");
        self.claims.write(tx, claims).await?;
        self.completers_deleted.write(tx, Expect::Any).await?;
        self.completers_inserted.clear();
        self.achievements_inserted.clear();
        if !hold_updates {
            self.held.release(&mut self.inserts);
        }
        self.inserts.write(tx).await?;
        if hold_updates {
            return Ok(());
        }
        // The statuses of answered matches follow from their patches, which come first.
        self.matches.write(tx).await?;
        self.write_match_statuses(tx).await?;
        for patches in [&mut self.organisations, &mut self.accreditations, &mut self.achievements, &mut self.demands] {
            patches.write(tx).await?;
        }
        self.contracts.write_with_sums(tx, &mut self.contract_sums).await?;
        self.contract_sums.write(tx).await?;
        self.payment_sums.write(tx).await
    }

    /// A match's status follows from both answers (the rule of `Match::status`).
    async fn write_match_statuses(&mut self, tx: &mut impl Sink) -> Result<(), StoreError> {
        let mut update = Rows::new(
            "UPDATE matches SET status = CASE \
               WHEN owner_answer = 'declined' OR enterprise_answer = 'declined' THEN 'declined' \
               WHEN owner_answer = 'accepted' AND enterprise_answer = 'accepted' THEN 'accepted' \
               ELSE 'proposed' END \
             FROM (VALUES",
            1,
            ") AS v WHERE matches.id = v.column1",
        );
        let expected = self.matches_answered.len() as u64;
        for id in self.matches_answered.drain() {
            update.push(vec![id.into()]);
        }
        update.write(tx, Expect::Changed(expected, "deriving the status of answered matches".into())).await
    }
}

/// A read-model table whose inserted rows a rebuild can hold ([`Held`]): its columns in the
/// order of its INSERT, the first its id, one of them `updated_position`.
struct Table {
    name: &'static str,
    columns: &'static [&'static str],
    /// What the log does when it inserts a row ("signs contract"), for the error when it does
    /// so twice.
    inserted: &'static str,
    /// `INSERT INTO name (columns) VALUES`, made once rather than for every append batch.
    statement: std::sync::OnceLock<String>,
}

impl Table {
    const fn new(name: &'static str, columns: &'static [&'static str], inserted: &'static str) -> Table {
        Table { name, columns, inserted, statement: std::sync::OnceLock::new() }
    }

    fn insert(&'static self) -> Rows {
        let statement =
            self.statement.get_or_init(|| format!("INSERT INTO {} ({}) VALUES", self.name, self.columns.join(", ")));
        Rows::new(statement.as_str(), self.columns.len(), "")
    }

    fn column(&self, column: &str) -> usize {
        self.columns
            .iter()
            .position(|c| *c == column)
            .unwrap_or_else(|| panic!("{} have no column {column}", self.name))
    }
}

const ACHIEVEMENT_COLUMNS: [&str; 14] = [
    "id",
    "owner_id",
    "title",
    "field",
    "description",
    "patent_numbers",
    "maturity",
    "asking_price_fen",
    "transfer_modes",
    "status",
    "completers_locked",
    "listed_on",
    "created_position",
    "updated_position",
];
static ACHIEVEMENTS: Table = Table::new("achievements", &ACHIEVEMENT_COLUMNS, "lists achievement");

const DEMAND_COLUMNS: [&str; 11] = [
    "id",
    "enterprise_id",
    "title",
    "field",
    "description",
    "budget_fen",
    "deadline",
    "status",
    "posted_on",
    "created_position",
    "updated_position",
];
static DEMANDS: Table = Table::new("demands", &DEMAND_COLUMNS, "posts demand");

const MATCH_COLUMNS: [&str; 11] = [
    "id",
    "broker_id",
    "achievement_id",
    "demand_id",
    "note",
    "owner_answer",
    "enterprise_answer",
    "status",
    "proposed_on",
    "created_position",
    "updated_position",
];
static MATCHES: Table = Table::new("matches", &MATCH_COLUMNS, "proposes match");

const CONTRACT_COLUMNS: [&str; 22] = [
    "id",
    "contract_number",
    "contract_type",
    "title",
    "seller_id",
    "buyer_id",
    "achievement_id",
    "match_id",
    "broker_id",
    "operating_center_id",
    "contract_amount_fen",
    "tech_transaction_amount_fen",
    "signed_on",
    "status",
    "registration_number",
    "registered_on",
    "certified_tech_transaction_amount_fen",
    "terminated_on",
    "settled_fen",
    "reversed_fen",
    "created_position",
    "updated_position",
];
static CONTRACTS: Table = Table::new("contracts", &CONTRACT_COLUMNS, "signs contract");

const PAYMENT_COLUMNS: [&str; 9] = [
    "id",
    "contract_id",
    "amount_fen",
    "settled_at",
    "settlement_date",
    "bank_reference",
    "reversed_fen",
    "created_position",
    "updated_position",
];
static PAYMENTS: Table = Table::new("payments", &PAYMENT_COLUMNS, "records payment");

/// The rows a rebuild holds, per table (see [`Deferred::flush_page`]). Not the payments: a
/// year's 165,430 payments had 2,906 reversals, and held they would fill
/// [`UPDATES_HELD_MAX`] before the year's end.
struct HeldTables {
    achievements: Held,
    demands: Held,
    matches: Held,
    contracts: Held,
}

impl Default for HeldTables {
    fn default() -> Self {
        HeldTables {
            achievements: Held::new(&ACHIEVEMENTS),
            demands: Held::new(&DEMANDS),
            matches: Held::new(&MATCHES),
            contracts: Held::new(&CONTRACTS),
        }
    }
}

impl HeldTables {
    fn len(&self) -> usize {
        self.tables().iter().map(|held| held.rows.len()).sum()
    }

    fn tables(&self) -> [&Held; 4] {
        [&self.achievements, &self.demands, &self.matches, &self.contracts]
    }

    /// Gives every held row back to its table's inserts, to be written.
    fn release(&mut self, inserts: &mut Inserts) {
        self.achievements.release(&mut inserts.achievements);
        self.demands.release(&mut inserts.demands);
        self.matches.release(&mut inserts.matches);
        self.contracts.release(&mut inserts.contracts);
    }
}

/// A rebuild's rows of one table, inserted and not yet written, by id in log order.
struct Held {
    table: &'static Table,
    rows: hashlink::LinkedHashMap<String, Vec<Value>>,
}

impl Held {
    fn new(table: &'static Table) -> Self {
        Held { table, rows: hashlink::LinkedHashMap::new() }
    }

    /// Takes the rows of `inserts`, which must be this table's.
    fn take(&mut self, inserts: &mut Rows) -> Result<(), StoreError> {
        assert_eq!(inserts.columns(), self.table.columns.len(), "rows of {}", self.table.name);
        for row in inserts.take_rows() {
            let Value::Text(Some(id)) = &row[0] else { unreachable!("an id is its row's first value, as text") };
            if self.rows.contains_key(id) {
                // Written as rows, the second would fail on the primary key.
                return Err(StoreError::Inconsistent(format!("the log {} {id} twice", self.table.inserted)));
            }
            self.rows.insert(id.clone(), row);
        }
        Ok(())
    }

    /// Applies the assignments waiting for held rows to them, and forgets those.
    fn patch(&mut self, patches: &mut Patches) {
        assert_eq!(patches.table, self.table.name, "patches of another table");
        let (table, rows) = (self.table, &mut self.rows);
        patches.rows.retain(|id, patch| {
            let Some(row) = rows.get_mut(id) else { return true };
            for (column, value) in std::mem::take(&mut patch.set) {
                row[table.column(column)] = value;
            }
            raise_updated_position(table, row, patch.position);
            false
        });
    }

    /// Adds the sums waiting for held rows to them, and forgets those.
    fn add<const N: usize>(&mut self, sums: &mut Sums<N>) {
        assert_eq!(sums.table, self.table.name, "sums of another table");
        let (table, rows, columns) = (self.table, &mut self.rows, sums.columns);
        sums.rows.retain(|id, (fen, last)| {
            let Some(row) = rows.get_mut(id) else { return true };
            for (column, add) in columns.iter().zip(*fen) {
                let Value::Int(Some(sum)) = &mut row[table.column(column)] else {
                    unreachable!("{column} is a number on every row of {}", table.name)
                };
                *sum = sum.checked_add(add).expect("a row's sums fit in i64 fen");
            }
            raise_updated_position(table, row, *last);
            false
        });
    }

    /// Sets the status of the held match `id` from its answers by the domain's rule
    /// (`MatchStatus::of`), as [`Deferred::write_match_statuses`] does in SQL for written ones.
    /// False when it is not held.
    fn derive_match_status(&mut self, id: &str) -> bool {
        use crate::domain::matching::{Answer, MatchStatus};
        let Some(row) = self.rows.get_mut(id) else { return false };
        let answer = |column: &str| match &row[MATCHES.column(column)] {
            Value::Text(text) => {
                text.as_deref().map(|a| Answer::parse(a).expect("a match's answer is accepted or declined"))
            }
            other => unreachable!("a match's answers are text, not {other:?}"),
        };
        let status = MatchStatus::of(answer("owner_answer"), answer("enterprise_answer"));
        row[MATCHES.column("status")] = status.as_str().into();
        true
    }

    /// Gives the held rows to `inserts`, in the order they were inserted.
    fn release(&mut self, inserts: &mut Rows) {
        for (_, row) in self.rows.drain() {
            inserts.push(row);
        }
    }
}

/// A held row's `updated_position`, never moved back.
fn raise_updated_position(table: &Table, row: &mut [Value], position: Position) {
    let Value::Int(Some(updated)) = &mut row[table.column("updated_position")] else {
        unreachable!("updated_position is a number on every row of {}", table.name)
    };
    *updated = (*updated).max(position);
}

/// Most rows with an update held back by a rebuild (see [`Deferred::flush_page`]): a few tens
/// of MB.
pub(super) const UPDATES_HELD_MAX: usize = 250_000;

/// Column assignments to existing rows of one table, by id: per row, merged in log order (a
/// later value of a column replaces an earlier one) with the position of the last change
/// (the row's new `updated_position`, never moved back), and written by one
/// `UPDATE ... FROM (VALUES (id, values .., position), ...)` per set of assigned columns.
struct Patches {
    table: &'static str,
    rows: hashlink::LinkedHashMap<String, Patch>,
}

struct Patch {
    set: Vec<(&'static str, Value)>,
    position: Position,
}

impl Patches {
    fn new(table: &'static str) -> Self {
        Patches { table, rows: hashlink::LinkedHashMap::new() }
    }

    fn set(&mut self, id: &str, columns: Vec<(&'static str, Value)>, position: Position) {
        let patch = self.rows.entry(id.to_owned()).or_insert_with(|| Patch { set: Vec::new(), position });
        for (column, value) in columns {
            match patch.set.iter_mut().find(|(c, _)| *c == column) {
                Some(slot) => slot.1 = value,
                None => patch.set.push((column, value)),
            }
        }
        assert!(position >= patch.position, "changes are applied in log order");
        patch.position = position;
    }

    /// Writes the patches; each id must name exactly one row.
    async fn write(&mut self, tx: &mut impl Sink) -> Result<(), StoreError> {
        self.write_with_sums(tx, &mut Sums::new(self.table, [])).await
    }

    /// Writes the patches, each with the `sums` of its row when there are some (then taken
    /// out of `sums`): one new version of the row instead of two. Each id must name exactly
    /// one row.
    async fn write_with_sums<const N: usize>(
        &mut self,
        tx: &mut impl Sink,
        sums: &mut Sums<N>,
    ) -> Result<(), StoreError> {
        type Shape = (Vec<&'static str>, bool);
        let mut shapes: hashlink::LinkedHashMap<Shape, (Rows, u64)> = hashlink::LinkedHashMap::new();
        for (id, mut patch) in self.rows.drain() {
            patch.set.sort_unstable_by_key(|(column, _)| *column);
            let columns: Vec<&'static str> = patch.set.iter().map(|(column, _)| *column).collect();
            let added = sums.rows.remove(&id);
            let (table, sum_columns) = (self.table, sums.columns);
            let (rows, count) = shapes.entry((columns.clone(), added.is_some())).or_insert_with(|| {
                let adds: &[&'static str] = if added.is_some() { &sum_columns } else { &[] };
                (update_by_id(table, &columns, adds), 0)
            });
            let mut values: Vec<Value> = patch.set.into_iter().map(|(_, value)| value).collect();
            let mut position = patch.position;
            if let Some((fen, last)) = added {
                values.extend(fen.map(Value::from));
                position = position.max(last);
            }
            rows.push(by_id_row(id, values, position));
            *count += 1;
        }
        for ((columns, added), (mut rows, expected)) in shapes {
            let sums = if added { format!(" and adding to {:?}", sums.columns) } else { String::new() };
            let what = format!("setting {columns:?}{sums} of {}", self.table);
            rows.write(tx, Expect::Changed(expected, what)).await?;
        }
        Ok(())
    }
}

/// `UPDATE t SET a = v.column2, .., s = s + v.columnN, .., updated_position = (the later of
/// both) FROM (VALUES (id, a, .., s, .., position), ..) AS v WHERE t.id = v.column1`: the
/// columns of `set` take the row's values, those of `add` add them. The rows are
/// [`by_id_row`]s.
fn update_by_id(table: &'static str, set: &[&'static str], add: &[&'static str]) -> Rows {
    let columns = set.len() + add.len();
    let position = format!("v.column{}", columns + 2);
    let mut head = format!("UPDATE {table} SET ");
    for (i, column) in set.iter().chain(add).enumerate() {
        let value = format!("v.column{}", i + 2);
        head.push_str(&if i < set.len() {
            format!("{column} = {value}, ")
        } else {
            format!("{column} = {column} + {value}, ")
        });
    }
    head.push_str(&format!(
        "updated_position = CASE WHEN {position} > updated_position THEN {position} ELSE updated_position END FROM (VALUES"
    ));
    Rows::new(head, columns + 2, format!(") AS v WHERE {table}.id = v.column1"))
}

/// One row of an [`update_by_id`]: the id, the values, the position.
fn by_id_row(id: String, values: impl IntoIterator<Item = Value>, position: Position) -> Vec<Value> {
    let mut row = vec![id.into()];
    row.extend(values);
    row.push(position.into());
    row
}

/// `N` amounts added to columns of rows by id, with the position of the last addition (the
/// row's new `updated_position`, never moved back), kept in the order the rows were first
/// touched; written by one [`update_by_id`] that adds.
struct Sums<const N: usize> {
    table: &'static str,
    columns: [&'static str; N],
    rows: hashlink::LinkedHashMap<String, ([i64; N], Position)>,
}

impl<const N: usize> Sums<N> {
    fn new(table: &'static str, columns: [&'static str; N]) -> Self {
        Sums { table, columns, rows: hashlink::LinkedHashMap::new() }
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
    async fn write(&mut self, tx: &mut impl Sink) -> Result<(), StoreError> {
        let expected = self.rows.len() as u64;
        let mut update = update_by_id(self.table, &[], &self.columns);
        for (id, (sums, position)) in self.rows.drain() {
            update.push(by_id_row(id, sums.map(Value::from), position));
        }
        let what = format!("adding payments to {:?} of {}", self.columns, self.table);
        update.write(tx, Expect::Changed(expected, what)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::matching::{Answer, Match};
    use crate::ids::{AchievementId, BrokerId, DemandId, MatchId};

    /// A held match's status, derived from its answers in the rebuild, follows the rule of
    /// `Match::status` (which `write_match_statuses` states in SQL) for every pair of answers.
    #[test]
    fn a_held_matchs_status_follows_the_rule_of_the_domain() {
        let answers = [None, Some(Answer::Accepted), Some(Answer::Declined)];
        let text = |a: Option<Answer>| match a {
            None => Value::Text(None),
            Some(Answer::Accepted) => "accepted".into(),
            Some(Answer::Declined) => "declined".into(),
        };
        for owner_answer in answers {
            for enterprise_answer in answers {
                let mut held = Held::new(&MATCHES);
                let mut inserts = MATCHES.insert();
                let mut row: Vec<Value> = MATCH_COLUMNS.iter().map(|_| Value::Text(None)).collect();
                row[0] = "m".into();
                row[MATCHES.column("status")] = "proposed".into();
                row[MATCHES.column("updated_position")] = 3i64.into();
                inserts.push(row);
                held.take(&mut inserts).expect("one match");
                let mut patches = Patches::new("matches");
                patches.set(
                    "m",
                    vec![("owner_answer", text(owner_answer)), ("enterprise_answer", text(enterprise_answer))],
                    7,
                );
                held.patch(&mut patches);
                assert!(patches.rows.is_empty(), "the held match took its answers");
                assert!(held.derive_match_status("m"));
                assert!(!held.derive_match_status("another"), "a match not held is left to SQL");
                let expected = Match {
                    id: MatchId::new_v7(),
                    broker_id: BrokerId::new_v7(),
                    achievement_id: AchievementId::new_v7(),
                    demand_id: DemandId::new_v7(),
                    owner_answer,
                    enterprise_answer,
                }
                .status();
                let Value::Text(Some(status)) = &held.rows["m"][MATCHES.column("status")] else { panic!("a status") };
                assert!(
                    matches!(held.rows["m"][MATCHES.column("updated_position")], Value::Int(Some(7))),
                    "the answers' position"
                );
                assert_eq!(status, expected.as_str(), "{owner_answer:?} and {enterprise_answer:?}");
            }
        }
    }

    /// The same id inserted twice into held rows is the log's inconsistency, named.
    #[test]
    fn a_row_inserted_twice_into_held_rows_is_an_inconsistency() {
        let mut held = Held::new(&DEMANDS);
        let mut inserts = DEMANDS.insert();
        for _ in 0..2 {
            let mut row: Vec<Value> = DEMAND_COLUMNS.iter().map(|_| Value::Int(Some(0))).collect();
            row[0] = "d".into();
            inserts.push(row);
        }
        let err = held.take(&mut inserts).unwrap_err();
        assert!(err.to_string().contains("the log posts demand d twice"), "{err}");
    }
}
