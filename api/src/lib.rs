//! The HTTP + GraphQL server and the `techmarket` command line around the `ledger` crate:
//! configuration, tokens, the GraphQL schema, the spec-compliant HTTP handler, telemetry.

#![forbid(unsafe_code)]

pub mod auth;
pub mod bench;
pub mod config;
pub mod export;
pub mod graphql;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod startup;
pub mod telemetry;
