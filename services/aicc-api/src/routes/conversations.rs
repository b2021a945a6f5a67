use actix_web::{get, post, web, HttpResponse};
use aicc_core::{redact, Conversation, ConversationStatus, Message, NewFeedback, Rating, Role, Transition};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::load_conversation;
use crate::auth::{Principal, Staff};
use crate::error::{ApiError, ApiResult};
use crate::json::{ApiJson, OptionalJson};
use crate::{messaging, routing};
use crate::AppState;

use ConversationStatus::*;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `bot`, `queued`, `assigned` or `closed`.
    pub status: Option<String>,
    /// 1..=200, default 50.
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct ConversationList {
    pub conversations: Vec<Conversation>,
}

#[derive(Serialize, ToSchema)]
pub struct ConversationBody {
    pub conversation: Conversation,
    /// For staff, when the customer is verified: their other conversations, newest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub earlier: Option<Vec<Conversation>>,
}

#[derive(Serialize, ToSchema)]
pub struct MessageBody {
    pub message: Message,
}

#[derive(Serialize, ToSchema)]
pub struct MessageList {
    pub messages: Vec<Message>,
    /// Pass as `after_seq` for the next page; absent when this page is the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after_seq: Option<i64>,
}

/// The tenant's conversations, newest first (agents, admins).
#[utoipa::path(tag = "conversations", params(ListQuery), security(("bearer" = [])), responses(
    (status = 200, body = ConversationList),
    (status = 400, description = "`invalid_query`", body = crate::error::ErrorBody),
))]
#[get("/v1/conversations")]
pub async fn list(state: web::Data<AppState>, staff: Staff, q: web::Query<ListQuery>) -> ApiResult<HttpResponse> {
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(ConversationStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request("invalid_query", "status must be one of bot, queued, assigned, closed")
        })?),
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::bad_request("invalid_query", "limit must be between 1 and 200"));
    }
    let conversations = state.store.list_conversations(staff.tenant_id, status, limit).await?;
    Ok(HttpResponse::Ok().json(ConversationList { conversations }))
}

#[utoipa::path(tag = "conversations", security(("bearer" = [])), responses(
    (status = 200, body = ConversationBody),
    (status = 403, description = "`wrong_conversation` or `wrong_tenant`", body = crate::error::ErrorBody),
    (status = 404, body = crate::error::ErrorBody),
))]
#[get("/v1/conversations/{id}")]
pub async fn get(state: web::Data<AppState>, who: Principal, id: web::Path<Uuid>) -> ApiResult<HttpResponse> {
    let conversation = load_conversation(&state, &who, *id).await?;
    let earlier = match (&who, &conversation.customer.user_id) {
        (Principal::Staff { .. }, Some(user_id)) if conversation.customer.verified => {
            let all = state.store.customer_conversations(conversation.tenant_id, user_id, 20).await?;
            Some(all.into_iter().filter(|c| c.id != conversation.id).collect())
        }
        _ => None,
    };
    Ok(HttpResponse::Ok().json(ConversationBody { conversation, earlier }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostMessage {
    /// A UUID chosen by the client; sending it again is idempotent.
    pub client_msg_id: Uuid,
    pub text: String,
}

/// Posts a customer message (customer token) or an agent reply (the assigned
/// agent). PII is redacted before it is stored.
#[utoipa::path(tag = "conversations", request_body = PostMessage, security(("bearer" = [])), responses(
    (status = 201, description = "Stored", body = MessageBody),
    (status = 200, description = "Replay of a known client_msg_id with the same text", body = MessageBody),
    (status = 409, description = "`idempotency_conflict`, `conversation_closed` or `not_assigned`", body = crate::error::ErrorBody),
    (status = 422, description = "`empty_text`, `text_too_long` or `invalid_field`", body = crate::error::ErrorBody),
))]
#[post("/v1/conversations/{id}/messages")]
pub async fn post_message(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<Uuid>,
    body: ApiJson<PostMessage>,
) -> ApiResult<HttpResponse> {
    let PostMessage { client_msg_id, text } = body.0;
    let appended = messaging::post_message(&state.clone().into_inner(), &who, *id, client_msg_id, &text).await?;
    let body = MessageBody { message: appended.message };
    Ok(if appended.created { HttpResponse::Created().json(body) } else { HttpResponse::Ok().json(body) })
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct MessagesQuery {
    /// Return messages with a greater `seq` (default 0: from the start).
    pub after_seq: Option<i64>,
    /// 1..=500, default 100.
    pub limit: Option<i64>,
}

#[utoipa::path(tag = "conversations", params(MessagesQuery), security(("bearer" = [])), responses(
    (status = 200, body = MessageList),
    (status = 400, description = "`invalid_query`", body = crate::error::ErrorBody),
))]
#[get("/v1/conversations/{id}/messages")]
pub async fn list_messages(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<Uuid>,
    q: web::Query<MessagesQuery>,
) -> ApiResult<HttpResponse> {
    let after_seq = q.after_seq.unwrap_or(0);
    if after_seq < 0 {
        return Err(ApiError::bad_request("invalid_query", "after_seq must not be negative"));
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request("invalid_query", "limit must be between 1 and 500"));
    }
    let conv = load_conversation(&state, &who, *id).await?;
    let messages = state.store.list_messages(conv.id, after_seq, limit).await?;
    let next_after_seq = messages.last().filter(|m| messages.len() as i64 == limit && m.seq < conv.last_seq).map(|m| m.seq);
    Ok(HttpResponse::Ok().json(MessageList { messages, next_after_seq }))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct HandoffRequest {
    pub reason: Option<String>,
}

