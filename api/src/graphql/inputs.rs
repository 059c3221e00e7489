//! Mutation inputs and their parsing into domain commands (parse, don't validate): codes are
//! checked here with the input's own field names, ids for new things are generated here, and
//! every other rule is the domain's. Inputs serialise to JSON for the idempotency fingerprint.

use async_graphql::{InputObject, MaybeUndefined};
use chrono::{DateTime, Utc};
use ledger::codes::{CreditCode, DivisionCode, PatentNumber, RegistrationNumber, ResidentId, Share};
use ledger::command::*;
use ledger::event::{AchievementDetails, Completer};
use ledger::ids::*;
use ledger::personal::{PersonalDataKey, PersonalDataRow};
use ledger::validation::ValidationError;
use serde::Serialize;
use uuid::Uuid;

use super::enums::*;
use super::scalars::{Date, Money};

type Parsed<T> = Result<T, ValidationError>;

fn maturity(field: &str, m: i32) -> Parsed<u8> {
    u8::try_from(m).map_err(|_| ValidationError::new(field, "maturity_range", "technology readiness level is 1 to 9"))
}

fn patents(values: &[String]) -> Parsed<Vec<PatentNumber>> {
    values.iter().enumerate().map(|(i, p)| PatentNumber::parse(&format!("patentNumbers[{i}]"), p)).collect()
}

/// Parses completers; ID numbers are checked (GB 11643) and sealed at once, so only their
/// reference, mask and fingerprint go on into the command.
fn completers(values: &[CompleterInput], vault: &PersonalDataKey) -> Parsed<(Vec<Completer>, Vec<PersonalDataRow>)> {
    let mut sealed = Vec::new();
    let mut parsed = Vec::with_capacity(values.len());
    for (i, c) in values.iter().enumerate() {
        let identity = match &c.id_number {
            Some(text) => {
                let id = ResidentId::parse(&format!("completers[{i}].idNumber"), text)?;
                let (identity, row) = vault.seal(&id);
                sealed.push(row);
                Some(identity)
            }
            None => None,
        };
        parsed.push(Completer {
            name: c.name.clone(),
            share: Share::parse(&format!("completers[{i}].share"), &c.share)?,
            identity,
        });
    }
    Ok((parsed, sealed))
}

/// A parsed mutation: the command, and the personal data it seals.
pub type Sealed = (Command, Vec<PersonalDataRow>);

/// Adapts a parser of an input without personal data.
pub fn plain<I>(parse: fn(&I) -> Parsed<Command>) -> impl FnOnce(&I, &PersonalDataKey) -> Parsed<Sealed> {
    move |input, _| parse(input).map(|command| (command, Vec::new()))
}

fn modes(values: &[TransferMode]) -> Vec<ledger::vocabulary::TransferMode> {
    values.iter().map(|m| (*m).into()).collect()
}

#[derive(InputObject, Serialize)]
pub struct RegisterOrganisationInput {
    pub name: String,
    pub kind: OrganisationKind,
    /// 统一社会信用代码, 18 characters with its check character.
    pub credit_code: String,
    /// 行政区划代码, 6 digits (GB/T 2260).
    pub division_code: String,
}

impl RegisterOrganisationInput {
    pub fn command(&self) -> Parsed<Command> {
        Ok(Command::RegisterOrganisation(RegisterOrganisation {
            organisation_id: OrganisationId::new_v7(),
            name: self.name.clone(),
            kind: self.kind.into(),
            credit_code: CreditCode::parse("creditCode", &self.credit_code)?,
            division_code: DivisionCode::parse("divisionCode", &self.division_code)?,
        }))
    }
}

#[derive(InputObject, Serialize)]
pub struct AccreditOrganisationInput {
    pub organisation_id: Uuid,
    pub kind: AccreditationKind,
    pub effective_from: Date,
    pub effective_until: Option<Date>,
    /// 文号 of the accreditation decision.
    pub document_number: String,
}

impl AccreditOrganisationInput {
    pub fn command(&self) -> Parsed<Command> {
        Ok(Command::AccreditOrganisation(AccreditOrganisation {
            organisation_id: OrganisationId(self.organisation_id),
            accreditation_id: AccreditationId(Uuid::now_v7()),
            kind: self.kind.into(),
            effective_from: self.effective_from.0,
            effective_until: self.effective_until.map(|d| d.0),
            document_number: self.document_number.clone(),
        }))
    }
}

