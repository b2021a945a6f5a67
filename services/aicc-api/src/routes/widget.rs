use actix_web::http::header;
use actix_web::{post, web, HttpRequest, HttpResponse};
use aicc_core::{CustomerInfo, NewConversation};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::json::ApiJson;
use crate::AppState;

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateConversation {
    /// `en` or `ko` (a region suffix such as `ko-KR` is accepted); default from Accept-Language.
    pub locale: Option<String>,
    pub customer: Option<WidgetCustomer>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WidgetCustomer {
    pub name: Option<String>,
    pub email: Option<String>,
    pub user_id: Option<String>,
    /// Hex HMAC-SHA256 of `user_id` keyed with the tenant's identity secret.
    pub user_hash: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedConversation {
    pub conversation_id: Uuid,
    pub token: String,
    pub expires_in: u64,
}

/// The secret a tenant's backend uses to sign `user_hash` values.
pub const IDENTITY_SECRET_PREFIX: &str = "identity_secret:";

/// Starts a customer conversation (public; rate-limited per IP; the tenant's
/// allowed origins apply when the browser sends `Origin`).
#[utoipa::path(tag = "widget", request_body = CreateConversation, params(("tenant" = String, Path, description = "Tenant slug")),
    responses(
        (status = 201, body = CreatedConversation),
        (status = 403, description = "`origin_not_allowed` or `invalid_user_hash`", body = crate::error::ErrorBody),
        (status = 404, description = "No such tenant", body = crate::error::ErrorBody),
        (status = 429, description = "`rate_limited`", body = crate::error::ErrorBody),
    ))]
#[post("/v1/widget/{tenant}/conversations")]
pub async fn create_conversation(
    state: web::Data<AppState>,
    req: HttpRequest,
    tenant: web::Path<String>,
    body: ApiJson<CreateConversation>,
) -> ApiResult<HttpResponse> {
    let ip = req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default();
    state
        .widget_by_ip
        .check(&ip)
        .map_err(|secs| ApiError::rate_limited("too many new conversations from this address", secs))?;
    let tenant = state.store.tenant_by_slug(&tenant).await?.ok_or_else(|| ApiError::not_found("tenant"))?;
    if let Some(origin) = req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        if !tenant.settings.origin_allowed(origin) {
            return Err(ApiError::forbidden("origin_not_allowed", format!("{origin} may not embed this tenant's widget")));
        }
    }
    let accept = req.headers().get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let locale = match body.0.locale.as_deref() {
        Some(l) => parse_locale(l).ok_or_else(|| ApiError::validation("invalid_locale", "locale must be `en` or `ko`"))?,
        None => parse_locale(accept).unwrap_or("en"),
    };
    let mut customer = CustomerInfo::default();
    if let Some(c) = body.0.customer {
        for (field, value, max) in [("name", &c.name, 200), ("email", &c.email, 320), ("user_id", &c.user_id, 200)] {
            if value.as_ref().is_some_and(|v| v.chars().count() > max) {
                return Err(ApiError::validation("invalid_field", format!("customer.{field} is longer than {max} characters")));
            }
        }
        if let (Some(user_id), Some(hash)) = (&c.user_id, &c.user_hash) {
            let secret = state
                .store
                .get_or_create_secret(&format!("{IDENTITY_SECRET_PREFIX}{}", tenant.id), &crate::random_hex(32))
                .await?;
            if !verify_user_hash(&secret, user_id, hash) {
                return Err(ApiError::forbidden("invalid_user_hash", "user_hash does not match user_id"));
            }
            customer.verified = true;
        }
        customer.name = c.name;
        customer.email = c.email;
        customer.user_id = c.user_id;
    }
    let conv = state
        .store
        .create_conversation(NewConversation { tenant_id: tenant.id, locale: locale.to_string(), customer })
        .await?;
    if state.settings.dialog.bot {
        // While the customer types, the generator reads the tenant's prompt.
        let (dialog, lang) = (state.dialog.clone(), aicc_dialog::Lang::from_tag(locale).unwrap_or(aicc_dialog::Lang::En));
        let tenant = tenant.clone();
        actix_web::rt::spawn(async move { dialog.warm_up(&tenant, lang).await });
    }
    let ttl = tenant.settings.tokens.customer_secs;
    let token = state.keys.sign(conv.id, tenant.id, &tenant.slug, "customer", ttl)?;
    Ok(HttpResponse::Created().json(CreatedConversation { conversation_id: conv.id, token, expires_in: ttl }))
}

/// `ko`, `ko-KR`, `en-US,en;q=0.9` → `ko` / `en`; anything else → None.
fn parse_locale(s: &str) -> Option<&'static str> {
    let first = s.split([',', ';']).next()?.trim().to_ascii_lowercase();
    match first.split(['-', '_']).next()? {
        "ko" => Some("ko"),
        "en" => Some("en"),
        _ => None,
    }
}

fn verify_user_hash(secret: &str, user_id: &str, hash_hex: &str) -> bool {
    use hmac::{Hmac, Mac};
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else { return false };
    mac.update(user_id.as_bytes());
    let Some(bytes) = decode_hex(hash_hex) else { return false };
    mac.verify_slice(&bytes).is_ok()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locales() {
        assert_eq!(parse_locale("ko-KR,ko;q=0.9"), Some("ko"));
        assert_eq!(parse_locale("en"), Some("en"));
        assert_eq!(parse_locale("fr"), None);
    }

    #[test]
    fn user_hash() {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"secret").unwrap();
        mac.update(b"user-1");
        let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert!(verify_user_hash("secret", "user-1", &hex));
        assert!(!verify_user_hash("secret", "user-2", &hex));
        assert!(!verify_user_hash("secret", "user-1", "zz"));
    }
}
