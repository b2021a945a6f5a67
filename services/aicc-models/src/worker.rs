//! Models run on a dedicated OS thread, fed through a bounded queue (the
//! text-embeddings-inference pattern): the async executor never runs
//! inference, and a full queue answers `Overloaded` at once.

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
                // Ends when every sender is gone (the worker was dropped).
                for (texts, kind, reply) in rx {
                    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                    let out = model.embed_batch(&refs, kind).map_err(|e| ModelError::Failed(e.to_string()));
                    let _ = reply.send(out);
                }
            })
            .map_err(|e| ModelError::Unavailable(format!("cannot start the model thread: {e}")))?;
        Ok(Self { name: name.to_string(), dim, jobs })
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
