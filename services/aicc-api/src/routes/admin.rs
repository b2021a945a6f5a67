use actix_web::{delete, get, post, put, web, HttpResponse};
use aicc_core::settings::TenantSettings;
use aicc_core::{NewEvent, NewUser, Role, User, UserPatch};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{generate_password, hash_password, validate_password, Admin};
use crate::error::{ApiError, ApiResult};
use crate::json::ApiJson;
use crate::AppState;

#[utoipa::path(tag = "admin", security(("bearer" = [])), responses((status = 200, body = TenantSettings)))]
#[get("/v1/admin/settings")]
pub async fn get_settings(state: web::Data<AppState>, admin: Admin) -> ApiResult<HttpResponse> {
    let tenant = state.store.tenant(admin.tenant_id).await?.ok_or_else(|| ApiError::not_found("tenant"))?;
    Ok(HttpResponse::Ok().json(tenant.settings))
}

/// Replaces the tenant's settings. Fields left out take their defaults; every
/// invalid field is listed in `details`.
#[utoipa::path(tag = "admin", request_body = TenantSettings, security(("bearer" = [])), responses(
    (status = 200, body = TenantSettings),
    (status = 422, description = "`invalid_settings` with `details: [{field, message}]`", body = crate::error::ErrorBody),
))]
#[put("/v1/admin/settings")]
pub async fn put_settings(
    state: web::Data<AppState>,
    admin: Admin,
    body: ApiJson<TenantSettings>,
) -> ApiResult<HttpResponse> {
    let settings = body.0;
    settings
        .validate()
        .map_err(|errs| ApiError::validation("invalid_settings", "the settings are invalid").with_details(errs))?;
    let tenant = state.store.update_tenant_settings(admin.tenant_id, &settings).await?;
    state.forget_tenant(admin.tenant_id);
    audit(&state, &admin, "tenant.settings_updated", serde_json::json!({})).await?;
    Ok(HttpResponse::Ok().json(tenant.settings))
}

#[derive(Serialize, ToSchema)]
pub struct UserList {
    pub users: Vec<User>,
}

#[utoipa::path(tag = "admin", security(("bearer" = [])), responses((status = 200, body = UserList)))]
#[get("/v1/admin/users")]
pub async fn list_users(state: web::Data<AppState>, admin: Admin) -> ApiResult<HttpResponse> {
    let users = state.store.list_users(admin.tenant_id).await?;
    Ok(HttpResponse::Ok().json(UserList { users }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub email: String,
    pub role: Role,
    pub name: Option<String>,
    /// Left out: one is generated and returned once in the response.
    pub password: Option<String>,
    #[serde(default)]
    pub teams: Vec<String>,
    pub max_concurrent: Option<i32>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedUser {
    pub user: User,
    /// Only when the server generated it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

#[utoipa::path(tag = "admin", request_body = CreateUser, security(("bearer" = [])), responses(
    (status = 201, body = CreatedUser),
    (status = 409, description = "`user_exists`", body = crate::error::ErrorBody),
    (status = 422, description = "`invalid_email`, `weak_password`, `invalid_field`", body = crate::error::ErrorBody),
))]
#[post("/v1/admin/users")]
pub async fn create_user(state: web::Data<AppState>, admin: Admin, body: ApiJson<CreateUser>) -> ApiResult<HttpResponse> {
    let b = body.0;
    let email = validate_email(&b.email)?;
    let name = validate_name(b.name.as_deref().unwrap_or(email.split('@').next().unwrap_or("")))?;
    let teams = validate_teams(b.teams)?;
    let max_concurrent = validate_max_concurrent(b.max_concurrent.unwrap_or(5))?;
    let generated = b.password.is_none();
    let password = b.password.unwrap_or_else(generate_password);
    validate_password(&password)?;
    let pw = password.clone();
    let password_hash = web::block(move || hash_password(&pw)).await.map_err(|e| ApiError::internal(e.to_string()))??;
    let user = state
        .store
        .create_user(NewUser { tenant_id: admin.tenant_id, email, name, role: b.role, teams, max_concurrent, password_hash })
        .await?;
    audit(&state, &admin, "user.created", serde_json::json!({ "user_id": user.id, "role": user.role })).await?;
    Ok(HttpResponse::Created().json(CreatedUser { user, password: generated.then_some(password) }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    pub name: Option<String>,
    pub role: Option<Role>,
    pub teams: Option<Vec<String>>,
    pub max_concurrent: Option<i32>,
    pub password: Option<String>,
}

#[utoipa::path(tag = "admin", request_body = UpdateUser, security(("bearer" = [])), responses(
    (status = 200, body = User),
    (status = 404, body = crate::error::ErrorBody),
    (status = 409, description = "`last_admin`: an admin cannot demote themself", body = crate::error::ErrorBody),
))]
#[put("/v1/admin/users/{id}")]
pub async fn update_user(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<Uuid>,
    body: ApiJson<UpdateUser>,
) -> ApiResult<HttpResponse> {
    let b = body.0;
    if *id == admin.user_id && b.role == Some(Role::Agent) {
        return Err(ApiError::conflict("last_admin", "you cannot remove your own admin role"));
    }
    let password_hash = match b.password {
        Some(pw) => {
            validate_password(&pw)?;
            Some(web::block(move || hash_password(&pw)).await.map_err(|e| ApiError::internal(e.to_string()))??)
        }
        None => None,
    };
    let patch = UserPatch {
        name: b.name.as_deref().map(validate_name).transpose()?,
        role: b.role,
        teams: b.teams.map(validate_teams).transpose()?,
        max_concurrent: b.max_concurrent.map(validate_max_concurrent).transpose()?,
        password_hash,
    };
    let user = state.store.update_user(admin.tenant_id, *id, patch).await?;
    audit(&state, &admin, "user.updated", serde_json::json!({ "user_id": user.id })).await?;
    Ok(HttpResponse::Ok().json(user))
}

