//! Intents (admin): import the tenant's labelled examples, train its intent
//! model as a background job, and follow the job. Training is behind
//! `IntentTrainer` (aicc-models), installed in the model registry once the
//! embedder is loaded; jobs live in the Store, so any replica answers for them.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::{header, StatusCode};
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use aicc_core::intent_data::{self, Rules};
use aicc_core::{IntentTrainer, Job, JobState, JobUpdate, LineError, StoreError, TrainProgress};
use futures_util::FutureExt;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Admin;
use crate::error::{ApiError, ApiResult};
use crate::json::read_limited;
use crate::AppState;

/// The job kind of a training run.
pub const TRAINING: &str = "intent_training";
/// A running job not updated for this long is taken to be dead (its replica
/// stopped), so a new training may start.
const STALE_AFTER: Duration = Duration::from_secs(15 * 60);
/// Progress is written to the Store when it moved this much, or after this long.
const PROGRESS_STEP: f64 = 0.02;
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// At most this many problems are listed in a 422.
const MAX_DETAILS: usize = 100;

#[derive(Serialize, ToSchema)]
pub struct Imported {
    /// Examples stored (they replace the tenant's previous set).
    pub imported: u64,
    /// Distinct intents among them (`oos` included when present).
    pub intents: usize,
}

fn is_csv(content_type: Option<&str>) -> bool {
    let essence = content_type.and_then(|c| c.split(';').next()).unwrap_or("").trim().to_ascii_lowercase();
    matches!(
        essence.as_str(),
        "text/csv" | "application/csv" | "text/x-csv" | "application/x-csv" | "text/comma-separated-values"
            | "text/plain"
            // Windows labels `.csv` files so.
            | "application/vnd.ms-excel"
    )
}

/// Every problem of the file, by line (0: the file as a whole).
fn invalid(e: intent_data::DataError) -> ApiError {
    let n = e.problems.len();
    let mut details: Vec<LineError> =
        e.problems.into_iter().map(|p| LineError { line: p.line.unwrap_or(0), message: p.message }).collect();
    if details.len() > MAX_DETAILS {
        let more = details.len() - MAX_DETAILS;
        let line = details[MAX_DETAILS].line;
        details.truncate(MAX_DETAILS);
        details.push(LineError { line, message: format!("and {more} more") });
    }
    ApiError::validation("invalid_import", format!("the file has {n} error(s); nothing was imported")).with_details(details)
}

