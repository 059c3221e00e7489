//! Statements: what finance files for a year, built from lines only, so that every total is
//! the sum of the lines shown, and a statement as of a position (lines from a replay of the
//! log up to it) and one at the head (lines from the tables) are built the same way.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Serialize;

use crate::event::Position;
use crate::ids::*;
use crate::money::Money;
use crate::policy::{PolicyBook, PolicyKind, PolicyVersion};
use crate::projection::{CellKey, CompleterTotal, IncentiveLine, SubsidyLine, TurnoverFigures, TurnoverLine, cell_key};

/// The ledger state a statement was computed at: print it, and the statement can be
/// reproduced and tied to the hash chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AsOf {
    pub position: Position,
    /// Hex SHA-256 chain value after `position` (64 zeros for an empty log).
    pub hash: String,
}

/// The policy versions a statement of `kind` for `year` rests on: those its lines used, and
/// the one in force at the end of the year.
fn policies_of(book: &PolicyBook, kind: PolicyKind, year: i32, used: impl Iterator<Item = u32>) -> Vec<PolicyVersion> {
    let mut versions: Vec<u32> = used.collect();
    let year_end = NaiveDate::from_ymd_opt(year, 12, 31).expect("a valid year");
    versions.extend(book.in_force(kind, year_end).map(|p| p.version));
    versions.sort_unstable();
    versions.dedup();
    versions.into_iter().map(|v| book.get(kind, v).clone()).collect()
}

/// One completer's subsidy from one achievement in the statement's year.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompleterSummary {
    pub achievement_id: AchievementId,
    pub ordinal: u32,
    pub name: String,
    pub share_basis_points: u32,
    /// Sum of the completer's lines in the year.
    pub subsidy: Money,
    pub lines: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SubsidyTotals {
    pub received: Money,
    pub eligible: Money,
    pub subsidy: Money,
    pub lines: u32,
}

/// The completer subsidy statement of a year: its lines (dated in the year, Asia/Shanghai),
/// a summary per completer, and totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompleterStatement {
    pub year: i32,
    pub as_of: AsOf,
    pub policies: Vec<PolicyVersion>,
    pub lines: Vec<SubsidyLine>,
    pub completers: Vec<CompleterSummary>,
    pub totals: SubsidyTotals,
}

pub fn completer_statement(
    year: i32,
    as_of: AsOf,
    book: &PolicyBook,
    mut lines: Vec<SubsidyLine>,
) -> CompleterStatement {
    lines.retain(|l| l.year() == year && l.position <= as_of.position);
    lines.sort_by_key(|l| (l.position, l.seq));
    let mut totals = SubsidyTotals::default();
    let mut completers: BTreeMap<(AchievementId, u32), CompleterSummary> = BTreeMap::new();
    for l in &lines {
        totals.received += l.received;
        totals.eligible += l.eligible;
        totals.subsidy += l.subsidy;
        totals.lines += 1;
        for c in &l.completers {
            let s = completers.entry((l.achievement_id, c.ordinal)).or_insert_with(|| CompleterSummary {
                achievement_id: l.achievement_id,
                ordinal: c.ordinal,
                name: c.name.clone(),
                share_basis_points: c.share_basis_points,
                subsidy: Money::ZERO,
                lines: 0,
            });
            s.subsidy += c.amount;
            s.lines += 1;
        }
    }
    let completers: Vec<CompleterSummary> = completers.into_values().collect();
    assert_eq!(
        completers.iter().map(|c| c.subsidy).sum::<Money>(),
        totals.subsidy,
        "completers add up to the statement"
    );
    let policies = policies_of(book, PolicyKind::CompleterSubsidy, year, lines.iter().filter_map(|l| l.policy_version));
    CompleterStatement { year, as_of, policies, lines, completers, totals }
}

/// An achievement's subsidy: where it stands, per completer, and every line behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AchievementSubsidy {
    pub achievement_id: AchievementId,
    pub as_of: AsOf,
    pub eligible_received: Money,
    pub subsidy: Money,
    pub cap: Money,
    pub cap_reached: bool,
    pub completers: Vec<CompleterTotal>,
    pub lines: Vec<SubsidyLine>,
}