#[derive(InputObject, Serialize)]
pub struct RevokeAccreditationInput {
    pub organisation_id: Uuid,
    pub accreditation_id: Uuid,
    /// First day on which the accreditation no longer holds.
    pub revoked_from: Date,
    pub reason: String,
}

impl RevokeAccreditationInput {
    pub fn command(&self) -> Parsed<Command> {
        Ok(Command::RevokeAccreditation(RevokeAccreditation {
            organisation_id: OrganisationId(self.organisation_id),
            accreditation_id: AccreditationId(self.accreditation_id),
            revoked_from: self.revoked_from.0,
            reason: self.reason.clone(),
        }))
    }
}

#[derive(InputObject, Serialize)]
pub struct RegisterBrokerInput {
    pub name: String,
    pub agency_id: Option<Uuid>,
    pub certificate_number: Option<String>,
}

impl RegisterBrokerInput {
    pub fn command(&self) -> Parsed<Command> {
        Ok(Command::RegisterBroker(RegisterBroker {
            broker_id: BrokerId::new_v7(),
            name: self.name.clone(),
            agency_id: self.agency_id.map(OrganisationId),
            certificate_number: self.certificate_number.clone(),
        }))
    }
}

#[derive(InputObject, Serialize)]
pub struct CompleterInput {
    pub name: String,
    /// Percent with at most two decimals, e.g. "33.33"; all shares sum to exactly 100.
    pub share: String,
    /// Resident ID number (居民身份证号, 18 characters, GB 11643). Stored sealed; shown
    /// masked to everyone but finance.
    pub id_number: Option<String>,
}

#[derive(InputObject, Serialize)]
pub struct ListAchievementInput {
    pub owner_id: Uuid,
    pub title: String,
    pub field: TechField,
    #[graphql(default)]
    pub description: String,
    #[graphql(default)]
    pub patent_numbers: Vec<String>,
    /// Technology readiness level, 1 to 9.
    pub maturity: i32,
    pub asking_price: Option<Money>,
    pub transfer_modes: Vec<TransferMode>,
    pub completers: Vec<CompleterInput>,
}

impl ListAchievementInput {
    pub fn command(&self, vault: &PersonalDataKey) -> Parsed<Sealed> {
        let (completers, sealed) = completers(&self.completers, vault)?;
        let command = Command::ListAchievement(ListAchievement {
            achievement_id: AchievementId::new_v7(),
            owner_id: OrganisationId(self.owner_id),
            details: AchievementDetails {
                title: self.title.clone(),
                field: self.field.into(),
                description: self.description.clone(),
                patent_numbers: patents(&self.patent_numbers)?,
                maturity: maturity("maturity", self.maturity)?,
                asking_price: self.asking_price.map(|m| m.0),
                transfer_modes: modes(&self.transfer_modes),
                completers,
            },
        });
        Ok((command, sealed))
    }
}

/// Fields left out stay as they are; `askingPrice: null` removes the asking price.
#[derive(InputObject, Serialize)]
pub struct ReviseAchievementInput {
    pub achievement_id: Uuid,
    pub title: Option<String>,
    pub field: Option<TechField>,
    pub description: Option<String>,
    pub patent_numbers: Option<Vec<String>>,
    pub maturity: Option<i32>,
    #[serde(skip_serializing_if = "MaybeUndefined::is_undefined")]
    pub asking_price: MaybeUndefined<Money>,
    pub transfer_modes: Option<Vec<TransferMode>>,
    pub completers: Option<Vec<CompleterInput>>,
}

impl ReviseAchievementInput {
    pub fn command(&self, vault: &PersonalDataKey) -> Parsed<Sealed> {
        let (completers, sealed) = match self.completers.as_deref() {
            Some(values) => {
                let (parsed, sealed) = completers(values, vault)?;
                (Some(parsed), sealed)
            }
            None => (None, Vec::new()),
        };
        let asking_price = match &self.asking_price {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(m) => Some(Some(m.0)),
        };
        let command = Command::ReviseAchievement(ReviseAchievement {
            achievement_id: AchievementId(self.achievement_id),
            revision: AchievementRevision {
                title: self.title.clone(),
                field: self.field.map(Into::into),
                description: self.description.clone(),
                patent_numbers: self.patent_numbers.as_deref().map(patents).transpose()?,
                maturity: self.maturity.map(|m| maturity("maturity", m)).transpose()?,
                asking_price,
                transfer_modes: self.transfer_modes.as_deref().map(modes),
                completers,
            },
        });
        Ok((command, sealed))
    }
}

