//! Statements through GraphQL: the completer subsidy, an achievement's or a completer's
//! subsidy, the operating-center incentive, the annual turnover, the policies, and enacting a
//! policy version. Every statement takes `asOf` (a position) or `asOfTime` and says which
//! position and chain value it was computed at.

use async_graphql::{Context, Enum, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use ledger::command::{Command, EnactPolicy};
use ledger::reports::{AsOfRequest, ReportError};
use ledger::validation::ValidationError;
use ledger::{DomainError, statement};
use serde::Serialize;
use uuid::Uuid;

use super::ledger_view::CommandResult;
use super::scalars::{Date, Money, Position};
use super::{actor, domain_error, error, ledger, store_error};

/// Most lines one page of a statement returns.
pub const STATEMENT_LINES_MAX: i32 = 5_000;

fn report_error(e: ReportError) -> async_graphql::Error {
    match e {
        ReportError::BeyondHead { .. } => error("VALIDATION_FAILED", format!("asOf: {e}")),
        ReportError::Store(s) => store_error(s),
    }
}

async fn as_of(
    ctx: &Context<'_>,
    position: Option<Position>,
    time: Option<DateTime<Utc>>,
) -> Result<ledger::statement::AsOf> {
    let request = match (position, time) {
        (Some(_), Some(_)) => return Err(error("VALIDATION_FAILED", "give asOf or asOfTime, not both")),
        (Some(p), None) => AsOfRequest::Position(p.0),
        (None, Some(t)) => AsOfRequest::Time(t),
        (None, None) => AsOfRequest::Head,
    };
    ledger(ctx).resolve_as_of(request).await.map_err(report_error)
}

fn page<T: Clone>(items: &[T], offset: i32, first: i32) -> Result<Vec<T>> {
    if !(1..=STATEMENT_LINES_MAX).contains(&first) || offset < 0 {
        return Err(error(
            "VALIDATION_FAILED",
            format!("first: must be 1 to {STATEMENT_LINES_MAX}; offset: 0 or more"),
        ));
    }
    Ok(items.iter().skip(offset as usize).take(first as usize).cloned().collect())
}

fn money(m: ledger::Money) -> Money {
    Money(m)
}

/// The ledger state a statement shows.
#[derive(SimpleObject, Clone)]
pub struct AsOf {
    pub position: Position,
    /// Hex SHA-256 chain value after `position`.
    pub hash: String,
    /// When this answer was produced.
    pub produced_at: DateTime<Utc>,
}

impl From<ledger::statement::AsOf> for AsOf {
    fn from(a: ledger::statement::AsOf) -> AsOf {
        AsOf { position: Position(a.position), hash: a.hash, produced_at: Utc::now() }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Serialize)]
#[graphql(remote = "ledger::policy::PolicyKind")]
pub enum PolicyKind {
    CompleterSubsidy,
    OperatingCenterIncentive,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Serialize)]
#[graphql(remote = "ledger::policy::CapPeriod")]
pub enum CapPeriod {
    Lifetime,
    CalendarYear,
}

#[derive(SimpleObject, Clone)]
pub struct PolicyVersion {
    pub kind: PolicyKind,
    pub version: i32,
    /// Decimal fraction: "0.05" is 5 %.
    pub rate: String,
    pub cap: Money,
    pub cap_period: CapPeriod,
    pub basis: String,
    pub effective_from: Date,
    pub effective_until: Option<Date>,
    /// The document and clause.
    pub source: String,
}

impl From<&ledger::policy::PolicyVersion> for PolicyVersion {
    fn from(p: &ledger::policy::PolicyVersion) -> PolicyVersion {
        PolicyVersion {
            kind: p.kind.into(),
            version: p.version as i32,
            rate: p.rate.to_string(),
            cap: money(p.cap),
            cap_period: p.cap_period.into(),
            basis: p.basis.as_str().to_owned(),
            effective_from: Date(p.effective_from),
            effective_until: p.effective_until.map(Date),
            source: p.source.clone(),
        }
    }
}

/// One completer's part of a subsidy line.
#[derive(SimpleObject, Clone)]
pub struct CompleterLine {
    pub ordinal: i32,
    pub name: String,
    /// Percent, e.g. "33.33".
    pub share: String,
    pub amount: Money,
    /// The completer's subsidy from the achievement after this line.
    pub total: Money,
}

