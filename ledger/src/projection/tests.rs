//! Scenario tests of DOMAIN.md "The three computations", named after the clause they check.
//! Each builds a small log, folds it, and checks lines and totals to the fen.

use chrono::NaiveDate;

use super::*;
use crate::actor::Role;
use crate::codes::{RegistrationNumber, Share};
use crate::domain::testing::{accreditation_event, at, date, organisation};
use crate::event::Metadata;
use crate::money::Rate;
use crate::policy::CapPeriod;
use crate::vocabulary::{ContractType, OrganisationKind, TransferMode};

fn yuan(y: i64) -> Money {
    Money::from_yuan(y)
}

fn fen(f: i64) -> Money {
    Money::from_fen(f)
}

/// A log being written and folded as it goes.
struct World {
    projections: Projections,
    position: Position,
    outputs: Vec<Output>,
}

impl World {
    fn new() -> World {
        World { projections: Projections::new(), position: 0, outputs: Vec::new() }
    }

    fn record(&mut self, event: Event) -> Vec<Output> {
        self.position += 1;
        let recorded = RecordedEvent {
            position: self.position,
            stream_id: event.stream_id(),
            stream_version: 1,
            stored_schema_version: event.schema_version(),
            event,
            metadata: Metadata {
                actor: "test".into(),
                role: Role::Registrar,
                organisation_id: None,
                request_id: None,
                idempotency_key: None,
                command: "Test".into(),
                command_id: uuid::Uuid::nil(),
            },
            recorded_at: at("2025-06-01T00:00:00Z"),
            hash: [0; 32],
        };
        let out = self.projections.apply(&recorded);
        self.outputs.extend(out.clone());
        out
    }

    fn record_all(&mut self, events: Vec<Event>) {
        for e in events {
            self.record(e);
        }
    }

    fn subsidy_lines(&self) -> Vec<&SubsidyLine> {
        self.outputs.iter().filter_map(|o| if let Output::SubsidyLine(l) = o { Some(l) } else { None }).collect()
    }

    fn incentive_lines(&self) -> Vec<&IncentiveLine> {
        self.outputs.iter().filter_map(|o| if let Output::IncentiveLine(l) = o { Some(l) } else { None }).collect()
    }

    fn last_subsidy(&self) -> &SubsidyLine {
        self.subsidy_lines().last().copied().expect("a subsidy line")
    }

    /// Settles a payment and returns its id.
    fn pay(&mut self, contract: ContractId, amount: Money, settled_at: &str) -> PaymentId {
        let id = PaymentId(uuid::Uuid::now_v7());
        self.record(Event::PaymentSettled(PaymentSettled {
            contract_id: contract,
            payment_id: id,
            amount,
            settled_at: at(settled_at),
            bank_reference: format!("B-{}", id.0.simple()),
        }));
        id
    }

    fn reverse(&mut self, contract: ContractId, payment: PaymentId, amount: Money, reversed_at: &str) {
        self.record(Event::PaymentReversed(PaymentReversed {
            contract_id: contract,
            payment_id: payment,
            reversal_id: ReversalId(uuid::Uuid::now_v7()),
            amount,
            reversed_at: at(reversed_at),
            reason: "退款".into(),
        }));
    }

    fn register(&mut self, contract: ContractId, on: NaiveDate) {
        self.record(Event::ContractRegistered(ContractRegistered {
            contract_id: contract,
            registration_number: RegistrationNumber::parse("r", "2024500106000001").unwrap(),
            registered_on: on,
            certified_tech_transaction_amount: yuan(1),
            field: None,
        }));
    }
}

struct Deal {
    owner: OrganisationId,
    buyer: OrganisationId,
    center: OrganisationId,
    achievement: AchievementId,
    contract: ContractId,
}

