//! Technology contracts (技术合同): signed by the seller, registered by the registry (认定登记),
//! amended, terminated; and their payments (到账) and reversals. Money rules live here:
//! net received never exceeds the current contract amount, a reversal never exceeds what is left
//! of its payment, and a bank transfer is recorded once per contract.

use chrono::{DateTime, NaiveDate, Utc};

use crate::actor::{Actor, Role};
use crate::codes::RegistrationNumber;
use crate::command::*;
use crate::domain::matching::{MatchStatus, open_for_deals};
use crate::domain::{Facts, authorize};
use crate::error::{DomainError, in_yuan, rules};
use crate::event::*;
use crate::ids::*;
use crate::money::Money;
use crate::time::shanghai_date;
use crate::validation::{REASON_CHARS_MAX, REFERENCE_CHARS_MAX, TITLE_CHARS_MAX, amount, required_text};
use crate::vocabulary::ContractType;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub registration_number: RegistrationNumber,
    pub registered_on: NaiveDate,
    pub certified_tech_transaction_amount: Money,
    pub field: Option<crate::vocabulary::TechField>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub id: PaymentId,
    pub amount: Money,
    pub settled_at: DateTime<Utc>,
    pub bank_reference: String,
    pub reversed: Money,
}

impl Payment {
    pub fn remaining(&self) -> Money {
        self.amount - self.reversed
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contract {
    pub id: ContractId,
    pub contract_number: String,
    pub contract_type: ContractType,
    pub seller_id: OrganisationId,
    pub buyer_id: OrganisationId,
    pub achievement_id: Option<AchievementId>,
    pub operating_center_id: Option<OrganisationId>,
    pub contract_amount: Money,
    pub tech_transaction_amount: Money,
    pub signed_on: NaiveDate,
    pub registration: Option<Registration>,
    pub terminated_on: Option<NaiveDate>,
    /// In ledger order. A contract has a handful of payments: a list is searched as fast as
    /// a map and costs a fraction of a map's node in the projections' fold of every contract.
    pub payments: Vec<Payment>,
    pub reversal_ids: Vec<ReversalId>,
    /// Settled minus reversed (净到账额).
    pub net_received: Money,
}

impl Contract {
    pub fn payment(&self, id: PaymentId) -> Option<&Payment> {
        self.payments.iter().find(|p| p.id == id)
    }
}

pub(crate) fn evolve(state: &mut Option<Contract>, event: &Event) {
    if let Event::ContractSigned(e) = event {
        assert!(state.is_none(), "contract {} signed twice", e.contract_id);
        *state = Some(Contract {
            id: e.contract_id,
            contract_number: e.contract_number.clone(),
            contract_type: e.contract_type,
            seller_id: e.seller_id,
            buyer_id: e.buyer_id,
            achievement_id: e.achievement_id,
            operating_center_id: e.operating_center_id,
            contract_amount: e.contract_amount,
            tech_transaction_amount: e.tech_transaction_amount,
            signed_on: e.signed_on,
            registration: None,
            terminated_on: None,
            payments: Vec::new(),
            reversal_ids: Vec::new(),
            net_received: Money::ZERO,
        });
        return;
    }
    let c = state.as_mut().expect("contract event before the contract was signed");
    match event {
        Event::ContractRegistered(e) => {
            assert!(c.registration.is_none(), "contract {} registered twice", c.id);
            c.registration = Some(Registration {
                registration_number: e.registration_number.clone(),
                registered_on: e.registered_on,
                certified_tech_transaction_amount: e.certified_tech_transaction_amount,
                field: e.field,
            });
        }
        Event::ContractAmended(e) => {
            c.contract_amount = e.contract_amount;
            c.tech_transaction_amount = e.tech_transaction_amount;
        }
        Event::ContractTerminated(e) => c.terminated_on = Some(e.terminated_on),
        Event::PaymentSettled(e) => {
            assert!(c.payment(e.payment_id).is_none(), "payment {} settled twice", e.payment_id);
            c.payments.push(Payment {
                id: e.payment_id,
                amount: e.amount,
                settled_at: e.settled_at,
                bank_reference: e.bank_reference.clone(),
                reversed: Money::ZERO,
            });
            c.net_received += e.amount;
        }
        Event::PaymentReversed(e) => {
            let p = c.payments.iter_mut().find(|p| p.id == e.payment_id).expect("reversal of an unknown payment");
            p.reversed += e.amount;
            assert!(p.reversed <= p.amount, "payment {} reversed beyond its amount", p.id);
            c.reversal_ids.push(e.reversal_id);
            c.net_received -= e.amount;
        }
        other => unreachable!("{} is not a contract event", other.event_type()),
    }
    assert!(c.net_received >= Money::ZERO, "contract {} net received is negative", c.id);
    assert!(c.net_received <= c.contract_amount, "contract {} net received exceeds its amount", c.id);
}

/// Signing reads the parties, the achievement, the match and (through the match) its demand.
pub(crate) fn streams_for_signing(c: &SignContract, facts: &Facts) -> Vec<StreamId> {
    let mut v = vec![c.contract_id.stream(), c.seller_id.stream(), c.buyer_id.stream()];
    v.extend(c.achievement_id.map(AchievementId::stream));
    v.extend(c.broker_id.map(BrokerId::stream));
    v.extend(c.operating_center_id.map(OrganisationId::stream));
    if let Some(match_id) = c.match_id {
        v.push(match_id.stream());
        if let Ok(Some(m)) = facts.match_(match_id) {
            v.extend([m.achievement_id.stream(), m.demand_id.stream(), m.broker_id.stream()]);
        }
    }
    v
}

/// The seller's own staff, or the registrar, act on a contract.
fn may_act_for_seller(actor: &Actor, seller: OrganisationId) -> bool {
    actor.role == Role::Registrar
        || (matches!(actor.role, Role::ResearchInstitution | Role::Enterprise | Role::OperatingCenter)
            && actor.acts_for(seller))
}

fn existing(facts: &Facts, id: ContractId) -> Result<&Contract, DomainError> {
    facts.contract(id)?.ok_or_else(|| DomainError::not_found("contract", id))
}

fn not_terminated(c: &Contract) -> Result<(), DomainError> {
    match c.terminated_on {
        Some(on) => Err(DomainError::violation(
            rules::CONTRACT_TERMINATED,
            format!("contract {} was terminated on {on}", c.contract_number),
        )),
        None => Ok(()),
    }
}

fn tech_within_contract(tech: Money, contract: Money, field: &str) -> Result<(), DomainError> {
    if tech > contract {
        return Err(DomainError::invalid(
            field,
            rules::TECH_AMOUNT_WITHIN_CONTRACT_AMOUNT,
            format!(
                "the technology transaction amount ({}) exceeds the contract amount ({})",
                in_yuan(tech),
                in_yuan(contract)
            ),
        ));
    }
    Ok(())
}

fn not_before(date: NaiveDate, earliest: NaiveDate, field: &str, what: &str) -> Result<(), DomainError> {
    if date < earliest {
        return Err(DomainError::invalid(field, rules::DATE_ORDER, format!("{date} is before {what} ({earliest})")));
    }
    Ok(())
}

pub(crate) fn sign(c: &SignContract, actor: &Actor, facts: &Facts) -> Result<Vec<Event>, DomainError> {
    authorize(may_act_for_seller(actor, c.seller_id), actor, "sign contracts for another seller")?;
    if facts.contract(c.contract_id)?.is_some() {
        return Err(DomainError::AlreadyExists { what: "contract", id: c.contract_id.to_string() });
    }
    let contract_number = required_text("contractNumber", &c.contract_number, REFERENCE_CHARS_MAX)?;
    let title = required_text("title", &c.title, TITLE_CHARS_MAX)?;
    amount("contractAmount", c.contract_amount)?;
    amount("techTransactionAmount", c.tech_transaction_amount)?;
    tech_within_contract(c.tech_transaction_amount, c.contract_amount, "techTransactionAmount")?;
    facts.organisation(c.seller_id)?.ok_or_else(|| DomainError::not_found("organisation", c.seller_id))?;
    facts.organisation(c.buyer_id)?.ok_or_else(|| DomainError::not_found("organisation", c.buyer_id))?;
    if c.seller_id == c.buyer_id {
        return Err(DomainError::violation(
            rules::DISTINCT_PARTIES,
            "the seller and the buyer must be different organisations",
        ));
    }
    let mut achievement_id = c.achievement_id;
    let mut broker_id = c.broker_id;
    if let Some(match_id) = c.match_id {
        let m = facts.match_(match_id)?.ok_or_else(|| DomainError::not_found("match", match_id))?;
        if m.status() != MatchStatus::Accepted {
            return Err(DomainError::violation(
                rules::MATCH_NOT_ACCEPTED,
                format!("match {match_id} is {}; a contract needs both sides to accept it", m.status().as_str()),
            ));
        }
        let demand = facts.demand(m.demand_id)?.expect("a proposed match's demand exists");
        let mismatch = |what: &str| {
            DomainError::violation(
                rules::CONTRACT_MATCHES_ITS_MATCH,
                format!("the contract's {what} differs from match {match_id}'s"),
            )
        };
        if *achievement_id.get_or_insert(m.achievement_id) != m.achievement_id {
            return Err(mismatch("achievement"));
        }
        if *broker_id.get_or_insert(m.broker_id) != m.broker_id {
            return Err(mismatch("broker"));
        }
        if c.buyer_id != demand.enterprise_id {
            return Err(mismatch("buyer (the demand's enterprise)"));
        }
        let achievement = facts.achievement(m.achievement_id)?.expect("a proposed match's achievement exists");
        open_for_deals(achievement, demand)?;
    }
    let mut events = Vec::with_capacity(2);
    let mut lock = None;
    if let Some(id) = achievement_id {
        let a = facts.achievement(id)?.ok_or_else(|| DomainError::not_found("achievement", id))?;
        if a.withdrawn {
            return Err(DomainError::violation(
                rules::ACHIEVEMENT_WITHDRAWN,
                format!("achievement {id} is withdrawn and takes no new matches or contracts"),
            ));
        }
        if a.owner_id != c.seller_id {
            return Err(DomainError::violation(
                rules::SELLER_IS_ACHIEVEMENT_OWNER,
                format!("the seller of a contract on achievement {id} must be its owner, organisation {}", a.owner_id),
            ));
        }
        if !a.completers_locked {
            lock = Some(Event::CompletersLocked(CompletersLocked { achievement_id: id, contract_id: c.contract_id }));
        }
    }
    if let Some(b) = broker_id {
        facts.broker(b)?.ok_or_else(|| DomainError::not_found("broker", b))?;
    }
    if let Some(center) = c.operating_center_id {
        facts.organisation(center)?.ok_or_else(|| DomainError::not_found("organisation", center))?;
    }
    events.push(Event::ContractSigned(ContractSigned {
        contract_id: c.contract_id,
        contract_number,
        contract_type: c.contract_type,
        title,
        seller_id: c.seller_id,
        buyer_id: c.buyer_id,
        achievement_id,
        match_id: c.match_id,
        broker_id,
        operating_center_id: c.operating_center_id,
        contract_amount: c.contract_amount,
        tech_transaction_amount: c.tech_transaction_amount,
        signed_on: c.signed_on,
    }));
    events.extend(lock);
    Ok(events)
}

pub(crate) fn register(c: &RegisterContract, actor: &Actor, facts: &Facts) -> Result<Vec<Event>, DomainError> {
    authorize(actor.role == Role::Registrar, actor, "register contracts")?;
    let k = existing(facts, c.contract_id)?;
    not_terminated(k)?;
    if let Some(r) = &k.registration {
        return Err(DomainError::violation(
            rules::CONTRACT_ALREADY_REGISTERED,
            format!("contract {} is already registered as {}", k.contract_number, r.registration_number),
        ));
    }
    not_before(c.registered_on, k.signed_on, "registeredOn", "the signing date")?;
    amount("certifiedTechTransactionAmount", c.certified_tech_transaction_amount)?;
    tech_within_contract(c.certified_tech_transaction_amount, k.contract_amount, "certifiedTechTransactionAmount")?;
    Ok(vec![Event::ContractRegistered(ContractRegistered {
        contract_id: k.id,
        registration_number: c.registration_number.clone(),
        registered_on: c.registered_on,
        certified_tech_transaction_amount: c.certified_tech_transaction_amount,
        field: c.field,
    })])
}

pub(crate) fn amend(c: &AmendContract, actor: &Actor, facts: &Facts) -> Result<Vec<Event>, DomainError> {
    let k = existing(facts, c.contract_id)?;
    authorize(may_act_for_seller(actor, k.seller_id), actor, "amend another seller's contract")?;
    not_terminated(k)?;
    not_before(c.amended_on, k.signed_on, "amendedOn", "the signing date")?;
    amount("contractAmount", c.contract_amount)?;
    amount("techTransactionAmount", c.tech_transaction_amount)?;
    tech_within_contract(c.tech_transaction_amount, c.contract_amount, "techTransactionAmount")?;
    if c.contract_amount < k.net_received {
        return Err(DomainError::violation(
            rules::NET_RECEIVED_WITHIN_CONTRACT_AMOUNT,
            format!(
                "the amended contract amount ({}) is below what was already received net ({})",
                in_yuan(c.contract_amount),
                in_yuan(k.net_received)
            ),
        ));
    }
    if let Some(r) = &k.registration {
        tech_within_contract(r.certified_tech_transaction_amount, c.contract_amount, "contractAmount")?;
    }
    Ok(vec![Event::ContractAmended(ContractAmended {
        contract_id: k.id,
        contract_amount: c.contract_amount,
        tech_transaction_amount: c.tech_transaction_amount,
        amended_on: c.amended_on,
        reason: required_text("reason", &c.reason, REASON_CHARS_MAX)?,
    })])
}

pub(crate) fn terminate(c: &TerminateContract, actor: &Actor, facts: &Facts) -> Result<Vec<Event>, DomainError> {
    let k = existing(facts, c.contract_id)?;
    authorize(may_act_for_seller(actor, k.seller_id), actor, "terminate another seller's contract")?;
    if k.terminated_on.is_some() {
        return Err(DomainError::violation(
            rules::ALREADY_TERMINATED,
            format!("contract {} is already terminated", k.contract_number),
        ));
    }
    not_before(c.terminated_on, k.signed_on, "terminatedOn", "the signing date")?;
    Ok(vec![Event::ContractTerminated(ContractTerminated {
        contract_id: k.id,
        terminated_on: c.terminated_on,
        reason: required_text("reason", &c.reason, REASON_CHARS_MAX)?,
    })])
}

pub(crate) fn record_payment(c: &RecordPayment, actor: &Actor, facts: &Facts) -> Result<Vec<Event>, DomainError> {
    authorize(actor.role == Role::Registrar, actor, "record payments")?;
    let k = existing(facts, c.contract_id)?;
    not_terminated(k)?;
    if k.payment(c.payment_id).is_some() {
        return Err(DomainError::AlreadyExists { what: "payment", id: c.payment_id.to_string() });
    }
    amount("amount", c.amount)?;
    let bank_reference = required_text("bankReference", &c.bank_reference, REFERENCE_CHARS_MAX)?;
    if let Some(p) = k.payments.iter().find(|p| p.bank_reference == bank_reference) {
        return Err(DomainError::violation(
            rules::BANK_REFERENCE_UNIQUE,
            format!(
                "bank transfer {bank_reference} is already recorded on contract {} as payment {}",
                k.contract_number, p.id
            ),
        ));
    }
    not_before(shanghai_date(c.settled_at), k.signed_on, "settledAt", "the contract's signing date")?;
    let after = k.net_received + c.amount;
    if after > k.contract_amount {
        return Err(DomainError::violation(
            rules::NET_RECEIVED_WITHIN_CONTRACT_AMOUNT,
            format!(
                "recording {} would bring net received to {}, above the contract amount of {} ({} can still be received)",
                in_yuan(c.amount),
                in_yuan(after),
                in_yuan(k.contract_amount),
                in_yuan(k.contract_amount - k.net_received)
            ),
        ));
    }
    Ok(vec![Event::PaymentSettled(PaymentSettled {
        contract_id: k.id,
        payment_id: c.payment_id,
        amount: c.amount,
        settled_at: crate::time::to_micros(c.settled_at),
        bank_reference,
    })])
}

pub(crate) fn reverse_payment(c: &ReversePayment, actor: &Actor, facts: &Facts) -> Result<Vec<Event>, DomainError> {
    authorize(actor.role == Role::Registrar, actor, "reverse payments")?;
    let k = existing(facts, c.contract_id)?;
    let p = k.payment(c.payment_id).ok_or_else(|| DomainError::not_found("payment", c.payment_id))?;
    amount("amount", c.amount)?;
    if k.reversal_ids.contains(&c.reversal_id) {
        return Err(DomainError::AlreadyExists { what: "reversal", id: c.reversal_id.to_string() });
    }
    if c.amount > p.remaining() {
        return Err(DomainError::violation(
            rules::REVERSAL_WITHIN_PAYMENT,
            format!(
                "reversing {} exceeds what is left of payment {} ({} of {})",
                in_yuan(c.amount),
                p.id,
                in_yuan(p.remaining()),
                in_yuan(p.amount)
            ),
        ));
    }
    if c.reversed_at < p.settled_at {
        return Err(DomainError::invalid(
            "reversedAt",
            rules::DATE_ORDER,
            format!("a reversal ({}) cannot precede its payment's settlement ({})", c.reversed_at, p.settled_at),
        ));
    }
    Ok(vec![Event::PaymentReversed(PaymentReversed {
        contract_id: k.id,
        payment_id: p.id,
        reversal_id: c.reversal_id,
        amount: c.amount,
        reversed_at: crate::time::to_micros(c.reversed_at),
        reason: required_text("reason", &c.reason, REASON_CHARS_MAX)?,
    })])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::matching::tests::market;
    use crate::domain::testing::*;
    use crate::vocabulary::MatchSide;

    fn sign_cmd(seller: OrganisationId, buyer: OrganisationId, achievement: Option<AchievementId>) -> SignContract {
        SignContract {
            contract_id: ContractId::new_v7(),
            contract_number: "CQ-2024-0001".into(),
            contract_type: ContractType::Transfer,
            title: "镁合金专利转让".into(),
            seller_id: seller,
            buyer_id: buyer,
            achievement_id: achievement,
            match_id: None,
            broker_id: None,
            operating_center_id: None,
            contract_amount: yuan(1_000_000),
            tech_transaction_amount: yuan(900_000),
            signed_on: date(2024, 3, 1),
        }
    }

    fn seller(org: OrganisationId) -> Actor {
        user(Role::ResearchInstitution, Some(org))
    }

    /// A market with a contract of 1,000,000 yuan signed on the achievement; returns its id.
    fn signed() -> (crate::domain::matching::tests::Market, ContractId) {
        let mut m = market();
        let cmd = sign_cmd(m.owner, m.enterprise, Some(m.achievement));
        m.history.extend(given(&m.history).when(seller(m.owner), Command::SignContract(cmd.clone())).events());
        (m, cmd.contract_id)
    }

    fn pay(contract: ContractId, amount: Money, reference: &str) -> Command {
        Command::RecordPayment(RecordPayment {
            contract_id: contract,
            payment_id: PaymentId(uuid::Uuid::now_v7()),
            amount,
            settled_at: at("2024-04-01T10:00:00+08:00"),
            bank_reference: reference.into(),
        })
    }

    #[test]
    fn signing_on_an_achievement_locks_its_completers_once() {
        let mut m = market();
        let cmd = sign_cmd(m.owner, m.enterprise, Some(m.achievement));
        let events = given(&m.history).when(seller(m.owner), Command::SignContract(cmd.clone())).events();
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[1],
            Event::CompletersLocked(CompletersLocked { achievement_id: m.achievement, contract_id: cmd.contract_id })
        );
        m.history.extend(events);
        let mut second = sign_cmd(m.owner, m.enterprise, Some(m.achievement));
        second.contract_number = "CQ-2024-0002".into();
        let events = given(&m.history).when(seller(m.owner), Command::SignContract(second)).events();
        assert_eq!(events.len(), 1, "already locked: no second CompletersLocked");
    }

    #[test]
    fn the_seller_of_a_contract_on_an_achievement_is_its_owner() {
        let m = market();
        let (other, more) = university("500106");
        let mut history = m.history.clone();
        history.extend(more);
        given(&history)
            .when(seller(other), Command::SignContract(sign_cmd(other, m.enterprise, Some(m.achievement))))
            .then_rule(rules::SELLER_IS_ACHIEVEMENT_OWNER);
    }

    #[test]
    fn withdrawn_achievements_take_no_new_contracts() {
        let mut m = market();
        m.history.push(Event::AchievementWithdrawn(AchievementWithdrawn {
            achievement_id: m.achievement,
            reason: "x".into(),
        }));
        given(&m.history)
            .when(seller(m.owner), Command::SignContract(sign_cmd(m.owner, m.enterprise, Some(m.achievement))))
            .then_rule(rules::ACHIEVEMENT_WITHDRAWN);
    }

    #[test]
    fn a_contract_through_a_match_needs_both_sides_to_accept_and_an_open_demand() {
        let mut m = market();
        let match_id = MatchId::new_v7();
        m.history.push(Event::MatchProposed(MatchProposed {
            match_id,
            broker_id: m.broker,
            achievement_id: m.achievement,
            demand_id: m.demand,
            note: String::new(),
        }));
        let mut cmd = sign_cmd(m.owner, m.enterprise, None);
        cmd.match_id = Some(match_id);
        given(&m.history)
            .when(seller(m.owner), Command::SignContract(cmd.clone()))
            .then_rule(rules::MATCH_NOT_ACCEPTED);
        m.history.push(Event::MatchAccepted(MatchAccepted { match_id, side: MatchSide::Owner }));
        m.history.push(Event::MatchAccepted(MatchAccepted { match_id, side: MatchSide::Enterprise }));
        let events = given(&m.history).when(seller(m.owner), Command::SignContract(cmd.clone())).events();
        let Event::ContractSigned(signed) = &events[0] else { panic!("expected ContractSigned") };
        assert_eq!(signed.achievement_id, Some(m.achievement), "taken from the match");
        assert_eq!(signed.broker_id, Some(m.broker), "taken from the match");

        let mut wrong_buyer = cmd.clone();
        let (stranger, more) = enterprise("500112");
        let mut history = m.history.clone();
        history.extend(more);
        wrong_buyer.buyer_id = stranger;
        given(&history)
            .when(seller(m.owner), Command::SignContract(wrong_buyer))
            .then_rule(rules::CONTRACT_MATCHES_ITS_MATCH);

        m.history.push(Event::DemandClosed(DemandClosed { demand_id: m.demand, reason: "done".into() }));
        given(&m.history).when(seller(m.owner), Command::SignContract(cmd)).then_rule(rules::DEMAND_CLOSED);
    }

    #[test]
    fn the_technology_transaction_amount_never_exceeds_the_contract_amount() {
        let m = market();
        let mut cmd = sign_cmd(m.owner, m.enterprise, Some(m.achievement));
        cmd.tech_transaction_amount = cmd.contract_amount + Money::from_fen(1);
        given(&m.history)
            .when(seller(m.owner), Command::SignContract(cmd))
            .then_rule(rules::TECH_AMOUNT_WITHIN_CONTRACT_AMOUNT);
    }

    #[test]
    fn net_received_never_exceeds_the_contract_amount_to_the_fen() {
        let (mut m, k) = signed();
        m.history.extend(given(&m.history).when(registrar(), pay(k, yuan(999_999), "B1")).events());
        given(&m.history)
            .when(registrar(), pay(k, Money::from_fen(101), "B2"))
            .then_rule(rules::NET_RECEIVED_WITHIN_CONTRACT_AMOUNT);
        m.history.extend(given(&m.history).when(registrar(), pay(k, yuan(1), "B2")).events());
        given(&m.history)
            .when(registrar(), pay(k, Money::from_fen(1), "B3"))
            .then_rule(rules::NET_RECEIVED_WITHIN_CONTRACT_AMOUNT);
    }

    #[test]
    fn amounts_are_positive_whoever_builds_the_command() {
        let (m, k) = signed();
        let err = given(&m.history).when(registrar(), pay(k, Money::ZERO, "B0")).then_rule("amount_positive");
        assert_eq!(err.field(), Some("amount"));
        let mut cmd = sign_cmd(m.owner, m.enterprise, Some(m.achievement));
        cmd.contract_amount = Money::from_fen(-1);
        given(&m.history).when(seller(m.owner), Command::SignContract(cmd)).then_rule("amount_positive");
    }

    #[test]
    fn a_bank_transfer_is_recorded_once_per_contract() {
        let (mut m, k) = signed();
        m.history.extend(given(&m.history).when(registrar(), pay(k, yuan(10), "BANK-001")).events());
        given(&m.history).when(registrar(), pay(k, yuan(10), "BANK-001")).then_rule(rules::BANK_REFERENCE_UNIQUE);
    }

    #[test]
    fn a_reversal_never_exceeds_what_is_left_of_its_payment() {
        let (mut m, k) = signed();
        let payment = PaymentId(uuid::Uuid::now_v7());
        m.history.push(Event::PaymentSettled(PaymentSettled {
            contract_id: k,
            payment_id: payment,
            amount: yuan(100),
            settled_at: at("2024-04-01T10:00:00+08:00"),
            bank_reference: "B1".into(),
        }));
        let reverse = |amount: Money| {
            Command::ReversePayment(ReversePayment {
                contract_id: k,
                payment_id: payment,
                reversal_id: ReversalId(uuid::Uuid::now_v7()),
                amount,
                reversed_at: at("2024-05-01T10:00:00+08:00"),
                reason: "退款".into(),
            })
        };
        m.history.extend(given(&m.history).when(registrar(), reverse(yuan(60))).events());
        given(&m.history).when(registrar(), reverse(Money::from_fen(4001))).then_rule(rules::REVERSAL_WITHIN_PAYMENT);
        assert_eq!(given(&m.history).when(registrar(), reverse(yuan(40))).events().len(), 1);
    }

    #[test]
    fn payments_only_on_signed_non_terminated_contracts() {
        let (mut m, k) = signed();
        given(&m.history).when(registrar(), pay(ContractId::new_v7(), yuan(1), "X")).then_code("NOT_FOUND");
        m.history.push(Event::ContractTerminated(ContractTerminated {
            contract_id: k,
            terminated_on: date(2024, 3, 15),
            reason: "解除".into(),
        }));
        given(&m.history).when(registrar(), pay(k, yuan(1), "X")).then_rule(rules::CONTRACT_TERMINATED);
    }

    #[test]
    fn only_the_registrar_records_payments() {
        let (m, k) = signed();
        for role in [Role::Broker, Role::Finance, Role::Admin, Role::Enterprise, Role::ResearchInstitution] {
            given(&m.history).when(user(role, Some(m.owner)), pay(k, yuan(1), "X")).then_code("FORBIDDEN");
        }
    }

    #[test]
    fn an_amendment_cannot_bring_the_amount_below_what_was_received() {
        let (mut m, k) = signed();
        m.history.extend(given(&m.history).when(registrar(), pay(k, yuan(600_000), "B1")).events());
        let amend = |amount: Money| {
            Command::AmendContract(AmendContract {
                contract_id: k,
                contract_amount: amount,
                tech_transaction_amount: amount,
                amended_on: date(2024, 6, 1),
                reason: "变更".into(),
            })
        };
        given(&m.history)
            .when(seller(m.owner), amend(yuan(599_999)))
            .then_rule(rules::NET_RECEIVED_WITHIN_CONTRACT_AMOUNT);
        assert_eq!(given(&m.history).when(seller(m.owner), amend(yuan(600_000))).events().len(), 1);
    }

    #[test]
    fn a_contract_is_registered_once_by_the_registrar() {
        let (mut m, k) = signed();
        let register = Command::RegisterContract(RegisterContract {
            contract_id: k,
            registration_number: RegistrationNumber::parse("r", "2024500106000001").unwrap(),
            registered_on: date(2024, 3, 20),
            certified_tech_transaction_amount: yuan(900_000),
            field: None,
        });
        given(&m.history).when(seller(m.owner), register.clone()).then_code("FORBIDDEN");
        m.history.extend(given(&m.history).when(registrar(), register.clone()).events());
        given(&m.history).when(registrar(), register).then_rule(rules::CONTRACT_ALREADY_REGISTERED);
    }

    #[test]
    fn a_payment_cannot_settle_before_the_contract_was_signed() {
        let (m, k) = signed();
        let early = Command::RecordPayment(RecordPayment {
            contract_id: k,
            payment_id: PaymentId(uuid::Uuid::now_v7()),
            amount: yuan(1),
            settled_at: at("2024-02-29T23:59:59+08:00"),
            bank_reference: "EARLY".into(),
        });
        given(&m.history).when(registrar(), early).then_rule(rules::DATE_ORDER);
    }
}