#[allow(clippy::too_many_arguments)]
async fn change(
    state: &AppState,
    who: &Principal,
    conv: &Conversation,
    from: &[ConversationStatus],
    to: ConversationStatus,
    agent_id: Option<Uuid>,
    team: Option<String>,
    data: serde_json::Value,
) -> ApiResult<Conversation> {
    let conversation = state
        .store
        .transition(Transition {
            tenant_id: conv.tenant_id,
            conversation_id: conv.id,
            from: from.to_vec(),
            to,
            agent_id,
            team,
            actor: who.user_id(),
            kind: format!("conversation.{}", to.as_str()),
            data,
        })
        .await?;
    messaging::publish_status(state, &conversation).await;
    Ok(conversation)
}

fn ok(conversation: Conversation) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(ConversationBody { conversation, earlier: None }))
}

/// Capacity may have freed up or work arrived: auto-assignment gets a go.
/// A failure here never fails the request that triggered it.
async fn reassign(state: &AppState, tenant_id: Uuid) {
    if let Err(e) = routing::assign_queued(state, tenant_id).await {
        tracing::warn!(error = %e, "automatic assignment failed");
    }
}

/// Asks for a human: `bot → queued`.
#[utoipa::path(tag = "handoff", request_body = HandoffRequest, security(("bearer" = [])), responses(
    (status = 200, body = ConversationBody),
    (status = 409, description = "`invalid_transition`", body = crate::error::ErrorBody),
))]
#[post("/v1/conversations/{id}/handoff")]
pub async fn handoff(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<Uuid>,
    body: OptionalJson<HandoffRequest>,
) -> ApiResult<HttpResponse> {
    let conv = load_conversation(&state, &who, *id).await?;
    let reason = body.0.and_then(|b| b.reason).unwrap_or_default();
    if reason.chars().count() > 500 {
        return Err(ApiError::validation("invalid_field", "reason is longer than 500 characters"));
    }
    ok(routing::hand_off(&state.clone().into_inner(), &conv, who.user_id(), &reason).await?)
}