/// An accredited university (from `accredited_from`) selling an achievement with `shares` to a
/// buyer in `buyer_division` through an accredited operating center, for 100,000,000 yuan,
/// signed 2024-01-02 and (when `registered_on` is given) registered.
fn deal(
    world: &mut World,
    shares: &[&str],
    buyer_division: &str,
    accredited_from: Option<NaiveDate>,
    registered_on: Option<NaiveDate>,
) -> Deal {
    let (owner, e) = organisation(OrganisationKind::University, "500106");
    world.record_all(e);
    if let Some(from) = accredited_from {
        world.record(accreditation_event(owner, AccreditationKind::IntroducedRdInstitution, from));
    }
    let (buyer, e) = organisation(OrganisationKind::Enterprise, buyer_division);
    world.record_all(e);
    let (center, e) = organisation(OrganisationKind::IpOperatingCenter, "500108");
    world.record_all(e);
    world.record(accreditation_event(center, AccreditationKind::IpOperatingCenter, date(2021, 6, 1)));
    let achievement = AchievementId::new_v7();
    world.record(Event::AchievementListed(AchievementListed {
        achievement_id: achievement,
        owner_id: owner,
        details: AchievementDetails {
            title: "成果".into(),
            field: TechField::NewMaterials,
            description: String::new(),
            patent_numbers: vec![],
            maturity: 6,
            asking_price: None,
            transfer_modes: vec![TransferMode::Transfer],
            completers: shares
                .iter()
                .enumerate()
                .map(|(i, s)| Completer {
                    name: format!("完成人{}", i + 1),
                    share: Share::parse("s", s).unwrap(),
                    identity: None,
                })
                .collect(),
        },
    }));
    let contract = sign(world, owner, buyer, Some(achievement), Some(center), yuan(100_000_000));
    if let Some(on) = registered_on {
        world.register(contract, on);
    }
    Deal { owner, buyer, center, achievement, contract }
}

fn sign(
    world: &mut World,
    seller: OrganisationId,
    buyer: OrganisationId,
    achievement: Option<AchievementId>,
    center: Option<OrganisationId>,
    amount: Money,
) -> ContractId {
    let contract = ContractId::new_v7();
    world.record(Event::ContractSigned(ContractSigned {
        contract_id: contract,
        contract_number: format!("HT-{}", contract.0.simple()),
        contract_type: ContractType::Transfer,
        title: "合同".into(),
        seller_id: seller,
        buyer_id: buyer,
        achievement_id: achievement,
        match_id: None,
        broker_id: None,
        operating_center_id: center,
        contract_amount: amount,
        tech_transaction_amount: amount,
        signed_on: date(2024, 1, 2),
    }));
    contract
}

fn eligible_deal(world: &mut World, shares: &[&str]) -> Deal {
    deal(world, shares, "500112", Some(date(2024, 1, 1)), Some(date(2024, 1, 10)))
}

#[test]
fn subsidy_5_percent_crossing_the_1m_cap_inside_one_payment_earns_only_up_to_the_cap() {
    let mut w = World::new();
    let d = eligible_deal(&mut w, &["100"]);
    w.pay(d.contract, yuan(19_000_000), "2024-03-01T10:00:00+08:00");
    assert_eq!(w.last_subsidy().subsidy, yuan(950_000));
    w.pay(d.contract, yuan(2_000_000), "2024-04-01T10:00:00+08:00");
    let line = w.last_subsidy();
    assert_eq!(line.subsidy, yuan(50_000), "21,000,000 x 5 % = 1,050,000 is capped at 1,000,000");
    assert_eq!((line.eligible_total, line.subsidy_total, line.cap_reached), (yuan(21_000_000), yuan(1_000_000), true));
}