#[utoipa::path(tag = "admin", security(("bearer" = [])), responses(
    (status = 204, description = "Deleted"),
    (status = 404, body = crate::error::ErrorBody),
    (status = 409, description = "`cannot_delete_self`", body = crate::error::ErrorBody),
))]
#[delete("/v1/admin/users/{id}")]
pub async fn delete_user(state: web::Data<AppState>, admin: Admin, id: web::Path<Uuid>) -> ApiResult<HttpResponse> {
    if *id == admin.user_id {
        return Err(ApiError::conflict("cannot_delete_self", "you cannot delete your own account"));
    }
    state.store.delete_user(admin.tenant_id, *id).await?;
    audit(&state, &admin, "user.deleted", serde_json::json!({ "user_id": *id })).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn audit(state: &AppState, admin: &Admin, kind: &str, data: serde_json::Value) -> ApiResult<()> {
    let event = NewEvent { tenant_id: admin.tenant_id, conversation_id: None, actor: Some(admin.user_id), kind: kind.into(), data };
    Ok(state.store.record_event(event).await?)
}

pub fn validate_email(email: &str) -> ApiResult<String> {
    let email = email.trim().to_lowercase();
    let ok = email.len() <= 320
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if !ok {
        return Err(ApiError::validation("invalid_email", format!("`{email}` is not an e-mail address")));
    }
    Ok(email)
}

fn validate_name(name: &str) -> ApiResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::validation("invalid_field", "name must be 1 to 100 characters"));
    }
    Ok(name.to_string())
}

fn validate_teams(teams: Vec<String>) -> ApiResult<Vec<String>> {
    if teams.len() > 20 || teams.iter().any(|t| t.trim().is_empty() || t.chars().count() > 100) {
        return Err(ApiError::validation("invalid_field", "teams: at most 20 names of 1 to 100 characters"));
    }
    Ok(teams.into_iter().map(|t| t.trim().to_string()).collect())
}

fn validate_max_concurrent(n: i32) -> ApiResult<i32> {
    if !(1..=100).contains(&n) {
        return Err(ApiError::validation("invalid_field", "max_concurrent must be between 1 and 100"));
    }
    Ok(n)
}

#[derive(Serialize, ToSchema)]
pub struct IdentitySecret {
    /// Key for `user_hash = hex(HMAC-SHA256(identity_secret, user_id))`, computed
    /// by the company's backend to mark a verified returning customer.
    pub identity_secret: String,
}

#[utoipa::path(tag = "admin", security(("bearer" = [])), responses((status = 200, body = IdentitySecret)))]
#[get("/v1/admin/identity-secret")]
pub async fn identity_secret(state: web::Data<AppState>, admin: Admin) -> ApiResult<HttpResponse> {
    let identity_secret = state
        .store
        .get_or_create_secret(&format!("{}{}", super::widget::IDENTITY_SECRET_PREFIX, admin.tenant_id), &crate::random_hex(32))
        .await?;
    Ok(HttpResponse::Ok().json(IdentitySecret { identity_secret }))
}
