//! The `Embedder` trait: text → L2-normalised vectors, for retrieval and
//! intent classification. Implementations run the model on their own thread
//! (aicc-models); a full queue is an `Overloaded` error, never a growing wait.

use async_trait::async_trait;

/// What a text is for: E5-style models embed queries and passages with different prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EmbedKind {
    Query,
    Passage,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ModelError {
    /// The model's queue is full: try again shortly (HTTP 429).
    #[error("the model is overloaded; retry shortly")]
    Overloaded,
    #[error("the model is not available: {0}")]
    Unavailable(String),
    #[error("inference failed: {0}")]
    Failed(String),
    /// The request cannot be run as given (e.g. a prompt over the context window).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

#[async_trait]
pub trait Embedder: Send + Sync + 'static {
    /// The model's name in the manifest.
    fn name(&self) -> &str;
    fn dim(&self) -> usize;
    /// One unit-length vector per text, in order.
    async fn embed(&self, texts: Vec<String>, kind: EmbedKind) -> Result<Vec<Vec<f32>>, ModelError>;
}
