//! Personal data: completers' resident ID numbers (居民身份证号).
//!
//! The event log never holds a number in clear. An event names the completer's identity by
//! a random reference, the masked number and a keyed fingerprint (HMAC), so the same person
//! can be recognised across achievements without decrypting anything. The number itself is
//! sealed (ChaCha20-Poly1305, the reference as associated data) into the `personal_data`
//! table, written in the same transaction as the event. A dump of the database shows
//! ciphertext only, and deleting a vault row erases the number without touching the hash
//! chain. The key comes from configuration, never from the database.

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use crate::codes::ResidentId;

/// How a completer's ID number appears in events and read models.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CompleterIdentity {
    /// The vault row holding the sealed number.
    pub reference: Uuid,
    /// e.g. `500***********1234`.
    pub masked: String,
    /// Hex HMAC-SHA256 of the number under the vault key (first 16 bytes).
    pub fingerprint: String,
}

/// A sealed number, as stored in the vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalDataRow {
    pub reference: Uuid,
    /// Which key sealed it (for rotation).
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PersonalDataError {
    #[error("personal data {0} was sealed with key `{1}`, which this server does not have")]
    UnknownKey(Uuid, String),
    #[error("personal data {0} cannot be opened: wrong key or altered ciphertext")]
    Unreadable(Uuid),
}

/// The vault key: encryption and fingerprint keys derived from one configured secret.
#[derive(Clone)]
pub struct PersonalDataKey {
    cipher: ChaCha20Poly1305,
    fingerprint_key: [u8; 32],
    key_id: String,
}

impl std::fmt::Debug for PersonalDataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PersonalDataKey({})", self.key_id)
    }
}

fn derive(secret: &[u8], purpose: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(purpose);
    mac.finalize().into_bytes().into()
}

impl PersonalDataKey {
    /// Derives the keys from `secret` (at least 32 bytes of configuration).
    pub fn from_secret(secret: &[u8]) -> PersonalDataKey {
        assert!(secret.len() >= 32, "a vault secret has at least 32 bytes");
        let encryption = derive(secret, b"techmarket personal data encryption v1");
        let key_id = hex::encode(&derive(secret, b"techmarket personal data key id v1")[..4]);
        PersonalDataKey {
            cipher: ChaCha20Poly1305::new(&Key::from(encryption)),
            fingerprint_key: derive(secret, b"techmarket personal data fingerprint v1"),
            key_id,
        }
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The keyed fingerprint of a number: equal numbers, equal fingerprints.
    pub fn fingerprint(&self, id: &ResidentId) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.fingerprint_key).expect("any key length");
        mac.update(id.expose().as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// Seals a number: the identity for the event, and the row for the vault.
    pub fn seal(&self, id: &ResidentId) -> (CompleterIdentity, PersonalDataRow) {
        let reference = Uuid::now_v7();
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = self
            .cipher
            .encrypt(&nonce, Payload { msg: id.expose().as_bytes(), aad: reference.as_bytes() })
            .expect("encrypting a short message cannot fail");
        (
            CompleterIdentity { reference, masked: id.masked(), fingerprint: self.fingerprint(id) },
            PersonalDataRow { reference, key_id: self.key_id.clone(), nonce: nonce.to_vec(), ciphertext },
        )
    }

    /// Opens a vault row (for finance).
    pub fn open(&self, row: &PersonalDataRow) -> Result<ResidentId, PersonalDataError> {
        if row.key_id != self.key_id {
            return Err(PersonalDataError::UnknownKey(row.reference, row.key_id.clone()));
        }
        let nonce: [u8; 12] =
            row.nonce.as_slice().try_into().map_err(|_| PersonalDataError::Unreadable(row.reference))?;
        let clear = self
            .cipher
            .decrypt(&Nonce::from(nonce), Payload { msg: &row.ciphertext, aad: row.reference.as_bytes() })
            .map_err(|_| PersonalDataError::Unreadable(row.reference))?;
        let text = String::from_utf8(clear).map_err(|_| PersonalDataError::Unreadable(row.reference))?;
        ResidentId::parse("idNumber", &text).map_err(|_| PersonalDataError::Unreadable(row.reference))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PersonalDataKey {
        PersonalDataKey::from_secret(b"a-vault-secret-of-at-least-32-bytes!")
    }

    #[test]
    fn a_sealed_number_opens_with_the_key_and_never_shows_in_clear() {
        let id = ResidentId::parse("idNumber", "360426199101010071").unwrap();
        let (identity, row) = key().seal(&id);
        assert_eq!(identity.masked, "360***********0071");
        assert_eq!(identity.reference, row.reference);
        assert!(!String::from_utf8_lossy(&row.ciphertext).contains("360426199101010071"));
        assert!(!serde_json::to_string(&identity).unwrap().contains("199101010071"));
        assert_eq!(key().open(&row).unwrap(), id);
        // The same number sealed twice: different rows, same fingerprint.
        let (again, row2) = key().seal(&id);
        assert_ne!(row.ciphertext, row2.ciphertext);
        assert_eq!(identity.fingerprint, again.fingerprint);
    }

    #[test]
    fn another_key_or_an_altered_row_cannot_open_it() {
        let id = ResidentId::parse("idNumber", "11010519491231002X").unwrap();
        let (_, mut row) = key().seal(&id);
        let other = PersonalDataKey::from_secret(b"another-vault-secret-of-32-bytes!!!!");
        assert!(matches!(other.open(&row), Err(PersonalDataError::UnknownKey(..))));
        row.ciphertext[0] ^= 1;
        assert_eq!(key().open(&row), Err(PersonalDataError::Unreadable(row.reference)));
        let (_, mut moved) = key().seal(&id);
        moved.reference = Uuid::now_v7();
        assert!(key().open(&moved).is_err(), "a row copied under another reference does not open");
    }
}
