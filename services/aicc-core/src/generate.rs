//! The `Generator` trait: chat messages in, a stream of text pieces out. The
//! dialog uses it for RAG answers, agent drafts and summaries; aicc-models
//! implements it on a local model (candle) and on a remote OpenAI-compatible
//! server. Dropping the stream cancels the generation.

use std::pin::Pin;

use async_trait::async_trait;
use futures_core::Stream;
use serde::{Deserialize, Serialize};

use crate::ModelError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatRole {
    System,
    User,
    Assistant,
}

impl ChatRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ChatRole::System => "system",
            ChatRole::User => "user",
            ChatRole::Assistant => "assistant",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: ChatRole,
    pub content: String,
}

impl ChatMessage {
    pub fn system(content: impl Into<String>) -> Self {
        Self { role: ChatRole::System, content: content.into() }
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self { role: ChatRole::User, content: content.into() }
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self { role: ChatRole::Assistant, content: content.into() }
    }
}

/// How the next token is chosen. `temperature == 0` is greedy (deterministic).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Sampling {
    pub temperature: f32,
    /// Nucleus sampling: the smallest set of tokens whose probability reaches `top_p`.
    pub top_p: f32,
    /// Same seed, same request, same model → same text.
    pub seed: Option<u64>,
    pub max_tokens: u32,
    /// Generation ends before any of these strings; they are not part of the text.
    pub stop: Vec<String>,
    /// > 1 discourages repeating tokens of the recent context (1 = off).
    pub repetition_penalty: f32,
}

impl Default for Sampling {
    fn default() -> Self {
        Self { temperature: 0.0, top_p: 1.0, seed: None, max_tokens: 256, stop: Vec::new(), repetition_penalty: 1.0 }
    }
}

impl Sampling {
    /// Every field in range, or the first that is not.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=2.0).contains(&self.temperature) {
            return Err(format!("temperature must be between 0 and 2, got {}", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if self.max_tokens == 0 {
            return Err("max_tokens must be at least 1".into());
        }
        if !(1.0..=2.0).contains(&self.repetition_penalty) {
            return Err(format!("repetition_penalty must be between 1 and 2, got {}", self.repetition_penalty));
        }
        if self.stop.len() > 8 || self.stop.iter().any(|s| s.is_empty() || s.len() > 64) {
            return Err("stop takes at most 8 non-empty strings of at most 64 bytes".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenRequest {
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub sampling: Sampling,
}

impl GenRequest {
    pub fn new(messages: Vec<ChatMessage>) -> Self {
        Self { messages, sampling: Sampling::default() }
    }

    /// A request a generator can run: messages present and in order, sampling in range.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::InvalidRequest(m));
        if self.messages.is_empty() {
            return bad("a request needs at least one message".into());
        }
        if self.messages.iter().skip(1).any(|m| m.role == ChatRole::System) {
            return bad("only the first message may be a system message".into());
        }
        if self.messages.last().is_some_and(|m| m.role == ChatRole::Assistant) {
            return bad("the last message must be the user's (or the system's)".into());
        }
        self.sampling.validate().map_err(ModelError::InvalidRequest)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its answer, or a stop string was reached.
    Stop,
    /// `max_tokens` (or the context window) was reached.
    Length,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    /// Prompt tokens whose keys and values were reused from an earlier request.
    pub cached_tokens: u32,
    pub completion_tokens: u32,
}

/// Where the time went, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Waiting for the model to be free.
    pub queue_ms: f64,
    /// Computing the prompt (the part not found in the prefix cache).
    pub prefill_ms: f64,
    /// From the request to the first piece of text.
    pub ttft_ms: f64,
    /// From the first token to the end.
    pub decode_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GenEvent {
    /// The next piece of the answer: always whole UTF-8 characters.
    Token { text: String },
    /// The last event of every successful stream.
    End { finish_reason: FinishReason, usage: Usage, timings: Timings },
}

pub type GenStream = Pin<Box<dyn Stream<Item = Result<GenEvent, ModelError>> + Send>>;

#[async_trait]
pub trait Generator: Send + Sync + 'static {
    /// The model's name (manifest name, or the remote model's).
    fn name(&self) -> &str;

    /// Starts a generation. A full queue is `Overloaded` at once, never a
    /// growing wait; a bad request is `InvalidRequest`. Dropping the stream
    /// stops the computation within one token.
    async fn generate(&self, request: GenRequest) -> Result<GenStream, ModelError>;

    /// Computes the request's prompt into the engine's prefix cache without
    /// answering, so that later prompts starting the same way compute only
    /// their rest. Engines without such a cache (or that keep their own, like
    /// a remote server) do nothing.
    async fn prepare(&self, _request: GenRequest) -> Result<(), ModelError> {
        Ok(())
    }
}
