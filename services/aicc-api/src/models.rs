//! The models this replica serves with, and their state for `/readyz`. The
//! server fills it in the background at start (aicc-server's `models`
//! module); handlers read it. Only aicc-core traits appear here.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use aicc_core::{Embedder, Generator, IntentClassifier, IntentTrainer};
use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelState {
    Loading,
    Ready,
    Failed,
}

#[derive(Default)]
pub struct ModelRegistry {
    states: Mutex<BTreeMap<String, ModelState>>,
    embedder: RwLock<Option<Arc<dyn Embedder>>>,
    generator: RwLock<Option<Arc<dyn Generator>>>,
    intents: RwLock<HashMap<Uuid, Arc<dyn IntentClassifier>>>,
    trainer: RwLock<Option<Arc<dyn IntentTrainer>>>,
}

impl ModelRegistry {
    /// Records what a model is doing (names as in `/readyz`: the manifest
    /// name, or `intent:TENANT`).
    pub fn set_state(&self, name: &str, state: ModelState) {
        self.states.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_string(), state);
    }

    pub fn states(&self) -> BTreeMap<String, ModelState> {
        self.states.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Every model the configuration needs is ready.
    pub fn ready(&self) -> bool {
        self.states().values().all(|s| *s == ModelState::Ready)
    }

    pub fn set_embedder(&self, embedder: Arc<dyn Embedder>) {
        *self.embedder.write().unwrap_or_else(|p| p.into_inner()) = Some(embedder);
    }

    pub fn embedder(&self) -> Option<Arc<dyn Embedder>> {
        self.embedder.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_generator(&self, generator: Arc<dyn Generator>) {
        *self.generator.write().unwrap_or_else(|p| p.into_inner()) = Some(generator);
    }

    /// The generative model; `None` while it loads or when it is off (the
    /// dialog then answers from the knowledge base alone).
    pub fn generator(&self) -> Option<Arc<dyn Generator>> {
        self.generator.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Installs (or replaces) a tenant's intent classifier.
    pub fn set_intents(&self, tenant_id: Uuid, classifier: Arc<dyn IntentClassifier>) {
        self.intents.write().unwrap_or_else(|p| p.into_inner()).insert(tenant_id, classifier);
    }

    /// Installs what trains tenants' intent models (the server does once the
    /// embedder is loaded).
    pub fn set_trainer(&self, trainer: Arc<dyn IntentTrainer>) {
        *self.trainer.write().unwrap_or_else(|p| p.into_inner()) = Some(trainer);
    }

    /// `None` while the embedder loads, or when there is none (`AICC_EMBEDDER=none`).
    pub fn trainer(&self) -> Option<Arc<dyn IntentTrainer>> {
        self.trainer.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The tenant's classifier; `None` until one is trained (the dialog then
    /// routes on retrieval alone).
    pub fn intents(&self, tenant_id: Uuid) -> Option<Arc<dyn IntentClassifier>> {
        self.intents.read().unwrap_or_else(|p| p.into_inner()).get(&tenant_id).cloned()
    }
}

impl aicc_dialog::Models for ModelRegistry {
    fn embedder(&self) -> Option<Arc<dyn Embedder>> {
        ModelRegistry::embedder(self)
    }
    fn generator(&self) -> Option<Arc<dyn Generator>> {
        ModelRegistry::generator(self)
    }
    fn intents(&self, tenant_id: Uuid) -> Option<Arc<dyn IntentClassifier>> {
        ModelRegistry::intents(self, tenant_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_model_is() {
        let r = ModelRegistry::default();
        assert!(r.ready(), "no model configured is ready");
        r.set_state("multilingual-e5-small", ModelState::Loading);
        r.set_state("intent:demo", ModelState::Loading);
        assert!(!r.ready());
        r.set_state("multilingual-e5-small", ModelState::Ready);
        assert!(!r.ready());
        r.set_state("intent:demo", ModelState::Failed);
        assert!(!r.ready());
        r.set_state("intent:demo", ModelState::Ready);
        assert!(r.ready());
        assert_eq!(serde_json::to_value(r.states()).unwrap()["intent:demo"], "ready");
    }
}