#[derive(InputObject, Serialize)]
pub struct WithdrawAchievementInput {
    pub achievement_id: Uuid,
    pub reason: String,
}

impl WithdrawAchievementInput {
    pub fn command(&self) -> Parsed<Command> {
        Ok(Command::WithdrawAchievement(WithdrawAchievement {
            achievement_id: AchievementId(self.achievement_id),
            reason: self.reason.clone(),
        }))
    }
}

#[derive(InputObject, Serialize)]
pub struct PostDemandInput {
    pub enterprise_id: Uuid,
    pub title: String,
    pub field: TechField,
    #[graphql(default)]
    pub description: String,
    pub budget: Option<Money>,
    pub deadline: Option<Date>,
}

impl PostDemandInput {
    pub fn command(&self) -> Parsed<Command> {
        Ok(Command::PostDemand(PostDemand {
            demand_id: DemandId::new_v7(),
            enterprise_id: OrganisationId(self.enterprise_id),
            title: self.title.clone(),
            field: self.field.into(),
            description: self.description.clone(),
            budget: self.budget.map(|m| m.0),
            deadline: self.deadline.map(|d| d.0),
        }))
    }
}

#[derive(InputObject, Serialize)]
pub struct CloseDemandInput {
    pub demand_id: Uuid,
    pub reason: String,
}

impl CloseDemandInput {
    pub fn command(&self) -> Parsed<Command> {
        Ok(Command::CloseDemand(CloseDemand { demand_id: DemandId(self.demand_id), reason: self.reason.clone() }))
    }
}

#[derive(InputObject, Serialize)]
pub struct ProposeMatchInput {
    pub broker_id: Uuid,
    pub achievement_id: Uuid,
    pub demand_id: Uuid,
    #[graphql(default)]
    pub note: String,
}

impl ProposeMatchInput {
    pub fn command(&self) -> Parsed<Command> {
        Ok(Command::ProposeMatch(ProposeMatch {
            match_id: MatchId::new_v7(),
            broker_id: BrokerId(self.broker_id),
            achievement_id: AchievementId(self.achievement_id),
            demand_id: DemandId(self.demand_id),
            note: self.note.clone(),
        }))
    }
}

#[derive(InputObject, Serialize)]
pub struct AcceptMatchInput {
    pub match_id: Uuid,
    /// The side the caller answers for.
    pub side: MatchSide,
}

impl AcceptMatchInput {
    pub fn command(&self) -> Parsed<Command> {
        Ok(Command::AcceptMatch(AcceptMatch { match_id: MatchId(self.match_id), side: self.side.into() }))
    }
}

#[derive(InputObject, Serialize)]
pub struct DeclineMatchInput {
    pub match_id: Uuid,
    pub side: MatchSide,
    pub reason: String,
}

impl DeclineMatchInput {
    pub fn command(&self) -> Parsed<Command> {
        Ok(Command::DeclineMatch(DeclineMatch {
            match_id: MatchId(self.match_id),
            side: self.side.into(),
            reason: self.reason.clone(),
        }))
    }
}

#[derive(InputObject, Serialize)]
pub struct SignContractInput {
    pub contract_number: String,
    pub contract_type: ContractType,
    pub title: String,
    pub seller_id: Uuid,
    pub buyer_id: Uuid,
    /// The achievement sold; taken from the match when a match is given.
    pub achievement_id: Option<Uuid>,
    pub match_id: Option<Uuid>,
    pub broker_id: Option<Uuid>,
    /// The IP operating center operating the deal (for its incentive).
    pub operating_center_id: Option<Uuid>,
    /// 合同成交额
    pub contract_amount: Money,
    /// 技术交易额 as declared; at most the contract amount.
    pub tech_transaction_amount: Money,
    pub signed_on: Date,
}

