//! Intents (admin): importing examples, training as a background job, and
//! following the job. A fake trainer covers the job's life (progress, 409,
//! the classifier installed); one run trains for real on E5.

use std::sync::Arc;
use std::time::Duration;

use aicc_core::intent_data::Example;
use aicc_core::{IntentClassifier, IntentPrediction, IntentTrainer, JobState, ModelError, TrainProgress, TrainedIntents};
use aicc_tests::{code, Backend, TestApp};
use serde_json::Value;
use uuid::Uuid;

crate::on_both_backends!(import_validates_and_replaces, roles_tenants_and_missing_parts, a_job_runs_to_its_end_once_at_a_time);

/// 4 intents × 8 examples, Korean and English.
const GOOD: &str = "text,intent,language
Where is my new card?,card_arrival,en
My card still hasn't arrived,card_arrival,en
When will my card be delivered?,card_arrival,en
How long does card delivery take?,card_arrival,en
카드가 아직 안 왔어요,card_arrival,ko
카드 배송은 얼마나 걸리나요?,card_arrival,ko
새 카드가 언제 도착하나요?,card_arrival,ko
카드를 아직 못 받았어요,card_arrival,ko
I lost my card,lost_or_stolen_card,en
Someone stole my card,lost_or_stolen_card,en
My wallet was stolen with my card in it,lost_or_stolen_card,en
I can't find my card anywhere,lost_or_stolen_card,en
카드를 잃어버렸어요,lost_or_stolen_card,ko
카드를 도난당했어요,lost_or_stolen_card,ko
지갑이랑 카드를 잃어버렸어요,lost_or_stolen_card,ko
카드 분실 신고하고 싶어요,lost_or_stolen_card,ko
How do I change my password?,change_password,en
I forgot my password,change_password,en
Reset my login password please,change_password,en
I want a new password for the app,change_password,en
비밀번호를 바꾸고 싶어요,change_password,ko
비밀번호를 잊어버렸어요,change_password,ko
로그인 비밀번호 재설정 방법,change_password,ko
앱 비밀번호를 변경하려면 어떻게 하나요?,change_password,ko
What is the exchange rate today?,exchange_rate,en
How much is a dollar in won?,exchange_rate,en
What rate do you use to convert currency?,exchange_rate,en
Is the exchange rate fixed?,exchange_rate,en
오늘 환율이 어떻게 되나요?,exchange_rate,ko
달러 환율 알려주세요,exchange_rate,ko
환전할 때 어떤 환율을 적용하나요?,exchange_rate,ko
엔화 환율이 얼마예요?,exchange_rate,ko
";

async fn import(app: &TestApp, token: &str, csv: &str) -> (u16, Value) {
    app.post_raw("/v1/admin/intents/import", Some(token), "text/csv; charset=utf-8", csv.as_bytes().to_vec()).await
}

