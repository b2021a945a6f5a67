//! The knowledge base through the API: import (CSV, JSON), drafts and
//! versions, publish and rollback, edits, search, tenant isolation and
//! publish atomicity under concurrent searches. BM25 only here (test servers
//! run without an embedder); cli.rs checks hybrid search on the real model.

use aicc_tests::TestApp;
use serde_json::{json, Value};

crate::on_both_backends!(
    import_drafts_publish_and_rollback,
    bad_imports_are_rejected_whole,
    articles_are_edited_in_new_drafts,
    knowledge_is_per_tenant_and_search_needs_staff,
    search_treats_any_text_as_text,
    publish_is_atomic_under_concurrent_searches,
);

const FAQ: &str = "id,intent,language,question,answer,tags
lost-en,lost_or_stolen_card,en,I lost my card. What should I do?,Freeze it in the app under Cards.,card;security
lost-ko,lost_or_stolen_card,ko,카드를 잃어버렸어요. 어떻게 해야 하나요?,앱의 카드 메뉴에서 바로 정지해 주세요.,카드
fee-en,transfer_fee_charged,en,\"What does a transfer abroad cost?\",\"International transfers cost 1%,
with a minimum of 2,000 won.\",fees
";

async fn import(app: &TestApp, token: &str, query: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
    app.post_raw(&format!("/v1/admin/kb/import{query}"), Some(token), content_type, body.to_vec()).await
}

async fn search(app: &TestApp, token: &str, q: &str, extra: &str) -> (u16, Value) {
    let url = reqwest::Url::parse_with_params(&app.at("/v1/kb/search"), &[("q", q)]).unwrap();
    app.get(&format!("{}?{}{extra}", url.path(), url.query().unwrap()), Some(token)).await
}

fn ids(hits: &Value) -> Vec<String> {
    hits["hits"].as_array().unwrap().iter().map(|h| h["article_id"].as_str().unwrap().to_string()).collect()
}

async fn import_drafts_publish_and_rollback(app: TestApp) {
    let admin = app.login("acme", "admin@acme.test").await;
    let agent = app.login("acme", "agent@acme.test").await;
    let (s, v1) = import(&app, &admin, "", "text/csv", FAQ.as_bytes()).await;
    assert_eq!(s, 201, "{v1}");
    assert_eq!(v1, json!({ "version": 1, "imported": 3 }));

    // A draft is not live, but can be searched by its number.
    let (s, live) = search(&app, &agent, "lost card", "").await;
    assert_eq!((s, live["hits"].as_array().unwrap().len()), (200, 0), "{live}");
    let (_, draft) = search(&app, &agent, "lost card", "&version=1").await;
    assert_eq!(ids(&draft)[0], "lost-en");
    let hit = &draft["hits"][0];
    assert_eq!(hit["retrievers"], json!(["bm25"]));
    assert!(hit["score"].as_f64().unwrap() > 0.0 && hit["score"].as_f64().unwrap() <= 1.0);
    assert_eq!(hit["score"], hit["scores"]["hybrid"]);
    assert!(hit["answer"].as_str().unwrap().contains("Freeze"));

    let (s, published) = app.post_json("/v1/admin/kb/versions/1/publish", Some(&admin), json!({})).await;
    assert_eq!((s, published["live"].clone()), (200, json!(true)), "{published}");
    let (_, found) = search(&app, &agent, "카드를 잃어버렸어요", "").await;
    assert_eq!(ids(&found)[0], "lost-ko");
    // The quoted newline and comma survived.
    let (_, fee) = search(&app, &agent, "transfer abroad", "").await;
    assert!(fee["hits"][0]["answer"].as_str().unwrap().contains("1%,\nwith a minimum"));

    // JSON merge: replaces one article, adds one, keeps the rest.
    let merge = json!([
        { "id": "lost-en", "intent": "lost_or_stolen_card", "language": "en", "question": "My card is gone, help!", "answer": "Call 1566-0770.", "tags": ["card"] },
        { "question": "Can I change my PIN?", "answer": "Yes, under Cards > PIN.", "tags": "pin" }
    ]);
    let (s, v2) = import(&app, &admin, "?mode=merge", "application/json", merge.to_string().as_bytes()).await;
    assert_eq!((s, v2["version"].clone(), v2["imported"].clone()), (201, json!(2), json!(4)), "{v2}");
    let (_, pin) = search(&app, &agent, "change PIN", "&version=2").await;
    let pin_id = ids(&pin)[0].clone();
    assert!(pin_id.starts_with("faq-"), "a derived, stable id: {pin_id}");
    let (_, a) = app.get(&format!("/v1/admin/kb/articles/{pin_id}?version=2"), Some(&admin)).await;
    assert_eq!(a["language"], "en", "detected: {a}");

    // Publish 2, then roll back to 1.
    app.post_json("/v1/admin/kb/versions/2/publish", Some(&admin), json!({})).await;
    assert_eq!(ids(&search(&app, &agent, "change PIN", "").await.1)[0], pin_id);
    let (s, _) = app.post_json("/v1/admin/kb/versions/1/publish", Some(&admin), json!({})).await;
    assert_eq!(s, 200);
    assert!(!ids(&search(&app, &agent, "change PIN", "").await.1).contains(&pin_id), "rolled back");

    let (_, versions) = app.get("/v1/admin/kb/versions", Some(&admin)).await;
    let v: Vec<(i64, bool)> =
        versions["versions"].as_array().unwrap().iter().map(|v| (v["version"].as_i64().unwrap(), v["live"].as_bool().unwrap())).collect();
    assert_eq!(v, vec![(2, false), (1, true)]);
    assert_eq!(versions["versions"][0]["source"], "import:merge");
    assert_eq!(versions["versions"][0]["parent"], 1);

    let (s, e) = app.post_json("/v1/admin/kb/versions/9/publish", Some(&admin), json!({})).await;
    assert_eq!((s, e["error"]["code"].clone()), (404, json!("not_found")));
}

