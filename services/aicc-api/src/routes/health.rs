use actix_web::{get, web, HttpResponse};
use serde_json::json;

use crate::AppState;

/// Liveness: 200 while the process serves.
#[utoipa::path(tag = "health", responses((status = 200, description = "The process is serving")))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Readiness: 200 only when the store and bus are reachable and every model is loaded.
#[utoipa::path(tag = "health", responses(
    (status = 200, description = "Ready: `{store, bus, models}`"),
    (status = 503, description = "Not ready; the body says what is missing"),
))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let store = match state.store.ping().await {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("unavailable: {e}"),
    };
    let bus = if state.bus.is_healthy() { "ok" } else { "unavailable" };
    let body = json!({ "store": store, "bus": bus, "models": state.models.states() });
    if store == "ok" && bus == "ok" && state.models.ready() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(tag = "health", responses((status = 200, description = "Prometheus text format")))]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.metrics.render())
}
