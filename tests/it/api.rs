//! The conversation REST API end to end, on Postgres and on SQLite.

use aicc_tests::{code, TestApp};
use serde_json::json;
use uuid::Uuid;

crate::on_both_backends!(
    conversation_messages_and_pagination,
    client_msg_id_replay_is_idempotent,
    pii_is_redacted_before_storing,
    handoff_claim_reply_release_close,
    second_claim_gets_409,
    feedback_and_csat,
    admin_settings_and_users,
    health_metrics_and_openapi,
);

async fn conversation_messages_and_pagination(app: TestApp) {
    let (conv, token) = app.new_conversation("acme").await;
    for i in 1..=7 {
        let (status, body) = app.send_message(conv, &token, &format!("질문 {i}")).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["message"]["seq"], i);
        assert_eq!(body["message"]["sender"], "customer");
        assert_eq!(body["message"]["conversation_id"], conv.to_string());
    }
    let (s, page) = app.get(&format!("/v1/conversations/{conv}/messages?after_seq=2&limit=3"), Some(&token)).await;
    assert_eq!(s, 200);
    let seqs: Vec<i64> = page["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, [3, 4, 5]);
    assert_eq!(page["next_after_seq"], 5);
    let (_, last) = app.get(&format!("/v1/conversations/{conv}/messages?after_seq=5&limit=3"), Some(&token)).await;
    assert_eq!(last["messages"].as_array().unwrap().len(), 2);
    assert!(last.get("next_after_seq").is_none(), "the last page has no cursor");
    let (_, all) = app.get(&format!("/v1/conversations/{conv}/messages"), Some(&token)).await;
    assert_eq!(all["messages"][0]["text"], "질문 1");

    let (s, c) = app.get(&format!("/v1/conversations/{conv}"), Some(&token)).await;
    assert_eq!(s, 200);
    assert_eq!(c["conversation"]["status"], "bot");
    assert_eq!(c["conversation"]["locale"], "ko");
    assert_eq!(c["conversation"]["last_seq"], 7);

    let agent = app.login("acme", "agent@acme.test").await;
    let (s, list) = app.get("/v1/conversations?status=bot", Some(&agent)).await;
    assert_eq!(s, 200);
    assert_eq!(list["conversations"].as_array().unwrap().len(), 1);
    let (_, none) = app.get("/v1/conversations?status=queued", Some(&agent)).await;
    assert!(none["conversations"].as_array().unwrap().is_empty());
}

async fn client_msg_id_replay_is_idempotent(app: TestApp) {
    let (conv, token) = app.new_conversation("acme").await;
    let id = Uuid::new_v4();
    let path = format!("/v1/conversations/{conv}/messages");
    let (s1, first) = app.post_json(&path, Some(&token), json!({ "client_msg_id": id, "text": "hello" })).await;
    let (s2, again) = app.post_json(&path, Some(&token), json!({ "client_msg_id": id, "text": "hello" })).await;
    assert_eq!((s1, s2), (201, 200));
    assert_eq!(first["message"]["id"], again["message"]["id"]);
    let (s3, conflict) = app.post_json(&path, Some(&token), json!({ "client_msg_id": id, "text": "other" })).await;
    assert_eq!(s3, 409);
    assert_eq!(code(&conflict), "idempotency_conflict");
    assert_eq!(app.message_count(conv).await, 1);
    let (_, next) = app.send_message(conv, &token, "next").await;
    assert_eq!(next["message"]["seq"], 2, "a replay consumes no seq");
    // A retry after the conversation closed still gets its original answer.
    app.post_json(&format!("/v1/conversations/{conv}/close"), Some(&token), json!({})).await;
    let (s, late) = app.post_json(&path, Some(&token), json!({ "client_msg_id": id, "text": "hello" })).await;
    assert_eq!((s, &late["message"]["id"]), (200, &first["message"]["id"]));
    let (s, b) = app.send_message(conv, &token, "new one").await;
    assert_eq!((s, code(&b)), (409, "conversation_closed"));
}

async fn pii_is_redacted_before_storing(app: TestApp) {
    let (conv, token) = app.new_conversation("acme").await;
    let (s, body) = app.send_message(conv, &token, "제 번호는 010-1234-5678 이고 메일은 kim@example.com 입니다").await;
    assert_eq!(s, 201);
    let text = body["message"]["text"].as_str().unwrap();
    assert!(!text.contains("010-1234-5678") && !text.contains("kim@example.com"), "{text}");
    let stored = app.store.list_messages(conv, 0, 10).await.unwrap();
    assert!(stored[0].text.contains("[PHONE]") && stored[0].text.contains("[EMAIL]"), "{}", stored[0].text);

    // A tenant may switch a kind off.
    let admin = app.login("acme", "admin@acme.test").await;
    let (_, mut settings) = app.get("/v1/admin/settings", Some(&admin)).await;
    settings["pii"]["email"] = json!(false);
    let (s, _) = app.put_json("/v1/admin/settings", &admin, settings).await;
    assert_eq!(s, 200);
    let (_, body) = app.send_message(conv, &token, "mail kim@example.com, card 4111 1111 1111 1111").await;
    assert_eq!(body["message"]["text"], "mail kim@example.com, card [CARD]");
}

