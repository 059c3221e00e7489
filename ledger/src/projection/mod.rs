//! The policy projections of DOMAIN.md "The three computations", as one pure fold over the
//! log: the completer subsidy (5 %, capped per achievement), the operating-center incentive
//! (2 %, capped per center and year) and the annual technology-contract turnover.
//!
//! `Projections::apply` takes one recorded event and returns the lines it makes (dated,
//! explained, carrying the event's position) and the totals it changes. No I/O, no clock:
//! the live store persists the outputs in the appending transaction, `rebuild-projections`
//! and statements "as of" a position replay a prefix of the log through the same fold.
//!
//! Facts the rules read (accreditations on a date, a contract's parties and registration, a
//! payment's remaining amount) are kept by folding the domain's own aggregates, so the
//! projections and the command rules can never disagree about them.

pub mod capped;
pub mod lines;
mod turnover;

use std::collections::HashMap;

use chrono::{Datelike, NaiveDate};

use crate::domain::contract::Contract;
use crate::domain::organisation::Organisation;
use crate::event::*;
use crate::ids::*;
use crate::money::Money;
use crate::policy::{CapPeriod, PolicyBook, PolicyKind, PolicyVersion};
use crate::time::shanghai_date;
use crate::vocabulary::{AccreditationKind, TechField};
use capped::{Accumulator, split_largest_remainder};
pub use lines::*;

/// What the projections need of an achievement.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AchievementFacts {
    owner: OrganisationId,
    field: TechField,
    completers: Vec<Completer>,
}

