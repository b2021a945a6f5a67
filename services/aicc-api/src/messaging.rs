//! What REST and WebSocket share: posting a message and announcing changes on
//! the bus. The Store is written first; the bus only signals what was stored.

use std::sync::Arc;

use aicc_core::{redact, Appended, Conversation, ConversationStatus, Message, NewMessage, Sender, Topic};
use serde_json::json;
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::routes::load_conversation;
use crate::AppState;

/// Validates, redacts and stores a message from a customer or the assigned
/// agent, then fans it out and sets off what follows (the bot's turn, agent
/// assist). Idempotent on `client_msg_id`.
pub async fn post_message(
    state: &Arc<AppState>,
    who: &Principal,
    conversation_id: Uuid,
    client_msg_id: Uuid,
    text: &str,
) -> ApiResult<Appended> {
    let conv = load_conversation(state, who, conversation_id).await?;
    let text = validate_text(text, state.settings.limits.message_chars)?;
    let tenant = state.tenant(conv.tenant_id).await?;
    let redacted = redact::redact(&text, &tenant.settings.pii);
    let (sender, sender_id) = match who {
        Principal::Customer { .. } => (Sender::Customer, None),
        Principal::Staff { user_id, .. } => (Sender::Agent, Some(*user_id)),
    };
    let refusal = match who {
        _ if conv.status == ConversationStatus::Closed => {
            Some(ApiError::conflict("conversation_closed", "the conversation is closed"))
        }
        Principal::Staff { user_id, .. }
            if conv.status != ConversationStatus::Assigned || conv.agent_id != Some(*user_id) =>
        {
            Some(ApiError::conflict("not_assigned", "claim the conversation before replying"))
        }
        _ => None,
    };
    if let Some(refusal) = refusal {
        // A retry of a message stored before the state changed (say, the
        // conversation closed since) still gets its original answer.
        return match state.store.message_by_client_id(conv.id, client_msg_id).await? {
            Some(existing) if existing.text == redacted.text => Ok(Appended { message: existing, created: false }),
            Some(_) => Err(aicc_core::StoreError::IdempotencyConflict.into()),
            None => Err(refusal),
        };
    }
    let appended = state
        .store
        .append_message(NewMessage {
            tenant_id: conv.tenant_id,
            conversation_id: conv.id,
            sender,
            sender_id,
            text: redacted.text,
            client_msg_id: Some(client_msg_id),
            intent: None,
            citations: vec![],
            quick_replies: vec![],
        })
        .await?;
    if appended.created {
        publish_message(state, &appended.message).await;
        if conv.status == ConversationStatus::Queued {
            // The queue shows each waiting conversation's latest words.
            publish_queue_changed(state, conv.tenant_id).await;
        }
        match (sender, conv.status) {
            (Sender::Customer, ConversationStatus::Bot) if state.settings.dialog.bot => {
                spawn_turn(state.clone(), conv.id, appended.message.clone())
            }
            (_, ConversationStatus::Queued | ConversationStatus::Assigned) => spawn_assist(state.clone(), conv.id),
            _ => {}
        }
    }
    Ok(appended)
}

