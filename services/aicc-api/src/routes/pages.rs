//! The web pages: the demo host page at `/`, the embeddable widget at
//! `/widget.js`, the agent dashboard at `/agent/` and the admin console at
//! `/admin/`. Built into the binary (build.rs), or read from `AICC_WEB_DIR`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::LazyLock;

use actix_web::http::{header, StatusCode};
use actix_web::{guard, web, HttpRequest, HttpResponse};

use crate::error::ApiError;
use crate::AppState;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/web_files.rs"));
}

/// The folders of web/ served under their own name.
const AREAS: &str = "agent|admin|common|demo|widget";

/// The dashboards talk only to this server; the demo page also loads the
/// widget from it. Inline styles are allowed (the widget sets a few), inline
/// scripts are not.
const CSP: &str = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub fn configure(cfg: &mut web::ServiceConfig) {
    let get = || guard::Any(guard::Get()).or(guard::Head());
    cfg.service(web::resource("/").guard(get()).to(|req, s| serve(req, s, "demo/index.html".into())))
        .service(web::resource("/widget.js").guard(get()).to(|req, s| serve(req, s, "widget/widget.js".into())))
        .service(web::resource(format!("/{{area:{AREAS}}}")).guard(get()).to(|req: HttpRequest| async move {
            // `/agent` → `/agent/`, so the page's relative module imports resolve.
            let to = format!("{}/", req.path());
            HttpResponse::PermanentRedirect().insert_header((header::LOCATION, to)).finish()
        }))
        .service(web::resource(format!("/{{area:{AREAS}}}/{{rest:.*}}")).guard(get()).to(
            |req: HttpRequest, s: web::Data<AppState>| {
                let area = req.match_info().get("area").unwrap_or_default().to_string();
                let rest = req.match_info().get("rest").unwrap_or_default().to_string();
                let path = if rest.is_empty() || rest.ends_with('/') { format!("{area}/{rest}index.html") } else { format!("{area}/{rest}") };
                serve(req, s, path)
            },
        ));
}

async fn serve(req: HttpRequest, state: web::Data<AppState>, path: String) -> Result<HttpResponse, ApiError> {
    let bytes = read(&state, &path).await?.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such page"))?;
    let etag = format!("\"{:016x}\"", fingerprint(&path, &bytes));
    let fresh = req.headers().get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| v == etag);
    let mut resp = if fresh { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    resp.insert_header((header::ETAG, etag))
        // Always revalidate: a new release's pages show at once, unchanged ones cost a 304.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CONTENT_TYPE, content_type(&path)));
    if path.ends_with(".html") {
        resp.insert_header((header::CONTENT_SECURITY_POLICY, CSP)).insert_header((header::REFERRER_POLICY, "same-origin"));
    }
    if path.starts_with("widget/") {
        // The widget runs on customers' sites (another origin).
        resp.insert_header(("Cross-Origin-Resource-Policy", "cross-origin"));
    }
    if fresh {
        return Ok(resp.finish());
    }
    Ok(resp.body(bytes.into_owned()))
}

/// The file's bytes from the configured folder, else from the binary.
async fn read(state: &AppState, path: &str) -> Result<Option<Cow<'static, [u8]>>, ApiError> {
    // Only plain names: no `..`, no hidden files, no absolute paths.
    if path.split('/').any(|part| part.is_empty() || part.starts_with('.')) {
        return Ok(None);
    }
    let Some(dir) = &state.settings.web_dir else {
        static INDEX: LazyLock<HashMap<&'static str, &'static [u8]>> = LazyLock::new(|| embedded::FILES.iter().copied().collect());
        return Ok(INDEX.get(path).map(|b| Cow::Borrowed(*b)));
    };
    match tokio::fs::read(dir.join(path)).await {
        Ok(bytes) => Ok(Some(Cow::Owned(bytes))),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::IsADirectory | std::io::ErrorKind::NotADirectory) => Ok(None),
        Err(e) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "web_dir_unreadable", format!("cannot read {path}: {e}"))),
    }
}

fn fingerprint(path: &str, bytes: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut h);
    bytes.hash(&mut h);
    h.finish()
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "csv" => "text/csv; charset=utf-8",
        "txt" | "md" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Every embedded page, for tests and `aicc serve`'s banner.
pub fn embedded_paths() -> impl Iterator<Item = &'static str> {
    embedded::FILES.iter().map(|(p, _)| *p)
}
