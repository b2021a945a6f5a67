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
        assert_eq!(next(&mut on_a).await, BusEvent::Event(json!(i)), "local delivery on the publisher");
        assert_eq!(next(&mut on_b).await, BusEvent::Event(json!(i)), "delivery on the other replica");
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
    assert_eq!(next(&mut local).await, BusEvent::Event(json!("during outage")), "local subscribers still served");
    assert!(quiet(&mut remote).await);

    let _redis = PrivateRedis::start(port);
    wait_until("both buses reconnect", || a.is_healthy() && b.is_healthy()).await;
    assert_eq!(next(&mut remote).await, BusEvent::Lagged, "the other replica is told to resync from the store");
    assert_eq!(next(&mut local).await, BusEvent::Lagged);
    a.publish(&topic, json!("after")).await.unwrap();
    assert_eq!(next(&mut remote).await, BusEvent::Event(json!("after")));
}
