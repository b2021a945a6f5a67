//! Domain types shared by the store, the API and (later) the dialog engine.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::settings::TenantSettings;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Tenant {
    pub id: Uuid,
    /// The name used in URLs, tokens and commands (`demo`).
    pub slug: String,
    pub name: String,
    pub settings: TenantSettings,
    pub created_at: DateTime<Utc>,
}

/// A tenant slug: lower-case ASCII letters, digits and `-`, 1..=63 chars.
pub fn valid_slug(slug: &str) -> bool {
    !slug.is_empty()
        && slug.len() <= 63
        && !slug.starts_with('-')
        && slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Agent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Agent => "agent",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "agent" => Some(Role::Agent),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct User {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub teams: Vec<String>,
    pub max_concurrent: i32,
    #[serde(skip)]
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub tenant_id: Uuid,
    /// Stored lower-cased: e-mail lookups are case-insensitive.
    pub email: String,
    pub name: String,
    pub role: Role,
    pub teams: Vec<String>,
    pub max_concurrent: i32,
    pub password_hash: String,
}

/// A partial update of a user; `None` leaves the field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub name: Option<String>,
    pub role: Option<Role>,
    pub teams: Option<Vec<String>>,
    pub max_concurrent: Option<i32>,
    pub password_hash: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConversationStatus {
    Bot,
    Queued,
    Assigned,
    Closed,
}

impl ConversationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bot => "bot",
            Self::Queued => "queued",
            Self::Assigned => "assigned",
            Self::Closed => "closed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "bot" => Some(Self::Bot),
            "queued" => Some(Self::Queued),
            "assigned" => Some(Self::Assigned),
            "closed" => Some(Self::Closed),
            _ => None,
        }
    }
}

/// What the widget told us about the customer (all optional). Stored as JSON;
/// clients send the API's own request type, never this.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CustomerInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Set by the server once `user_hash` was checked.
    #[serde(default)]
    pub verified: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Conversation {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub status: ConversationStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    pub locale: String,
    pub customer: CustomerInfo,
    /// The `seq` of the newest message (0 when there is none).
    pub last_seq: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csat: Option<i16>,
    pub created_at: DateTime<Utc>,
    /// The last message or state change.
    pub updated_at: DateTime<Utc>,
    /// The last state change: queue order and waiting time count from here.
    pub status_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewConversation {
    pub tenant_id: Uuid,
    pub locale: String,
    pub customer: CustomerInfo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sender {
    Customer,
    Bot,
    Agent,
    System,
}

impl Sender {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Bot => "bot",
            Self::Agent => "agent",
            Self::System => "system",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "customer" => Some(Self::Customer),
            "bot" => Some(Self::Bot),
            "agent" => Some(Self::Agent),
            "system" => Some(Self::System),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Citation {
    pub article_id: String,
    pub title: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Message {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub seq: i64,
    pub sender: Sender,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_id: Option<Uuid>,
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub citations: Vec<Citation>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub quick_replies: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct NewMessage {
    pub tenant_id: Uuid,
    pub conversation_id: Uuid,
    pub sender: Sender,
    pub sender_id: Option<Uuid>,
    /// Already redacted by the caller.
    pub text: String,
    pub client_msg_id: Option<Uuid>,
    pub intent: Option<String>,
    pub citations: Vec<Citation>,
    pub quick_replies: Vec<String>,
}

/// The result of an append: `created == false` means the `client_msg_id`
/// was seen before with the same text and `message` is the stored one.
#[derive(Debug, Clone)]
pub struct Appended {
    pub message: Message,
    pub created: bool,
}

/// A state change of a conversation. `from` lists the states it may leave;
/// any other current state makes the transition fail with a conflict.
#[derive(Debug, Clone)]
pub struct Transition {
    pub tenant_id: Uuid,
    pub conversation_id: Uuid,
    pub from: Vec<ConversationStatus>,
    pub to: ConversationStatus,
    /// The agent after the transition (`None` clears it).
    pub agent_id: Option<Uuid>,
    pub team: Option<String>,
    /// Who did it (a user id, or `None` for the customer / the system).
    pub actor: Option<Uuid>,
    pub kind: String,
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Event {
    pub id: i64,
    pub tenant_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<Uuid>,
    pub kind: String,
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewEvent {
    pub tenant_id: Uuid,
    pub conversation_id: Option<Uuid>,
    pub actor: Option<Uuid>,
    pub kind: String,
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Rating {
    Up,
    Down,
}

impl Rating {
    pub fn as_str(self) -> &'static str {
        match self {
            Rating::Up => "up",
            Rating::Down => "down",
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewFeedback {
    pub tenant_id: Uuid,
    pub conversation_id: Uuid,
    pub message_id: Uuid,
    pub rating: Rating,
    pub comment: Option<String>,
}

/// A trained intent classifier of one tenant, as the Store keeps it.
#[derive(Debug, Clone)]
pub struct IntentModelRecord {
    pub tenant_id: Uuid,
    pub version: i64,
    /// The encoder the head was trained on (e.g. `multilingual-e5-small`).
    pub encoder: String,
    /// Labels, thresholds, metrics: the artifact's `intent.json`.
    pub meta: serde_json::Value,
    /// The head's safetensors bytes.
    pub weights: Vec<u8>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewIntentModel {
    pub tenant_id: Uuid,
    pub encoder: String,
    pub meta: serde_json::Value,
    pub weights: Vec<u8>,
}

/// A reply agents insert with one click (`/v1/admin/canned`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CannedResponse {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub title: String,
    pub text: String,
    /// `en` or `ko`.
    pub language: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewCanned {
    pub tenant_id: Uuid,
    pub title: String,
    pub text: String,
    pub language: String,
}

/// What a background job is doing (`/v1/admin/jobs/{id}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "queued" => Some(Self::Queued),
            "running" => Some(Self::Running),
            "succeeded" => Some(Self::Succeeded),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
    /// Queued or running: the job still holds its tenant's slot for its kind.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Queued | Self::Running)
    }
}

/// A background job of one tenant (e.g. `intent_training`), kept in the Store
/// so any replica answers for it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Job {
    pub id: Uuid,
    #[serde(skip)]
    pub tenant_id: Uuid,
    /// `intent_training`.
    pub kind: String,
    pub state: JobState,
    /// 0 to 1.
    pub progress: f64,
    /// The result's figures, once it succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metrics: Option<serde_json::Value>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A change to a job: progress while it runs, then its end.
#[derive(Debug, Clone, PartialEq)]
pub struct JobUpdate {
    pub state: JobState,
    pub progress: f64,
    pub metrics: Option<serde_json::Value>,
    pub error: Option<String>,
}
