//! Queries and mutations of the marketplace (organisations, brokers, achievements, demands,
//! matches) and of contracts and payments. Resolvers are thin: parse, call the ledger, wrap.

use async_graphql::{Context, InputObject, Object, Result};
use ledger::DomainError;
use ledger::personal::PersonalDataKey;
use ledger::service::{CommandContext, request_fingerprint};
use ledger::store::queries::{self, PAGE_ROWS_MAX, PageRequest};
use ledger::validation::ValidationError;
use serde::Serialize;
use uuid::Uuid;

use super::enums::*;
use super::inputs::*;
use super::ledger_view::CommandResult;
use super::scalars::Date;
use super::types::*;
use super::{access, actor, command_error, domain_error, internal, ledger, request_id, store_error, vault};

/// Checks a page request: `first` is 1 to 500.
fn page(first: Option<i32>, after: Option<String>) -> Result<PageRequest> {
    if let Some(n) = first
        && !(1..=PAGE_ROWS_MAX as i32).contains(&n)
    {
        return Err(domain_error(&DomainError::Invalid(ValidationError::new(
            "first",
            "page_size",
            format!("must be 1 to {PAGE_ROWS_MAX}"),
        ))));
    }
    Ok(PageRequest { first: first.map(i64::from), after })
}

/// Parses, fingerprints and runs one mutation for the caller.
async fn run<I: Serialize>(
    ctx: &Context<'_>,
    mutation: &str,
    input: &I,
    idempotency_key: Option<String>,
    parse: impl FnOnce(&I, &PersonalDataKey) -> Result<Sealed, ValidationError>,
) -> Result<CommandResult> {
    let actor = actor(ctx)?;
    let (command, personal_data) = parse(input, vault(ctx)).map_err(|v| domain_error(&DomainError::Invalid(v)))?;
    let fingerprint = request_fingerprint(mutation, &serde_json::to_value(input).map_err(internal)?);
    let context = CommandContext { actor, request_id: request_id(ctx), idempotency_key };
    let receipt = ledger(ctx)
        .execute_with_personal_data(&context, command, &fingerprint, personal_data)
        .await
        .map_err(command_error)?;
    Ok(CommandResult(receipt))
}

#[derive(InputObject, Default)]
pub struct OrganisationFilter {
    pub kind: Option<OrganisationKind>,
    /// e.g. "50" for every organisation located in Chongqing.
    pub division_code_prefix: Option<String>,
}

#[derive(InputObject, Default)]
pub struct AchievementFilter {
    pub owner_id: Option<Uuid>,
    pub field: Option<TechField>,
    pub status: Option<AchievementStatus>,
    pub listed_from: Option<Date>,
    pub listed_to: Option<Date>,
}

#[derive(InputObject, Default)]
pub struct DemandFilter {
    pub enterprise_id: Option<Uuid>,
    pub field: Option<TechField>,
    pub status: Option<DemandStatus>,
    pub posted_from: Option<Date>,
    pub posted_to: Option<Date>,
}

#[derive(InputObject, Default)]
pub struct MatchFilter {
    pub broker_id: Option<Uuid>,
    pub achievement_id: Option<Uuid>,
    pub demand_id: Option<Uuid>,
    pub status: Option<MatchStatus>,
    pub proposed_from: Option<Date>,
    pub proposed_to: Option<Date>,
}

#[derive(InputObject, Default)]
pub struct ContractFilter {
    pub seller_id: Option<Uuid>,
    pub buyer_id: Option<Uuid>,
    pub achievement_id: Option<Uuid>,
    pub operating_center_id: Option<Uuid>,
    pub contract_type: Option<ContractType>,
    pub status: Option<ContractStatus>,
    pub signed_from: Option<Date>,
    pub signed_to: Option<Date>,
}

#[derive(InputObject, Default)]
pub struct PaymentFilter {
    pub contract_id: Option<Uuid>,
    /// Settlement dates (Asia/Shanghai), inclusive.
    pub settled_from: Option<Date>,
    pub settled_to: Option<Date>,
}

fn id(u: Option<Uuid>) -> Option<String> {
    u.map(|u| u.to_string())
}

fn day(d: Option<Date>) -> Option<chrono::NaiveDate> {
    d.map(|d| d.0)
}

#[derive(Default)]
pub struct MarketQuery;

#[Object]
impl MarketQuery {
    /// Registered organisations. Public.
    async fn organisations(
        &self,
        ctx: &Context<'_>,
        #[graphql(default)] filter: OrganisationFilter,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<OrganisationPage> {
        let f = queries::OrganisationFilter {
            kind: filter.kind.map(|k| ledger::vocabulary::OrganisationKind::from(k).as_str().to_owned()),
            division_code_prefix: filter.division_code_prefix,
        };
        let rows = ledger(ctx).store().organisations(&f, &page(first, after)?).await.map_err(store_error)?;
        Ok(OrganisationPage::from_rows(rows, |r| &r.id, Organisation))
    }

