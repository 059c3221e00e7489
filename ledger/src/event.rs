//! The ledger's events: facts, named in the past tense, never edited. Each carries the id of
//! the aggregate whose stream it belongs to, so its stream is derived, never guessed.
//!
//! Stored form: `event_type` + `schema_version` + JSON `payload` (the variant's fields).
//! Reading goes through [`crate::upcast`], so old payload shapes keep loading after a change.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::actor::Role;
use crate::codes::{CreditCode, DivisionCode, PatentNumber, RegistrationNumber, Share};
use crate::ids::*;
use crate::money::Money;
use crate::vocabulary::*;

/// A global position in the log: 1, 2, 3 ... gap-free, in commit order.
pub type Position = i64;
/// The version of a stream after an event: 1 for its first event. 0 means "no stream yet".
pub type StreamVersion = i64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganisationRegistered {
    pub organisation_id: OrganisationId,
    pub name: String,
    pub kind: OrganisationKind,
    pub credit_code: CreditCode,
    pub division_code: DivisionCode,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganisationAccredited {
    pub organisation_id: OrganisationId,
    pub accreditation_id: AccreditationId,
    pub kind: AccreditationKind,
    pub effective_from: NaiveDate,
    pub effective_until: Option<NaiveDate>,
    /// 文号 of the accreditation decision.
    pub document_number: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccreditationRevoked {
    pub organisation_id: OrganisationId,
    pub accreditation_id: AccreditationId,
    /// First day on which the accreditation no longer holds.
    pub revoked_from: NaiveDate,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistered {
    pub broker_id: BrokerId,
    pub name: String,
    pub agency_id: Option<OrganisationId>,
    /// 技术经纪人 certificate or 备案 number.
    pub certificate_number: Option<String>,
}

/// One person credited with an achievement (成果完成人) and their share of its subsidy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completer {
    pub name: String,
    pub share: Share,
    /// The completer's resident ID number, sealed in the vault (see `personal`); absent on
    /// listings that did not give one. Old payloads without it read as `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<crate::personal::CompleterIdentity>,
}

impl Completer {
    /// The same person with the same share: equal names, shares and ID fingerprints (a
    /// re-sealed number has a new reference but the same fingerprint).
    pub fn same_as(&self, other: &Completer) -> bool {
        self.name == other.name
            && self.share == other.share
            && self.identity.as_ref().map(|i| &i.fingerprint) == other.identity.as_ref().map(|i| &i.fingerprint)
    }

    pub fn same_list(a: &[Completer], b: &[Completer]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_as(y))
    }
}

/// The listed, revisable facts about an achievement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AchievementDetails {
    pub title: String,
    pub field: TechField,
    pub description: String,
    pub patent_numbers: Vec<PatentNumber>,
    /// Technology readiness level (技术成熟度), 1 to 9.
    pub maturity: u8,
    pub asking_price: Option<Money>,
    pub transfer_modes: Vec<TransferMode>,
    pub completers: Vec<Completer>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AchievementListed {
    pub achievement_id: AchievementId,
    pub owner_id: OrganisationId,
    #[serde(flatten)]
    pub details: AchievementDetails,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AchievementRevised {
    pub achievement_id: AchievementId,
    #[serde(flatten)]
    pub details: AchievementDetails,
}

/// The achievement got its first contract: from here on its completers and shares are fixed,
/// because subsidy lines are split by them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletersLocked {
    pub achievement_id: AchievementId,
    pub contract_id: ContractId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AchievementWithdrawn {
    pub achievement_id: AchievementId,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DemandPosted {
    pub demand_id: DemandId,
    pub enterprise_id: OrganisationId,
    pub title: String,
    pub field: TechField,
    pub description: String,
    pub budget: Option<Money>,
    pub deadline: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DemandClosed {
    pub demand_id: DemandId,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchProposed {
    pub match_id: MatchId,
    pub broker_id: BrokerId,
    pub achievement_id: AchievementId,
    pub demand_id: DemandId,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchAccepted {
    pub match_id: MatchId,
    pub side: MatchSide,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchDeclined {
    pub match_id: MatchId,
    pub side: MatchSide,
    pub reason: String,
}

/// Schema version 2. Version 1 recorded a single `amount`; see `upcast`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractSigned {
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
    /// 合同成交额
    pub contract_amount: Money,
    /// 技术交易额 as declared by the parties (the registry certifies its own figure).
    pub tech_transaction_amount: Money,
    pub signed_on: NaiveDate,
}

/// 认定登记: the registry classified the contract and certified its technology transaction
/// amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractRegistered {
    pub contract_id: ContractId,
    pub registration_number: RegistrationNumber,
    pub registered_on: NaiveDate,
    pub certified_tech_transaction_amount: Money,
    /// The technology field the registry classified the contract under (技术领域), when it
    /// did; statistics fall back to the achievement's field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<TechField>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractAmended {
    pub contract_id: ContractId,
    pub contract_amount: Money,
    pub tech_transaction_amount: Money,
    pub amended_on: NaiveDate,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractTerminated {
    pub contract_id: ContractId,
    pub terminated_on: NaiveDate,
    pub reason: String,
}

/// 到账: money received on a contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentSettled {
    pub contract_id: ContractId,
    pub payment_id: PaymentId,
    pub amount: Money,
    pub settled_at: DateTime<Utc>,
    pub bank_reference: String,
}

/// A refund or bounced transfer taking back (part of) a settled payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentReversed {
    pub contract_id: ContractId,
    pub payment_id: PaymentId,
    pub reversal_id: ReversalId,
    pub amount: Money,
    pub reversed_at: DateTime<Utc>,
    pub reason: String,
}

/// A new version of a policy, enacted by an administrator (see `policy`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyEnacted {
    #[serde(flatten)]
    pub policy: crate::policy::PolicyVersion,
}

/// Every fact the ledger records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    OrganisationRegistered(OrganisationRegistered),
    OrganisationAccredited(OrganisationAccredited),
    AccreditationRevoked(AccreditationRevoked),
    BrokerRegistered(BrokerRegistered),
    AchievementListed(AchievementListed),
    AchievementRevised(AchievementRevised),
    CompletersLocked(CompletersLocked),
    AchievementWithdrawn(AchievementWithdrawn),
    DemandPosted(DemandPosted),
    DemandClosed(DemandClosed),
    MatchProposed(MatchProposed),
    MatchAccepted(MatchAccepted),
    MatchDeclined(MatchDeclined),
    ContractSigned(ContractSigned),
    ContractRegistered(ContractRegistered),
    ContractAmended(ContractAmended),
    ContractTerminated(ContractTerminated),
    PaymentSettled(PaymentSettled),
    PaymentReversed(PaymentReversed),
    PolicyEnacted(PolicyEnacted),
}

/// Why a stored event could not be turned back into an [`Event`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("event type `{0}` is unknown to this version of the ledger")]
    UnknownType(String),
    #[error("{event_type} schema version {version} is newer than this build understands ({current})")]
    FutureVersion { event_type: String, version: i32, current: i32 },
    #[error("{event_type} v{version} payload cannot be upcast: {reason}")]
    Upcast { event_type: String, version: i32, reason: String },
    #[error("{event_type} payload does not match its schema: {source}")]
    Payload { event_type: String, source: serde_json::Error },
}

impl Event {
    /// The stored name of this event's type.
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::OrganisationRegistered(_) => "OrganisationRegistered",
            Event::OrganisationAccredited(_) => "OrganisationAccredited",
            Event::AccreditationRevoked(_) => "AccreditationRevoked",
            Event::BrokerRegistered(_) => "BrokerRegistered",
            Event::AchievementListed(_) => "AchievementListed",
            Event::AchievementRevised(_) => "AchievementRevised",
            Event::CompletersLocked(_) => "CompletersLocked",
            Event::AchievementWithdrawn(_) => "AchievementWithdrawn",
            Event::DemandPosted(_) => "DemandPosted",
            Event::DemandClosed(_) => "DemandClosed",
            Event::MatchProposed(_) => "MatchProposed",
            Event::MatchAccepted(_) => "MatchAccepted",
            Event::MatchDeclined(_) => "MatchDeclined",
            Event::ContractSigned(_) => "ContractSigned",
            Event::ContractRegistered(_) => "ContractRegistered",
            Event::ContractAmended(_) => "ContractAmended",
            Event::ContractTerminated(_) => "ContractTerminated",
            Event::PaymentSettled(_) => "PaymentSettled",
            Event::PaymentReversed(_) => "PaymentReversed",
            Event::PolicyEnacted(_) => "PolicyEnacted",
        }
    }

    /// The schema version this build writes for an event type.
    pub fn current_schema_version(event_type: &str) -> Option<i32> {
        match event_type {
            "ContractSigned" => Some(2),
            "OrganisationRegistered"
            | "OrganisationAccredited"
            | "AccreditationRevoked"
            | "BrokerRegistered"
            | "AchievementListed"
            | "AchievementRevised"
            | "CompletersLocked"
            | "AchievementWithdrawn"
            | "DemandPosted"
            | "DemandClosed"
            | "MatchProposed"
            | "MatchAccepted"
            | "MatchDeclined"
            | "ContractRegistered"
            | "ContractAmended"
            | "ContractTerminated"
            | "PaymentSettled"
            | "PaymentReversed"
            | "PolicyEnacted" => Some(1),
            _ => None,
        }
    }

    pub fn schema_version(&self) -> i32 {
        Event::current_schema_version(self.event_type()).expect("every variant has a schema version")
    }

    /// The stream this event belongs to.
    pub fn stream_id(&self) -> StreamId {
        match self {
            Event::OrganisationRegistered(e) => e.organisation_id.stream(),
            Event::OrganisationAccredited(e) => e.organisation_id.stream(),
            Event::AccreditationRevoked(e) => e.organisation_id.stream(),
            Event::BrokerRegistered(e) => e.broker_id.stream(),
            Event::AchievementListed(e) => e.achievement_id.stream(),
            Event::AchievementRevised(e) => e.achievement_id.stream(),
            Event::CompletersLocked(e) => e.achievement_id.stream(),
            Event::AchievementWithdrawn(e) => e.achievement_id.stream(),
            Event::DemandPosted(e) => e.demand_id.stream(),
            Event::DemandClosed(e) => e.demand_id.stream(),
            Event::MatchProposed(e) => e.match_id.stream(),
            Event::MatchAccepted(e) => e.match_id.stream(),
            Event::MatchDeclined(e) => e.match_id.stream(),
            Event::ContractSigned(e) => e.contract_id.stream(),
            Event::ContractRegistered(e) => e.contract_id.stream(),
            Event::ContractAmended(e) => e.contract_id.stream(),
            Event::ContractTerminated(e) => e.contract_id.stream(),
            Event::PaymentSettled(e) => e.contract_id.stream(),
            Event::PaymentReversed(e) => e.contract_id.stream(),
            Event::PolicyEnacted(e) => e.policy.kind.id().stream(),
        }
    }

    /// The payload as canonical JSON text (keys sorted, no spaces): what is stored and hashed.
    pub fn payload_json(&self) -> String {
        let tagged = serde_json::to_value(self).expect("events always serialise");
        let payload = tagged.get("data").cloned().expect("adjacently tagged events carry data");
        canonical_json(&payload)
    }

    /// Rebuilds an event from its stored parts, upcasting old schema versions first.
    pub fn decode(event_type: &str, schema_version: i32, payload: &str) -> Result<Event, DecodeError> {
        let current =
            Event::current_schema_version(event_type).ok_or_else(|| DecodeError::UnknownType(event_type.to_owned()))?;
        if schema_version > current {
            return Err(DecodeError::FutureVersion {
                event_type: event_type.to_owned(),
                version: schema_version,
                current,
            });
        }
        let payload_error = |source| DecodeError::Payload { event_type: event_type.to_owned(), source };
        if schema_version == current {
            // Nothing to upcast: read the text straight into the variant's struct (a replay
            // decodes every event; going through a `Value` first took about twice as long). A
            // variant missing from this list still decodes, through the `Value` below.
            macro_rules! variant {
                ($($v:ident),* $(,)?) => {
                    match event_type {
                        $(stringify!($v) => Some(serde_json::from_str::<$v>(payload).map(Event::$v)),)*
                        _ => None,
                    }
                };
            }
            let event = variant!(
                OrganisationRegistered,
                OrganisationAccredited,
                AccreditationRevoked,
                BrokerRegistered,
                AchievementListed,
                AchievementRevised,
                CompletersLocked,
                AchievementWithdrawn,
                DemandPosted,
                DemandClosed,
                MatchProposed,
                MatchAccepted,
                MatchDeclined,
                ContractSigned,
                ContractRegistered,
                ContractAmended,
                ContractTerminated,
                PaymentSettled,
                PaymentReversed,
                PolicyEnacted,
            );
            if let Some(event) = event {
                return event.map_err(payload_error);
            }
        }
        let value: serde_json::Value = serde_json::from_str(payload).map_err(payload_error)?;
        let value = crate::upcast::upcast(event_type, schema_version, value)?;
        let tagged = serde_json::json!({ "type": event_type, "data": value });
        serde_json::from_value(tagged).map_err(payload_error)
    }
}

