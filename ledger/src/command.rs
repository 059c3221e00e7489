//! Commands: what users ask the ledger to do, already parsed into domain types at the edge.
//! New ids are generated at the edge and carried here, so deciding stays pure.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::codes::{CreditCode, DivisionCode, RegistrationNumber};
use crate::event::AchievementDetails;
use crate::ids::*;
use crate::money::Money;
use crate::vocabulary::*;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegisterOrganisation {
    pub organisation_id: OrganisationId,
    pub name: String,
    pub kind: OrganisationKind,
    pub credit_code: CreditCode,
    pub division_code: DivisionCode,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccreditOrganisation {
    pub organisation_id: OrganisationId,
    pub accreditation_id: AccreditationId,
    pub kind: AccreditationKind,
    pub effective_from: NaiveDate,
    pub effective_until: Option<NaiveDate>,
    pub document_number: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevokeAccreditation {
    pub organisation_id: OrganisationId,
    pub accreditation_id: AccreditationId,
    pub revoked_from: NaiveDate,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegisterBroker {
    pub broker_id: BrokerId,
    pub name: String,
    pub agency_id: Option<OrganisationId>,
    pub certificate_number: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListAchievement {
    pub achievement_id: AchievementId,
    pub owner_id: OrganisationId,
    pub details: AchievementDetails,
}

/// Changes to an achievement's listing; `None` keeps the current value.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct AchievementRevision {
    pub title: Option<String>,
    pub field: Option<TechField>,
    pub description: Option<String>,
    pub patent_numbers: Option<Vec<crate::codes::PatentNumber>>,
    pub maturity: Option<u8>,
    /// `Some(None)` clears the asking price.
    pub asking_price: Option<Option<Money>>,
    pub transfer_modes: Option<Vec<TransferMode>>,
    pub completers: Option<Vec<crate::event::Completer>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviseAchievement {
    pub achievement_id: AchievementId,
    pub revision: AchievementRevision,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WithdrawAchievement {
    pub achievement_id: AchievementId,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PostDemand {
    pub demand_id: DemandId,
    pub enterprise_id: OrganisationId,
    pub title: String,
    pub field: TechField,
    pub description: String,
    pub budget: Option<Money>,
    pub deadline: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CloseDemand {
    pub demand_id: DemandId,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProposeMatch {
    pub match_id: MatchId,
    pub broker_id: BrokerId,
    pub achievement_id: AchievementId,
    pub demand_id: DemandId,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AcceptMatch {
    pub match_id: MatchId,
    pub side: MatchSide,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeclineMatch {
    pub match_id: MatchId,
    pub side: MatchSide,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignContract {
    pub contract_id: ContractId,
    pub contract_number: String,
    pub contract_type: ContractType,
    pub title: String,
    pub seller_id: OrganisationId,
    pub buyer_id: OrganisationId,
    pub achievement_id: Option<AchievementId>,
    pub match_id: Option<MatchId>,
    pub broker_id: Option<BrokerId>,
    pub operating_center_id: Option<OrganisationId>,
    pub contract_amount: Money,
    pub tech_transaction_amount: Money,
    pub signed_on: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegisterContract {
    pub contract_id: ContractId,
    pub registration_number: RegistrationNumber,
    pub registered_on: NaiveDate,
    pub certified_tech_transaction_amount: Money,
    pub field: Option<TechField>,
}

/// Enacts the next version of a policy (rates, caps and dates are data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnactPolicy {
    pub kind: crate::policy::PolicyKind,
    pub rate: crate::money::Rate,
    pub cap: Money,
    pub cap_period: crate::policy::CapPeriod,
    pub effective_from: NaiveDate,
    pub effective_until: Option<NaiveDate>,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AmendContract {
    pub contract_id: ContractId,
    pub contract_amount: Money,
    pub tech_transaction_amount: Money,
    pub amended_on: NaiveDate,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TerminateContract {
    pub contract_id: ContractId,
    pub terminated_on: NaiveDate,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordPayment {
    pub contract_id: ContractId,
    pub payment_id: PaymentId,
    pub amount: Money,
    pub settled_at: DateTime<Utc>,
    pub bank_reference: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReversePayment {
    pub contract_id: ContractId,
    pub payment_id: PaymentId,
    pub reversal_id: ReversalId,
    pub amount: Money,
    pub reversed_at: DateTime<Utc>,
    pub reason: String,
}

/// Every command the ledger accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Command {
    RegisterOrganisation(RegisterOrganisation),
    AccreditOrganisation(AccreditOrganisation),
    RevokeAccreditation(RevokeAccreditation),
    RegisterBroker(RegisterBroker),
    ListAchievement(ListAchievement),
    ReviseAchievement(ReviseAchievement),
    WithdrawAchievement(WithdrawAchievement),
    PostDemand(PostDemand),
    CloseDemand(CloseDemand),
    ProposeMatch(ProposeMatch),
    AcceptMatch(AcceptMatch),
    DeclineMatch(DeclineMatch),
    SignContract(SignContract),
    RegisterContract(RegisterContract),
    AmendContract(AmendContract),
    TerminateContract(TerminateContract),
    RecordPayment(RecordPayment),
    ReversePayment(ReversePayment),
    EnactPolicy(EnactPolicy),
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::RegisterOrganisation(_) => "RegisterOrganisation",
            Command::AccreditOrganisation(_) => "AccreditOrganisation",
            Command::RevokeAccreditation(_) => "RevokeAccreditation",
            Command::RegisterBroker(_) => "RegisterBroker",
            Command::ListAchievement(_) => "ListAchievement",
            Command::ReviseAchievement(_) => "ReviseAchievement",
            Command::WithdrawAchievement(_) => "WithdrawAchievement",
            Command::PostDemand(_) => "PostDemand",
            Command::CloseDemand(_) => "CloseDemand",
            Command::ProposeMatch(_) => "ProposeMatch",
            Command::AcceptMatch(_) => "AcceptMatch",
            Command::DeclineMatch(_) => "DeclineMatch",
            Command::SignContract(_) => "SignContract",
            Command::RegisterContract(_) => "RegisterContract",
            Command::AmendContract(_) => "AmendContract",
            Command::TerminateContract(_) => "TerminateContract",
            Command::RecordPayment(_) => "RecordPayment",
            Command::ReversePayment(_) => "ReversePayment",
            Command::EnactPolicy(_) => "EnactPolicy",
        }
    }

    /// The stream the command mainly changes. Commands on the same stream are queued in
    /// process (see `service`) instead of racing each other into conflicts.
    pub fn primary_stream(&self) -> StreamId {
        match self {
            Command::RegisterOrganisation(c) => c.organisation_id.stream(),
            Command::AccreditOrganisation(c) => c.organisation_id.stream(),
            Command::RevokeAccreditation(c) => c.organisation_id.stream(),
            Command::RegisterBroker(c) => c.broker_id.stream(),
            Command::ListAchievement(c) => c.achievement_id.stream(),
            Command::ReviseAchievement(c) => c.achievement_id.stream(),
            Command::WithdrawAchievement(c) => c.achievement_id.stream(),
            Command::PostDemand(c) => c.demand_id.stream(),
            Command::CloseDemand(c) => c.demand_id.stream(),
            Command::ProposeMatch(c) => c.match_id.stream(),
            Command::AcceptMatch(c) => c.match_id.stream(),
            Command::DeclineMatch(c) => c.match_id.stream(),
            Command::SignContract(c) => c.contract_id.stream(),
            Command::RegisterContract(c) => c.contract_id.stream(),
            Command::AmendContract(c) => c.contract_id.stream(),
            Command::TerminateContract(c) => c.contract_id.stream(),
            Command::RecordPayment(c) => c.contract_id.stream(),
            Command::ReversePayment(c) => c.contract_id.stream(),
            Command::EnactPolicy(c) => c.kind.id().stream(),
        }
    }

    /// The id of the thing the command creates or acts on, returned to the caller.
    pub fn subject_id(&self) -> uuid::Uuid {
        match self {
            Command::RegisterOrganisation(c) => c.organisation_id.0,
            Command::AccreditOrganisation(c) => c.accreditation_id.0,
            Command::RevokeAccreditation(c) => c.accreditation_id.0,
            Command::RegisterBroker(c) => c.broker_id.0,
            Command::ListAchievement(c) => c.achievement_id.0,
            Command::ReviseAchievement(c) => c.achievement_id.0,
            Command::WithdrawAchievement(c) => c.achievement_id.0,
            Command::PostDemand(c) => c.demand_id.0,
            Command::CloseDemand(c) => c.demand_id.0,
            Command::ProposeMatch(c) => c.match_id.0,
            Command::AcceptMatch(c) => c.match_id.0,
            Command::DeclineMatch(c) => c.match_id.0,
            Command::SignContract(c) => c.contract_id.0,
            Command::RegisterContract(c) => c.contract_id.0,
            Command::AmendContract(c) => c.contract_id.0,
            Command::TerminateContract(c) => c.contract_id.0,
            Command::RecordPayment(c) => c.payment_id.0,
            Command::ReversePayment(c) => c.reversal_id.0,
            Command::EnactPolicy(c) => c.kind.id().0,
        }
    }
}
