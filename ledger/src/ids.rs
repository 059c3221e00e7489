//! Typed identifiers of the marketplace's things, and the event streams they own.
//!
//! Ids are UUIDv7 (time-ordered), generated at the edge and carried in commands, so that the
//! domain stays free of randomness and clocks.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// The prefix of this kind's stream ids (`contract-<uuid>`).
            pub const STREAM_PREFIX: &'static str = $prefix;

            pub fn new_v7() -> Self {
                $name(Uuid::now_v7())
            }

            pub fn stream(self) -> StreamId {
                StreamId(format!("{}-{}", $prefix, self.0))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                $name(u)
            }
        }
    };
}

id_type!(
    /// An organisation: university, institute, enterprise, broker agency, operating center.
    OrganisationId, "organisation"
);
id_type!(
    /// A technology broker (技术经纪人).
    BrokerId, "broker"
);
id_type!(
    /// A research achievement (科技成果).
    AchievementId, "achievement"
);
id_type!(
    /// A technology demand (技术需求).
    DemandId, "demand"
);
id_type!(
    /// A broker's match of an achievement with a demand.
    MatchId, "match"
);
id_type!(
    /// A technology contract (技术合同); its payments live in its stream.
    ContractId, "contract"
);

id_type!(
    /// A policy (one fixed id per kind; its stream records the enacted versions).
    PolicyId, "policy"
);

/// An accreditation of an organisation (lives in the organisation's stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccreditationId(pub Uuid);

/// A settled payment (到账) on a contract (lives in the contract's stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PaymentId(pub Uuid);

/// A reversal of (part of) a payment (lives in the contract's stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReversalId(pub Uuid);

impl fmt::Display for AccreditationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
impl fmt::Display for PaymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
impl fmt::Display for ReversalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The id of an event stream: `<kind>-<uuid>`, one stream per aggregate instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StreamId(pub String);

/// What kind of aggregate a stream belongs to, read from its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Organisation,
    Broker,
    Achievement,
    Demand,
    Match,
    Contract,
    Policy,
}

impl StreamId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn kind(&self) -> Option<StreamKind> {
        let (prefix, rest) = self.0.split_once('-')?;
        Uuid::parse_str(rest).ok()?;
        Some(match prefix {
            OrganisationId::STREAM_PREFIX => StreamKind::Organisation,
            BrokerId::STREAM_PREFIX => StreamKind::Broker,
            AchievementId::STREAM_PREFIX => StreamKind::Achievement,
            DemandId::STREAM_PREFIX => StreamKind::Demand,
            MatchId::STREAM_PREFIX => StreamKind::Match,
            ContractId::STREAM_PREFIX => StreamKind::Contract,
            PolicyId::STREAM_PREFIX => StreamKind::Policy,
            _ => return None,
        })
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_carry_their_kind() {
        let c = ContractId::new_v7();
        assert_eq!(c.stream().kind(), Some(StreamKind::Contract));
        assert!(c.stream().as_str().starts_with("contract-"));
        assert_eq!(StreamId("contract-nope".into()).kind(), None);
        assert_eq!(StreamId(format!("unknown-{}", Uuid::nil())).kind(), None);
    }
}
