//! The technology-transfer marketplace's ledger: the domain (events, aggregates, decisions),
//! the event store on SQLite and PostgreSQL, the read models and the policy projections.
//! Nothing here speaks HTTP; the `api` crate is a thin shell around it.
//!
//! Shape (cqrs-es / esrs): aggregates decide (`domain::decide`: command + facts -> events or a
//! typed error) and fold (`domain::evolve`); projections fold events into read-model changes;
//! neither touches a database or the clock. The store is the I/O shell around them.

#![forbid(unsafe_code)]

pub mod actor;
pub mod chain;
pub mod codes;
pub mod command;
pub mod domain;
pub mod error;
pub mod event;
pub mod ids;
pub mod memory;
pub mod money;
pub mod personal;
pub mod policy;
pub mod projection;
pub mod readmodel;
pub mod reports;
pub mod service;
pub mod state_cache;
pub mod statement;
pub mod store;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod time;
pub mod upcast;
pub mod validation;
#[cfg(test)]
mod validation_proptests;
pub mod vocabulary;

pub use actor::{Actor, Role};
pub use error::DomainError;
pub use event::{Event, Position, RecordedEvent, StreamVersion};
pub use money::Money;