    async fn organisation(&self, ctx: &Context<'_>, id: Uuid) -> Result<Option<Organisation>> {
        Ok(ledger(ctx).store().organisation(&id.to_string()).await.map_err(store_error)?.map(Organisation))
    }

    /// Registered technology brokers. Public.
    async fn brokers(&self, ctx: &Context<'_>, first: Option<i32>, after: Option<String>) -> Result<BrokerPage> {
        let rows = ledger(ctx).store().brokers(&page(first, after)?).await.map_err(store_error)?;
        Ok(BrokerPage::from_rows(rows, |r| &r.id, Broker))
    }

    async fn broker(&self, ctx: &Context<'_>, id: Uuid) -> Result<Option<Broker>> {
        Ok(ledger(ctx).store().broker(&id.to_string()).await.map_err(store_error)?.map(Broker))
    }

    /// Research achievements on offer. Public.
    async fn achievements(
        &self,
        ctx: &Context<'_>,
        #[graphql(default)] filter: AchievementFilter,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<AchievementPage> {
        let f = queries::AchievementFilter {
            owner_id: id(filter.owner_id),
            field: filter.field.map(|f| ledger::vocabulary::TechField::from(f).as_str().to_owned()),
            status: filter.status.map(|s| s.code().to_owned()),
            listed_from: day(filter.listed_from),
            listed_to: day(filter.listed_to),
        };
        let rows = ledger(ctx).store().achievements(&f, &page(first, after)?).await.map_err(store_error)?;
        Ok(AchievementPage::from_rows(rows, |r| &r.id, Achievement))
    }

    async fn achievement(&self, ctx: &Context<'_>, id: Uuid) -> Result<Option<Achievement>> {
        Ok(ledger(ctx).store().achievement(&id.to_string()).await.map_err(store_error)?.map(Achievement))
    }

    /// Technology demands of enterprises. Public.
    async fn demands(
        &self,
        ctx: &Context<'_>,
        #[graphql(default)] filter: DemandFilter,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<DemandPage> {
        let f = queries::DemandFilter {
            enterprise_id: id(filter.enterprise_id),
            field: filter.field.map(|f| ledger::vocabulary::TechField::from(f).as_str().to_owned()),
            status: filter.status.map(|s| s.code().to_owned()),
            posted_from: day(filter.posted_from),
            posted_to: day(filter.posted_to),
        };
        let rows = ledger(ctx).store().demands(&f, &page(first, after)?).await.map_err(store_error)?;
        Ok(DemandPage::from_rows(rows, |r| &r.id, Demand))
    }

    async fn demand(&self, ctx: &Context<'_>, id: Uuid) -> Result<Option<Demand>> {
        Ok(ledger(ctx).store().demand(&id.to_string()).await.map_err(store_error)?.map(Demand))
    }

    /// Brokers' matches. Needs a token.
    async fn matches(
        &self,
        ctx: &Context<'_>,
        #[graphql(default)] filter: MatchFilter,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<MatchPage> {
        let reach = access::deal_reach(ctx)?;
        let f = queries::MatchFilter {
            party_id: reach.organisation(),
            broker_id: reach.broker().or(id(filter.broker_id)),
            achievement_id: id(filter.achievement_id),
            demand_id: id(filter.demand_id),
            status: filter.status.map(|s| s.code().to_owned()),
            proposed_from: day(filter.proposed_from),
            proposed_to: day(filter.proposed_to),
        };
        let rows = ledger(ctx).store().matches(&f, &page(first, after)?).await.map_err(store_error)?;
        Ok(MatchPage::from_rows(rows, |r| &r.id, Match))
    }

    #[graphql(name = "match")]
    async fn match_(&self, ctx: &Context<'_>, id: Uuid) -> Result<Option<Match>> {
        let reach = access::deal_reach(ctx)?;
        let store = ledger(ctx).store();
        let Some(m) = store.match_view(&id.to_string()).await.map_err(store_error)? else { return Ok(None) };
        let visible = match &reach {
            access::Reach::All => true,
            access::Reach::Broker(b) => &m.broker_id == b,
            access::Reach::Organisation(o) => {
                let owner = store.achievement(&m.achievement_id).await.map_err(store_error)?.map(|a| a.owner_id);
                let enterprise = store.demand(&m.demand_id).await.map_err(store_error)?.map(|d| d.enterprise_id);
                owner.as_ref() == Some(o) || enterprise.as_ref() == Some(o)
            }
        };
        if !visible {
            return Err(access::forbidden(&actor(ctx)?, "see a match it is not a party to"));
        }
        Ok(Some(Match(m)))
    }
}

