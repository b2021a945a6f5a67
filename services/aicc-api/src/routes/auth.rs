use actix_web::{post, web, HttpRequest, HttpResponse};
use aicc_core::NewEvent;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::verify_password;
use crate::error::{ApiError, ApiResult};
use crate::json::ApiJson;
use crate::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub tenant: String,
    pub email: String,
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct LoginResponse {
    pub access_token: String,
    pub expires_in: u64,
    pub user: LoginUser,
}

#[derive(Serialize, ToSchema)]
pub struct LoginUser {
    pub id: Uuid,
    pub tenant: String,
    pub role: aicc_core::Role,
    pub name: String,
}

/// Logs an admin or agent in. Rate-limited per tenant+email and per IP.
#[utoipa::path(tag = "auth", request_body = LoginRequest, responses(
    (status = 200, body = LoginResponse),
    (status = 401, description = "`invalid_credentials`", body = crate::error::ErrorBody),
    (status = 429, description = "`rate_limited`", body = crate::error::ErrorBody),
))]
#[post("/v1/auth/login")]
pub async fn login(state: web::Data<AppState>, req: HttpRequest, body: ApiJson<LoginRequest>) -> ApiResult<HttpResponse> {
    let LoginRequest { tenant, email, password } = body.0;
    let ip = req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default();
    let account = format!("{}\n{}", tenant, email.to_lowercase());
    for (limiter, key) in [(&state.login_by_ip, &ip), (&state.login_by_account, &account)] {
        limiter
            .check(key)
            .map_err(|secs| ApiError::rate_limited("too many login attempts; try again later", secs))?;
    }
    let invalid = || ApiError::unauthorized("invalid_credentials", "wrong tenant, e-mail or password");
    let tenant = state.store.tenant_by_slug(&tenant).await?;
    let user = match &tenant {
        Some(t) => state.store.user_by_email(t.id, &email).await?,
        None => None,
    };
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let ok = web::block(move || verify_password(&password, hash.as_deref()))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let (Some(tenant), Some(user), true) = (tenant.as_ref(), user, ok) else {
        if let Some(t) = &tenant {
            state
                .store
                .record_event(NewEvent {
                    tenant_id: t.id,
                    conversation_id: None,
                    actor: None,
                    kind: "auth.login_failed".into(),
                    data: serde_json::json!({ "email": email.to_lowercase(), "ip": ip }),
                })
                .await?;
        }
        return Err(invalid());
    };
    state
        .store
        .record_event(NewEvent {
            tenant_id: tenant.id,
            conversation_id: None,
            actor: Some(user.id),
            kind: "auth.login".into(),
            data: serde_json::json!({ "ip": ip }),
        })
        .await?;
    let ttl = tenant.settings.tokens.staff_secs;
    let token = state.keys.sign(user.id, tenant.id, &tenant.slug, user.role.as_str(), ttl)?;
    Ok(HttpResponse::Ok().json(LoginResponse {
        access_token: token,
        expires_in: ttl,
        user: LoginUser { id: user.id, tenant: tenant.slug.clone(), role: user.role, name: user.name },
    }))
}
