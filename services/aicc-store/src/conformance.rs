//! The behavioural suite every `Store` must pass, written once and run against
//! each backend (as quickwit does for its metastores):
//!
//! ```ignore
//! aicc_store::store_conformance_suite!(crate::helpers::fresh_postgres_store);
//! ```
//! The argument is an async fn returning a fresh, empty `Arc<dyn Store>`.

use std::collections::BTreeSet;
use std::sync::Arc;

use aicc_core::settings::TenantSettings;
use aicc_core::*;
use uuid::Uuid;

/// Expands to one `#[tokio::test]` per suite function, each on a fresh store.
#[macro_export]
macro_rules! store_conformance_suite {
    ($make:path) => {
        $crate::store_conformance_suite!(@each $make;
            tenants_are_unique_by_slug,
            secrets_are_created_once,
            users_crud_and_unique_email,
            messages_get_consecutive_seqs,
            client_msg_id_is_idempotent,
            concurrent_appends_have_no_gaps_or_duplicates,
            concurrent_retries_store_once,
            transitions_are_checked_and_audited,
            concurrent_claims_have_one_winner,
            feedback_and_csat_are_kept,
            tenants_are_isolated,
            canned_responses_crud,
            intent_models_are_versioned_per_tenant,
            intent_examples_are_replaced_per_tenant,
            jobs_one_active_per_tenant_and_final_states_stay,
            kb_versions_are_immutable_and_published_per_tenant,
            kb_concurrent_imports_get_distinct_versions,
            kb_adapters_are_versioned_per_tenant,
            lifecycle_queries,
            analytics_reads_by_time_and_kind
        );
    };
    (@each $make:path; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let store: std::sync::Arc<dyn aicc_core::Store> = $make().await;
                $crate::conformance::$name(store).await;
            }
        )*
    };
}

async fn tenant(store: &Arc<dyn Store>, slug: &str) -> Tenant {
    store.ensure_tenant(slug, slug, &TenantSettings::default()).await.unwrap().0
}

fn user(tenant_id: Uuid, email: &str, role: Role) -> NewUser {
    NewUser {
        tenant_id,
        email: email.into(),
        name: "Test User".into(),
        role,
        teams: vec!["cards".into()],
        max_concurrent: 3,
        password_hash: "$argon2id$fake".into(),
    }
}

fn customer_msg(c: &Conversation, text: &str, client: Option<Uuid>) -> NewMessage {
    NewMessage {
        tenant_id: c.tenant_id,
        conversation_id: c.id,
        sender: Sender::Customer,
        sender_id: None,
        text: text.into(),
        client_msg_id: client,
        intent: None,
        citations: vec![],
        quick_replies: vec![],
    }
}

async fn conversation(store: &Arc<dyn Store>, t: &Tenant) -> Conversation {
    store
        .create_conversation(NewConversation { tenant_id: t.id, locale: "ko".into(), customer: CustomerInfo::default() })
        .await
        .unwrap()
}

fn transition(c: &Conversation, from: &[ConversationStatus], to: ConversationStatus, agent: Option<Uuid>) -> Transition {
    Transition {
        tenant_id: c.tenant_id,
        conversation_id: c.id,
        from: from.to_vec(),
        to,
        agent_id: agent,
        team: None,
        actor: agent,
        kind: format!("conversation.{}", to.as_str()),
        data: serde_json::json!({}),
    }
}

pub async fn tenants_are_unique_by_slug(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
    let (a, created) = store.ensure_tenant("acme", "Acme", &TenantSettings::default()).await.unwrap();
    assert!(created);
    let (b, created) = store.ensure_tenant("acme", "Other name", &TenantSettings::default()).await.unwrap();
    assert!(!created);
    assert_eq!(a.id, b.id);
    assert_eq!(b.name, "Acme");
    assert!(store.tenant_by_slug("nope").await.unwrap().is_none());

    let mut settings = a.settings.clone();
    settings.allowed_origins = vec!["https://shop.example.com".into()];
    settings.dialog.direct = 0.9;
    let updated = store.update_tenant_settings(a.id, &settings).await.unwrap();
    assert_eq!(updated.settings, settings);
    assert_eq!(store.tenant(a.id).await.unwrap().unwrap().settings, settings);
    assert!(matches!(
        store.update_tenant_settings(Uuid::new_v4(), &settings).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn secrets_are_created_once(store: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.get_or_create_secret("jwt", &format!("candidate-{i}")).await.unwrap() })
        })
        .collect();
    let mut values = BTreeSet::new();
    for t in tasks {
        values.insert(t.await.unwrap());
    }
    assert_eq!(values.len(), 1, "every caller must see the same secret: {values:?}");
    let again = store.get_or_create_secret("jwt", "late").await.unwrap();
    assert!(values.contains(&again));
}