async fn bad_imports_are_rejected_whole(app: TestApp) {
    let admin = app.login("acme", "admin@acme.test").await;
    let bad = "question,answer,language\nGood one?,Fine.,en\n,No question here.,en\nAnother?,,en\n";
    let (s, e) = import(&app, &admin, "", "text/csv", bad.as_bytes()).await;
    assert_eq!((s, e["error"]["code"].clone()), (422, json!("invalid_import")), "{e}");
    let lines: Vec<i64> = e["error"]["details"].as_array().unwrap().iter().map(|d| d["line"].as_i64().unwrap()).collect();
    assert_eq!(lines, vec![3, 4], "{e}");
    // A zip that is no spreadsheet, a PNG, an empty body, a bad mode.
    let (s, e) = import(&app, &admin, "", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", b"PK\x03\x04garbage").await;
    assert_eq!((s, e["error"]["code"].clone()), (415, json!("unsupported_format")), "{e}");
    let (s, _) = import(&app, &admin, "", "image/png", b"\x89PNG\r\n").await;
    assert_eq!(s, 415);
    let (s, _) = import(&app, &admin, "", "text/csv", b"").await;
    assert_eq!(s, 422);
    let (s, _) = import(&app, &admin, "?mode=append", "text/csv", FAQ.as_bytes()).await;
    assert_eq!(s, 400);
    // Over the import limit: 413 before anything is parsed.
    let huge = vec![b'a'; app.settings.limits.import_bytes + 1];
    let (s, e) = import(&app, &admin, "", "text/csv", &huge).await;
    assert_eq!((s, e["error"]["code"].clone()), (413, json!("payload_too_large")));
    // Nothing of it was stored.
    let (_, versions) = app.get("/v1/admin/kb/versions", Some(&admin)).await;
    assert_eq!(versions["versions"], json!([]));
}

async fn articles_are_edited_in_new_drafts(app: TestApp) {
    let admin = app.login("acme", "admin@acme.test").await;
    import(&app, &admin, "", "text/csv", FAQ.as_bytes()).await;
    app.post_json("/v1/admin/kb/versions/1/publish", Some(&admin), json!({})).await;

    let body = json!({ "intent": "lost_or_stolen_card", "question": "I lost my card abroad", "answer": "Freeze it, then call +82-2-3449-0770.", "tags": ["card"] });
    let (s, edited) = app.put_json("/v1/admin/kb/articles/lost-en", &admin, body).await;
    assert_eq!((s, edited["version"]["version"].clone(), edited["version"]["source"].clone()), (201, json!(2), json!("edit")), "{edited}");
    let (_, old) = app.get("/v1/admin/kb/articles/lost-en", Some(&admin)).await;
    assert_eq!(old["question"], "I lost my card. What should I do?", "the live version is untouched");
    let (_, new) = app.get("/v1/admin/kb/articles/lost-en?version=2", Some(&admin)).await;
    assert_eq!((new["question"].clone(), new["language"].clone()), (json!("I lost my card abroad"), json!("en")));

    let (s, e) = app.put_json("/v1/admin/kb/articles/lost-en", &admin, json!({ "question": " ", "answer": "x" })).await;
    assert_eq!(s, 422, "{e}");
    let resp = app.client.delete(app.at("/v1/admin/kb/articles/fee-en?version=2")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(resp.status(), 201);
    let v3: Value = resp.json().await.unwrap();
    assert_eq!((v3["version"]["article_count"].clone(), v3["version"]["parent"].clone()), (json!(2), json!(2)));
    let resp = app.client.delete(app.at("/v1/admin/kb/articles/nope")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let (s, _) = app.get("/v1/admin/kb/articles/fee-en?version=3", Some(&admin)).await;
    assert_eq!(s, 404);
}

async fn knowledge_is_per_tenant_and_search_needs_staff(app: TestApp) {
    let admin = app.login("acme", "admin@acme.test").await;
    let agent = app.login("acme", "agent@acme.test").await;
    let other = app.login("globex", "agent@globex.test").await;
    import(&app, &admin, "", "text/csv", FAQ.as_bytes()).await;
    app.post_json("/v1/admin/kb/versions/1/publish", Some(&admin), json!({})).await;
    assert_eq!(ids(&search(&app, &agent, "lost card", "").await.1)[0], "lost-en");
    // Another tenant sees nothing: not live, not by version number.
    assert_eq!(search(&app, &other, "lost card", "").await.1["hits"], json!([]));
    let (s, _) = search(&app, &other, "lost card", "&version=1").await;
    assert_eq!(s, 404);
    // Agents search but do not import; customers and strangers do neither.
    let (s, _) = import(&app, &agent, "", "text/csv", FAQ.as_bytes()).await;
    assert_eq!(s, 403);
    let (_, customer) = app.new_conversation("acme").await;
    assert_eq!(search(&app, &customer, "lost card", "").await.0, 403);
    assert_eq!(app.get("/v1/kb/search?q=card", None).await.0, 401);
}

async fn search_treats_any_text_as_text(app: TestApp) {
    let admin = app.login("acme", "admin@acme.test").await;
    import(&app, &admin, "", "text/csv", FAQ.as_bytes()).await;
    app.post_json("/v1/admin/kb/versions/1/publish", Some(&admin), json!({})).await;
    for q in ["\"lost card", "card:lost", "(lost", "lost*", "card~", "AND", "🙂🙂", "?!", &"lost card ".repeat(1000)] {
        let (s, body) = search(&app, &admin, q, "").await;
        assert_eq!(s, 200, "{q}: {body}");
    }
    assert_eq!(ids(&search(&app, &admin, "card:lost~ (\"help\")", "").await.1)[0], "lost-en");
    let (s, e) = search(&app, &admin, "   ", "").await;
    assert_eq!((s, e["error"]["code"].clone()), (400, json!("invalid_query")));
    assert_eq!(search(&app, &admin, "card", "&k=0").await.0, 400);
    assert_eq!(search(&app, &admin, "card", "&k=1000").await.0, 400);
    assert_eq!(search(&app, &admin, "card", "&k=1").await.1["hits"].as_array().unwrap().len(), 1);
    assert_eq!(app.get("/v1/kb/search", Some(&admin)).await.0, 400, "q is required");
}

async fn publish_is_atomic_under_concurrent_searches(app: TestApp) {
    let admin = app.login("acme", "admin@acme.test").await;
    // Two versions of 40 articles each; every article of a version carries its marker word.
    for marker in ["alpha", "beta"] {
        let mut csv = String::from("id,language,question,answer\n");
        for i in 0..40 {
            csv.push_str(&format!("{marker}-{i},en,How do I use the {marker} card feature {i}?,The {marker} answer {i}.\n"));
        }
        import(&app, &admin, "", "text/csv", csv.as_bytes()).await;
    }
    app.post_json("/v1/admin/kb/versions/1/publish", Some(&admin), json!({})).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let searchers: Vec<_> = (0..4)
        .map(|_| {
            let (url, token, stop) = (app.at("/v1/kb/search?q=card%20feature%20alpha%20beta&k=20"), admin.clone(), stop.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut seen = std::collections::BTreeSet::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let resp = client.get(&url).bearer_auth(&token).send().await.unwrap();
                    assert_eq!(resp.status(), 200);
                    let body: Value = resp.json().await.unwrap();
                    let markers: std::collections::BTreeSet<String> =
                        ids(&body).iter().map(|id| id.split('-').next().unwrap().to_string()).collect();
                    assert_eq!(markers.len(), 1, "one version per answer, never a mix: {markers:?}");
                    assert_eq!(ids(&body).len(), 20);
                    seen.extend(markers);
                }
                seen
            })
        })
        .collect();
    for round in 0..12 {
        let v = if round % 2 == 0 { 2 } else { 1 };
        let (s, _) = app.post_json(&format!("/v1/admin/kb/versions/{v}/publish"), Some(&admin), json!({})).await;
        assert_eq!(s, 200);
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut all = std::collections::BTreeSet::new();
    for s in searchers {
        all.extend(s.await.unwrap());
    }
    assert_eq!(all.len(), 2, "searches saw both versions: {all:?}");
}

/// Words hashed into 64 dimensions: texts that share no word are unrelated,
/// so only a trained adapter can connect a message to its article.
struct HashingEmbedder;

#[async_trait::async_trait]
impl aicc_core::Embedder for HashingEmbedder {
    fn name(&self) -> &str {
        "hashing"
    }
    fn dim(&self) -> usize {
        64
    }
    async fn embed(&self, texts: Vec<String>, _: aicc_core::EmbedKind) -> Result<Vec<Vec<f32>>, aicc_core::ModelError> {
        Ok(texts
            .iter()
            .map(|t| {
                let mut v = vec![0f32; 64];
                for w in t.to_lowercase().split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
                    let h = w.bytes().fold(1469598103934665603u64, |h, b| (h ^ b as u64).wrapping_mul(1099511628211));
                    v[(h % 64) as usize] += 1.0;
                    v[((h >> 8) % 64) as usize] -= 0.5;
                }
                let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
                v.into_iter().map(|x| x / n).collect()
            })
            .collect())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trained_adapter_is_stored_and_used_by_every_replica() {
    let app = aicc_tests::spawn_app(aicc_tests::Backend::Sqlite).await;
    let admin = app.login("acme", "admin@acme.test").await;
    import(&app, &admin, "", "text/csv", FAQ.as_bytes()).await;
    app.post_json("/v1/admin/kb/versions/1/publish", Some(&admin), json!({})).await;
    app.kb.set_embedder(std::sync::Arc::new(HashingEmbedder));
    let tenant = app.tenant_id("acme").await;
    // Messages in a vocabulary the articles never use.
    let mut messages = Vec::new();
    for i in 0..30 {
        messages.push((format!("zorp blip number{i}"), "lost_or_stolen_card".to_string()));
        messages.push((format!("quux frob number{i}"), "transfer_fee_charged".to_string()));
    }
    let rec = app.kb.train_adapter(tenant, &messages, &|_, _, _| {}).await.unwrap();
    assert_eq!((rec.version, rec.kb_version, rec.encoder.as_str()), (1, Some(1), "hashing"));
    let agent = app.login("acme", "agent@acme.test").await;
    let (_, hits) = search(&app, &agent, "zorp blip number99", "").await;
    assert!(ids(&hits)[0].starts_with("lost-"), "{hits}");
    assert!(hits["hits"][0]["retrievers"].as_array().unwrap().contains(&json!("dense")));
    let (_, hits) = search(&app, &agent, "quux frob number77", "").await;
    assert_eq!(ids(&hits)[0], "fee-en", "{hits}");

    // Another replica on the same store loads it from there.
    let other = aicc_tests::knowledge_base(&app.store, &app.bus);
    other.set_embedder(std::sync::Arc::new(HashingEmbedder));
    let hits = aicc_core::KnowledgeIndex::search(&other, tenant, &aicc_core::KbQuery { text: "quux frob number77".into(), k: 3, version: None })
        .await
        .unwrap();
    let index = other.live_index(tenant).await.unwrap().unwrap();
    assert!(index.adapter().is_some(), "the stored adapter is loaded");
    assert_eq!(hits[0].article_id, "fee-en", "{hits:?}");
    // Too few usable messages is a clear error, and nothing is stored.
    let few = vec![("zorp".to_string(), "no_such_intent".to_string()); 50];
    assert!(matches!(app.kb.train_adapter(tenant, &few, &|_, _, _| {}).await, Err(aicc_core::KbError::Invalid(_))));
    assert_eq!(app.store.latest_kb_adapter(tenant).await.unwrap().unwrap().version, 1);
}
