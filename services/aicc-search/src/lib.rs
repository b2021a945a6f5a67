//! The knowledge base behind `aicc_core::KnowledgeIndex`: FAQ files parsed and
//! validated (`import`), stored as immutable versions in the Store, indexed
//! per version for BM25 (`lexical`, tantivy) and dense (`vector`, Embedder)
//! retrieval, fused (`fusion`) into one ranking with a confidence the dialog
//! can act on; `adapter` is the tenant's fine-tuned query model and `eval`
//! measures it all.

pub mod adapter;
pub mod analysis;
pub mod embeddings;
pub mod fusion;
pub mod import;
pub mod index;
pub mod lexical;
pub mod service;
pub mod vector;

pub use service::KnowledgeBase;
