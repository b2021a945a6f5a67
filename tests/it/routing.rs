//! Getting customers to agents: automatic assignment, what a waiting customer
//! is told, idle closing, canned responses and a returning customer's history.

use std::time::Duration;

use aicc_tests::{code, spawn_app, Backend, TestApp};
use chrono::Datelike;
use serde_json::json;
use uuid::Uuid;

async fn update_settings(app: &TestApp, admin: &str, f: impl FnOnce(&mut serde_json::Value)) {
    let (_, mut settings) = app.get("/v1/admin/settings", Some(admin)).await;
    f(&mut settings);
    let (s, body) = app.put_json("/v1/admin/settings", admin, settings).await;
    assert_eq!(s, 200, "{body}");
}

async fn handoff(app: &TestApp, conv: Uuid, token: &str) -> serde_json::Value {
    let (s, body) = app.post_json(&format!("/v1/conversations/{conv}/handoff"), Some(token), json!({})).await;
    assert_eq!(s, 200, "{body}");
    body["conversation"].clone()
}

async fn system_texts(app: &TestApp, conv: Uuid) -> Vec<String> {
    app.store.list_messages(conv, 0, 100).await.unwrap().into_iter().filter(|m| m.sender == aicc_core::Sender::System).map(|m| m.text).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_busy_assignment_respects_capacity_and_presence() {
    let app = spawn_app(Backend::Postgres).await;
    let admin = app.login("acme", "admin@acme.test").await;
    update_settings(&app, &admin, |s| s["assignment"] = json!("least_busy")).await;
    let tenant = app.tenant_id("acme").await;
    let (a1, a2) = (app.user_id("acme", "agent@acme.test").await, app.user_id("acme", "agent2@acme.test").await);
    let id = app.user_id("acme", "agent2@acme.test").await;
    let (s, _) = app.put_json(&format!("/v1/admin/users/{id}"), &admin, json!({ "max_concurrent": 1 })).await;
    assert_eq!(s, 200);
    app.bus.set_online(tenant, a1, Duration::from_secs(60)).await.unwrap();
    app.bus.set_online(tenant, a2, Duration::from_secs(60)).await.unwrap();

    let mut assigned = vec![];
    for _ in 0..3 {
        let (conv, token) = app.new_conversation("acme").await;
        let c = handoff(&app, conv, &token).await;
        assert_eq!(c["status"], "assigned", "{c}");
        assigned.push(c["agent_id"].as_str().unwrap().parse::<Uuid>().unwrap());
        assert!(system_texts(&app, conv).await.is_empty(), "agents are online: no waiting notice");
    }
    // Least busy first, and agent2 (max 1) never gets a second one.
    assert_eq!(assigned.iter().filter(|a| **a == a2).count(), 1, "{assigned:?}");
    assert_eq!(assigned.iter().filter(|a| **a == a1).count(), 2, "{assigned:?}");

    // Nobody under capacity and online: the conversation waits in the queue...
    app.bus.set_offline(tenant, a1).await.unwrap();
    let (conv, token) = app.new_conversation("acme").await;
    assert_eq!(handoff(&app, conv, &token).await["status"], "queued");
    // ...until capacity frees up: agent2 closes theirs and gets the waiting one.
    let a2_token = app.login("acme", "agent2@acme.test").await;
    let a2_conv = assigned.iter().position(|a| *a == a2).unwrap();
    let mine = app.store.list_conversations(tenant, Some(aicc_core::ConversationStatus::Assigned), 10).await.unwrap();
    let a2_current = mine.iter().find(|c| c.agent_id == Some(a2)).unwrap().id;
    let _ = a2_conv;
    let (s, _) = app.post_json(&format!("/v1/conversations/{a2_current}/close"), Some(&a2_token), json!({})).await;
    assert_eq!(s, 200);
    let now = app.store.conversation(tenant, conv).await.unwrap().unwrap();
    assert_eq!((now.status, now.agent_id), (aicc_core::ConversationStatus::Assigned, Some(a2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_routing_and_round_robin() {
    let app = spawn_app(Backend::Sqlite).await;
    let admin = app.login("acme", "admin@acme.test").await;
    update_settings(&app, &admin, |s| s["assignment"] = json!("round_robin")).await;
    let tenant = app.tenant_id("acme").await;
    let (a1, a2) = (app.user_id("acme", "agent@acme.test").await, app.user_id("acme", "agent2@acme.test").await);
    app.put_json(&format!("/v1/admin/users/{a2}"), &admin, json!({ "teams": ["cards"] })).await;
    for a in [a1, a2] {
        app.bus.set_online(tenant, a, Duration::from_secs(60)).await.unwrap();
    }
    let mut got = vec![];
    for _ in 0..4 {
        let (conv, token) = app.new_conversation("acme").await;
        got.push(handoff(&app, conv, &token).await["agent_id"].as_str().unwrap().parse::<Uuid>().unwrap());
    }
    assert_eq!(got.iter().filter(|a| **a == a1).count(), 2, "turns alternate: {got:?}");

    // A transfer to the cards team goes only to its member.
    let (conv, token) = app.new_conversation("acme").await;
    let c = handoff(&app, conv, &token).await;
    let owner = c["agent_id"].as_str().unwrap();
    let owner_email = if owner == a1.to_string() { "agent@acme.test" } else { "agent2@acme.test" };
    let owner_token = app.login("acme", owner_email).await;
    let (s, body) = app.post_json(&format!("/v1/conversations/{conv}/transfer"), Some(&owner_token), json!({ "team": "cards" })).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!((body["conversation"]["agent_id"].as_str(), body["conversation"]["team"].as_str()), (Some(a2.to_string().as_str()), Some("cards")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_customers_are_told_why() {
    let app = spawn_app(Backend::Sqlite).await;
    let admin = app.login("acme", "admin@acme.test").await;
    // No agent online (hours: always open): the localised "offline" text.
    let (conv, token) = app.new_conversation("acme").await; // locale ko
    let c = handoff(&app, conv, &token).await;
    assert_eq!(c["status"], "queued");
    assert_eq!(system_texts(&app, conv).await, ["지금은 상담 가능한 상담원이 없습니다. 메시지를 남겨 주시면 연락드리겠습니다."]);
    // The customer may leave a message while queued.
    assert_eq!(app.send_message(conv, &token, "내일 연락 주세요").await.0, 201);

    // Out of hours: open tomorrow only (UTC), so it is closed now.
    let tomorrow = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][(chrono::Utc::now().weekday().num_days_from_monday() as usize + 1) % 7];
    update_settings(&app, &admin, |s| {
        s["business_hours"] = json!({ "timezone": "UTC", "days": { tomorrow: ["09:00", "18:00"] } });
    })
    .await;
    let (s, created) = app.post_json("/v1/widget/acme/conversations", None, json!({ "locale": "en" })).await;
    assert_eq!(s, 201);
    let conv2: Uuid = created["conversation_id"].as_str().unwrap().parse().unwrap();
    handoff(&app, conv2, created["token"].as_str().unwrap()).await;
    let texts = system_texts(&app, conv2).await;
    assert_eq!(texts, [format!("Our agents are away until {tomorrow} 09:00 (UTC). Leave a message and we will get back to you.")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_bot_conversations_close_themselves() {
    let app = spawn_app(Backend::Postgres).await;
    let (idle, token) = app.new_conversation("acme").await;
    let (queued, qtoken) = app.new_conversation("acme").await;
    handoff(&app, queued, &qtoken).await;
    let state = app.state().await;
    let now = chrono::Utc::now();
    assert_eq!(aicc_api::lifecycle::close_idle(&state, now).await.unwrap(), 0, "not idle yet");
    let later = now + chrono::Duration::minutes(31); // default timeout: 30 min
    assert_eq!(aicc_api::lifecycle::close_idle(&state, later).await.unwrap(), 1, "only the bot conversation");
    let (_, c) = app.get(&format!("/v1/conversations/{idle}"), Some(&token)).await;
    assert_eq!(c["conversation"]["status"], "closed");
    let (_, q) = app.get(&format!("/v1/conversations/{queued}"), Some(&qtoken)).await;
    assert_eq!(q["conversation"]["status"], "queued", "a waiting customer is not closed");
    let events = app.store.list_events(app.tenant_id("acme").await, Some(idle), 10).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds[..2], ["conversation.summary", "conversation.idle_closed"], "closed, then its summary kept");
    assert_eq!(aicc_api::lifecycle::close_idle(&state, later).await.unwrap(), 0, "once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canned_responses_api() {
    let app = spawn_app(Backend::Sqlite).await;
    let admin = app.login("acme", "admin@acme.test").await;
    let agent = app.login("acme", "agent@acme.test").await;
    let body = json!({ "title": "배송 안내", "text": "카드는 영업일 5~7일 안에 도착합니다.", "language": "ko" });
    let (s, created) = app.post_json("/v1/admin/canned", Some(&admin), body.clone()).await;
    assert_eq!(s, 201, "{created}");
    let (s, b) = app.post_json("/v1/admin/canned", Some(&agent), body).await;
    assert_eq!((s, code(&b)), (403, "forbidden"), "agents read, admins write");
    let (s, list) = app.get("/v1/admin/canned", Some(&agent)).await;
    assert_eq!((s, list["canned"].as_array().unwrap().len()), (200, 1));
    let id = created["id"].as_str().unwrap();
    let (s, b) = app.put_json(&format!("/v1/admin/canned/{id}"), &admin, json!({ "title": "x", "text": "y", "language": "fr" })).await;
    assert_eq!((s, code(&b)), (422, "invalid_field"));
    let (s, b) = app.put_json(&format!("/v1/admin/canned/{id}"), &admin, json!({ "title": "Delivery", "text": "5-7 days.", "language": "en" })).await;
    assert_eq!((s, b["title"].as_str()), (200, Some("Delivery")));
    let del = app.client.delete(app.at(&format!("/v1/admin/canned/{id}"))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(del.status(), 204);
    let (_, list) = app.get("/v1/admin/canned", Some(&admin)).await;
    assert!(list["canned"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_see_a_verified_customers_earlier_conversations() {
    let app = spawn_app(Backend::Postgres).await;
    let admin = app.login("acme", "admin@acme.test").await;
    let (_, secret) = app.get("/v1/admin/identity-secret", Some(&admin)).await;
    let hash = {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret["identity_secret"].as_str().unwrap().as_bytes()).unwrap();
        mac.update(b"cust-7");
        mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let mut ids = vec![];
    for _ in 0..3 {
        let (s, c) = app
            .post_json("/v1/widget/acme/conversations", None, json!({ "customer": { "user_id": "cust-7", "user_hash": hash } }))
            .await;
        assert_eq!(s, 201);
        ids.push(c["conversation_id"].as_str().unwrap().to_string());
    }
    // Someone claiming the same user_id without the hash is not linked.
    app.post_json("/v1/widget/acme/conversations", None, json!({ "customer": { "user_id": "cust-7" } })).await;
    let agent = app.login("acme", "agent@acme.test").await;
    let (_, body) = app.get(&format!("/v1/conversations/{}", ids[2]), Some(&agent)).await;
    let earlier: Vec<&str> = body["earlier"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(earlier, [ids[1].as_str(), ids[0].as_str()]);
}
