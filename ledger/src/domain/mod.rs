//! The marketplace's aggregates and their decisions.
//!
//! Deciding is pure and synchronous (esrs, disintegrate): the shell loads the streams a
//! command needs into [`Facts`], asks [`streams_needed`] until nothing is missing, then calls
//! [`decide`], which returns the events to append or a [`DomainError`]. Folding a stream into
//! an aggregate's state ([`fold`]) has no business logic in it; it only asserts invariants.
//!
//! The streams read form the decision's consistency boundary: the append is made with the
//! version of every stream in the facts, so a concurrent change to any of them (an achievement
//! withdrawn while a contract on it is being signed) turns into a retry, never a stale decision.

pub mod achievement;
pub mod broker;
pub mod contract;
pub mod demand;
pub mod matching;
pub mod organisation;
pub mod policy;

use std::collections::HashMap;

use crate::actor::Actor;
use crate::command::Command;
use crate::error::DomainError;
use crate::event::{Event, StreamVersion};
use crate::ids::*;

pub use achievement::Achievement;
pub use broker::Broker;
pub use contract::Contract;
pub use demand::Demand;
pub use matching::Match;
pub use organisation::Organisation;
pub use policy::Policy;

/// The state of one aggregate, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AggregateState {
    Organisation(Organisation),
    Broker(Broker),
    Achievement(Achievement),
    Demand(Demand),
    Match(Match),
    Contract(Contract),
    Policy(Policy),
}

/// A stream as loaded for a decision: its version and its folded state (`None`: no stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub version: StreamVersion,
    pub state: Option<AggregateState>,
}

/// The streams a decision reads.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    streams: HashMap<StreamId, Loaded>,
}

macro_rules! fact_getter {
    ($fn:ident, $id:ty, $variant:ident, $ty:ty) => {
        /// The aggregate, or `None` when its stream is empty. An error only when the stream
        /// was never loaded (a bug in `streams_needed`).
        pub fn $fn(&self, id: $id) -> Result<Option<&$ty>, DomainError> {
            match self.get(&id.stream())? {
                None => Ok(None),
                Some(AggregateState::$variant(s)) => Ok(Some(s)),
                Some(_) => unreachable!("a stream's prefix fixes its aggregate kind"),
            }
        }
    };
}

impl Facts {
    pub fn new() -> Facts {
        Facts::default()
    }

    pub fn insert(&mut self, stream: StreamId, loaded: Loaded) {
        self.streams.insert(stream, loaded);
    }

    /// Folds `events` (the whole stream, in order) and records the result.
    pub fn insert_events(&mut self, stream: StreamId, events: &[Event]) {
        let version = StreamVersion::try_from(events.len()).expect("stream length fits i64");
        let state = fold(&stream, events);
        self.streams.insert(stream, Loaded { version, state });
    }

    pub fn is_loaded(&self, stream: &StreamId) -> bool {
        self.streams.contains_key(stream)
    }

    /// Every stream read, with the version the decision saw: the append's expectations.
    pub fn versions(&self) -> Vec<(StreamId, StreamVersion)> {
        let mut v: Vec<_> = self.streams.iter().map(|(s, l)| (s.clone(), l.version)).collect();
        v.sort();
        v
    }

    fn get(&self, stream: &StreamId) -> Result<Option<&AggregateState>, DomainError> {
        self.streams.get(stream).map(|l| l.state.as_ref()).ok_or_else(|| DomainError::FactNotLoaded(stream.to_string()))
    }

    fact_getter!(organisation, OrganisationId, Organisation, Organisation);
    fact_getter!(broker, BrokerId, Broker, Broker);
    fact_getter!(achievement, AchievementId, Achievement, Achievement);
    fact_getter!(demand, DemandId, Demand, Demand);
    fact_getter!(match_, MatchId, Match, Match);
    fact_getter!(contract, ContractId, Contract, Contract);
    fact_getter!(policy, PolicyId, Policy, Policy);
}

/// Folds a whole stream into its aggregate's state.
pub fn fold(stream: &StreamId, events: &[Event]) -> Option<AggregateState> {
    let mut state: Option<AggregateState> = None;
    for event in events {
        assert_eq!(&event.stream_id(), stream, "event {} filed in the wrong stream", event.event_type());
        evolve(&mut state, event);
    }
    state
}

/// Applies one event to an aggregate's state.
pub fn evolve(state: &mut Option<AggregateState>, event: &Event) {
    use AggregateState as S;
    macro_rules! step {
        ($variant:ident, $module:ident) => {{
            let mut inner = match state.take() {
                None => None,
                Some(S::$variant(s)) => Some(s),
                Some(_) => unreachable!("a stream's prefix fixes its aggregate kind"),
            };
            $module::evolve(&mut inner, event);
            *state = inner.map(S::$variant);
        }};
    }
    match event.stream_id().kind().expect("events derive well-formed stream ids") {
        StreamKind::Organisation => step!(Organisation, organisation),
        StreamKind::Broker => step!(Broker, broker),
        StreamKind::Achievement => step!(Achievement, achievement),
        StreamKind::Demand => step!(Demand, demand),
        StreamKind::Match => step!(Match, matching),
        StreamKind::Contract => step!(Contract, contract),
        StreamKind::Policy => step!(Policy, policy),
    }
}

