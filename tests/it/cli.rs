//! The `aicc` binary itself: `serve` on embedded defaults and on Postgres, the
//! demo tenant, the persisted signing key, `admin create-user`, bad config.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use aicc_tests::{fresh_pg_database, scratch_dir};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// `AICC_BIN` (set by scripts/test), else `aicc` next to this test binary's deps dir.
pub fn aicc_bin() -> PathBuf {
    if let Ok(p) = std::env::var("AICC_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(Path::parent).unwrap().join("aicc");
    assert!(bin.exists(), "build the binary first (cargo build -p aicc-server) or set AICC_BIN; looked at {}", bin.display());
    bin
}

pub fn aicc(dir: &Path) -> Command {
    let mut cmd = Command::new(aicc_bin());
    cmd.current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("AICC_DEMO")
        .env_remove("AICC_CONFIG")
        .env("AICC_BIND", "127.0.0.1:0")
        .env("AICC_DATA_DIR", dir.join("data"))
        .env("AICC_MODEL_DIR", dir.join("models"))
        // Models are their own test (`serve_loads_the_embedder_and_the_demo_intent_model`).
        .env("AICC_EMBEDDER", "none")
        .env("AICC_GENERATOR", "none")
        // The transport tests count messages; the dialog's own tests turn the bot on.
        .env("AICC_BOT", "0")
        .kill_on_drop(true);
    cmd
}


async fn readyz(url: &str) -> (u16, serde_json::Value) {
    let r = reqwest::get(format!("{url}/readyz")).await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// `/readyz` once every model is loaded; panics after `secs`.
pub async fn wait_ready(url: &str, secs: u64) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let (status, body) = readyz(url).await;
        if status == 200 {
            return body;
        }
        assert!(!body["models"].as_object().unwrap().values().any(|s| s == "failed"), "a model failed: {body}");
        assert!(std::time::Instant::now() < deadline, "not ready after {secs} s: {body}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_loads_the_embedder_and_the_demo_intent_model() {
    let dir = scratch_dir();
    let cmd = || {
        let mut c = aicc(&dir);
        c.env_remove("AICC_EMBEDDER").env("AICC_MODEL_DIR", aicc_tests::shared_model_dir());
        // The generator too, on the small test model (the default is 1.1 GB).
        c.env_remove("AICC_GENERATOR").env("AICC_GENERATOR_MODEL", "smollm2-135m-instruct");
        c
    };
    let mut first = start(cmd()).await;
    // Not ready until both are loaded: 503 naming what is missing.
    let (status, body) = readyz(&first.url).await;
    if status == 503 {
        assert!(body["models"]["multilingual-e5-small"].is_string() && body["models"]["intent:demo"].is_string(), "{body}");
    }
    // From the trained-model cache (scripts/test warms it), or a fresh training.
    let body = wait_ready(&first.url, 280).await;
    assert_eq!(
        body["models"],
        json!({ "multilingual-e5-small": "ready", "intent:demo": "ready", "generator:smollm2-135m-instruct": "ready" })
    );
    // The demo knowledge was published at first start; once the embedder is
    // in, search is hybrid and finds the lost-card article for a Korean message.
    let password = first.demo_password().await;
    let token = login(&first.url, &password).await.json::<serde_json::Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let hits = loop {
        let resp = reqwest::Client::new()
            .get(format!("{}/v1/kb/search", first.url))
            .query(&[("q", "카드를 잃어버렸어요")])
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.json::<serde_json::Value>().await.unwrap();
        if body["hits"][0]["retrievers"].as_array().is_some_and(|r| r.contains(&json!("dense"))) {
            break body["hits"].clone();
        }
        assert!(std::time::Instant::now() < deadline, "no dense retrieval after the embedder loaded: {body}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(hits[0]["article_id"], "faq-lost_or_stolen_card-ko", "{hits}");
    assert!(hits[0]["scores"]["dense"].as_f64().unwrap() > 0.8, "{hits}");
    drop(first);
    // A restart finds the model in the Store.
    let mut second = start(cmd()).await;
    wait_ready(&second.url, 30).await;
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), second.stderr.recv()).await.unwrap().expect("log ended");
        if line.contains("demo intent model loaded from the store") {
            break;
        }
    }
}

pub struct Running {
    _child: Child,
    pub url: String,
    stderr: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Running {
    /// The demo admin's password from the start banner.
    pub async fn demo_password(&mut self) -> String {
        while let Some(line) = tokio::time::timeout(Duration::from_secs(30), self.stderr.recv()).await.unwrap() {
            if let Some(rest) = line.split("password: ").nth(1) {
                return rest.trim().to_string();
            }
        }
        panic!("no demo credentials in the banner");
    }

    /// Waits for a log line containing `needle`.
    pub async fn wait_for_log(&mut self, needle: &str, secs: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            match tokio::time::timeout_at(deadline, self.stderr.recv()).await {
                Ok(Some(line)) if line.contains(needle) => return,
                Ok(Some(_)) => {}
                Ok(None) => panic!("aicc serve exited before logging {needle:?}"),
                Err(_) => panic!("no {needle:?} in the log within {secs} s"),
            }
        }
    }
}

pub async fn start(mut cmd: Command) -> Running {
    let mut child = cmd.arg("serve").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start aicc");
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            let _ = tx.send(line);
        }
    });
    let line = tokio::time::timeout(Duration::from_secs(60), stdout.next_line())
        .await
        .expect("aicc serve printed nothing within 60 s")
        .unwrap()
        .expect("aicc serve exited before listening");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    Running { _child: child, url: v["listening"].as_str().unwrap().to_string(), stderr: rx }
}

