//! Bearer tokens (JWT, HS256): who the caller is. A token carries the user id, the role and
//! the organisation (or broker) the user acts for; the domain decides what that allows.

use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ledger::ids::{BrokerId, OrganisationId};
use ledger::{Actor, Role};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The token issuer, checked on every token.
pub const ISSUER: &str = "techmarket";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    org: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    broker: Option<Uuid>,
    iss: String,
    iat: i64,
    exp: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("the Authorization header must be `Bearer <token>`")]
    Malformed,
    #[error("the token is invalid or expired: {0}")]
    Invalid(String),
    #[error("the token names an unknown role `{0}`")]
    UnknownRole(String),
}

/// Signs and verifies tokens with one secret.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl TokenKeys {
    pub fn from_secret(secret: &[u8]) -> TokenKeys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 30;
        TokenKeys { encoding: EncodingKey::from_secret(secret), decoding: DecodingKey::from_secret(secret), validation }
    }

    /// Issues a token for `actor`, valid for `ttl`.
    pub fn issue(&self, actor: &Actor, ttl: chrono::Duration) -> String {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: actor.user_id.clone(),
            role: actor.role.as_str().to_owned(),
            org: actor.organisation_id.map(|o| o.0),
            broker: actor.broker_id.map(|b| b.0),
            iss: ISSUER.to_owned(),
            iat: now,
            exp: now + ttl.num_seconds(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    /// The actor behind a token.
    pub fn verify(&self, token: &str) -> Result<Actor, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let c = data.claims;
        let role = Role::parse(&c.role).ok_or(AuthError::UnknownRole(c.role))?;
        Ok(Actor {
            user_id: c.sub,
            role,
            organisation_id: c.org.map(OrganisationId),
            broker_id: c.broker.map(BrokerId),
        })
    }

    /// The actor behind an `Authorization` header value; `None` when there is no header.
    pub fn actor_from_header(&self, header: Option<&str>) -> Result<Option<Actor>, AuthError> {
        let Some(value) = header else { return Ok(None) };
        let token = value.strip_prefix("Bearer ").ok_or(AuthError::Malformed)?.trim();
        self.verify(token).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::from_secret(b"a-test-secret-of-at-least-32-bytes!!")
    }

    #[test]
    fn a_token_round_trips_its_actor() {
        let actor = Actor {
            user_id: "li.na".into(),
            role: Role::Registrar,
            organisation_id: Some(OrganisationId(Uuid::now_v7())),
            broker_id: None,
        };
        let token = keys().issue(&actor, chrono::Duration::hours(1));
        assert_eq!(keys().verify(&token).unwrap(), actor);
        assert_eq!(keys().actor_from_header(Some(&format!("Bearer {token}"))).unwrap(), Some(actor));
    }

    #[test]
    fn expired_foreign_and_malformed_tokens_are_refused() {
        let actor = Actor { user_id: "x".into(), role: Role::Finance, organisation_id: None, broker_id: None };
        let expired = keys().issue(&actor, chrono::Duration::hours(-1));
        assert!(matches!(keys().verify(&expired), Err(AuthError::Invalid(_))));
        let foreign =
            TokenKeys::from_secret(b"another-secret-of-at-least-32-bytes!").issue(&actor, chrono::Duration::hours(1));
        assert!(matches!(keys().verify(&foreign), Err(AuthError::Invalid(_))));
        assert_eq!(keys().actor_from_header(Some("Token abc")), Err(AuthError::Malformed));
        assert_eq!(keys().actor_from_header(None), Ok(None));
    }
}
