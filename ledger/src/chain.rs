//! The hash chain over the log: each event's hash is
//! `SHA-256(previous hash || canonical bytes of the event)`, starting from 32 zero bytes.
//! Changing, removing or reordering any stored event changes every hash after it.
//!
//! Canonical bytes, all integers big-endian, every text prefixed by its length (u32) so no
//! two different events can encode alike:
//! `position u64 | stream_version u64 | schema_version u32 | recorded_at µs since epoch i64 |
//!  stream_id | event_type | payload | metadata`.
//! Payload and metadata are the stored canonical JSON text, so verification hashes exactly
//! the bytes in the table.

use sha2::{Digest, Sha256};

use crate::event::{Position, StreamVersion};

pub type Hash = [u8; 32];

/// The "previous hash" of the first event.
pub const GENESIS: Hash = [0; 32];

/// The stored columns of one event that the chain covers. The texts are `str` where events
/// are written, and the stored bytes where verification reads them (it hashes what is in
/// the table, without first checking it is UTF-8).
#[derive(Debug)]
pub struct ChainedFields<'a, T: ?Sized = str> {
    pub position: Position,
    pub stream_id: &'a T,
    pub stream_version: StreamVersion,
    pub event_type: &'a T,
    pub schema_version: i32,
    pub payload: &'a T,
    pub metadata: &'a T,
    pub recorded_at_micros: i64,
}

impl<T: ?Sized> Clone for ChainedFields<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: ?Sized> Copy for ChainedFields<'_, T> {}

pub fn event_hash<T: ?Sized + AsRef<[u8]> + std::fmt::Debug>(previous: &Hash, f: &ChainedFields<'_, T>) -> Hash {
    assert!(f.position > 0 && f.stream_version > 0 && f.schema_version > 0, "chained fields out of range: {f:?}");
    let mut h = Sha256::new();
    h.update(previous);
    h.update((f.position as u64).to_be_bytes());
    h.update((f.stream_version as u64).to_be_bytes());
    h.update((f.schema_version as u32).to_be_bytes());
    h.update(f.recorded_at_micros.to_be_bytes());
    for text in [f.stream_id, f.event_type, f.payload, f.metadata] {
        let text = text.as_ref();
        h.update(u32::try_from(text.len()).expect("stored text is below 4 GiB").to_be_bytes());
        h.update(text);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(payload: &str) -> ChainedFields<'_> {
        ChainedFields {
            position: 1,
            stream_id: "contract-x",
            stream_version: 1,
            event_type: "ContractSigned",
            schema_version: 2,
            payload,
            metadata: "{}",
            recorded_at_micros: 1_700_000_000_000_000,
        }
    }

    #[test]
    fn any_change_to_an_event_or_its_predecessor_changes_the_hash() {
        let base = event_hash(&GENESIS, &fields(r#"{"a":"1.00"}"#));
        assert_ne!(base, event_hash(&GENESIS, &fields(r#"{"a":"1.01"}"#)));
        assert_ne!(base, event_hash(&[1; 32], &fields(r#"{"a":"1.00"}"#)));
        let mut moved = fields(r#"{"a":"1.00"}"#);
        moved.position = 2;
        assert_ne!(base, event_hash(&GENESIS, &moved));
        assert_eq!(base, event_hash(&GENESIS, &fields(r#"{"a":"1.00"}"#)), "deterministic");
    }

    #[test]
    fn length_prefixes_keep_field_boundaries_apart() {
        let mut a = fields("{}");
        a.stream_id = "ab";
        a.event_type = "c";
        let mut b = fields("{}");
        b.stream_id = "a";
        b.event_type = "bc";
        assert_ne!(event_hash(&GENESIS, &a), event_hash(&GENESIS, &b));
    }

    #[test]
    fn stored_bytes_hash_as_the_text_they_hold() {
        let text = fields(r#"{"name":"重庆大学"}"#);
        let bytes = ChainedFields::<[u8]> {
            position: text.position,
            stream_id: text.stream_id.as_bytes(),
            stream_version: text.stream_version,
            event_type: text.event_type.as_bytes(),
            schema_version: text.schema_version,
            payload: text.payload.as_bytes(),
            metadata: text.metadata.as_bytes(),
            recorded_at_micros: text.recorded_at_micros,
        };
        assert_eq!(event_hash(&GENESIS, &bytes), event_hash(&GENESIS, &text));
        // The layout in the module doc, computed independently (Python's hashlib and
        // struct.pack): a change to it would break every stored log.
        assert_eq!(
            hex::encode(event_hash(&GENESIS, &bytes)),
            "0dacbd69eb3572c9d5bd5af1212a966d9e85067f1415336f7a5a4475a86d9f84"
        );
    }
}
