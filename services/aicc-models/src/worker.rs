//! Models run on a dedicated OS thread, fed through a bounded queue (the
//! text-embeddings-inference pattern): the async executor never runs
//! inference, and a full queue answers `Overloaded` at once.

use std::collections::VecDeque;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;

use aicc_core::{EmbedKind, Embedder, ModelError};
use async_trait::async_trait;
use tokio::sync::oneshot;

use crate::E5Model;

type Job = (Vec<String>, EmbedKind, oneshot::Sender<Result<Vec<Vec<f32>>, ModelError>>);

pub struct EmbedWorker {
    name: String,
    dim: usize,
    jobs: SyncSender<Job>,
}

impl EmbedWorker {
    /// Runs `model` on its own thread; at most `queue` requests wait. (The
    /// model is shared: batch jobs such as training may use it directly.)
    pub fn spawn(name: &str, model: Arc<E5Model>, queue: usize) -> Result<Self, ModelError> {
        let dim = model.dim();
        let (jobs, rx) = sync_channel::<Job>(queue);
        std::thread::Builder::new()
            .name(format!("embed-{name}"))
            .spawn(move || {
                let mut recent = RecentQueries::default();
                // Ends when every sender is gone (the worker was dropped).
                for (texts, kind, reply) in rx {
                    let single_query = kind == EmbedKind::Query && texts.len() == 1;
                    if let Some(v) = recent.get(&texts).filter(|_| single_query) {
                        let _ = reply.send(Ok(vec![v]));
                        continue;
                    }
                    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                    let out = model.embed_batch(&refs, kind).map_err(|e| ModelError::Failed(e.to_string()));
                    if let (true, Ok(v)) = (single_query, &out) {
                        recent.put(&texts[0], &v[0]);
                    }
                    let _ = reply.send(out);
                }
            })
            .map_err(|e| ModelError::Unavailable(format!("cannot start the model thread: {e}")))?;
        Ok(Self { name: name.to_string(), dim, jobs })
    }
}

/// The last few single-query embeddings. A bot turn embeds the customer's
/// message twice, for the intent classifier and for retrieval (each behind its
/// own trait); the second is answered from here instead of the model.
#[derive(Default)]
struct RecentQueries(VecDeque<(String, Vec<f32>)>);

impl RecentQueries {
    const CAPACITY: usize = 64;

    fn get(&self, texts: &[String]) -> Option<Vec<f32>> {
        let text = texts.first()?;
        self.0.iter().find(|(t, _)| t == text).map(|(_, v)| v.clone())
    }

    fn put(&mut self, text: &str, v: &[f32]) {
        if self.0.len() == Self::CAPACITY {
            self.0.pop_front();
        }
        self.0.push_back((text.to_string(), v.to_vec()));
    }
}

#[async_trait]
impl Embedder for EmbedWorker {
    fn name(&self) -> &str {
        &self.name
    }

    fn dim(&self) -> usize {
        self.dim
    }

    async fn embed(&self, texts: Vec<String>, kind: EmbedKind) -> Result<Vec<Vec<f32>>, ModelError> {
        let (tx, rx) = oneshot::channel();
        match self.jobs.try_send((texts, kind, tx)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(ModelError::Overloaded),
            Err(TrySendError::Disconnected(_)) => return Err(ModelError::Unavailable("the model thread stopped".into())),
        }
        rx.await.map_err(|_| ModelError::Unavailable("the model thread stopped".into()))?
    }
}

#[cfg(test)]
mod tests {
    use super::RecentQueries;

    #[test]
    fn recent_queries_keep_the_newest_and_forget_the_oldest() {
        let mut r = RecentQueries::default();
        for i in 0..=RecentQueries::CAPACITY {
            r.put(&format!("q{i}"), &[i as f32]);
        }
        assert_eq!(r.get(&["q0".into()]), None, "the oldest was evicted");
        assert_eq!(r.get(&["q1".into()]), Some(vec![1.0]));
        assert_eq!(r.get(&[format!("q{}", RecentQueries::CAPACITY)]), Some(vec![RecentQueries::CAPACITY as f32]));
        assert_eq!(r.get(&[]), None);
    }
}