/// Serialises JSON with object keys sorted and no insignificant white space: the bytes that
/// are stored and hashed. Keys are sorted here rather than relying on `serde_json`'s map type,
/// which another crate's `preserve_order` feature could change under us.
pub fn canonical_json(value: &serde_json::Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(key).expect("strings serialise"));
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&serde_json::to_string(scalar).expect("scalars serialise")),
    }
}

/// Who did it and why: stored beside every event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The user (token subject) who issued the command.
    pub actor: String,
    pub role: Role,
    pub organisation_id: Option<OrganisationId>,
    pub request_id: Option<String>,
    pub idempotency_key: Option<String>,
    /// The command that caused the event, and the id shared by all events it appended.
    pub command: String,
    pub command_id: Uuid,
}

/// An event as the log holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    pub position: Position,
    pub stream_id: StreamId,
    pub stream_version: StreamVersion,
    /// The schema version the payload was written with (before upcasting).
    pub stored_schema_version: i32,
    pub event: Event,
    pub metadata: Metadata,
    pub recorded_at: DateTime<Utc>,
    pub hash: [u8; 32],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_canonical_json_with_sorted_keys() {
        let e = Event::DemandClosed(DemandClosed { demand_id: DemandId(Uuid::nil()), reason: "filled".into() });
        assert_eq!(e.payload_json(), r#"{"demand_id":"00000000-0000-0000-0000-000000000000","reason":"filled"}"#);
        let back = Event::decode("DemandClosed", 1, &e.payload_json()).unwrap();
        assert_eq!(back, e);
    }

    /// The upcasting path, kept for old schema versions: through a `Value`.
    fn decode_via_value(event_type: &str, payload: &str) -> Event {
        let value: serde_json::Value = serde_json::from_str(payload).unwrap();
        serde_json::from_value(serde_json::json!({ "type": event_type, "data": value })).unwrap()
    }

    #[test]
    fn current_payloads_decode_straight_into_the_same_events_as_through_a_value() {
        let mut types = std::collections::BTreeSet::new();
        for seed in 0..8 {
            let mut ledger = crate::memory::MemoryLedger::new();
            crate::testkit::play(&mut ledger, &mut crate::testkit::Scenario::new(seed), 400);
            for recorded in &ledger.log {
                let (event_type, payload) = (recorded.event.event_type(), recorded.event.payload_json());
                let direct = Event::decode(event_type, recorded.event.schema_version(), &payload).unwrap();
                assert_eq!(direct, recorded.event, "{event_type} {payload}");
                assert_eq!(direct, decode_via_value(event_type, &payload), "{event_type} {payload}");
                types.insert(event_type);
            }
        }
        assert!(types.len() >= 15, "the scenarios cover most event types: {types:?}");
    }

    #[test]
    fn a_payload_is_one_json_value_of_its_type() {
        let e = Event::DemandClosed(DemandClosed { demand_id: DemandId(Uuid::nil()), reason: "filled".into() });
        let payload = e.payload_json();
        for bad in [format!("{payload},\"x\":1"), format!("{payload} {payload}"), "[]".to_owned()] {
            assert!(matches!(Event::decode("DemandClosed", 1, &bad), Err(DecodeError::Payload { .. })), "{bad}");
        }
    }

    #[test]
    fn unknown_and_future_events_are_decode_errors_not_panics() {
        assert!(matches!(Event::decode("Nope", 1, "{}"), Err(DecodeError::UnknownType(_))));
        assert!(matches!(Event::decode("DemandClosed", 9, "{}"), Err(DecodeError::FutureVersion { .. })));
        assert!(matches!(Event::decode("DemandClosed", 1, "{}"), Err(DecodeError::Payload { .. })));
    }
}