/// The bot answers `message` off the request path: the customer gets the
/// `ack` at once, then `token` frames and the reply's `message`. A turn that
/// decides to hand over queues the conversation.
pub fn spawn_turn(state: Arc<AppState>, conversation_id: Uuid, message: Message) {
    tokio::spawn(async move {
        // The conversation as it is now: an agent may have taken it meanwhile.
        let conv = match state.store.find_conversation(conversation_id).await {
            Ok(Some(c)) if c.status == ConversationStatus::Bot => c,
            Ok(_) => return,
            Err(e) => return tracing::warn!(error = %e, "bot turn skipped: store unavailable"),
        };
        let tenant = match state.tenant(conv.tenant_id).await {
            Ok(t) => t,
            Err(e) => return tracing::warn!(error = %e.message, "bot turn skipped"),
        };
        match state.dialog.turn(&tenant, &conv, &message).await {
            Ok(report) => {
                if let Some(reason) = report.handoff {
                    if let Err(e) = crate::routing::hand_off(&state, &conv, None, reason.as_str()).await {
                        tracing::warn!(error = %e.message, "the bot's handoff failed");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, conversation = %conv.id, "bot turn failed"),
        }
    });
}

/// Recomputes the assist panel for the conversation's agents, off the request path.
pub fn spawn_assist(state: Arc<AppState>, conversation_id: Uuid) {
    tokio::spawn(async move {
        let Ok(Some(conv)) = state.store.find_conversation(conversation_id).await else { return };
        if let Ok(tenant) = state.tenant(conv.tenant_id).await {
            state.dialog.publish_assist(&tenant, &conv).await;
        }
    });
}

/// Keeps the summary of a conversation that just closed.
pub fn spawn_summary(state: Arc<AppState>, conv: Conversation) {
    tokio::spawn(async move {
        if let Ok(tenant) = state.tenant(conv.tenant_id).await {
            if let Err(e) = state.dialog.store_summary(&tenant, &conv).await {
                tracing::warn!(error = %e, "could not store the conversation summary");
            }
        }
    });
}

/// Trims and checks a message text: not blank, not over the limit, no control
/// characters other than newlines and tabs.
pub fn validate_text(text: &str, max_chars: usize) -> ApiResult<String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ApiError::validation("empty_text", "text must not be empty"));
    }
    if text.chars().count() > max_chars {
        return Err(ApiError::validation("text_too_long", format!("text is longer than {max_chars} characters")));
    }
    if text.chars().any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r') {
        return Err(ApiError::validation("invalid_text", "text contains control characters"));
    }
    Ok(text.to_string())
}

/// Publishing never fails a request: the message is stored, and subscribers
/// that miss the signal re-read the Store when the bus tells them they lagged.
async fn publish(state: &AppState, topic: Topic, frame: serde_json::Value) {
    if let Err(e) = state.bus.publish(&topic, frame).await {
        tracing::warn!(error = %e, topic = %topic.key(), "bus publish failed");
    }
}

pub async fn publish_message(state: &AppState, message: &Message) {
    let frame = json!({ "type": "message", "conversation_id": message.conversation_id, "message": message });
    publish(state, Topic::Conversation(message.conversation_id), frame).await;
}

pub async fn publish_queue_changed(state: &AppState, tenant_id: Uuid) {
    publish(state, Topic::Queue(tenant_id), json!({ "type": "queue_changed" })).await;
}

/// Tells the conversation's participants its new status, and the agents that the queue changed.
pub async fn publish_status(state: &AppState, conv: &Conversation) {
    let frame = status_frame(state, conv).await;
    publish(state, Topic::Conversation(conv.id), frame).await;
    publish_queue_changed(state, conv.tenant_id).await;
}

/// `status {conversation_id, status, agent?, queue_position?}`.
pub async fn status_frame(state: &AppState, conv: &Conversation) -> serde_json::Value {
    let mut frame = json!({ "type": "status", "conversation_id": conv.id, "status": conv.status });
    if let Some(agent_id) = conv.agent_id {
        if let Ok(Some(agent)) = state.store.user(conv.tenant_id, agent_id).await {
            frame["agent"] = json!({ "id": agent.id, "name": agent.name });
        }
    }
    if conv.status == ConversationStatus::Queued {
        if let Ok(queued) = state.store.list_conversations(conv.tenant_id, Some(ConversationStatus::Queued), 1000).await {
            // Oldest waits longest: position 1 is next.
            let ahead = queued.iter().filter(|c| (c.status_at, c.id) < (conv.status_at, conv.id)).count();
            frame["queue_position"] = json!(ahead + 1);
        }
    }
    frame
}

#[cfg(test)]
mod tests {
    use super::validate_text;

    #[test]
    fn text_rules() {
        assert_eq!(validate_text("  hi  ", 10).unwrap(), "hi");
        assert_eq!(validate_text(" \n\t ", 10).unwrap_err().code, "empty_text");
        assert_eq!(validate_text("가나다라마바사아자차카", 10).unwrap_err().code, "text_too_long");
        assert_eq!(validate_text("a\u{0}b", 10).unwrap_err().code, "invalid_text");
        assert!(validate_text("가나다라마바사아자차", 10).is_ok(), "the limit counts characters, not bytes");
    }
}
