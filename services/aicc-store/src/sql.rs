//! The SQL both backends share. The schemas differ only in column spellings
//! (see migrations/), and sqlx encodes `Uuid`, `DateTime<Utc>` and `Json<T>`
//! for each, so one body of queries serves both through this macro.

use aicc_core::domain::*;
use aicc_core::settings::TenantSettings;
use aicc_core::{Store, StoreError, StoreResult};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::Row;
use uuid::Uuid;

use crate::{db_err, is_unique_violation, PgStore, SqliteStore};

const TENANT_COLS: &str = "id, slug, name, settings, created_at";
const USER_COLS: &str = "id, tenant_id, email, name, role, teams, max_concurrent, password_hash, created_at";
const CONV_COLS: &str =
    "id, tenant_id, status, agent_id, team, locale, customer, last_seq, csat, created_at, updated_at, status_at";
const CANNED_COLS: &str = "id, tenant_id, title, text, language, created_at, updated_at";
const JOB_COLS: &str = "id, tenant_id, kind, state, progress, metrics, error, created_at, updated_at";
const MSG_COLS: &str =
    "id, conversation_id, seq, sender, sender_id, text, client_msg_id, intent, citations, quick_replies, created_at";

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Internal(format!("unexpected {what} `{value}` in the database"))
}

