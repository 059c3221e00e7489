//! Who may read what. Writes are authorized by the domain (every command decides its own
//! caller); reads are decided here, in one place:
//! - the marketplace (organisations, brokers, achievements, demands) is public;
//! - contracts, payments and matches are visible to their parties (seller, buyer, operating
//!   center, the achievement's owner and the demand's enterprise, the broker) and to the
//!   registrar, finance and administrators;
//! - statements are for finance and administrators; an achievement's own subsidy also for
//!   its owner's staff;
//! - the raw event log is for the registrar, finance and administrators.

use async_graphql::{Context, Result};
use ledger::{Actor, Role};

use super::{actor, error};

/// How far a caller sees into deals (contracts, payments, matches).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    All,
    /// Deals this organisation is a party to.
    Organisation(String),
    /// Deals of this broker.
    Broker(String),
}

/// The caller's reach into deals, or FORBIDDEN when the token names no organisation or broker.
pub fn deal_reach(ctx: &Context<'_>) -> Result<Reach> {
    let a = actor(ctx)?;
    match a.role {
        Role::Registrar | Role::Finance | Role::Admin => Ok(Reach::All),
        Role::Broker => a
            .broker_id
            .map(|b| Reach::Broker(b.to_string()))
            .ok_or_else(|| forbidden(&a, "see deals without a broker id")),
        Role::ResearchInstitution | Role::Enterprise | Role::OperatingCenter => a
            .organisation_id
            .map(|o| Reach::Organisation(o.to_string()))
            .ok_or_else(|| forbidden(&a, "see deals without an organisation")),
    }
}

impl Reach {
    /// Whether a contract with these parties is within reach.
    pub fn covers_contract(&self, parties: &[Option<&str>], broker: Option<&str>) -> bool {
        match self {
            Reach::All => true,
            Reach::Organisation(o) => parties.contains(&Some(o.as_str())),
            Reach::Broker(b) => broker == Some(b.as_str()),
        }
    }

    pub fn organisation(&self) -> Option<String> {
        match self {
            Reach::Organisation(o) => Some(o.clone()),
            _ => None,
        }
    }

    pub fn broker(&self) -> Option<String> {
        match self {
            Reach::Broker(b) => Some(b.clone()),
            _ => None,
        }
    }
}

/// The caller, if their role is one of `roles`.
pub fn require_role(ctx: &Context<'_>, roles: &[Role], what: &str) -> Result<Actor> {
    let a = actor(ctx)?;
    if roles.contains(&a.role) { Ok(a) } else { Err(forbidden(&a, what)) }
}

pub fn forbidden(a: &Actor, what: &str) -> async_graphql::Error {
    error("FORBIDDEN", format!("a {} user may not {what}", a.role.as_str()))
}

/// Statements: finance and administrators.
pub const STATEMENT_READERS: &[Role] = &[Role::Finance, Role::Admin];
/// The raw event log: the registrar, finance and administrators.
pub const LOG_READERS: &[Role] = &[Role::Registrar, Role::Finance, Role::Admin];
