//! Given / when / then for decisions (cqrs-es `TestFramework`, disintegrate `TestHarness`):
//! given these events, when this actor issues this command, then these events or this error.
//! The harness loads streams exactly as the real command handler does, through
//! `streams_needed`, so a decision that forgets to ask for a stream fails here too.

use chrono::{DateTime, NaiveDate, Utc};

use crate::actor::{Actor, Role};
use crate::codes::{CreditCode, DivisionCode};
use crate::command::{Command, RegisterOrganisation};
use crate::domain::{Facts, decide, streams_needed};
use crate::error::DomainError;
use crate::event::*;
use crate::ids::*;
use crate::money::Money;
use crate::vocabulary::*;

/// A valid unified social credit code (DOMAIN-RESEARCH.md's worked example).
pub const CREDIT_CODE: &str = "91110000600037341L";

pub struct Given {
    history: Vec<Event>,
}

pub struct Then {
    result: Result<Vec<Event>, DomainError>,
}

pub fn given(history: &[Event]) -> Given {
    Given { history: history.to_vec() }
}

impl Given {
    #[track_caller]
    pub fn when(self, actor: Actor, command: Command) -> Then {
        let mut facts = Facts::new();
        for _round in 0..4 {
            let needed = streams_needed(&command, &facts);
            if needed.is_empty() {
                break;
            }
            for stream in needed {
                let events: Vec<Event> = self.history.iter().filter(|e| e.stream_id() == stream).cloned().collect();
                facts.insert_events(stream, &events);
            }
        }
        assert!(streams_needed(&command, &facts).is_empty(), "streams_needed did not settle");
        Then { result: decide(&command, &actor, &facts) }
    }
}

impl Then {
    #[track_caller]
    pub fn then_events(self, expected: &[Event]) {
        assert_eq!(self.result.expect("command was refused"), expected);
    }

    #[track_caller]
    pub fn events(self) -> Vec<Event> {
        self.result.expect("command was refused")
    }

    #[track_caller]
    pub fn then_code(self, code: &str) -> DomainError {
        let err = self.result.expect_err("command was accepted");
        assert_eq!(err.code(), code, "{err}");
        err
    }

    #[track_caller]
    pub fn then_rule(self, rule: &str) -> DomainError {
        let err = self.result.expect_err("command was accepted");
        assert_eq!(err.rule(), Some(rule), "{err}");
        err
    }
}

pub fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
}

pub fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).expect("valid timestamp").to_utc()
}

pub fn yuan(y: i64) -> Money {
    Money::from_yuan(y)
}

pub fn admin() -> Actor {
    user(Role::Admin, None)
}

pub fn registrar() -> Actor {
    user(Role::Registrar, None)
}

pub fn user(role: Role, organisation: Option<OrganisationId>) -> Actor {
    Actor { user_id: format!("{}-user", role.as_str()), role, organisation_id: organisation, broker_id: None }
}

pub fn broker_user(broker: BrokerId) -> Actor {
    Actor { user_id: "broker-user".into(), role: Role::Broker, organisation_id: None, broker_id: Some(broker) }
}

pub fn register_cmd(id: OrganisationId, kind: OrganisationKind, division: &str) -> RegisterOrganisation {
    RegisterOrganisation {
        organisation_id: id,
        name: "重庆大学".into(),
        kind,
        credit_code: CreditCode::parse("creditCode", CREDIT_CODE).expect("valid"),
        division_code: DivisionCode::parse("divisionCode", division).expect("valid"),
    }
}

pub fn organisation(kind: OrganisationKind, division: &str) -> (OrganisationId, Vec<Event>) {
    let id = OrganisationId::new_v7();
    let c = register_cmd(id, kind, division);
    let event = Event::OrganisationRegistered(OrganisationRegistered {
        organisation_id: id,
        name: c.name,
        kind,
        credit_code: c.credit_code,
        division_code: c.division_code,
    });
    (id, vec![event])
}

pub fn university(division: &str) -> (OrganisationId, Vec<Event>) {
    organisation(OrganisationKind::University, division)
}

pub fn enterprise(division: &str) -> (OrganisationId, Vec<Event>) {
    organisation(OrganisationKind::Enterprise, division)
}

pub fn accreditation_event(org: OrganisationId, kind: AccreditationKind, from: NaiveDate) -> Event {
    Event::OrganisationAccredited(OrganisationAccredited {
        organisation_id: org,
        accreditation_id: AccreditationId(uuid::Uuid::now_v7()),
        kind,
        effective_from: from,
        effective_until: None,
        document_number: "渝科局发〔2024〕12号".into(),
    })
}

pub use crate::testkit::completers;

pub fn details(shares: &[&str]) -> AchievementDetails {
    AchievementDetails {
        title: "高强度镁合金制备技术".into(),
        field: TechField::NewMaterials,
        description: "一种高强度镁合金的制备方法".into(),
        patent_numbers: vec![crate::codes::PatentNumber::parse("p", "ZL201710601862.3").expect("valid")],
        maturity: 6,
        asking_price: Some(yuan(500_000)),
        transfer_modes: vec![TransferMode::Transfer, TransferMode::Licence],
        completers: completers(shares),
    }
}

pub fn achievement_listed(owner: OrganisationId) -> (AchievementId, Event) {
    let id = AchievementId::new_v7();
    (
        id,
        Event::AchievementListed(AchievementListed {
            achievement_id: id,
            owner_id: owner,
            details: details(&["60", "40"]),
        }),
    )
}

pub fn payment_settled(contract: ContractId, amount: Money, settled_at: &str, reference: &str) -> (PaymentId, Event) {
    let id = PaymentId(uuid::Uuid::now_v7());
    (
        id,
        Event::PaymentSettled(PaymentSettled {
            contract_id: contract,
            payment_id: id,
            amount,
            settled_at: at(settled_at),
            bank_reference: reference.into(),
        }),
    )
}
