//! Identifiers a real registry validates, each a newtype that can only hold a valid value:
//! unified social credit code (统一社会信用代码, GB 32100-2015), administrative division code
//! (行政区划代码, GB/T 2260), Chinese patent application / patent number (专利申请号 / 专利号),
//! technology-contract registration number (合同登记编号) and completers' shares.
//! The check-digit algorithms are those of DOMAIN-RESEARCH.md section 5.

use std::fmt;

use chrono::Datelike;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::validation::ValidationError;

/// Implements `Display`, `as_str`, and string serde (re-validating on the way in) for a code
/// newtype over `String` with a `parse(field, text)` constructor.
macro_rules! string_code {
    ($ty:ident) => {
        impl $ty {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                let text = String::deserialize(d)?;
                $ty::parse(stringify!($ty), &text).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// Converts full-width ASCII (ＡＢＣ１２３) to half-width and upper-cases: codes copied from
/// Chinese documents often arrive full-width.
fn normalise(text: &str) -> String {
    text.trim()
        .chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .collect::<String>()
        .to_ascii_uppercase()
}

/// 统一社会信用代码: 18 characters over `0-9 A-H J-N P-R T U W-Y`, the last a check character.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CreditCode(String);
string_code!(CreditCode);

const USCC_ALPHABET: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";
const USCC_WEIGHTS: [u32; 17] = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];

impl CreditCode {
    pub fn parse(field: &str, text: &str) -> Result<CreditCode, ValidationError> {
        let code = normalise(text);
        let values: Option<Vec<u32>> = code.chars().map(|c| USCC_ALPHABET.find(c).map(|i| i as u32)).collect();
        let Some(values) = values.filter(|v| v.len() == 18) else {
            return Err(ValidationError::new(
                field,
                "credit_code_format",
                "must be 18 characters of 0-9 and A-Z without I, O, S, V, Z (GB 32100-2015)",
            ));
        };
        if !code[2..8].chars().all(|c| c.is_ascii_digit()) {
            return Err(ValidationError::new(
                field,
                "credit_code_format",
                "characters 3 to 8 must be the registering authority's 6-digit division code",
            ));
        }
        let sum: u32 = values[..17].iter().zip(USCC_WEIGHTS).map(|(v, w)| v * w).sum();
        let expected = (31 - sum % 31) % 31;
        if values[17] != expected {
            let want = USCC_ALPHABET.as_bytes()[expected as usize] as char;
            return Err(ValidationError::new(
                field,
                "credit_code_check",
                format!("check character is wrong (GB 32100-2015 gives `{want}` for these 17 characters)"),
            ));
        }
        Ok(CreditCode(code))
    }
}

/// 行政区划代码 (GB/T 2260): 6 digits whose first two are a province-level code.
/// Historical codes (500234 开县) stay valid: only the province prefix is checked, not the
/// current county list, because old records keep old codes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DivisionCode(String);
string_code!(DivisionCode);

/// Province-level prefixes of GB/T 2260 (including 71 台湾, 81 香港, 82 澳门).
const PROVINCE_PREFIXES: [&str; 34] = [
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41", "42", "43", "44",
    "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65", "71", "81", "82",
];

impl DivisionCode {
    pub fn parse(field: &str, text: &str) -> Result<DivisionCode, ValidationError> {
        let code = normalise(text);
        if code.len() != 6 || !code.chars().all(|c| c.is_ascii_digit()) {
            return Err(ValidationError::new(
                field,
                "division_code_format",
                "must be 6 digits (GB/T 2260), e.g. 500112",
            ));
        }
        if !PROVINCE_PREFIXES.contains(&&code[..2]) {
            return Err(ValidationError::new(
                field,
                "division_code_province",
                format!("`{}` is not a province-level prefix of GB/T 2260 (Chongqing is 50)", &code[..2]),
            ));
        }
        Ok(DivisionCode(code))
    }

    /// Located in Chongqing: the code begins with `50` (DOMAIN.md, completer subsidy eligibility).
    pub fn is_chongqing(&self) -> bool {
        self.0.starts_with("50")
    }
}

/// A Chinese patent application number or patent number (`ZL` + application number), with its
/// check digit: `C = sum(d_i * w_i) mod 11`, 10 written `X` (no "11 -" step).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PatentNumber(String);
string_code!(PatentNumber);

impl PatentNumber {
    pub fn parse(field: &str, text: &str) -> Result<PatentNumber, ValidationError> {
        let code: String = normalise(text).chars().filter(|c| *c != ' ').collect();
        let body = code.strip_prefix("ZL").unwrap_or(&code);
        let Some((digits, check)) = body.split_once('.') else {
            return Err(Self::format_error(field));
        };
        let weights: &[u32] = match digits.len() {
            12 => &[2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5],
            8 => &[2, 3, 4, 5, 6, 7, 8, 9],
            _ => return Err(Self::format_error(field)),
        };
        if !digits.chars().all(|c| c.is_ascii_digit()) || check.len() != 1 {
            return Err(Self::format_error(field));
        }
        let sum: u32 = digits.chars().zip(weights).map(|(c, w)| c.to_digit(10).unwrap_or(0) * w).sum();
        let expected = match sum % 11 {
            10 => 'X',
            r => char::from_digit(r, 10).unwrap_or('?'),
        };
        if !check.starts_with(expected) {
            return Err(ValidationError::new(
                field,
                "patent_number_check",
                format!("check digit of `{code}` is wrong (expected `{expected}`)"),
            ));
        }
        Ok(PatentNumber(code))
    }

    fn format_error(field: &str) -> ValidationError {
        ValidationError::new(
            field,
            "patent_number_format",
            "must look like ZL201710601862.3 or 201710601862.3 (12 or 8 digits, a dot, a check digit)",
        )
    }
}

/// 合同登记编号: 16 digits; the structure is undocumented, so it is kept as an opaque string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegistrationNumber(String);
string_code!(RegistrationNumber);

impl RegistrationNumber {
    pub fn parse(field: &str, text: &str) -> Result<RegistrationNumber, ValidationError> {
        let code = normalise(text);
        if code.len() != 16 || !code.chars().all(|c| c.is_ascii_digit()) {
            return Err(ValidationError::new(
                field,
                "registration_number_format",
                "must be the 16-digit number on the registration certificate",
            ));
        }
        Ok(RegistrationNumber(code))
    }
}

/// 居民身份证号 (GB 11643-1999): 6-digit address code, birth date `YYYYMMDD`, 3-digit
/// sequence, check character (`"10X98765432"[sum(a_i * W_i) mod 11]`, W_i = 2^(17-i) mod 11).
/// Personal data: it is never written to the event log in clear (see `personal`), and shows
/// masked (`500***********1234`) to everyone but finance.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ResidentId(String);

/// Debug never prints the number.
impl fmt::Debug for ResidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResidentId({})", self.masked())
    }
}

