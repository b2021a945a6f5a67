//! `GET /v1/ws?token=…`: the live channel for customers and agents
//! (docs/protocol.md describes every frame, error and close code).
//!
//! One task per connection runs a single `select!` over client frames, bus
//! events and a heartbeat. Messages are stored before they are acknowledged
//! or fanned out; each connection tracks the last `seq` it sent per
//! conversation, so it sends every message once, in order, and re-reads the
//! Store whenever it sees a gap or the bus says it lagged.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{get, web, HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason, Message as WsMessage, ProtocolError, Session};
use aicc_core::{BusEvent, BusStream, ConversationStatus, Topic};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_stream::StreamMap;
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::messaging;
use crate::routes::load_conversation;
use crate::AppState;

/// How often the server pings, and refreshes an agent's presence.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// A client silent this long (no frame, no pong) is closed with 4000.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(45);
/// A client that does not take a frame within this long is closed with 4001.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Client frames are counted per window (`limits.ws_frames_per_10s`); beyond the
/// limit an `error` frame, and after `MAX_STRIKES` windows over the limit the
/// connection is closed with 1008.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);
pub const MAX_STRIKES: u32 = 3;
const PRESENCE_TTL: Duration = Duration::from_secs(45);
const REPLAY_PAGE: i64 = 500;

pub const CLOSE_IDLE: u16 = 4000;
pub const CLOSE_SLOW_CONSUMER: u16 = 4001;