#[utoipa::path(tag = "intents", security(("bearer" = [])),
    request_body(content = String, description = "CSV with a header row: `text,intent[,language]` (any order; `oos` marks out-of-scope rows); every intent needs two examples, and at least two intents", content_type = "text/csv"),
    responses(
        (status = 201, description = "The tenant's examples were replaced", body = Imported),
        (status = 403, body = crate::error::ErrorBody),
        (status = 413, description = "`payload_too_large`", body = crate::error::ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_import` with `details: [{line, message}]` (line 0: the file as a whole); nothing is stored", body = crate::error::ErrorBody),
))]
#[post("/v1/admin/intents/import")]
pub async fn import(state: web::Data<AppState>, admin: Admin, req: HttpRequest, payload: web::Payload) -> ApiResult<HttpResponse> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    if !is_csv(content_type) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("the body must be CSV (Content-Type: text/csv), not `{}`", content_type.unwrap_or("nothing")),
        ));
    }
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let bytes = read_limited(&mut payload.into_inner(), declared, state.settings.limits.import_bytes).await?;
    let examples = intent_data::parse(&bytes, "the file", Rules::TRAIN).map_err(invalid)?;
    let intents = examples.iter().map(|e| e.intent.as_str()).collect::<BTreeSet<_>>().len();
    let imported = state.store.replace_intent_examples(admin.tenant_id, &examples).await?;
    Ok(HttpResponse::Created().json(Imported { imported, intents }))
}

#[derive(Serialize, ToSchema)]
pub struct Started {
    pub job_id: Uuid,
}

#[utoipa::path(tag = "intents", security(("bearer" = [])), responses(
    (status = 202, description = "Training started; follow it at `/v1/admin/jobs/{job_id}`", body = Started),
    (status = 403, body = crate::error::ErrorBody),
    (status = 409, description = "`training_in_progress`: a training job of this tenant is running", body = crate::error::ErrorBody),
    (status = 422, description = "`no_examples`: import examples first", body = crate::error::ErrorBody),
    (status = 503, description = "`model_unavailable`: no embedder (`AICC_EMBEDDER=none`) or it is still loading", body = crate::error::ErrorBody),
))]
#[post("/v1/admin/intents/train")]
pub async fn train(state: web::Data<AppState>, admin: Admin) -> ApiResult<HttpResponse> {
    let examples = state.store.intent_examples(admin.tenant_id).await?;
    if examples.is_empty() {
        return Err(ApiError::validation(
            "no_examples",
            "this tenant has no intent examples: import them first (POST /v1/admin/intents/import)",
        ));
    }
    let Some(trainer) = state.models.trainer() else {
        let message = if state.settings.embedder == "none" {
            "intent training needs an embedder, and this server runs without one (AICC_EMBEDDER=none)"
        } else {
            "the embedder is still loading; retry shortly"
        };
        return Err(ApiError { retry_after: Some(5), ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "model_unavailable", message) });
    };
    let stale_before = chrono::Utc::now() - chrono::Duration::from_std(STALE_AFTER).unwrap_or_default();
    let job = match state.store.create_job(admin.tenant_id, TRAINING, stale_before).await {
        Ok(job) => job,
        Err(StoreError::Conflict { code: "job_in_progress", .. }) => {
            return Err(ApiError::conflict("training_in_progress", "a training job of this tenant is already running"))
        }
        Err(e) => return Err(e.into()),
    };
    tokio::spawn(run(state.into_inner(), trainer, job.id, admin.tenant_id, examples));
    Ok(HttpResponse::Accepted().json(Started { job_id: job.id }))
}

/// Runs one training job to its end: progress to the Store (throttled), then
/// the new classifier into the registry and the job's final state.
async fn run(state: Arc<AppState>, trainer: Arc<dyn IntentTrainer>, job_id: Uuid, tenant_id: Uuid, examples: Vec<aicc_core::intent_data::Example>) {
    let store = state.store.clone();
    let running = |progress: f64| JobUpdate { state: JobState::Running, progress, metrics: None, error: None };
    if let Err(e) = store.update_job(job_id, running(0.0)).await {
        tracing::warn!(job = %job_id, "cannot mark the training job running: {e}");
    }
    let (tx, mut rx) = tokio::sync::watch::channel(0.0f64);
    let progress: TrainProgress = Arc::new(move |p: f64| {
        tx.send_replace(p);
    });
    let reporter = {
        let store = store.clone();
        tokio::spawn(async move {
            let (mut written, mut at) = (0.0f64, Instant::now());
            while rx.changed().await.is_ok() {
                let p = *rx.borrow_and_update();
                if p >= written + PROGRESS_STEP || (p > written && at.elapsed() >= PROGRESS_EVERY) {
                    // A finished job refuses the write (job_finished): harmless.
                    let _ = store.update_job(job_id, running(p)).await;
                    (written, at) = (p, Instant::now());
                }
            }
        })
    };
    let outcome = std::panic::AssertUnwindSafe(trainer.train(tenant_id, examples, progress)).catch_unwind().await;
    reporter.abort();
    let last = store.job(tenant_id, job_id).await.ok().flatten().map_or(0.0, |j| j.progress);
    let update = match outcome {
        Ok(Ok(trained)) => {
            // The bot classifies with the new model from its next message on.
            state.models.set_intents(tenant_id, trained.classifier);
            JobUpdate { state: JobState::Succeeded, progress: 1.0, metrics: Some(trained.metrics), error: None }
        }
        Ok(Err(e)) => {
            tracing::warn!(job = %job_id, tenant = %tenant_id, "intent training failed: {e}");
            JobUpdate { state: JobState::Failed, progress: last, metrics: None, error: Some(e.to_string()) }
        }
        Err(_) => {
            tracing::error!(job = %job_id, tenant = %tenant_id, "intent training panicked");
            JobUpdate { state: JobState::Failed, progress: last, metrics: None, error: Some("training failed unexpectedly".into()) }
        }
    };
    if let Err(e) = store.update_job(job_id, update).await {
        tracing::error!(job = %job_id, "cannot record the training job's end: {e}");
    }
}

#[utoipa::path(tag = "intents", security(("bearer" = [])), params(("id" = Uuid, Path, description = "The job id")), responses(
    (status = 200, body = Job),
    (status = 403, body = crate::error::ErrorBody),
    (status = 404, description = "No such job in this tenant", body = crate::error::ErrorBody),
))]
#[get("/v1/admin/jobs/{id}")]
pub async fn get_job(state: web::Data<AppState>, admin: Admin, id: web::Path<Uuid>) -> ApiResult<HttpResponse> {
    let job = state.store.job(admin.tenant_id, *id).await?.ok_or_else(|| ApiError::not_found("job"))?;
    Ok(HttpResponse::Ok().json(job))
}