#[test]
fn subsidy_exactly_at_the_cap_reaches_it_without_a_fen_over() {
    let mut w = World::new();
    let d = eligible_deal(&mut w, &["100"]);
    w.pay(d.contract, yuan(19_999_999), "2024-03-01T10:00:00+08:00");
    assert_eq!(w.last_subsidy().subsidy, fen(99_999_995), "999,999.95");
    assert!(!w.last_subsidy().cap_reached);
    w.pay(d.contract, yuan(1), "2024-03-02T10:00:00+08:00");
    let line = w.last_subsidy();
    assert_eq!((line.subsidy, line.subsidy_total, line.cap_reached), (fen(5), yuan(1_000_000), true));
}

#[test]
fn subsidy_after_the_cap_a_payment_earns_nothing_and_says_why() {
    let mut w = World::new();
    let d = eligible_deal(&mut w, &["100"]);
    w.pay(d.contract, yuan(20_000_000), "2024-03-01T10:00:00+08:00");
    w.pay(d.contract, yuan(500_000), "2024-05-01T10:00:00+08:00");
    let line = w.last_subsidy();
    assert_eq!((line.subsidy, line.eligible, line.eligible_total), (Money::ZERO, yuan(500_000), yuan(20_500_000)));
    assert_eq!(line.reasons, [Reason::CapReached]);
}

#[test]
fn subsidy_reversal_after_the_cap_drops_only_when_5_percent_of_net_falls_below_the_cap() {
    let mut w = World::new();
    let d = eligible_deal(&mut w, &["100"]);
    let p = w.pay(d.contract, yuan(22_000_000), "2024-03-01T10:00:00+08:00");
    assert_eq!(w.last_subsidy().subsidy_total, yuan(1_000_000));
    w.reverse(d.contract, p, yuan(2_000_000), "2024-06-01T10:00:00+08:00");
    let line = w.last_subsidy();
    assert_eq!(
        (line.kind, line.received, line.eligible, line.subsidy),
        (LineKind::Reversal, -yuan(2_000_000), -yuan(2_000_000), Money::ZERO)
    );
    assert_eq!(line.reasons, [Reason::CapReached], "net 20,000,000 x 5 % is still the cap");
    // Net 19,999,999.90: 5 % is 999,999.995, which rounds half-up back to the cap.
    w.reverse(d.contract, p, fen(10), "2024-06-02T10:00:00+08:00");
    assert_eq!(w.last_subsidy().subsidy, Money::ZERO);
    // Net 19,999,999.89: 5 % is 999,999.9945 -> 999,999.99: one fen back.
    w.reverse(d.contract, p, fen(1), "2024-06-03T10:00:00+08:00");
    let line = w.last_subsidy();
    assert_eq!((line.subsidy, line.subsidy_total, line.cap_reached), (-fen(1), fen(99_999_999), false));
}

#[test]
fn subsidy_payments_before_registration_count_once_registered_dated_by_their_settlement() {
    let mut w = World::new();
    let d = deal(&mut w, &["100"], "500112", Some(date(2024, 1, 1)), None);
    let p = w.pay(d.contract, yuan(1_000_000), "2024-02-01T10:00:00+08:00");
    let pending = w.last_subsidy().clone();
    assert_eq!((pending.received, pending.eligible, pending.subsidy), (yuan(1_000_000), Money::ZERO, Money::ZERO));
    assert_eq!(pending.reasons, [Reason::ContractNotRegistered]);
    w.reverse(d.contract, p, yuan(200_000), "2024-02-15T10:00:00+08:00");
    assert_eq!(w.last_subsidy().reasons, [Reason::ContractNotRegistered]);
    w.register(d.contract, date(2025, 3, 1));
    let counted = w.last_subsidy();
    assert_eq!(counted.kind, LineKind::Registration);
    assert_eq!(counted.date, date(2024, 2, 1), "dated by the settlement date, not the registration");
    assert_eq!(counted.position, w.position, "caused by the registration event");
    assert_eq!((counted.received, counted.eligible, counted.subsidy), (Money::ZERO, yuan(800_000), yuan(40_000)));
    // The payment's later reversal counts where the payment counted.
    w.reverse(d.contract, p, yuan(100_000), "2025-04-01T10:00:00+08:00");
    let line = w.last_subsidy();
    assert_eq!((line.eligible, line.subsidy, line.date), (-yuan(100_000), -yuan(5_000), date(2025, 4, 1)));
}

