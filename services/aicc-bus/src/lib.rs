//! `Bus` implementations: `InProcessBus` (tokio broadcast; the embedded
//! default, one replica) and `RedisBus` (pub/sub across replicas, presence in
//! sorted sets). Both deliver through a `LocalHub`, so subscribers on the
//! publishing replica are served even while Redis is away.

use std::sync::Arc;

use aicc_core::{Bus, BusError};

pub mod conformance;
mod hub;
mod memory;
mod redis_bus;

pub use hub::LocalHub;
pub use memory::InProcessBus;
pub use redis_bus::RedisBus;

/// Redis when `redis_url` is set, else in-process.
pub async fn open(redis_url: Option<&str>) -> Result<Arc<dyn Bus>, BusError> {
    Ok(match redis_url {
        Some(url) => Arc::new(RedisBus::connect(url).await?),
        None => Arc::new(InProcessBus::new()),
    })
}
