//! GraphQL output types over the read-model views. Related things (an achievement's owner,
//! a contract's payments) are resolved on demand from the read models.

use async_graphql::{Context, Object, Result, SimpleObject};
use ledger::codes::Share;
use ledger::store::queries::*;
use uuid::Uuid;

use super::enums::*;
use super::scalars::{Date, Money, Position};
use super::{internal, ledger, store_error};

/// Parses an id read back from the read model (written by us, always a UUID).
pub(crate) fn uuid(id: &str) -> Result<Uuid> {
    Uuid::parse_str(id).map_err(|_| internal(format!("read model id `{id}` is not a UUID")))
}

fn opt_uuid(id: &Option<String>) -> Result<Option<Uuid>> {
    id.as_deref().map(uuid).transpose()
}

fn money(fen: i64) -> Money {
    Money::from(fen)
}

fn list(joined: &str) -> Vec<String> {
    joined.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

async fn organisation_by_id(ctx: &Context<'_>, id: &str) -> Result<Option<Organisation>> {
    Ok(ledger(ctx).store().organisation(id).await.map_err(store_error)?.map(Organisation))
}

#[derive(SimpleObject)]
pub struct PageInfo {
    pub has_next_page: bool,
    /// Pass as `after` to get the next page.
    pub end_cursor: Option<String>,
}

/// Declares `<Name>Page { nodes, pageInfo }` for an output type over a view.
macro_rules! page_type {
    ($page:ident, $node:ident) => {
        #[derive(SimpleObject)]
        pub struct $page {
            pub nodes: Vec<$node>,
            pub page_info: PageInfo,
        }

        impl $page {
            pub fn from_rows<V>(
                page: ledger::store::queries::Page<V>,
                id: impl Fn(&V) -> &str,
                wrap: impl Fn(V) -> $node,
            ) -> $page {
                let end_cursor = page.rows.last().map(|r| id(r).to_owned());
                $page {
                    page_info: PageInfo { has_next_page: page.has_next_page, end_cursor },
                    nodes: page.rows.into_iter().map(wrap).collect(),
                }
            }
        }
    };
}

page_type!(OrganisationPage, Organisation);
page_type!(BrokerPage, Broker);
page_type!(AchievementPage, Achievement);
page_type!(DemandPage, Demand);
page_type!(MatchPage, Match);
page_type!(ContractPage, Contract);
page_type!(PaymentPage, Payment);

/// A university, institute, enterprise, broker agency or operating center.
pub struct Organisation(pub OrganisationView);

#[Object]
impl Organisation {
    async fn id(&self) -> Result<Uuid> {
        uuid(&self.0.id)
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn kind(&self) -> Result<OrganisationKind> {
        Ok(from_code(&self.0.kind, ledger::vocabulary::OrganisationKind::parse)?.into())
    }
    /// 统一社会信用代码
    async fn credit_code(&self) -> &str {
        &self.0.credit_code
    }
    /// 行政区划代码 (GB/T 2260)
    async fn division_code(&self) -> &str {
        &self.0.division_code
    }
    async fn registered_on(&self) -> Date {
        Date(self.0.registered_on)
    }
    async fn accreditations(&self, ctx: &Context<'_>) -> Result<Vec<Accreditation>> {
        let rows = ledger(ctx).store().accreditations_of(&self.0.id).await.map_err(store_error)?;
        Ok(rows.into_iter().map(Accreditation).collect())
    }
    /// The event that registered it.
    async fn created_position(&self) -> Position {
        Position(self.0.created_position)
    }
    /// The event that last changed it.
    async fn updated_position(&self) -> Position {
        Position(self.0.updated_position)
    }
}

pub struct Accreditation(pub AccreditationView);

#[Object]
impl Accreditation {
    async fn id(&self) -> Result<Uuid> {
        uuid(&self.0.id)
    }
    async fn kind(&self) -> Result<AccreditationKind> {
        Ok(from_code(&self.0.kind, ledger::vocabulary::AccreditationKind::parse)?.into())
    }
    async fn effective_from(&self) -> Date {
        Date(self.0.effective_from)
    }
    async fn effective_until(&self) -> Option<Date> {
        self.0.effective_until.map(Date)
    }
    async fn document_number(&self) -> &str {
        &self.0.document_number
    }
    async fn revoked_from(&self) -> Option<Date> {
        self.0.revoked_from.map(Date)
    }
    async fn revocation_reason(&self) -> Option<&str> {
        self.0.revocation_reason.as_deref()
    }
}

pub struct Broker(pub BrokerView);

#[Object]
impl Broker {
    async fn id(&self) -> Result<Uuid> {
        uuid(&self.0.id)
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn certificate_number(&self) -> Option<&str> {
        self.0.certificate_number.as_deref()
    }
    async fn agency(&self, ctx: &Context<'_>) -> Result<Option<Organisation>> {
        match &self.0.agency_id {
            Some(id) => organisation_by_id(ctx, id).await,
            None => Ok(None),
        }
    }
}

/// A completer (成果完成人) and their share of the achievement's subsidy.
pub struct Completer(pub CompleterView);

#[Object]
impl Completer {
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Percent with two decimals, e.g. "33.33".
    async fn share(&self) -> Result<String> {
        let bp = u32::try_from(self.0.share_basis_points).map_err(|_| internal("negative share"))?;
        Ok(Share::from_basis_points(bp).to_string())
    }
    /// Resident ID number: masked (`500***********1234`) for everyone but finance, who see it
    /// in full.
    async fn id_number(&self, ctx: &Context<'_>) -> Result<Option<String>> {
        let (Some(masked), Some(reference)) = (&self.0.id_number_masked, &self.0.id_reference) else { return Ok(None) };
        if !super::caller(ctx).is_some_and(|a| a.role == ledger::Role::Finance) {
            return Ok(Some(masked.clone()));
        }
        let rows = ledger(ctx).store().personal_data(&[uuid(reference)?]).await.map_err(store_error)?;
        let row =
            rows.first().ok_or_else(|| super::error("NOT_FOUND", "this ID number has been erased from the vault"))?;
        let id = super::vault(ctx).open(row).map_err(internal)?;
        Ok(Some(id.expose().to_owned()))
    }
}

pub struct Achievement(pub AchievementView);

#[Object]
impl Achievement {
    async fn id(&self) -> Result<Uuid> {
        uuid(&self.0.id)
    }
    async fn owner(&self, ctx: &Context<'_>) -> Result<Option<Organisation>> {
        organisation_by_id(ctx, &self.0.owner_id).await
    }
    async fn owner_id(&self) -> Result<Uuid> {
        uuid(&self.0.owner_id)
    }
    async fn title(&self) -> &str {
        &self.0.title
    }
    async fn field(&self) -> Result<TechField> {
        Ok(from_code(&self.0.field, ledger::vocabulary::TechField::parse)?.into())
    }
    async fn description(&self) -> &str {
        &self.0.description
    }
    async fn patent_numbers(&self) -> Vec<String> {
        list(&self.0.patent_numbers)
    }
    /// Technology readiness level, 1 to 9.
    async fn maturity(&self) -> i32 {
        self.0.maturity
    }
    async fn asking_price(&self) -> Option<Money> {
        self.0.asking_price_fen.map(money)
    }
    async fn transfer_modes(&self) -> Result<Vec<TransferMode>> {
        list(&self.0.transfer_modes)
            .iter()
            .map(|c| Ok(from_code(c, ledger::vocabulary::TransferMode::parse)?.into()))
            .collect()
    }
    async fn status(&self) -> Result<AchievementStatus> {
        from_code(&self.0.status, AchievementStatus::from_code)
    }
    /// Fixed once the achievement has a contract.
    async fn completers_locked(&self) -> bool {
        self.0.completers_locked
    }
    async fn completers(&self, ctx: &Context<'_>) -> Result<Vec<Completer>> {
        let rows = ledger(ctx).store().completers_of(&self.0.id).await.map_err(store_error)?;
        Ok(rows.into_iter().map(Completer).collect())
    }
    async fn listed_on(&self) -> Date {
        Date(self.0.listed_on)
    }
    async fn created_position(&self) -> Position {
        Position(self.0.created_position)
    }
    async fn updated_position(&self) -> Position {
        Position(self.0.updated_position)
    }
}

pub struct Demand(pub DemandView);

#[Object]
impl Demand {
    async fn id(&self) -> Result<Uuid> {
        uuid(&self.0.id)
    }
    async fn enterprise(&self, ctx: &Context<'_>) -> Result<Option<Organisation>> {
        organisation_by_id(ctx, &self.0.enterprise_id).await
    }
    async fn enterprise_id(&self) -> Result<Uuid> {
        uuid(&self.0.enterprise_id)
    }
    async fn title(&self) -> &str {
        &self.0.title
    }
    async fn field(&self) -> Result<TechField> {
        Ok(from_code(&self.0.field, ledger::vocabulary::TechField::parse)?.into())
    }
    async fn description(&self) -> &str {
        &self.0.description
    }
    async fn budget(&self) -> Option<Money> {
        self.0.budget_fen.map(money)
    }
    async fn deadline(&self) -> Option<Date> {
        self.0.deadline.map(Date)
    }
    async fn status(&self) -> Result<DemandStatus> {
        from_code(&self.0.status, DemandStatus::from_code)
    }
    async fn posted_on(&self) -> Date {
        Date(self.0.posted_on)
    }
    async fn created_position(&self) -> Position {
        Position(self.0.created_position)
    }
}

pub struct Match(pub MatchView);

#[Object]
impl Match {
    async fn id(&self) -> Result<Uuid> {
        uuid(&self.0.id)
    }
    async fn broker(&self, ctx: &Context<'_>) -> Result<Option<Broker>> {
        Ok(ledger(ctx).store().broker(&self.0.broker_id).await.map_err(store_error)?.map(Broker))
    }
    async fn achievement(&self, ctx: &Context<'_>) -> Result<Option<Achievement>> {
        Ok(ledger(ctx).store().achievement(&self.0.achievement_id).await.map_err(store_error)?.map(Achievement))
    }
    async fn demand(&self, ctx: &Context<'_>) -> Result<Option<Demand>> {
        Ok(ledger(ctx).store().demand(&self.0.demand_id).await.map_err(store_error)?.map(Demand))
    }
    async fn note(&self) -> &str {
        &self.0.note
    }
    async fn owner_answer(&self) -> Result<Option<MatchAnswer>> {
        self.0.owner_answer.as_deref().map(|a| from_code(a, MatchAnswer::from_code)).transpose()
    }
    async fn enterprise_answer(&self) -> Result<Option<MatchAnswer>> {
        self.0.enterprise_answer.as_deref().map(|a| from_code(a, MatchAnswer::from_code)).transpose()
    }
    async fn status(&self) -> Result<MatchStatus> {
        from_code(&self.0.status, MatchStatus::from_code)
    }
    async fn proposed_on(&self) -> Date {
        Date(self.0.proposed_on)
    }
    async fn updated_position(&self) -> Position {
        Position(self.0.updated_position)
    }
}

pub struct Contract(pub ContractView);

#[Object]
impl Contract {
    async fn id(&self) -> Result<Uuid> {
        uuid(&self.0.id)
    }
    async fn contract_number(&self) -> &str {
        &self.0.contract_number
    }
    async fn contract_type(&self) -> Result<ContractType> {
        Ok(from_code(&self.0.contract_type, ledger::vocabulary::ContractType::parse)?.into())
    }
    async fn title(&self) -> &str {
        &self.0.title
    }
    async fn seller(&self, ctx: &Context<'_>) -> Result<Option<Organisation>> {
        organisation_by_id(ctx, &self.0.seller_id).await
    }
    async fn buyer(&self, ctx: &Context<'_>) -> Result<Option<Organisation>> {
        organisation_by_id(ctx, &self.0.buyer_id).await
    }
    async fn seller_id(&self) -> Result<Uuid> {
        uuid(&self.0.seller_id)
    }
    async fn buyer_id(&self) -> Result<Uuid> {
        uuid(&self.0.buyer_id)
    }
    async fn achievement_id(&self) -> Result<Option<Uuid>> {
        opt_uuid(&self.0.achievement_id)
    }
    async fn achievement(&self, ctx: &Context<'_>) -> Result<Option<Achievement>> {
        match &self.0.achievement_id {
            Some(id) => Ok(ledger(ctx).store().achievement(id).await.map_err(store_error)?.map(Achievement)),
            None => Ok(None),
        }
    }
    async fn match_id(&self) -> Result<Option<Uuid>> {
        opt_uuid(&self.0.match_id)
    }
    async fn broker_id(&self) -> Result<Option<Uuid>> {
        opt_uuid(&self.0.broker_id)
    }
    async fn operating_center_id(&self) -> Result<Option<Uuid>> {
        opt_uuid(&self.0.operating_center_id)
    }
    async fn operating_center(&self, ctx: &Context<'_>) -> Result<Option<Organisation>> {
        match &self.0.operating_center_id {
            Some(id) => organisation_by_id(ctx, id).await,
            None => Ok(None),
        }
    }
    /// 合同成交额 (as amended).
    async fn contract_amount(&self) -> Money {
        money(self.0.contract_amount_fen)
    }
    /// 技术交易额 as declared by the parties.
    async fn tech_transaction_amount(&self) -> Money {
        money(self.0.tech_transaction_amount_fen)
    }
    async fn signed_on(&self) -> Date {
        Date(self.0.signed_on)
    }
    async fn status(&self) -> Result<ContractStatus> {
        from_code(&self.0.status, ContractStatus::from_code)
    }
    /// Set once registered (认定登记).
    async fn registration_number(&self) -> Option<&str> {
        self.0.registration_number.as_deref()
    }
    async fn registered_on(&self) -> Option<Date> {
        self.0.registered_on.map(Date)
    }
    /// 技术交易额 as certified by the registry.
    async fn certified_tech_transaction_amount(&self) -> Option<Money> {
        self.0.certified_tech_transaction_amount_fen.map(money)
    }
    async fn terminated_on(&self) -> Option<Date> {
        self.0.terminated_on.map(Date)
    }
    /// Total of settled payments.
    async fn settled_amount(&self) -> Money {
        money(self.0.settled_fen)
    }
    /// Total of reversals.
    async fn reversed_amount(&self) -> Money {
        money(self.0.reversed_fen)
    }
    /// 净到账额: settled minus reversed; never above the contract amount.
    async fn net_received(&self) -> Money {
        money(self.0.settled_fen - self.0.reversed_fen)
    }
    async fn payments(&self, ctx: &Context<'_>) -> Result<Vec<Payment>> {
        let filter = PaymentFilter { contract_id: Some(self.0.id.clone()), ..Default::default() };
        let page = PageRequest { first: Some(PAGE_ROWS_MAX), after: None };
        let rows = ledger(ctx).store().payments(&filter, &page).await.map_err(store_error)?;
        Ok(rows.rows.into_iter().map(Payment).collect())
    }
    async fn created_position(&self) -> Position {
        Position(self.0.created_position)
    }
    async fn updated_position(&self) -> Position {
        Position(self.0.updated_position)
    }
}

/// A settled payment (到账).
pub struct Payment(pub PaymentView);

#[Object]
impl Payment {
    async fn id(&self) -> Result<Uuid> {
        uuid(&self.0.id)
    }
    async fn contract_id(&self) -> Result<Uuid> {
        uuid(&self.0.contract_id)
    }
    async fn amount(&self) -> Money {
        money(self.0.amount_fen)
    }
    async fn settled_at(&self) -> chrono::DateTime<chrono::Utc> {
        self.0.settled_at
    }
    /// The Asia/Shanghai calendar date of `settledAt`.
    async fn settlement_date(&self) -> Date {
        Date(self.0.settlement_date)
    }
    async fn bank_reference(&self) -> &str {
        &self.0.bank_reference
    }
    async fn reversed_amount(&self) -> Money {
        money(self.0.reversed_fen)
    }
    async fn reversals(&self, ctx: &Context<'_>) -> Result<Vec<PaymentReversal>> {
        let rows = ledger(ctx).store().reversals_of_payment(&self.0.id).await.map_err(store_error)?;
        Ok(rows.into_iter().map(PaymentReversal).collect())
    }
    async fn position(&self) -> Position {
        Position(self.0.created_position)
    }
}

pub struct PaymentReversal(pub ReversalView);

#[Object]
impl PaymentReversal {
    async fn id(&self) -> Result<Uuid> {
        uuid(&self.0.id)
    }
    async fn amount(&self) -> Money {
        money(self.0.amount_fen)
    }
    async fn reversed_at(&self) -> chrono::DateTime<chrono::Utc> {
        self.0.reversed_at
    }
    async fn reversal_date(&self) -> Date {
        Date(self.0.reversal_date)
    }
    async fn reason(&self) -> &str {
        &self.0.reason
    }
    async fn position(&self) -> Position {
        Position(self.0.created_position)
    }
}