macro_rules! sql_store {
    ($store:ident, $db:ty, $backend:literal) => {
        impl $store {
            fn tenant_row(r: &<$db as sqlx::Database>::Row) -> StoreResult<Tenant> {
                Ok(Tenant {
                    id: r.try_get("id").map_err(db_err)?,
                    slug: r.try_get("slug").map_err(db_err)?,
                    name: r.try_get("name").map_err(db_err)?,
                    settings: r.try_get::<Json<TenantSettings>, _>("settings").map_err(db_err)?.0,
                    created_at: r.try_get("created_at").map_err(db_err)?,
                })
            }

            fn user_row(r: &<$db as sqlx::Database>::Row) -> StoreResult<User> {
                let role: String = r.try_get("role").map_err(db_err)?;
                Ok(User {
                    id: r.try_get("id").map_err(db_err)?,
                    tenant_id: r.try_get("tenant_id").map_err(db_err)?,
                    email: r.try_get("email").map_err(db_err)?,
                    name: r.try_get("name").map_err(db_err)?,
                    role: Role::parse(&role).ok_or_else(|| corrupt("role", &role))?,
                    teams: r.try_get::<Json<Vec<String>>, _>("teams").map_err(db_err)?.0,
                    max_concurrent: r.try_get("max_concurrent").map_err(db_err)?,
                    password_hash: r.try_get("password_hash").map_err(db_err)?,
                    created_at: r.try_get("created_at").map_err(db_err)?,
                })
            }

            fn conv_row(r: &<$db as sqlx::Database>::Row) -> StoreResult<Conversation> {
                let status: String = r.try_get("status").map_err(db_err)?;
                Ok(Conversation {
                    id: r.try_get("id").map_err(db_err)?,
                    tenant_id: r.try_get("tenant_id").map_err(db_err)?,
                    status: ConversationStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
                    agent_id: r.try_get("agent_id").map_err(db_err)?,
                    team: r.try_get("team").map_err(db_err)?,
                    locale: r.try_get("locale").map_err(db_err)?,
                    customer: r.try_get::<Json<CustomerInfo>, _>("customer").map_err(db_err)?.0,
                    last_seq: r.try_get("last_seq").map_err(db_err)?,
                    csat: r.try_get("csat").map_err(db_err)?,
                    created_at: r.try_get("created_at").map_err(db_err)?,
                    updated_at: r.try_get("updated_at").map_err(db_err)?,
                    status_at: r.try_get("status_at").map_err(db_err)?,
                })
            }

            fn kb_version_row(r: &<$db as sqlx::Database>::Row) -> StoreResult<aicc_core::kb::KbVersion> {
                Ok(aicc_core::kb::KbVersion {
                    version: r.try_get("version").map_err(db_err)?,
                    parent: r.try_get("parent").map_err(db_err)?,
                    source: r.try_get("source").map_err(db_err)?,
                    article_count: r.try_get("article_count").map_err(db_err)?,
                    created_at: r.try_get("created_at").map_err(db_err)?,
                    published_at: r.try_get("published_at").map_err(db_err)?,
                    live: r.try_get("live").map_err(db_err)?,
                })
            }

            fn job_row(r: &<$db as sqlx::Database>::Row) -> StoreResult<Job> {
                let state: String = r.try_get("state").map_err(db_err)?;
                Ok(Job {
                    id: r.try_get("id").map_err(db_err)?,
                    tenant_id: r.try_get("tenant_id").map_err(db_err)?,
                    kind: r.try_get("kind").map_err(db_err)?,
                    state: JobState::parse(&state).ok_or_else(|| corrupt("job state", &state))?,
                    progress: r.try_get("progress").map_err(db_err)?,
                    metrics: r.try_get::<Option<Json<serde_json::Value>>, _>("metrics").map_err(db_err)?.map(|j| j.0),
                    error: r.try_get("error").map_err(db_err)?,
                    created_at: r.try_get("created_at").map_err(db_err)?,
                    updated_at: r.try_get("updated_at").map_err(db_err)?,
                })
            }

            fn msg_row(r: &<$db as sqlx::Database>::Row) -> StoreResult<Message> {
                let sender: String = r.try_get("sender").map_err(db_err)?;
                Ok(Message {
                    id: r.try_get("id").map_err(db_err)?,
                    conversation_id: r.try_get("conversation_id").map_err(db_err)?,
                    seq: r.try_get("seq").map_err(db_err)?,
                    sender: Sender::parse(&sender).ok_or_else(|| corrupt("sender", &sender))?,
                    sender_id: r.try_get("sender_id").map_err(db_err)?,
                    text: r.try_get("text").map_err(db_err)?,
                    client_msg_id: r.try_get("client_msg_id").map_err(db_err)?,
                    intent: r.try_get("intent").map_err(db_err)?,
                    citations: r.try_get::<Json<Vec<Citation>>, _>("citations").map_err(db_err)?.0,
                    quick_replies: r.try_get::<Json<Vec<String>>, _>("quick_replies").map_err(db_err)?.0,
                    created_at: r.try_get("created_at").map_err(db_err)?,
                })
            }

            fn canned_row(r: &<$db as sqlx::Database>::Row) -> StoreResult<CannedResponse> {
                Ok(CannedResponse {
                    id: r.try_get("id").map_err(db_err)?,
                    tenant_id: r.try_get("tenant_id").map_err(db_err)?,
                    title: r.try_get("title").map_err(db_err)?,
                    text: r.try_get("text").map_err(db_err)?,
                    language: r.try_get("language").map_err(db_err)?,
                    created_at: r.try_get("created_at").map_err(db_err)?,
                    updated_at: r.try_get("updated_at").map_err(db_err)?,
                })
            }

            fn event_row(r: &<$db as sqlx::Database>::Row) -> StoreResult<Event> {
                Ok(Event {
                    id: r.try_get("id").map_err(db_err)?,
                    tenant_id: r.try_get("tenant_id").map_err(db_err)?,
                    conversation_id: r.try_get("conversation_id").map_err(db_err)?,
                    actor: r.try_get("actor").map_err(db_err)?,
                    kind: r.try_get("kind").map_err(db_err)?,
                    data: r.try_get::<Json<serde_json::Value>, _>("data").map_err(db_err)?.0,
                    created_at: r.try_get("created_at").map_err(db_err)?,
                })
            }

            /// Deletes one row of a tenant-scoped table; `NotFound(what)` when there is none.
            async fn delete_scoped(&self, table: &'static str, what: &'static str, tenant_id: Uuid, id: Uuid) -> StoreResult<()> {
                let n = sqlx::query(&format!("DELETE FROM {table} WHERE tenant_id = $1 AND id = $2"))
                    .bind(tenant_id)
                    .bind(id)
                    .execute(&self.pool)
                    .await
                    .map_err(db_err)?
                    .rows_affected();
                if n == 0 {
                    return Err(StoreError::NotFound(what));
                }
                Ok(())
            }

            async fn insert_event<'c, E>(exec: E, ev: &NewEvent, now: DateTime<Utc>) -> StoreResult<()>
            where
                E: sqlx::Executor<'c, Database = $db>,
            {
                sqlx::query(
                    "INSERT INTO events (tenant_id, conversation_id, actor, kind, data, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(ev.tenant_id)
                .bind(ev.conversation_id)
                .bind(ev.actor)
                .bind(&ev.kind)
                .bind(Json(&ev.data))
                .bind(now)
                .execute(exec)
                .await
                .map_err(db_err)?;
                Ok(())
            }
        }

        #[async_trait]
        impl Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db_err)?;
                Ok(())
            }

            async fn get_or_create_secret(&self, name: &str, candidate: &str) -> StoreResult<String> {
                sqlx::query("INSERT INTO secrets (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
                    .bind(name)
                    .bind(candidate)
                    .bind(Utc::now())
                    .execute(&self.pool)
                    .await
                    .map_err(db_err)?;
                sqlx::query_scalar("SELECT value FROM secrets WHERE name = $1")
                    .bind(name)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(db_err)
            }

            async fn ensure_tenant(&self, slug: &str, name: &str, settings: &TenantSettings) -> StoreResult<(Tenant, bool)> {
                let inserted = sqlx::query(
                    "INSERT INTO tenants (id, slug, name, settings, created_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (slug) DO NOTHING",
                )
                .bind(Uuid::new_v4())
                .bind(slug)
                .bind(name)
                .bind(Json(settings))
                .bind(Utc::now())
                .execute(&self.pool)
                .await
                .map_err(db_err)?
                .rows_affected()
                    == 1;
                let tenant = self.tenant_by_slug(slug).await?.ok_or(StoreError::NotFound("tenant"))?;
                Ok((tenant, inserted))
            }

            async fn tenant_by_slug(&self, slug: &str) -> StoreResult<Option<Tenant>> {
                let row = sqlx::query(&format!("SELECT {TENANT_COLS} FROM tenants WHERE slug = $1"))
                    .bind(slug)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err)?;
                row.as_ref().map(Self::tenant_row).transpose()
            }

            async fn tenant(&self, id: Uuid) -> StoreResult<Option<Tenant>> {
                let row = sqlx::query(&format!("SELECT {TENANT_COLS} FROM tenants WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err)?;
                row.as_ref().map(Self::tenant_row).transpose()
            }

            async fn update_tenant_settings(&self, id: Uuid, settings: &TenantSettings) -> StoreResult<Tenant> {
                let row = sqlx::query(&format!("UPDATE tenants SET settings = $1 WHERE id = $2 RETURNING {TENANT_COLS}"))
                    .bind(Json(settings))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err)?;
                row.as_ref().map(Self::tenant_row).transpose()?.ok_or(StoreError::NotFound("tenant"))
            }

            async fn create_user(&self, u: NewUser) -> StoreResult<User> {
                let row = sqlx::query(&format!(
                    "INSERT INTO users ({USER_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {USER_COLS}"
                ))
                .bind(Uuid::new_v4())
                .bind(u.tenant_id)
                .bind(u.email.to_lowercase())
                .bind(&u.name)
                .bind(u.role.as_str())
                .bind(Json(&u.teams))
                .bind(u.max_concurrent)
                .bind(&u.password_hash)
                .bind(Utc::now())
                .fetch_one(&self.pool)
                .await
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        StoreError::conflict("user_exists", format!("a user with e-mail {} already exists", u.email))
                    } else {
                        db_err(e)
                    }
                })?;
                Self::user_row(&row)
            }

            async fn user(&self, tenant_id: Uuid, id: Uuid) -> StoreResult<Option<User>> {
                let row = sqlx::query(&format!("SELECT {USER_COLS} FROM users WHERE tenant_id = $1 AND id = $2"))
                    .bind(tenant_id)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err)?;
                row.as_ref().map(Self::user_row).transpose()
            }

            async fn user_by_email(&self, tenant_id: Uuid, email: &str) -> StoreResult<Option<User>> {
                let row = sqlx::query(&format!("SELECT {USER_COLS} FROM users WHERE tenant_id = $1 AND email = $2"))
                    .bind(tenant_id)
                    .bind(email.to_lowercase())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err)?;
                row.as_ref().map(Self::user_row).transpose()
            }

            async fn list_users(&self, tenant_id: Uuid) -> StoreResult<Vec<User>> {
                let rows = sqlx::query(&format!("SELECT {USER_COLS} FROM users WHERE tenant_id = $1 ORDER BY email"))
                    .bind(tenant_id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_err)?;
                rows.iter().map(Self::user_row).collect()
            }

            async fn update_user(&self, tenant_id: Uuid, id: Uuid, p: UserPatch) -> StoreResult<User> {
                let row = sqlx::query(&format!(
                    "UPDATE users SET name = COALESCE($3, name), role = COALESCE($4, role), \
                     teams = COALESCE($5, teams), max_concurrent = COALESCE($6, max_concurrent), \
                     password_hash = COALESCE($7, password_hash) \
                     WHERE tenant_id = $1 AND id = $2 RETURNING {USER_COLS}"
                ))
                .bind(tenant_id)
                .bind(id)
                .bind(p.name)
                .bind(p.role.map(Role::as_str))
                .bind(p.teams.map(Json))
                .bind(p.max_concurrent)
                .bind(p.password_hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
                row.as_ref().map(Self::user_row).transpose()?.ok_or(StoreError::NotFound("user"))
            }

            async fn delete_user(&self, tenant_id: Uuid, id: Uuid) -> StoreResult<()> {
                self.delete_scoped("users", "user", tenant_id, id).await
            }

            async fn create_conversation(&self, c: NewConversation) -> StoreResult<Conversation> {
                let now = Utc::now();
                let id = Uuid::new_v4();
                let mut tx = self.pool.begin().await.map_err(db_err)?;
                let row = sqlx::query(&format!(
                    "INSERT INTO conversations (id, tenant_id, status, locale, customer, last_seq, created_at, updated_at, status_at) \
                     VALUES ($1, $2, 'bot', $3, $4, 0, $5, $5, $5) RETURNING {CONV_COLS}"
                ))
                .bind(id)
                .bind(c.tenant_id)
                .bind(&c.locale)
                .bind(Json(&c.customer))
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?;
                let ev = NewEvent {
                    tenant_id: c.tenant_id,
                    conversation_id: Some(id),
                    actor: None,
                    kind: "conversation.created".into(),
                    data: serde_json::json!({ "status": "bot", "locale": c.locale }),
                };
                Self::insert_event(&mut *tx, &ev, now).await?;
                tx.commit().await.map_err(db_err)?;
                Self::conv_row(&row)
            }

            async fn conversation(&self, tenant_id: Uuid, id: Uuid) -> StoreResult<Option<Conversation>> {
                let row = sqlx::query(&format!("SELECT {CONV_COLS} FROM conversations WHERE tenant_id = $1 AND id = $2"))
                    .bind(tenant_id)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err)?;
                row.as_ref().map(Self::conv_row).transpose()
            }

            async fn find_conversation(&self, id: Uuid) -> StoreResult<Option<Conversation>> {
                let row = sqlx::query(&format!("SELECT {CONV_COLS} FROM conversations WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err)?;
                row.as_ref().map(Self::conv_row).transpose()
            }

            async fn list_conversations(
                &self,
                tenant_id: Uuid,
                status: Option<ConversationStatus>,
                limit: i64,
            ) -> StoreResult<Vec<Conversation>> {
                let rows = sqlx::query(&format!(
                    "SELECT {CONV_COLS} FROM conversations WHERE tenant_id = $1 AND ($2 IS NULL OR status = $2) \
                     ORDER BY updated_at DESC, id LIMIT $3"
                ))
                .bind(tenant_id)
                .bind(status.map(ConversationStatus::as_str))
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
                rows.iter().map(Self::conv_row).collect()
            }

            async fn transition(&self, t: Transition) -> StoreResult<Conversation> {
                let now = Utc::now();
                // The allowed source states go in as extra placeholders: a conditional
                // UPDATE is what makes concurrent claims race-free (one row, one winner).
                let from_list: Vec<String> = (0..t.from.len()).map(|i| format!("${}", i + 7)).collect();
                let sql = format!(
                    "UPDATE conversations SET status = $1, agent_id = $2, team = $3, updated_at = $4, status_at = $4 \
                     WHERE tenant_id = $5 AND id = $6 AND status IN ({}) RETURNING {CONV_COLS}",
                    if from_list.is_empty() { "NULL".to_string() } else { from_list.join(", ") }
                );
                let mut tx = self.pool.begin().await.map_err(db_err)?;
                let mut q = sqlx::query(&sql)
                    .bind(t.to.as_str())
                    .bind(t.agent_id)
                    .bind(&t.team)
                    .bind(now)
                    .bind(t.tenant_id)
                    .bind(t.conversation_id);
                for s in &t.from {
                    q = q.bind(s.as_str());
                }
                let Some(row) = q.fetch_optional(&mut *tx).await.map_err(db_err)? else {
                    tx.rollback().await.map_err(db_err)?;
                    return match self.conversation(t.tenant_id, t.conversation_id).await? {
                        None => Err(StoreError::NotFound("conversation")),
                        Some(c) => Err(StoreError::conflict(
                            "invalid_transition",
                            format!("the conversation is {}; it cannot become {}", c.status.as_str(), t.to.as_str()),
                        )),
                    };
                };
                let conv = Self::conv_row(&row)?;
                let mut data = t.data.clone();
                if let Some(obj) = data.as_object_mut() {
                    obj.insert("to".into(), t.to.as_str().into());
                    obj.insert("agent_id".into(), serde_json::json!(t.agent_id));
                }
                let ev = NewEvent {
                    tenant_id: t.tenant_id,
                    conversation_id: Some(t.conversation_id),
                    actor: t.actor,
                    kind: t.kind.clone(),
                    data,
                };
                Self::insert_event(&mut *tx, &ev, now).await?;
                tx.commit().await.map_err(db_err)?;
                Ok(conv)
            }

            async fn stale_conversations(
                &self,
                status: ConversationStatus,
                before: DateTime<Utc>,
                limit: i64,
            ) -> StoreResult<Vec<Conversation>> {
                let rows = sqlx::query(&format!(
                    "SELECT {CONV_COLS} FROM conversations WHERE status = $1 AND updated_at < $2 ORDER BY updated_at LIMIT $3"
                ))
                .bind(status.as_str())
                .bind(before)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
                rows.iter().map(Self::conv_row).collect()
            }

            async fn customer_conversations(&self, tenant_id: Uuid, user_id: &str, limit: i64) -> StoreResult<Vec<Conversation>> {
                // CAST: Postgres yields 'true', SQLite 1 for a JSON true.
                let rows = sqlx::query(&format!(
                    "SELECT {CONV_COLS} FROM conversations WHERE tenant_id = $1 AND customer ->> 'user_id' = $2 \
                     AND CAST(customer ->> 'verified' AS TEXT) IN ('true', '1') ORDER BY created_at DESC LIMIT $3"
                ))
                .bind(tenant_id)
                .bind(user_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
                rows.iter().map(Self::conv_row).collect()
            }

            async fn agent_loads(&self, tenant_id: Uuid) -> StoreResult<Vec<(Uuid, i64)>> {
                let rows = sqlx::query(
                    "SELECT agent_id, COUNT(*) AS n FROM conversations \
                     WHERE tenant_id = $1 AND status = 'assigned' AND agent_id IS NOT NULL GROUP BY agent_id",
                )
                .bind(tenant_id)
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
                rows.iter()
                    .map(|r| Ok((r.try_get("agent_id").map_err(db_err)?, r.try_get("n").map_err(db_err)?)))
                    .collect()
            }

            async fn put_intent_model(&self, m: NewIntentModel) -> StoreResult<IntentModelRecord> {
                // The next version in the same statement; two concurrent saves
                // collide on the primary key and the loser retries.
                for _ in 0..5 {
                    let created_at = Utc::now();
                    let inserted = sqlx::query_scalar::<_, i64>(
                        "INSERT INTO intent_models (tenant_id, version, encoder, meta, weights, created_at) \
                         SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, $4, $5 FROM intent_models WHERE tenant_id = $1 \
                         RETURNING version",
                    )
                    .bind(m.tenant_id)
                    .bind(&m.encoder)
                    .bind(Json(&m.meta))
                    .bind(&m.weights)
                    .bind(created_at)
                    .fetch_one(&self.pool)
                    .await;
                    match inserted {
                        Ok(version) => {
                            return Ok(IntentModelRecord {
                                tenant_id: m.tenant_id,
                                version,
                                encoder: m.encoder,
                                meta: m.meta,
                                weights: m.weights,
                                created_at,
                            })
                        }
                        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => continue,
                        Err(e) => return Err(db_err(e)),
                    }
                }
                Err(StoreError::conflict("intent_model_busy", "too many concurrent saves of this tenant's intent model"))
            }

            async fn latest_intent_model(&self, tenant_id: Uuid) -> StoreResult<Option<IntentModelRecord>> {
                let row = sqlx::query(
                    "SELECT version, encoder, meta, weights, created_at FROM intent_models \
                     WHERE tenant_id = $1 ORDER BY version DESC LIMIT 1",
                )
                .bind(tenant_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
                row.map(|r| {
                    Ok(IntentModelRecord {
                        tenant_id,
                        version: r.try_get("version").map_err(db_err)?,
                        encoder: r.try_get("encoder").map_err(db_err)?,
                        meta: r.try_get::<Json<serde_json::Value>, _>("meta").map_err(db_err)?.0,
                        weights: r.try_get("weights").map_err(db_err)?,
                        created_at: r.try_get("created_at").map_err(db_err)?,
                    })
                })
                .transpose()
            }

            async fn intent_model_tenants(&self) -> StoreResult<Vec<Uuid>> {
                sqlx::query_scalar::<_, Uuid>("SELECT DISTINCT tenant_id FROM intent_models")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_err)
            }

            async fn replace_intent_examples(&self, tenant_id: Uuid, examples: &[aicc_core::intent_data::Example]) -> StoreResult<u64> {
                // One transaction: the old set goes and the new one comes, or neither.
                let mut tx = self.pool.begin().await.map_err(db_err)?;
                sqlx::query("DELETE FROM intent_examples WHERE tenant_id = $1")
                    .bind(tenant_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                for (c, chunk) in examples.chunks(500).enumerate() {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO intent_examples (tenant_id, position, text, intent, language) ",
                    );
                    q.push_values(chunk.iter().enumerate(), |mut b, (i, e)| {
                        b.push_bind(tenant_id)
                            .push_bind((c * 500 + i) as i64)
                            .push_bind(e.text.clone())
                            .push_bind(e.intent.clone())
                            .push_bind(e.language.clone());
                    });
                    match q.build().execute(&mut *tx).await {
                        Ok(_) => {}
                        Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
                            return Err(StoreError::NotFound("tenant"))
                        }
                        Err(e) => return Err(db_err(e)),
                    }
                }
                tx.commit().await.map_err(db_err)?;
                Ok(examples.len() as u64)
            }

            async fn intent_examples(&self, tenant_id: Uuid) -> StoreResult<Vec<aicc_core::intent_data::Example>> {
                let rows = sqlx::query(
                    "SELECT text, intent, language FROM intent_examples WHERE tenant_id = $1 ORDER BY position",
                )
                .bind(tenant_id)
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
                rows.iter()
                    .map(|r| {
                        Ok(aicc_core::intent_data::Example {
                            text: r.try_get("text").map_err(db_err)?,
                            intent: r.try_get("intent").map_err(db_err)?,
                            language: r.try_get("language").map_err(db_err)?,
                        })
                    })
                    .collect()
            }

            async fn create_job(&self, tenant_id: Uuid, kind: &str, stale_before: DateTime<Utc>) -> StoreResult<Job> {
                let now = Utc::now();
                // An active job nobody has updated for long belongs to a replica
                // that died: it would hold the slot forever.
                sqlx::query(
                    "UPDATE jobs SET state = 'failed', error = $4, updated_at = $5 \
                     WHERE tenant_id = $1 AND kind = $2 AND state IN ('queued', 'running') AND updated_at < $3",
                )
                .bind(tenant_id)
                .bind(kind)
                .bind(stale_before)
                .bind("abandoned: no progress was reported for too long (the server running it stopped?)")
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err(db_err)?;
                let id = Uuid::new_v4();
                // The partial unique index (tenant_id, kind) over active jobs decides a race.
                let inserted = sqlx::query(
                    "INSERT INTO jobs (id, tenant_id, kind, state, progress, metrics, error, created_at, updated_at) \
                     VALUES ($1, $2, $3, 'queued', 0, NULL, NULL, $4, $4)",
                )
                .bind(id)
                .bind(tenant_id)
                .bind(kind)
                .bind(now)
                .execute(&self.pool)
                .await;
                match inserted {
                    Ok(_) => {}
                    Err(e) if is_unique_violation(&e) => {
                        return Err(StoreError::conflict("job_in_progress", format!("a {kind} job of this tenant is already running")))
                    }
                    Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => return Err(StoreError::NotFound("tenant")),
                    Err(e) => return Err(db_err(e)),
                }
                Ok(Job {
                    id,
                    tenant_id,
                    kind: kind.to_string(),
                    state: JobState::Queued,
                    progress: 0.0,
                    metrics: None,
                    error: None,
                    created_at: now,
                    updated_at: now,
                })
            }

            async fn job(&self, tenant_id: Uuid, id: Uuid) -> StoreResult<Option<Job>> {
                let row = sqlx::query(&format!("SELECT {JOB_COLS} FROM jobs WHERE tenant_id = $1 AND id = $2"))
                    .bind(tenant_id)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err)?;
                row.as_ref().map(Self::job_row).transpose()
            }

            async fn update_job(&self, id: Uuid, u: JobUpdate) -> StoreResult<Job> {
                let row = sqlx::query(&format!(
                    "UPDATE jobs SET state = $2, progress = $3, metrics = $4, error = $5, updated_at = $6 \
                     WHERE id = $1 AND state IN ('queued', 'running') RETURNING {JOB_COLS}"
                ))
                .bind(id)
                .bind(u.state.as_str())
                .bind(u.progress.clamp(0.0, 1.0))
                .bind(u.metrics.as_ref().map(Json))
                .bind(u.error.as_deref())
                .bind(Utc::now())
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
                if let Some(row) = row {
                    return Self::job_row(&row);
                }
                let found: Option<String> = sqlx::query_scalar("SELECT state FROM jobs WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err)?;
                match found {
                    Some(state) => Err(StoreError::conflict("job_finished", format!("the job has {state}; it does not change again"))),
                    None => Err(StoreError::NotFound("job")),
                }
            }

            async fn create_kb_version(
                &self,
                tenant_id: Uuid,
                parent: Option<i64>,
                source: &str,
                articles: &[aicc_core::kb::Article],
            ) -> StoreResult<aicc_core::kb::KbVersion> {
                // One transaction: the version row and all its articles, or nothing.
                // Two concurrent writers collide on the version number; the loser retries.
                for _ in 0..5 {
                    let created_at = Utc::now();
                    let mut tx = self.pool.begin().await.map_err(db_err)?;
                    let inserted = sqlx::query_scalar::<_, i64>(
                        "INSERT INTO kb_versions (tenant_id, version, parent, source, article_count, created_at) \
                         SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, $4, $5 FROM kb_versions WHERE tenant_id = $1 \
                         RETURNING version",
                    )
                    .bind(tenant_id)
                    .bind(parent)
                    .bind(source)
                    .bind(articles.len() as i64)
                    .bind(created_at)
                    .fetch_one(&mut *tx)
                    .await;
                    let version = match inserted {
                        Ok(v) => v,
                        Err(e) if is_unique_violation(&e) => continue,
                        Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
                            return Err(StoreError::NotFound("tenant"))
                        }
                        Err(e) => return Err(db_err(e)),
                    };
                    for chunk in articles.chunks(500) {
                        let mut q = sqlx::QueryBuilder::<$db>::new(
                            "INSERT INTO kb_articles (tenant_id, version, id, intent, language, question, answer, tags) ",
                        );
                        q.push_values(chunk, |mut b, a| {
                            b.push_bind(tenant_id)
                                .push_bind(version)
                                .push_bind(a.id.clone())
                                .push_bind(a.intent.clone())
                                .push_bind(a.language.clone())
                                .push_bind(a.question.clone())
                                .push_bind(a.answer.clone())
                                .push_bind(Json(a.tags.clone()));
                        });
                        match q.build().execute(&mut *tx).await {
                            Ok(_) => {}
                            Err(e) if is_unique_violation(&e) => {
                                return Err(StoreError::conflict("duplicate_article", "two articles share one id"))
                            }
                            Err(e) => return Err(db_err(e)),
                        }
                    }
                    tx.commit().await.map_err(db_err)?;
                    return Ok(aicc_core::kb::KbVersion {
                        version,
                        parent,
                        source: source.to_string(),
                        article_count: articles.len() as i64,
                        created_at,
                        published_at: None,
                        live: false,
                    });
                }
                Err(StoreError::conflict("kb_busy", "too many concurrent writes to this tenant's knowledge"))
            }

            async fn kb_versions(&self, tenant_id: Uuid) -> StoreResult<Vec<aicc_core::kb::KbVersion>> {
                let rows = sqlx::query(
                    "SELECT v.version, v.parent, v.source, v.article_count, v.created_at, v.published_at, \
                     (l.version IS NOT NULL) AS live \
                     FROM kb_versions v LEFT JOIN kb_live l ON l.tenant_id = v.tenant_id AND l.version = v.version \
                     WHERE v.tenant_id = $1 ORDER BY v.version DESC",
                )
                .bind(tenant_id)
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
                rows.iter().map(Self::kb_version_row).collect()
            }

            async fn kb_version(&self, tenant_id: Uuid, version: i64) -> StoreResult<Option<aicc_core::kb::KbVersion>> {
                let row = sqlx::query(
                    "SELECT v.version, v.parent, v.source, v.article_count, v.created_at, v.published_at, \
                     (l.version IS NOT NULL) AS live \
                     FROM kb_versions v LEFT JOIN kb_live l ON l.tenant_id = v.tenant_id AND l.version = v.version \
                     WHERE v.tenant_id = $1 AND v.version = $2",
                )
                .bind(tenant_id)
                .bind(version)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
                row.as_ref().map(Self::kb_version_row).transpose()
            }

            async fn kb_live_version(&self, tenant_id: Uuid) -> StoreResult<Option<i64>> {
                sqlx::query_scalar::<_, i64>("SELECT version FROM kb_live WHERE tenant_id = $1")
                    .bind(tenant_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err)
            }

            async fn kb_articles(&self, tenant_id: Uuid, version: i64) -> StoreResult<Vec<aicc_core::kb::Article>> {
                let rows = sqlx::query(
                    "SELECT id, intent, language, question, answer, tags FROM kb_articles \
                     WHERE tenant_id = $1 AND version = $2 ORDER BY id",
                )
                .bind(tenant_id)
                .bind(version)
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
                rows.iter()
                    .map(|r| {
                        Ok(aicc_core::kb::Article {
                            id: r.try_get("id").map_err(db_err)?,
                            intent: r.try_get("intent").map_err(db_err)?,
                            language: r.try_get("language").map_err(db_err)?,
                            question: r.try_get("question").map_err(db_err)?,
                            answer: r.try_get("answer").map_err(db_err)?,
                            tags: r.try_get::<Json<Vec<String>>, _>("tags").map_err(db_err)?.0,
                        })
                    })
                    .collect()
            }

            async fn publish_kb_version(&self, tenant_id: Uuid, version: i64) -> StoreResult<aicc_core::kb::KbVersion> {
                let now = Utc::now();
                let mut tx = self.pool.begin().await.map_err(db_err)?;
                let found = sqlx::query("UPDATE kb_versions SET published_at = $3 WHERE tenant_id = $1 AND version = $2")
                    .bind(tenant_id)
                    .bind(version)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?
                    .rows_affected();
                if found == 0 {
                    return Err(StoreError::NotFound("knowledge version"));
                }
                sqlx::query(
                    "INSERT INTO kb_live (tenant_id, version) VALUES ($1, $2) \
                     ON CONFLICT (tenant_id) DO UPDATE SET version = excluded.version",
                )
                .bind(tenant_id)
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                tx.commit().await.map_err(db_err)?;
                self.kb_version(tenant_id, version).await?.ok_or(StoreError::NotFound("knowledge version"))
            }

            async fn put_kb_adapter(&self, m: aicc_core::kb::NewAdapter) -> StoreResult<aicc_core::kb::AdapterRecord> {
                // As for intent models: the next version in the statement, the loser of a collision retries.
                for _ in 0..5 {
                    let created_at = Utc::now();
                    let inserted = sqlx::query_scalar::<_, i64>(
                        "INSERT INTO kb_adapters (tenant_id, version, kb_version, encoder, meta, weights, created_at) \
                         SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, $4, $5, $6 FROM kb_adapters WHERE tenant_id = $1 \
                         RETURNING version",
                    )
                    .bind(m.tenant_id)
                    .bind(m.kb_version)
                    .bind(&m.encoder)
                    .bind(Json(&m.meta))
                    .bind(&m.weights)
                    .bind(created_at)
                    .fetch_one(&self.pool)
                    .await;
                    match inserted {
                        Ok(version) => {
                            return Ok(aicc_core::kb::AdapterRecord {
                                tenant_id: m.tenant_id,
                                version,
                                kb_version: m.kb_version,
                                encoder: m.encoder,
                                meta: m.meta,
                                weights: m.weights,
                                created_at,
                            })
                        }
                        Err(e) if is_unique_violation(&e) => continue,
                        Err(e) => return Err(db_err(e)),
                    }
                }
                Err(StoreError::conflict("kb_adapter_busy", "too many concurrent saves of this tenant's retrieval adapter"))
            }

            async fn latest_kb_adapter(&self, tenant_id: Uuid) -> StoreResult<Option<aicc_core::kb::AdapterRecord>> {
                let row = sqlx::query(
                    "SELECT version, kb_version, encoder, meta, weights, created_at FROM kb_adapters \
                     WHERE tenant_id = $1 ORDER BY version DESC LIMIT 1",
                )
                .bind(tenant_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
                row.map(|r| {
                    Ok(aicc_core::kb::AdapterRecord {
                        tenant_id,
                        version: r.try_get("version").map_err(db_err)?,
                        kb_version: r.try_get("kb_version").map_err(db_err)?,
                        encoder: r.try_get("encoder").map_err(db_err)?,
                        meta: r.try_get::<Json<serde_json::Value>, _>("meta").map_err(db_err)?.0,
                        weights: r.try_get("weights").map_err(db_err)?,
                        created_at: r.try_get("created_at").map_err(db_err)?,
                    })
                })
                .transpose()
            }

            async fn list_canned(&self, tenant_id: Uuid) -> StoreResult<Vec<CannedResponse>> {
                let rows = sqlx::query(&format!(
                    "SELECT {CANNED_COLS} FROM canned_responses WHERE tenant_id = $1 ORDER BY title, id"
                ))
                .bind(tenant_id)
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
                rows.iter().map(Self::canned_row).collect()
            }

            async fn create_canned(&self, c: NewCanned) -> StoreResult<CannedResponse> {
                let now = Utc::now();
                let row = sqlx::query(&format!(
                    "INSERT INTO canned_responses ({CANNED_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING {CANNED_COLS}"
                ))
                .bind(Uuid::new_v4())
                .bind(c.tenant_id)
                .bind(&c.title)
                .bind(&c.text)
                .bind(&c.language)
                .bind(now)
                .fetch_one(&self.pool)
                .await
                .map_err(db_err)?;
                Self::canned_row(&row)
            }

            async fn update_canned(&self, id: Uuid, c: NewCanned) -> StoreResult<CannedResponse> {
                let row = sqlx::query(&format!(
                    "UPDATE canned_responses SET title = $3, text = $4, language = $5, updated_at = $6 \
                     WHERE tenant_id = $1 AND id = $2 RETURNING {CANNED_COLS}"
                ))
                .bind(c.tenant_id)
                .bind(id)
                .bind(&c.title)
                .bind(&c.text)
                .bind(&c.language)
                .bind(Utc::now())
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
                row.as_ref().map(Self::canned_row).transpose()?.ok_or(StoreError::NotFound("canned response"))
            }

            async fn delete_canned(&self, tenant_id: Uuid, id: Uuid) -> StoreResult<()> {
                self.delete_scoped("canned_responses", "canned response", tenant_id, id).await
            }

            async fn set_csat(&self, tenant_id: Uuid, conversation_id: Uuid, score: i16) -> StoreResult<()> {
                let now = Utc::now();
                let mut tx = self.pool.begin().await.map_err(db_err)?;
                let n = sqlx::query("UPDATE conversations SET csat = $1 WHERE tenant_id = $2 AND id = $3")
                    .bind(score)
                    .bind(tenant_id)
                    .bind(conversation_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?
                    .rows_affected();
                if n == 0 {
                    return Err(StoreError::NotFound("conversation"));
                }
                let ev = NewEvent {
                    tenant_id,
                    conversation_id: Some(conversation_id),
                    actor: None,
                    kind: "conversation.csat".into(),
                    data: serde_json::json!({ "score": score }),
                };
                Self::insert_event(&mut *tx, &ev, now).await?;
                tx.commit().await.map_err(db_err)
            }

            async fn append_message(&self, m: NewMessage) -> StoreResult<Appended> {
                self.append(m).await
            }

            async fn list_messages(&self, conversation_id: Uuid, after_seq: i64, limit: i64) -> StoreResult<Vec<Message>> {
                let rows = sqlx::query(&format!(
                    "SELECT {MSG_COLS} FROM messages WHERE conversation_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
                ))
                .bind(conversation_id)
                .bind(after_seq)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
                rows.iter().map(Self::msg_row).collect()
            }

            async fn message(&self, conversation_id: Uuid, id: Uuid) -> StoreResult<Option<Message>> {
                let row = sqlx::query(&format!("SELECT {MSG_COLS} FROM messages WHERE conversation_id = $1 AND id = $2"))
                    .bind(conversation_id)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err)?;
                row.as_ref().map(Self::msg_row).transpose()
            }

            async fn message_by_client_id(&self, conversation_id: Uuid, client_msg_id: Uuid) -> StoreResult<Option<Message>> {
                let row = sqlx::query(&format!(
                    "SELECT {MSG_COLS} FROM messages WHERE conversation_id = $1 AND client_msg_id = $2"
                ))
                .bind(conversation_id)
                .bind(client_msg_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
                row.as_ref().map(Self::msg_row).transpose()
            }

            async fn put_feedback(&self, f: NewFeedback) -> StoreResult<()> {
                let now = Utc::now();
                let mut tx = self.pool.begin().await.map_err(db_err)?;
                sqlx::query(
                    "INSERT INTO feedback (message_id, conversation_id, tenant_id, rating, comment, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (message_id) DO UPDATE SET rating = $4, comment = $5, created_at = $6",
                )
                .bind(f.message_id)
                .bind(f.conversation_id)
                .bind(f.tenant_id)
                .bind(f.rating.as_str())
                .bind(&f.comment)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                let ev = NewEvent {
                    tenant_id: f.tenant_id,
                    conversation_id: Some(f.conversation_id),
                    actor: None,
                    kind: "message.feedback".into(),
                    data: serde_json::json!({ "message_id": f.message_id, "rating": f.rating.as_str() }),
                };
                Self::insert_event(&mut *tx, &ev, now).await?;
                tx.commit().await.map_err(db_err)
            }

            async fn record_event(&self, ev: NewEvent) -> StoreResult<()> {
                Self::insert_event(&self.pool, &ev, Utc::now()).await
            }

            async fn list_events(&self, tenant_id: Uuid, conversation_id: Option<Uuid>, limit: i64) -> StoreResult<Vec<Event>> {
                let rows = sqlx::query(
                    "SELECT id, tenant_id, conversation_id, actor, kind, data, created_at FROM events \
                     WHERE tenant_id = $1 AND ($2 IS NULL OR conversation_id = $2) ORDER BY id DESC LIMIT $3",
                )
                .bind(tenant_id)
                .bind(conversation_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
                rows.iter().map(Self::event_row).collect()
            }

            async fn conversations_created(
                &self,
                tenant_id: Uuid,
                from: DateTime<Utc>,
                to: DateTime<Utc>,
                limit: i64,
            ) -> StoreResult<Vec<Conversation>> {
                let rows = sqlx::query(&format!(
                    "SELECT {CONV_COLS} FROM conversations WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3 \
                     ORDER BY created_at, id LIMIT $4"
                ))
                .bind(tenant_id)
                .bind(from)
                .bind(to)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
                rows.iter().map(Self::conv_row).collect()
            }

            async fn events_between(
                &self,
                tenant_id: Uuid,
                kinds: &[&str],
                from: DateTime<Utc>,
                to: DateTime<Utc>,
                limit: i64,
            ) -> StoreResult<Vec<Event>> {
                if kinds.is_empty() {
                    return Ok(Vec::new());
                }
                let placeholders: Vec<String> = (0..kinds.len()).map(|i| format!("${}", i + 5)).collect();
                let sql = format!(
                    "SELECT id, tenant_id, conversation_id, actor, kind, data, created_at FROM events \
                     WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3 AND kind IN ({}) ORDER BY id LIMIT $4",
                    placeholders.join(", ")
                );
                let mut q = sqlx::query(&sql).bind(tenant_id).bind(from).bind(to).bind(limit);
                for k in kinds {
                    q = q.bind(*k);
                }
                let rows = q.fetch_all(&self.pool).await.map_err(db_err)?;
                rows.iter().map(Self::event_row).collect()
            }
        }
    };
}

sql_store!(PgStore, sqlx::Postgres, "postgres");
sql_store!(SqliteStore, sqlx::Sqlite, "sqlite");

impl SqliteStore {
    /// In a transaction: bump `last_seq` (SQLite's write lock serialises writers),
    /// then insert; a conflicting `client_msg_id` rolls the bump back.
    async fn append(&self, m: NewMessage) -> StoreResult<Appended> {
        let now = Utc::now();
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        // Bumping last_seq first takes the conversation's row lock (Postgres) or the
        // write lock (SQLite): appenders to one conversation queue here, so seq has
        // no gaps or duplicates, and the insert below sees every earlier commit.
        let seq: Option<i64> = sqlx::query_scalar(
            "UPDATE conversations SET last_seq = last_seq + 1, updated_at = $1 \
             WHERE tenant_id = $2 AND id = $3 RETURNING last_seq",
        )
        .bind(now)
        .bind(m.tenant_id)
        .bind(m.conversation_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let Some(seq) = seq else {
            tx.rollback().await.map_err(db_err)?;
            return Err(StoreError::NotFound("conversation"));
        };
        // The unique (conversation_id, client_msg_id) decides idempotency: a
        // replay inserts nothing, gives its seq back and returns the stored row.
        let row = sqlx::query(&format!(
            "INSERT INTO messages ({MSG_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (conversation_id, client_msg_id) DO NOTHING RETURNING {MSG_COLS}"
        ))
        .bind(Uuid::new_v4())
        .bind(m.conversation_id)
        .bind(seq)
        .bind(m.sender.as_str())
        .bind(m.sender_id)
        .bind(&m.text)
        .bind(m.client_msg_id)
        .bind(&m.intent)
        .bind(Json(&m.citations))
        .bind(Json(&m.quick_replies))
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let Some(row) = row else {
            tx.rollback().await.map_err(db_err)?;
            let client_id = m.client_msg_id.ok_or_else(|| StoreError::Internal("insert conflict without client_msg_id".into()))?;
            let message = self
                .message_by_client_id(m.conversation_id, client_id)
                .await?
                .ok_or_else(|| StoreError::Internal("conflicting message vanished".into()))?;
            if message.text != m.text || message.sender != m.sender {
                return Err(StoreError::IdempotencyConflict);
            }
            return Ok(Appended { message, created: false });
        };
        tx.commit().await.map_err(db_err)?;
        Ok(Appended { message: Self::msg_row(&row)?, created: true })
    }
}

impl PgStore {
    /// One statement, so one round trip and no explicit transaction: the
    /// UPDATE takes the conversation's row lock (appenders to one conversation
    /// queue there) and yields the next seq, which the INSERT uses. A replayed
    /// `client_msg_id` either is seen by the NOT EXISTS, or (when it committed
    /// while we waited for the lock) fails the unique index; either way the
    /// whole statement, seq bump included, has no effect.
    async fn append(&self, m: NewMessage) -> StoreResult<Appended> {
        let result = sqlx::query(&format!(
            "WITH next AS ( \
                 UPDATE conversations SET last_seq = last_seq + 1, updated_at = $11 \
                 WHERE tenant_id = $1 AND id = $2 AND NOT EXISTS \
                     (SELECT 1 FROM messages WHERE conversation_id = $2 AND client_msg_id = $6) \
                 RETURNING last_seq) \
             INSERT INTO messages ({MSG_COLS}) \
             SELECT $3, $2, next.last_seq, $4, $5, $7, $6, $8, $9, $10, $11 FROM next \
             RETURNING {MSG_COLS}"
        ))
        .bind(m.tenant_id)
        .bind(m.conversation_id)
        .bind(Uuid::new_v4())
        .bind(m.sender.as_str())
        .bind(m.sender_id)
        .bind(m.client_msg_id)
        .bind(&m.text)
        .bind(&m.intent)
        .bind(Json(&m.citations))
        .bind(Json(&m.quick_replies))
        .bind(Utc::now())
        .fetch_optional(&self.pool)
        .await;
        match result {
            Ok(Some(row)) => Ok(Appended { message: Self::msg_row(&row)?, created: true }),
            Ok(None) => match m.client_msg_id {
                // Nothing inserted: a known client_msg_id, or no such conversation.
                Some(client_id) => self.replayed(&m, client_id).await,
                None => Err(StoreError::NotFound("conversation")),
            },
            Err(e) if is_unique_violation(&e) && m.client_msg_id.is_some() => {
                self.replayed(&m, m.client_msg_id.unwrap_or_default()).await
            }
            Err(e) => Err(db_err(e)),
        }
    }

    async fn replayed(&self, m: &NewMessage, client_id: Uuid) -> StoreResult<Appended> {
        match self.message_by_client_id(m.conversation_id, client_id).await? {
            Some(message) if message.text == m.text && message.sender == m.sender => Ok(Appended { message, created: false }),
            Some(_) => Err(StoreError::IdempotencyConflict),
            None if self.conversation(m.tenant_id, m.conversation_id).await?.is_none() => {
                Err(StoreError::NotFound("conversation"))
            }
            None => Err(StoreError::Internal("message neither inserted nor found".into())),
        }
    }
}
