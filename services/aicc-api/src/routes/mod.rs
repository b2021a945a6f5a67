//! Route table. Each file holds one area of CONTRACT.md.

use actix_web::{web, HttpResponse};
use aicc_core::Conversation;
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

pub mod admin;
pub mod analytics;
pub mod auth;
pub mod canned;
pub mod conversations;
pub mod health;
pub mod intents;
pub mod kb;
pub mod openapi;
pub mod pages;
pub mod widget;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(health::healthz)
        .service(health::readyz)
        .service(health::metrics)
        .service(openapi::openapi_json)
        .service(auth::login)
        .service(widget::create_conversation)
        .service(conversations::list)
        .service(conversations::get)
        .service(conversations::post_message)
        .service(conversations::list_messages)
        .service(conversations::handoff)
        .service(conversations::claim)
        .service(conversations::release)
        .service(conversations::transfer)
        .service(conversations::close)
        .service(conversations::feedback)
        .service(conversations::csat)
        .service(conversations::assist)
        .service(admin::get_settings)
        .service(admin::put_settings)
        .service(admin::list_users)
        .service(admin::create_user)
        .service(admin::update_user)
        .service(admin::delete_user)
        .service(admin::identity_secret)
        .service(analytics::analytics)
        .service(kb::import)
        .service(kb::versions)
        .service(kb::publish)
        .service(kb::get_article)
        .service(kb::put_article)
        .service(kb::delete_article)
        .service(kb::search)
        .service(intents::import)
        .service(intents::train)
        .service(intents::get_job)
        .service(canned::list)
        .service(canned::create)
        .service(canned::update)
        .service(canned::remove)
        .service(crate::ws::websocket)
        .configure(pages::configure)
        .default_service(web::to(not_found));
}

/// No route matched: 405 when the path exists with other methods (known from
/// the OpenAPI document, which lists every route), else 404.
async fn not_found(req: actix_web::HttpRequest) -> ApiResult<HttpResponse> {
    use std::sync::LazyLock;
    use utoipa::OpenApi;
    static ROUTES: LazyLock<Vec<(actix_web::dev::ResourceDef, Vec<String>)>> = LazyLock::new(|| {
        let doc = openapi::ApiDoc::openapi();
        let mut routes: Vec<_> = doc
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let methods = [
                    ("GET", item.get.is_some()),
                    ("POST", item.post.is_some()),
                    ("PUT", item.put.is_some()),
                    ("DELETE", item.delete.is_some()),
                ];
                let allowed = methods.iter().filter(|(_, on)| *on).map(|(m, _)| m.to_string()).collect();
                (actix_web::dev::ResourceDef::new(path.as_str()), allowed)
            })
            .collect();
        routes.push((actix_web::dev::ResourceDef::new("/v1/ws"), vec!["GET".into()]));
        routes
    });
    let allowed: Vec<&str> = ROUTES
        .iter()
        .filter(|(def, _)| def.is_match(req.path()))
        .flat_map(|(_, methods)| methods.iter().map(String::as_str))
        .collect();
    if allowed.is_empty() || req.method() == actix_web::http::Method::OPTIONS {
        return Err(ApiError::new(actix_web::http::StatusCode::NOT_FOUND, "not_found", "no such endpoint"));
    }
    let allow = allowed.join(", ");
    Err(ApiError::new(
        actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed here; use {allow}", req.method()),
    ))
}

pub fn path_config() -> web::PathConfig {
    web::PathConfig::default()
        .error_handler(|e, _| ApiError::bad_request("invalid_path", format!("invalid path parameter: {e}")).into())
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default()
        .error_handler(|e, _| ApiError::bad_request("invalid_query", format!("invalid query string: {e}")).into())
}

/// Loads a conversation the caller may see: a customer only its own, staff
/// only their tenant's (another tenant's is a 403, not a 404, so a
/// misconfigured client learns why).
pub async fn load_conversation(state: &AppState, who: &Principal, id: Uuid) -> ApiResult<Conversation> {
    who.require_conversation(id)?;
    let conv = state.store.find_conversation(id).await?.ok_or_else(|| ApiError::not_found("conversation"))?;
    if conv.tenant_id != who.tenant_id() {
        return Err(ApiError::forbidden("wrong_tenant", "this conversation belongs to another tenant"));
    }
    Ok(conv)
}
