//! Getting queued conversations to agents: automatic assignment (round-robin
//! or least-busy, per the tenant's settings) and what the customer is told
//! while waiting (queue position, no agent online, out of hours).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aicc_core::settings::AssignmentMode;
use aicc_core::{Conversation, ConversationStatus, NewMessage, Role, Sender, StoreError, Transition};
use uuid::Uuid;

use crate::error::ApiResult;
use crate::{messaging, AppState};

/// Per-tenant round-robin cursors (per replica; good enough to spread load).
#[derive(Default)]
pub struct RoundRobin {
    next: Mutex<HashMap<Uuid, usize>>,
}

impl RoundRobin {
    fn pick(&self, tenant_id: Uuid, candidates: &[Uuid]) -> Option<Uuid> {
        if candidates.is_empty() {
            return None;
        }
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let i = next.entry(tenant_id).or_insert(0);
        let chosen = candidates[*i % candidates.len()];
        *i = i.wrapping_add(1);
        Some(chosen)
    }
}

/// Assigns the tenant's queued conversations, oldest first, to online agents
/// of the right team that are under their concurrency limit. Safe to run on
/// several replicas at once: the conditional transition lets one win.
pub async fn assign_queued(state: &AppState, tenant_id: Uuid) -> ApiResult<()> {
    let Some(tenant) = state.store.tenant(tenant_id).await? else { return Ok(()) };
    let mode = tenant.settings.assignment;
    if mode == AssignmentMode::Manual {
        return Ok(());
    }
    let mut queued = state.store.list_conversations(tenant_id, Some(ConversationStatus::Queued), 200).await?;
    queued.sort_by_key(|c| (c.status_at, c.id));
    if queued.is_empty() {
        return Ok(());
    }
    let online = state.bus.online(tenant_id).await.unwrap_or_default();
    let agents: Vec<_> = state
        .store
        .list_users(tenant_id)
        .await?
        .into_iter()
        .filter(|u| u.role == Role::Agent && online.contains(&u.id))
        .collect();
    let mut load: HashMap<Uuid, i64> = state.store.agent_loads(tenant_id).await?.into_iter().collect();
    for conv in queued {
        let mut candidates: Vec<_> = agents
            .iter()
            .filter(|a| conv.team.as_ref().is_none_or(|t| a.teams.contains(t)))
            .filter(|a| load.get(&a.id).copied().unwrap_or(0) < a.max_concurrent as i64)
            .collect();
        let chosen = match mode {
            AssignmentMode::LeastBusy => {
                candidates.sort_by_key(|a| (load.get(&a.id).copied().unwrap_or(0), a.id));
                candidates.first().map(|a| a.id)
            }
            _ => {
                let ids: Vec<Uuid> = candidates.iter().map(|a| a.id).collect();
                state.round_robin.pick(tenant_id, &ids)
            }
        };
        let Some(agent_id) = chosen else { continue };
        let t = Transition {
            tenant_id,
            conversation_id: conv.id,
            from: vec![ConversationStatus::Queued],
            to: ConversationStatus::Assigned,
            agent_id: Some(agent_id),
            team: conv.team.clone(),
            actor: None,
            kind: "conversation.assigned".into(),
            data: serde_json::json!({ "auto": mode }),
        };
        match state.store.transition(t).await {
            Ok(assigned) => {
                *load.entry(agent_id).or_insert(0) += 1;
                messaging::publish_status(state, &assigned).await;
            }
            Err(StoreError::Conflict { .. }) => {} // claimed meanwhile
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Queues a bot conversation for a human (`bot → queued`): the customer's
/// request, or the bot's decision (`actor` None, `reason` e.g. `frustration`).
/// Tells the customer about the wait, tries automatic assignment and sends
/// the agents the assist panel.
pub async fn hand_off(state: &Arc<AppState>, conv: &Conversation, actor: Option<Uuid>, reason: &str) -> ApiResult<Conversation> {
    let queued = state
        .store
        .transition(Transition {
            tenant_id: conv.tenant_id,
            conversation_id: conv.id,
            from: vec![ConversationStatus::Bot],
            to: ConversationStatus::Queued,
            agent_id: None,
            team: conv.team.clone(),
            actor,
            kind: "conversation.queued".into(),
            data: serde_json::json!({ "reason": reason }),
        })
        .await?;
    messaging::publish_status(state, &queued).await;
    if let Err(e) = announce_wait(state, &queued).await {
        tracing::warn!(error = %e.message, "could not tell the customer about the wait");
    }
    if let Err(e) = assign_queued(state, queued.tenant_id).await {
        tracing::warn!(error = %e.message, "automatic assignment failed");
    }
    messaging::spawn_assist(state.clone(), queued.id);
    Ok(state.store.conversation(queued.tenant_id, queued.id).await?.unwrap_or(queued))
}

/// After a handoff: tells the customer, in their language, whether and when
/// an agent will come (a `system` message, stored like any other).
pub async fn announce_wait(state: &AppState, conv: &Conversation) -> ApiResult<()> {
    let Some(tenant) = state.store.tenant(conv.tenant_id).await? else { return Ok(()) };
    let settings = &tenant.settings;
    let now = chrono::Utc::now();
    let text = if !settings.business_hours.is_open(now) {
        let opens = settings.business_hours.next_opening(now).unwrap_or_default();
        settings.text("after_hours", &conv.locale).map(|t| t.replace("{opens}", &opens))
    } else if state.bus.online(conv.tenant_id).await.unwrap_or_default().is_empty() {
        settings.text("offline", &conv.locale).map(str::to_string)
    } else {
        None
    };
    if let Some(text) = text {
        let appended = state
            .store
            .append_message(NewMessage {
                tenant_id: conv.tenant_id,
                conversation_id: conv.id,
                sender: Sender::System,
                sender_id: None,
                text,
                client_msg_id: None,
                intent: None,
                citations: vec![],
                quick_replies: vec![],
            })
            .await?;
        messaging::publish_message(state, &appended.message).await;
    }
    Ok(())
}
