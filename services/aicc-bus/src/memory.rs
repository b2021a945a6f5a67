use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aicc_core::{Bus, BusError, BusEvent, BusStream, Topic};
use async_trait::async_trait;
use uuid::Uuid;

use crate::LocalHub;

/// The embedded default: everything stays in this process.
#[derive(Default)]
pub struct InProcessBus {
    hub: LocalHub,
    presence: Mutex<HashMap<(Uuid, Uuid), Instant>>,
}

impl InProcessBus {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Bus for InProcessBus {
    fn backend(&self) -> &'static str {
        "in-process"
    }

    fn is_healthy(&self) -> bool {
        true
    }

    async fn publish(&self, topic: &Topic, payload: serde_json::Value) -> Result<(), BusError> {
        self.hub.deliver(&topic.key(), BusEvent::event(payload));
        Ok(())
    }

    async fn subscribe(&self, topic: &Topic) -> Result<BusStream, BusError> {
        Ok(self.hub.subscribe(topic))
    }

    async fn set_online(&self, tenant_id: Uuid, user_id: Uuid, ttl: Duration) -> Result<(), BusError> {
        self.presence.lock().unwrap_or_else(|p| p.into_inner()).insert((tenant_id, user_id), Instant::now() + ttl);
        Ok(())
    }

    async fn set_offline(&self, tenant_id: Uuid, user_id: Uuid) -> Result<(), BusError> {
        self.presence.lock().unwrap_or_else(|p| p.into_inner()).remove(&(tenant_id, user_id));
        Ok(())
    }

    async fn online(&self, tenant_id: Uuid) -> Result<Vec<Uuid>, BusError> {
        let now = Instant::now();
        let mut presence = self.presence.lock().unwrap_or_else(|p| p.into_inner());
        presence.retain(|_, until| *until > now);
        let mut users: Vec<Uuid> = presence.keys().filter(|(t, _)| *t == tenant_id).map(|(_, u)| *u).collect();
        users.sort();
        Ok(users)
    }
}