/// Builds an achievement's subsidy from all its lines (lifetime cap: one period).
pub fn achievement_subsidy(
    achievement_id: AchievementId,
    as_of: AsOf,
    book: &PolicyBook,
    mut lines: Vec<SubsidyLine>,
) -> AchievementSubsidy {
    lines.retain(|l| l.achievement_id == achievement_id && l.position <= as_of.position);
    lines.sort_by_key(|l| (l.position, l.seq));
    let eligible_received: Money = lines.iter().map(|l| l.eligible).sum();
    let subsidy: Money = lines.iter().map(|l| l.subsidy).sum();
    let mut completers: BTreeMap<u32, CompleterTotal> = BTreeMap::new();
    for l in &lines {
        for c in &l.completers {
            let t = completers.entry(c.ordinal).or_insert_with(|| CompleterTotal {
                ordinal: c.ordinal,
                name: c.name.clone(),
                share_basis_points: c.share_basis_points,
                subsidy: Money::ZERO,
            });
            t.subsidy += c.amount;
        }
    }
    let cap = lines.iter().rev().find_map(|l| l.policy_version).map_or_else(
        || book.latest(PolicyKind::CompleterSubsidy).cap,
        |v| book.get(PolicyKind::CompleterSubsidy, v).cap,
    );
    let cap_reached = lines.last().is_some_and(|l| l.cap_reached);
    AchievementSubsidy {
        achievement_id,
        as_of,
        eligible_received,
        subsidy,
        cap,
        cap_reached,
        completers: completers.into_values().collect(),
        lines,
    }
}

/// A center's incentive for a year (the year whose cap the payments fill).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CenterYear {
    pub center_id: OrganisationId,
    pub year: i32,
    pub operating_amount: Money,
    pub incentive: Money,
    pub cap_reached: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IncentiveTotals {
    pub received: Money,
    pub operating: Money,
    pub incentive: Money,
    pub lines: u32,
}

/// The operating-center incentive statement of a year: the lines dated in the year (a
/// reversal shows in its own year, against the year it reduces), and each center's figures
/// for the year (operating amount and incentive of the year's cap).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncentiveStatement {
    pub year: i32,
    pub as_of: AsOf,
    pub policies: Vec<PolicyVersion>,
    pub lines: Vec<IncentiveLine>,
    pub centers: Vec<CenterYear>,
    pub totals: IncentiveTotals,
}

/// `lines` holds the lines dated in `year` and those counting in `year` (any date).
pub fn incentive_statement(year: i32, as_of: AsOf, book: &PolicyBook, lines: Vec<IncentiveLine>) -> IncentiveStatement {
    let mut lines: Vec<IncentiveLine> = lines.into_iter().filter(|l| l.position <= as_of.position).collect();
    lines.sort_by_key(|l| (l.position, l.seq));
    let mut centers: BTreeMap<OrganisationId, CenterYear> = BTreeMap::new();
    for l in lines.iter().filter(|l| l.incentive_year == year) {
        let c = centers.entry(l.center_id).or_insert_with(|| CenterYear {
            center_id: l.center_id,
            year,
            operating_amount: Money::ZERO,
            incentive: Money::ZERO,
            cap_reached: false,
        });
        c.operating_amount += l.operating;
        c.incentive += l.incentive;
        if !l.operating.is_zero() || !l.incentive.is_zero() {
            c.cap_reached = l.cap_reached;
        }
    }
    lines.retain(|l| l.year() == year);
    let mut totals = IncentiveTotals::default();
    for l in &lines {
        totals.received += l.received;
        totals.operating += l.operating;
        totals.incentive += l.incentive;
        totals.lines += 1;
    }
    let policies =
        policies_of(book, PolicyKind::OperatingCenterIncentive, year, lines.iter().filter_map(|l| l.policy_version));
    IncentiveStatement { year, as_of, policies, lines, centers: centers.into_values().collect(), totals }
}

/// One row of a turnover table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TurnoverRow {
    pub dimension: String,
    pub key: String,
    pub figures: TurnoverFigures,
}

/// The annual technology-contract turnover: the total and the breakdowns by contract type,
/// seller kind, technology field, district and month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TurnoverStatement {
    pub year: i32,
    pub as_of: AsOf,
    pub total: TurnoverFigures,
    pub rows: Vec<TurnoverRow>,
}

pub fn turnover_statement(year: i32, as_of: AsOf, lines: &[TurnoverLine]) -> TurnoverStatement {
    let mut cells: BTreeMap<(&'static str, CellKey), TurnoverFigures> = BTreeMap::new();
    for l in lines.iter().filter(|l| l.year() == year && l.position <= as_of.position) {
        for (dimension, key) in l.cells() {
            cells.entry((dimension, key)).or_default().add(l);
        }
    }
    let total = cells.remove(&("total", cell_key("total"))).unwrap_or_default();
    let rows: Vec<TurnoverRow> = cells
        .into_iter()
        .map(|((dimension, key), figures)| TurnoverRow {
            dimension: dimension.to_owned(),
            key: key.to_string(),
            figures,
        })
        .collect();
    for dimension in ["contract_type", "seller_kind", "field", "district", "month"] {
        let sum = rows.iter().filter(|r| r.dimension == dimension).fold(TurnoverFigures::default(), |mut acc, r| {
            acc.contracts += r.figures.contracts;
            acc.contract_amount += r.figures.contract_amount;
            acc.tech_transaction_amount += r.figures.tech_transaction_amount;
            acc.received += r.figures.received;
            acc
        });
        assert_eq!(sum, total, "every breakdown by {dimension} adds up to the total");
    }
    TurnoverStatement { year, as_of, total, rows }
}
