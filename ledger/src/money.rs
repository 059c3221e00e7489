//! Money in yuan, held as an exact count of fen (0.01 yuan).
//!
//! Amounts are integers in the smallest unit (TigerBeetle's rule): every sum is exact and no
//! float ever touches money. Decimal arithmetic (`rust_decimal`) is used only where a rate is
//! applied, and the result is rounded half-up at the fen, the one rounding DOMAIN.md allows.

use std::fmt;
use std::str::FromStr;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::validation::ValidationError;

/// Fen in one yuan.
pub const FEN_PER_YUAN: i64 = 100;
/// Amounts stay below 10^12 yuan (DOMAIN.md "Money and dates"), that is below 10^14 fen.
pub const AMOUNT_FEN_LIMIT: i64 = 100_000_000_000_000;

/// A signed amount of money in fen. Lines and totals may be negative (a reversal's line);
/// amounts entered by users are checked with [`Money::parse_amount`] and are always positive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(i64);

impl Money {
    pub const ZERO: Money = Money(0);

    pub const fn from_fen(fen: i64) -> Money {
        Money(fen)
    }

    /// Whole yuan, for constants such as caps (`Money::from_yuan(1_000_000)`).
    pub const fn from_yuan(yuan: i64) -> Money {
        Money(yuan * FEN_PER_YUAN)
    }

    pub const fn fen(self) -> i64 {
        self.0
    }

    pub fn is_positive(self) -> bool {
        self.0 > 0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Parses a user-entered amount under the rules of DOMAIN.md: a decimal number of yuan,
    /// positive, with at most two decimals, below 10^12. `field` names the input in the error.
    pub fn parse_amount(field: &str, text: &str) -> Result<Money, ValidationError> {
        crate::validation::amount(field, Money::parse_signed(field, text)?)
    }

    /// Parses a decimal yuan amount that may be zero or negative (totals, lines, filters).
    pub fn parse_signed(field: &str, text: &str) -> Result<Money, ValidationError> {
        let trimmed = text.trim();
        let well_formed = !trimmed.is_empty()
            && trimmed.trim_start_matches('-').chars().all(|c| c.is_ascii_digit() || c == '.')
            && trimmed.trim_start_matches('-').chars().filter(|c| *c == '.').count() <= 1;
        let decimal = match Decimal::from_str(trimmed) {
            Ok(d) if well_formed => d,
            _ => {
                return Err(ValidationError::new(
                    field,
                    "amount_format",
                    format!("`{text}` is not a decimal amount of yuan such as 1234.50"),
                ));
            }
        };
        let fen_decimal = decimal * Decimal::from(FEN_PER_YUAN);
        if !fen_decimal.fract().is_zero() {
            return Err(ValidationError::new(
                field,
                "amount_two_decimals",
                format!("`{text}` has more than two decimals; amounts are whole fen (0.01 yuan)"),
            ));
        }
        let limit = Decimal::from(AMOUNT_FEN_LIMIT);
        if fen_decimal.abs() >= limit {
            return Err(ValidationError::new(field, "amount_below_limit", "must be below 1000000000000 yuan (10^12)"));
        }
        // In range by the check above, so the conversion cannot fail.
        let fen = fen_decimal.to_i64().expect("amount checked to be below 10^14 fen");
        Ok(Money(fen))
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.0.checked_sub(other.0).map(Money)
    }

    /// `self x rate`, rounded half-up at the fen (DOMAIN.md: "round_half_up(R x 5 %, 2)").
    /// Only non-negative bases are ever multiplied: a negative base is a programming error.
    pub fn times_rate_half_up(self, rate: Rate) -> Money {
        assert!(self.0 >= 0, "a rate is applied only to a non-negative basis, got {self}");
        let exact = Decimal::from(self.0) * rate.0;
        let rounded = exact.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
        let fen = rounded.to_i64().expect("a rate of at most 1 keeps the amount in range");
        Money(fen)
    }

    pub fn min(self, other: Money) -> Money {
        if self <= other { self } else { other }
    }

    pub fn to_decimal(self) -> Decimal {
        Decimal::new(self.0, 2)
    }
}

impl std::ops::Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        self.checked_add(rhs).expect("money sum overflowed i64 fen")
    }
}

impl std::ops::Sub for Money {
    type Output = Money;
    fn sub(self, rhs: Money) -> Money {
        self.checked_sub(rhs).expect("money difference overflowed i64 fen")
    }
}

impl std::ops::AddAssign for Money {
    fn add_assign(&mut self, rhs: Money) {
        *self = *self + rhs;
    }
}