/// How a payment counted in one scheme, decided at its settlement date (or, for a payment
/// before registration, at the registration): a reversal counts where the payment did.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Counting {
    /// The contract has no achievement (subsidy) or no operating center (incentive).
    NotApplicable,
    /// Waiting for the contract's registration.
    Pending,
    NotCounted(Vec<Reason>),
    Counted {
        period: i32,
        version: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PaymentCounting {
    subsidy: Counting,
    incentive: Counting,
    /// In the turnover's received amount (the contract was registered).
    turnover: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct SubsidyBucket {
    acc: Accumulator,
    cap: Money,
    completer_totals: Vec<Money>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct IncentiveBucket {
    acc: Accumulator,
    cap: Money,
}

/// The fold's state: everything a prefix of the log implies for the three computations.
#[derive(Debug, Clone, Default)]
pub struct Projections {
    position: Position,
    policies: PolicyBook,
    organisations: Folded<OrganisationId, Organisation>,
    achievements: Map<AchievementId, AchievementFacts>,
    contracts: Contracts,
    subsidy: Map<(AchievementId, i32), SubsidyBucket>,
    incentive: Map<(OrganisationId, i32), IncentiveBucket>,
    turnover: turnover::Turnover,
}

/// The fold's maps. Keys are ids from the log; foldhash is several times cheaper than the
/// default SipHash here and still seeded at random per process.
pub(super) type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Aggregate states by id, evolved in place by the domain's own `evolve`: one lookup per
/// event and no move of the state (taking it out of the map and putting it back cost a
/// sixth of the fold).
#[derive(Debug, Clone)]
struct Folded<K, S>(Map<K, Option<S>>);

impl<K, S> Default for Folded<K, S> {
    fn default() -> Self {
        Folded(Map::default())
    }
}

impl<K: std::hash::Hash + Eq, S> Folded<K, S> {
    fn fold(&mut self, key: K, event: &Event, evolve: fn(&mut Option<S>, &Event)) {
        evolve(self.0.entry(key).or_insert(None), event);
    }
}

impl<K: std::hash::Hash + Eq, S> std::ops::Index<&K> for Folded<K, S> {
    type Output = S;

    fn index(&self, key: &K) -> &S {
        self.0.get(key).and_then(Option::as_ref).expect("an aggregate is created before the events that refer to it")
    }
}

/// A contract as the fold keeps it: the domain's state, and how each of its payments
/// counted, beside it. One lookup of the contract finds both: kept in a map of their own by
/// payment, the countings cost a lookup in a large, growing map per payment (moving them
/// here made the fold about a sixth faster, BENCHMARKS.md's fifteenth stop).
#[derive(Debug, Clone, Default)]
struct ContractFold {
    state: Option<Contract>,
    /// How each of the state's `payments` counted, at the same index (both in ledger order).
    /// The payments not in the turnover yet are exactly those before the registration: it
    /// counts them in this order (the cap is applied in ledger order).
    countings: Vec<PaymentCounting>,
}

#[derive(Debug, Clone, Default)]
struct Contracts(Map<ContractId, ContractFold>);

impl Contracts {
    fn fold(&mut self, key: ContractId, event: &Event) {
        crate::domain::contract::evolve(&mut self.0.entry(key).or_default().state, event);
    }

    fn entry(&mut self, key: &ContractId) -> &mut ContractFold {
        self.0.get_mut(key).expect("a contract is signed before the events that refer to it")
    }

    fn counting(&self, contract: &ContractId, payment: PaymentId) -> Option<&PaymentCounting> {
        let fold = self.0.get(contract)?;
        let index = fold.state.as_ref()?.payments.iter().position(|p| p.id == payment)?;
        fold.countings.get(index)
    }
}

impl std::ops::Index<&ContractId> for Contracts {
    type Output = Contract;

    fn index(&self, key: &ContractId) -> &Contract {
        self.0.get(key).and_then(|c| c.state.as_ref()).expect("a contract is signed before the events that refer to it")
    }
}

/// What a counting line needs of a policy version (copied, so the fold can keep borrowing
/// the policy book while it updates its buckets).
#[derive(Debug, Clone, Copy)]
struct Terms {
    version: u32,
    rate: crate::money::Rate,
    cap: Money,
    cap_period: CapPeriod,
}

impl Terms {
    fn of(policy: &PolicyVersion) -> Terms {
        Terms { version: policy.version, rate: policy.rate, cap: policy.cap, cap_period: policy.cap_period }
    }
}

/// The event types the projections read; a replay may skip every other one (policy
/// replays of a SQLite file do: `store::read::POLICY_EVENTS_IN_RANGE`; the test
/// `the_policy_fold_of_its_event_types_alone_equals_the_fold_of_the_whole_log` checks that
/// skipping them changes nothing).
pub const EVENT_TYPES: [&str; 12] = [
    "OrganisationRegistered",
    "OrganisationAccredited",
    "AccreditationRevoked",
    "AchievementListed",
    "AchievementRevised",
    "ContractSigned",
    "ContractRegistered",
    "ContractAmended",
    "ContractTerminated",
    "PaymentSettled",
    "PaymentReversed",
    "PolicyEnacted",
];

/// How many outputs an event usually makes, so that its vector is allocated once (grown
/// from empty, a payment's eleven outputs of 184 bytes were moved three times): a payment
/// or reversal makes a turnover line and its six cells, and a line and a total per scheme;
/// a registration or amendment a turnover line and its cells (a registration's earlier
/// payments grow the vector).
fn outputs_of(event: &Event) -> usize {
    match event {
        Event::PaymentSettled(_) | Event::PaymentReversed(_) => 11,
        Event::ContractRegistered(_) | Event::ContractAmended(_) => 7,
        _ => 0,
    }
}

/// Numbers the lines of one event, per kind.
struct Sink {
    position: Position,
    outputs: Vec<Output>,
    subsidy_seq: u32,
    incentive_seq: u32,
    turnover_seq: u32,
}

impl Sink {
    fn next(seq: &mut u32) -> u32 {
        *seq += 1;
        *seq - 1
    }
}

fn period(cap_period: CapPeriod, date: NaiveDate) -> i32 {
    match cap_period {
        CapPeriod::Lifetime => 0,
        CapPeriod::CalendarYear => date.year(),
    }
}

impl Projections {
    pub fn new() -> Projections {
        Projections::default()
    }

    /// The last position folded.
    pub fn position(&self) -> Position {
        self.position
    }

    /// Records that the log up to `position` has been seen: a replay that reads only
    /// `EVENT_TYPES` passes over the other events, which would change nothing here.
    pub fn skip_to(&mut self, position: Position) {
        assert!(position >= self.position, "the fold is at {}, past {position}", self.position);
        self.position = position;
    }

    pub fn policies(&self) -> &PolicyBook {
        &self.policies
    }

    /// Folds one event; returns the lines and totals it makes.
    pub fn apply(&mut self, recorded: &RecordedEvent) -> Vec<Output> {
        assert!(recorded.position > self.position, "events are folded in log order");
        self.position = recorded.position;
        let mut sink = Sink {
            position: recorded.position,
            outputs: Vec::with_capacity(outputs_of(&recorded.event)),
            subsidy_seq: 0,
            incentive_seq: 0,
            turnover_seq: 0,
        };
        let event = &recorded.event;
        match event {
            Event::OrganisationRegistered(e) => {
                self.organisations.fold(e.organisation_id, event, crate::domain::organisation::evolve)
            }
            Event::OrganisationAccredited(e) => {
                self.organisations.fold(e.organisation_id, event, crate::domain::organisation::evolve)
            }
            Event::AccreditationRevoked(e) => {
                self.organisations.fold(e.organisation_id, event, crate::domain::organisation::evolve)
            }
            Event::AchievementListed(e) => {
                self.achievements.insert(
                    e.achievement_id,
                    AchievementFacts {
                        owner: e.owner_id,
                        field: e.details.field,
                        completers: e.details.completers.clone(),
                    },
                );
            }
            Event::AchievementRevised(e) => {
                let a = self.achievements.get_mut(&e.achievement_id).expect("revised after listed");
                a.field = e.details.field;
                a.completers = e.details.completers.clone();
            }
            Event::ContractSigned(e) => {
                self.contracts.fold(e.contract_id, event);
            }
            Event::ContractRegistered(e) => {
                self.contracts.fold(e.contract_id, event);
                self.on_registered(e.contract_id, &mut sink);
            }
            Event::ContractAmended(e) => {
                let before = self.contracts[&e.contract_id].contract_amount;
                self.contracts.fold(e.contract_id, event);
                self.on_amended(e.contract_id, before, &mut sink);
            }
            Event::ContractTerminated(e) => {
                self.contracts.fold(e.contract_id, event);
            }
            Event::PaymentSettled(e) => {
                self.contracts.fold(e.contract_id, event);
                self.on_payment(e, &mut sink);
            }
            Event::PaymentReversed(e) => {
                self.contracts.fold(e.contract_id, event);
                self.on_reversal(e, &mut sink);
            }
            Event::PolicyEnacted(e) => self.policies.enact(e.policy.clone()),
            _ => {}
        }
        sink.outputs
    }

    fn on_payment(&mut self, e: &PaymentSettled, sink: &mut Sink) {
        let contract = &self.contracts[&e.contract_id];
        let date = shanghai_date(e.settled_at);
        let registered = contract.registration.is_some();
        let (achievement, center) = (contract.achievement_id, contract.operating_center_id);
        let contract_number = contract.contract_number.clone();
        let mut counting =
            PaymentCounting { subsidy: Counting::NotApplicable, incentive: Counting::NotApplicable, turnover: false };
        if registered {
            self.turnover_line(
                sink,
                LineKind::Payment,
                e.contract_id,
                Some(e.payment_id),
                date,
                0,
                Money::ZERO,
                Money::ZERO,
                e.amount,
            );
            counting.turnover = true;
        }
        let target = Target {
            contract_id: e.contract_id,
            contract_number,
            payment_id: e.payment_id,
            reversal_id: None,
            date,
            received: e.amount,
        };
        if let Some(a) = achievement {
            counting.subsidy = if registered {
                self.count_subsidy(sink, LineKind::Payment, a, &target, e.amount)
            } else {
                self.subsidy_zero_line(sink, LineKind::Payment, a, &target, vec![Reason::ContractNotRegistered]);
                Counting::Pending
            };
        }
        if let Some(c) = center {
            counting.incentive = if registered {
                self.count_incentive(sink, LineKind::Payment, c, &target, e.amount)
            } else {
                self.incentive_zero_line(sink, LineKind::Payment, c, &target, vec![Reason::ContractNotRegistered]);
                Counting::Pending
            };
        }
        let fold = self.contracts.entry(&e.contract_id);
        fold.countings.push(counting);
        let payments = fold.state.as_ref().map_or(0, |c| c.payments.len());
        assert_eq!(fold.countings.len(), payments, "a counting per payment of the contract");
    }

    fn on_reversal(&mut self, e: &PaymentReversed, sink: &mut Sink) {
        let counting =
            self.contracts.counting(&e.contract_id, e.payment_id).cloned().expect("a reversal follows its payment");
        let contract = &self.contracts[&e.contract_id];
        let (achievement, center) = (contract.achievement_id, contract.operating_center_id);
        let contract_number = contract.contract_number.clone();
        let date = shanghai_date(e.reversed_at);
        if counting.turnover {
            self.turnover_line(
                sink,
                LineKind::Reversal,
                e.contract_id,
                Some(e.payment_id),
                date,
                0,
                Money::ZERO,
                Money::ZERO,
                -e.amount,
            );
        }
        let target = Target {
            contract_id: e.contract_id,
            contract_number,
            payment_id: e.payment_id,
            reversal_id: Some(e.reversal_id),
            date,
            received: -e.amount,
        };
        if let Some(a) = achievement {
            match &counting.subsidy {
                Counting::NotApplicable => unreachable!("a contract with an achievement counts its payments"),
                Counting::Pending => {
                    self.subsidy_zero_line(sink, LineKind::Reversal, a, &target, vec![Reason::ContractNotRegistered])
                }
                Counting::NotCounted(reasons) => {
                    self.subsidy_zero_line(sink, LineKind::Reversal, a, &target, reasons.clone())
                }
                Counting::Counted { period, version } => {
                    let terms = Terms::of(self.policies.get(PolicyKind::CompleterSubsidy, *version));
                    self.subsidy_line(sink, LineKind::Reversal, a, &target, terms, *period, -e.amount);
                }
            }
        }
        if let Some(c) = center {
            match &counting.incentive {
                Counting::NotApplicable => unreachable!("a contract with a center counts its payments"),
                Counting::Pending => {
                    self.incentive_zero_line(sink, LineKind::Reversal, c, &target, vec![Reason::ContractNotRegistered])
                }
                Counting::NotCounted(reasons) => {
                    self.incentive_zero_line(sink, LineKind::Reversal, c, &target, reasons.clone())
                }
                Counting::Counted { period, version } => {
                    let terms = Terms::of(self.policies.get(PolicyKind::OperatingCenterIncentive, *version));
                    self.incentive_line(sink, LineKind::Reversal, c, &target, terms, *period, -e.amount);
                }
            }
        }
    }

    /// Registration: the contract enters the turnover, and payments received before it start
    /// to count (at their own settlement dates, with what is left of them).
    fn on_registered(&mut self, contract_id: ContractId, sink: &mut Sink) {
        let contract = &self.contracts[&contract_id];
        let registration = contract.registration.as_ref().expect("just registered");
        let (registered_on, certified) = (registration.registered_on, registration.certified_tech_transaction_amount);
        let (amount, achievement, center) =
            (contract.contract_amount, contract.achievement_id, contract.operating_center_id);
        self.turnover_line(
            sink,
            LineKind::Registration,
            contract_id,
            None,
            registered_on,
            1,
            amount,
            certified,
            Money::ZERO,
        );
        // Taken out while the lines are made (they borrow the fold), put back after.
        let mut countings = std::mem::take(&mut self.contracts.entry(&contract_id).countings);
        for (index, counting) in countings.iter_mut().enumerate() {
            let payment = &self.contracts[&contract_id].payments[index];
            let (payment_id, remaining, date) = (payment.id, payment.remaining(), shanghai_date(payment.settled_at));
            assert!(!counting.turnover, "payments before registration were not in the turnover");
            if remaining.is_positive() {
                self.turnover_line(
                    sink,
                    LineKind::Registration,
                    contract_id,
                    Some(payment_id),
                    date,
                    0,
                    Money::ZERO,
                    Money::ZERO,
                    remaining,
                );
            }
            counting.turnover = true;
            let target = Target {
                contract_id,
                contract_number: self.contracts[&contract_id].contract_number.clone(),
                payment_id,
                reversal_id: None,
                date,
                received: Money::ZERO,
            };
            if let (Some(a), Counting::Pending) = (achievement, &counting.subsidy) {
                counting.subsidy = if remaining.is_positive() {
                    self.count_subsidy(sink, LineKind::Registration, a, &target, remaining)
                } else {
                    Counting::NotCounted(Vec::new())
                };
            }
            if let (Some(c), Counting::Pending) = (center, &counting.incentive) {
                counting.incentive = if remaining.is_positive() {
                    self.count_incentive(sink, LineKind::Registration, c, &target, remaining)
                } else {
                    Counting::NotCounted(Vec::new())
                };
            }
        }
        self.contracts.entry(&contract_id).countings = countings;
    }

    /// An amended contract amount of a registered contract changes its registration year's
    /// contract amount (合同成交额, as amended).
    fn on_amended(&mut self, contract_id: ContractId, before: Money, sink: &mut Sink) {
        let contract = &self.contracts[&contract_id];
        let Some(registered_on) = contract.registration.as_ref().map(|r| r.registered_on) else { return };
        let delta = contract.contract_amount - before;
        if !delta.is_zero() {
            self.turnover_line(
                sink,
                LineKind::Amendment,
                contract_id,
                None,
                registered_on,
                0,
                delta,
                Money::ZERO,
                Money::ZERO,
            );
        }
    }

    /// Why a payment on achievement `a` settled on `date` does not count, and the policy that
    /// applies when it does.
    fn subsidy_eligibility(
        &self,
        a: AchievementId,
        contract_id: ContractId,
        date: NaiveDate,
    ) -> (Option<Terms>, Vec<Reason>) {
        let mut reasons = Vec::new();
        let policy = self.policies.in_force(PolicyKind::CompleterSubsidy, date).map(Terms::of);
        if policy.is_none() {
            reasons.push(Reason::PolicyNotInForce);
        }
        let owner = &self.organisations[&self.achievements[&a].owner];
        let accredited = owner.is_accredited_as(AccreditationKind::IntroducedRdInstitution, date)
            || owner.is_accredited_as(AccreditationKind::InnovationPlatform, date);
        if !accredited {
            reasons.push(Reason::OwnerNotAccredited);
        }
        let buyer = &self.organisations[&self.contracts[&contract_id].buyer_id];
        if !buyer.division_code.is_chongqing() {
            reasons.push(Reason::BuyerOutsideChongqing);
        }
        (policy, reasons)
    }

    fn incentive_eligibility(&self, center: OrganisationId, date: NaiveDate) -> (Option<Terms>, Vec<Reason>) {
        let mut reasons = Vec::new();
        let policy = self.policies.in_force(PolicyKind::OperatingCenterIncentive, date).map(Terms::of);
        if policy.is_none() {
            reasons.push(Reason::PolicyNotInForce);
        }
        if !self.organisations[&center].is_accredited_as(AccreditationKind::IpOperatingCenter, date) {
            reasons.push(Reason::CenterNotAccredited);
        }
        (policy, reasons)
    }

    fn count_subsidy(
        &mut self,
        sink: &mut Sink,
        kind: LineKind,
        a: AchievementId,
        t: &Target,
        amount: Money,
    ) -> Counting {
        match self.subsidy_eligibility(a, t.contract_id, t.date) {
            (Some(policy), reasons) if reasons.is_empty() => {
                let p = period(policy.cap_period, t.date);
                self.subsidy_line(sink, kind, a, t, policy, p, amount);
                Counting::Counted { period: p, version: policy.version }
            }
            (_, reasons) => {
                self.subsidy_zero_line(sink, kind, a, t, reasons.clone());
                Counting::NotCounted(reasons)
            }
        }
    }

    fn count_incentive(
        &mut self,
        sink: &mut Sink,
        kind: LineKind,
        center: OrganisationId,
        t: &Target,
        amount: Money,
    ) -> Counting {
        match self.incentive_eligibility(center, t.date) {
            (Some(policy), reasons) if reasons.is_empty() => {
                let p = period(policy.cap_period, t.date);
                self.incentive_line(sink, kind, center, t, policy, p, amount);
                Counting::Counted { period: p, version: policy.version }
            }
            (_, reasons) => {
                self.incentive_zero_line(sink, kind, center, t, reasons.clone());
                Counting::NotCounted(reasons)
            }
        }
    }

    /// A counting line: the eligible basis of `(a, period)` changes by `eligible`.
    #[allow(clippy::too_many_arguments)]
    fn subsidy_line(
        &mut self,
        sink: &mut Sink,
        kind: LineKind,
        a: AchievementId,
        t: &Target,
        policy: Terms,
        p: i32,
        eligible: Money,
    ) {
        let completers = &self.achievements[&a].completers;
        let shares: Vec<u32> = completers.iter().map(|c| c.share.basis_points()).collect();
        let bucket = self.subsidy.entry((a, p)).or_insert_with(|| SubsidyBucket {
            completer_totals: vec![Money::ZERO; completers.len()],
            ..Default::default()
        });
        assert_eq!(
            bucket.completer_totals.len(),
            completers.len(),
            "completers are locked once an achievement has a contract"
        );
        let amount = bucket.acc.apply(policy.version, policy.rate, eligible, policy.cap);
        bucket.cap = policy.cap;
        let new_totals = split_largest_remainder(bucket.acc.granted(), &shares);
        let completer_lines: Vec<CompleterLine> = completers
            .iter()
            .zip(new_totals.iter().zip(&bucket.completer_totals))
            .enumerate()
            .map(|(i, (c, (new, old)))| CompleterLine {
                ordinal: i as u32,
                name: c.name.clone(),
                share_basis_points: c.share.basis_points(),
                amount: *new - *old,
                total: *new,
            })
            .collect();
        assert_eq!(
            completer_lines.iter().map(|c| c.amount).sum::<Money>(),
            amount,
            "completer lines add up to the line"
        );
        bucket.completer_totals = new_totals;
        let cap_reached = bucket.acc.granted() == bucket.cap;
        let reasons = if amount.is_zero() && cap_reached { vec![Reason::CapReached] } else { Vec::new() };
        let (eligible_total, subsidy_total) = (bucket.acc.basis(), bucket.acc.granted());
        let total = SubsidyTotal {
            achievement_id: a,
            period: p,
            eligible_received: eligible_total,
            subsidy: subsidy_total,
            cap: bucket.cap,
            cap_reached,
            completers: completers
                .iter()
                .zip(&bucket.completer_totals)
                .enumerate()
                .map(|(i, (c, total))| CompleterTotal {
                    ordinal: i as u32,
                    name: c.name.clone(),
                    share_basis_points: c.share.basis_points(),
                    subsidy: *total,
                })
                .collect(),
            position: sink.position,
        };
        let line = SubsidyLine {
            position: sink.position,
            seq: Sink::next(&mut sink.subsidy_seq),
            kind,
            achievement_id: a,
            period: p,
            contract_id: t.contract_id,
            contract_number: t.contract_number.clone(),
            payment_id: t.payment_id,
            reversal_id: t.reversal_id,
            date: t.date,
            received: t.received,
            eligible,
            subsidy: amount,
            policy_version: Some(policy.version),
            reasons,
            eligible_total,
            subsidy_total,
            cap_reached,
            completers: completer_lines,
        };
        sink.outputs.push(Output::SubsidyLine(line));
        sink.outputs.push(Output::SubsidyTotal(total));
    }

    /// A line that moves money but counts nothing, with the reasons.
    fn subsidy_zero_line(
        &mut self,
        sink: &mut Sink,
        kind: LineKind,
        a: AchievementId,
        t: &Target,
        reasons: Vec<Reason>,
    ) {
        // The achievement's totals as they stand (of the period the date would fall in).
        let period =
            self.policies.in_force(PolicyKind::CompleterSubsidy, t.date).map_or(0, |p| period(p.cap_period, t.date));
        let bucket = self.subsidy.get(&(a, period));
        let line = SubsidyLine {
            position: sink.position,
            seq: Sink::next(&mut sink.subsidy_seq),
            kind,
            achievement_id: a,
            period,
            contract_id: t.contract_id,
            contract_number: t.contract_number.clone(),
            payment_id: t.payment_id,
            reversal_id: t.reversal_id,
            date: t.date,
            received: t.received,
            eligible: Money::ZERO,
            subsidy: Money::ZERO,
            policy_version: None,
            reasons,
            eligible_total: bucket.map_or(Money::ZERO, |b| b.acc.basis()),
            subsidy_total: bucket.map_or(Money::ZERO, |b| b.acc.granted()),
            cap_reached: bucket.is_some_and(|b| b.acc.granted() == b.cap && b.cap.is_positive()),
            completers: Vec::new(),
        };
        sink.outputs.push(Output::SubsidyLine(line));
    }

    #[allow(clippy::too_many_arguments)]
    fn incentive_line(
        &mut self,
        sink: &mut Sink,
        kind: LineKind,
        center: OrganisationId,
        t: &Target,
        policy: Terms,
        p: i32,
        operating: Money,
    ) {
        let bucket = self.incentive.entry((center, p)).or_default();
        let amount = bucket.acc.apply(policy.version, policy.rate, operating, policy.cap);
        bucket.cap = policy.cap;
        let cap_reached = bucket.acc.granted() == bucket.cap;
        let reasons = if amount.is_zero() && cap_reached { vec![Reason::CapReached] } else { Vec::new() };
        let (operating_total, incentive_total, cap) = (bucket.acc.basis(), bucket.acc.granted(), bucket.cap);
        sink.outputs.push(Output::IncentiveLine(IncentiveLine {
            position: sink.position,
            seq: Sink::next(&mut sink.incentive_seq),
            kind,
            center_id: center,
            incentive_year: p,
            contract_id: t.contract_id,
            contract_number: t.contract_number.clone(),
            payment_id: t.payment_id,
            reversal_id: t.reversal_id,
            date: t.date,
            received: t.received,
            operating,
            incentive: amount,
            policy_version: Some(policy.version),
            reasons,
            operating_total,
            incentive_total,
            cap_reached,
        }));
        sink.outputs.push(Output::IncentiveTotal(IncentiveTotal {
            center_id: center,
            year: p,
            operating_amount: operating_total,
            incentive: incentive_total,
            cap,
            cap_reached,
            position: sink.position,
        }));
    }

    fn incentive_zero_line(
        &mut self,
        sink: &mut Sink,
        kind: LineKind,
        center: OrganisationId,
        t: &Target,
        reasons: Vec<Reason>,
    ) {
        let year = self
            .policies
            .in_force(PolicyKind::OperatingCenterIncentive, t.date)
            .map_or(t.date.year(), |p| period(p.cap_period, t.date));
        let bucket = self.incentive.get(&(center, year));
        sink.outputs.push(Output::IncentiveLine(IncentiveLine {
            position: sink.position,
            seq: Sink::next(&mut sink.incentive_seq),
            kind,
            center_id: center,
            incentive_year: year,
            contract_id: t.contract_id,
            contract_number: t.contract_number.clone(),
            payment_id: t.payment_id,
            reversal_id: t.reversal_id,
            date: t.date,
            received: t.received,
            operating: Money::ZERO,
            incentive: Money::ZERO,
            policy_version: None,
            reasons,
            operating_total: bucket.map_or(Money::ZERO, |b| b.acc.basis()),
            incentive_total: bucket.map_or(Money::ZERO, |b| b.acc.granted()),
            cap_reached: bucket.is_some_and(|b| b.acc.granted() == b.cap && b.cap.is_positive()),
        }));
    }

    #[allow(clippy::too_many_arguments)]
    fn turnover_line(
        &mut self,
        sink: &mut Sink,
        kind: LineKind,
        contract_id: ContractId,
        payment_id: Option<PaymentId>,
        date: NaiveDate,
        contracts: i64,
        contract_amount: Money,
        tech_transaction_amount: Money,
        received: Money,
    ) {
        let contract = &self.contracts[&contract_id];
        let seller = &self.organisations[&contract.seller_id];
        let registration = contract.registration.as_ref().expect("only registered contracts are in the turnover");
        let field = registration.field.or_else(|| contract.achievement_id.map(|a| self.achievements[&a].field));
        let line = TurnoverLine {
            position: sink.position,
            seq: Sink::next(&mut sink.turnover_seq),
            kind,
            contract_id,
            payment_id,
            date,
            contracts,
            contract_amount,
            tech_transaction_amount,
            received,
            dims: TurnoverDims {
                contract_type: contract.contract_type,
                seller_kind: seller.kind.seller_kind(),
                field,
                district: lines::cell_key(seller.division_code.as_str()),
            },
        };
        self.turnover.add(&line, &mut sink.outputs);
        sink.outputs.push(Output::TurnoverLine(line));
    }

    /// Subsidy totals of every achievement and period (for comparing with the tables).
    pub fn subsidy_totals(&self) -> Vec<(AchievementId, i32, Money, Money)> {
        let mut v: Vec<_> = self.subsidy.iter().map(|((a, p), b)| (*a, *p, b.acc.basis(), b.acc.granted())).collect();
        v.sort();
        v
    }

    /// Incentive totals of every center and year.
    pub fn incentive_totals(&self) -> Vec<(OrganisationId, i32, Money, Money)> {
        let mut v: Vec<_> = self.incentive.iter().map(|((c, y), b)| (*c, *y, b.acc.basis(), b.acc.granted())).collect();
        v.sort();
        v
    }

    /// The turnover figures of a year, by (dimension, key).
    pub fn turnover_cells(&self, year: i32) -> Vec<(&'static str, String, TurnoverFigures)> {
        self.turnover.cells_of(year)
    }
}

/// What a line is about: which payment (and reversal), on which date, moving how much money.
struct Target {
    contract_id: ContractId,
    /// Owned: the lines are made while the fold is borrowed mutably.
    contract_number: String,
    payment_id: PaymentId,
    reversal_id: Option<ReversalId>,
    date: NaiveDate,
    received: Money,
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