#[get("/v1/ws")]
pub async fn websocket(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
    who: Principal,
) -> Result<HttpResponse, ApiError> {
    let (response, session, stream) =
        actix_ws::handle(&req, body).map_err(|e| ApiError::bad_request("not_websocket", e.to_string()))?;
    let stream = stream.max_frame_size(state.settings.limits.body_bytes);
    let conn = Connection::new(state.into_inner(), who, session);
    actix_web::rt::spawn(conn.run(stream));
    Ok(response)
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientFrame {
    Hello { conversation_id: Option<Uuid>, last_seq: Option<i64> },
    Message { conversation_id: Uuid, client_msg_id: Uuid, text: String },
    Typing { conversation_id: Uuid, on: bool },
    Subscribe { conversation_id: Uuid, last_seq: Option<i64> },
    Unsubscribe { conversation_id: Uuid },
}

const FRAME_TYPES: &[&str] = &["hello", "message", "typing", "subscribe", "unsubscribe"];

/// Why the loop stopped.
enum Stop {
    /// The client went away; nothing to send.
    Gone,
    Close(CloseCode, &'static str),
}

impl From<actix_ws::Closed> for Stop {
    fn from(_: actix_ws::Closed) -> Self {
        Stop::Gone
    }
}

struct Connection {
    state: Arc<AppState>,
    who: Principal,
    id: Uuid,
    session: Session,
    subs: StreamMap<Uuid, BusStream>,
    /// Conversations this client has synced (hello/subscribe), with the last seq sent.
    synced: HashMap<Uuid, i64>,
    /// Conversations this client was found allowed to see.
    allowed: HashSet<Uuid>,
    queue: Option<BusStream>,
    last_seen: Instant,
    window: (Instant, u32),
    strikes: u32,
    /// Whether this connection has announced its agent online (so a Redis
    /// outage or a heartbeat does not re-announce it every time).
    announced: bool,
}

impl Connection {
    fn new(state: Arc<AppState>, who: Principal, session: Session) -> Self {
        Self {
            state,
            who,
            id: Uuid::new_v4(),
            session,
            subs: StreamMap::new(),
            synced: HashMap::new(),
            allowed: HashSet::new(),
            queue: None,
            last_seen: Instant::now(),
            window: (Instant::now(), 0),
            strikes: 0,
            announced: false,
        }
    }

    async fn run(mut self, mut stream: actix_ws::MessageStream) {
        metrics::gauge!("aicc_ws_connections").increment(1.0);
        if let Principal::Customer { conversation_id, .. } = self.who {
            self.state.customer_sockets.opened(conversation_id);
        }
        let stop = match self.start().await {
            Ok(()) => self.serve(&mut stream).await,
            Err(stop) => stop,
        };
        self.finish().await;
        metrics::gauge!("aicc_ws_connections").decrement(1.0);
        if let Stop::Close(code, description) = stop {
            let reason = CloseReason { code, description: Some(description.to_string()) };
            let _ = tokio::time::timeout(Duration::from_secs(1), self.session.close(Some(reason))).await;
        }
    }

    async fn start(&mut self) -> Result<(), Stop> {
        match self.who.clone() {
            Principal::Customer { conversation_id, .. } => {
                self.allowed.insert(conversation_id);
                self.subscribe_bus(conversation_id).await?;
                self.send(json!({ "type": "welcome", "user": null, "role": "customer", "conversations": [conversation_id] }))
                    .await
            }
            Principal::Staff { user_id, tenant_id, role, .. } => {
                let user = self.state.store.user(tenant_id, user_id).await.ok().flatten();
                let Some(user) = user else { return Err(Stop::Close(CloseCode::Policy, "user no longer exists")) };
                let mine: Vec<Uuid> = self
                    .state
                    .store
                    .list_conversations(tenant_id, Some(ConversationStatus::Assigned), 200)
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|c| c.agent_id == Some(user_id))
                    .map(|c| c.id)
                    .collect();
                self.queue = self.state.bus.subscribe(&Topic::Queue(tenant_id)).await.ok();
                self.send(json!({
                    "type": "welcome",
                    "user": { "id": user.id, "name": user.name },
                    "role": role,
                    "conversations": mine,
                }))
                .await?;
                self.set_presence(true).await;
                self.send_queue().await
            }
        }
    }

    async fn serve(&mut self, stream: &mut actix_ws::MessageStream) -> Stop {
        // Jittered start: connections opened together must not ping together.
        let jitter = HEARTBEAT.mul_f64(rand::random::<f64>());
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + jitter, HEARTBEAT);
        loop {
            let step = tokio::select! {
                frame = stream.recv() => self.on_client(frame).await,
                Some((conv, event)) = self.subs.next(), if !self.subs.is_empty() => self.on_conversation_event(conv, event).await,
                Some(event) = next_or_pending(&mut self.queue) => self.on_queue_event(event).await,
                _ = heartbeat.tick() => self.on_heartbeat().await,
            };
            if let Err(stop) = step {
                return stop;
            }
        }
    }

    async fn finish(&mut self) {
        match self.who {
            Principal::Staff { .. } => self.set_presence(false).await,
            // Nobody is reading the streamed answer: stop generating it (the
            // turn still stores a reply from the knowledge base). Not while
            // another socket of the customer's is open here: a reconnect's new
            // socket often opens before the old one's close arrives.
            Principal::Customer { conversation_id, .. } => {
                if self.state.customer_sockets.closed(conversation_id) {
                    self.state.dialog.cancel(conversation_id)
                }
            }
        }
    }

    async fn send(&mut self, frame: Value) -> Result<(), Stop> {
        self.send_text(frame.to_string()).await
    }

    async fn send_text(&mut self, text: String) -> Result<(), Stop> {
        match tokio::time::timeout(SEND_TIMEOUT, self.session.text(text)).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(Stop::Close(CloseCode::Other(CLOSE_SLOW_CONSUMER), "slow consumer")),
        }
    }

    async fn send_error(&mut self, code: &str, message: &str, conversation_id: Option<Uuid>) -> Result<(), Stop> {
        let mut frame = json!({ "type": "error", "code": code, "message": message });
        if let Some(id) = conversation_id {
            frame["conversation_id"] = json!(id);
        }
        self.send(frame).await
    }

    async fn on_client(&mut self, frame: Option<Result<WsMessage, ProtocolError>>) -> Result<(), Stop> {
        let frame = match frame {
            None => return Err(Stop::Gone),
            Some(Err(ProtocolError::Overflow)) => return Err(Stop::Close(CloseCode::Size, "frame too large")),
            Some(Err(_)) => return Err(Stop::Close(CloseCode::Protocol, "protocol error")),
            Some(Ok(frame)) => frame,
        };
        self.last_seen = Instant::now();
        match frame {
            WsMessage::Text(text) => match self.rate_check().await? {
                true => self.on_text(&text).await,
                false => Ok(()),
            },
            WsMessage::Binary(_) => match self.rate_check().await? {
                true => self.send_error("unsupported_frame", "binary frames are not supported; send JSON text frames", None).await,
                false => Ok(()),
            },
            WsMessage::Ping(bytes) => match tokio::time::timeout(SEND_TIMEOUT, self.session.pong(&bytes)).await {
                Ok(result) => Ok(result?),
                Err(_) => Err(Stop::Close(CloseCode::Other(CLOSE_SLOW_CONSUMER), "slow consumer")),
            },
            WsMessage::Close(_) => Err(Stop::Close(CloseCode::Normal, "bye")),
            WsMessage::Pong(_) | WsMessage::Continuation(_) | WsMessage::Nop => Ok(()),
        }
    }

    /// Counts a client frame; `false` means it is over the limit and dropped.
    async fn rate_check(&mut self) -> Result<bool, Stop> {
        let limit = self.state.settings.limits.ws_frames_per_10s;
        let now = Instant::now();
        if now.duration_since(self.window.0) >= RATE_WINDOW {
            if self.window.1 <= limit {
                self.strikes = 0;
            }
            self.window = (now, 0);
        }
        self.window.1 += 1;
        if self.window.1 == limit + 1 {
            self.strikes += 1;
            if self.strikes >= MAX_STRIKES {
                return Err(Stop::Close(CloseCode::Policy, "rate limit exceeded"));
            }
            self.send_error("rate_limited", "too many frames; slow down", None).await?;
        }
        Ok(self.window.1 <= limit)
    }

    async fn on_text(&mut self, text: &str) -> Result<(), Stop> {
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return self.send_error("malformed_frame", &format!("not JSON: {e}"), None).await,
        };
        match value.get("type").and_then(Value::as_str) {
            Some(t) if FRAME_TYPES.contains(&t) => {}
            Some(t) => {
                let msg = format!("unknown frame type `{t}`");
                return self.send_error("unknown_type", &msg, None).await;
            }
            None => return self.send_error("invalid_frame", "every frame needs a string `type`", None).await,
        }
        let frame: ClientFrame = match serde_json::from_value(value) {
            Ok(f) => f,
            Err(e) => return self.send_error("invalid_frame", &e.to_string(), None).await,
        };
        match frame {
            ClientFrame::Hello { conversation_id, last_seq } => self.on_hello(conversation_id, last_seq).await,
            ClientFrame::Subscribe { conversation_id, last_seq } => self.on_subscribe(conversation_id, last_seq).await,
            ClientFrame::Unsubscribe { conversation_id } => {
                self.subs.remove(&conversation_id);
                self.synced.remove(&conversation_id);
                Ok(())
            }
            ClientFrame::Message { conversation_id, client_msg_id, text } => {
                self.on_message(conversation_id, client_msg_id, &text).await
            }
            ClientFrame::Typing { conversation_id, on } => self.on_typing(conversation_id, on).await,
        }
    }

    async fn on_hello(&mut self, conversation_id: Option<Uuid>, last_seq: Option<i64>) -> Result<(), Stop> {
        match (&self.who, conversation_id) {
            (Principal::Customer { conversation_id: mine, .. }, requested) => {
                let mine = *mine;
                if requested.is_some_and(|r| r != mine) {
                    return self.send_error("wrong_conversation", "this token is for another conversation", requested).await;
                }
                self.sync(mine, last_seq).await
            }
            (Principal::Staff { .. }, Some(id)) => self.on_subscribe(id, last_seq).await,
            (Principal::Staff { .. }, None) => Ok(()),
        }
    }

    async fn on_subscribe(&mut self, id: Uuid, last_seq: Option<i64>) -> Result<(), Stop> {
        if matches!(self.who, Principal::Customer { .. }) {
            return self.send_error("forbidden", "customers are subscribed to their conversation already", Some(id)).await;
        }
        if let Err(e) = self.authorize(id).await {
            return self.send_error(e.code, &e.message, Some(id)).await;
        }
        self.sync(id, last_seq).await
    }

    async fn authorize(&mut self, id: Uuid) -> ApiResult<()> {
        if !self.allowed.contains(&id) {
            load_conversation(&self.state, &self.who, id).await?;
            self.allowed.insert(id);
        }
        Ok(())
    }

    async fn subscribe_bus(&mut self, id: Uuid) -> Result<(), Stop> {
        if !self.subs.contains_key(&id) {
            match self.state.bus.subscribe(&Topic::Conversation(id)).await {
                Ok(stream) => {
                    self.subs.insert(id, stream);
                }
                Err(_) => return Err(Stop::Close(CloseCode::Again, "bus unavailable")),
            }
        }
        Ok(())
    }

    /// Subscribes (first, so nothing falls between), replays what the client
    /// missed after `last_seq` (default: everything), then sends the status.
    async fn sync(&mut self, id: Uuid, last_seq: Option<i64>) -> Result<(), Stop> {
        if let Some(seq) = last_seq.filter(|s| *s < 0) {
            return self.send_error("invalid_frame", &format!("last_seq must not be negative (got {seq})"), Some(id)).await;
        }
        self.subscribe_bus(id).await?;
        self.synced.insert(id, last_seq.unwrap_or(0));
        self.replay(id).await?;
        let conv = self.state.store.find_conversation(id).await.ok().flatten();
        if let Some(conv) = conv {
            let frame = messaging::status_frame(&self.state, &conv).await;
            self.send(frame).await?;
        }
        Ok(())
    }

    /// Sends every stored message after the last one sent, in order.
    async fn replay(&mut self, id: Uuid) -> Result<(), Stop> {
        loop {
            let Some(&after) = self.synced.get(&id) else { return Ok(()) };
            let page = match self.state.store.list_messages(id, after, REPLAY_PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "replay failed");
                    return self.send_error("store_unavailable", "could not load messages; retry with hello", Some(id)).await;
                }
            };
            let full = page.len() as i64 == REPLAY_PAGE;
            for m in page {
                let seq = m.seq;
                self.send(json!({ "type": "message", "conversation_id": id, "message": m })).await?;
                self.synced.insert(id, seq);
            }
            if !full {
                return Ok(());
            }
        }
    }

    async fn on_message(&mut self, id: Uuid, client_msg_id: Uuid, text: &str) -> Result<(), Stop> {
        let result = messaging::post_message(&self.state, &self.who, id, client_msg_id, text).await;
        match result {
            Ok(appended) => {
                self.allowed.insert(id);
                let seq = appended.message.seq;
                self.send(json!({ "type": "ack", "conversation_id": id, "client_msg_id": client_msg_id, "seq": seq })).await?;
                if !self.synced.contains_key(&id) {
                    // A sender who never synced still gets its own message, from here on.
                    self.subscribe_bus(id).await?;
                    self.synced.insert(id, seq - 1);
                    self.replay(id).await?;
                }
                Ok(())
            }
            Err(e) => {
                let frame = json!({
                    "type": "error", "code": e.code, "message": e.message,
                    "conversation_id": id, "client_msg_id": client_msg_id,
                });
                self.send(frame).await
            }
        }
    }

    async fn on_typing(&mut self, id: Uuid, on: bool) -> Result<(), Stop> {
        if let Err(e) = self.authorize(id).await {
            return self.send_error(e.code, &e.message, Some(id)).await;
        }
        let sender = match self.who {
            Principal::Customer { .. } => "customer",
            Principal::Staff { .. } => "agent",
        };
        let frame = json!({ "type": "typing", "conversation_id": id, "sender": sender, "on": on, "_from": self.id });
        let _ = self.state.bus.publish(&Topic::Conversation(id), frame).await;
        Ok(())
    }

    async fn on_conversation_event(&mut self, id: Uuid, event: BusEvent) -> Result<(), Stop> {
        let Some(&last) = self.synced.get(&id) else { return Ok(()) };
        let frame = match event {
            BusEvent::Lagged => {
                // Missed signals: messages from the Store, and the status as it is now.
                self.replay(id).await?;
                let conv = self.state.store.find_conversation(id).await.ok().flatten();
                return match conv {
                    Some(conv) => {
                        let frame = messaging::status_frame(&self.state, &conv).await;
                        self.send(frame).await
                    }
                    None => Ok(()),
                };
            }
            BusEvent::Event(frame) => frame,
        };
        // Shared with the topic's other subscribers: read in place, copied
        // only to drop the typing marker.
        let frame: &Value = &frame;
        if frame.get("_from").and_then(Value::as_str) == Some(self.id.to_string().as_str()) {
            return Ok(()); // our own typing
        }
        if frame["type"] == "message" {
            let seq = frame["message"]["seq"].as_i64().unwrap_or(0);
            return match seq {
                s if s <= last => Ok(()),
                s if s == last + 1 => {
                    self.send_text(frame.to_string()).await?;
                    self.synced.insert(id, s);
                    Ok(())
                }
                _ => self.replay(id).await, // a gap: the Store has what we missed
            };
        }
        if frame["type"] == "assist" && matches!(self.who, Principal::Customer { .. }) {
            return Ok(()); // for agents only
        }
        if frame.get("_from").is_some() {
            let mut frame = frame.clone();
            if let Some(obj) = frame.as_object_mut() {
                obj.remove("_from");
            }
            return self.send(frame).await;
        }
        self.send_text(frame.to_string()).await
    }

    async fn on_queue_event(&mut self, event: BusEvent) -> Result<(), Stop> {
        match event {
            BusEvent::Event(frame) if frame["type"] != "queue_changed" => Ok(()),
            _ => self.send_queue().await,
        }
    }

    /// `queue {conversations, online_agents}`: what waits and who is assigned.
    async fn send_queue(&mut self) -> Result<(), Stop> {
        let tenant_id = self.who.tenant_id();
        let store = &self.state.store;
        let mut items = Vec::new();
        for status in [ConversationStatus::Queued, ConversationStatus::Assigned] {
            let convs = store.list_conversations(tenant_id, Some(status), 200).await.unwrap_or_default();
            for c in convs {
                let last = store.list_messages(c.id, (c.last_seq - 1).max(0), 1).await.unwrap_or_default();
                let preview: String = last.first().map(|m| m.text.chars().take(120).collect()).unwrap_or_default();
                let waiting_ms = (chrono::Utc::now() - c.status_at).num_milliseconds().max(0);
                items.push(json!({
                    "conversation_id": c.id, "status": c.status, "waiting_ms": waiting_ms,
                    "agent_id": c.agent_id, "team": c.team, "preview": preview,
                }));
            }
        }
        let online = self.state.bus.online(tenant_id).await.unwrap_or_default();
        self.send(json!({ "type": "queue", "conversations": items, "online_agents": online })).await
    }

    async fn on_heartbeat(&mut self) -> Result<(), Stop> {
        if self.last_seen.elapsed() > IDLE_TIMEOUT {
            return Err(Stop::Close(CloseCode::Other(CLOSE_IDLE), "idle timeout"));
        }
        if matches!(self.who, Principal::Staff { .. }) {
            self.set_presence(true).await;
        }
        match tokio::time::timeout(SEND_TIMEOUT, self.session.ping(b"")).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(Stop::Close(CloseCode::Other(CLOSE_SLOW_CONSUMER), "slow consumer")),
        }
    }

    async fn set_presence(&mut self, online: bool) {
        let Principal::Staff { user_id, tenant_id, .. } = self.who else { return };
        let bus = &self.state.bus;
        let result = if online {
            bus.set_online(tenant_id, user_id, PRESENCE_TTL).await
        } else {
            bus.set_offline(tenant_id, user_id).await
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "presence update failed");
            return;
        }
        if self.announced != online {
            self.announced = online;
            messaging::publish_queue_changed(&self.state, tenant_id).await;
            if online {
                // A newly online agent may take waiting conversations.
                if let Err(e) = crate::routing::assign_queued(&self.state, tenant_id).await {
                    tracing::warn!(error = %e, "automatic assignment failed");
                }
            }
        }
    }
}

async fn next_or_pending(stream: &mut Option<BusStream>) -> Option<BusEvent> {
    match stream {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// Open customer sockets per conversation on this replica.
#[derive(Default)]
pub struct CustomerSockets(std::sync::Mutex<HashMap<Uuid, usize>>);

impl CustomerSockets {
    fn opened(&self, conversation_id: Uuid) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()).entry(conversation_id).or_default() += 1;
    }

    /// True when that was the conversation's last one.
    fn closed(&self, conversation_id: Uuid) -> bool {
        let mut open = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(conversation_id).or_default();
        *n = n.saturating_sub(1);
        let last = *n == 0;
        if last {
            open.remove(&conversation_id);
        }
        last
    }
}
