//! Why the domain refused a command. Every variant is a rule of the marketplace (or a bad
//! input, or a missing thing, or a caller without the right): never a technical failure, which
//! belongs to the store's error type. Each has a stable `code` (GraphQL `extensions.code`)
//! and, for rule violations, a stable `rule` name.

use crate::money::Money;
use crate::validation::ValidationError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("invalid input: {0}")]
    Invalid(#[from] ValidationError),

    #[error("{what} {id} does not exist")]
    NotFound { what: &'static str, id: String },

    #[error("{what} {id} already exists")]
    AlreadyExists { what: &'static str, id: String },

    #[error("{what} `{value}` is already used by {owner}")]
    AlreadyTaken { what: &'static str, value: String, owner: String },

    #[error("forbidden: {0}")]
    Forbidden(String),

    #[error("{message}")]
    Rule { rule: &'static str, message: String },

    /// The command handler did not load a stream the decision needs: a bug, reported as an
    /// internal error rather than a wrong answer.
    #[error("internal error: stream {0} was needed but not loaded")]
    FactNotLoaded(String),
}

impl DomainError {
    /// The stable machine-readable code for API clients.
    pub fn code(&self) -> &'static str {
        match self {
            DomainError::Invalid(_) => "VALIDATION_FAILED",
            DomainError::NotFound { .. } => "NOT_FOUND",
            DomainError::AlreadyExists { .. } | DomainError::AlreadyTaken { .. } => "ALREADY_EXISTS",
            DomainError::Forbidden(_) => "FORBIDDEN",
            DomainError::Rule { .. } => "RULE_VIOLATED",
            DomainError::FactNotLoaded(_) => "INTERNAL",
        }
    }

    pub fn rule(&self) -> Option<&str> {
        match self {
            DomainError::Rule { rule, .. } => Some(rule),
            DomainError::Invalid(v) => Some(&v.rule),
            _ => None,
        }
    }

    pub fn field(&self) -> Option<&str> {
        match self {
            DomainError::Invalid(v) => Some(&v.field),
            _ => None,
        }
    }

    pub(crate) fn violation(rule: &'static str, message: impl Into<String>) -> DomainError {
        DomainError::Rule { rule, message: message.into() }
    }

    pub(crate) fn not_found(what: &'static str, id: impl ToString) -> DomainError {
        DomainError::NotFound { what, id: id.to_string() }
    }

    pub(crate) fn invalid(field: &str, rule: &str, message: impl Into<String>) -> DomainError {
        DomainError::Invalid(ValidationError::new(field, rule, message))
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> DomainError {
        DomainError::Forbidden(message.into())
    }
}

/// Rules named once, so tests and clients match on the same strings.
pub mod rules {
    pub const SELLER_IS_ACHIEVEMENT_OWNER: &str = "seller_is_achievement_owner";
    pub const ACHIEVEMENT_WITHDRAWN: &str = "achievement_withdrawn";
    pub const DEMAND_CLOSED: &str = "demand_closed";
    pub const COMPLETERS_LOCKED: &str = "completers_locked";
    pub const COMPLETER_SHARES_SUM: &str = "completer_shares_sum_to_100";
    pub const CONTRACT_TERMINATED: &str = "contract_terminated";
    pub const CONTRACT_ALREADY_REGISTERED: &str = "contract_already_registered";
    pub const NET_RECEIVED_WITHIN_CONTRACT_AMOUNT: &str = "net_received_within_contract_amount";
    pub const REVERSAL_WITHIN_PAYMENT: &str = "reversal_within_payment";
    pub const BANK_REFERENCE_UNIQUE: &str = "bank_reference_unique_per_contract";
    pub const TECH_AMOUNT_WITHIN_CONTRACT_AMOUNT: &str = "tech_transaction_amount_within_contract_amount";
    pub const DATE_ORDER: &str = "date_order";
    pub const MATCH_NOT_OPEN: &str = "match_not_open";
    pub const MATCH_SIDE_ALREADY_ANSWERED: &str = "match_side_already_answered";
    pub const MATCH_NOT_ACCEPTED: &str = "match_not_accepted";
    pub const CONTRACT_MATCHES_ITS_MATCH: &str = "contract_matches_its_match";
    pub const DISTINCT_PARTIES: &str = "seller_and_buyer_distinct";
    pub const ALREADY_WITHDRAWN: &str = "already_withdrawn";
    pub const ALREADY_CLOSED: &str = "already_closed";
    pub const ALREADY_TERMINATED: &str = "already_terminated";
    pub const ACCREDITATION_ALREADY_REVOKED: &str = "accreditation_already_revoked";
    pub const ORGANISATION_KIND: &str = "organisation_kind";
}

/// Formats a money figure for messages.
pub(crate) fn in_yuan(m: Money) -> String {
    format!("{m} yuan")
}
