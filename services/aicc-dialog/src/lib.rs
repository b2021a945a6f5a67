//! AICC dialog orchestration: what happens between a customer's message and
//! the bot's reply (`turn`), what the agent sees beside the transcript
//! (`assist`), and the numbers the admin console charts (`analytics`).
//!
//! It uses only aicc-core traits — Store, Bus, KnowledgeIndex and the models
//! behind `Models` — so tests run it on fakes and the server on the real ones.
//! The handoff itself (the state machine, queue, assignment) stays with the
//! API: a turn that decides to hand over says so and the caller carries it out.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aicc_core::{Bus, Embedder, Generator, IntentClassifier, KnowledgeIndex, Store};
use uuid::Uuid;

pub mod analytics;
pub mod assist;
pub mod grounding;
pub mod language;
pub mod policy;
pub mod prompt;
pub mod texts;
mod turn;
pub mod understand;

pub use language::Lang;
pub use policy::{Decision, HandoffReason};
pub use turn::{TurnReport, TURN_EVENT};

/// The models a turn may use; any of them may be missing (loading, off).
pub trait Models: Send + Sync + 'static {
    fn embedder(&self) -> Option<Arc<dyn Embedder>>;
    fn generator(&self) -> Option<Arc<dyn Generator>>;
    fn intents(&self, tenant_id: Uuid) -> Option<Arc<dyn IntentClassifier>>;
}

/// Limits of the generated path; a turn never hangs on the generator.
#[derive(Debug, Clone)]
pub struct DialogConfig {
    /// No first token by then: the turn falls back (FAQ answer or apology).
    pub first_token_timeout: Duration,
    /// The whole answer by then, or the same fallback.
    pub answer_timeout: Duration,
    pub max_answer_tokens: u32,
    /// Fixed, so the same question gets the same answer (scenario tests rely on it).
    pub seed: u64,
    /// The intent classifier and knowledge search each get this long.
    pub model_timeout: Duration,
}

impl Default for DialogConfig {
    fn default() -> Self {
        Self {
            first_token_timeout: Duration::from_secs(15),
            answer_timeout: Duration::from_secs(40),
            max_answer_tokens: 160,
            seed: 7,
            model_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DialogError {
    #[error(transparent)]
    Store(#[from] aicc_core::StoreError),
}

pub struct Dialog {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    kb: Arc<dyn KnowledgeIndex>,
    models: Arc<dyn Models>,
    config: DialogConfig,
    /// One turn at a time per conversation (on this replica): replies come in
    /// the order of the messages they answer.
    locks: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
    /// Generations in flight, by conversation: `cancel` stops them.
    inflight: Mutex<HashMap<Uuid, tokio::sync::watch::Sender<bool>>>,
    /// Tenants and languages whose RAG prompt prefix the generator has seen.
    warmed: Mutex<HashSet<(Uuid, Lang)>>,
}

impl Dialog {
    pub fn new(store: Arc<dyn Store>, bus: Arc<dyn Bus>, kb: Arc<dyn KnowledgeIndex>, models: Arc<dyn Models>, config: DialogConfig) -> Self {
        Self { store, bus, kb, models, config, locks: Default::default(), inflight: Default::default(), warmed: Default::default() }
    }

    /// Stops the conversation's generation in flight, if any (the customer
    /// left). The turn still stores a reply, from the knowledge base.
    pub fn cancel(&self, conversation_id: Uuid) {
        if let Some(tx) = self.inflight.lock().unwrap_or_else(|p| p.into_inner()).get(&conversation_id) {
            let _ = tx.send(true);
        }
    }

    /// Puts the tenant's RAG prompt prefix in `lang` into the generator's
    /// prefix cache, once per process: call it when a conversation starts, so
    /// the customer's first generated answer does not wait for the system
    /// prompt (~130 tokens, most of a second on CPU). Does nothing while no
    /// generator is loaded, and tries again at the next conversation.
    pub async fn warm_up(&self, tenant: &aicc_core::Tenant, lang: Lang) {
        let Some(generator) = self.models.generator() else { return };
        if !self.warmed.lock().unwrap_or_else(|p| p.into_inner()).insert((tenant.id, lang)) {
            return;
        }
        let request = prompt::warm_request(&tenant.name, lang);
        if let Err(e) = generator.prepare(request).await {
            // Busy or failing: a later conversation tries again.
            tracing::debug!(error = %e, "the RAG prompt prefix was not prepared");
            self.warmed.lock().unwrap_or_else(|p| p.into_inner()).remove(&(tenant.id, lang));
        }
    }

    async fn lock(&self, conversation_id: Uuid) -> TurnLock<'_> {
        let m = self.locks.lock().unwrap_or_else(|p| p.into_inner()).entry(conversation_id).or_default().clone();
        let guard = m.clone().lock_owned().await;
        TurnLock { dialog: self, id: conversation_id, mutex: Some(m), _guard: guard }
    }
}

/// Held for one turn; the last holder removes the conversation's entry.
struct TurnLock<'a> {
    dialog: &'a Dialog,
    id: Uuid,
    mutex: Option<Arc<tokio::sync::Mutex<()>>>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for TurnLock<'_> {
    fn drop(&mut self) {
        let mut locks = self.dialog.locks.lock().unwrap_or_else(|p| p.into_inner());
        drop(self.mutex.take());
        // Ours (the guard) and the map's: nobody else waits.
        if locks.get(&self.id).is_some_and(|m| Arc::strong_count(m) <= 2) {
            locks.remove(&self.id);
        }
    }
}
