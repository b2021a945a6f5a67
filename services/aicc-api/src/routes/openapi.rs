//! The OpenAPI document, generated from the route annotations.

use actix_web::{get, HttpResponse};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{admin, analytics, auth, canned, conversations, health, intents, kb, widget};

#[derive(OpenApi)]
#[openapi(
    info(title = "AICC API", description = "AI contact-center platform. Errors are `{\"error\": {\"code\", \"message\", \"details\"?}}`."),
    paths(
        health::healthz, health::readyz, health::metrics,
        auth::login,
        widget::create_conversation,
        conversations::list, conversations::get, conversations::post_message, conversations::list_messages,
        conversations::handoff, conversations::claim, conversations::release, conversations::transfer,
        conversations::close, conversations::feedback, conversations::csat, conversations::assist,
        admin::get_settings, admin::put_settings, admin::list_users, admin::create_user, admin::update_user,
        admin::delete_user, admin::identity_secret, analytics::analytics,
        canned::list, canned::create, canned::update, canned::remove,
        kb::import, kb::versions, kb::publish, kb::get_article, kb::put_article, kb::delete_article, kb::search,
        intents::import, intents::train, intents::get_job,
    ),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

#[utoipa::path(tag = "health", responses((status = 200, description = "This document")))]
#[get("/v1/openapi.json")]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
