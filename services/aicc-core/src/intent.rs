//! The `IntentClassifier` trait: a customer message → its intent, or out of
//! scope. Implementations (aicc-models) embed the text and run a trained head.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::embed::ModelError;

/// The label that marks out-of-scope examples in training data and test sets.
pub const OUT_OF_SCOPE: &str = "oos";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntentPrediction {
    /// The predicted intent; `None` when the message is out of scope.
    pub intent: Option<String>,
    /// Probability of the best in-scope intent (also when it was rejected).
    pub confidence: f32,
    /// The top in-scope intents (at most 5) with their probabilities, best first.
    pub ranked: Vec<(String, f32)>,
    pub out_of_scope: bool,
}

#[async_trait]
pub trait IntentClassifier: Send + Sync + 'static {
    async fn classify(&self, text: &str) -> Result<IntentPrediction, ModelError>;
}

/// What a training run produced: the stored model version, its held-out
/// figures, and the classifier to serve with.
pub struct TrainedIntents {
    pub version: i64,
    /// Held-out figures (`accuracy`, `macro_f1`, …), as the job reports them.
    pub metrics: serde_json::Value,
    pub classifier: std::sync::Arc<dyn IntentClassifier>,
}

/// Progress of a training run, 0 to 1 (called often; throttle what it does).
pub type TrainProgress = std::sync::Arc<dyn Fn(f64) + Send + Sync>;

/// Trains a tenant's intent model from its examples and stores it as the
/// tenant's newest version (aicc-models implements it; the API runs it as a
/// background job and installs the classifier it returns).
#[async_trait]
pub trait IntentTrainer: Send + Sync + 'static {
    async fn train(
        &self,
        tenant_id: uuid::Uuid,
        examples: Vec<crate::intent_data::Example>,
        progress: TrainProgress,
    ) -> Result<TrainedIntents, ModelError>;
}