/// A line of the completer subsidy, with provenance (the event's position).
#[derive(SimpleObject, Clone)]
pub struct SubsidyLine {
    pub position: Position,
    pub seq: i32,
    /// payment, reversal or registration.
    pub kind: String,
    pub achievement_id: Uuid,
    pub contract_id: Uuid,
    pub payment_id: Uuid,
    pub reversal_id: Option<Uuid>,
    /// Settlement date, or reversal date (Asia/Shanghai).
    pub date: Date,
    pub received: Money,
    pub eligible: Money,
    pub subsidy: Money,
    pub policy_version: Option<i32>,
    /// Why the line earned nothing (codes).
    pub reasons: Vec<String>,
    pub eligible_total: Money,
    pub subsidy_total: Money,
    pub cap_reached: bool,
    pub completers: Vec<CompleterLine>,
}

fn share(bp: u32) -> String {
    format!("{}.{:02}", bp / 100, bp % 100)
}

impl From<&ledger::projection::SubsidyLine> for SubsidyLine {
    fn from(l: &ledger::projection::SubsidyLine) -> SubsidyLine {
        SubsidyLine {
            position: Position(l.position),
            seq: l.seq as i32,
            kind: l.kind.as_str().to_owned(),
            achievement_id: l.achievement_id.0,
            contract_id: l.contract_id.0,
            payment_id: l.payment_id.0,
            reversal_id: l.reversal_id.map(|r| r.0),
            date: Date(l.date),
            received: money(l.received),
            eligible: money(l.eligible),
            subsidy: money(l.subsidy),
            policy_version: l.policy_version.map(|v| v as i32),
            reasons: l.reasons.iter().map(|r| r.as_str().to_owned()).collect(),
            eligible_total: money(l.eligible_total),
            subsidy_total: money(l.subsidy_total),
            cap_reached: l.cap_reached,
            completers: l
                .completers
                .iter()
                .map(|c| CompleterLine {
                    ordinal: c.ordinal as i32,
                    name: c.name.clone(),
                    share: share(c.share_basis_points),
                    amount: money(c.amount),
                    total: money(c.total),
                })
                .collect(),
        }
    }
}

#[derive(SimpleObject, Clone)]
pub struct CompleterSummary {
    pub achievement_id: Uuid,
    pub ordinal: i32,
    pub name: String,
    pub share: String,
    pub subsidy: Money,
    pub lines: i32,
}

#[derive(SimpleObject, Clone)]
pub struct SubsidyTotals {
    pub received: Money,
    pub eligible: Money,
    pub subsidy: Money,
    pub lines: i32,
}

/// The completer subsidy statement of a year (科技成果完成人补贴).
pub struct CompleterSubsidyStatement(statement::CompleterStatement, AsOf);

#[Object]
impl CompleterSubsidyStatement {
    async fn year(&self) -> i32 {
        self.0.year
    }
    async fn as_of(&self) -> &AsOf {
        &self.1
    }
    async fn policies(&self) -> Vec<PolicyVersion> {
        self.0.policies.iter().map(Into::into).collect()
    }
    /// Totals of all the year's lines (not only of the page).
    async fn totals(&self) -> SubsidyTotals {
        let t = &self.0.totals;
        SubsidyTotals {
            received: money(t.received),
            eligible: money(t.eligible),
            subsidy: money(t.subsidy),
            lines: t.lines as i32,
        }
    }
    /// Per completer and achievement: the sum of their parts of the year's lines.
    async fn completers(&self) -> Vec<CompleterSummary> {
        self.0
            .completers
            .iter()
            .map(|c| CompleterSummary {
                achievement_id: c.achievement_id.0,
                ordinal: c.ordinal as i32,
                name: c.name.clone(),
                share: share(c.share_basis_points),
                subsidy: money(c.subsidy),
                lines: c.lines as i32,
            })
            .collect()
    }
    async fn lines(
        &self,
        #[graphql(default = 0)] offset: i32,
        #[graphql(default = 500)] first: i32,
    ) -> Result<Vec<SubsidyLine>> {
        Ok(page(&self.0.lines, offset, first)?.iter().map(Into::into).collect())
    }
}

#[derive(SimpleObject, Clone)]
pub struct CompleterTotal {
    pub ordinal: i32,
    pub name: String,
    pub share: String,
    pub subsidy: Money,
}

/// An achievement's subsidy and every line behind it.
#[derive(SimpleObject)]
pub struct AchievementSubsidy {
    pub achievement_id: Uuid,
    pub as_of: AsOf,
    pub eligible_received: Money,
    pub subsidy: Money,
    pub cap: Money,
    pub cap_reached: bool,
    pub completers: Vec<CompleterTotal>,
    pub lines: Vec<SubsidyLine>,
}