const RESIDENT_ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const RESIDENT_ID_CHECK: &[u8; 11] = b"10X98765432";

impl ResidentId {
    pub fn parse(field: &str, text: &str) -> Result<ResidentId, ValidationError> {
        let id = normalise(text);
        let digits = id.get(..17).filter(|d| d.chars().all(|c| c.is_ascii_digit()));
        let (Some(digits), 18) = (digits, id.len()) else {
            return Err(ValidationError::new(
                field,
                "resident_id_format",
                "must be 18 characters: 17 digits and a check digit or X (GB 11643)",
            ));
        };
        if !PROVINCE_PREFIXES.contains(&&id[..2]) {
            return Err(ValidationError::new(
                field,
                "resident_id_address",
                "the first 6 digits must be a GB/T 2260 address code",
            ));
        }
        if chrono::NaiveDate::parse_from_str(&id[6..14], "%Y%m%d").map_or(true, |d| d.year() < 1900) {
            return Err(ValidationError::new(
                field,
                "resident_id_birth_date",
                "digits 7 to 14 must be a real birth date YYYYMMDD",
            ));
        }
        let sum: u32 = digits.chars().zip(RESIDENT_ID_WEIGHTS).map(|(c, w)| c.to_digit(10).unwrap_or(0) * w).sum();
        let expected = RESIDENT_ID_CHECK[(sum % 11) as usize] as char;
        if id.as_bytes()[17] as char != expected {
            return Err(ValidationError::new(field, "resident_id_check", "the check character is wrong (GB 11643)"));
        }
        Ok(ResidentId(id))
    }

    /// `500***********1234`: the province/city prefix and the last four, nothing between.
    pub fn masked(&self) -> String {
        format!("{}{}{}", &self.0[..3], "*".repeat(11), &self.0[14..])
    }

    /// The number in clear, for encryption and for finance only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A completer's share of an achievement, in percent with at most two decimals, held as
/// hundredths of a percent (basis points): 33.33 % is `Share(3333)`, the whole is 10000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Share(u32);

impl Share {
    pub const WHOLE: u32 = 10_000;

    pub fn parse(field: &str, text: &str) -> Result<Share, ValidationError> {
        let invalid =
            || ValidationError::new(field, "share_format", format!("`{text}` is not a percentage such as 33.33"));
        let t = text.trim();
        let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
        if whole.is_empty()
            || whole.len() > 3
            || frac.len() > 2
            || !(whole.chars().chain(frac.chars())).all(|c| c.is_ascii_digit())
        {
            if frac.len() > 2 && frac.chars().all(|c| c.is_ascii_digit()) {
                return Err(ValidationError::new(field, "share_two_decimals", "a share has at most two decimals"));
            }
            return Err(invalid());
        }
        let whole: u32 = whole.parse().map_err(|_| invalid())?;
        let frac: u32 = format!("{frac:0<2}").parse().map_err(|_| invalid())?;
        let bp = whole * 100 + frac;
        if bp == 0 || bp > Share::WHOLE {
            return Err(ValidationError::new(field, "share_range", "a share is greater than 0 and at most 100"));
        }
        Ok(Share(bp))
    }

