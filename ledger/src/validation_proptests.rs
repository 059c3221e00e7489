//! Property tests of the validators: no input makes them panic; every valid code they
//! generate passes; every single-character change of a valid check-digit code is caught (the
//! weights are prime-modulus checks, which detect all single substitutions); money and shares
//! round-trip through their text.

use proptest::prelude::*;

use crate::codes::*;
use crate::money::{Money, Rate};

const USCC_ALPHABET: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";

fn uscc_check(body: &str) -> char {
    const W: [u32; 17] = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];
    let sum: u32 = body.chars().zip(W).map(|(c, w)| USCC_ALPHABET.find(c).unwrap() as u32 * w).sum();
    USCC_ALPHABET.as_bytes()[((31 - sum % 31) % 31) as usize] as char
}

fn resident_check(body: &str) -> char {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = body.chars().zip(W).map(|(c, w)| c.to_digit(10).unwrap() * w).sum();
    b"10X98765432"[(sum % 11) as usize] as char
}

fn patent_check(digits: &str) -> char {
    const W: [u32; 12] = [2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5];
    let sum: u32 = digits.chars().zip(W).map(|(c, w)| c.to_digit(10).unwrap() * w).sum();
    match sum % 11 {
        10 => 'X',
        r => char::from_digit(r, 10).unwrap(),
    }
}

fn uscc_body() -> impl Strategy<Value = String> {
    ("[0-9A-HJ-NPQRTUWXY]{2}", "50[0-9]{4}", "[0-9A-HJ-NPQRTUWXY]{9}").prop_map(|(a, b, c)| format!("{a}{b}{c}"))
}

fn resident_body() -> impl Strategy<Value = String> {
    ("50[0-9]{4}", 1950i32..2010, 1u32..13, 1u32..29, "[0-9]{3}")
        .prop_map(|(addr, y, m, d, seq)| format!("{addr}{y:04}{m:02}{d:02}{seq}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn no_input_makes_a_validator_panic(text in "\\PC{0,40}") {
        let _ = CreditCode::parse("f", &text);
        let _ = DivisionCode::parse("f", &text);
        let _ = PatentNumber::parse("f", &text);
        let _ = RegistrationNumber::parse("f", &text);
        let _ = ResidentId::parse("f", &text);
        let _ = Share::parse("f", &text);
        let _ = Money::parse_amount("f", &text);
        let _ = Money::parse_signed("f", &text);
        let _ = Rate::parse("f", &text);
    }

    #[test]
    fn valid_credit_codes_pass_and_any_single_substitution_fails(body in uscc_body(), at in 0usize..18, with in 0usize..31) {
        let code = format!("{body}{}", uscc_check(&body));
        prop_assert!(CreditCode::parse("f", &code).is_ok(), "{}", code);
        let mut chars: Vec<char> = code.chars().collect();
        let replacement = USCC_ALPHABET.as_bytes()[with] as char;
        prop_assume!(chars[at] != replacement);
        chars[at] = replacement;
        let changed: String = chars.into_iter().collect();
        prop_assert!(CreditCode::parse("f", &changed).is_err(), "{} accepted after changing position {}", changed, at);
    }

    #[test]
    fn valid_resident_ids_pass_and_any_single_digit_change_fails(body in resident_body(), at in 0usize..17, digit in 0u32..10) {
        let id = format!("{body}{}", resident_check(&body));
        prop_assert!(ResidentId::parse("f", &id).is_ok(), "{}", id);
        prop_assert!(!ResidentId::parse("f", &id).unwrap().masked().contains(&id[6..14]), "the mask hides the birth date");
        let mut chars: Vec<char> = id.chars().collect();
        let replacement = char::from_digit(digit, 10).unwrap();
        prop_assume!(chars[at] != replacement);
        chars[at] = replacement;
        let changed: String = chars.into_iter().collect();
        prop_assert!(ResidentId::parse("f", &changed).is_err(), "{} accepted", changed);
    }

    #[test]
    fn valid_patent_numbers_pass_and_any_single_digit_change_fails(digits in "(19|20)[0-9]{2}[12389][0-9]{7}", at in 0usize..12, digit in 0u32..10) {
        let number = format!("ZL{digits}.{}", patent_check(&digits));
        prop_assert!(PatentNumber::parse("f", &number).is_ok(), "{}", number);
        let mut chars: Vec<char> = digits.chars().collect();
        let replacement = char::from_digit(digit, 10).unwrap();
        prop_assume!(chars[at] != replacement);
        chars[at] = replacement;
        let changed: String = chars.into_iter().collect();
        let tampered = format!("ZL{changed}.{}", patent_check(&digits));
        prop_assert!(PatentNumber::parse("f", &tampered).is_err(), "{} accepted", tampered);
    }

    #[test]
    fn money_round_trips_through_its_text_to_the_fen(fen in -99_999_999_999_999i64..99_999_999_999_999i64) {
        let m = Money::from_fen(fen);
        prop_assert_eq!(Money::parse_signed("f", &m.to_string()).unwrap(), m);
        if fen > 0 {
            prop_assert_eq!(Money::parse_amount("f", &m.to_string()).unwrap(), m);
        } else {
            prop_assert!(Money::parse_amount("f", &m.to_string()).is_err());
        }
    }

    #[test]
    fn shares_round_trip_and_never_exceed_the_whole(bp in 1u32..=10_000) {
        let share = Share::from_basis_points(bp);
        prop_assert_eq!(Share::parse("f", &share.to_string()).unwrap(), share);
    }
}