#[derive(Default)]
pub struct ContractQuery;

#[Object]
impl ContractQuery {
    /// Technology contracts. Needs a token.
    async fn contracts(
        &self,
        ctx: &Context<'_>,
        #[graphql(default)] filter: ContractFilter,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<ContractPage> {
        let reach = access::deal_reach(ctx)?;
        let f = queries::ContractFilter {
            party_id: reach.organisation(),
            broker_id: reach.broker(),
            seller_id: id(filter.seller_id),
            buyer_id: id(filter.buyer_id),
            achievement_id: id(filter.achievement_id),
            operating_center_id: id(filter.operating_center_id),
            contract_type: filter.contract_type.map(|t| ledger::vocabulary::ContractType::from(t).as_str().to_owned()),
            status: filter.status.map(|s| s.code().to_owned()),
            signed_from: day(filter.signed_from),
            signed_to: day(filter.signed_to),
        };
        let rows = ledger(ctx).store().contracts(&f, &page(first, after)?).await.map_err(store_error)?;
        Ok(ContractPage::from_rows(rows, |r| &r.id, Contract))
    }

    async fn contract(&self, ctx: &Context<'_>, id: Uuid) -> Result<Option<Contract>> {
        let reach = access::deal_reach(ctx)?;
        let Some(c) = ledger(ctx).store().contract(&id.to_string()).await.map_err(store_error)? else {
            return Ok(None);
        };
        let parties = [Some(c.seller_id.as_str()), Some(c.buyer_id.as_str()), c.operating_center_id.as_deref()];
        if !reach.covers_contract(&parties, c.broker_id.as_deref()) {
            return Err(access::forbidden(&actor(ctx)?, "see a contract it is not a party to"));
        }
        Ok(Some(Contract(c)))
    }

    /// Settled payments. Needs a token.
    async fn payments(
        &self,
        ctx: &Context<'_>,
        #[graphql(default)] filter: PaymentFilter,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<PaymentPage> {
        let reach = access::deal_reach(ctx)?;
        let f = queries::PaymentFilter {
            party_id: reach.organisation(),
            broker_id: reach.broker(),
            contract_id: id(filter.contract_id),
            settled_from: day(filter.settled_from),
            settled_to: day(filter.settled_to),
        };
        let rows = ledger(ctx).store().payments(&f, &page(first, after)?).await.map_err(store_error)?;
        Ok(PaymentPage::from_rows(rows, |r| &r.id, Payment))
    }
}

/// Every mutation takes an optional `idempotencyKey`: repeating a key with the same input
/// returns the first result and records nothing; with different input it is an error.
#[derive(Default)]
pub struct MarketMutation;

#[Object]
impl MarketMutation {
    /// Admin: register an organisation.
    async fn register_organisation(
        &self,
        ctx: &Context<'_>,
        input: RegisterOrganisationInput,
        idempotency_key: Option<String>,
    ) -> Result<CommandResult> {
        run(ctx, "registerOrganisation", &input, idempotency_key, plain(RegisterOrganisationInput::command)).await
    }

    /// Admin: record an accreditation (introduced R&D institution, innovation platform, IP
    /// operating center) from its effective date.
    async fn accredit_organisation(
        &self,
        ctx: &Context<'_>,
        input: AccreditOrganisationInput,
        idempotency_key: Option<String>,
    ) -> Result<CommandResult> {
        run(ctx, "accreditOrganisation", &input, idempotency_key, plain(AccreditOrganisationInput::command)).await
    }

    /// Admin: end an accreditation from a date.
    async fn revoke_accreditation(
        &self,
        ctx: &Context<'_>,
        input: RevokeAccreditationInput,
        idempotency_key: Option<String>,
    ) -> Result<CommandResult> {
        run(ctx, "revokeAccreditation", &input, idempotency_key, plain(RevokeAccreditationInput::command)).await
    }

    /// Admin: register a technology broker.
    async fn register_broker(
        &self,
        ctx: &Context<'_>,
        input: RegisterBrokerInput,
        idempotency_key: Option<String>,
    ) -> Result<CommandResult> {
        run(ctx, "registerBroker", &input, idempotency_key, plain(RegisterBrokerInput::command)).await
    }

    /// Owner: list a research achievement with its completers.
    async fn list_achievement(
        &self,
        ctx: &Context<'_>,
        input: ListAchievementInput,
        idempotency_key: Option<String>,
    ) -> Result<CommandResult> {
        run(ctx, "listAchievement", &input, idempotency_key, ListAchievementInput::command).await
    }