impl SignContractInput {
    pub fn command(&self) -> Parsed<Command> {
        Ok(Command::SignContract(SignContract {
            contract_id: ContractId::new_v7(),
            contract_number: self.contract_number.clone(),
            contract_type: self.contract_type.into(),
            title: self.title.clone(),
            seller_id: OrganisationId(self.seller_id),
            buyer_id: OrganisationId(self.buyer_id),
            achievement_id: self.achievement_id.map(AchievementId),
            match_id: self.match_id.map(MatchId),
            broker_id: self.broker_id.map(BrokerId),
            operating_center_id: self.operating_center_id.map(OrganisationId),
            contract_amount: self.contract_amount.0,
            tech_transaction_amount: self.tech_transaction_amount.0,
            signed_on: self.signed_on.0,
        }))
    }
}

#[derive(InputObject, Serialize)]
pub struct RegisterContractInput {
    pub contract_id: Uuid,
    /// 合同登记编号: the 16 digits on the certificate.
    pub registration_number: String,
    pub registered_on: Date,
    /// 技术交易额 as certified by the registry.
    pub certified_tech_transaction_amount: Money,
    /// The technology field the registry classified the contract under.
    pub field: Option<TechField>,
}

impl RegisterContractInput {
    pub fn command(&self) -> Parsed<Command> {
        Ok(Command::RegisterContract(RegisterContract {
            contract_id: ContractId(self.contract_id),
            registration_number: RegistrationNumber::parse("registrationNumber", &self.registration_number)?,
            registered_on: self.registered_on.0,
            certified_tech_transaction_amount: self.certified_tech_transaction_amount.0,
            field: self.field.map(Into::into),
        }))
    }
}

#[derive(InputObject, Serialize)]
pub struct AmendContractInput {
    pub contract_id: Uuid,
    pub contract_amount: Money,
    pub tech_transaction_amount: Money,
    pub amended_on: Date,
    pub reason: String,
}

impl AmendContractInput {
    pub fn command(&self) -> Parsed<Command> {
        Ok(Command::AmendContract(AmendContract {
            contract_id: ContractId(self.contract_id),
            contract_amount: self.contract_amount.0,
            tech_transaction_amount: self.tech_transaction_amount.0,
            amended_on: self.amended_on.0,
            reason: self.reason.clone(),
        }))
    }
}

#[derive(InputObject, Serialize)]
pub struct TerminateContractInput {
    pub contract_id: Uuid,
    pub terminated_on: Date,
    pub reason: String,
}

impl TerminateContractInput {
    pub fn command(&self) -> Parsed<Command> {
        Ok(Command::TerminateContract(TerminateContract {
            contract_id: ContractId(self.contract_id),
            terminated_on: self.terminated_on.0,
            reason: self.reason.clone(),
        }))
    }
}

#[derive(InputObject, Serialize)]
pub struct RecordPaymentInput {
    pub contract_id: Uuid,
    pub amount: Money,
    /// When the money arrived, RFC 3339 with offset, e.g. `2024-12-31T23:59:00+08:00`.
    pub settled_at: DateTime<Utc>,
    /// The bank's reference of the transfer; unique per contract.
    pub bank_reference: String,
}

impl RecordPaymentInput {
    pub fn command(&self) -> Parsed<Command> {
        Ok(Command::RecordPayment(RecordPayment {
            contract_id: ContractId(self.contract_id),
            payment_id: PaymentId(Uuid::now_v7()),
            amount: self.amount.0,
            settled_at: self.settled_at,
            bank_reference: self.bank_reference.clone(),
        }))
    }
}

#[derive(InputObject, Serialize)]
pub struct ReversePaymentInput {
    pub contract_id: Uuid,
    pub payment_id: Uuid,
    /// At most what is left of the payment.
    pub amount: Money,
    pub reversed_at: DateTime<Utc>,
    pub reason: String,
}

impl ReversePaymentInput {
    pub fn command(&self) -> Parsed<Command> {
        Ok(Command::ReversePayment(ReversePayment {
            contract_id: ContractId(self.contract_id),
            payment_id: PaymentId(self.payment_id),
            reversal_id: ReversalId(Uuid::now_v7()),
            amount: self.amount.0,
            reversed_at: self.reversed_at,
            reason: self.reason.clone(),
        }))
    }
}
