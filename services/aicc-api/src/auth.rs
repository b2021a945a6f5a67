//! Tokens, passwords and who may do what.
//!
//! Staff (admins, agents) log in and get a token for their tenant; a widget
//! customer gets a token for exactly one conversation. Both are HS256 JWTs
//! signed with the key every replica shares (kept in the Store).

use std::future::{ready, Ready};

use actix_web::http::header;
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use aicc_core::Role;
use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use jsonwebtoken::{decode, encode, errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ApiError;
use crate::AppState;

const ISSUER: &str = "aicc";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id (staff) or the conversation id (customer).
    pub sub: Uuid,
    /// Tenant id and slug.
    pub tid: Uuid,
    pub ten: String,
    /// `admin`, `agent` or `customer`.
    pub role: String,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
}

pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl Keys {
    pub fn new(secret: &[u8]) -> Self {
        Self { encoding: EncodingKey::from_secret(secret), decoding: DecodingKey::from_secret(secret) }
    }

    pub fn sign(&self, sub: Uuid, tid: Uuid, ten: &str, role: &str, ttl_secs: u64) -> Result<String, ApiError> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub,
            tid,
            ten: ten.to_string(),
            role: role.to_string(),
            iat: now,
            exp: now + ttl_secs as i64,
            iss: ISSUER.into(),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| ApiError::internal(format!("cannot sign token: {e}")))
    }

    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        // Only HS256 is accepted: `alg: none` and algorithm swaps fail here.
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 5;
        v.set_issuer(&[ISSUER]);
        v.set_required_spec_claims(&["exp", "iss", "sub"]);
        decode::<Claims>(token, &self.decoding, &v).map(|d| d.claims).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => ApiError::unauthorized("token_expired", "the token has expired"),
            _ => ApiError::unauthorized("invalid_token", "the token is invalid"),
        })
    }
}

/// Who is calling, from a verified token.
#[derive(Debug, Clone)]
pub enum Principal {
    Staff { user_id: Uuid, tenant_id: Uuid, tenant: String, role: Role },
    Customer { conversation_id: Uuid, tenant_id: Uuid, tenant: String },
}

impl Principal {
    pub fn tenant_id(&self) -> Uuid {
        match self {
            Principal::Staff { tenant_id, .. } | Principal::Customer { tenant_id, .. } => *tenant_id,
        }
    }

    pub fn user_id(&self) -> Option<Uuid> {
        match self {
            Principal::Staff { user_id, .. } => Some(*user_id),
            Principal::Customer { .. } => None,
        }
    }

    fn from_claims(c: Claims) -> Result<Self, ApiError> {
        Ok(match c.role.as_str() {
            "customer" => Principal::Customer { conversation_id: c.sub, tenant_id: c.tid, tenant: c.ten },
            other => match Role::parse(other) {
                Some(role) => Principal::Staff { user_id: c.sub, tenant_id: c.tid, tenant: c.ten, role },
                None => return Err(ApiError::unauthorized("invalid_token", "the token has an unknown role")),
            },
        })
    }

    /// A customer token reaches only its own conversation.
    pub fn require_conversation(&self, id: Uuid) -> Result<(), ApiError> {
        match self {
            Principal::Customer { conversation_id, .. } if *conversation_id != id => {
                Err(ApiError::forbidden("wrong_conversation", "this token is for another conversation"))
            }
            _ => Ok(()),
        }
    }
}

/// The bearer token from `Authorization` or, for the WebSocket, `?token=`.
fn bearer(req: &HttpRequest) -> Option<String> {
    if let Some(h) = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        return h.strip_prefix("Bearer ").map(|t| t.trim().to_string());
    }
    web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.get("token").cloned())
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready((|| {
            let state = req.app_data::<web::Data<AppState>>().ok_or_else(|| ApiError::internal("state missing"))?;
            let token = bearer(req)
                .ok_or_else(|| ApiError::unauthorized("missing_token", "an Authorization: Bearer token is required"))?;
            Principal::from_claims(state.keys.verify(&token)?)
        })())
    }
}

/// An admin or agent of the token's tenant.
pub struct Staff {
    pub user_id: Uuid,
    pub tenant_id: Uuid,
    pub role: Role,
}

impl FromRequest for Staff {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, p: &mut Payload) -> Self::Future {
        ready(match Principal::from_request(req, p).into_inner() {
            Ok(Principal::Staff { user_id, tenant_id, role, .. }) => Ok(Staff { user_id, tenant_id, role }),
            Ok(Principal::Customer { .. }) => {
                Err(ApiError::forbidden("forbidden", "a customer token cannot use this endpoint"))
            }
            Err(e) => Err(e),
        })
    }
}

/// An admin of the token's tenant.
pub struct Admin {
    pub user_id: Uuid,
    pub tenant_id: Uuid,
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, p: &mut Payload) -> Self::Future {
        ready(match Staff::from_request(req, p).into_inner() {
            Ok(Staff { user_id, tenant_id, role: Role::Admin }) => Ok(Admin { user_id, tenant_id }),
            Ok(_) => Err(ApiError::forbidden("forbidden", "this endpoint needs the admin role")),
            Err(e) => Err(e),
        })
    }
}

/// Hashes with argon2id. CPU-heavy: call it from `spawn_blocking`.
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::internal(format!("cannot hash password: {e}")))
}

/// Verifies a password; `None` (no such user) still spends the same work so
/// that timing does not tell which e-mails exist.
pub fn verify_password(password: &str, hash: Option<&str>) -> bool {
    static DUMMY: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| hash_password("dummy password for timing").unwrap_or_default());
    let (hash, real) = match hash {
        Some(h) => (h, true),
        None => (DUMMY.as_str(), false),
    };
    let ok = PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok());
    ok && real
}

/// A random password for generated accounts: 20 characters, letters and digits.
pub fn generate_password() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::thread_rng();
    (0..20).map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char).collect()
}

pub fn validate_password(password: &str) -> Result<(), ApiError> {
    let n = password.chars().count();
    if !(8..=256).contains(&n) {
        return Err(ApiError::validation("weak_password", "the password must be 8 to 256 characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_other_keys() {
        let keys = Keys::new(b"k1-0123456789abcdef0123456789abcdef");
        let t = keys.sign(Uuid::new_v4(), Uuid::new_v4(), "demo", "agent", 60).unwrap();
        assert_eq!(keys.verify(&t).unwrap().role, "agent");
        let other = Keys::new(b"k2-0123456789abcdef0123456789abcdef");
        assert_eq!(other.verify(&t).unwrap_err().code, "invalid_token");
    }

    #[test]
    fn passwords() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", Some(&h)));
        assert!(!verify_password("wrong", Some(&h)));
        assert!(!verify_password("correct horse", None));
    }
}