pub async fn users_crud_and_unique_email(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    let u = store.create_user(user(t.id, "Kim@Example.com", Role::Agent)).await.unwrap();
    assert_eq!(u.email, "kim@example.com");
    assert_eq!(u.teams, vec!["cards".to_string()]);
    let dup = store.create_user(user(t.id, "kim@example.COM", Role::Admin)).await;
    assert!(matches!(dup, Err(StoreError::Conflict { code: "user_exists", .. })), "{dup:?}");

    let found = store.user_by_email(t.id, "KIM@example.com").await.unwrap().unwrap();
    assert_eq!(found.id, u.id);
    assert_eq!(found.password_hash, "$argon2id$fake");

    let patched = store
        .update_user(t.id, u.id, UserPatch { role: Some(Role::Admin), max_concurrent: Some(7), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(patched.role, Role::Admin);
    assert_eq!(patched.max_concurrent, 7);
    assert_eq!(patched.name, "Test User", "fields not in the patch stay");

    store.create_user(user(t.id, "lee@example.com", Role::Agent)).await.unwrap();
    let emails: Vec<_> = store.list_users(t.id).await.unwrap().into_iter().map(|u| u.email).collect();
    assert_eq!(emails, ["kim@example.com", "lee@example.com"]);

    store.delete_user(t.id, u.id).await.unwrap();
    assert!(store.user(t.id, u.id).await.unwrap().is_none());
    assert!(matches!(store.delete_user(t.id, u.id).await, Err(StoreError::NotFound(_))));
}

pub async fn messages_get_consecutive_seqs(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    let c = conversation(&store, &t).await;
    assert_eq!(c.status, ConversationStatus::Bot);
    assert_eq!(c.last_seq, 0);
    for i in 1..=5 {
        let a = store.append_message(customer_msg(&c, &format!("안녕하세요 {i}"), None)).await.unwrap();
        assert!(a.created);
        assert_eq!(a.message.seq, i);
    }
    let bot = NewMessage {
        sender: Sender::Bot,
        citations: vec![Citation { article_id: "faq-1".into(), title: "Fees".into() }],
        quick_replies: vec!["Yes".into(), "No".into()],
        intent: Some("card_arrival".into()),
        ..customer_msg(&c, "Here you go [1]", None)
    };
    let b = store.append_message(bot).await.unwrap().message;
    assert_eq!(b.seq, 6);
    assert_eq!(b.citations[0].article_id, "faq-1");
    assert_eq!(b.quick_replies, ["Yes", "No"]);

    let all = store.list_messages(c.id, 0, 100).await.unwrap();
    assert_eq!(all.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6]);
    let page = store.list_messages(c.id, 2, 2).await.unwrap();
    assert_eq!(page.iter().map(|m| m.seq).collect::<Vec<_>>(), [3, 4]);
    assert!(store.list_messages(c.id, 6, 10).await.unwrap().is_empty());
    assert_eq!(store.conversation(t.id, c.id).await.unwrap().unwrap().last_seq, 6);
    assert_eq!(store.message(c.id, b.id).await.unwrap().unwrap().text, "Here you go [1]");

    let ghost = Conversation { id: Uuid::new_v4(), ..c.clone() };
    assert!(matches!(store.append_message(customer_msg(&ghost, "x", None)).await, Err(StoreError::NotFound(_))));
}

pub async fn client_msg_id_is_idempotent(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    let c = conversation(&store, &t).await;
    let id = Uuid::new_v4();
    let first = store.append_message(customer_msg(&c, "hello", Some(id))).await.unwrap();
    assert!(first.created);
    let again = store.append_message(customer_msg(&c, "hello", Some(id))).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.message.id, first.message.id);
    assert_eq!(again.message.seq, 1);
    let conflict = store.append_message(customer_msg(&c, "something else", Some(id))).await;
    assert!(matches!(conflict, Err(StoreError::IdempotencyConflict)), "{conflict:?}");
    // A replay consumes no seq and stores nothing.
    let next = store.append_message(customer_msg(&c, "next", Some(Uuid::new_v4()))).await.unwrap();
    assert_eq!(next.message.seq, 2);
    assert_eq!(store.list_messages(c.id, 0, 100).await.unwrap().len(), 2);
    // The same client id in another conversation is a different message.
    let other = conversation(&store, &t).await;
    assert!(store.append_message(customer_msg(&other, "hello", Some(id))).await.unwrap().created);
}