/// An agent takes a queued conversation: `queued → assigned`. Of two agents
/// claiming at once, exactly one wins; the other gets 409.
#[utoipa::path(tag = "handoff", security(("bearer" = [])), responses(
    (status = 200, body = ConversationBody),
    (status = 409, description = "`invalid_transition` (already claimed)", body = crate::error::ErrorBody),
))]
#[post("/v1/conversations/{id}/claim")]
pub async fn claim(state: web::Data<AppState>, who: Principal, _staff: Staff, id: web::Path<Uuid>) -> ApiResult<HttpResponse> {
    let conv = load_conversation(&state, &who, *id).await?;
    ok(change(&state, &who, &conv, &[Queued], Assigned, who.user_id(), conv.team.clone(), serde_json::json!({})).await?)
}

/// The assigned agent (or an admin) hands the conversation back to the bot.
#[utoipa::path(tag = "handoff", security(("bearer" = [])), responses(
    (status = 200, body = ConversationBody),
    (status = 409, description = "`invalid_transition` or `not_assigned`", body = crate::error::ErrorBody),
))]
#[post("/v1/conversations/{id}/release")]
pub async fn release(state: web::Data<AppState>, who: Principal, staff: Staff, id: web::Path<Uuid>) -> ApiResult<HttpResponse> {
    let conv = load_conversation(&state, &who, *id).await?;
    require_owner(&conv, &staff)?;
    let released = change(&state, &who, &conv, &[Assigned], Bot, None, None, serde_json::json!({})).await?;
    reassign(&state, released.tenant_id).await;
    ok(released)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    pub agent_id: Option<Uuid>,
    pub team: Option<String>,
}

/// To an agent (stays `assigned`) or to a team (back to `queued`).
#[utoipa::path(tag = "handoff", request_body = TransferRequest, security(("bearer" = [])), responses(
    (status = 200, body = ConversationBody),
    (status = 409, description = "`invalid_transition` or `not_assigned`", body = crate::error::ErrorBody),
    (status = 422, description = "exactly one of agent_id and team is required", body = crate::error::ErrorBody),
))]
#[post("/v1/conversations/{id}/transfer")]
pub async fn transfer(
    state: web::Data<AppState>,
    who: Principal,
    staff: Staff,
    id: web::Path<Uuid>,
    body: ApiJson<TransferRequest>,
) -> ApiResult<HttpResponse> {
    let conv = load_conversation(&state, &who, *id).await?;
    if conv.status == Assigned {
        require_owner(&conv, &staff)?;
    }
    let data = serde_json::json!({ "from_agent": conv.agent_id });
    match (body.0.agent_id, body.0.team) {
        (Some(agent), None) => {
            let target = state.store.user(conv.tenant_id, agent).await?.ok_or_else(|| ApiError::not_found("agent"))?;
            ok(change(&state, &who, &conv, &[Queued, Assigned], Assigned, Some(target.id), conv.team.clone(), data).await?)
        }
        (None, Some(team)) if !team.trim().is_empty() && team.chars().count() <= 100 => {
            let team = Some(team.trim().to_string());
            let queued = change(&state, &who, &conv, &[Queued, Assigned], Queued, None, team, data).await?;
            reassign(&state, queued.tenant_id).await;
            let latest = state.store.conversation(queued.tenant_id, queued.id).await?.unwrap_or(queued);
            ok(latest)
        }
        _ => Err(ApiError::validation("invalid_transfer", "give exactly one of agent_id and team (1-100 characters)")),
    }
}

/// Ends the conversation: the customer, or staff (an assigned conversation only
/// by its agent or an admin).
#[utoipa::path(tag = "handoff", security(("bearer" = [])), responses(
    (status = 200, body = ConversationBody),
    (status = 409, description = "`invalid_transition` (already closed)", body = crate::error::ErrorBody),
))]
#[post("/v1/conversations/{id}/close")]
pub async fn close(state: web::Data<AppState>, who: Principal, id: web::Path<Uuid>) -> ApiResult<HttpResponse> {
    let conv = load_conversation(&state, &who, *id).await?;
    if let Principal::Staff { user_id, tenant_id, role, .. } = &who {
        require_owner(&conv, &Staff { user_id: *user_id, tenant_id: *tenant_id, role: *role })?;
    }
    let closed = change(&state, &who, &conv, &[Bot, Queued, Assigned], Closed, conv.agent_id, conv.team.clone(), serde_json::json!({})).await?;
    if conv.status == Assigned {
        reassign(&state, closed.tenant_id).await;
    }
    messaging::spawn_summary(state.clone().into_inner(), closed.clone());
    ok(closed)
}