/// A completer's subsidy lines across achievements.
#[derive(SimpleObject)]
pub struct CompleterSubsidies {
    pub name: String,
    pub as_of: AsOf,
    /// The sum of this completer's parts of the lines.
    pub total: Money,
    pub lines: Vec<SubsidyLine>,
}

#[derive(SimpleObject, Clone)]
pub struct IncentiveLine {
    pub position: Position,
    pub seq: i32,
    pub kind: String,
    pub center_id: Uuid,
    /// The year whose operating amount and cap the line changes.
    pub incentive_year: i32,
    pub contract_id: Uuid,
    pub payment_id: Uuid,
    pub reversal_id: Option<Uuid>,
    pub date: Date,
    pub received: Money,
    pub operating: Money,
    pub incentive: Money,
    pub policy_version: Option<i32>,
    pub reasons: Vec<String>,
    pub operating_total: Money,
    pub incentive_total: Money,
    pub cap_reached: bool,
}

impl From<&ledger::projection::IncentiveLine> for IncentiveLine {
    fn from(l: &ledger::projection::IncentiveLine) -> IncentiveLine {
        IncentiveLine {
            position: Position(l.position),
            seq: l.seq as i32,
            kind: l.kind.as_str().to_owned(),
            center_id: l.center_id.0,
            incentive_year: l.incentive_year,
            contract_id: l.contract_id.0,
            payment_id: l.payment_id.0,
            reversal_id: l.reversal_id.map(|r| r.0),
            date: Date(l.date),
            received: money(l.received),
            operating: money(l.operating),
            incentive: money(l.incentive),
            policy_version: l.policy_version.map(|v| v as i32),
            reasons: l.reasons.iter().map(|r| r.as_str().to_owned()).collect(),
            operating_total: money(l.operating_total),
            incentive_total: money(l.incentive_total),
            cap_reached: l.cap_reached,
        }
    }
}

/// A center's figures for the year of the statement.
#[derive(SimpleObject, Clone)]
pub struct CenterYear {
    pub center_id: Uuid,
    pub year: i32,
    /// 运营金额 of the year, net of reversals (whenever they were dated).
    pub operating_amount: Money,
    pub incentive: Money,
    pub cap_reached: bool,
}

#[derive(SimpleObject, Clone)]
pub struct IncentiveTotals {
    pub received: Money,
    pub operating: Money,
    pub incentive: Money,
    pub lines: i32,
}

/// The operating-center incentive statement of a year (知识产权运营中心运营绩效补贴).
#[derive(SimpleObject)]
pub struct OperatingCenterIncentiveStatement {
    pub year: i32,
    pub as_of: AsOf,
    pub policies: Vec<PolicyVersion>,
    pub centers: Vec<CenterYear>,
    /// Totals of the lines dated in the year.
    pub totals: IncentiveTotals,
    pub lines: Vec<IncentiveLine>,
}

#[derive(SimpleObject, Clone)]
pub struct TurnoverFigures {
    pub contracts: i32,
    /// 合同成交额 (as amended).
    pub contract_amount: Money,
    /// 技术交易额 as certified at registration.
    pub tech_transaction_amount: Money,
    /// 到账额: payments by settlement date minus reversals by reversal date.
    pub received: Money,
}

impl From<&ledger::projection::TurnoverFigures> for TurnoverFigures {
    fn from(f: &ledger::projection::TurnoverFigures) -> TurnoverFigures {
        TurnoverFigures {
            contracts: i32::try_from(f.contracts).unwrap_or(i32::MAX),
            contract_amount: money(f.contract_amount),
            tech_transaction_amount: money(f.tech_transaction_amount),
            received: money(f.received),
        }
    }
}

#[derive(SimpleObject, Clone)]
pub struct TurnoverRow {
    pub key: String,
    pub figures: TurnoverFigures,
}

/// The annual technology-contract turnover (技术合同成交额) with its breakdowns.
pub struct TurnoverStatement(statement::TurnoverStatement, AsOf);

impl TurnoverStatement {
    fn rows(&self, dimension: &str) -> Vec<TurnoverRow> {
        self.0
            .rows
            .iter()
            .filter(|r| r.dimension == dimension)
            .map(|r| TurnoverRow { key: r.key.clone(), figures: (&r.figures).into() })
            .collect()
    }
}