async fn import_validates_and_replaces(app: TestApp) {
    let admin = app.login("acme", "admin@acme.test").await;
    let tenant = app.tenant_id("acme").await;
    let (s, b) = import(&app, &admin, GOOD).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!((b["imported"].as_u64(), b["intents"].as_u64()), (Some(32), Some(4)), "{b}");
    assert_eq!(app.store.intent_examples(tenant).await.unwrap()[4].text, "카드가 아직 안 왔어요");

    // Every problem with its line, and the stored set untouched.
    let bad = "text,intent\nhello,greet\n  ,greet\nhi,\nhey,greet\nbye now,bye\nbye now,greet\n";
    let (s, b) = import(&app, &admin, bad).await;
    assert_eq!((s, code(&b)), (422, "invalid_import"), "{b}");
    let details = b["error"]["details"].as_array().unwrap();
    let at = |line: u64, needle: &str| details.iter().any(|d| d["line"] == line && d["message"].as_str().unwrap().contains(needle));
    assert!(at(3, "empty text") && at(4, "empty intent") && at(7, "another intent"), "{b}");
    assert!(at(6, "`bye` has only 1 example"), "{b}");
    assert_eq!(app.store.intent_examples(tenant).await.unwrap().len(), 32, "nothing stored from a bad file");
    // A missing column, an empty body, one intent only: 422, with lines (0: the whole file).
    let (s, b) = import(&app, &admin, "utterance,label\nhi,greet\n").await;
    assert_eq!((s, code(&b), b["error"]["details"][0]["line"].as_u64()), (422, "invalid_import", Some(1)), "{b}");
    let (s, b) = import(&app, &admin, "").await;
    assert_eq!((s, code(&b), b["error"]["details"][0]["line"].as_u64()), (422, "invalid_import", Some(0)), "{b}");
    let (s, b) = import(&app, &admin, "text,intent\na,x\nb,x\n").await;
    assert!(s == 422 && b["error"]["details"][0]["message"].as_str().unwrap().contains("only 1 intent"), "{b}");
    // Not CSV: 415; over the import limit: 413. Nothing stored either way.
    let (s, b) = app.post_raw("/v1/admin/intents/import", Some(&admin), "application/json", b"{}".to_vec()).await;
    assert_eq!((s, code(&b)), (415, "unsupported_media_type"), "{b}");
    let huge = vec![b'a'; app.settings.limits.import_bytes + 1];
    let (s, b) = app.post_raw("/v1/admin/intents/import", Some(&admin), "text/csv", huge).await;
    assert_eq!((s, code(&b)), (413, "payload_too_large"), "{b}");
    assert_eq!(app.store.intent_examples(tenant).await.unwrap().len(), 32);

    // A good file replaces the whole set.
    let (s, b) = import(&app, &admin, "intent,text\nyes,yes please\nyes,sure\nno,no thanks\nno,nope\n").await;
    assert_eq!((s, b["imported"].as_u64(), b["intents"].as_u64()), (201, Some(4), Some(2)), "{b}");
    let stored = app.store.intent_examples(tenant).await.unwrap();
    assert_eq!(stored.iter().map(|e| e.text.as_str()).collect::<Vec<_>>(), ["yes please", "sure", "no thanks", "nope"]);
}

async fn roles_tenants_and_missing_parts(app: TestApp) {
    let admin = app.login("acme", "admin@acme.test").await;
    let agent = app.login("acme", "agent@acme.test").await;
    // Agents are refused everywhere.
    let (s, b) = import(&app, &agent, GOOD).await;
    assert_eq!((s, code(&b)), (403, "forbidden"), "{b}");
    let (s, _) = app.post_json("/v1/admin/intents/train", Some(&agent), Value::Null).await;
    assert_eq!(s, 403);
    let (s, _) = app.get(&format!("/v1/admin/jobs/{}", Uuid::new_v4()), Some(&agent)).await;
    assert_eq!(s, 403);
    let (s, _) = app.post_json("/v1/admin/intents/train", None, Value::Null).await;
    assert_eq!(s, 401);

    // Nothing imported yet: 422 no_examples.
    let (s, b) = app.post_json("/v1/admin/intents/train", Some(&admin), Value::Null).await;
    assert_eq!((s, code(&b)), (422, "no_examples"), "{b}");
    // Examples but no trainer (the embedder is not loaded here): 503.
    assert_eq!(import(&app, &admin, GOOD).await.0, 201);
    let (s, b) = app.post_json("/v1/admin/intents/train", Some(&admin), Value::Null).await;
    assert_eq!((s, code(&b)), (503, "model_unavailable"), "{b}");

    // Another tenant's job, an unknown one: 404; not a UUID: 400.
    let globex = app.tenant_id("globex").await;
    let theirs = app.store.create_job(globex, "intent_training", chrono::Utc::now()).await.unwrap();
    let (s, b) = app.get(&format!("/v1/admin/jobs/{}", theirs.id), Some(&admin)).await;
    assert_eq!((s, code(&b)), (404, "not_found"), "{b}");
    let (s, _) = app.get(&format!("/v1/admin/jobs/{}", Uuid::new_v4()), Some(&admin)).await;
    assert_eq!(s, 404);
    let (s, _) = app.get("/v1/admin/jobs/not-a-uuid", Some(&admin)).await;
    assert_eq!(s, 400);

    // The routes are in the OpenAPI document (the admin console looks there).
    let (_, doc) = app.get("/v1/openapi.json", None).await;
    for path in ["/v1/admin/intents/import", "/v1/admin/intents/train", "/v1/admin/jobs/{id}"] {
        assert!(doc["paths"][path].is_object(), "{path} missing from the OpenAPI document");
    }
}

