//! GraphQL scalars for the domain's values: `Money` (yuan as a decimal string, never a
//! float), `Date` (an Asia/Shanghai calendar date) and `Position` (a place in the log).

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use chrono::NaiveDate;
use serde::Serialize;

/// An amount of yuan with two decimals, as a string: `"1234.50"`. Strings, because JSON
/// numbers are floats in most clients and money must stay exact to the fen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money(pub ledger::Money);

#[Scalar(name = "Money")]
impl ScalarType for Money {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => ledger::Money::parse_signed("amount", s)
                .map(Money)
                .map_err(|e| InputValueError::custom(format!("{} ({})", e.message, e.rule))),
            _ => Err(InputValueError::custom("an amount is a string of yuan such as \"1234.50\", not a number")),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

impl Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl From<i64> for Money {
    fn from(fen: i64) -> Money {
        Money(ledger::Money::from_fen(fen))
    }
}

/// A calendar date, `YYYY-MM-DD`, in China Standard Time (Asia/Shanghai).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Date(pub NaiveDate);

#[Scalar(name = "Date")]
impl ScalarType for Date {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(Date)
                .map_err(|_| InputValueError::custom(format!("`{s}` is not a date in the form YYYY-MM-DD"))),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.format("%Y-%m-%d").to_string())
    }
}

impl Serialize for Date {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0.format("%Y-%m-%d"))
    }
}

/// A global position in the event log (1, 2, 3 ...), as a JSON number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position(pub i64);

#[Scalar(name = "Position")]
impl ScalarType for Position {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::Number(n) => match n.as_i64() {
                Some(p) if p >= 0 => Ok(Position(p)),
                _ => Err(InputValueError::custom("a position is a whole number, 0 or more")),
            },
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::Number(self.0.into())
    }
}

impl Serialize for Position {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.0)
    }
}
