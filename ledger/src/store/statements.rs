//! Reading the policy projections' lines back from their tables, as the domain types the
//! statement builders take. Lines are immutable and carry their position, so "the lines up
//! to position P" is exact whatever is being appended meanwhile.

use std::collections::HashMap;

use chrono::NaiveDate;
use uuid::Uuid;

use super::select::{BulkRow, Columns, Param};
use super::{Store, StoreError, with_pool};
use crate::event::Position;
use crate::ids::*;
use crate::money::Money;
use crate::policy::{PolicyBook, PolicyKind, PolicyVersion};
use crate::projection::*;
use crate::vocabulary::{ContractType, SellerKind, TechField};

/// Which subsidy lines to read.
#[derive(Debug, Clone)]
pub enum SubsidyScope {
    /// Lines dated in a year.
    Year(i32),
    Achievement(AchievementId),
    /// Lines in which a completer of that name has a part.
    Completer(String),
}

impl SubsidyScope {
    /// Whether `line` is in scope (what the tables' queries select, for replayed lines).
    pub fn holds(&self, line: &crate::projection::SubsidyLine) -> bool {
        match self {
            SubsidyScope::Year(y) => line.year() == *y,
            SubsidyScope::Achievement(a) => line.achievement_id == *a,
            SubsidyScope::Completer(name) => line.completers.iter().any(|c| &c.name == name),
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct SubsidyRow {
    pub(super) position: i64,
    pub(super) seq: i32,
    line_kind: String,
    achievement_id: String,
    cap_period: i32,
    contract_id: String,
    contract_number: String,
    payment_id: String,
    reversal_id: Option<String>,
    line_date: NaiveDate,
    received_fen: i64,
    eligible_fen: i64,
    subsidy_fen: i64,
    policy_version: Option<i32>,
    reasons: Option<String>,
    eligible_total_fen: i64,
    subsidy_total_fen: i64,
    cap_reached: bool,
}

#[derive(sqlx::FromRow)]
pub(super) struct CompleterRow {
    pub(super) position: i64,
    pub(super) seq: i32,
    ordinal: i32,
    completer_name: String,
    share_basis_points: i32,
    subsidy_fen: i64,
    subsidy_total_fen: i64,
}

#[derive(sqlx::FromRow)]
pub(super) struct IncentiveRow {
    position: i64,
    seq: i32,
    line_kind: String,
    center_id: String,
    incentive_year: i32,
    contract_id: String,
    contract_number: String,
    payment_id: String,
    reversal_id: Option<String>,
    line_date: NaiveDate,
    received_fen: i64,
    operating_fen: i64,
    incentive_fen: i64,
    policy_version: Option<i32>,
    reasons: Option<String>,
    operating_total_fen: i64,
    incentive_total_fen: i64,
    cap_reached: bool,
}

impl SubsidyRow {
    /// The line this row stores, with its completer parts.
    pub(super) fn into_line(self, completers: Vec<CompleterLine>) -> Result<SubsidyLine, StoreError> {
        Ok(SubsidyLine {
            position: self.position,
            seq: self.seq as u32,
            kind: kind(&self.line_kind)?,
            achievement_id: AchievementId(id(&self.achievement_id)?),
            period: self.cap_period,
            contract_id: ContractId(id(&self.contract_id)?),
            contract_number: self.contract_number,
            payment_id: PaymentId(id(&self.payment_id)?),
            reversal_id: self.reversal_id.as_deref().map(id).transpose()?.map(ReversalId),
            date: self.line_date,
            received: Money::from_fen(self.received_fen),
            eligible: Money::from_fen(self.eligible_fen),
            subsidy: Money::from_fen(self.subsidy_fen),
            policy_version: self.policy_version.map(|v| v as u32),
            reasons: reasons(self.reasons.as_deref())?,
            eligible_total: Money::from_fen(self.eligible_total_fen),
            subsidy_total: Money::from_fen(self.subsidy_total_fen),
            cap_reached: self.cap_reached,
            completers,
        })
    }
}

impl CompleterRow {
    pub(super) fn into_part(self) -> CompleterLine {
        CompleterLine {
            ordinal: self.ordinal as u32,
            name: self.completer_name,
            share_basis_points: self.share_basis_points as u32,
            amount: Money::from_fen(self.subsidy_fen),
            total: Money::from_fen(self.subsidy_total_fen),
        }
    }
}

impl IncentiveRow {
    pub(super) fn into_line(self) -> Result<IncentiveLine, StoreError> {
        Ok(IncentiveLine {
            position: self.position,
            seq: self.seq as u32,
            kind: kind(&self.line_kind)?,
            center_id: OrganisationId(id(&self.center_id)?),
            incentive_year: self.incentive_year,
            contract_id: ContractId(id(&self.contract_id)?),
            contract_number: self.contract_number,
            payment_id: PaymentId(id(&self.payment_id)?),
            reversal_id: self.reversal_id.as_deref().map(id).transpose()?.map(ReversalId),
            date: self.line_date,
            received: Money::from_fen(self.received_fen),
            operating: Money::from_fen(self.operating_fen),
            incentive: Money::from_fen(self.incentive_fen),
            policy_version: self.policy_version.map(|v| v as u32),
            reasons: reasons(self.reasons.as_deref())?,
            operating_total: Money::from_fen(self.operating_total_fen),
            incentive_total: Money::from_fen(self.incentive_total_fen),
            cap_reached: self.cap_reached,
        })
    }
}

#[derive(sqlx::FromRow)]
struct TurnoverRow {
    position: i64,
    seq: i32,
    line_kind: String,
    contract_id: String,
    payment_id: Option<String>,
    line_date: NaiveDate,
    contracts: i32,
    contract_amount_fen: i64,
    tech_transaction_amount_fen: i64,
    received_fen: i64,
    contract_type: String,
    seller_kind: String,
    field: Option<String>,
    district: String,
}

impl BulkRow for SubsidyRow {
    fn from_bulk(c: &mut Columns<'_, '_>) -> Result<Self, StoreError> {
        Ok(SubsidyRow {
            position: c.get("position")?,
            seq: c.get("seq")?,
            line_kind: c.get("line_kind")?,
            achievement_id: c.get("achievement_id")?,
            cap_period: c.get("cap_period")?,
            contract_id: c.get("contract_id")?,
            contract_number: c.get("contract_number")?,
            payment_id: c.get("payment_id")?,
            reversal_id: c.get("reversal_id")?,
            line_date: c.date("line_date")?,
            received_fen: c.get("received_fen")?,
            eligible_fen: c.get("eligible_fen")?,
            subsidy_fen: c.get("subsidy_fen")?,
            policy_version: c.get("policy_version")?,
            reasons: c.get("reasons")?,
            eligible_total_fen: c.get("eligible_total_fen")?,
            subsidy_total_fen: c.get("subsidy_total_fen")?,
            cap_reached: c.get("cap_reached")?,
        })
    }
}

impl BulkRow for CompleterRow {
    fn from_bulk(c: &mut Columns<'_, '_>) -> Result<Self, StoreError> {
        Ok(CompleterRow {
            position: c.get("position")?,
            seq: c.get("seq")?,
            ordinal: c.get("ordinal")?,
            completer_name: c.get("completer_name")?,
            share_basis_points: c.get("share_basis_points")?,
            subsidy_fen: c.get("subsidy_fen")?,
            subsidy_total_fen: c.get("subsidy_total_fen")?,
        })
    }
}

impl BulkRow for IncentiveRow {
    fn from_bulk(c: &mut Columns<'_, '_>) -> Result<Self, StoreError> {
        Ok(IncentiveRow {
            position: c.get("position")?,
            seq: c.get("seq")?,
            line_kind: c.get("line_kind")?,
            center_id: c.get("center_id")?,
            incentive_year: c.get("incentive_year")?,
            contract_id: c.get("contract_id")?,
            contract_number: c.get("contract_number")?,
            payment_id: c.get("payment_id")?,
            reversal_id: c.get("reversal_id")?,
            line_date: c.date("line_date")?,
            received_fen: c.get("received_fen")?,
            operating_fen: c.get("operating_fen")?,
            incentive_fen: c.get("incentive_fen")?,
            policy_version: c.get("policy_version")?,
            reasons: c.get("reasons")?,
            operating_total_fen: c.get("operating_total_fen")?,
            incentive_total_fen: c.get("incentive_total_fen")?,
            cap_reached: c.get("cap_reached")?,
        })
    }
}

impl BulkRow for TurnoverRow {
    fn from_bulk(c: &mut Columns<'_, '_>) -> Result<Self, StoreError> {
        Ok(TurnoverRow {
            position: c.get("position")?,
            seq: c.get("seq")?,
            line_kind: c.get("line_kind")?,
            contract_id: c.get("contract_id")?,
            payment_id: c.get("payment_id")?,
            line_date: c.date("line_date")?,
            contracts: c.get("contracts")?,
            contract_amount_fen: c.get("contract_amount_fen")?,
            tech_transaction_amount_fen: c.get("tech_transaction_amount_fen")?,
            received_fen: c.get("received_fen")?,
            contract_type: c.get("contract_type")?,
            seller_kind: c.get("seller_kind")?,
            field: c.get("field")?,
            district: c.get("district")?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct PolicyRow {
    policy: String,
    version: i32,
    rate: String,
    cap_fen: i64,
    cap_period: String,
    effective_from: NaiveDate,
    effective_until: Option<NaiveDate>,
    source: String,
}

pub(super) fn bad(what: &str, value: &str) -> StoreError {
    StoreError::Inconsistent(format!("unreadable {what} `{value}` in a projection table"))
}

pub(super) fn id(value: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(value).map_err(|_| bad("id", value))
}

pub(super) fn kind(value: &str) -> Result<LineKind, StoreError> {
    LineKind::parse(value).ok_or_else(|| bad("line kind", value))
}

pub(super) fn reasons(value: Option<&str>) -> Result<Vec<Reason>, StoreError> {
    Reason::split(value).ok_or_else(|| bad("reasons", value.unwrap_or_default()))
}

/// A line's columns, in the order its row's `from_bulk` reads them (statements and exports
/// select the same, then what they print beside it).
pub(super) const INCENTIVE_COLUMNS: &str = "l.position, l.seq, l.line_kind, l.center_id, l.incentive_year, l.contract_id, \
    l.contract_number, l.payment_id, l.reversal_id, l.line_date, l.received_fen, l.operating_fen, l.incentive_fen, \
    l.policy_version, l.reasons, l.operating_total_fen, l.incentive_total_fen, l.cap_reached";

/// As [`INCENTIVE_COLUMNS`], for a subsidy line.
pub(super) const SUBSIDY_COLUMNS: &str = "l.position, l.seq, l.line_kind, l.achievement_id, l.cap_period, l.contract_id, \
    l.contract_number, l.payment_id, l.reversal_id, l.line_date, l.received_fen, l.eligible_fen, l.subsidy_fen, \
    l.policy_version, l.reasons, l.eligible_total_fen, l.subsidy_total_fen, l.cap_reached";

impl Store {
    /// Subsidy lines in `scope` up to position `upto`, in log order, with their completer parts.
    pub async fn subsidy_lines(&self, scope: &SubsidyScope, upto: Position) -> Result<Vec<SubsidyLine>, StoreError> {
        let (filter, arg): (&str, String) = match scope {
            SubsidyScope::Year(y) => ("l.line_year = CAST($2 AS INTEGER)", y.to_string()),
            SubsidyScope::Achievement(a) => ("l.achievement_id = $2", a.to_string()),
            SubsidyScope::Completer(name) => (
                "EXISTS (SELECT 1 FROM subsidy_completer_lines c WHERE c.position = l.position AND c.seq = l.seq AND c.completer_name = $2)",
                name.clone(),
            ),
        };
        let sql = format!(
            "SELECT {SUBSIDY_COLUMNS} FROM subsidy_lines l WHERE l.position <= $1 AND {filter} ORDER BY l.position, l.seq"
        );
        let params = || vec![Param::BigInt(upto), Param::Text(arg.clone())];
        let rows: Vec<SubsidyRow> = self.select(sql, params()).await?;
        let parts_sql = format!(
            "SELECT c.position, c.seq, c.ordinal, c.completer_name, c.share_basis_points, c.subsidy_fen, c.subsidy_total_fen \
             FROM subsidy_completer_lines c JOIN subsidy_lines l ON l.position = c.position AND l.seq = c.seq \
             WHERE l.position <= $1 AND {filter} ORDER BY c.position, c.seq, c.ordinal"
        );
        let parts: Vec<CompleterRow> = self.select(parts_sql, params()).await?;
        let mut by_line: HashMap<(i64, i32), Vec<CompleterLine>> = HashMap::new();
        for c in parts {
            by_line.entry((c.position, c.seq)).or_default().push(c.into_part());
        }
        rows.into_iter()
            .map(|r| {
                let completers = by_line.remove(&(r.position, r.seq)).unwrap_or_default();
                r.into_line(completers)
            })
            .collect()
    }

    /// Incentive lines dated in `year` or counting in `year`, up to position `upto`.
    pub async fn incentive_lines(&self, year: i32, upto: Position) -> Result<Vec<IncentiveLine>, StoreError> {
        let rows: Vec<IncentiveRow> = self
            .select(
                format!(
                    "SELECT {INCENTIVE_COLUMNS} FROM incentive_lines l \
                     WHERE l.position <= $1 AND (l.line_year = $2 OR l.incentive_year = $2) ORDER BY l.position, l.seq"
                ),
                vec![Param::BigInt(upto), Param::Int(year)],
            )
            .await?;
        rows.into_iter().map(IncentiveRow::into_line).collect()
    }

    /// Turnover lines dated in `year`, up to position `upto`.
    pub async fn turnover_lines(&self, year: i32, upto: Position) -> Result<Vec<TurnoverLine>, StoreError> {
        let rows: Vec<TurnoverRow> = self
            .select(
                "SELECT position, seq, line_kind, contract_id, payment_id, line_date, contracts, contract_amount_fen, \
                 tech_transaction_amount_fen, received_fen, contract_type, seller_kind, field, district \
                 FROM turnover_lines WHERE position <= $1 AND line_year = $2 ORDER BY position, seq"
                    .to_owned(),
                vec![Param::BigInt(upto), Param::Int(year)],
            )
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok(TurnoverLine {
                    position: r.position,
                    seq: r.seq as u32,
                    kind: kind(&r.line_kind)?,
                    contract_id: ContractId(id(&r.contract_id)?),
                    payment_id: r.payment_id.as_deref().map(id).transpose()?.map(PaymentId),
                    date: r.line_date,
                    contracts: i64::from(r.contracts),
                    contract_amount: Money::from_fen(r.contract_amount_fen),
                    tech_transaction_amount: Money::from_fen(r.tech_transaction_amount_fen),
                    received: Money::from_fen(r.received_fen),
                    dims: TurnoverDims {
                        contract_type: ContractType::parse(&r.contract_type)
                            .ok_or_else(|| bad("contract type", &r.contract_type))?,
                        seller_kind: SellerKind::parse(&r.seller_kind)
                            .ok_or_else(|| bad("seller kind", &r.seller_kind))?,
                        field: r
                            .field
                            .as_deref()
                            .map(|f| TechField::parse(f).ok_or_else(|| bad("field", f)))
                            .transpose()?,
                        district: CellKey::from(&r.district).map_err(|_| bad("district", &r.district))?,
                    },
                })
            })
            .collect()
    }

    /// The policy versions known at position `upto`: the defaults and those enacted by then.
    pub async fn policy_book(&self, upto: Position) -> Result<PolicyBook, StoreError> {
        let rows: Vec<PolicyRow> = with_pool!(&self.db, |p| {
            sqlx::query_as(
                "SELECT policy, version, rate, cap_fen, cap_period, effective_from, effective_until, source \
                 FROM policy_versions WHERE created_position <= $1 ORDER BY created_position",
            )
            .bind(upto)
            .fetch_all(p)
            .await
        })?;
        let mut book = PolicyBook::default();
        for r in rows {
            let kind = PolicyKind::parse(&r.policy).ok_or_else(|| bad("policy", &r.policy))?;
            let cap_period = match r.cap_period.as_str() {
                "lifetime" => crate::policy::CapPeriod::Lifetime,
                "calendar_year" => crate::policy::CapPeriod::CalendarYear,
                other => return Err(bad("cap period", other)),
            };
            book.enact(PolicyVersion {
                kind,
                version: r.version as u32,
                rate: crate::money::Rate::parse("rate", &r.rate).map_err(|_| bad("rate", &r.rate))?,
                cap: Money::from_fen(r.cap_fen),
                cap_period,
                basis: crate::policy::Basis::of(kind),
                effective_from: r.effective_from,
                effective_until: r.effective_until,
                source: r.source,
            });
        }
        Ok(book)
    }
}
