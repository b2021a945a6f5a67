//! The `Store` trait: the source of truth for everything durable. Postgres and
//! SQLite implement it (aicc-store); one conformance suite checks both.

use async_trait::async_trait;
use uuid::Uuid;

use crate::domain::*;
use crate::settings::TenantSettings;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A uniqueness or state conflict; the code is stable (e.g. `user_exists`).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The same `client_msg_id` was used before with a different text.
    #[error("client_msg_id was already used with a different text")]
    IdempotencyConflict,
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store error: {0}")]
    Internal(String),
}

impl StoreError {
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict { code, message: message.into() }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `postgres` or `sqlite`.
    fn backend(&self) -> &'static str;
    async fn ping(&self) -> StoreResult<()>;

    /// Returns the secret stored under `name`, storing `candidate` first if
    /// there is none. Every replica calling this concurrently gets the same value.
    async fn get_or_create_secret(&self, name: &str, candidate: &str) -> StoreResult<String>;

    // Tenants
    /// Creates the tenant, or returns the existing one with `false`.
    async fn ensure_tenant(&self, slug: &str, name: &str, settings: &TenantSettings) -> StoreResult<(Tenant, bool)>;
    async fn tenant_by_slug(&self, slug: &str) -> StoreResult<Option<Tenant>>;
    async fn tenant(&self, id: Uuid) -> StoreResult<Option<Tenant>>;
    async fn update_tenant_settings(&self, id: Uuid, settings: &TenantSettings) -> StoreResult<Tenant>;

    // Users
    /// Fails with `Conflict { code: "user_exists" }` when the e-mail is taken in the tenant.
    async fn create_user(&self, user: NewUser) -> StoreResult<User>;
    async fn user(&self, tenant_id: Uuid, id: Uuid) -> StoreResult<Option<User>>;
    async fn user_by_email(&self, tenant_id: Uuid, email: &str) -> StoreResult<Option<User>>;
    async fn list_users(&self, tenant_id: Uuid) -> StoreResult<Vec<User>>;
    async fn update_user(&self, tenant_id: Uuid, id: Uuid, patch: UserPatch) -> StoreResult<User>;
    async fn delete_user(&self, tenant_id: Uuid, id: Uuid) -> StoreResult<()>;

