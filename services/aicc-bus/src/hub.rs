//! Per-replica fan-out: one broadcast channel per topic with subscribers.

use std::collections::HashMap;
use std::sync::Mutex;

use aicc_core::{BusEvent, BusStream, Topic};
use futures_util::StreamExt;
use tokio::sync::broadcast;
use tokio_stream::wrappers::{errors::BroadcastStreamRecvError, BroadcastStream};

/// Events a slow subscriber may fall behind by before it is told `Lagged`.
const CAPACITY: usize = 64;

#[derive(Default)]
pub struct LocalHub {
    topics: Mutex<HashMap<String, broadcast::Sender<BusEvent>>>,
}

impl LocalHub {
    pub fn subscribe(&self, topic: &Topic) -> BusStream {
        let rx = {
            let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
            topics.entry(topic.key()).or_insert_with(|| broadcast::channel(CAPACITY).0).subscribe()
        };
        BroadcastStream::new(rx)
            .map(|r| match r {
                Ok(ev) => ev,
                Err(BroadcastStreamRecvError::Lagged(_)) => BusEvent::Lagged,
            })
            .boxed()
    }

    /// Delivers to this replica's subscribers of `key`; forgets topics nobody listens to.
    pub fn deliver(&self, key: &str, event: BusEvent) {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = topics.get(key) {
            if tx.send(event).is_err() {
                topics.remove(key);
            }
        }
    }

    /// Tells every subscriber it may have missed events.
    pub fn lagged_all(&self) {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        topics.retain(|_, tx| tx.send(BusEvent::Lagged).is_ok());
    }
}
