//! The Bus conformance suite on both backends, and what only Redis does:
//! fan-out across replicas and surviving Redis going away.

use std::time::Duration;

use aicc_bus::conformance::{next, quiet};
use aicc_bus::RedisBus;
use aicc_core::{Bus, BusEvent, Topic};
use aicc_tests::{free_port, PrivateRedis};
use serde_json::json;
use uuid::Uuid;

mod in_process {
    aicc_bus::bus_conformance_suite!(aicc_tests::in_process_bus);
}

mod redis {
    aicc_bus::bus_conformance_suite!(aicc_tests::redis_bus);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_fans_out_across_replicas() {
    let a = aicc_tests::redis_bus().await;
    let b = aicc_tests::redis_bus().await;
    let topic = Topic::Conversation(Uuid::new_v4());
    let mut on_a = a.subscribe(&topic).await.unwrap();
    let mut on_b = b.subscribe(&topic).await.unwrap();
    for i in 0..50 {
        a.publish(&topic, json!(i)).await.unwrap();
    }
    for i in 0..50 {
        assert_eq!(next(&mut on_a).await, BusEvent::event(json!(i)), "local delivery on the publisher");
        assert_eq!(next(&mut on_b).await, BusEvent::event(json!(i)), "delivery on the other replica");
    }
    assert!(quiet(&mut on_a).await, "the publisher does not get its own event twice");
    let tenant = Uuid::new_v4();
    let agent = Uuid::new_v4();
    a.set_online(tenant, agent, Duration::from_secs(30)).await.unwrap();
    assert_eq!(b.online(tenant).await.unwrap(), vec![agent], "presence is shared");
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_keeps_local_delivery_and_signals_lag() {
    let port = free_port();
    let redis = PrivateRedis::start(port);
    let a = RedisBus::connect(&redis.url()).await.unwrap();
    let b = RedisBus::connect(&redis.url()).await.unwrap();
    let topic = Topic::Conversation(Uuid::new_v4());
    let mut local = a.subscribe(&topic).await.unwrap();
    let mut remote = b.subscribe(&topic).await.unwrap();

    drop(redis);
    wait_until("both buses see Redis gone", || !a.is_healthy() && !b.is_healthy()).await;
    assert!(a.publish(&topic, json!("during outage")).await.is_err(), "the publisher is told Redis is down");
    assert_eq!(next(&mut local).await, BusEvent::event(json!("during outage")), "local subscribers still served");
    assert!(quiet(&mut remote).await);

    let _redis = PrivateRedis::start(port);
    wait_until("both buses reconnect", || a.is_healthy() && b.is_healthy()).await;
    assert_eq!(next(&mut remote).await, BusEvent::Lagged, "the other replica is told to resync from the store");
    assert_eq!(next(&mut local).await, BusEvent::Lagged);
    a.publish(&topic, json!("after")).await.unwrap();
    assert_eq!(next(&mut remote).await, BusEvent::event(json!("after")));
}

/// `/readyz` reports the bus, and the server keeps serving while Redis is away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_redis_outage_and_recovery() {
    let port = free_port();
    let redis = PrivateRedis::start(port);
    let store = aicc_tests::fresh_sqlite_store().await;
    let bus: std::sync::Arc<dyn Bus> = std::sync::Arc::new(RedisBus::connect(&redis.url()).await.unwrap());
    let settings = aicc_core::settings::Settings { bind: "127.0.0.1:0".into(), demo: false, ..Default::default() };
    store.ensure_tenant("acme", "acme", &Default::default()).await.unwrap();
    let kb = std::sync::Arc::new(aicc_tests::knowledge_base(&store, &bus));
    let app = aicc_api::Application::build(settings, store, bus.clone(), kb).await.unwrap();
    let url = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let get = |path: &str| reqwest::get(format!("{url}{path}"));
    assert_eq!(get("/readyz").await.unwrap().status(), 200);

    drop(redis);
    wait_until("the bus notices", || !bus.is_healthy()).await;
    let r = get("/readyz").await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["bus"], "unavailable");
    // Still serving: a customer can start a conversation and write.
    let created = aicc_tests::post_json_to(&format!("{url}/v1/widget/acme/conversations"), json!({})).await;
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/conversations/{}/messages", created["conversation_id"].as_str().unwrap()))
        .bearer_auth(created["token"].as_str().unwrap())
        .json(&json!({ "client_msg_id": Uuid::new_v4(), "text": "still there?" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "messages are stored while Redis is down");

    let _redis = PrivateRedis::start(port);
    wait_until("the bus reconnects", || bus.is_healthy()).await;
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
}
