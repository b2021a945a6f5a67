//! The `Bus` trait: fan-out between the parts of the platform (and between
//! replicas) and agent presence. Redis and in-process implement it (aicc-bus).
//!
//! The bus only signals. The Store is the source of truth: a subscriber that
//! receives `BusEvent::Lagged` (it may have missed events, e.g. while Redis was
//! away) re-reads what it needs from the Store.

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

/// What a subscription listens to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Messages, typing, status and streamed tokens of one conversation.
    Conversation(Uuid),
    /// A tenant's agent queue changed.
    Queue(Uuid),
    /// A tenant published a knowledge-base version.
    Kb(Uuid),
}

impl Topic {
    pub fn key(&self) -> String {
        match self {
            Topic::Conversation(id) => format!("conv:{id}"),
            Topic::Queue(t) => format!("queue:{t}"),
            Topic::Kb(t) => format!("kb:{t}"),
        }
    }

    pub fn parse(key: &str) -> Option<Topic> {
        let (kind, id) = key.split_once(':')?;
        let id = id.parse().ok()?;
        match kind {
            "conv" => Some(Topic::Conversation(id)),
            "queue" => Some(Topic::Queue(id)),
            "kb" => Some(Topic::Kb(id)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum BusEvent {
    /// A published payload (a JSON server frame; the bus does not interpret
    /// it), shared: every subscriber of a topic gets the same one, and each
    /// topic's buffer holds a pointer, not a frame (10,000 open
    /// conversations are 10,000 buffers).
    Event(std::sync::Arc<serde_json::Value>),
    /// Events may have been missed: re-read the Store.
    Lagged,
}

impl BusEvent {
    pub fn event(payload: serde_json::Value) -> Self {
        BusEvent::Event(std::sync::Arc::new(payload))
    }
}

pub type BusStream = Pin<Box<dyn futures_core::Stream<Item = BusEvent> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// `redis` or `in-process`.
    fn backend(&self) -> &'static str;
    /// Whether the bus reaches its backend right now (for `/readyz`).
    fn is_healthy(&self) -> bool;

    /// Delivers `payload` to every current subscriber of `topic`, on every
    /// replica. Subscribers on this replica get it even when the backend is down.
    async fn publish(&self, topic: &Topic, payload: serde_json::Value) -> Result<(), BusError>;
    /// Events published on `topic` from now on, until the stream is dropped.
    async fn subscribe(&self, topic: &Topic) -> Result<BusStream, BusError>;

    /// Marks an agent online for `ttl` (call again before it runs out).
    async fn set_online(&self, tenant_id: Uuid, user_id: Uuid, ttl: Duration) -> Result<(), BusError>;
    async fn set_offline(&self, tenant_id: Uuid, user_id: Uuid) -> Result<(), BusError>;
    /// Agents of the tenant whose presence has not run out.
    async fn online(&self, tenant_id: Uuid) -> Result<Vec<Uuid>, BusError>;
}
