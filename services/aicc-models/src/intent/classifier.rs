//! `Classifier`: the aicc-core `IntentClassifier` over an embedder and a head.

use std::sync::Arc;

use aicc_core::{EmbedKind, Embedder, IntentClassifier, IntentPrediction, ModelError};
use async_trait::async_trait;

use super::model::{IntentError, IntentModel};

pub struct Classifier {
    embedder: Arc<dyn Embedder>,
    model: IntentModel,
}

impl Classifier {
    /// Refuses a head trained on another embedder's vectors.
    pub fn new(embedder: Arc<dyn Embedder>, model: IntentModel) -> Result<Self, IntentError> {
        let meta = &model.meta;
        if meta.encoder != embedder.name() || meta.dim != embedder.dim() {
            return Err(IntentError::Mismatch {
                found: format!("{} (dim {})", meta.encoder, meta.dim),
                expected: format!("{} (dim {})", embedder.name(), embedder.dim()),
            });
        }
        Ok(Self { embedder, model })
    }

    pub fn model(&self) -> &IntentModel {
        &self.model
    }
}

#[async_trait]
impl IntentClassifier for Classifier {
    async fn classify(&self, text: &str) -> Result<IntentPrediction, ModelError> {
        // The head was trained on query-prefixed embeddings (meta.prefix).
        let v = self.embedder.embed(vec![text.to_string()], EmbedKind::Query).await?;
        let mut p = self.model.try_predict(&[text], &v).map_err(|e| ModelError::Failed(e.to_string()))?;
        p.pop().ok_or_else(|| ModelError::Failed("the embedder returned no vector".into()))
    }
}