/// Only the assigned agent or an admin may act on an assigned conversation.
fn require_owner(conv: &Conversation, staff: &Staff) -> ApiResult<()> {
    if conv.status == Assigned && conv.agent_id != Some(staff.user_id) && staff.role != Role::Admin {
        return Err(ApiError::conflict("not_assigned", "the conversation is assigned to another agent"));
    }
    Ok(())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    pub message_id: Uuid,
    pub rating: Rating,
    pub comment: Option<String>,
}

/// Thumbs up or down on a message (one per message; a second replaces the first).
#[utoipa::path(tag = "feedback", request_body = FeedbackRequest, security(("bearer" = [])), responses(
    (status = 204, description = "Recorded"),
    (status = 404, description = "No such message in this conversation", body = crate::error::ErrorBody),
))]
#[post("/v1/conversations/{id}/feedback")]
pub async fn feedback(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<Uuid>,
    body: ApiJson<FeedbackRequest>,
) -> ApiResult<HttpResponse> {
    let conv = load_conversation(&state, &who, *id).await?;
    let FeedbackRequest { message_id, rating, comment } = body.0;
    if comment.as_ref().is_some_and(|c| c.chars().count() > 2000) {
        return Err(ApiError::validation("invalid_field", "comment is longer than 2000 characters"));
    }
    state.store.message(conv.id, message_id).await?.ok_or_else(|| ApiError::not_found("message"))?;
    let tenant = state.tenant(conv.tenant_id).await?;
    let comment = comment.map(|c| redact::redact(&c, &tenant.settings.pii).text);
    state
        .store
        .put_feedback(NewFeedback { tenant_id: conv.tenant_id, conversation_id: conv.id, message_id, rating, comment })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CsatRequest {
    /// 1 (bad) to 5 (great).
    pub score: i64,
}

#[utoipa::path(tag = "feedback", request_body = CsatRequest, security(("bearer" = [])), responses(
    (status = 204, description = "Recorded"),
    (status = 422, description = "`invalid_score`", body = crate::error::ErrorBody),
))]
#[post("/v1/conversations/{id}/csat")]
pub async fn csat(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<Uuid>,
    body: ApiJson<CsatRequest>,
) -> ApiResult<HttpResponse> {
    let conv = load_conversation(&state, &who, *id).await?;
    let score = body.0.score;
    if !(1..=5).contains(&score) {
        return Err(ApiError::validation("invalid_score", "score must be an integer from 1 to 5"));
    }
    state.store.set_csat(conv.tenant_id, conv.id, score as i16).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Agent assist: the latest customer message's intent, the top knowledge
/// hits, a drafted reply grounded in them and a running summary.
#[utoipa::path(tag = "handoff", security(("bearer" = [])), responses(
    (status = 200, body = aicc_dialog::assist::Assist),
    (status = 403, description = "`forbidden` for customers, `wrong_tenant`", body = crate::error::ErrorBody),
))]
#[get("/v1/conversations/{id}/assist")]
pub async fn assist(state: web::Data<AppState>, who: Principal, _staff: Staff, id: web::Path<Uuid>) -> ApiResult<HttpResponse> {
    let conv = load_conversation(&state, &who, *id).await?;
    let tenant = state.tenant(conv.tenant_id).await?;
    let assist = state.dialog.assist(&tenant, &conv).await.map_err(|aicc_dialog::DialogError::Store(e)| ApiError::from(e))?;
    Ok(HttpResponse::Ok().json(assist))
}

