//! Request middleware: metrics and tracing for every request, and CORS for the
//! endpoints a widget on another origin calls.

use std::sync::OnceLock;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::HttpResponse;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The process-wide Prometheus recorder (installed once, even with several
/// servers in one process, as in the tests).
pub fn prometheus_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; the handle still renders ours.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = Instant::now();
    let method = req.method().to_string();
    let path = req.path().to_string();
    let res = next.call(req).await?;
    let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".into());
    let status = res.status().as_u16().to_string();
    let elapsed = start.elapsed();
    metrics::counter!("aicc_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status.clone()).increment(1);
    metrics::histogram!("aicc_http_request_duration_seconds", "method" => method.clone(), "route" => route).record(elapsed.as_secs_f64());
    tracing::info!(%method, %path, %status, elapsed_ms = elapsed.as_millis() as u64, "request");
    Ok(res)
}

/// Paths a customer's browser calls from the company's site.
fn widget_path(path: &str) -> bool {
    path.starts_with("/v1/widget/") || path.starts_with("/v1/conversations/")
}

/// Answers preflights and echoes the origin on widget paths. Bearer tokens, not
/// cookies, authorise these calls, so the echo grants no ambient authority; the
/// tenant's allowed origins are enforced where a conversation (and its token)
/// is created.
pub async fn cors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let Some(origin) = origin.filter(|_| widget_path(req.path())) else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    if req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        let resp = HttpResponse::build(StatusCode::NO_CONTENT)
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin))
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"))
            .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, "authorization, content-type"))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
            .insert_header((header::VARY, "Origin"))
            .finish();
        return Ok(req.into_response(resp));
    }
    let mut res = next.call(req).await?.map_into_boxed_body();
    res.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    // The widget on another origin reads how long to wait after a 429.
    res.headers_mut().insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, header::HeaderValue::from_static("retry-after"));
    res.headers_mut().insert(header::VARY, header::HeaderValue::from_static("Origin"));
    Ok(res)
}
