//! The behavioural suite both `Bus` implementations pass:
//! `aicc_bus::bus_conformance_suite!(make)` where `make` is an async fn
//! returning a fresh `Arc<dyn Bus>`.

use std::sync::Arc;
use std::time::Duration;

use aicc_core::{Bus, BusEvent, BusStream, Topic};
use futures_util::StreamExt;
use serde_json::json;
use uuid::Uuid;

#[macro_export]
macro_rules! bus_conformance_suite {
    ($make:path) => {
        $crate::bus_conformance_suite!(@each $make;
            subscribers_get_what_is_published_after_they_subscribe,
            topics_are_isolated,
            events_keep_their_order,
            slow_subscribers_are_told_they_lagged,
            presence_expires
        );
    };
    (@each $make:path; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let bus: std::sync::Arc<dyn aicc_core::Bus> = $make().await;
                $crate::conformance::$name(bus).await;
            }
        )*
    };
}

/// The next event, or panic after 5 s.
pub async fn next(stream: &mut BusStream) -> BusEvent {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("no bus event within 5 s")
        .expect("bus stream ended")
}

/// True when nothing arrives within 200 ms.
pub async fn quiet(stream: &mut BusStream) -> bool {
    tokio::time::timeout(Duration::from_millis(200), stream.next()).await.is_err()
}

pub async fn subscribers_get_what_is_published_after_they_subscribe(bus: Arc<dyn Bus>) {
    assert!(bus.is_healthy());
    let topic = Topic::Conversation(Uuid::new_v4());
    bus.publish(&topic, json!({ "n": 0 })).await.unwrap();
    let mut a = bus.subscribe(&topic).await.unwrap();
    let mut b = bus.subscribe(&topic).await.unwrap();
    bus.publish(&topic, json!({ "n": 1 })).await.unwrap();
    assert_eq!(next(&mut a).await, BusEvent::event(json!({ "n": 1 })));
    assert_eq!(next(&mut b).await, BusEvent::event(json!({ "n": 1 })));
    assert!(quiet(&mut a).await, "each event once, and nothing from before subscribing");
    drop(b);
    bus.publish(&topic, json!({ "n": 2 })).await.unwrap();
    assert_eq!(next(&mut a).await, BusEvent::event(json!({ "n": 2 })));
}

pub async fn topics_are_isolated(bus: Arc<dyn Bus>) {
    let tenant = Uuid::new_v4();
    let mut conv = bus.subscribe(&Topic::Conversation(tenant)).await.unwrap();
    let mut queue = bus.subscribe(&Topic::Queue(tenant)).await.unwrap();
    bus.publish(&Topic::Queue(tenant), json!("queue")).await.unwrap();
    bus.publish(&Topic::Kb(tenant), json!("kb")).await.unwrap();
    assert_eq!(next(&mut queue).await, BusEvent::event(json!("queue")));
    assert!(quiet(&mut conv).await);
    assert!(quiet(&mut queue).await);
}

pub async fn events_keep_their_order(bus: Arc<dyn Bus>) {
    let topic = Topic::Conversation(Uuid::new_v4());
    let mut sub = bus.subscribe(&topic).await.unwrap();
    for i in 0..50 {
        bus.publish(&topic, json!(i)).await.unwrap();
    }
    for i in 0..50 {
        assert_eq!(next(&mut sub).await, BusEvent::event(json!(i)));
    }
}

/// A subscriber that falls behind is told so (and re-reads the Store) instead
/// of the bus buffering without bound.
pub async fn slow_subscribers_are_told_they_lagged(bus: Arc<dyn Bus>) {
    let topic = Topic::Conversation(Uuid::new_v4());
    let mut sub = bus.subscribe(&topic).await.unwrap();
    for i in 0..1000 {
        bus.publish(&topic, json!(i)).await.unwrap();
    }
    assert_eq!(next(&mut sub).await, BusEvent::Lagged);
    let mut last = None;
    while let Ok(Some(BusEvent::Event(v))) = tokio::time::timeout(Duration::from_millis(300), sub.next()).await {
        last = Some(v);
    }
    assert_eq!(last.as_deref(), Some(&json!(999)), "the newest events are kept");
}

pub async fn presence_expires(bus: Arc<dyn Bus>) {
    let (tenant, other) = (Uuid::new_v4(), Uuid::new_v4());
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    bus.set_online(tenant, a, Duration::from_secs(60)).await.unwrap();
    bus.set_online(tenant, b, Duration::from_millis(300)).await.unwrap();
    bus.set_online(other, a, Duration::from_secs(60)).await.unwrap();
    let mut both = vec![a, b];
    both.sort();
    assert_eq!(bus.online(tenant).await.unwrap(), both);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(bus.online(tenant).await.unwrap(), vec![a], "b's presence ran out");
    bus.set_offline(tenant, a).await.unwrap();
    assert!(bus.online(tenant).await.unwrap().is_empty());
    assert_eq!(bus.online(other).await.unwrap(), vec![a], "tenants are separate");
}
