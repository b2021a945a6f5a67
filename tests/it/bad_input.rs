//! Bad input gets a precise 4xx and stores nothing; never a 5xx.

use aicc_tests::{code, spawn_app, spawn_app_with, Backend};
use serde_json::json;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_message_bodies() {
    let app = spawn_app(Backend::Postgres).await;
    let (conv, token) = app.new_conversation("acme").await;
    let path = format!("/v1/conversations/{conv}/messages");
    let id = Uuid::new_v4();
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        ("malformed JSON", "application/json", b"{\"text\": ".to_vec(), 400, "malformed_json"),
        ("empty body", "application/json", vec![], 400, "malformed_json"),
        ("invalid UTF-8", "application/json", b"{\"client_msg_id\": \"x\", \"text\": \"\xff\xfe\"}".to_vec(), 400, "invalid_utf8"),
        ("wrong media type", "text/plain", b"hello".to_vec(), 415, "unsupported_media_type"),
        ("wrong type", "application/json", json!({ "client_msg_id": id, "text": 42 }).to_string().into_bytes(), 422, "invalid_field"),
        ("unknown field", "application/json", json!({ "client_msg_id": id, "text": "hi", "admin": true }).to_string().into_bytes(), 422, "invalid_field"),
        ("missing field", "application/json", json!({ "text": "hi" }).to_string().into_bytes(), 422, "invalid_field"),
        ("client_msg_id not a UUID", "application/json", json!({ "client_msg_id": "abc", "text": "hi" }).to_string().into_bytes(), 422, "invalid_field"),
        ("empty text", "application/json", json!({ "client_msg_id": id, "text": "" }).to_string().into_bytes(), 422, "empty_text"),
        ("whitespace text", "application/json", json!({ "client_msg_id": id, "text": " \n\t " }).to_string().into_bytes(), 422, "empty_text"),
        ("text over the limit", "application/json", json!({ "client_msg_id": id, "text": "가".repeat(4001) }).to_string().into_bytes(), 422, "text_too_long"),
        ("control characters", "application/json", json!({ "client_msg_id": id, "text": "a\u{7}b" }).to_string().into_bytes(), 422, "invalid_text"),
        ("too deep", "application/json", format!("{}{}", "[".repeat(100), "]".repeat(100)).into_bytes(), 400, "json_too_deep"),
        ("oversized body", "application/json", json!({ "client_msg_id": id, "text": "x".repeat(70_000) }).to_string().into_bytes(), 413, "payload_too_large"),
    ];
    for (what, ct, body, status, expected) in cases {
        let (s, b) = app.post_raw(&path, Some(&token), ct, body).await;
        assert_eq!((s, code(&b)), (status, expected), "{what}: {b}");
        assert!(b["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what} has a message");
    }
    assert_eq!(app.message_count(conv).await, 0, "nothing was stored");
    // 4,000 characters exactly is fine.
    let (s, _) = app.send_message(conv, &token, &"가".repeat(4000)).await;
    assert_eq!(s, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_query_and_path_parameters() {
    let app = spawn_app(Backend::Sqlite).await;
    let (conv, token) = app.new_conversation("acme").await;
    let agent = app.login("acme", "agent@acme.test").await;
    for (path, tok, status, expected) in [
        (format!("/v1/conversations/{conv}/messages?after_seq=-1"), &token, 400, "invalid_query"),
        (format!("/v1/conversations/{conv}/messages?after_seq=abc"), &token, 400, "invalid_query"),
        (format!("/v1/conversations/{conv}/messages?after_seq=1.5"), &token, 400, "invalid_query"),
        (format!("/v1/conversations/{conv}/messages?limit=0"), &token, 400, "invalid_query"),
        (format!("/v1/conversations/{conv}/messages?limit=100000"), &token, 400, "invalid_query"),
        (format!("/v1/conversations/{conv}/messages?bogus=1"), &token, 400, "invalid_query"),
        ("/v1/conversations?status=open".to_string(), &agent, 400, "invalid_query"),
        ("/v1/conversations/not-a-uuid".to_string(), &agent, 400, "invalid_path"),
    ] {
        let (s, b) = app.get(&path, Some(tok)).await;
        assert_eq!((s, code(&b)), (status, expected), "{path}: {b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_widget_and_admin_input() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.auth.widget_conversations_per_minute = 3).await;
    let (s, b) = app.post_json("/v1/widget/nope/conversations", None, json!({})).await;
    assert_eq!((s, code(&b)), (404, "not_found"));
    let (s, b) = app.post_json("/v1/widget/acme/conversations", None, json!({ "locale": "fr" })).await;
    assert_eq!((s, code(&b)), (422, "invalid_locale"));
    let (s, b) = app
        .post_json("/v1/widget/acme/conversations", None, json!({ "customer": { "user_id": "u1", "user_hash": "00" } }))
        .await;
    assert_eq!((s, code(&b)), (403, "invalid_user_hash"));
    let (s, b) = app.post_json("/v1/widget/acme/conversations", None, json!({})).await;
    assert_eq!((s, code(&b)), (429, "rate_limited"), "{b}");

    let admin = app.login("acme", "admin@acme.test").await;
    let (s, b) = app.put_json("/v1/admin/settings", &admin, json!({ "dialog": { "direct": "high" } })).await;
    assert_eq!((s, code(&b)), (422, "invalid_field"));
    let (s, b) = app.put_json("/v1/admin/settings", &admin, json!({ "colour": "red" })).await;
    assert_eq!((s, code(&b)), (422, "invalid_field"));
    let (s, b) = app.post_json("/v1/admin/users", Some(&admin), json!({ "email": "not-an-email", "role": "agent" })).await;
    assert_eq!((s, code(&b)), (422, "invalid_email"));
    let (s, b) = app.post_json("/v1/admin/users", Some(&admin), json!({ "email": "a@b.test", "role": "owner" })).await;
    assert_eq!((s, code(&b)), (422, "invalid_field"));
    let me = app.store.user_by_email(app.store.tenant_by_slug("acme").await.unwrap().unwrap().id, "admin@acme.test").await.unwrap().unwrap();
    let resp = app.client.delete(app.at(&format!("/v1/admin/users/{}", me.id))).bearer_auth(&admin).send().await.unwrap();
    let (s, b) = aicc_tests::read(resp).await;
    assert_eq!((s, code(&b)), (409, "cannot_delete_self"));
    assert_eq!(app.store.list_users(me.tenant_id).await.unwrap().len(), 3, "nothing was deleted");
}