#[Object]
impl TurnoverStatement {
    async fn year(&self) -> i32 {
        self.0.year
    }
    async fn as_of(&self) -> &AsOf {
        &self.1
    }
    async fn total(&self) -> TurnoverFigures {
        (&self.0.total).into()
    }
    /// development, transfer, licence, consulting, service.
    async fn by_contract_type(&self) -> Vec<TurnoverRow> {
        self.rows("contract_type")
    }
    /// university, research_institute, enterprise, other.
    async fn by_seller_kind(&self) -> Vec<TurnoverRow> {
        self.rows("seller_kind")
    }
    /// Technology field codes, or `unclassified`.
    async fn by_field(&self) -> Vec<TurnoverRow> {
        self.rows("field")
    }
    /// The seller's administrative division code.
    async fn by_district(&self) -> Vec<TurnoverRow> {
        self.rows("district")
    }
    /// YYYY-MM.
    async fn by_month(&self) -> Vec<TurnoverRow> {
        self.rows("month")
    }
}

#[derive(InputObject, Serialize)]
pub struct EnactPolicyInput {
    pub kind: PolicyKind,
    /// Decimal fraction between 0 and 1: "0.05" is 5 %.
    pub rate: String,
    pub cap: Money,
    pub cap_period: CapPeriod,
    pub effective_from: Date,
    pub effective_until: Option<Date>,
    /// The document and clause that decide it.
    pub source: String,
}

impl EnactPolicyInput {
    fn command(&self) -> Result<Command, ValidationError> {
        Ok(Command::EnactPolicy(EnactPolicy {
            kind: self.kind.into(),
            rate: ledger::money::Rate::parse("rate", &self.rate)?,
            cap: self.cap.0,
            cap_period: self.cap_period.into(),
            effective_from: self.effective_from.0,
            effective_until: self.effective_until.map(|d| d.0),
            source: self.source.clone(),
        }))
    }
}

#[derive(Default)]
pub struct StatementQuery;

#[Object]
impl StatementQuery {
    /// The policy versions known at a state of the ledger (defaults and enactments).
    async fn policies(&self, ctx: &Context<'_>, as_of: Option<Position>) -> Result<Vec<PolicyVersion>> {
        let at = self::as_of(ctx, as_of, None).await?;
        let book = ledger(ctx).policies(&at).await.map_err(report_error)?;
        Ok(book.versions().iter().map(Into::into).collect())
    }

    /// The completer subsidy statement of a year (lines dated in it, Asia/Shanghai). Finance, admin.
    async fn completer_subsidy_statement(
        &self,
        ctx: &Context<'_>,
        year: i32,
        as_of: Option<Position>,
        as_of_time: Option<DateTime<Utc>>,
    ) -> Result<CompleterSubsidyStatement> {
        super::access::require_role(ctx, super::access::STATEMENT_READERS, "read subsidy statements")?;
        let at = self::as_of(ctx, as_of, as_of_time).await?;
        let l = ledger(ctx);
        let source = l.default_source(&at).await.map_err(report_error)?;
        let s = l.completer_statement(year, at.clone(), source).await.map_err(report_error)?;
        Ok(CompleterSubsidyStatement(s, at.into()))
    }

    /// An achievement's subsidy, per completer, with every line. Finance, admin, the owner.
    async fn achievement_subsidy(
        &self,
        ctx: &Context<'_>,
        achievement_id: Uuid,
        as_of: Option<Position>,
        as_of_time: Option<DateTime<Utc>>,
    ) -> Result<AchievementSubsidy> {
        let caller = actor(ctx)?;
        let l = ledger(ctx);
        if !super::access::STATEMENT_READERS.contains(&caller.role) {
            // The owner's staff see their own achievement's subsidy.
            let owner =
                l.store().achievement(&achievement_id.to_string()).await.map_err(store_error)?.map(|a| a.owner_id);
            if owner.is_none()
                || caller.organisation_id.map(|o| o.to_string()) != owner
                || caller.role == ledger::Role::Broker
            {
                return Err(super::access::forbidden(&caller, "read another organisation's achievement subsidy"));
            }
        }
        let at = self::as_of(ctx, as_of, as_of_time).await?;
        let source = l.default_source(&at).await.map_err(report_error)?;
        let s = l
            .achievement_subsidy(ledger::ids::AchievementId(achievement_id), at.clone(), source)
            .await
            .map_err(report_error)?;
        Ok(AchievementSubsidy {
            achievement_id,
            as_of: at.into(),
            eligible_received: money(s.eligible_received),
            subsidy: money(s.subsidy),
            cap: money(s.cap),
            cap_reached: s.cap_reached,
            completers: s
                .completers
                .iter()
                .map(|c| CompleterTotal {
                    ordinal: c.ordinal as i32,
                    name: c.name.clone(),
                    share: share(c.share_basis_points),
                    subsidy: money(c.subsidy),
                })
                .collect(),
            lines: s.lines.iter().map(Into::into).collect(),
        })
    }