#[test]
fn subsidy_ineligible_buyer_outside_chongqing_earns_nothing_but_the_payment_is_turnover() {
    let mut w = World::new();
    let d = deal(&mut w, &["100"], "110108", Some(date(2024, 1, 1)), Some(date(2024, 1, 10)));
    w.pay(d.contract, yuan(1_000_000), "2024-03-01T10:00:00+08:00");
    let line = w.last_subsidy();
    assert_eq!((line.subsidy, line.eligible), (Money::ZERO, Money::ZERO));
    assert_eq!(line.reasons, [Reason::BuyerOutsideChongqing]);
    let received: Money =
        w.projections.turnover_cells(2024).iter().find(|(d, k, _)| *d == "total" && k == "total").unwrap().2.received;
    assert_eq!(received, yuan(1_000_000));
}

#[test]
fn subsidy_accreditation_starting_mid_year_counts_only_payments_settled_from_its_date() {
    let mut w = World::new();
    let d = deal(&mut w, &["100"], "500112", Some(date(2024, 7, 1)), Some(date(2024, 1, 10)));
    w.pay(d.contract, yuan(1_000_000), "2024-06-30T23:59:59+08:00");
    assert_eq!(w.last_subsidy().reasons, [Reason::OwnerNotAccredited]);
    w.pay(d.contract, yuan(1_000_000), "2024-07-01T00:00:00+08:00");
    assert_eq!(w.last_subsidy().subsidy, yuan(50_000));
    assert_eq!(w.last_subsidy().eligible_total, yuan(1_000_000));
}

#[test]
fn subsidy_three_completers_33_33_33_33_33_34_over_many_small_payments_sum_to_the_fen() {
    let mut w = World::new();
    let d = eligible_deal(&mut w, &["33.33", "33.33", "33.34"]);
    let mut per_completer = [Money::ZERO; 3];
    let mut achievement = Money::ZERO;
    for i in 0..500 {
        // 0.07 .. 3.06 yuan: most lines are a few fen, many round to nothing.
        w.pay(d.contract, fen(7 + (i * 61) % 300), &format!("2024-03-01T10:{:02}:{:02}+08:00", i / 60, i % 60));
        let line = w.last_subsidy();
        assert_eq!(line.completers.iter().map(|c| c.amount).sum::<Money>(), line.subsidy);
        for c in &line.completers {
            per_completer[c.ordinal as usize] += c.amount;
        }
        achievement += line.subsidy;
    }
    let last = w.last_subsidy();
    assert_eq!(achievement, last.subsidy_total);
    assert_eq!(per_completer.iter().copied().sum::<Money>(), last.subsidy_total);
    assert_eq!(last.subsidy_total, last.eligible_total.times_rate_half_up(Rate::percent(5)), "no drift");
    for (i, c) in last.completers.iter().enumerate() {
        assert_eq!(per_completer[i], c.total, "each completer's lines add up to their total");
    }
}

#[test]
fn subsidy_year_boundary_2024_12_31_23_59_vs_2025_01_01_00_00_asia_shanghai() {
    let mut w = World::new();
    let d = eligible_deal(&mut w, &["100"]);
    w.pay(d.contract, yuan(1_000), "2024-12-31T23:59:00+08:00");
    assert_eq!((w.last_subsidy().date, w.last_subsidy().year()), (date(2024, 12, 31), 2024));
    w.pay(d.contract, yuan(1_000), "2024-12-31T16:00:00Z");
    assert_eq!(
        (w.last_subsidy().date, w.last_subsidy().year()),
        (date(2025, 1, 1), 2025),
        "16:00 UTC is midnight in Shanghai"
    );
}

