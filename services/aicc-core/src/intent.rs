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