async fn handoff_claim_reply_release_close(app: TestApp) {
    let (conv, customer) = app.new_conversation("acme").await;
    let agent = app.login("acme", "agent@acme.test").await;
    let base = format!("/v1/conversations/{conv}");

    // The agent may not reply before claiming.
    let (s, body) = app.send_message(conv, &agent, "hello from agent").await;
    assert_eq!((s, code(&body)), (409, "not_assigned"));

    let (s, body) = app.post_json(&format!("{base}/handoff"), Some(&customer), json!({ "reason": "want a human" })).await;
    assert_eq!((s, body["conversation"]["status"].as_str()), (200, Some("queued")), "{body}");
    let (s, body) = app.post_json(&format!("{base}/claim"), Some(&customer), json!({})).await;
    assert_eq!((s, code(&body)), (403, "forbidden"), "customers cannot claim");
    let (s, body) = app.post_json(&format!("{base}/claim"), Some(&agent), json!({})).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["conversation"]["status"], "assigned");

    let (s, body) = app.send_message(conv, &agent, "안녕하세요, 상담원입니다").await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["message"]["sender"], "agent");

    let other = app.login("acme", "agent2@acme.test").await;
    let (s, body) = app.post_json(&format!("{base}/release"), Some(&other), json!({})).await;
    assert_eq!((s, code(&body)), (409, "not_assigned"));
    let (s, body) = app.post_json(&format!("{base}/release"), Some(&agent), json!({})).await;
    assert_eq!((s, body["conversation"]["status"].as_str()), (200, Some("bot")));

    let (s, body) = app.post_json(&format!("{base}/close"), Some(&customer), json!({})).await;
    assert_eq!((s, body["conversation"]["status"].as_str()), (200, Some("closed")));
    let (s, body) = app.send_message(conv, &customer, "are you there?").await;
    assert_eq!((s, code(&body)), (409, "conversation_closed"));
    let (s, body) = app.post_json(&format!("{base}/close"), Some(&customer), json!({})).await;
    assert_eq!((s, code(&body)), (409, "invalid_transition"));

    // Every change left an audit row.
    let tenant = app.store.tenant_by_slug("acme").await.unwrap().unwrap();
    let kinds: Vec<String> =
        app.store.list_events(tenant.id, Some(conv), 20).await.unwrap().into_iter().map(|e| e.kind).collect();
    for k in ["conversation.created", "conversation.queued", "conversation.assigned", "conversation.bot", "conversation.closed"] {
        assert!(kinds.iter().any(|x| x == k), "missing {k} in {kinds:?}");
    }
    // The assist panel works without models too (no intent, BM25 only), with the summary.
    let (s, body) = app.get(&format!("{base}/assist"), Some(&agent)).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["summary"]["next_step"], "Nothing: the conversation is closed", "{body}");
}

async fn second_claim_gets_409(app: TestApp) {
    let (conv, customer) = app.new_conversation("acme").await;
    app.post_json(&format!("/v1/conversations/{conv}/handoff"), Some(&customer), json!({})).await;
    let a = app.login("acme", "agent@acme.test").await;
    let b = app.login("acme", "agent2@acme.test").await;
    let path = format!("/v1/conversations/{conv}/claim");
    let (ra, rb) = tokio::join!(app.post_json(&path, Some(&a), json!({})), app.post_json(&path, Some(&b), json!({})));
    let mut statuses = [ra.0, rb.0];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{ra:?} {rb:?}");
}

async fn feedback_and_csat(app: TestApp) {
    let (conv, token) = app.new_conversation("acme").await;
    let (_, m) = app.send_message(conv, &token, "hi").await;
    let mid = m["message"]["id"].as_str().unwrap();
    let base = format!("/v1/conversations/{conv}");
    let (s, _) = app.post_json(&format!("{base}/feedback"), Some(&token), json!({ "message_id": mid, "rating": "up" })).await;
    assert_eq!(s, 204);
    let (s, b) = app.post_json(&format!("{base}/feedback"), Some(&token), json!({ "message_id": Uuid::new_v4(), "rating": "up" })).await;
    assert_eq!((s, code(&b)), (404, "not_found"));
    let (s, b) = app.post_json(&format!("{base}/feedback"), Some(&token), json!({ "message_id": mid, "rating": "meh" })).await;
    assert_eq!((s, code(&b)), (422, "invalid_field"));
    let (s, b) = app.post_json(&format!("{base}/csat"), Some(&token), json!({ "score": 6 })).await;
    assert_eq!((s, code(&b)), (422, "invalid_score"));
    let (s, _) = app.post_json(&format!("{base}/csat"), Some(&token), json!({ "score": 5 })).await;
    assert_eq!(s, 204);
    let (_, c) = app.get(&base, Some(&token)).await;
    assert_eq!(c["conversation"]["csat"], 5);
}

