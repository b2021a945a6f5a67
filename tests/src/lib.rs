//! Helpers for the integration tests: a fresh database per test (Postgres or
//! SQLite), a server on port 0, and an HTTP client with a few shortcuts.

use std::sync::Arc;

use aicc_core::settings::{Settings, TenantSettings};
use aicc_core::{NewUser, Role, Store};
use aicc_store::{PgStore, SqliteStore};
use serde_json::{json, Value};
use sqlx::Connection;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// The model cache scripts/test fills (`AICC_MODEL_DIR`, else the default).
pub fn shared_model_dir() -> std::path::PathBuf {
    match std::env::var("AICC_MODEL_DIR") {
        Ok(d) => d.into(),
        Err(_) => std::path::Path::new(&std::env::var("HOME").unwrap()).join(".cache/aicc/models"),
    }
}

/// A pulled model file; a missing one fails the test, loudly.
pub fn model_file(model: &str, file: &str) -> std::path::PathBuf {
    let path = shared_model_dir().join(model).join(file);
    assert!(path.exists(), "{} missing: run `aicc models pull {model}` (scripts/test does)", path.display());
    path
}

/// The server Postgres admin URL (`AICC_TEST_PG`, default the local trust-auth server).
pub fn pg_admin_url() -> String {
    std::env::var("AICC_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A new, empty, migrated Postgres database (named `aicc_test_…`; scripts/test drops old ones).
pub async fn fresh_pg_store() -> Arc<dyn Store> {
    Arc::new(PgStore::connect(&fresh_pg_database().await).await.expect("connect to the test database"))
}

pub async fn fresh_pg_database() -> String {
    let admin = pg_admin_url();
    let name = format!("aicc_test_{}", Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin).await.expect("Postgres must be running (see scripts/test)");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create test database");
    match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("AICC_TEST_PG must end with /DBNAME"),
    }
}

/// A scratch directory under the system temp dir (scripts/test clears old ones).
pub fn scratch_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join("aicc-tests").join(Uuid::new_v4().simple().to_string());
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

pub async fn fresh_sqlite_store() -> Arc<dyn Store> {
    Arc::new(SqliteStore::open(&scratch_dir().join("aicc.db")).await.expect("open SQLite"))
}

pub async fn fresh_store(backend: Backend) -> Arc<dyn Store> {
    match backend {
        Backend::Postgres => fresh_pg_store().await,
        Backend::Sqlite => fresh_sqlite_store().await,
    }
}

pub const PASSWORD: &str = "correct horse battery";

/// A running server with tenant `acme` (an admin and two agents) and tenant
/// `globex` (one agent), on a fresh database.
pub struct TestApp {
    pub url: String,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn aicc_core::Bus>,
    pub settings: Settings,
    pub kb: aicc_search::KnowledgeBase,
    /// Where the server looks for its models (tests install fakes here).
    pub models: Arc<aicc_api::models::ModelRegistry>,
}

/// A knowledge base on `store` with the embedding cache in memory.
pub fn knowledge_base(store: &Arc<dyn Store>, bus: &Arc<dyn aicc_core::Bus>) -> aicc_search::KnowledgeBase {
    aicc_search::KnowledgeBase::new(store.clone(), Some(bus.clone()), None)
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let store = fresh_store(backend).await;
    let mut settings = Settings { bind: "127.0.0.1:0".into(), demo: false, ..Settings::default() };
    // The transport tests count messages exactly; the dialog tests turn the bot on.
    settings.dialog.bot = false;
    tweak(&mut settings);
    let hash = aicc_api::auth::hash_password(PASSWORD).unwrap();
    for (slug, users) in [
        ("acme", &[("admin@acme.test", Role::Admin), ("agent@acme.test", Role::Agent), ("agent2@acme.test", Role::Agent)][..]),
        ("globex", &[("agent@globex.test", Role::Agent)][..]),
    ] {
        // Agents always "in office", so tests do not depend on the clock; the routing tests set hours.
        let mut tenant_settings = TenantSettings::default();
        tenant_settings.business_hours.days.clear();
        let (tenant, _) = store.ensure_tenant(slug, slug, &tenant_settings).await.unwrap();
        for (email, role) in users {
            let user = NewUser {
                tenant_id: tenant.id,
                email: email.to_string(),
                name: email.split('@').next().unwrap().to_string(),
                role: *role,
                teams: vec![],
                max_concurrent: 5,
                password_hash: hash.clone(),
            };
            store.create_user(user).await.unwrap();
        }
    }
    let bus: Arc<dyn aicc_core::Bus> = Arc::new(aicc_bus::InProcessBus::new());
    let kb = knowledge_base(&store, &bus);
    let app = aicc_api::Application::build(settings.clone(), store.clone(), bus.clone(), Arc::new(kb.clone()))
        .await
        .expect("build app");
    let url = format!("http://127.0.0.1:{}", app.port());
    let models = app.models();
    tokio::spawn(app.run_until_stopped());
    TestApp { url, client: reqwest::Client::new(), store, bus, settings, kb, models }
}

impl TestApp {
    pub fn at(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    /// Logs in and returns the access token.
    pub async fn login(&self, tenant: &str, email: &str) -> String {
        let r = self.post_json("/v1/auth/login", None, json!({ "tenant": tenant, "email": email, "password": PASSWORD })).await;
        assert_eq!(r.0, 200, "login failed: {}", r.1);
        r.1["access_token"].as_str().unwrap().to_string()
    }

    /// Starts a widget conversation: `(conversation_id, customer token)`.
    pub async fn new_conversation(&self, tenant: &str) -> (Uuid, String) {
        let (status, body) = self.post_json(&format!("/v1/widget/{tenant}/conversations"), None, json!({ "locale": "ko" })).await;
        assert_eq!(status, 201, "{body}");
        (body["conversation_id"].as_str().unwrap().parse().unwrap(), body["token"].as_str().unwrap().to_string())
    }

    pub async fn post_json(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self.client.post(self.at(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        read(req.send().await.expect("request")).await
    }

    pub async fn put_json(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        read(self.client.put(self.at(path)).bearer_auth(token).json(&body).send().await.expect("request")).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.client.get(self.at(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        read(req.send().await.expect("request")).await
    }

    /// Posts raw bytes with a content type (for malformed-input tests).
    pub async fn post_raw(&self, path: &str, token: Option<&str>, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        let mut req = self.client.post(self.at(path)).header("content-type", content_type).body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        read(req.send().await.expect("request")).await
    }

    pub async fn send_message(&self, conv: Uuid, token: &str, text: &str) -> (u16, Value) {
        self.post_json(
            &format!("/v1/conversations/{conv}/messages"),
            Some(token),
            json!({ "client_msg_id": Uuid::new_v4(), "text": text }),
        )
        .await
    }

    /// A fresh `AppState` on this app's store and bus, for calling server functions directly.
    pub async fn state(&self) -> aicc_api::AppState {
        aicc_api::AppState::new(self.settings.clone(), self.store.clone(), self.bus.clone(), Arc::new(self.kb.clone()))
            .await
            .unwrap()
    }

    pub async fn tenant_id(&self, slug: &str) -> Uuid {
        self.store.tenant_by_slug(slug).await.unwrap().unwrap().id
    }

    pub async fn user_id(&self, slug: &str, email: &str) -> Uuid {
        self.store.user_by_email(self.tenant_id(slug).await, email).await.unwrap().unwrap().id
    }

    pub async fn message_count(&self, conv: Uuid) -> usize {
        self.store.list_messages(conv, 0, 10_000).await.unwrap().len()
    }
}

/// Status and JSON body (`null` when the body is empty or not JSON).
pub async fn read(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap_or_default();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// The `error.code` of an error body.
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

pub fn redis_url() -> String {
    std::env::var("AICC_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub async fn in_process_bus() -> Arc<dyn aicc_core::Bus> {
    Arc::new(aicc_bus::InProcessBus::new())
}

pub async fn redis_bus() -> Arc<dyn aicc_core::Bus> {
    Arc::new(aicc_bus::RedisBus::connect(&redis_url()).await.expect("Redis must be running (see scripts/test)"))
}

/// A free TCP port on loopback (for a server the test starts itself).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A private `redis-server` on `port`, for tests that stop and restart Redis.
pub struct PrivateRedis {
    pub port: u16,
    child: std::process::Child,
}

impl PrivateRedis {
    pub fn start(port: u16) -> Self {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Self { port, child }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WebSocket client speaking the JSON frames of docs/protocol.md.
pub struct WsClient {
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

impl WsClient {
    pub async fn connect(base_url: &str, token: &str) -> WsClient {
        let url = format!("{}/v1/ws?token={token}", base_url.replacen("http://", "ws://", 1));
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("WebSocket connect");
        WsClient { ws }
    }

    pub async fn send(&mut self, frame: Value) {
        use futures_util::SinkExt;
        self.ws.send(tokio_tungstenite::tungstenite::Message::Text(frame.to_string().into())).await.expect("send frame");
    }

    pub async fn send_raw(&mut self, msg: tokio_tungstenite::tungstenite::Message) {
        use futures_util::SinkExt;
        self.ws.send(msg).await.expect("send frame");
    }

    /// The next JSON frame, or `None` once the server closed (waits up to 10 s).
    pub async fn next(&mut self) -> Option<Value> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        loop {
            let msg = tokio::time::timeout(std::time::Duration::from_secs(10), self.ws.next())
                .await
                .expect("no frame within 10 s")?;
            match msg {
                Ok(Message::Text(t)) => return Some(serde_json::from_str(&t).expect("server frames are JSON")),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// The next frame of type `ty`, skipping others.
    pub async fn next_of(&mut self, ty: &str) -> Value {
        loop {
            let f = self.next().await.unwrap_or_else(|| panic!("closed while waiting for a `{ty}` frame"));
            if f["type"] == ty {
                return f;
            }
        }
    }

    /// Reads until the server closes; returns its close code.
    pub async fn close_code(&mut self) -> Option<u16> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        loop {
            match tokio::time::timeout(std::time::Duration::from_secs(10), self.ws.next()).await.expect("no close within 10 s") {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    pub fn split(
        self,
    ) -> (
        futures_util::stream::SplitSink<
            tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
            tokio_tungstenite::tungstenite::Message,
        >,
        futures_util::stream::SplitStream<tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>>,
    ) {
        use futures_util::StreamExt;
        self.ws.split()
    }
}

/// POSTs JSON to a full URL (a server the test started as a process) and returns the JSON answer.
pub async fn post_json_to(url: &str, body: Value) -> Value {
    reqwest::Client::new().post(url).json(&body).send().await.expect("request").json().await.expect("a JSON answer")
}