/// Answers every message with one intent.
struct Fixed(&'static str);

#[async_trait::async_trait]
impl IntentClassifier for Fixed {
    async fn classify(&self, _: &str) -> Result<IntentPrediction, ModelError> {
        Ok(IntentPrediction { intent: Some(self.0.into()), confidence: 0.9, ranked: vec![(self.0.into(), 0.9)], out_of_scope: false })
    }
}

/// Takes its time, reporting progress; fails when told to.
struct Slow {
    fail: bool,
}

#[async_trait::async_trait]
impl IntentTrainer for Slow {
    async fn train(&self, _: Uuid, examples: Vec<Example>, progress: TrainProgress) -> Result<TrainedIntents, ModelError> {
        assert_eq!(examples.len(), 32);
        for p in [0.1, 0.4, 0.7] {
            progress(p);
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        if self.fail {
            return Err(ModelError::Failed("out of cheese".into()));
        }
        let metrics = serde_json::json!({ "accuracy": 1.0, "macro_f1": 1.0 });
        Ok(TrainedIntents { version: 1, metrics, classifier: Arc::new(Fixed("card_arrival")) })
    }
}

/// Polls the job until it ends; returns it and every progress value seen.
async fn follow(app: &TestApp, token: &str, job: &str, limit: Duration) -> (Value, Vec<f64>) {
    let start = std::time::Instant::now();
    let mut seen = vec![];
    loop {
        let (s, b) = app.get(&format!("/v1/admin/jobs/{job}"), Some(token)).await;
        assert_eq!(s, 200, "{b}");
        seen.push(b["progress"].as_f64().unwrap());
        if b["state"] == "succeeded" || b["state"] == "failed" {
            return (b, seen);
        }
        assert!(["queued", "running"].contains(&b["state"].as_str().unwrap()), "{b}");
        assert!(start.elapsed() < limit, "the job did not finish in {limit:?}: {b}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_job_runs_to_its_end_once_at_a_time(app: TestApp) {
    let admin = app.login("acme", "admin@acme.test").await;
    let tenant = app.tenant_id("acme").await;
    assert_eq!(import(&app, &admin, GOOD).await.0, 201);
    app.models.set_trainer(Arc::new(Slow { fail: false }));
    let (s, b) = app.post_json("/v1/admin/intents/train", Some(&admin), Value::Null).await;
    assert_eq!(s, 202, "{b}");
    let job = b["job_id"].as_str().unwrap().to_string();
    // A second start while it runs: 409.
    let (s, b) = app.post_json("/v1/admin/intents/train", Some(&admin), Value::Null).await;
    assert_eq!((s, code(&b)), (409, "training_in_progress"), "{b}");
    let (done, seen) = follow(&app, &admin, &job, Duration::from_secs(20)).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!((done["progress"].as_f64(), done["metrics"]["accuracy"].as_f64()), (Some(1.0), Some(1.0)), "{done}");
    assert_eq!((done["id"].as_str(), done["kind"].as_str()), (Some(job.as_str()), Some("intent_training")));
    assert!(done.get("error").is_none() && done["created_at"].is_string() && done["updated_at"].is_string(), "{done}");
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "progress never goes back: {seen:?}");
    assert!(seen.iter().any(|p| *p > 0.0 && *p < 1.0), "progress seen between 0 and 1: {seen:?}");
    // The new classifier is the tenant's at once.
    let c = app.models.intents(tenant).expect("installed");
    assert_eq!(c.classify("카드 언제 와요").await.unwrap().intent.as_deref(), Some("card_arrival"));

    // A failure is the job's end too, with its reason; training may start again after it.
    app.models.set_trainer(Arc::new(Slow { fail: true }));
    let (s, b) = app.post_json("/v1/admin/intents/train", Some(&admin), Value::Null).await;
    assert_eq!(s, 202, "{b}");
    let (failed, _) = follow(&app, &admin, b["job_id"].as_str().unwrap(), Duration::from_secs(20)).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(failed["error"].as_str().unwrap().contains("out of cheese"), "{failed}");
    assert!(failed.get("metrics").is_none(), "{failed}");
    let stored = app.store.job(tenant, failed["id"].as_str().unwrap().parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(stored.state, JobState::Failed);
}

/// The real thing: E5 embeddings, the default recipe, the model stored and
/// served. 32 examples train in seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_on_e5_serves_the_new_model() {
    let app = aicc_tests::spawn_app(Backend::Sqlite).await;
    let model = aicc_models::E5Model::load(&aicc_tests::model_file("multilingual-e5-small", "e5-small-q4.bin")).unwrap();
    let worker: Arc<dyn aicc_core::Embedder> =
        Arc::new(aicc_models::EmbedWorker::spawn("multilingual-e5-small", Arc::new(model), 64).unwrap());
    app.models.set_embedder(worker.clone());
    app.models.set_trainer(Arc::new(aicc_models::intent::Trainer::new(app.store.clone(), worker)));
    let admin = app.login("acme", "admin@acme.test").await;
    let tenant = app.tenant_id("acme").await;
    assert!(app.models.intents(tenant).is_none());
    assert_eq!(import(&app, &admin, GOOD).await.0, 201);
    let started = std::time::Instant::now();
    let (s, b) = app.post_json("/v1/admin/intents/train", Some(&admin), Value::Null).await;
    assert_eq!(s, 202, "{b}");
    let (done, seen) = follow(&app, &admin, b["job_id"].as_str().unwrap(), Duration::from_secs(120)).await;
    eprintln!("trained in {:?}; progress seen {seen:?}; {done}", started.elapsed());
    assert_eq!(done["state"], "succeeded", "{done}");
    let m = &done["metrics"];
    for key in ["accuracy", "macro_f1"] {
        let v = m[key].as_f64().unwrap_or_else(|| panic!("{key} missing: {m}"));
        assert!((0.0..=1.0).contains(&v), "{m}");
    }
    assert_eq!((m["intents"].as_u64(), m["n_examples"].as_u64(), m["model_version"].as_i64()), (Some(4), Some(32), Some(1)), "{m}");
    // The small-set recipe: batches of 8, at least 10 epochs on all rows.
    assert_eq!(m["batch_size"].as_u64(), Some(8), "{m}");
    assert!(m["epochs"].as_u64().unwrap() >= 10, "{m}");
    let mut distinct = seen.clone();
    distinct.dedup();
    assert!(distinct.len() >= 3 && seen.windows(2).all(|w| w[0] <= w[1]), "progress rises: {seen:?}");
    // Stored as the tenant's intent model, and served at once.
    let rec = app.store.latest_intent_model(tenant).await.unwrap().unwrap();
    assert_eq!((rec.version, rec.encoder.as_str()), (1, "multilingual-e5-small"));
    let c = app.models.intents(tenant).expect("the new classifier is installed");
    for (text, intent) in [("my card has not come yet", "card_arrival"), ("비밀번호 변경하고 싶어요", "change_password"), ("환율 좀 알려줘", "exchange_rate")] {
        let p = c.classify(text).await.unwrap();
        assert_eq!(p.ranked[0].0, intent, "{text}: {p:?}");
        // A trained head, not a near-uniform one (32 examples once gave ~0.3).
        assert!(p.ranked[0].1 > 0.6, "{text}: {p:?}");
    }
}