async fn admin_settings_and_users(app: TestApp) {
    let admin = app.login("acme", "admin@acme.test").await;
    let (s, settings) = app.get("/v1/admin/settings", Some(&admin)).await;
    assert_eq!(s, 200);
    assert_eq!(settings["texts"]["greeting"]["ko"], "안녕하세요! 무엇을 도와드릴까요?");

    let mut bad = settings.clone();
    bad["dialog"]["direct"] = json!(2.0);
    bad["allowed_origins"] = json!(["not an origin"]);
    let (s, body) = app.put_json("/v1/admin/settings", &admin, bad).await;
    assert_eq!((s, code(&body)), (422, "invalid_settings"));
    assert_eq!(body["error"]["details"].as_array().unwrap().len(), 2, "{body}");
    let (_, unchanged) = app.get("/v1/admin/settings", Some(&admin)).await;
    assert_eq!(unchanged, settings, "a rejected update changes nothing");

    // Origins: only the allowed site may start widget conversations from a browser.
    let mut s2 = settings.clone();
    s2["allowed_origins"] = json!(["https://shop.acme.test"]);
    assert_eq!(app.put_json("/v1/admin/settings", &admin, s2).await.0, 200);
    let create = |origin: &'static str| {
        app.client.post(app.at("/v1/widget/acme/conversations")).header("origin", origin).json(&json!({})).send()
    };
    let ok = create("https://shop.acme.test").await.unwrap();
    assert_eq!(ok.status(), 201);
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://shop.acme.test");
    let (s, body) = aicc_tests::read(create("https://evil.test").await.unwrap()).await;
    assert_eq!((s, code(&body)), (403, "origin_not_allowed"));

    // A verified returning customer: user_hash signed with the tenant's identity secret.
    let (s, secret) = app.get("/v1/admin/identity-secret", Some(&admin)).await;
    assert_eq!(s, 200);
    let hash = {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret["identity_secret"].as_str().unwrap().as_bytes()).unwrap();
        mac.update(b"customer-42");
        mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let (s, c) = app
        .post_json("/v1/widget/acme/conversations", None, json!({ "customer": { "user_id": "customer-42", "user_hash": hash } }))
        .await;
    assert_eq!(s, 201, "{c}");
    let verified = app.store.find_conversation(c["conversation_id"].as_str().unwrap().parse().unwrap()).await.unwrap().unwrap();
    assert!(verified.customer.verified);

    // Users: create (generated password), duplicate, update, delete.
    let (s, created) = app.post_json("/v1/admin/users", Some(&admin), json!({ "email": "New@Acme.test", "role": "agent" })).await;
    assert_eq!(s, 201, "{created}");
    let pw = created["password"].as_str().unwrap();
    assert!(created["user"].get("password_hash").is_none());
    let (s, _) = app.post_json("/v1/auth/login", None, json!({ "tenant": "acme", "email": "new@acme.test", "password": pw })).await;
    assert_eq!(s, 200, "the generated password works");
    let (s, dup) = app.post_json("/v1/admin/users", Some(&admin), json!({ "email": "new@acme.test", "role": "admin" })).await;
    assert_eq!((s, code(&dup)), (409, "user_exists"));
    let (s, b) = app.post_json("/v1/admin/users", Some(&admin), json!({ "email": "x@acme.test", "role": "agent", "password": "short" })).await;
    assert_eq!((s, code(&b)), (422, "weak_password"));
    let id = created["user"]["id"].as_str().unwrap();
    let (s, u) = app.put_json(&format!("/v1/admin/users/{id}"), &admin, json!({ "name": "김상담", "teams": ["cards"] })).await;
    assert_eq!(s, 200);
    assert_eq!((u["name"].as_str(), u["role"].as_str()), (Some("김상담"), Some("agent")));
    let (_, list) = app.get("/v1/admin/users", Some(&admin)).await;
    assert_eq!(list["users"].as_array().unwrap().len(), 4);
    let del = app.client.delete(app.at(&format!("/v1/admin/users/{id}"))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(del.status(), 204);
    let del = app.client.delete(app.at(&format!("/v1/admin/users/{id}"))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(del.status(), 404);
}

async fn health_metrics_and_openapi(app: TestApp) {
    assert_eq!(app.get("/healthz", None).await.0, 200);
    let (s, ready) = app.get("/readyz", None).await;
    assert_eq!((s, ready["store"].as_str()), (200, Some("ok")));
    let metrics = app.client.get(app.at("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("aicc_http_requests_total"), "{metrics}");
    let (s, doc) = app.get("/v1/openapi.json", None).await;
    assert_eq!(s, 200);
    for path in ["/v1/auth/login", "/v1/conversations/{id}/messages", "/v1/widget/{tenant}/conversations", "/v1/admin/users"] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing from the OpenAPI document");
    }
    let (s, body) = app.get("/v1/nope", None).await;
    assert_eq!((s, code(&body)), (404, "not_found"));
    let resp = app.client.delete(app.at("/v1/auth/login")).send().await.unwrap();
    let (s, body) = aicc_tests::read(resp).await;
    assert_eq!((s, code(&body)), (405, "method_not_allowed"));
    assert!(body["error"]["message"].as_str().unwrap().ends_with("use POST"), "{body}");
}