pub async fn concurrent_appends_have_no_gaps_or_duplicates(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    let c = conversation(&store, &t).await;
    const WRITERS: usize = 16;
    const EACH: usize = 10;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, c) = (store.clone(), c.clone());
            tokio::spawn(async move {
                for i in 0..EACH {
                    // Every third message is sent twice, as a client retrying after a lost ack.
                    let id = Uuid::new_v4();
                    let text = format!("writer {w} message {i}");
                    store.append_message(customer_msg(&c, &text, Some(id))).await.unwrap();
                    if i % 3 == 0 {
                        assert!(!store.append_message(customer_msg(&c, &text, Some(id))).await.unwrap().created);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let all = store.list_messages(c.id, 0, 10_000).await.unwrap();
    let seqs: Vec<i64> = all.iter().map(|m| m.seq).collect();
    let expected: Vec<i64> = (1..=(WRITERS * EACH) as i64).collect();
    assert_eq!(seqs, expected, "seqs must be exactly 1..=N");
    let texts: BTreeSet<_> = all.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts.len(), WRITERS * EACH, "no message lost or doubled");
}

pub async fn concurrent_retries_store_once(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    let c = conversation(&store, &t).await;
    for round in 0..5 {
        let id = Uuid::new_v4();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (store, c) = (store.clone(), c.clone());
                tokio::spawn(async move { store.append_message(customer_msg(&c, "same retry", Some(id))).await.unwrap() })
            })
            .collect();
        let mut created = 0;
        let mut seqs = BTreeSet::new();
        for task in tasks {
            let a = task.await.unwrap();
            created += a.created as usize;
            seqs.insert(a.message.seq);
        }
        assert_eq!(created, 1, "one of the racing retries stores it");
        assert_eq!(seqs.into_iter().collect::<Vec<_>>(), [round + 1], "all see the same message");
    }
    let next = store.append_message(customer_msg(&c, "after", None)).await.unwrap();
    assert_eq!(next.message.seq, 6, "no seq was lost to a retry");
}

pub async fn transitions_are_checked_and_audited(store: Arc<dyn Store>) {
    use ConversationStatus::*;
    let t = tenant(&store, "acme").await;
    let agent = store.create_user(user(t.id, "agent@example.com", Role::Agent)).await.unwrap();
    let c = conversation(&store, &t).await;

    let q = store.transition(transition(&c, &[Bot], Queued, None)).await.unwrap();
    assert_eq!(q.status, Queued);
    let a = store.transition(transition(&c, &[Queued], Assigned, Some(agent.id))).await.unwrap();
    assert_eq!((a.status, a.agent_id), (Assigned, Some(agent.id)));
    let bad = store.transition(transition(&c, &[Queued], Assigned, Some(agent.id))).await;
    assert!(matches!(bad, Err(StoreError::Conflict { code: "invalid_transition", .. })), "{bad:?}");
    let back = store.transition(transition(&c, &[Assigned], Bot, None)).await.unwrap();
    assert_eq!((back.status, back.agent_id), (Bot, None));
    store.transition(transition(&c, &[Bot, Queued, Assigned], Closed, None)).await.unwrap();
    let ghost = Conversation { id: Uuid::new_v4(), ..c.clone() };
    assert!(matches!(store.transition(transition(&ghost, &[Bot], Queued, None)).await, Err(StoreError::NotFound(_))));

    let kinds: Vec<String> = store.list_events(t.id, Some(c.id), 100).await.unwrap().into_iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        ["conversation.closed", "conversation.bot", "conversation.assigned", "conversation.queued", "conversation.created"]
    );
    let listed = store.list_conversations(t.id, Some(Closed), 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(store.list_conversations(t.id, Some(Queued), 10).await.unwrap().is_empty());
}