impl std::ops::SubAssign for Money {
    fn sub_assign(&mut self, rhs: Money) {
        *self = *self - rhs;
    }
}

impl std::ops::Neg for Money {
    type Output = Money;
    fn neg(self) -> Money {
        Money(-self.0)
    }
}

impl std::iter::Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, |a, b| a + b)
    }
}

impl fmt::Display for Money {
    /// Yuan with exactly two decimals: `1234.50`, `-0.05`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Money, D::Error> {
        let text = String::deserialize(d)?;
        Money::parse_signed("amount", &text).map_err(serde::de::Error::custom)
    }
}

/// A rate such as 5 % (`0.05`), kept exact as a decimal fraction between 0 and 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rate(Decimal);

impl Rate {
    pub fn parse(field: &str, text: &str) -> Result<Rate, ValidationError> {
        let d = Decimal::from_str(text.trim()).map_err(|_| {
            ValidationError::new(field, "rate_format", format!("`{text}` is not a decimal fraction such as 0.05"))
        })?;
        if d < Decimal::ZERO || d > Decimal::ONE {
            return Err(ValidationError::new(field, "rate_range", "must be between 0 and 1 (0.05 means 5 %)"));
        }
        Ok(Rate(d))
    }

    /// Whole percent, for defaults: `Rate::percent(5)` is 0.05.
    pub fn percent(p: u32) -> Rate {
        assert!(p <= 100, "a rate is at most 100 %");
        Rate(Decimal::new(i64::from(p), 2))
    }

    pub fn as_decimal(self) -> Decimal {
        self.0
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.normalize())
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Rate, D::Error> {
        let text = String::deserialize(d)?;
        Rate::parse("rate", &text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_to_exact_fen() {
        let cases = [("0.01", 1), ("1", 100), ("1.5", 150), ("1234.56", 123_456), ("12.300", 1230)];
        for (text, fen) in cases {
            assert_eq!(Money::parse_amount("amount", text).unwrap().fen(), fen, "{text}");
        }
        assert_eq!(Money::parse_amount("amount", "999999999999.99").unwrap().fen(), AMOUNT_FEN_LIMIT - 1);
    }

    #[test]
    fn amounts_that_break_a_rule_are_rejected_with_the_rule_named() {
        let cases = [
            ("0", "amount_positive"),
            ("0.00", "amount_positive"),
            ("-5", "amount_positive"),
            ("0.001", "amount_two_decimals"),
            ("12.345", "amount_two_decimals"),
            ("1000000000000", "amount_below_limit"),
            ("abc", "amount_format"),
            ("1e5", "amount_format"),
            ("", "amount_format"),
            ("1.2.3", "amount_format"),
            ("+5", "amount_format"),
        ];
        for (text, rule) in cases {
            let err = Money::parse_amount("input.amount", text).unwrap_err();
            assert_eq!(err.rule, rule, "{text}");
            assert_eq!(err.field, "input.amount");
        }
    }

    #[test]
    fn display_always_shows_two_decimals() {
        assert_eq!(Money::from_fen(0).to_string(), "0.00");
        assert_eq!(Money::from_fen(5).to_string(), "0.05");
        assert_eq!(Money::from_fen(-5).to_string(), "-0.05");
        assert_eq!(Money::from_fen(123_456).to_string(), "1234.56");
        assert_eq!(Money::from_yuan(1_000_000).to_string(), "1000000.00");
    }

    #[test]
    fn rates_round_half_up_at_the_fen() {
        let five = Rate::percent(5);
        // 0.10 yuan x 5 % = 0.005 -> 0.01 (half up)
        assert_eq!(Money::from_fen(10).times_rate_half_up(five).fen(), 1);
        // 0.09 x 5 % = 0.0045 -> 0.00
        assert_eq!(Money::from_fen(9).times_rate_half_up(five).fen(), 0);
        // 0.30 x 5 % = 0.015 -> 0.02
        assert_eq!(Money::from_fen(30).times_rate_half_up(five).fen(), 2);
        let two = Rate::percent(2);
        // 0.25 x 2 % = 0.005 -> 0.01
        assert_eq!(Money::from_fen(25).times_rate_half_up(two).fen(), 1);
        assert_eq!(Money::from_fen(24).times_rate_half_up(two).fen(), 0);
        assert_eq!(Money::from_yuan(20_000_000).times_rate_half_up(five), Money::from_yuan(1_000_000));
    }

    #[test]
    fn serde_round_trips_as_a_decimal_string() {
        let m = Money::from_fen(123_405);
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, "\"1234.05\"");
        assert_eq!(serde_json::from_str::<Money>(&json).unwrap(), m);
    }
}
