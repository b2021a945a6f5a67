//! Background upkeep: bot conversations idle past their tenant's timeout close
//! themselves. Every replica runs the sweep; the conditional transition makes
//! each close happen once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aicc_core::{ConversationStatus, StoreError, Transition};
use chrono::{DateTime, Utc};

use crate::{messaging, AppState};

/// The shortest idle timeout a tenant may set (see `TenantSettings::validate`).
const MIN_IDLE: i64 = 60;
pub const SWEEP_EVERY: Duration = Duration::from_secs(30);

pub fn spawn(state: Arc<AppState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        loop {
            tick.tick().await;
            match close_idle(&state, Utc::now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(closed = n, "closed idle conversations"),
                Err(e) => tracing::warn!(error = %e, "idle sweep failed"),
            }
        }
    })
}

/// Closes every bot conversation idle past its tenant's timeout as of `now`;
/// returns how many it closed.
pub async fn close_idle(state: &AppState, now: DateTime<Utc>) -> Result<usize, StoreError> {
    let candidates = state
        .store
        .stale_conversations(ConversationStatus::Bot, now - chrono::Duration::seconds(MIN_IDLE), 500)
        .await?;
    let mut timeouts = HashMap::new();
    let mut closed = 0;
    for conv in candidates {
        if !timeouts.contains_key(&conv.tenant_id) {
            let secs = state.store.tenant(conv.tenant_id).await?.map(|t| t.settings.idle_timeout_secs).unwrap_or(1800);
            timeouts.insert(conv.tenant_id, secs as i64);
        }
        if (now - conv.updated_at).num_seconds() < timeouts[&conv.tenant_id] {
            continue;
        }
        let t = Transition {
            tenant_id: conv.tenant_id,
            conversation_id: conv.id,
            from: vec![ConversationStatus::Bot],
            to: ConversationStatus::Closed,
            agent_id: None,
            team: None,
            actor: None,
            kind: "conversation.idle_closed".into(),
            data: serde_json::json!({ "idle_secs": (now - conv.updated_at).num_seconds() }),
        };
        match state.store.transition(t).await {
            Ok(c) => {
                closed += 1;
                messaging::publish_status(state, &c).await;
                if let Ok(tenant) = state.tenant(c.tenant_id).await {
                    if let Err(e) = state.dialog.store_summary(&tenant, &c).await {
                        tracing::warn!(error = %e, "could not store the conversation summary");
                    }
                }
            }
            Err(StoreError::Conflict { .. }) => {} // moved on meanwhile, or another replica closed it
            Err(e) => return Err(e),
        }
    }
    Ok(closed)
}