    pub fn from_basis_points(bp: u32) -> Share {
        assert!(bp > 0 && bp <= Share::WHOLE, "share out of range: {bp}");
        Share(bp)
    }

    pub fn basis_points(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

impl Serialize for Share {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Share {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Share, D::Error> {
        let text = String::deserialize(d)?;
        Share::parse("share", &text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_codes_are_checked_with_gb_32100() {
        assert_eq!(CreditCode::parse("c", "91110000600037341L").unwrap().as_str(), "91110000600037341L");
        // Full-width and lower case are normalised before checking.
        assert!(CreditCode::parse("c", "９１110000600037341l").is_ok());
        assert_eq!(CreditCode::parse("c", "91110000600037341M").unwrap_err().rule, "credit_code_check");
        assert_eq!(CreditCode::parse("c", "91110000600037341").unwrap_err().rule, "credit_code_format");
        assert_eq!(CreditCode::parse("c", "9111000060003734IL").unwrap_err().rule, "credit_code_format");
    }

    #[test]
    fn division_codes_need_six_digits_and_a_province_prefix() {
        assert!(DivisionCode::parse("d", "500112").unwrap().is_chongqing());
        assert!(DivisionCode::parse("d", "500234").unwrap().is_chongqing(), "historical 开县 stays valid");
        assert!(!DivisionCode::parse("d", "110105").unwrap().is_chongqing());
        assert_eq!(DivisionCode::parse("d", "50011").unwrap_err().rule, "division_code_format");
        assert_eq!(DivisionCode::parse("d", "990000").unwrap_err().rule, "division_code_province");
    }

    #[test]
    fn patent_numbers_check_the_mod_11_digit() {
        for ok in ["ZL201710601862.3", "201710601862.3", "200710308494.X", "95115608.X", "zl 2017 1 0601862.3"] {
            assert!(PatentNumber::parse("p", ok).is_ok(), "{ok}");
        }
        assert_eq!(PatentNumber::parse("p", "ZL201710601862.4").unwrap_err().rule, "patent_number_check");
        assert_eq!(PatentNumber::parse("p", "ZL20171060186.3").unwrap_err().rule, "patent_number_format");
        assert_eq!(PatentNumber::parse("p", "CN110569471A").unwrap_err().rule, "patent_number_format");
    }

    #[test]
    fn registration_numbers_are_sixteen_digits() {
        assert!(RegistrationNumber::parse("r", "2025500112000123").is_ok());
        assert_eq!(RegistrationNumber::parse("r", "202550011200012").unwrap_err().rule, "registration_number_format");
        assert_eq!(RegistrationNumber::parse("r", "20255001120001A3").unwrap_err().rule, "registration_number_format");
    }

    #[test]
    fn resident_ids_are_checked_with_gb_11643_and_shown_masked() {
        let id = ResidentId::parse("idNumber", "360426199101010071").unwrap();
        assert_eq!(id.masked(), "360***********0071");
        assert!(!format!("{id:?}").contains("19910101"), "Debug never shows the number");
        assert!(ResidentId::parse("idNumber", "11010519491231002x").is_ok(), "lower-case x is normalised");
        assert_eq!(ResidentId::parse("idNumber", "360426199101010072").unwrap_err().rule, "resident_id_check");
        assert_eq!(ResidentId::parse("idNumber", "360426199113010071").unwrap_err().rule, "resident_id_birth_date");
        assert_eq!(ResidentId::parse("idNumber", "990426199101010071").unwrap_err().rule, "resident_id_address");
        assert_eq!(ResidentId::parse("idNumber", "36042619910101007").unwrap_err().rule, "resident_id_format");
    }

    #[test]
    fn shares_are_percentages_with_two_decimals() {
        assert_eq!(Share::parse("s", "33.33").unwrap().basis_points(), 3333);
        assert_eq!(Share::parse("s", "100").unwrap().basis_points(), 10_000);
        assert_eq!(Share::parse("s", "0.5").unwrap().basis_points(), 50);
        assert_eq!(Share::parse("s", "33.333").unwrap_err().rule, "share_two_decimals");
        assert_eq!(Share::parse("s", "0").unwrap_err().rule, "share_range");
        assert_eq!(Share::parse("s", "100.01").unwrap_err().rule, "share_range");
        assert_eq!(Share::parse("s", "-1").unwrap_err().rule, "share_format");
        assert_eq!(Share::parse("s", "33.33").unwrap().to_string(), "33.33");
    }
}
