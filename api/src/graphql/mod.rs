//! The GraphQL schema: one merged query and mutation root per area (marketplace, contracts,
//! ledger), thin resolvers that parse input into commands and call the ledger, and the
//! mapping of every failure to an error with a stable `extensions.code`.
//!
//! Error codes: `VALIDATION_FAILED` (with `field` and `rule`), `RULE_VIOLATED` (with `rule`),
//! `NOT_FOUND`, `ALREADY_EXISTS`, `FORBIDDEN`, `UNAUTHENTICATED`, `IDEMPOTENCY_KEY_REUSED`,
//! `CONFLICT` (retry), `UNAVAILABLE` (retry later), `INTERNAL` (details only in the logs).

pub mod access;
pub mod enums;
pub mod inputs;
pub mod ledger_view;
pub mod market;
pub mod scalars;
pub mod statements;
pub mod types;

use async_graphql::{EmptySubscription, ErrorExtensions, MergedObject, Schema};
use ledger::service::{CommandError, Ledger};
use ledger::store::StoreError;
use ledger::{Actor, DomainError};

#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(market::MarketQuery, market::ContractQuery, ledger_view::LedgerQuery, statements::StatementQuery);

#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(market::MarketMutation, market::ContractMutation, statements::PolicyMutation);

pub type AppSchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

/// Limits on what one request may ask (hostile or careless clients).
#[derive(Debug, Clone, Copy)]
pub struct SchemaLimits {
    pub depth_max: usize,
    pub complexity_max: usize,
    pub introspection: bool,
}

impl Default for SchemaLimits {
    fn default() -> Self {
        SchemaLimits { depth_max: 12, complexity_max: 5_000, introspection: true }
    }
}

pub fn build_schema(ledger: Ledger, vault: ledger::personal::PersonalDataKey, limits: SchemaLimits) -> AppSchema {
    let mut builder = Schema::build(QueryRoot::default(), MutationRoot::default(), EmptySubscription)
        .data(ledger)
        .data(vault)
        .limit_depth(limits.depth_max)
        .limit_complexity(limits.complexity_max);
    if !limits.introspection {
        builder = builder.disable_introspection();
    }
    builder.finish()
}

/// The SDL committed as `schema.graphql`.
pub fn sdl() -> String {
    let schema = Schema::build(QueryRoot::default(), MutationRoot::default(), EmptySubscription).finish();
    schema.sdl()
}

/// Per-request facts the HTTP layer puts into the context.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub actor: Option<Actor>,
    pub request_id: Option<String>,
}

pub(crate) fn ledger<'c>(ctx: &async_graphql::Context<'c>) -> &'c Ledger {
    ctx.data_unchecked::<Ledger>()
}

/// The key that seals and opens personal data.
pub(crate) fn vault<'c>(ctx: &async_graphql::Context<'c>) -> &'c ledger::personal::PersonalDataKey {
    ctx.data_unchecked::<ledger::personal::PersonalDataKey>()
}

/// The caller, if any.
pub(crate) fn caller(ctx: &async_graphql::Context<'_>) -> Option<Actor> {
    ctx.data_opt::<RequestContext>().and_then(|r| r.actor.clone())
}

/// The caller, or an `UNAUTHENTICATED` error.
pub(crate) fn actor(ctx: &async_graphql::Context<'_>) -> async_graphql::Result<Actor> {
    ctx.data_opt::<RequestContext>()
        .and_then(|r| r.actor.clone())
        .ok_or_else(|| error("UNAUTHENTICATED", "this needs a bearer token: send `Authorization: Bearer <token>`"))
}

pub(crate) fn request_id(ctx: &async_graphql::Context<'_>) -> Option<String> {
    ctx.data_opt::<RequestContext>().and_then(|r| r.request_id.clone())
}

pub(crate) fn error(code: &'static str, message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message.into()).extend_with(|_, e| e.set("code", code))
}

/// An internal failure: logged in full, answered without details.
pub(crate) fn internal(detail: impl std::fmt::Display) -> async_graphql::Error {
    tracing::error!(error = %detail, "internal error");
    error("INTERNAL", "internal error; it has been logged")
}

pub(crate) fn store_error(e: StoreError) -> async_graphql::Error {
    if e.is_transient() {
        tracing::warn!(error = %e, "database unavailable");
        return error("UNAVAILABLE", "the database is unavailable; retry shortly");
    }
    internal(e)
}

pub(crate) fn domain_error(e: &DomainError) -> async_graphql::Error {
    if let DomainError::FactNotLoaded(_) = e {
        return internal(e);
    }
    let (code, rule, field) = (e.code(), e.rule().map(str::to_owned), e.field().map(str::to_owned));
    async_graphql::Error::new(e.to_string()).extend_with(move |_, x| {
        x.set("code", code);
        if let Some(rule) = &rule {
            x.set("rule", rule.as_str());
        }
        if let Some(field) = &field {
            x.set("field", field.as_str());
        }
    })
}

pub(crate) fn command_error(e: CommandError) -> async_graphql::Error {
    match e {
        CommandError::Domain(d) => domain_error(&d),
        CommandError::Store(s) => store_error(s),
        other => error(other.code(), other.to_string()),
    }
}