#[test]
fn incentive_2_percent_center_crosses_5m_in_one_year_and_starts_fresh_the_next() {
    let mut w = World::new();
    let d = eligible_deal(&mut w, &["100"]);
    w.pay(d.contract, yuan(200_000_000 / 2), "2024-05-01T10:00:00+08:00");
    let first = w.incentive_lines().last().copied().cloned().unwrap();
    assert_eq!((first.incentive, first.incentive_year), (yuan(2_000_000), 2024));
    let contract2 = sign(&mut w, d.owner, d.buyer, None, Some(d.center), yuan(500_000_000));
    w.register(contract2, date(2024, 6, 1));
    w.pay(contract2, yuan(200_000_000), "2024-11-01T10:00:00+08:00");
    let crossing = w.incentive_lines().last().copied().cloned().unwrap();
    assert_eq!(crossing.incentive, yuan(3_000_000), "300,000,000 x 2 % = 6,000,000 capped at 5,000,000");
    assert_eq!((crossing.incentive_total, crossing.cap_reached), (yuan(5_000_000), true));
    let p = w.pay(contract2, yuan(10_000_000), "2025-01-01T00:00:00+08:00");
    let fresh = w.incentive_lines().last().copied().cloned().unwrap();
    assert_eq!((fresh.incentive_year, fresh.incentive, fresh.incentive_total), (2025, yuan(200_000), yuan(200_000)));
    // A reversal of a 2025 payment dated 2026 reduces 2025's operating amount, dated 2026.
    w.reverse(contract2, p, yuan(1_000_000), "2026-02-01T10:00:00+08:00");
    let back = w.incentive_lines().last().copied().cloned().unwrap();
    assert_eq!((back.incentive_year, back.date, back.incentive), (2025, date(2026, 2, 1), -yuan(20_000)));
    assert_eq!(w.projections.incentive_totals().iter().find(|t| t.1 == 2024).unwrap().3, yuan(5_000_000));
}

#[test]
fn incentive_reversal_against_a_year_above_the_cap_claws_back_nothing() {
    let mut w = World::new();
    let d = eligible_deal(&mut w, &["100"]);
    let p = w.pay(d.contract, yuan(90_000_000), "2024-05-01T10:00:00+08:00");
    let contract2 = sign(&mut w, d.owner, d.buyer, None, Some(d.center), yuan(500_000_000));
    w.register(contract2, date(2024, 6, 1));
    w.pay(contract2, yuan(200_000_000), "2024-11-01T10:00:00+08:00");
    w.reverse(d.contract, p, yuan(10_000_000), "2025-01-15T10:00:00+08:00");
    let line = w.incentive_lines().last().copied().cloned().unwrap();
    assert_eq!((line.incentive_year, line.operating, line.incentive), (2024, -yuan(10_000_000), Money::ZERO));
    assert_eq!(line.reasons, [Reason::CapReached]);
}

#[test]
fn incentive_needs_the_center_accredited_on_the_settlement_date() {
    let mut w = World::new();
    let d = eligible_deal(&mut w, &["100"]);
    let (other, e) = organisation(OrganisationKind::IpOperatingCenter, "500108");
    w.record_all(e);
    let c = sign(&mut w, d.owner, d.buyer, None, Some(other), yuan(1_000_000));
    w.register(c, date(2024, 2, 1));
    w.pay(c, yuan(100_000), "2024-03-01T10:00:00+08:00");
    assert_eq!(w.incentive_lines().last().unwrap().reasons, [Reason::CenterNotAccredited]);
}