    /// A completer's subsidies across achievements (by name). Finance, admin.
    async fn completer_subsidies(
        &self,
        ctx: &Context<'_>,
        name: String,
        as_of: Option<Position>,
        as_of_time: Option<DateTime<Utc>>,
    ) -> Result<CompleterSubsidies> {
        super::access::require_role(ctx, super::access::STATEMENT_READERS, "read subsidy statements")?;
        let at = self::as_of(ctx, as_of, as_of_time).await?;
        let l = ledger(ctx);
        let source = l.default_source(&at).await.map_err(report_error)?;
        let s = l.completer_subsidies(&name, at.clone(), source).await.map_err(report_error)?;
        Ok(CompleterSubsidies {
            name,
            as_of: at.into(),
            total: money(s.total),
            lines: s.lines.iter().map(Into::into).collect(),
        })
    }

    /// The operating-center incentive statement of a year. Finance, admin.
    async fn operating_center_incentive_statement(
        &self,
        ctx: &Context<'_>,
        year: i32,
        as_of: Option<Position>,
        as_of_time: Option<DateTime<Utc>>,
    ) -> Result<OperatingCenterIncentiveStatement> {
        super::access::require_role(ctx, super::access::STATEMENT_READERS, "read incentive statements")?;
        let at = self::as_of(ctx, as_of, as_of_time).await?;
        let l = ledger(ctx);
        let source = l.default_source(&at).await.map_err(report_error)?;
        let s = l.incentive_statement(year, at.clone(), source).await.map_err(report_error)?;
        let t = &s.totals;
        Ok(OperatingCenterIncentiveStatement {
            year,
            as_of: at.into(),
            policies: s.policies.iter().map(Into::into).collect(),
            centers: s
                .centers
                .iter()
                .map(|c| CenterYear {
                    center_id: c.center_id.0,
                    year: c.year,
                    operating_amount: money(c.operating_amount),
                    incentive: money(c.incentive),
                    cap_reached: c.cap_reached,
                })
                .collect(),
            totals: IncentiveTotals {
                received: money(t.received),
                operating: money(t.operating),
                incentive: money(t.incentive),
                lines: t.lines as i32,
            },
            lines: s.lines.iter().map(Into::into).collect(),
        })
    }

    /// The annual technology-contract turnover with its breakdowns. Finance, admin.
    async fn turnover_statement(
        &self,
        ctx: &Context<'_>,
        year: i32,
        as_of: Option<Position>,
        as_of_time: Option<DateTime<Utc>>,
    ) -> Result<TurnoverStatement> {
        super::access::require_role(ctx, super::access::STATEMENT_READERS, "read turnover statements")?;
        let at = self::as_of(ctx, as_of, as_of_time).await?;
        let l = ledger(ctx);
        let source = l.default_source(&at).await.map_err(report_error)?;
        let s = l.turnover_statement(year, at.clone(), source).await.map_err(report_error)?;
        Ok(TurnoverStatement(s, at.into()))
    }
}

#[derive(Default)]
pub struct PolicyMutation;

#[Object]
impl PolicyMutation {
    /// Admin: enact the next version of a policy, effective from a date (past lines stay).
    async fn enact_policy(
        &self,
        ctx: &Context<'_>,
        input: EnactPolicyInput,
        idempotency_key: Option<String>,
    ) -> Result<CommandResult> {
        let actor = actor(ctx)?;
        let command = input.command().map_err(|v| domain_error(&DomainError::Invalid(v)))?;
        let fingerprint = ledger::service::request_fingerprint(
            "enactPolicy",
            &serde_json::to_value(&input).map_err(super::internal)?,
        );
        let context = ledger::service::CommandContext { actor, request_id: super::request_id(ctx), idempotency_key };
        let receipt = ledger(ctx).execute(&context, command, &fingerprint).await.map_err(super::command_error)?;
        Ok(CommandResult(receipt))
    }
}