    /// Owner: revise a listing (completers only until the first contract).
    async fn revise_achievement(
        &self,
        ctx: &Context<'_>,
        input: ReviseAchievementInput,
        idempotency_key: Option<String>,
    ) -> Result<CommandResult> {
        run(ctx, "reviseAchievement", &input, idempotency_key, ReviseAchievementInput::command).await
    }

    /// Owner: withdraw a listing; it takes no new matches or contracts.
    async fn withdraw_achievement(
        &self,
        ctx: &Context<'_>,
        input: WithdrawAchievementInput,
        idempotency_key: Option<String>,
    ) -> Result<CommandResult> {
        run(ctx, "withdrawAchievement", &input, idempotency_key, plain(WithdrawAchievementInput::command)).await
    }

    /// Enterprise: post a technology demand.
    async fn post_demand(
        &self,
        ctx: &Context<'_>,
        input: PostDemandInput,
        idempotency_key: Option<String>,
    ) -> Result<CommandResult> {
        run(ctx, "postDemand", &input, idempotency_key, plain(PostDemandInput::command)).await
    }

    /// Enterprise: close a demand; it takes no new matches or contracts.
    async fn close_demand(
        &self,
        ctx: &Context<'_>,
        input: CloseDemandInput,
        idempotency_key: Option<String>,
    ) -> Result<CommandResult> {
        run(ctx, "closeDemand", &input, idempotency_key, plain(CloseDemandInput::command)).await
    }

    /// Broker: propose an achievement for a demand.
    async fn propose_match(
        &self,
        ctx: &Context<'_>,
        input: ProposeMatchInput,
        idempotency_key: Option<String>,
    ) -> Result<CommandResult> {
        run(ctx, "proposeMatch", &input, idempotency_key, plain(ProposeMatchInput::command)).await
    }

    /// Owner or enterprise: accept your side of a match.
    async fn accept_match(
        &self,
        ctx: &Context<'_>,
        input: AcceptMatchInput,
        idempotency_key: Option<String>,
    ) -> Result<CommandResult> {
        run(ctx, "acceptMatch", &input, idempotency_key, plain(AcceptMatchInput::command)).await
    }

    /// Owner or enterprise: decline your side of a match.
    async fn decline_match(
        &self,
        ctx: &Context<'_>,
        input: DeclineMatchInput,
        idempotency_key: Option<String>,
    ) -> Result<CommandResult> {
        run(ctx, "declineMatch", &input, idempotency_key, plain(DeclineMatchInput::command)).await
    }
}

#[derive(Default)]
pub struct ContractMutation;

#[Object]
impl ContractMutation {
    /// Seller (or registrar): sign a technology contract.
    async fn sign_contract(
        &self,
        ctx: &Context<'_>,
        input: SignContractInput,
        idempotency_key: Option<String>,
    ) -> Result<CommandResult> {
        run(ctx, "signContract", &input, idempotency_key, plain(SignContractInput::command)).await
    }

    /// Registrar: register a contract (认定登记) with the certified technology amount.
    async fn register_contract(
        &self,
        ctx: &Context<'_>,
        input: RegisterContractInput,
        idempotency_key: Option<String>,
    ) -> Result<CommandResult> {
        run(ctx, "registerContract", &input, idempotency_key, plain(RegisterContractInput::command)).await
    }

    /// Seller (or registrar): amend a contract's amounts.
    async fn amend_contract(
        &self,
        ctx: &Context<'_>,
        input: AmendContractInput,
        idempotency_key: Option<String>,
    ) -> Result<CommandResult> {
        run(ctx, "amendContract", &input, idempotency_key, plain(AmendContractInput::command)).await
    }

    /// Seller (or registrar): terminate a contract; it takes no more payments.
    async fn terminate_contract(
        &self,
        ctx: &Context<'_>,
        input: TerminateContractInput,
        idempotency_key: Option<String>,
    ) -> Result<CommandResult> {
        run(ctx, "terminateContract", &input, idempotency_key, plain(TerminateContractInput::command)).await
    }

    /// Registrar: record a settled payment (到账). Use the bank transfer's reference as the
    /// idempotency key so a retried request never counts twice.
    async fn record_payment(
        &self,
        ctx: &Context<'_>,
        input: RecordPaymentInput,
        idempotency_key: Option<String>,
    ) -> Result<CommandResult> {
        run(ctx, "recordPayment", &input, idempotency_key, plain(RecordPaymentInput::command)).await
    }

    /// Registrar: reverse (part of) a payment: a refund or a bounced transfer.
    async fn reverse_payment(
        &self,
        ctx: &Context<'_>,
        input: ReversePaymentInput,
        idempotency_key: Option<String>,
    ) -> Result<CommandResult> {
        run(ctx, "reversePayment", &input, idempotency_key, plain(ReversePaymentInput::command)).await
    }
}
