//! The knowledge base: FAQ articles in immutable, numbered versions per tenant
//! (the Store keeps them), and the `KnowledgeIndex` trait that imports,
//! publishes and searches them (aicc-search implements it).
//!
//! A version never changes once written: an import or an edit writes a new
//! draft version, and publishing moves the tenant's live pointer to one.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::StoreError;

/// One FAQ entry (`faq.csv` columns).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Article {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    /// `en`, `ko`, … (detected at import when the file leaves it out).
    pub language: String,
    pub question: String,
    pub answer: String,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A stored knowledge version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KbVersion {
    pub version: i64,
    /// The version this one was derived from (merge, edit, delete).
    pub parent: Option<i64>,
    /// `import:replace`, `import:merge`, `edit` or `delete`.
    pub source: String,
    pub article_count: i64,
    pub created_at: DateTime<Utc>,
    /// When it was last made live (rollbacks publish an old version again).
    pub published_at: Option<DateTime<Utc>>,
    /// Whether it is the tenant's live knowledge now.
    pub live: bool,
}

/// How an import builds its draft.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImportMode {
    /// The draft holds exactly the imported articles.
    #[default]
    Replace,
    /// The imported articles are upserted by id into a copy of the live version.
    Merge,
}

/// A file handed to an import: the format is told by its content type or
/// name and checked against the bytes.
#[derive(Debug, Clone, Default)]
pub struct Upload {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
    pub filename: Option<String>,
}

/// One problem found in an import, with its line (CSV, JSON) or row (XLSX).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LineError {
    pub line: u64,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KbError {
    /// The file was read but its content is not acceptable; every problem is listed.
    #[error("the import has {} error(s)", .0.len())]
    Invalid(Vec<LineError>),
    /// The file is not one of the accepted formats (or not what it claims to be).
    #[error("{0}")]
    UnsupportedFormat(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    BadQuery(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The embedder's queue is full (HTTP 429).
    #[error("the embedding model is overloaded; retry shortly")]
    Overloaded,
    /// The index or a model it needs is not available right now.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Failed(String),
}

/// A search request.
#[derive(Debug, Clone)]
pub struct KbQuery {
    pub text: String,
    pub k: usize,
    /// Search this version instead of the live one (drafts before publishing).
    pub version: Option<i64>,
}

/// The largest query accepted; longer ones are cut at a character boundary
/// (customers paste whole e-mails; the head carries the question).
pub const MAX_QUERY_CHARS: usize = 1_000;
pub const MAX_K: usize = 100;

/// One search result. `score` is the hybrid confidence in [0, 1] that the
/// dialog policy compares with its thresholds (docs/knowledge.md says what it
/// means); the per-retriever scores are there for inspection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KbHit {
    pub article_id: String,
    pub question: String,
    pub answer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    pub language: String,
    pub score: f32,
    pub scores: HitScores,
    /// Which retrievers found it: `bm25`, `dense`.
    pub retrievers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HitScores {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bm25: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dense: Option<f32>,
    pub hybrid: f32,
}

/// A tenant's knowledge: import, versions, publish, edit, search.
#[async_trait]
pub trait KnowledgeIndex: Send + Sync + 'static {
    /// Parses and validates `upload` and stores it as a new draft version.
    /// Any problem rejects the whole file (`KbError::Invalid`); nothing is written.
    async fn import(&self, tenant_id: Uuid, upload: Upload, mode: ImportMode) -> Result<KbVersion, KbError>;
    /// Newest first.
    async fn versions(&self, tenant_id: Uuid) -> Result<Vec<KbVersion>, KbError>;
    /// Makes `version` the tenant's live knowledge (also how rollback works).
    /// A search running meanwhile sees the old or the new version, never a mix.
    async fn publish(&self, tenant_id: Uuid, version: i64) -> Result<KbVersion, KbError>;
    /// An article of `version` (default: the live version).
    async fn article(&self, tenant_id: Uuid, id: &str, version: Option<i64>) -> Result<Article, KbError>;
    /// Writes a new draft: `base` (default: the live version) with `article` added or replaced.
    async fn put_article(&self, tenant_id: Uuid, article: Article, base: Option<i64>) -> Result<KbVersion, KbError>;
    /// Writes a new draft: `base` (default: the live version) without article `id`.
    async fn delete_article(&self, tenant_id: Uuid, id: &str, base: Option<i64>) -> Result<KbVersion, KbError>;
    /// Best hits first, at most `query.k`.
    async fn search(&self, tenant_id: Uuid, query: &KbQuery) -> Result<Vec<KbHit>, KbError>;
}

/// A tenant's fine-tuned retrieval model (query adapter) to store.
#[derive(Debug, Clone)]
pub struct NewAdapter {
    pub tenant_id: Uuid,
    /// The knowledge version it was trained against.
    pub kb_version: Option<i64>,
    /// The embedder whose query space it maps (e.g. `multilingual-e5-small`).
    pub encoder: String,
    pub meta: serde_json::Value,
    /// Safetensors bytes.
    pub weights: Vec<u8>,
}

/// A stored adapter; the newest version is the live one.
#[derive(Debug, Clone)]
pub struct AdapterRecord {
    pub tenant_id: Uuid,
    pub version: i64,
    pub kb_version: Option<i64>,
    pub encoder: String,
    pub meta: serde_json::Value,
    pub weights: Vec<u8>,
    pub created_at: DateTime<Utc>,
}
