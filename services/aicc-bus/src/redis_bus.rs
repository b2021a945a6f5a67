use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aicc_core::{Bus, BusError, BusEvent, BusStream, Topic};
use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use uuid::Uuid;

use crate::LocalHub;

const CHANNEL_PREFIX: &str = "aicc:bus:";
/// A publish waits at most this long for Redis; local subscribers never wait.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(1);

/// Pub/sub across replicas. Each replica subscribes once to every bus channel
/// (a pattern) and fans out locally; its own publications are delivered
/// locally at once and skipped when Redis echoes them back. After Redis comes
/// back, every local subscriber is told `Lagged` so it re-reads the Store.
pub struct RedisBus {
    replica: Uuid,
    hub: Arc<LocalHub>,
    conn: ConnectionManager,
    healthy: Arc<AtomicBool>,
    listener: tokio::task::JoinHandle<()>,
}

impl RedisBus {
    pub async fn connect(url: &str) -> Result<Self, BusError> {
        let unavailable = |e: redis::RedisError| BusError::Unavailable(format!("Redis at {url}: {e}"));
        let client = redis::Client::open(url).map_err(unavailable)?;
        let conn = tokio::time::timeout(Duration::from_secs(5), client.get_connection_manager())
            .await
            .map_err(|_| BusError::Unavailable(format!("Redis at {url}: connect timed out")))?
            .map_err(unavailable)?;
        let replica = Uuid::new_v4();
        let hub = Arc::new(LocalHub::default());
        let healthy = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let listener = tokio::spawn(listen(client, replica, hub.clone(), healthy.clone(), ready_tx));
        // Subscriptions made after connect() returns must not miss anything.
        tokio::time::timeout(Duration::from_secs(5), ready_rx)
            .await
            .map_err(|_| BusError::Unavailable(format!("Redis at {url}: subscribe timed out")))?
            .map_err(|_| BusError::Unavailable(format!("Redis at {url}: listener stopped")))?;
        Ok(Self { replica, hub, conn, healthy, listener })
    }
}

impl Drop for RedisBus {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// Keeps one pattern subscription alive, reconnecting with backoff.
async fn listen(
    client: redis::Client,
    me: Uuid,
    hub: Arc<LocalHub>,
    healthy: Arc<AtomicBool>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(100);
    loop {
        match subscribe_all(&client).await {
            Ok(mut pubsub) => {
                healthy.store(true, Ordering::SeqCst);
                backoff = Duration::from_millis(100);
                match ready.take() {
                    Some(tx) => {
                        let _ = tx.send(());
                    }
                    None => {
                        tracing::info!("Redis bus reconnected; subscribers resync from the store");
                        hub.lagged_all();
                    }
                }
                let mut messages = pubsub.on_message();
                while let Some(msg) = messages.next().await {
                    let Some(key) = msg.get_channel_name().strip_prefix(CHANNEL_PREFIX) else { continue };
                    let Ok(envelope) = serde_json::from_slice::<serde_json::Value>(msg.get_payload_bytes()) else { continue };
                    if envelope["o"].as_str() == Some(me.to_string().as_str()) {
                        continue; // ours: already delivered locally
                    }
                    hub.deliver(key, BusEvent::event(envelope["p"].clone()));
                }
                tracing::warn!("lost the Redis bus connection; reconnecting");
            }
            Err(e) => tracing::warn!(error = %e, "cannot subscribe to the Redis bus; retrying"),
        }
        healthy.store(false, Ordering::SeqCst);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn subscribe_all(client: &redis::Client) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.psubscribe(format!("{CHANNEL_PREFIX}*")).await?;
    Ok(pubsub)
}

fn presence_key(tenant_id: Uuid) -> String {
    format!("aicc:presence:{tenant_id}")
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl RedisBus {
    async fn run<T: redis::FromRedisValue>(&self, cmd: &mut redis::Cmd) -> Result<T, BusError> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(PUBLISH_TIMEOUT, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(BusError::Unavailable(e.to_string())),
            Err(_) => Err(BusError::Unavailable("Redis did not answer in time".into())),
        }
    }
}

#[async_trait]
impl Bus for RedisBus {
    fn backend(&self) -> &'static str {
        "redis"
    }

    fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::SeqCst)
    }

    async fn publish(&self, topic: &Topic, payload: serde_json::Value) -> Result<(), BusError> {
        let key = topic.key();
        let envelope = serde_json::json!({ "o": self.replica, "p": payload });
        self.hub.deliver(&key, BusEvent::event(payload));
        self.run::<()>(redis::cmd("PUBLISH").arg(format!("{CHANNEL_PREFIX}{key}")).arg(envelope.to_string())).await
    }

    async fn subscribe(&self, topic: &Topic) -> Result<BusStream, BusError> {
        Ok(self.hub.subscribe(topic))
    }

    async fn set_online(&self, tenant_id: Uuid, user_id: Uuid, ttl: Duration) -> Result<(), BusError> {
        let until = now_ms() + ttl.as_millis() as u64;
        self.run::<()>(redis::cmd("ZADD").arg(presence_key(tenant_id)).arg(until).arg(user_id.to_string())).await
    }

    async fn set_offline(&self, tenant_id: Uuid, user_id: Uuid) -> Result<(), BusError> {
        self.run::<()>(redis::cmd("ZREM").arg(presence_key(tenant_id)).arg(user_id.to_string())).await
    }

    async fn online(&self, tenant_id: Uuid) -> Result<Vec<Uuid>, BusError> {
        let key = presence_key(tenant_id);
        let now = now_ms();
        self.run::<()>(redis::cmd("ZREMRANGEBYSCORE").arg(&key).arg("-inf").arg(now)).await?;
        let members: Vec<String> = self.run(redis::cmd("ZRANGEBYSCORE").arg(&key).arg(format!("({now}")).arg("+inf")).await?;
        let mut users: Vec<Uuid> = members.iter().filter_map(|m| m.parse().ok()).collect();
        users.sort();
        Ok(users)
    }
}
