//! Fixed-window rate limits kept in memory (per replica): login attempts per
//! tenant+email and per IP, widget conversations per IP.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct RateLimiter {
    per_window: u32,
    window: Duration,
    slots: Mutex<HashMap<String, (Instant, u32)>>,
}

impl RateLimiter {
    pub fn new(per_window: u32, window: Duration) -> Self {
        Self { per_window, window, slots: Mutex::new(HashMap::new()) }
    }

    /// Counts one hit for `key`; `Err(seconds until the window resets)` once over the limit.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        let now = Instant::now();
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.len() > 100_000 {
            // Bounded memory: forget windows that are over.
            slots.retain(|_, (start, _)| now.duration_since(*start) < self.window);
        }
        let (start, count) = slots.entry(key.to_string()).or_insert((now, 0));
        if now.duration_since(*start) >= self.window {
            *start = now;
            *count = 0;
        }
        if *count >= self.per_window {
            return Err((self.window - now.duration_since(*start)).as_secs() + 1);
        }
        *count += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_key() {
        let rl = RateLimiter::new(2, Duration::from_secs(60));
        assert!(rl.check("a").is_ok());
        assert!(rl.check("a").is_ok());
        assert!(rl.check("a").is_err());
        assert!(rl.check("b").is_ok());
    }
}
