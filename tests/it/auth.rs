//! Tokens and roles: every way in that must fail, fails with the right code.

use aicc_api::auth::{Claims, Keys};
use aicc_tests::{code, spawn_app, Backend, TestApp};
use serde_json::json;
use uuid::Uuid;

async fn server_keys(app: &TestApp) -> Keys {
    let secret = app.store.get_or_create_secret(aicc_api::JWT_SECRET_NAME, "unused").await.unwrap();
    Keys::new(secret.as_bytes())
}

fn b64url(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_rejected() {
    let app = spawn_app(Backend::Sqlite).await;
    let (conv, customer) = app.new_conversation("acme").await;
    let path = format!("/v1/conversations/{conv}");
    let tenant = app.store.tenant_by_slug("acme").await.unwrap().unwrap();
    let keys = server_keys(&app).await;
    assert_eq!(app.get(&path, Some(&customer)).await.0, 200, "the real token works");

    let (s, b) = app.get(&path, None).await;
    assert_eq!((s, code(&b)), (401, "missing_token"));

    // Expired (beyond the 5 s leeway).
    let now = chrono::Utc::now().timestamp();
    let expired = Claims { sub: conv, tid: tenant.id, ten: "acme".into(), role: "customer".into(), iat: now - 600, exp: now - 60, iss: "aicc".into() };
    let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &expired, &jsonwebtoken::EncodingKey::from_secret(
        app.store.get_or_create_secret(aicc_api::JWT_SECRET_NAME, "unused").await.unwrap().as_bytes(),
    ))
    .unwrap();
    let (s, b) = app.get(&path, Some(&token)).await;
    assert_eq!((s, code(&b)), (401, "token_expired"));

    // Forged: signed with another key.
    let forged = Keys::new(b"not-the-server-key-0123456789abcdef").sign(conv, tenant.id, "acme", "customer", 600).unwrap();
    let (s, b) = app.get(&path, Some(&forged)).await;
    assert_eq!((s, code(&b)), (401, "invalid_token"));

    // alg: none, no signature.
    let claims = json!({ "sub": conv, "tid": tenant.id, "ten": "acme", "role": "admin", "iat": now, "exp": now + 600, "iss": "aicc" });
    let none = format!("{}.{}.", b64url(br#"{"alg":"none","typ":"JWT"}"#), b64url(claims.to_string().as_bytes()));
    let (s, b) = app.get(&path, Some(&none)).await;
    assert_eq!((s, code(&b)), (401, "invalid_token"));

    // Tampered claims: a valid agent token with its role edited to admin.
    let agent = app.login("acme", "agent@acme.test").await;
    let parts: Vec<&str> = agent.split('.').collect();
    let mut payload = serde_json::to_value(keys.verify(&agent).unwrap()).unwrap();
    payload["role"] = json!("admin");
    let tampered = format!("{}.{}.{}", parts[0], b64url(payload.to_string().as_bytes()), parts[2]);
    let (s, b) = app.get("/v1/admin/users", Some(&tampered)).await;
    assert_eq!((s, code(&b)), (401, "invalid_token"));

    let (s, b) = app.get(&path, Some("not.a.jwt")).await;
    assert_eq!((s, code(&b)), (401, "invalid_token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_scopes_are_enforced() {
    let app = spawn_app(Backend::Postgres).await;
    let (conv, customer) = app.new_conversation("acme").await;
    let (other_conv, _) = app.new_conversation("acme").await;
    let agent = app.login("acme", "agent@acme.test").await;
    let globex = app.login("globex", "agent@globex.test").await;

    // A customer token reaches only its own conversation, and nothing else.
    let (s, b) = app.get(&format!("/v1/conversations/{other_conv}/messages"), Some(&customer)).await;
    assert_eq!((s, code(&b)), (403, "wrong_conversation"));
    let (s, b) = app.send_message(other_conv, &customer, "let me in").await;
    assert_eq!((s, code(&b)), (403, "wrong_conversation"));
    assert_eq!(app.message_count(other_conv).await, 0);
    for path in ["/v1/conversations", "/v1/admin/settings", "/v1/admin/users"] {
        let (s, b) = app.get(path, Some(&customer)).await;
        assert_eq!((s, code(&b)), (403, "forbidden"), "{path}");
    }
    let (s, b) = app.get(&format!("/v1/conversations/{conv}/assist"), Some(&customer)).await;
    assert_eq!((s, code(&b)), (403, "forbidden"));

    // An agent of another tenant.
    let (s, b) = app.get(&format!("/v1/conversations/{conv}"), Some(&globex)).await;
    assert_eq!((s, code(&b)), (403, "wrong_tenant"));
    let (s, _) = app.get("/v1/conversations", Some(&globex)).await;
    assert_eq!(s, 200);

    // An agent on admin endpoints.
    for path in ["/v1/admin/settings", "/v1/admin/users"] {
        let (s, b) = app.get(path, Some(&agent)).await;
        assert_eq!((s, code(&b)), (403, "forbidden"), "{path}");
    }
    let (s, b) = app.post_json("/v1/admin/users", Some(&agent), json!({ "email": "x@acme.test", "role": "admin" })).await;
    assert_eq!((s, code(&b)), (403, "forbidden"));

    // Unknown conversation.
    let (s, b) = app.get(&format!("/v1/conversations/{}", Uuid::new_v4()), Some(&agent)).await;
    assert_eq!((s, code(&b)), (404, "not_found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_failures_and_rate_limit() {
    let app = spawn_app(Backend::Sqlite).await;
    let attempt = |tenant: &'static str, email: &'static str, password: &'static str| {
        app.post_json("/v1/auth/login", None, json!({ "tenant": tenant, "email": email, "password": password }))
    };
    for (t, e) in [("acme", "agent@acme.test"), ("acme", "nobody@acme.test"), ("nope", "agent@acme.test")] {
        let (s, b) = attempt(t, e, "wrong password").await;
        assert_eq!((s, code(&b)), (401, "invalid_credentials"), "{t} {e}");
    }
    let (s, body) = attempt("acme", "AGENT@acme.test", aicc_tests::PASSWORD).await;
    assert_eq!(s, 200, "e-mail is case-insensitive: {body}");
    assert_eq!(body["user"]["role"], "agent");
    assert_eq!(body["user"]["tenant"], "acme");

    // The account is limited to 10 attempts a minute, right or wrong.
    let mut last = (0, serde_json::Value::Null);
    for _ in 0..10 {
        last = attempt("acme", "agent@acme.test", "wrong password").await;
    }
    assert_eq!((last.0, code(&last.1)), (429, "rate_limited"));
    let resp = app
        .client
        .post(app.at("/v1/auth/login"))
        .json(&json!({ "tenant": "acme", "email": "agent@acme.test", "password": aicc_tests::PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429, "even the right password waits");
    assert!(resp.headers().get("retry-after").is_some());
    // Another account is not affected.
    assert_eq!(attempt("acme", "admin@acme.test", aicc_tests::PASSWORD).await.0, 200);

    let tenant = app.store.tenant_by_slug("acme").await.unwrap().unwrap();
    let kinds: Vec<String> = app.store.list_events(tenant.id, None, 100).await.unwrap().into_iter().map(|e| e.kind).collect();
    assert!(kinds.contains(&"auth.login".to_string()) && kinds.contains(&"auth.login_failed".to_string()));
}

/// Two replicas on one database accept each other's tokens: the signing key
/// is generated once and kept in the Store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_signing_key() {
    let app = spawn_app(Backend::Postgres).await;
    let settings = app.settings.clone();
    let second = aicc_api::Application::build(settings, app.store.clone(), app.bus.clone(), std::sync::Arc::new(app.kb.clone()))
        .await
        .unwrap();
    let url2 = format!("http://127.0.0.1:{}", second.port());
    tokio::spawn(second.run_until_stopped());
    let token = app.login("acme", "agent@acme.test").await;
    let resp = app.client.get(format!("{url2}/v1/conversations")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}
