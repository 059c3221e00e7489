//! Input validation: the error that names a field and the rule it broke, and the small
//! checks (text lengths, required text) that every command shares.
//!
//! Parse, don't validate: commands carry already-checked domain types (`Money`, `CreditCode`,
//! `Share` ...), so a value that exists has passed these rules.

use serde::{Deserialize, Serialize};

/// A rule an input broke: which field (as the API spells it), a stable rule code for programs,
/// and a sentence for people saying what is expected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: String,
    pub rule: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, rule: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError { field: field.into(), rule: rule.into(), message: message.into() }
    }
}

/// Limits on free text, in characters (not bytes: titles are Chinese).
pub const NAME_CHARS_MAX: usize = 200;
pub const TITLE_CHARS_MAX: usize = 300;
pub const DESCRIPTION_CHARS_MAX: usize = 20_000;
pub const REFERENCE_CHARS_MAX: usize = 64;
pub const REASON_CHARS_MAX: usize = 2_000;

/// Trims `text` and checks it is present and at most `chars_max` characters long.
pub fn required_text(field: &str, text: &str, chars_max: usize) -> Result<String, ValidationError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(ValidationError::new(field, "required", "must not be empty"));
    }
    bounded_text(field, trimmed, chars_max)
}

/// Checks optional free text (may be empty) against a length limit; trims it.
pub fn bounded_text(field: &str, text: &str, chars_max: usize) -> Result<String, ValidationError> {
    let trimmed = text.trim();
    let chars = trimmed.chars().count();
    if chars > chars_max {
        return Err(ValidationError::new(
            field,
            "max_length",
            format!("must be at most {chars_max} characters, got {chars}"),
        ));
    }
    if trimmed.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ValidationError::new(field, "no_control_characters", "must not contain control characters"));
    }
    Ok(trimmed.to_owned())
}

/// An amount a user states (contract amount, payment, reversal, price, budget): positive and
/// below 10^12 yuan (DOMAIN.md "Money and dates").
pub fn amount(field: &str, money: crate::money::Money) -> Result<crate::money::Money, ValidationError> {
    if !money.is_positive() {
        return Err(ValidationError::new(field, "amount_positive", "must be greater than 0.00 yuan"));
    }
    if money.fen() >= crate::money::AMOUNT_FEN_LIMIT {
        return Err(ValidationError::new(field, "amount_below_limit", "must be below 1000000000000 yuan (10^12)"));
    }
    Ok(money)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_text_is_trimmed_and_bounded_in_characters_not_bytes() {
        assert_eq!(required_text("title", "  重庆  ", 2).unwrap(), "重庆");
        assert_eq!(required_text("title", "   ", 10).unwrap_err().rule, "required");
        let err = required_text("title", "重庆市", 2).unwrap_err();
        assert_eq!((err.field.as_str(), err.rule.as_str()), ("title", "max_length"));
        assert_eq!(bounded_text("note", "a\u{0}b", 10).unwrap_err().rule, "no_control_characters");
        assert_eq!(bounded_text("note", "", 10).unwrap(), "");
    }
}