#[test]
fn turnover_counts_registered_contracts_by_registration_date_and_received_by_settlement_date() {
    let mut w = World::new();
    let d = deal(&mut w, &["100"], "500112", None, None);
    let p = w.pay(d.contract, yuan(300), "2024-12-20T10:00:00+08:00");
    assert!(w.projections.turnover_cells(2024).is_empty(), "not registered: not in the turnover");
    w.register(d.contract, date(2025, 1, 5));
    w.record(Event::ContractAmended(ContractAmended {
        contract_id: d.contract,
        contract_amount: yuan(120_000_000),
        tech_transaction_amount: yuan(1),
        amended_on: date(2025, 2, 1),
        reason: "变更".into(),
    }));
    w.reverse(d.contract, p, yuan(100), "2025-03-01T10:00:00+08:00");
    let cell = |year, dim: &str, key: &str| {
        w.projections
            .turnover_cells(year)
            .into_iter()
            .find(|(d, k, _)| *d == dim && k == key)
            .map(|c| c.2)
            .unwrap_or_default()
    };
    let total_2025 = cell(2025, "total", "total");
    assert_eq!(
        (total_2025.contracts, total_2025.contract_amount, total_2025.tech_transaction_amount),
        (1, yuan(120_000_000), yuan(1))
    );
    assert_eq!(total_2025.received, -yuan(100), "the reversal in 2025");
    assert_eq!(
        cell(2024, "total", "total").received,
        yuan(300),
        "the 2024 payment counts in 2024 from the registration on"
    );
    assert_eq!(cell(2025, "contract_type", "transfer").contracts, 1);
    assert_eq!(cell(2025, "seller_kind", "university").contract_amount, yuan(120_000_000));
    assert_eq!(cell(2025, "field", "new_materials").contracts, 1, "the achievement's field");
    assert_eq!(cell(2025, "district", "500106").contracts, 1, "the seller's district");
    assert_eq!(cell(2025, "month", "2025-01").contracts, 1);
    assert_eq!(cell(2025, "month", "2025-03").received, -yuan(100));
    let keys: Vec<(&str, String)> = w.projections.turnover_cells(2025).into_iter().map(|(d, k, _)| (d, k)).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "a year's cells come ordered by dimension, then key");
    assert_eq!(keys.len(), 7, "total, type, seller kind, field, district and two months");
}

#[test]
fn a_turnover_month_key_is_the_four_digit_year_and_two_digit_month() {
    let line = |date: NaiveDate| TurnoverLine {
        position: 1,
        seq: 0,
        kind: LineKind::Payment,
        contract_id: ContractId(uuid::Uuid::nil()),
        payment_id: None,
        date,
        contracts: 0,
        contract_amount: Money::ZERO,
        tech_transaction_amount: Money::ZERO,
        received: Money::ZERO,
        dims: TurnoverDims {
            contract_type: ContractType::Transfer,
            seller_kind: crate::vocabulary::SellerKind::University,
            field: None,
            district: cell_key("500106"),
        },
    };
    assert_eq!(line(date(2024, 1, 31)).month().as_str(), "2024-01");
    assert_eq!(line(date(2025, 12, 1)).month().as_str(), "2025-12");
    assert_eq!(line(date(987, 10, 9)).month().as_str(), "0987-10");
    let cells = line(date(2024, 7, 4)).cells().map(|(d, k)| format!("{d}={k}"));
    assert_eq!(
        cells,
        [
            "total=total",
            "contract_type=transfer",
            "seller_kind=university",
            "field=unclassified",
            "district=500106",
            "month=2024-07"
        ]
    );
}

#[test]
#[should_panic(expected = "longer than 32 bytes")]
fn a_cell_key_longer_than_its_room_is_a_bug_not_a_truncation() {
    cell_key("a key of more than thirty-two bytes in all");
}

