use actix_web::{get, web, HttpResponse};
use aicc_dialog::analytics::{compute, AnalyticsError, Bucket};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::Admin;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsQuery {
    /// RFC 3339 time or `YYYY-MM-DD` (UTC midnight); default 30 days before `to`.
    pub from: Option<String>,
    /// Exclusive; RFC 3339 or `YYYY-MM-DD`; default now.
    pub to: Option<String>,
    /// `hour`, `day` (default) or `week`.
    pub bucket: Option<String>,
}

fn parse_time(name: &str, value: &str) -> ApiResult<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    Err(ApiError::bad_request("invalid_query", format!("{name} must be an RFC 3339 time or YYYY-MM-DD, got `{value}`")))
}

/// Containment, handoffs, first response, CSAT, top intents and the
/// unanswered questions (clustered), with a series per bucket. docs/dialog.md
/// defines each figure.
#[utoipa::path(tag = "admin", params(AnalyticsQuery), security(("bearer" = [])), responses(
    (status = 200, body = aicc_dialog::analytics::Analytics),
    (status = 400, description = "`invalid_query`: a bad time, bucket, or range", body = crate::error::ErrorBody),
))]
#[get("/v1/admin/analytics")]
pub async fn analytics(state: web::Data<AppState>, admin: Admin, q: web::Query<AnalyticsQuery>) -> ApiResult<HttpResponse> {
    let to = match &q.to {
        Some(t) => parse_time("to", t)?,
        None => Utc::now(),
    };
    let from = match &q.from {
        Some(f) => parse_time("from", f)?,
        None => to - chrono::Duration::days(30),
    };
    let bucket = match q.bucket.as_deref() {
        None => Bucket::Day,
        Some(b) => Bucket::parse(b).ok_or_else(|| ApiError::bad_request("invalid_query", "bucket must be hour, day or week"))?,
    };
    let embedder = state.models.embedder();
    let result = compute(state.store.as_ref(), embedder.as_deref(), admin.tenant_id, from, to, bucket).await;
    match result {
        Ok(a) => Ok(HttpResponse::Ok().json(a)),
        Err(AnalyticsError::BadRange(m)) => Err(ApiError::bad_request("invalid_query", m)),
        Err(AnalyticsError::Store(e)) => Err(e.into()),
    }
}
