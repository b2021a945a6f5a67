//! Canned responses: admins write them, agents (and admins) read them.

use actix_web::{delete, get, post, put, web, HttpResponse};
use aicc_core::{CannedResponse, NewCanned};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{Admin, Staff};
use crate::error::{ApiError, ApiResult};
use crate::json::ApiJson;
use crate::AppState;

#[derive(Serialize, ToSchema)]
pub struct CannedList {
    pub canned: Vec<CannedResponse>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CannedBody {
    pub title: String,
    pub text: String,
    /// `en` or `ko`.
    pub language: String,
}

impl CannedBody {
    fn validate(self, tenant_id: Uuid, max_chars: usize) -> ApiResult<NewCanned> {
        let title = self.title.trim().to_string();
        let text = self.text.trim().to_string();
        if title.is_empty() || title.chars().count() > 100 {
            return Err(ApiError::validation("invalid_field", "title must be 1 to 100 characters"));
        }
        if text.is_empty() || text.chars().count() > max_chars {
            return Err(ApiError::validation("invalid_field", format!("text must be 1 to {max_chars} characters")));
        }
        if !matches!(self.language.as_str(), "en" | "ko") {
            return Err(ApiError::validation("invalid_field", "language must be `en` or `ko`"));
        }
        Ok(NewCanned { tenant_id, title, text, language: self.language })
    }
}

#[utoipa::path(tag = "canned", security(("bearer" = [])), responses((status = 200, body = CannedList)))]
#[get("/v1/admin/canned")]
pub async fn list(state: web::Data<AppState>, staff: Staff) -> ApiResult<HttpResponse> {
    let canned = state.store.list_canned(staff.tenant_id).await?;
    Ok(HttpResponse::Ok().json(CannedList { canned }))
}

#[utoipa::path(tag = "canned", request_body = CannedBody, security(("bearer" = [])), responses(
    (status = 201, body = CannedResponse),
    (status = 422, description = "`invalid_field`", body = crate::error::ErrorBody),
))]
#[post("/v1/admin/canned")]
pub async fn create(state: web::Data<AppState>, admin: Admin, body: ApiJson<CannedBody>) -> ApiResult<HttpResponse> {
    let new = body.0.validate(admin.tenant_id, state.settings.limits.message_chars)?;
    Ok(HttpResponse::Created().json(state.store.create_canned(new).await?))
}

#[utoipa::path(tag = "canned", request_body = CannedBody, security(("bearer" = [])), responses(
    (status = 200, body = CannedResponse),
    (status = 404, body = crate::error::ErrorBody),
))]
#[put("/v1/admin/canned/{id}")]
pub async fn update(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<Uuid>,
    body: ApiJson<CannedBody>,
) -> ApiResult<HttpResponse> {
    let new = body.0.validate(admin.tenant_id, state.settings.limits.message_chars)?;
    Ok(HttpResponse::Ok().json(state.store.update_canned(*id, new).await?))
}

#[utoipa::path(tag = "canned", security(("bearer" = [])), responses(
    (status = 204, description = "Deleted"),
    (status = 404, body = crate::error::ErrorBody),
))]
#[delete("/v1/admin/canned/{id}")]
pub async fn remove(state: web::Data<AppState>, admin: Admin, id: web::Path<Uuid>) -> ApiResult<HttpResponse> {
    state.store.delete_canned(admin.tenant_id, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}