    // Conversations
    async fn create_conversation(&self, new: NewConversation) -> StoreResult<Conversation>;
    async fn conversation(&self, tenant_id: Uuid, id: Uuid) -> StoreResult<Option<Conversation>>;
    /// By id alone, whatever the tenant: for telling "not yours" from "not there".
    async fn find_conversation(&self, id: Uuid) -> StoreResult<Option<Conversation>>;
    /// Newest first.
    async fn list_conversations(
        &self,
        tenant_id: Uuid,
        status: Option<ConversationStatus>,
        limit: i64,
    ) -> StoreResult<Vec<Conversation>>;
    /// Applies a state change and its audit event in one transaction. Only one of
    /// several concurrent transitions from the same state wins; the others get
    /// `Conflict { code: "invalid_transition" }`.
    async fn transition(&self, t: Transition) -> StoreResult<Conversation>;
    /// Conversations in `status` not updated since `before`, any tenant, oldest first.
    async fn stale_conversations(
        &self,
        status: ConversationStatus,
        before: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> StoreResult<Vec<Conversation>>;
    /// A verified customer's conversations (by the tenant's `user_id`), newest first.
    async fn customer_conversations(&self, tenant_id: Uuid, user_id: &str, limit: i64) -> StoreResult<Vec<Conversation>>;
    /// How many conversations each agent of the tenant has assigned now.
    async fn agent_loads(&self, tenant_id: Uuid) -> StoreResult<Vec<(Uuid, i64)>>;
    async fn set_csat(&self, tenant_id: Uuid, conversation_id: Uuid, score: i16) -> StoreResult<()>;

    // Messages
    /// Appends a message with the next `seq` of its conversation, assigned in the
    /// same transaction. Idempotent on `(conversation_id, client_msg_id)`.
    async fn append_message(&self, new: NewMessage) -> StoreResult<Appended>;
    /// Messages with `seq > after_seq`, in `seq` order, at most `limit`.
    async fn list_messages(&self, conversation_id: Uuid, after_seq: i64, limit: i64) -> StoreResult<Vec<Message>>;
    async fn message(&self, conversation_id: Uuid, id: Uuid) -> StoreResult<Option<Message>>;
    async fn message_by_client_id(&self, conversation_id: Uuid, client_msg_id: Uuid) -> StoreResult<Option<Message>>;
    /// One rating per message; a second one replaces the first.
    async fn put_feedback(&self, feedback: NewFeedback) -> StoreResult<()>;

    // Canned responses
    async fn list_canned(&self, tenant_id: Uuid) -> StoreResult<Vec<CannedResponse>>;
    async fn create_canned(&self, new: NewCanned) -> StoreResult<CannedResponse>;
    /// Replaces title, text and language.
    async fn update_canned(&self, id: Uuid, new: NewCanned) -> StoreResult<CannedResponse>;
    async fn delete_canned(&self, tenant_id: Uuid, id: Uuid) -> StoreResult<()>;

    // Intent models
    /// Stores a new version of the tenant's intent model (1, 2, …); it becomes the live one.
    async fn put_intent_model(&self, new: NewIntentModel) -> StoreResult<IntentModelRecord>;
    /// The newest version, if the tenant has any.
    async fn latest_intent_model(&self, tenant_id: Uuid) -> StoreResult<Option<IntentModelRecord>>;
    /// Every tenant with at least one stored intent model (loaded at start).
    async fn intent_model_tenants(&self) -> StoreResult<Vec<Uuid>>;

    /// Replaces the tenant's labelled intent examples with `examples`, in one
    /// transaction: all of them or, on any error, the old set untouched.
    /// Returns how many are stored.
    async fn replace_intent_examples(&self, tenant_id: Uuid, examples: &[crate::intent_data::Example]) -> StoreResult<u64>;
    /// The tenant's intent examples, in import order.
    async fn intent_examples(&self, tenant_id: Uuid) -> StoreResult<Vec<crate::intent_data::Example>>;

    // Background jobs
    /// Creates a `queued` job. A tenant has at most one active (queued or
    /// running) job of a kind: another one fails with `Conflict { code:
    /// "job_in_progress" }`, unless it was not updated since `stale_before`
    /// (its replica died), in which case it is marked failed first.
    async fn create_job(&self, tenant_id: Uuid, kind: &str, stale_before: chrono::DateTime<chrono::Utc>) -> StoreResult<Job>;
    /// The tenant's job (`None` for another tenant's).
    async fn job(&self, tenant_id: Uuid, id: Uuid) -> StoreResult<Option<Job>>;
    /// Sets state, progress, metrics and error of an active job. A finished
    /// (succeeded or failed) job never changes again: `Conflict { code:
    /// "job_finished" }`; `not_found` if there is no such job.
    async fn update_job(&self, id: Uuid, update: JobUpdate) -> StoreResult<Job>;

    // Knowledge base (versions are immutable once written)
    /// Writes a new version (the next number) with exactly `articles`, all or nothing.
    async fn create_kb_version(
        &self,
        tenant_id: Uuid,
        parent: Option<i64>,
        source: &str,
        articles: &[crate::kb::Article],
    ) -> StoreResult<crate::kb::KbVersion>;
    /// Newest first.
    async fn kb_versions(&self, tenant_id: Uuid) -> StoreResult<Vec<crate::kb::KbVersion>>;
    async fn kb_version(&self, tenant_id: Uuid, version: i64) -> StoreResult<Option<crate::kb::KbVersion>>;
    /// The live version's number, if the tenant has published one.
    async fn kb_live_version(&self, tenant_id: Uuid) -> StoreResult<Option<i64>>;
    /// The articles of a version, by id.
    async fn kb_articles(&self, tenant_id: Uuid, version: i64) -> StoreResult<Vec<crate::kb::Article>>;
    /// Makes `version` live (`not_found` if it does not exist).
    async fn publish_kb_version(&self, tenant_id: Uuid, version: i64) -> StoreResult<crate::kb::KbVersion>;

    /// Stores a new version of the tenant's retrieval adapter (1, 2, …); it becomes the live one.
    async fn put_kb_adapter(&self, new: crate::kb::NewAdapter) -> StoreResult<crate::kb::AdapterRecord>;
    async fn latest_kb_adapter(&self, tenant_id: Uuid) -> StoreResult<Option<crate::kb::AdapterRecord>>;

    // Audit
    async fn record_event(&self, event: NewEvent) -> StoreResult<()>;
    /// Newest first.
    async fn list_events(&self, tenant_id: Uuid, conversation_id: Option<Uuid>, limit: i64) -> StoreResult<Vec<Event>>;

    // Analytics
    /// The tenant's conversations created in `[from, to)`, oldest first, at most `limit`.
    async fn conversations_created(
        &self,
        tenant_id: Uuid,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> StoreResult<Vec<Conversation>>;
    /// The tenant's events of the given kinds created in `[from, to)`, oldest first, at most `limit`.
    async fn events_between(
        &self,
        tenant_id: Uuid,
        kinds: &[&str],
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> StoreResult<Vec<Event>>;
}
