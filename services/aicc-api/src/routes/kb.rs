//! Knowledge base: import, versions, publish/rollback, article edits (admin),
//! and search (agents and admins). The work is behind `KnowledgeIndex`.

use actix_web::http::{header, StatusCode};
use actix_web::{delete, get, post, put, web, HttpRequest, HttpResponse};
use aicc_core::{Article, ImportMode, KbError, KbHit, KbQuery, KbVersion, LineError, Upload};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Admin, Staff};
use crate::error::{ApiError, ApiResult};
use crate::json::{read_limited, ApiJson};
use crate::AppState;

impl From<KbError> for ApiError {
    fn from(e: KbError) -> Self {
        match e {
            KbError::Invalid(details) => {
                let n = details.len();
                ApiError::validation("invalid_import", format!("the file has {n} error(s); nothing was imported"))
                    .with_details(details)
            }
            KbError::UnsupportedFormat(m) => ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_format", m),
            KbError::TooLarge(m) => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", m),
            KbError::BadQuery(m) => ApiError::bad_request("invalid_query", m),
            KbError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "not_found", m),
            KbError::Store(e) => e.into(),
            KbError::Overloaded => ApiError {
                code: "overloaded",
                ..ApiError::rate_limited("the embedding model is overloaded; retry shortly", 1)
            },
            KbError::Unavailable(m) => ApiError {
                retry_after: Some(5),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "kb_unavailable", m)
            },
            KbError::Failed(m) => ApiError::internal(m),
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ImportParams {
    /// `replace` (default) or `merge`.
    pub mode: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Imported {
    pub version: i64,
    pub imported: i64,
}

#[utoipa::path(tag = "kb", params(ImportParams), security(("bearer" = [])),
    request_body(content = String, description = "text/csv, application/json or XLSX; faq.csv columns", content_type = "text/csv"),
    responses(
        (status = 201, body = Imported),
        (status = 413, body = crate::error::ErrorBody),
        (status = 415, description = "`unsupported_format`", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_import` with `details: [{line, message}]`", body = crate::error::ErrorBody),
))]
#[post("/v1/admin/kb/import")]
pub async fn import(
    state: web::Data<AppState>,
    admin: Admin,
    req: HttpRequest,
    params: web::Query<ImportParams>,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let mode = match params.mode.as_deref() {
        None | Some("replace") => ImportMode::Replace,
        Some("merge") => ImportMode::Merge,
        Some(other) => return Err(ApiError::bad_request("invalid_query", format!("mode `{other}`: use replace or merge"))),
    };
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let bytes = read_limited(&mut payload.into_inner(), declared, state.settings.limits.import_bytes).await?;
    if bytes.is_empty() {
        return Err(ApiError::validation("invalid_import", "the body is empty")
            .with_details([LineError { line: 1, message: "the file is empty".into() }]));
    }
    let header_str = |name| req.headers().get(name).and_then(|v: &header::HeaderValue| v.to_str().ok()).map(str::to_owned);
    // A file name, when the client sends one, helps tell the format.
    let filename = header_str(header::CONTENT_DISPOSITION)
        .and_then(|d| d.split("filename=").nth(1).map(|f| f.trim_matches(|c| c == '"' || c == ';').to_string()));
    let upload = Upload { bytes: bytes.to_vec(), content_type: header_str(header::CONTENT_TYPE), filename };
    let version = state.kb.import(admin.tenant_id, upload, mode).await?;
    Ok(HttpResponse::Created().json(Imported { version: version.version, imported: version.article_count }))
}

#[derive(Serialize, ToSchema)]
pub struct Versions {
    pub versions: Vec<KbVersion>,
}

#[utoipa::path(tag = "kb", security(("bearer" = [])), responses((status = 200, body = Versions)))]
#[get("/v1/admin/kb/versions")]
pub async fn versions(state: web::Data<AppState>, admin: Admin) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(Versions { versions: state.kb.versions(admin.tenant_id).await? }))
}

#[utoipa::path(tag = "kb", security(("bearer" = [])), responses(
    (status = 200, body = KbVersion),
    (status = 404, body = crate::error::ErrorBody),
))]
#[post("/v1/admin/kb/versions/{version}/publish")]
pub async fn publish(state: web::Data<AppState>, admin: Admin, version: web::Path<i64>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.kb.publish(admin.tenant_id, *version).await?))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct VersionParam {
    /// The version to read or to edit (default: the live one).
    pub version: Option<i64>,
}

#[utoipa::path(tag = "kb", params(VersionParam), security(("bearer" = [])), responses(
    (status = 200, body = Article),
    (status = 404, body = crate::error::ErrorBody),
))]
#[get("/v1/admin/kb/articles/{id}")]
pub async fn get_article(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<String>,
    params: web::Query<VersionParam>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.kb.article(admin.tenant_id, &id, params.version).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArticleBody {
    pub intent: Option<String>,
    /// Detected from the text when left out.
    pub language: Option<String>,
    pub question: String,
    pub answer: String,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Edited {
    /// The new draft version holding the change.
    pub version: KbVersion,
}

#[utoipa::path(tag = "kb", params(VersionParam), request_body = ArticleBody, security(("bearer" = [])), responses(
    (status = 201, description = "A new draft version with the article added or replaced", body = Edited),
    (status = 422, body = crate::error::ErrorBody),
))]
#[put("/v1/admin/kb/articles/{id}")]
pub async fn put_article(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<String>,
    params: web::Query<VersionParam>,
    body: ApiJson<ArticleBody>,
) -> ApiResult<HttpResponse> {
    let b = body.0;
    let article = Article {
        id: id.into_inner(),
        intent: b.intent.filter(|i| !i.trim().is_empty()),
        language: b.language.unwrap_or_default(),
        question: b.question,
        answer: b.answer,
        tags: b.tags,
    };
    let version = state.kb.put_article(admin.tenant_id, article, params.version).await?;
    Ok(HttpResponse::Created().json(Edited { version }))
}

#[utoipa::path(tag = "kb", params(VersionParam), security(("bearer" = [])), responses(
    (status = 201, description = "A new draft version without the article", body = Edited),
    (status = 404, body = crate::error::ErrorBody),
))]
#[delete("/v1/admin/kb/articles/{id}")]
pub async fn delete_article(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<String>,
    params: web::Query<VersionParam>,
) -> ApiResult<HttpResponse> {
    let version = state.kb.delete_article(admin.tenant_id, &id, params.version).await?;
    Ok(HttpResponse::Created().json(Edited { version }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    pub q: String,
    /// Hits to return, 1 to 100 (default 5).
    pub k: Option<usize>,
    /// Search this version (e.g. a draft) instead of the live one.
    pub version: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct SearchResult {
    pub hits: Vec<KbHit>,
}

#[utoipa::path(tag = "kb", params(SearchParams), security(("bearer" = [])), responses(
    (status = 200, body = SearchResult),
    (status = 400, description = "`invalid_query`", body = crate::error::ErrorBody),
    (status = 429, description = "`overloaded`", body = crate::error::ErrorBody),
))]
#[get("/v1/kb/search")]
pub async fn search(state: web::Data<AppState>, staff: Staff, params: web::Query<SearchParams>) -> ApiResult<HttpResponse> {
    let p = params.into_inner();
    let query = KbQuery { text: p.q, k: p.k.unwrap_or(5), version: p.version };
    let hits = state.kb.search(staff.tenant_id, &query).await?;
    Ok(HttpResponse::Ok().json(SearchResult { hits }))
}
