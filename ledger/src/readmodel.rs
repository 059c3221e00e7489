//! The marketplace's browse read models, as a pure projection: each recorded event becomes a
//! list of row [`Change`]s. The store applies them in the appending transaction (so the
//! tables never lag the log) and `rebuild-projections` replays the whole log through the same
//! function. No business rule lives here: only where each fact is shown.

use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::matching::Answer;
use crate::event::*;
use crate::ids::StreamId;
use crate::time::shanghai_date;
use crate::vocabulary::MatchSide;

/// The name under which this projection records its position.
pub const PROJECTION: &str = "marketplace";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganisationRow {
    pub id: String,
    pub name: String,
    pub kind: &'static str,
    pub credit_code: String,
    pub division_code: String,
    pub registered_on: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccreditationRow {
    pub id: String,
    pub organisation_id: String,
    pub kind: &'static str,
    pub effective_from: NaiveDate,
    pub effective_until: Option<NaiveDate>,
    pub document_number: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRow {
    pub id: String,
    pub name: String,
    pub agency_id: Option<String>,
    pub certificate_number: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AchievementRow {
    pub id: String,
    pub owner_id: String,
    pub title: String,
    pub field: &'static str,
    pub description: String,
    /// Comma-separated, in listing order.
    pub patent_numbers: String,
    pub maturity: i32,
    pub asking_price_fen: Option<i64>,
    /// Comma-separated codes, in listing order.
    pub transfer_modes: String,
    pub listed_on: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompleterRow {
    pub ordinal: i32,
    pub name: String,
    pub share_basis_points: i32,
    pub id_number_masked: Option<String>,
    pub id_reference: Option<String>,
    pub id_fingerprint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemandRow {
    pub id: String,
    pub enterprise_id: String,
    pub title: String,
    pub field: &'static str,
    pub description: String,
    pub budget_fen: Option<i64>,
    pub deadline: Option<NaiveDate>,
    pub posted_on: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchRow {
    pub id: String,
    pub broker_id: String,
    pub achievement_id: String,
    pub demand_id: String,
    pub note: String,
    pub proposed_on: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractRow {
    pub id: String,
    pub contract_number: String,
    pub contract_type: &'static str,
    pub title: String,
    pub seller_id: String,
    pub buyer_id: String,
    pub achievement_id: Option<String>,
    pub match_id: Option<String>,
    pub broker_id: Option<String>,
    pub operating_center_id: Option<String>,
    pub contract_amount_fen: i64,
    pub tech_transaction_amount_fen: i64,
    pub signed_on: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRow {
    pub id: String,
    pub contract_id: String,
    pub amount_fen: i64,
    pub settled_at: DateTime<Utc>,
    pub settlement_date: NaiveDate,
    pub bank_reference: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersionRow {
    pub policy: &'static str,
    pub version: i32,
    pub rate: String,
    pub cap_fen: i64,
    pub cap_period: &'static str,
    pub basis: &'static str,
    pub effective_from: NaiveDate,
    pub effective_until: Option<NaiveDate>,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReversalRow {
    pub id: String,
    pub payment_id: String,
    pub contract_id: String,
    pub amount_fen: i64,
    pub reversed_at: DateTime<Utc>,
    pub reversal_date: NaiveDate,
    pub reason: String,
}

/// One change to the read-model tables. Inserts carry whole rows; updates carry only what
/// the event changed, so applying a change never needs the previous row in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A value that must stay unique across streams; a clash refuses the event.
    Claim {
        claim: String,
        owner: StreamId,
    },
    InsertOrganisation(OrganisationRow),
    InsertAccreditation(AccreditationRow),
    RevokeAccreditation {
        id: String,
        revoked_from: NaiveDate,
        reason: String,
    },
    InsertBroker(BrokerRow),
    InsertAchievement(AchievementRow),
    ReviseAchievement(AchievementRow),
    ReplaceCompleters {
        achievement_id: String,
        completers: Vec<CompleterRow>,
    },
    LockCompleters {
        achievement_id: String,
    },
    WithdrawAchievement {
        achievement_id: String,
    },
    InsertDemand(DemandRow),
    CloseDemand {
        demand_id: String,
    },
    InsertMatch(MatchRow),
    AnswerMatch {
        match_id: String,
        side: MatchSide,
        answer: Answer,
    },
    InsertContract(ContractRow),
    RegisterContract {
        contract_id: String,
        registration_number: String,
        registered_on: NaiveDate,
        certified_fen: i64,
    },
    AmendContract {
        contract_id: String,
        contract_amount_fen: i64,
        tech_transaction_amount_fen: i64,
    },
    TerminateContract {
        contract_id: String,
        terminated_on: NaiveDate,
    },
    InsertPayment(PaymentRow),
    InsertReversal(ReversalRow),
    InsertPolicyVersion(PolicyVersionRow),
}

/// The claim keys of unique values, one spelling for writer and reader.
pub fn credit_code_claim(code: &str) -> String {
    format!("credit_code:{code}")
}
pub fn contract_number_claim(seller: &str, number: &str) -> String {
    format!("contract_number:{seller}:{number}")
}
pub fn registration_number_claim(number: &str) -> String {
    format!("registration_number:{number}")
}

fn opt<T: ToString>(v: Option<T>) -> Option<String> {
    v.map(|x| x.to_string())
}

fn joined<T>(items: &[T], f: impl Fn(&T) -> String) -> String {
    items.iter().map(f).collect::<Vec<_>>().join(",")
}

fn achievement_row(id: String, owner_id: String, d: &AchievementDetails, listed_on: NaiveDate) -> AchievementRow {
    AchievementRow {
        id,
        owner_id,
        title: d.title.clone(),
        field: d.field.as_str(),
        description: d.description.clone(),
        patent_numbers: joined(&d.patent_numbers, |p| p.to_string()),
        maturity: i32::from(d.maturity),
        asking_price_fen: d.asking_price.map(|m| m.fen()),
        transfer_modes: joined(&d.transfer_modes, |m| m.as_str().to_owned()),
        listed_on,
    }
}

fn completer_rows(achievement_id: String, d: &AchievementDetails) -> Change {
    Change::ReplaceCompleters {
        achievement_id,
        completers: d
            .completers
            .iter()
            .enumerate()
            .map(|(i, c)| CompleterRow {
                ordinal: i32::try_from(i).expect("completers are bounded"),
                name: c.name.clone(),
                share_basis_points: i32::try_from(c.share.basis_points()).expect("a share is at most 10000"),
                id_number_masked: c.identity.as_ref().map(|i| i.masked.clone()),
                id_reference: c.identity.as_ref().map(|i| i.reference.to_string()),
                id_fingerprint: c.identity.as_ref().map(|i| i.fingerprint.clone()),
            })
            .collect(),
    }
}

/// The read-model changes one recorded event makes.
pub fn changes(recorded: &RecordedEvent) -> Vec<Change> {
    let on = shanghai_date(recorded.recorded_at);
    match &recorded.event {
        Event::OrganisationRegistered(e) => vec![
            Change::Claim { claim: credit_code_claim(e.credit_code.as_str()), owner: recorded.stream_id.clone() },
            Change::InsertOrganisation(OrganisationRow {
                id: e.organisation_id.to_string(),
                name: e.name.clone(),
                kind: e.kind.as_str(),
                credit_code: e.credit_code.to_string(),
                division_code: e.division_code.to_string(),
                registered_on: on,
            }),
        ],
        Event::OrganisationAccredited(e) => vec![Change::InsertAccreditation(AccreditationRow {
            id: e.accreditation_id.to_string(),
            organisation_id: e.organisation_id.to_string(),
            kind: e.kind.as_str(),
            effective_from: e.effective_from,
            effective_until: e.effective_until,
            document_number: e.document_number.clone(),
        })],
        Event::AccreditationRevoked(e) => vec![Change::RevokeAccreditation {
            id: e.accreditation_id.to_string(),
            revoked_from: e.revoked_from,
            reason: e.reason.clone(),
        }],
        Event::BrokerRegistered(e) => vec![Change::InsertBroker(BrokerRow {
            id: e.broker_id.to_string(),
            name: e.name.clone(),
            agency_id: opt(e.agency_id),
            certificate_number: e.certificate_number.clone(),
        })],
        Event::AchievementListed(e) => vec![
            Change::InsertAchievement(achievement_row(
                e.achievement_id.to_string(),
                e.owner_id.to_string(),
                &e.details,
                on,
            )),
            completer_rows(e.achievement_id.to_string(), &e.details),
        ],
        Event::AchievementRevised(e) => vec![
            // owner_id and listed_on are not revised; the SQL update leaves them alone.
            Change::ReviseAchievement(achievement_row(e.achievement_id.to_string(), String::new(), &e.details, on)),
            completer_rows(e.achievement_id.to_string(), &e.details),
        ],
        Event::CompletersLocked(e) => vec![Change::LockCompleters { achievement_id: e.achievement_id.to_string() }],
        Event::AchievementWithdrawn(e) => {
            vec![Change::WithdrawAchievement { achievement_id: e.achievement_id.to_string() }]
        }
        Event::DemandPosted(e) => vec![Change::InsertDemand(DemandRow {
            id: e.demand_id.to_string(),
            enterprise_id: e.enterprise_id.to_string(),
            title: e.title.clone(),
            field: e.field.as_str(),
            description: e.description.clone(),
            budget_fen: e.budget.map(|m| m.fen()),
            deadline: e.deadline,
            posted_on: on,
        })],
        Event::DemandClosed(e) => vec![Change::CloseDemand { demand_id: e.demand_id.to_string() }],
        Event::MatchProposed(e) => vec![Change::InsertMatch(MatchRow {
            id: e.match_id.to_string(),
            broker_id: e.broker_id.to_string(),
            achievement_id: e.achievement_id.to_string(),
            demand_id: e.demand_id.to_string(),
            note: e.note.clone(),
            proposed_on: on,
        })],
        Event::MatchAccepted(e) => {
            vec![Change::AnswerMatch { match_id: e.match_id.to_string(), side: e.side, answer: Answer::Accepted }]
        }
        Event::MatchDeclined(e) => {
            vec![Change::AnswerMatch { match_id: e.match_id.to_string(), side: e.side, answer: Answer::Declined }]
        }
        Event::ContractSigned(e) => vec![
            Change::Claim {
                claim: contract_number_claim(&e.seller_id.to_string(), &e.contract_number),
                owner: recorded.stream_id.clone(),
            },
            Change::InsertContract(ContractRow {
                id: e.contract_id.to_string(),
                contract_number: e.contract_number.clone(),
                contract_type: e.contract_type.as_str(),
                title: e.title.clone(),
                seller_id: e.seller_id.to_string(),
                buyer_id: e.buyer_id.to_string(),
                achievement_id: opt(e.achievement_id),
                match_id: opt(e.match_id),
                broker_id: opt(e.broker_id),
                operating_center_id: opt(e.operating_center_id),
                contract_amount_fen: e.contract_amount.fen(),
                tech_transaction_amount_fen: e.tech_transaction_amount.fen(),
                signed_on: e.signed_on,
            }),
        ],
        Event::ContractRegistered(e) => vec![
            Change::Claim {
                claim: registration_number_claim(e.registration_number.as_str()),
                owner: recorded.stream_id.clone(),
            },
            Change::RegisterContract {
                contract_id: e.contract_id.to_string(),
                registration_number: e.registration_number.to_string(),
                registered_on: e.registered_on,
                certified_fen: e.certified_tech_transaction_amount.fen(),
            },
        ],
        Event::ContractAmended(e) => vec![Change::AmendContract {
            contract_id: e.contract_id.to_string(),
            contract_amount_fen: e.contract_amount.fen(),
            tech_transaction_amount_fen: e.tech_transaction_amount.fen(),
        }],
        Event::ContractTerminated(e) => {
            vec![Change::TerminateContract { contract_id: e.contract_id.to_string(), terminated_on: e.terminated_on }]
        }
        Event::PaymentSettled(e) => vec![Change::InsertPayment(PaymentRow {
            id: e.payment_id.to_string(),
            contract_id: e.contract_id.to_string(),
            amount_fen: e.amount.fen(),
            settled_at: e.settled_at,
            settlement_date: shanghai_date(e.settled_at),
            bank_reference: e.bank_reference.clone(),
        })],
        Event::PaymentReversed(e) => vec![Change::InsertReversal(ReversalRow {
            id: e.reversal_id.to_string(),
            payment_id: e.payment_id.to_string(),
            contract_id: e.contract_id.to_string(),
            amount_fen: e.amount.fen(),
            reversed_at: e.reversed_at,
            reversal_date: shanghai_date(e.reversed_at),
            reason: e.reason.clone(),
        })],
        Event::PolicyEnacted(e) => vec![Change::InsertPolicyVersion(policy_version_row(&e.policy))],
    }
}

/// The row of a policy version (also used for the shipped defaults).
pub fn policy_version_row(p: &crate::policy::PolicyVersion) -> PolicyVersionRow {
    PolicyVersionRow {
        policy: p.kind.as_str(),
        version: i32::try_from(p.version).expect("few versions"),
        rate: p.rate.to_string(),
        cap_fen: p.cap.fen(),
        cap_period: p.cap_period.as_str(),
        basis: p.basis.as_str(),
        effective_from: p.effective_from,
        effective_until: p.effective_until,
        source: p.source.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::*;
    use crate::event::Metadata;
    use crate::ids::*;
    use crate::money::Money;

    fn recorded(event: Event, recorded_at: &str) -> RecordedEvent {
        RecordedEvent {
            position: 7,
            stream_id: event.stream_id(),
            stream_version: 1,
            stored_schema_version: event.schema_version(),
            event,
            metadata: Metadata {
                actor: "t".into(),
                role: crate::actor::Role::Registrar,
                organisation_id: None,
                request_id: None,
                idempotency_key: None,
                command: "Test".into(),
                command_id: uuid::Uuid::nil(),
            },
            recorded_at: at(recorded_at),
            hash: [0; 32],
        }
    }

    #[test]
    fn a_payment_is_shown_on_its_asia_shanghai_settlement_date() {
        let (_, e) = payment_settled(ContractId::new_v7(), Money::from_fen(12_345), "2024-12-31T16:30:00Z", "B1");
        let changes = changes(&recorded(e, "2025-01-02T00:00:00Z"));
        let [Change::InsertPayment(row)] = changes.as_slice() else {
            panic!("one payment insert expected: {changes:?}")
        };
        assert_eq!(row.settlement_date, date(2025, 1, 1), "16:30 UTC on 31 Dec is 00:30 on 1 Jan in Shanghai");
        assert_eq!(row.amount_fen, 12_345);
    }

    #[test]
    fn registering_an_organisation_claims_its_credit_code() {
        let (org, events) = university("500106");
        let changes = changes(&recorded(events[0].clone(), "2024-01-01T00:00:00Z"));
        assert_eq!(changes[0], Change::Claim { claim: credit_code_claim(CREDIT_CODE), owner: org.stream() });
    }
}
