//! The widget, the agent dashboard and the admin console in a real browser:
//! Debian's Chromium driven by playwright-core (tests/browser/run.mjs runs the
//! scenarios in tests/browser/scenarios/) against a real `aicc serve` on
//! Postgres and Redis with the real models. The customer's site is served on
//! a second origin by run.mjs. Screenshots: tests/browser/screenshots/.

use std::path::Path;
use std::time::Duration;

use aicc_tests::{fresh_pg_database, redis_url, scratch_dir, shared_model_dir};

use crate::cli::{aicc, start, wait_ready};

/// Also served as static files with the right types and headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_served_with_types_and_security_headers() {
    let dir = scratch_dir();
    let server = start(aicc(&dir)).await;
    let http = reqwest::Client::new();
    for (path, ty) in [
        ("/", "text/html"),
        ("/widget.js", "text/javascript"),
        ("/agent/", "text/html"),
        ("/admin/", "text/html"),
        ("/common/api.js", "text/javascript"),
    ] {
        let resp = http.get(format!("{}{path}", server.url)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let h = resp.headers();
        assert!(h["content-type"].to_str().unwrap().starts_with(ty), "{path}: {h:?}");
        assert_eq!(h["x-content-type-options"], "nosniff");
        if ty == "text/html" {
            assert!(h["content-security-policy"].to_str().unwrap().contains("default-src 'self'"), "{path}");
        }
        // Revalidation answers 304 without the body.
        let etag = h["etag"].clone();
        let again = http.get(format!("{}{path}", server.url)).header("if-none-match", etag).send().await.unwrap();
        assert_eq!(again.status(), 304, "{path}");
    }
    let redirect = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = redirect.get(format!("{}/agent", server.url)).send().await.unwrap();
    assert_eq!(resp.status(), 308);
    assert_eq!(resp.headers()["location"], "/agent/");
    for bad in ["/agent/../Cargo.toml", "/admin/.hidden", "/agent/nope.js", "/widget/%2e%2e/x"] {
        let resp = http.get(format!("{}{bad}", server.url)).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{bad}");
    }
    // API paths keep their JSON errors.
    let resp = http.get(format!("{}/v1/nope", server.url)).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.json::<serde_json::Value>().await.unwrap()["error"]["code"], "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_four_browser_scenarios_pass_in_chromium() {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: scripts/test installs it (npm ci --prefix tests/browser)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(Path::new(&chromium).exists(), "no Chromium at {chromium}: scripts/test installs Debian's chromium");

    let database = fresh_pg_database().await;
    let dir = scratch_dir();
    let mut cmd = aicc(&dir);
    cmd.env("DATABASE_URL", &database)
        .env("REDIS_URL", redis_url())
        .env("AICC_MODEL_DIR", shared_model_dir())
        .env_remove("AICC_EMBEDDER")
        .env_remove("AICC_GENERATOR")
        .env("AICC_BOT", "1")
        // Several browser contexts start conversations and log in from one address.
        .env("AICC_WIDGET_CONVERSATIONS_PER_MINUTE", "1000")
        .env("AICC_LOGIN_ATTEMPTS_PER_MINUTE", "1000");
    let mut server = start(cmd).await;
    let password = server.demo_password().await;
    // The demo tenant as a newcomer gets it: every model loaded and its
    // retrieval adapter trained (about 2 minutes of embedding at first start).
    server.wait_for_log("demo retrieval adapter ready", 900).await;
    wait_ready(&server.url, 300).await;

    let out = tokio::time::timeout(
        Duration::from_secs(1200),
        tokio::process::Command::new("node")
            .arg(browser_dir.join("run.mjs"))
            .env("AICC_URL", &server.url)
            .env("TENANT", "demo")
            .env("ADMIN_EMAIL", "admin@demo.local")
            .env("ADMIN_PASSWORD", &password)
            .env("CHROMIUM", &chromium)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the browser scenarios took over 20 minutes")
    .expect("run node (scripts/test installs Node.js's packages; is node on PATH?)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "browser scenarios failed:\n{stderr}\n{stdout}");
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or("{}")).expect("run.mjs's JSON report");
    let names: Vec<&str> = report["results"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["1-customer", "2-handoff", "3-offline", "4-admin"], "{report}");
}