pub async fn concurrent_claims_have_one_winner(store: Arc<dyn Store>) {
    use ConversationStatus::*;
    let t = tenant(&store, "acme").await;
    let c = conversation(&store, &t).await;
    store.transition(transition(&c, &[Bot], Queued, None)).await.unwrap();
    let mut agents = Vec::new();
    for i in 0..8 {
        agents.push(store.create_user(user(t.id, &format!("agent{i}@example.com"), Role::Agent)).await.unwrap().id);
    }
    let tasks: Vec<_> = agents
        .iter()
        .map(|&agent| {
            let (store, c) = (store.clone(), c.clone());
            tokio::spawn(async move { store.transition(transition(&c, &[Queued], Assigned, Some(agent))).await })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(conv) => winners.push(conv.agent_id),
            Err(StoreError::Conflict { code: "invalid_transition", .. }) => {}
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one claim wins");
    let now = store.conversation(t.id, c.id).await.unwrap().unwrap();
    assert_eq!(now.agent_id, winners[0]);
}

pub async fn feedback_and_csat_are_kept(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    let c = conversation(&store, &t).await;
    let m = store.append_message(customer_msg(&c, "hi", None)).await.unwrap().message;
    let fb = |rating| NewFeedback {
        tenant_id: t.id,
        conversation_id: c.id,
        message_id: m.id,
        rating,
        comment: Some("ok".into()),
    };
    store.put_feedback(fb(Rating::Up)).await.unwrap();
    store.put_feedback(fb(Rating::Down)).await.unwrap();
    store.set_csat(t.id, c.id, 4).await.unwrap();
    assert_eq!(store.conversation(t.id, c.id).await.unwrap().unwrap().csat, Some(4));
    let kinds: Vec<String> = store.list_events(t.id, Some(c.id), 10).await.unwrap().into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds, ["conversation.csat", "message.feedback", "message.feedback", "conversation.created"]);
}

pub async fn tenants_are_isolated(store: Arc<dyn Store>) {
    let a = tenant(&store, "acme").await;
    let b = tenant(&store, "globex").await;
    let c = conversation(&store, &a).await;
    let u = store.create_user(user(a.id, "kim@example.com", Role::Agent)).await.unwrap();
    assert!(store.conversation(b.id, c.id).await.unwrap().is_none());
    assert!(store.list_conversations(b.id, None, 10).await.unwrap().is_empty());
    assert!(store.user(b.id, u.id).await.unwrap().is_none());
    assert!(store.user_by_email(b.id, "kim@example.com").await.unwrap().is_none());
    // Same e-mail in another tenant is a different user.
    store.create_user(user(b.id, "kim@example.com", Role::Admin)).await.unwrap();
    let other = NewMessage { tenant_id: b.id, ..customer_msg(&c, "sneaky", None) };
    assert!(matches!(store.append_message(other).await, Err(StoreError::NotFound(_))));
    let wrong = Transition { tenant_id: b.id, ..transition(&c, &[ConversationStatus::Bot], ConversationStatus::Queued, None) };
    assert!(matches!(store.transition(wrong).await, Err(StoreError::NotFound(_))));
}

pub async fn canned_responses_crud(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    let other = tenant(&store, "globex").await;
    let new = |title: &str| NewCanned { tenant_id: t.id, title: title.into(), text: "카드 배송은 5~7일 걸립니다.".into(), language: "ko".into() };
    let b = store.create_canned(new("배송")).await.unwrap();
    let a = store.create_canned(new("Apology")).await.unwrap();
    let titles: Vec<_> = store.list_canned(t.id).await.unwrap().into_iter().map(|c| c.title).collect();
    assert_eq!(titles, ["Apology", "배송"]);
    let edited = store.update_canned(a.id, NewCanned { text: "Sorry!".into(), language: "en".into(), ..new("Apology") }).await.unwrap();
    assert_eq!((edited.text.as_str(), edited.language.as_str()), ("Sorry!", "en"));
    let foreign = NewCanned { tenant_id: other.id, ..new("x") };
    assert!(matches!(store.update_canned(b.id, foreign).await, Err(StoreError::NotFound(_))), "another tenant's");
    assert!(matches!(store.delete_canned(other.id, b.id).await, Err(StoreError::NotFound(_))));
    store.delete_canned(t.id, b.id).await.unwrap();
    assert_eq!(store.list_canned(t.id).await.unwrap().len(), 1);
    assert!(store.list_canned(other.id).await.unwrap().is_empty());
}

pub async fn lifecycle_queries(store: Arc<dyn Store>) {
    use ConversationStatus::*;
    let t = tenant(&store, "acme").await;
    let agent = store.create_user(user(t.id, "agent@example.com", Role::Agent)).await.unwrap();
    let verified = CustomerInfo { user_id: Some("cust-1".into()), verified: true, ..Default::default() };
    let unverified = CustomerInfo { user_id: Some("cust-1".into()), verified: false, ..Default::default() };
    let mut ids = vec![];
    for customer in [verified.clone(), unverified, verified] {
        let c = store.create_conversation(NewConversation { tenant_id: t.id, locale: "en".into(), customer }).await.unwrap();
        ids.push(c.id);
    }
    let found: Vec<Uuid> = store.customer_conversations(t.id, "cust-1", 10).await.unwrap().into_iter().map(|c| c.id).collect();
    assert_eq!(found, [ids[2], ids[0]], "only verified ones, newest first");

    let c = store.conversation(t.id, ids[1]).await.unwrap().unwrap();
    store.transition(transition(&c, &[Bot], Queued, None)).await.unwrap();
    store.transition(transition(&c, &[Queued], Assigned, Some(agent.id))).await.unwrap();
    assert_eq!(store.agent_loads(t.id).await.unwrap(), vec![(agent.id, 1)]);

    let later = chrono::Utc::now() + chrono::Duration::seconds(5);
    let stale: Vec<Uuid> = store.stale_conversations(Bot, later, 10).await.unwrap().into_iter().map(|c| c.id).collect();
    assert_eq!(stale, [ids[0], ids[2]], "oldest first, bot only");
    let earlier = chrono::Utc::now() - chrono::Duration::seconds(60);
    assert!(store.stale_conversations(Bot, earlier, 10).await.unwrap().is_empty());
}

pub async fn intent_models_are_versioned_per_tenant(store: Arc<dyn Store>) {
    let (a, b) = (tenant(&store, "acme").await, tenant(&store, "other").await);
    assert!(store.latest_intent_model(a.id).await.unwrap().is_none());
    let new = |tenant_id, n: u8| NewIntentModel {
        tenant_id,
        encoder: "multilingual-e5-small".into(),
        meta: serde_json::json!({ "labels": ["card_arrival", "oos"], "n": n }),
        weights: vec![n; 1000],
    };
    // Concurrent saves get distinct, consecutive versions.
    let saves: Vec<_> = (1..=4u8)
        .map(|n| {
            let (store, m) = (store.clone(), new(a.id, n));
            tokio::spawn(async move { store.put_intent_model(m).await.unwrap().version })
        })
        .collect();
    let mut versions = vec![];
    for s in saves {
        versions.push(s.await.unwrap());
    }
    versions.sort();
    assert_eq!(versions, vec![1, 2, 3, 4]);
    let latest = store.latest_intent_model(a.id).await.unwrap().unwrap();
    assert_eq!(latest.version, 4);
    assert_eq!(latest.encoder, "multilingual-e5-small");
    assert_eq!(latest.weights.len(), 1000);
    assert_eq!(latest.meta["labels"][1], "oos");
    assert_eq!(latest.weights[0] as i64, latest.meta["n"].as_i64().unwrap(), "weights and meta of one save stay together");
    // Another tenant sees none of them, and gets its own numbering.
    assert!(store.latest_intent_model(b.id).await.unwrap().is_none());
    assert_eq!(store.put_intent_model(new(b.id, 9)).await.unwrap().version, 1);
}

fn example(text: &str, intent: &str, language: Option<&str>) -> intent_data::Example {
    intent_data::Example { text: text.into(), intent: intent.into(), language: language.map(str::to_string) }
}

pub async fn intent_examples_are_replaced_per_tenant(store: Arc<dyn Store>) {
    let (a, b) = (tenant(&store, "acme").await, tenant(&store, "other").await);
    assert!(store.intent_examples(a.id).await.unwrap().is_empty());
    // More rows than one insert statement holds; import order is kept.
    let many: Vec<_> = (0..1200).map(|i| example(&format!("message {i}"), if i % 2 == 0 { "even" } else { "odd" }, None)).collect();
    assert_eq!(store.replace_intent_examples(a.id, &many).await.unwrap(), 1200);
    assert_eq!(store.intent_examples(a.id).await.unwrap(), many);
    // A second import replaces the set, it does not add to it.
    let few = vec![example("카드가 안 와요", "card_arrival", Some("ko")), example("where is my card", "card_arrival", Some("en"))];
    assert_eq!(store.replace_intent_examples(a.id, &few).await.unwrap(), 2);
    assert_eq!(store.intent_examples(a.id).await.unwrap(), few);
    // Tenants are apart; an unknown tenant stores nothing.
    assert!(store.intent_examples(b.id).await.unwrap().is_empty());
    assert!(matches!(store.replace_intent_examples(Uuid::new_v4(), &few).await, Err(StoreError::NotFound(_))));
    assert_eq!(store.replace_intent_examples(a.id, &[]).await.unwrap(), 0);
    assert!(store.intent_examples(a.id).await.unwrap().is_empty());
    // Tenants with an intent model, for loading at start.
    assert!(store.intent_model_tenants().await.unwrap().is_empty());
    let m = NewIntentModel { tenant_id: b.id, encoder: "e".into(), meta: serde_json::json!({}), weights: vec![1] };
    store.put_intent_model(m.clone()).await.unwrap();
    store.put_intent_model(m).await.unwrap();
    assert_eq!(store.intent_model_tenants().await.unwrap(), vec![b.id]);
}

pub async fn jobs_one_active_per_tenant_and_final_states_stay(store: Arc<dyn Store>) {
    let (a, b) = (tenant(&store, "acme").await, tenant(&store, "other").await);
    let long_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    // Concurrent starts: exactly one wins, the others get job_in_progress.
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.create_job(a.id, "intent_training", long_ago).await })
        })
        .collect();
    let mut won = vec![];
    for s in starts {
        match s.await.unwrap() {
            Ok(job) => won.push(job),
            Err(StoreError::Conflict { code, .. }) => assert_eq!(code, "job_in_progress"),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(won.len(), 1, "one active job per tenant and kind");
    let job = won.remove(0);
    assert_eq!((job.state, job.progress, job.kind.as_str()), (JobState::Queued, 0.0, "intent_training"));
    // Another tenant, or another kind, is not blocked.
    let other = store.create_job(b.id, "intent_training", long_ago).await.unwrap();
    store.create_job(a.id, "something_else", long_ago).await.unwrap();
    // Each tenant sees only its own jobs.
    assert_eq!(store.job(a.id, job.id).await.unwrap().unwrap().id, job.id);
    assert!(store.job(b.id, job.id).await.unwrap().is_none());
    assert!(store.job(a.id, Uuid::new_v4()).await.unwrap().is_none());
    let running = |progress| JobUpdate { state: JobState::Running, progress, metrics: None, error: None };
    let j = store.update_job(job.id, running(0.42)).await.unwrap();
    assert_eq!((j.state, j.progress), (JobState::Running, 0.42));
    assert!(j.updated_at >= job.updated_at);
    let metrics = serde_json::json!({ "accuracy": 0.9, "macro_f1": 0.88 });
    let done = JobUpdate { state: JobState::Succeeded, progress: 1.0, metrics: Some(metrics.clone()), error: None };
    let j = store.update_job(job.id, done).await.unwrap();
    assert_eq!((j.state, j.progress, j.metrics.as_ref()), (JobState::Succeeded, 1.0, Some(&metrics)));
    // A finished job never changes again (a late progress write is refused).
    match store.update_job(job.id, running(0.5)).await {
        Err(StoreError::Conflict { code, .. }) => assert_eq!(code, "job_finished"),
        other => panic!("{other:?}"),
    }
    let j = store.job(a.id, job.id).await.unwrap().unwrap();
    assert_eq!((j.state, j.metrics), (JobState::Succeeded, Some(metrics)));
    assert!(matches!(store.update_job(Uuid::new_v4(), running(0.1)).await, Err(StoreError::NotFound(_))));
    // The slot is free again once the job finished.
    let next = store.create_job(a.id, "intent_training", long_ago).await.unwrap();
    assert_ne!(next.id, job.id);
    // An active job not updated since `stale_before` is abandoned, not a blocker.
    let later = chrono::Utc::now() + chrono::Duration::seconds(1);
    let fresh = store.create_job(b.id, "intent_training", later).await.unwrap();
    let old = store.job(b.id, other.id).await.unwrap().unwrap();
    assert_eq!(old.state, JobState::Failed);
    assert!(old.error.unwrap().contains("abandoned"));
    assert_eq!(store.job(b.id, fresh.id).await.unwrap().unwrap().state, JobState::Queued);
    let failed = JobUpdate { state: JobState::Failed, progress: 0.3, metrics: None, error: Some("boom".into()) };
    let j = store.update_job(fresh.id, failed).await.unwrap();
    assert_eq!((j.state, j.error.as_deref(), j.metrics), (JobState::Failed, Some("boom"), None));
}

fn article(id: &str, question: &str) -> kb::Article {
    kb::Article {
        id: id.into(),
        intent: Some("lost_or_stolen_card".into()),
        language: "en".into(),
        question: question.into(),
        answer: "Freeze it in the app.".into(),
        tags: vec!["card".into(), "security".into()],
    }
}

pub async fn kb_versions_are_immutable_and_published_per_tenant(store: Arc<dyn Store>) {
    let (a, b) = (tenant(&store, "acme").await, tenant(&store, "other").await);
    assert!(store.kb_versions(a.id).await.unwrap().is_empty());
    assert_eq!(store.kb_live_version(a.id).await.unwrap(), None);

    // 1,200 articles: more than one insert batch, all in one version.
    let many: Vec<_> = (0..1200).map(|i| article(&format!("a{i:04}"), &format!("question {i}"))).collect();
    let v1 = store.create_kb_version(a.id, None, "import:replace", &many).await.unwrap();
    assert_eq!((v1.version, v1.article_count, v1.live), (1, 1200, false));
    let v2 = store.create_kb_version(a.id, Some(1), "edit", &many[..2]).await.unwrap();
    assert_eq!((v2.version, v2.parent), (2, Some(1)));

    let got = store.kb_articles(a.id, 1).await.unwrap();
    assert_eq!(got.len(), 1200);
    assert_eq!(got[0], many[0], "every field round-trips");
    assert_eq!(store.kb_articles(a.id, 2).await.unwrap().len(), 2, "a later version leaves the earlier one alone");

    // Publishing moves the live pointer; rollback publishes an older version.
    assert!(store.publish_kb_version(a.id, 2).await.unwrap().live);
    assert_eq!(store.kb_live_version(a.id).await.unwrap(), Some(2));
    let back = store.publish_kb_version(a.id, 1).await.unwrap();
    assert!(back.live && back.published_at.is_some());
    let versions = store.kb_versions(a.id).await.unwrap();
    assert_eq!(versions.iter().map(|v| (v.version, v.live)).collect::<Vec<_>>(), vec![(2, false), (1, true)]);
    assert!(matches!(store.publish_kb_version(a.id, 9).await, Err(StoreError::NotFound(_))));

    // A version with two articles of one id is refused whole.
    let dup = [article("same", "one"), article("same", "two")];
    assert!(matches!(store.create_kb_version(a.id, None, "import:replace", &dup).await, Err(StoreError::Conflict { .. })));
    assert_eq!(store.kb_versions(a.id).await.unwrap().len(), 2, "nothing half-written");

    // Another tenant sees none of it.
    assert!(store.kb_versions(b.id).await.unwrap().is_empty());
    assert!(store.kb_articles(b.id, 1).await.unwrap().is_empty());
    assert!(matches!(store.publish_kb_version(b.id, 1).await, Err(StoreError::NotFound(_))));
}

pub async fn kb_concurrent_imports_get_distinct_versions(store: Arc<dyn Store>) {
    let a = tenant(&store, "acme").await;
    let writes: Vec<_> = (0..4)
        .map(|i| {
            let store = store.clone();
            let articles = vec![article(&format!("w{i}"), "q")];
            tokio::spawn(async move { store.create_kb_version(a.id, None, "import:replace", &articles).await.unwrap() })
        })
        .collect();
    let mut seen = vec![];
    for w in writes {
        let v = w.await.unwrap();
        let articles = store.kb_articles(a.id, v.version).await.unwrap();
        assert_eq!(articles.len(), 1);
        seen.push(v.version);
    }
    seen.sort();
    assert_eq!(seen, vec![1, 2, 3, 4]);
}

pub async fn kb_adapters_are_versioned_per_tenant(store: Arc<dyn Store>) {
    let (a, b) = (tenant(&store, "acme").await, tenant(&store, "other").await);
    assert!(store.latest_kb_adapter(a.id).await.unwrap().is_none());
    let new = |tenant_id, n: u8| kb::NewAdapter {
        tenant_id,
        kb_version: Some(n as i64),
        encoder: "multilingual-e5-small".into(),
        meta: serde_json::json!({ "dim": 384, "n": n }),
        weights: vec![n; 64],
    };
    assert_eq!(store.put_kb_adapter(new(a.id, 1)).await.unwrap().version, 1);
    assert_eq!(store.put_kb_adapter(new(a.id, 2)).await.unwrap().version, 2);
    let latest = store.latest_kb_adapter(a.id).await.unwrap().unwrap();
    assert_eq!((latest.version, latest.kb_version, latest.weights[0]), (2, Some(2), 2));
    assert_eq!(latest.meta["n"], 2);
    assert!(store.latest_kb_adapter(b.id).await.unwrap().is_none());
}

pub async fn analytics_reads_by_time_and_kind(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    let other = tenant(&store, "other").await;
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    let a = conversation(&store, &t).await;
    let b = conversation(&store, &t).await;
    conversation(&store, &other).await;
    let after = chrono::Utc::now() + chrono::Duration::seconds(1);
    for (c, kind) in [(a.id, "bot.turn"), (b.id, "bot.turn"), (a.id, "other.kind")] {
        let ev = NewEvent { tenant_id: t.id, conversation_id: Some(c), actor: None, kind: kind.into(), data: serde_json::json!({}) };
        store.record_event(ev).await.unwrap();
    }
    let convs = store.conversations_created(t.id, before, after, 100).await.unwrap();
    assert_eq!(convs.iter().map(|c| c.id).collect::<Vec<_>>(), [a.id, b.id], "oldest first, this tenant only");
    assert!(store.conversations_created(t.id, after, after + chrono::Duration::hours(1), 100).await.unwrap().is_empty());
    let turns = store.events_between(t.id, &["bot.turn"], before, after, 100).await.unwrap();
    assert_eq!(turns.iter().map(|e| e.conversation_id.unwrap()).collect::<Vec<_>>(), [a.id, b.id]);
    let both = store.events_between(t.id, &["bot.turn", "conversation.created"], before, after, 100).await.unwrap();
    assert_eq!(both.len(), 4, "two turns and two creations");
    assert_eq!(store.events_between(t.id, &["bot.turn"], before, after, 1).await.unwrap().len(), 1, "limit holds");
    assert!(store.events_between(t.id, &[], before, after, 100).await.unwrap().is_empty());
}
