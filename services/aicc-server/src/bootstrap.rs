//! First-start setup: the demo tenant and its admin, and `admin create-user`.

use std::sync::Arc;

use aicc_api::auth::{generate_password, hash_password, validate_password};
use aicc_core::settings::TenantSettings;
use aicc_core::{valid_slug, NewEvent, NewUser, Role, Store};
use anyhow::Context;

pub struct Demo {
    pub tenant: String,
    pub email: String,
    pub password: String,
}

pub const DEMO_TENANT: &str = "demo";
pub const DEMO_ADMIN: &str = "admin@demo.local";
/// The demo admin's initial password is kept so the banner can show it on every
/// start (it is a demo tenant; `AICC_DEMO=0` turns it off).
const DEMO_PASSWORD_SECRET: &str = "demo_admin_password";

/// Creates the demo tenant and its admin if missing (safe to run on every
/// start, and on several replicas at once).
pub async fn demo_tenant(store: &Arc<dyn Store>) -> anyhow::Result<Demo> {
    let (tenant, created) = store.ensure_tenant(DEMO_TENANT, "Hanbit Bank (demo)", &TenantSettings::default()).await?;
    let password = store.get_or_create_secret(DEMO_PASSWORD_SECRET, &generate_password()).await?;
    if store.user_by_email(tenant.id, DEMO_ADMIN).await?.is_none() {
        let pw = password.clone();
        let password_hash = tokio::task::spawn_blocking(move || hash_password(&pw)).await??;
        let user = NewUser {
            tenant_id: tenant.id,
            email: DEMO_ADMIN.into(),
            name: "Demo Admin".into(),
            role: Role::Admin,
            teams: vec![],
            max_concurrent: 5,
            password_hash,
        };
        match store.create_user(user).await {
            Ok(_) | Err(aicc_core::StoreError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if created {
        tracing::info!("created the demo tenant");
    }
    Ok(Demo { tenant: DEMO_TENANT.into(), email: DEMO_ADMIN.into(), password })
}

pub struct CreatedUser {
    pub user_id: uuid::Uuid,
    pub email: String,
    pub generated_password: Option<String>,
}

pub async fn create_user(
    store: &Arc<dyn Store>,
    tenant: &str,
    email: &str,
    role: Role,
    name: Option<&str>,
    password: Option<String>,
) -> anyhow::Result<CreatedUser> {
    anyhow::ensure!(valid_slug(tenant), "tenant must be lower-case letters, digits and '-' (got `{tenant}`)");
    let email = aicc_api::routes::admin::validate_email(email).map_err(|e| anyhow::anyhow!(e.message))?;
    let generated = password.is_none();
    let password = password.unwrap_or_else(generate_password);
    validate_password(&password).map_err(|e| anyhow::anyhow!(e.message))?;
    let (tenant, _) = store.ensure_tenant(tenant, tenant, &TenantSettings::default()).await?;
    let pw = password.clone();
    let password_hash = tokio::task::spawn_blocking(move || hash_password(&pw)).await??;
    let name = name.map(str::to_string).unwrap_or_else(|| email.split('@').next().unwrap_or("").to_string());
    let user = store
        .create_user(NewUser {
            tenant_id: tenant.id,
            email: email.clone(),
            name,
            role,
            teams: vec![],
            max_concurrent: 5,
            password_hash,
        })
        .await
        .with_context(|| format!("cannot create {email}"))?;
    store
        .record_event(NewEvent {
            tenant_id: tenant.id,
            conversation_id: None,
            actor: None,
            kind: "user.created".into(),
            data: serde_json::json!({ "user_id": user.id, "role": role, "via": "cli" }),
        })
        .await?;
    Ok(CreatedUser { user_id: user.id, email, generated_password: generated.then_some(password) })
}

/// The demo tenant's FAQ, compiled in (demo/README.md).
pub const DEMO_FAQ: &[u8] = include_bytes!("../../../demo/faq.csv");

/// Imports and publishes the demo FAQ when the demo tenant has no knowledge
/// yet (first start of any backend). Later starts leave the tenant's own
/// edits alone.
pub async fn demo_knowledge(store: &Arc<dyn Store>, kb: &dyn aicc_core::KnowledgeIndex) -> anyhow::Result<()> {
    let tenant = store.tenant_by_slug(DEMO_TENANT).await?.context("the demo tenant is missing")?;
    if !store.kb_versions(tenant.id).await?.is_empty() {
        return Ok(());
    }
    let upload = aicc_core::Upload {
        bytes: DEMO_FAQ.to_vec(),
        content_type: Some("text/csv".into()),
        filename: Some("faq.csv".into()),
    };
    let version = kb.import(tenant.id, upload, aicc_core::ImportMode::Replace).await?;
    // Two replicas starting at once may both import; publishing the newest of
    // them is harmless (same content).
    kb.publish(tenant.id, version.version).await?;
    tracing::info!(articles = version.article_count, version = version.version, "published the demo knowledge");
    Ok(())
}