#[test]
fn a_new_policy_version_applies_from_its_effective_date_and_leaves_past_lines_alone() {
    let mut w = World::new();
    let d = eligible_deal(&mut w, &["100"]);
    w.pay(d.contract, yuan(1_000_000), "2025-12-31T10:00:00+08:00");
    let before = w.last_subsidy().clone();
    let mut v2 = w.projections.policies().latest(PolicyKind::CompleterSubsidy).clone();
    v2.version = 2;
    v2.rate = Rate::percent(4);
    v2.effective_from = date(2026, 1, 1);
    v2.cap_period = CapPeriod::Lifetime;
    w.record(Event::PolicyEnacted(PolicyEnacted { policy: v2 }));
    w.pay(d.contract, yuan(1_000_000), "2026-01-02T10:00:00+08:00");
    let after = w.last_subsidy();
    assert_eq!((after.policy_version, after.subsidy, after.subsidy_total), (Some(2), yuan(40_000), yuan(90_000)));
    assert_eq!(w.subsidy_lines()[w.subsidy_lines().len() - 2], &before, "the 2025 line is untouched");
    // A late 2025 payment still uses version 1.
    w.pay(d.contract, yuan(1_000_000), "2025-12-31T11:00:00+08:00");
    assert_eq!((w.last_subsidy().policy_version, w.last_subsidy().subsidy), (Some(1), yuan(50_000)));
}

#[test]
fn a_contract_without_an_achievement_makes_no_subsidy_lines() {
    let mut w = World::new();
    let d = eligible_deal(&mut w, &["100"]);
    let c = sign(&mut w, d.owner, d.buyer, None, None, yuan(1_000));
    w.register(c, date(2024, 2, 1));
    let before = w.subsidy_lines().len();
    w.pay(c, yuan(10), "2024-03-01T10:00:00+08:00");
    assert_eq!(w.subsidy_lines().len(), before);
    assert_eq!(w.incentive_lines().len(), 0, "nor incentive lines without a center");
    let _ = d.achievement;
}

// The export prints each line's contract number (合同编号) from the line itself
// (migration 0008): every kind of subsidy and incentive line carries the number its contract
// was signed with, and a second contract's lines carry the second's.
#[test]
fn every_subsidy_and_incentive_line_carries_its_contracts_number_as_signed() {
    let mut w = World::new();
    let d = eligible_deal(&mut w, &["100"]);
    let unregistered = sign(&mut w, d.owner, d.buyer, Some(d.achievement), Some(d.center), yuan(1_000_000));
    let early = w.pay(unregistered, yuan(100_000), "2024-03-01T10:00:00+08:00");
    w.reverse(unregistered, early, yuan(10_000), "2024-03-05T10:00:00+08:00");
    w.register(unregistered, date(2024, 4, 1));
    let p = w.pay(d.contract, yuan(200_000), "2024-05-01T10:00:00+08:00");
    w.reverse(d.contract, p, yuan(50_000), "2024-06-01T10:00:00+08:00");
    w.pay(unregistered, yuan(300_000), "2024-07-01T10:00:00+08:00");
    let number = |c: ContractId| format!("HT-{}", c.0.simple());
    let subsidy: Vec<(ContractId, LineKind, &str)> =
        w.subsidy_lines().iter().map(|l| (l.contract_id, l.kind, l.contract_number.as_str())).collect();
    let incentive: Vec<(ContractId, LineKind, &str)> =
        w.incentive_lines().iter().map(|l| (l.contract_id, l.kind, l.contract_number.as_str())).collect();
    // Not registered yet (zero lines): payment, reversal; then the registration's line; then
    // the other contract's payment and reversal; then a payment on a registered contract.
    let kinds = [
        (unregistered, LineKind::Payment),
        (unregistered, LineKind::Reversal),
        (unregistered, LineKind::Registration),
        (d.contract, LineKind::Payment),
        (d.contract, LineKind::Reversal),
        (unregistered, LineKind::Payment),
    ];
    for lines in [&subsidy, &incentive] {
        assert_eq!(lines.iter().map(|(c, k, _)| (*c, *k)).collect::<Vec<_>>(), kinds);
        for (contract, _, carried) in lines {
            assert_eq!(*carried, number(*contract));
        }
    }
}
