//! The WebSocket protocol (docs/protocol.md) against one server.

use aicc_tests::{code, spawn_app, Backend, WsClient};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

fn msg(conv: Uuid, text: &str) -> serde_json::Value {
    json!({ "type": "message", "conversation_id": conv, "client_msg_id": Uuid::new_v4(), "text": text })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_and_agent_talk_live() {
    let app = spawn_app(Backend::Postgres).await;
    let (conv, customer_token) = app.new_conversation("acme").await;
    let agent_token = app.login("acme", "agent@acme.test").await;

    let mut customer = WsClient::connect(&app.url, &customer_token).await;
    let welcome = customer.next_of("welcome").await;
    assert_eq!((welcome["role"].as_str(), welcome["conversations"][0].as_str()), (Some("customer"), Some(conv.to_string().as_str())));
    customer.send(json!({ "type": "hello", "last_seq": 0 })).await;
    assert_eq!(customer.next_of("status").await["status"], "bot");

    let mut agent = WsClient::connect(&app.url, &agent_token).await;
    assert_eq!(agent.next_of("welcome").await["role"], "agent");
    let queue = agent.next_of("queue").await;
    assert!(queue["conversations"].as_array().unwrap().is_empty());

    // The customer asks for a human: the agent's queue shows it, the customer sees its position.
    customer.send(msg(conv, "상담원 연결해 주세요")).await;
    assert_eq!(customer.next_of("ack").await["seq"], 1);
    assert_eq!(customer.next_of("message").await["message"]["seq"], 1, "the sender gets its own message too");
    let (s, _) = app.post_json(&format!("/v1/conversations/{conv}/handoff"), Some(&customer_token), json!({})).await;
    assert_eq!(s, 200);
    let status = customer.next_of("status").await;
    assert_eq!((status["status"].as_str(), status["queue_position"].as_i64()), (Some("queued"), Some(1)));
    let queue = loop {
        let q = agent.next_of("queue").await;
        if !q["conversations"].as_array().unwrap().is_empty() {
            break q;
        }
    };
    assert_eq!(queue["conversations"][0]["conversation_id"], conv.to_string());
    assert_eq!(queue["conversations"][0]["preview"], "상담원 연결해 주세요");

    let (s, _) = app.post_json(&format!("/v1/conversations/{conv}/claim"), Some(&agent_token), json!({})).await;
    assert_eq!(s, 200);
    let status = customer.next_of("status").await;
    assert_eq!((status["status"].as_str(), status["agent"]["name"].as_str()), (Some("assigned"), Some("agent")));

    agent.send(json!({ "type": "subscribe", "conversation_id": conv, "last_seq": 0 })).await;
    assert_eq!(agent.next_of("message").await["message"]["text"], "상담원 연결해 주세요", "the transcript replays");

    customer.send(json!({ "type": "typing", "conversation_id": conv, "on": true })).await;
    let typing = agent.next_of("typing").await;
    assert_eq!((typing["sender"].as_str(), typing["on"].as_bool()), (Some("customer"), Some(true)));
    assert!(typing.get("_from").is_none());

    for i in 0..10 {
        agent.send(msg(conv, &format!("agent {i}"))).await;
        customer.send(msg(conv, &format!("customer {i}"))).await;
    }
    for side in [&mut customer, &mut agent] {
        let mut seqs = vec![];
        while seqs.len() < 20 {
            let f = side.next().await.expect("open");
            if f["type"] == "message" {
                seqs.push(f["message"]["seq"].as_i64().unwrap());
            }
        }
        assert_eq!(seqs, (2..=21).collect::<Vec<_>>(), "every message once, in seq order");
    }
    assert_eq!(app.message_count(conv).await, 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_replays_exactly_what_was_missed() {
    let app = spawn_app(Backend::Sqlite).await;
    let (conv, token) = app.new_conversation("acme").await;
    for i in 1..=6 {
        app.send_message(conv, &token, &format!("m{i}")).await;
    }
    let mut ws = WsClient::connect(&app.url, &token).await;
    ws.send(json!({ "type": "hello", "conversation_id": conv, "last_seq": 3 })).await;
    let mut got = vec![];
    loop {
        let f = ws.next().await.unwrap();
        match f["type"].as_str() {
            Some("message") => got.push(f["message"]["text"].as_str().unwrap().to_string()),
            Some("status") => break,
            _ => {}
        }
    }
    assert_eq!(got, ["m4", "m5", "m6"]);

    // A retry with the same client_msg_id is acknowledged again but stored once.
    let id = Uuid::new_v4();
    ws.send(json!({ "type": "message", "conversation_id": conv, "client_msg_id": id, "text": "again" })).await;
    assert_eq!(ws.next_of("ack").await["seq"], 7);
    assert_eq!(ws.next_of("message").await["message"]["seq"], 7);
    ws.send(json!({ "type": "message", "conversation_id": conv, "client_msg_id": id, "text": "again" })).await;
    assert_eq!(ws.next_of("ack").await["seq"], 7);
    ws.send(msg(conv, "probe")).await;
    assert_eq!(ws.next_of("message").await["message"]["seq"], 8, "the retry sent no second message frame");
    ws.send(json!({ "type": "message", "conversation_id": conv, "client_msg_id": id, "text": "different" })).await;
    let err = ws.next_of("error").await;
    assert_eq!((err["code"].as_str(), err["client_msg_id"].as_str()), (Some("idempotency_conflict"), Some(id.to_string().as_str())));
    assert_eq!(app.message_count(conv).await, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_errors_and_the_server_stays_up() {
    let app = spawn_app(Backend::Sqlite).await;
    let (conv, token) = app.new_conversation("acme").await;
    let (other, _) = app.new_conversation("acme").await;
    let mut ws = WsClient::connect(&app.url, &token).await;
    ws.next_of("welcome").await;

    let cases: Vec<(Message, &str)> = vec![
        (Message::Text("not json".into()), "malformed_frame"),
        (Message::Binary(vec![1, 2, 3].into()), "unsupported_frame"),
        (Message::Text(json!({ "type": "launch" }).to_string().into()), "unknown_type"),
        (Message::Text(json!({ "no": "type" }).to_string().into()), "invalid_frame"),
        (Message::Text(json!({ "type": "message", "conversation_id": conv }).to_string().into()), "invalid_frame"),
        (Message::Text(json!({ "type": "hello", "last_seq": -1 }).to_string().into()), "invalid_frame"),
        (Message::Text(json!({ "type": "hello", "conversation_id": other }).to_string().into()), "wrong_conversation"),
        (Message::Text(msg(other, "sneak").to_string().into()), "wrong_conversation"),
        (Message::Text(json!({ "type": "subscribe", "conversation_id": other }).to_string().into()), "forbidden"),
        (Message::Text(msg(conv, "   ").to_string().into()), "empty_text"),
    ];
    for (frame, expected) in cases {
        ws.send_raw(frame).await;
        assert_eq!(ws.next_of("error").await["code"], expected);
    }
    assert_eq!(app.message_count(other).await, 0);
    assert_eq!(app.message_count(conv).await, 0);

    // An agent of another tenant cannot subscribe.
    let globex = app.login("globex", "agent@globex.test").await;
    let mut outsider = WsClient::connect(&app.url, &globex).await;
    outsider.send(json!({ "type": "subscribe", "conversation_id": conv })).await;
    assert_eq!(outsider.next_of("error").await["code"], "wrong_tenant");

    // A 1 MiB frame closes the connection with 1009 (too big).
    ws.send_raw(Message::Text("x".repeat(1 << 20).into())).await;
    assert_eq!(ws.close_code().await, Some(1009));

    // Flooding gets a rate_limited error.
    let mut flood = WsClient::connect(&app.url, &token).await;
    for _ in 0..70 {
        flood.send(json!({ "type": "typing", "conversation_id": conv, "on": true })).await;
    }
    assert_eq!(flood.next_of("error").await["code"], "rate_limited");

    // Bad tokens never upgrade.
    let url = format!("{}/v1/ws?token=nope", app.url.replacen("http://", "ws://", 1));
    let err = tokio_tungstenite::connect_async(url).await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    let (s, b) = app.get("/v1/ws", None).await;
    assert_eq!((s, code(&b)), (401, "missing_token"));
    assert_eq!(app.get("/healthz", None).await.0, 200, "the server stays up");
}
