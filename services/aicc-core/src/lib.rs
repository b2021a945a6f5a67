//! AICC core: the domain types, the service traits every other crate implements
//! or consumes, and small pure helpers (PII redaction, settings). No I/O here.

pub mod bus;
pub mod domain;
pub mod embed;
pub mod generate;
pub mod intent;
pub mod intent_data;
pub mod kb;
pub mod redact;
pub mod settings;
pub mod store;

pub use domain::*;
pub use bus::{Bus, BusError, BusEvent, BusStream, Topic};
pub use embed::{EmbedKind, Embedder, ModelError};
pub use generate::{ChatMessage, ChatRole, FinishReason, GenEvent, GenRequest, GenStream, Generator, Sampling, Timings, Usage};
pub use kb::{Article, HitScores, ImportMode, KbError, KbHit, KbQuery, KbVersion, KnowledgeIndex, LineError, Upload};
pub use intent::{IntentClassifier, IntentPrediction, IntentTrainer, TrainProgress, TrainedIntents, OUT_OF_SCOPE};
pub use store::{Store, StoreError, StoreResult};
