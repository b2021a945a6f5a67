//! Two real `aicc serve` processes sharing Postgres and Redis: a customer on
//! replica A and an agent on replica B talk; A dies; the customer resumes on B.

use std::collections::HashSet;
use std::time::Duration;

use aicc_tests::{fresh_pg_database, post_json_to, redis_url, scratch_dir, WsClient};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::cli::{aicc, start};

fn frame(conv: Uuid, text: String) -> Message {
    Message::Text(json!({ "type": "message", "conversation_id": conv, "client_msg_id": Uuid::new_v4(), "text": text }).to_string().into())
}

/// Reads `message` frames until `n` arrived; returns their (seq, text).
async fn collect(
    stream: &mut (impl futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
    n: usize,
) -> Vec<(i64, String)> {
    let mut got = vec![];
    while got.len() < n {
        let msg = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} messages arrived", got.len()))
            .expect("stream open")
            .expect("frame");
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "message" {
                got.push((v["message"]["seq"].as_i64().unwrap(), v["message"]["text"].as_str().unwrap().to_string()));
            }
        }
    }
    got
}

fn assert_in_order_once(got: &[(i64, String)], from: i64) {
    let seqs: Vec<i64> = got.iter().map(|(s, _)| *s).collect();
    let expected: Vec<i64> = (from..from + got.len() as i64).collect();
    assert_eq!(seqs, expected, "every message once, in seq order");
    assert_eq!(got.iter().map(|(_, t)| t).collect::<HashSet<_>>().len(), got.len(), "no text twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn customer_and_agent_on_different_replicas() {
    let database = fresh_pg_database().await;
    let replica = |dir: &std::path::Path| {
        let mut cmd = aicc(dir);
        cmd.env("DATABASE_URL", &database).env("REDIS_URL", redis_url()).env("AICC_WS_FRAMES_PER_10S", "1000");
        cmd
    };
    let (dir_a, dir_b) = (scratch_dir(), scratch_dir());
    let mut a = start(replica(&dir_a)).await;
    let password = a.demo_password().await;
    let b = start(replica(&dir_b)).await;
    let client = reqwest::Client::new();

    let created = post_json_to(&format!("{}/v1/widget/demo/conversations", a.url), json!({ "locale": "ko" })).await;
    let conv: Uuid = created["conversation_id"].as_str().unwrap().parse().unwrap();
    let customer_token = created["token"].as_str().unwrap().to_string();
    let login = post_json_to(
        &format!("{}/v1/auth/login", b.url),
        json!({ "tenant": "demo", "email": "admin@demo.local", "password": password }),
    )
    .await;
    let agent_token = login["access_token"].as_str().unwrap().to_string();

    // Agents always in office, and the agent online before the handoff: no waiting notice.
    let settings_url = format!("{}/v1/admin/settings", b.url);
    let mut settings: Value = client.get(&settings_url).bearer_auth(&agent_token).send().await.unwrap().json().await.unwrap();
    settings["business_hours"]["days"] = json!({});
    assert_eq!(client.put(&settings_url).bearer_auth(&agent_token).json(&settings).send().await.unwrap().status(), 200);
    let mut agent = WsClient::connect(&b.url, &agent_token).await;
    agent.next_of("queue").await;

    let post = |url: String, token: String| {
        let client = client.clone();
        async move { client.post(url).bearer_auth(token).json(&json!({})).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(post(format!("{}/v1/conversations/{conv}/handoff", a.url), customer_token.clone()).await, 200);
    assert_eq!(post(format!("{}/v1/conversations/{conv}/claim", b.url), agent_token.clone()).await, 200);

    let mut customer = WsClient::connect(&a.url, &customer_token).await;
    customer.send(json!({ "type": "hello", "last_seq": 0 })).await;
    customer.next_of("status").await;
    agent.send(json!({ "type": "subscribe", "conversation_id": conv, "last_seq": 0 })).await;
    agent.next_of("status").await;

    // 200 messages each way, sent concurrently from both replicas.
    let (mut c_tx, mut c_rx) = customer.split();
    let (mut a_tx, mut a_rx) = agent.split();
    let c_send = tokio::spawn(async move {
        for i in 0..200 {
            c_tx.send(frame(conv, format!("customer {i}"))).await.unwrap();
        }
        c_tx
    });
    let a_send = tokio::spawn(async move {
        for i in 0..200 {
            a_tx.send(frame(conv, format!("agent {i}"))).await.unwrap();
        }
        a_tx
    });
    let (on_customer, on_agent) = tokio::join!(collect(&mut c_rx, 400), collect(&mut a_rx, 400));
    assert_in_order_once(&on_customer, 1);
    assert_in_order_once(&on_agent, 1);
    assert_eq!(on_customer, on_agent, "both sides see the same transcript");
    let _ = c_send.await.unwrap();
    let mut a_tx = a_send.await.unwrap();
    // Keep reading the agent's side so the server never sees a slow consumer.
    tokio::spawn(async move { while a_rx.next().await.is_some() {} });

    // Replica A dies while the agent keeps writing; the customer resumes on B.
    let writer = tokio::spawn(async move {
        for i in 0..50 {
            a_tx.send(frame(conv, format!("after {i}"))).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let before_kill = collect(&mut c_rx, 10).await;
    assert_eq!(before_kill[0].0, 401);
    drop(a); // kills replica A and with it the customer's connection
    writer.await.unwrap();
    let last_seen = before_kill.last().unwrap().0;
    let mut resumed = WsClient::connect(&b.url, &customer_token).await;
    resumed.send(json!({ "type": "hello", "conversation_id": conv, "last_seq": last_seen })).await;
    let (_tx, mut r_rx) = resumed.split();
    let rest = collect(&mut r_rx, (450 - last_seen) as usize).await;
    assert_in_order_once(&rest, last_seen + 1);
    assert_eq!(rest.last().unwrap().0, 450);
}