async fn login(url: &str, password: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{url}/v1/auth/login"))
        .json(&json!({ "tenant": "demo", "email": "admin@demo.local", "password": password }))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_embedded_defaults_keeps_demo_and_key_across_restarts() {
    let dir = scratch_dir();
    let mut first = start(aicc(&dir)).await;
    let health = reqwest::get(format!("{}/healthz", first.url)).await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(reqwest::get(format!("{}/readyz", first.url)).await.unwrap().status(), 200);
    let password = first.demo_password().await;
    let resp = login(&first.url, &password).await;
    assert_eq!(resp.status(), 200);
    let token = resp.json::<serde_json::Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    assert!(dir.join("data/aicc.db").exists(), "SQLite under the data dir");
    drop(first);

    // A restart keeps the demo admin and the signing key: the old token still works.
    let mut second = start(aicc(&dir)).await;
    assert_eq!(second.demo_password().await, password);
    let resp = reqwest::Client::new().get(format!("{}/v1/admin/users", second.url)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let users = resp.json::<serde_json::Value>().await.unwrap();
    assert_eq!(users["users"].as_array().unwrap().len(), 1, "the demo admin was not created twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_postgres() {
    let dir = scratch_dir();
    let mut cmd = aicc(&dir);
    cmd.env("DATABASE_URL", fresh_pg_database().await);
    let mut app = start(cmd).await;
    let password = app.demo_password().await;
    let resp = login(&app.url, &password).await;
    assert_eq!(resp.status(), 200);
    assert!(!dir.join("data/aicc.db").exists(), "no SQLite file when DATABASE_URL is set");
    // The demo knowledge is published on this backend too (BM25 here: no embedder).
    let token = resp.json::<serde_json::Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    let hits = reqwest::Client::new()
        .get(format!("{}/v1/kb/search", app.url))
        .query(&[("q", "카드를 잃어버렸어요")])
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(hits["hits"][0]["article_id"], "faq-lost_or_stolen_card-ko", "{hits}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_can_be_turned_off() {
    let dir = scratch_dir();
    let mut cmd = aicc(&dir);
    cmd.env("AICC_DEMO", "0");
    let app = start(cmd).await;
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/widget/demo/conversations", app.url))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404, "no demo tenant");
}

async fn create_user(dir: &Path, stdin: &str, extra: &[&str]) -> std::process::Output {
    let mut cmd = aicc(dir);
    cmd.args(["admin", "create-user", "--tenant", "hanbit", "--email", "Boss@Hanbit.test", "--role", "admin"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).await.unwrap();
    child.wait_with_output().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_create_user_from_stdin_or_generated() {
    let dir = scratch_dir();
    let out = create_user(&dir, "s3cret-password\n", &["--name", "김지점장"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["tenant"].as_str(), v["email"].as_str(), v["role"].as_str()), (Some("hanbit"), Some("boss@hanbit.test"), Some("admin")));
    assert!(v.get("generated_password").is_none());

    let again = create_user(&dir, "another-password\n", &[]).await;
    assert!(!again.status.success(), "a duplicate e-mail fails");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let mut gen = aicc(&dir);
    let gen = gen
        .args(["admin", "create-user", "--tenant", "hanbit", "--email", "agent@hanbit.test", "--role", "agent"])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(gen.status.success(), "{}", String::from_utf8_lossy(&gen.stderr));
    let v: serde_json::Value = serde_json::from_slice(&gen.stdout).unwrap();
    let generated = v["generated_password"].as_str().unwrap().to_string();
    assert_eq!(generated.len(), 20);

    let store = aicc_store::SqliteStore::open(&dir.join("data/aicc.db")).await.unwrap();
    use aicc_core::Store;
    let tenant = store.tenant_by_slug("hanbit").await.unwrap().unwrap();
    let boss = store.user_by_email(tenant.id, "boss@hanbit.test").await.unwrap().unwrap();
    assert_eq!(boss.name, "김지점장");
    assert!(aicc_api::auth::verify_password("s3cret-password", Some(&boss.password_hash)));
    let agent = store.user_by_email(tenant.id, "agent@hanbit.test").await.unwrap().unwrap();
    assert!(aicc_api::auth::verify_password(&generated, Some(&agent.password_hash)));

    let weak = create_user(&dir, "short\n", &["--email", "x@hanbit.test"]).await;
    assert!(!weak.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_is_named() {
    let dir = scratch_dir();
    let out = aicc(&dir).env("AICC_MAX_BODY_BYTES", "lots").arg("serve").output().await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("AICC_MAX_BODY_BYTES"));
    std::fs::write(dir.join("aicc.toml"), "bind = 5\n").unwrap();
    let out = aicc(&dir).arg("serve").output().await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid config file"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The CI smoke version of `aicc bench ws` (the full figures are in docs/benchmarks.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_ws_smoke() {
    let dir = scratch_dir();
    let out = aicc(&dir)
        .args(["bench", "ws", "--customers", "300", "--agents", "3", "--active", "30", "--rate", "100", "--seconds", "2"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["held_connections"], 300, "{v}");
    let (sent, delivered) = (v["messages_sent"].as_u64().unwrap(), v["messages_delivered"].as_u64().unwrap());
    assert!(sent >= 100, "{v}");
    assert_eq!(sent, delivered, "every message reached its agent: {v}");
    assert!(v["p99_ms"].as_f64().unwrap() > 0.0 && v["server_peak_rss_mb"].as_f64().unwrap() > 0.0, "{v}");
}

/// The smoke versions of `aicc bench embed` and `aicc bench intent` on the real
/// model (figures: docs/benchmarks.md); JSON as CONTRACT.md spells it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_embed_and_intent_smoke() {
    let dir = scratch_dir();
    for (what, extra) in [("embed", "batch_sentences_per_s"), ("intent", "model")] {
        let out = aicc(&dir)
            .env_remove("AICC_EMBEDDER")
            .env("AICC_MODEL_DIR", aicc_tests::shared_model_dir())
            .args(["bench", what, "--queries", "5", "--batch", "8"])
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(v["p50_ms"].as_f64().unwrap() > 0.0 && v["p99_ms"].as_f64().unwrap() >= v["p50_ms"].as_f64().unwrap(), "{v}");
        assert!(v["threads"].as_u64().unwrap() >= 1 && !v[extra].is_null(), "{v}");
    }
}