/// The streams `command` needs that are not loaded yet. The shell loads them and asks again
/// (a match's demand is known only once the match is loaded), until this is empty.
pub fn streams_needed(command: &Command, facts: &Facts) -> Vec<StreamId> {
    let mut wanted: Vec<StreamId> = match command {
        Command::RegisterOrganisation(c) => vec![c.organisation_id.stream()],
        Command::AccreditOrganisation(c) => vec![c.organisation_id.stream()],
        Command::RevokeAccreditation(c) => vec![c.organisation_id.stream()],
        Command::RegisterBroker(c) => {
            let mut v = vec![c.broker_id.stream()];
            v.extend(c.agency_id.map(OrganisationId::stream));
            v
        }
        Command::ListAchievement(c) => vec![c.achievement_id.stream(), c.owner_id.stream()],
        Command::ReviseAchievement(c) => vec![c.achievement_id.stream()],
        Command::WithdrawAchievement(c) => vec![c.achievement_id.stream()],
        Command::PostDemand(c) => vec![c.demand_id.stream(), c.enterprise_id.stream()],
        Command::CloseDemand(c) => vec![c.demand_id.stream()],
        Command::ProposeMatch(c) => {
            vec![c.match_id.stream(), c.broker_id.stream(), c.achievement_id.stream(), c.demand_id.stream()]
        }
        Command::AcceptMatch(c) => matching::streams_for_answer(c.match_id, facts),
        Command::DeclineMatch(c) => matching::streams_for_answer(c.match_id, facts),
        Command::SignContract(c) => contract::streams_for_signing(c, facts),
        Command::RegisterContract(c) => vec![c.contract_id.stream()],
        Command::AmendContract(c) => vec![c.contract_id.stream()],
        Command::TerminateContract(c) => vec![c.contract_id.stream()],
        Command::RecordPayment(c) => vec![c.contract_id.stream()],
        Command::ReversePayment(c) => vec![c.contract_id.stream()],
        Command::EnactPolicy(c) => vec![c.kind.id().stream()],
    };
    wanted.retain(|s| !facts.is_loaded(s));
    wanted.sort();
    wanted.dedup();
    wanted
}

/// Decides `command` on behalf of `actor` against `facts`: the events to append, or why not.
pub fn decide(command: &Command, actor: &Actor, facts: &Facts) -> Result<Vec<Event>, DomainError> {
    let events = match command {
        Command::RegisterOrganisation(c) => organisation::register(c, actor, facts)?,
        Command::AccreditOrganisation(c) => organisation::accredit(c, actor, facts)?,
        Command::RevokeAccreditation(c) => organisation::revoke(c, actor, facts)?,
        Command::RegisterBroker(c) => broker::register(c, actor, facts)?,
        Command::ListAchievement(c) => achievement::list(c, actor, facts)?,
        Command::ReviseAchievement(c) => achievement::revise(c, actor, facts)?,
        Command::WithdrawAchievement(c) => achievement::withdraw(c, actor, facts)?,
        Command::PostDemand(c) => demand::post(c, actor, facts)?,
        Command::CloseDemand(c) => demand::close(c, actor, facts)?,
        Command::ProposeMatch(c) => matching::propose(c, actor, facts)?,
        Command::AcceptMatch(c) => matching::accept(c, actor, facts)?,
        Command::DeclineMatch(c) => matching::decline(c, actor, facts)?,
        Command::SignContract(c) => contract::sign(c, actor, facts)?,
        Command::RegisterContract(c) => contract::register(c, actor, facts)?,
        Command::AmendContract(c) => contract::amend(c, actor, facts)?,
        Command::TerminateContract(c) => contract::terminate(c, actor, facts)?,
        Command::RecordPayment(c) => contract::record_payment(c, actor, facts)?,
        Command::ReversePayment(c) => contract::reverse_payment(c, actor, facts)?,
        Command::EnactPolicy(c) => policy::enact(c, actor, facts)?,
    };
    // Every decision either refuses or records something, and only in streams it read.
    assert!(!events.is_empty(), "{} decided to record nothing", command.name());
    for event in &events {
        assert!(facts.is_loaded(&event.stream_id()), "{} wrote to a stream it did not read", command.name());
    }
    Ok(events)
}

/// Refuses with `Forbidden` unless `allowed`.
pub(crate) fn authorize(allowed: bool, actor: &Actor, what: &str) -> Result<(), DomainError> {
    if allowed { Ok(()) } else { Err(DomainError::forbidden(format!("a {} user may not {what}", actor.role.as_str()))) }
}

#[cfg(test)]
pub(crate) mod testing;
