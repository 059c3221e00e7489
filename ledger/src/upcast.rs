//! Upcasting: turning a stored payload of an older schema version into the current shape,
//! one version step at a time, on every read. The log itself is never rewritten (its hash
//! chain covers the bytes as written); only the reader learns the old shapes.
//!
//! History of schema changes:
//! - `ContractSigned` v1 -> v2: v1 recorded one `amount` (the contract amount, 合同成交额).
//!   v2 keeps the contract amount and the technology transaction amount (技术交易额) apart,
//!   because the turnover statistics report both. A v1 contract declared no non-technical
//!   costs, so its technology transaction amount is its whole amount.

use serde_json::Value;

use crate::event::DecodeError;

/// Brings `payload` from `version` up to the current schema version of `event_type`.
pub fn upcast(event_type: &str, version: i32, payload: Value) -> Result<Value, DecodeError> {
    let mut version = version;
    let mut payload = payload;
    loop {
        payload = match (event_type, version) {
            ("ContractSigned", 1) => contract_signed_v1_to_v2(payload).map_err(|reason| DecodeError::Upcast {
                event_type: event_type.to_owned(),
                version,
                reason,
            })?,
            _ => return Ok(payload),
        };
        version += 1;
    }
}

fn contract_signed_v1_to_v2(payload: Value) -> Result<Value, String> {
    let Value::Object(mut map) = payload else {
        return Err("payload is not a JSON object".into());
    };
    let amount = map.remove("amount").ok_or("v1 payload has no `amount`")?;
    map.insert("contract_amount".into(), amount.clone());
    map.insert("tech_transaction_amount".into(), amount);
    Ok(Value::Object(map))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::money::Money;

    /// A v1 `ContractSigned`, exactly as the first schema wrote it.
    const CONTRACT_SIGNED_V1: &str = r#"{"achievement_id":null,"amount":"250000.00","broker_id":null,"buyer_id":"0190e9a0-0000-7000-8000-000000000002","contract_id":"0190e9a0-0000-7000-8000-000000000003","contract_number":"HT-2019-007","contract_type":"transfer","match_id":null,"operating_center_id":null,"seller_id":"0190e9a0-0000-7000-8000-000000000001","signed_on":"2019-06-30","title":"专利转让"}"#;

    #[test]
    fn contract_signed_v1_reads_as_v2_with_tech_amount_equal_to_contract_amount() {
        let Event::ContractSigned(signed) = Event::decode("ContractSigned", 1, CONTRACT_SIGNED_V1).unwrap() else {
            panic!("decoded to another event type");
        };
        assert_eq!(signed.contract_amount, Money::from_yuan(250_000));
        assert_eq!(signed.tech_transaction_amount, Money::from_yuan(250_000));
        assert_eq!(signed.contract_number, "HT-2019-007");
    }

    #[test]
    fn a_v1_payload_without_amount_is_an_upcast_error() {
        let broken = CONTRACT_SIGNED_V1.replace("\"amount\"", "\"amount_typo\"");
        let err = Event::decode("ContractSigned", 1, &broken).unwrap_err();
        assert!(matches!(err, DecodeError::Upcast { version: 1, .. }), "{err}");
    }

    #[test]
    fn current_payloads_pass_through_unchanged() {
        let v2 = upcast("ContractSigned", 2, serde_json::json!({"contract_amount": "1.00"})).unwrap();
        assert_eq!(v2, serde_json::json!({"contract_amount": "1.00"}));
    }
}
