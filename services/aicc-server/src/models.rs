//! What `aicc serve` loads in the background at start: the embedder (pulled
//! into the model dir first if missing), the intent trainer the admin API
//! runs jobs with, every tenant's newest stored intent model, and the demo
//! tenant's intent model — from the Store, else from the trained-model cache
//! in the model dir, else trained from `demo/` and saved to both. `/readyz`
//! reports the embedder and the demo model.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use aicc_api::models::{ModelRegistry, ModelState};
use aicc_core::{NewIntentModel, Store};
use aicc_models::intent::{self, EncoderInfo, IntentModel, Rules, TrainConfig};
use aicc_models::{E5Model, EmbedKind, EmbedWorker};
use anyhow::Context;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The demo tenant's training data, compiled in (demo/README.md).
pub(crate) const DEMO_DATA: [(&str, &[u8]); 4] = [
    ("demo/banking77/train.csv", include_bytes!("../../../demo/banking77/train.csv")),
    ("demo/queries_ko.csv", include_bytes!("../../../demo/queries_ko.csv")),
    ("demo/routing.csv", include_bytes!("../../../demo/routing.csv")),
    ("demo/oos.csv", include_bytes!("../../../demo/oos.csv")),
];

/// Requests that may wait for the embedder thread before `Overloaded`.
const EMBED_QUEUE: usize = 256;

/// Starts loading in the background; returns at once.
pub fn spawn(
    settings: &aicc_core::settings::Settings,
    store: Arc<dyn Store>,
    registry: Arc<ModelRegistry>,
    demo: Option<Uuid>,
    kb: aicc_search::KnowledgeBase,
) {
    spawn_generator(settings, registry.clone());
    let name = settings.embedder.clone();
    if name == "none" {
        return;
    }
    registry.set_state(&name, ModelState::Loading);
    if demo.is_some() {
        registry.set_state(DEMO_INTENTS, ModelState::Loading);
    }
    let model_dir = settings.model_dir.clone();
    tokio::spawn(async move {
        let model = match load_embedder(&name, &model_dir).await {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(model = %name, "cannot load the embedder: {e:#}");
                registry.set_state(&name, ModelState::Failed);
                if demo.is_some() {
                    registry.set_state(DEMO_INTENTS, ModelState::Failed);
                }
                return;
            }
        };
        match EmbedWorker::spawn(&name, model.clone(), EMBED_QUEUE) {
            Ok(worker) => {
                let worker: Arc<dyn aicc_core::Embedder> = Arc::new(worker);
                registry.set_embedder(worker.clone());
                // Knowledge indexes gain their dense half at their next search.
                kb.set_embedder(worker.clone());
                registry.set_state(&name, ModelState::Ready);
                // Admins may train their tenant's intent model from now on.
                registry.set_trainer(Arc::new(intent::Trainer::new(store.clone(), worker.clone())));
                load_tenant_intents(&store, &registry, &worker, &name, demo).await;
                if let Some(tenant) = demo {
                    match demo_intents(&store, &model, &model_dir, tenant, &name).await {
                        Ok(head) => match intent::Classifier::new(worker, head) {
                            Ok(c) => {
                                registry.set_intents(tenant, Arc::new(c));
                                registry.set_state(DEMO_INTENTS, ModelState::Ready);
                                if let Err(e) = demo_adapter(&store, &kb, tenant).await {
                                    tracing::warn!("the demo retrieval adapter was not trained: {e:#}");
                                }
                            }
                            Err(e) => fail(&registry, e.into()),
                        },
                        Err(e) => fail(&registry, e),
                    }
                }
            }
            Err(e) => {
                tracing::error!(model = %name, "cannot start the embedder thread: {e}");
                registry.set_state(&name, ModelState::Failed);
            }
        }
    });
}

/// The generator loads beside the embedder (pulled first if missing: the
/// default model is 1.1 GB); `/readyz` names it `generator:MODEL`.
fn spawn_generator(settings: &aicc_core::settings::Settings, registry: Arc<ModelRegistry>) {
    use aicc_core::settings::GeneratorBackend;
    let g = &settings.generator;
    let label = match g.backend {
        GeneratorBackend::None => return,
        GeneratorBackend::Local => format!("generator:{}", g.model),
        GeneratorBackend::Remote => format!("generator:{}", g.remote_model),
    };
    registry.set_state(&label, ModelState::Loading);
    let settings = settings.clone();
    tokio::spawn(async move {
        match crate::generate_cli::load(&settings).await {
            Ok(Some(generator)) => {
                registry.set_generator(generator);
                registry.set_state(&label, ModelState::Ready);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(model = %label, "cannot load the generator: {e:#}");
                registry.set_state(&label, ModelState::Failed);
            }
        }
    });
}

const DEMO_INTENTS: &str = "intent:demo";

/// Korean messages are ~6 per intent against ~130 English ones; repeating
/// them keeps the adapter from learning English alone (docs/benchmarks.md:
/// ×10 lifted Korean fine-tuned recall@1 from 0.758 to 0.819 on one split).
const DEMO_KOREAN_WEIGHT: usize = 10;

/// The demo tenant's retrieval adapter, trained once from the demo messages
/// (the same as the intent model's) and kept in the Store (again when the
/// stored one is of an older format). Search is
/// zero-shot until it is ready; later starts find it in the Store.
async fn demo_adapter(store: &Arc<dyn Store>, kb: &aicc_search::KnowledgeBase, tenant: Uuid) -> anyhow::Result<()> {
    // One of an older format is retrained (the demo's data have not changed, its training has).
    let stored = store.latest_kb_adapter(tenant).await?;
    if stored.is_some_and(|a| aicc_search::adapter::is_current(&a.meta)) || store.kb_live_version(tenant).await?.is_none() {
        return Ok(());
    }
    let mut messages = Vec::new();
    for (name, bytes) in DEMO_DATA {
        let repeat = if name.ends_with("_ko.csv") { DEMO_KOREAN_WEIGHT } else { 1 };
        for e in intent::data::parse(bytes, name, Rules::TEST)? {
            messages.extend(std::iter::repeat_n((e.text.clone(), e.intent.clone()), repeat));
        }
    }
    tracing::info!(messages = messages.len(), "training the demo retrieval adapter");
    let t = Instant::now();
    let rec = kb
        .train_adapter(tenant, &messages, &|what, done, todo| {
            if done == todo || done % 2048 < 32 {
                tracing::info!(what, done, todo, "demo retrieval adapter: embedding");
            }
        })
        .await?;
    tracing::info!(version = rec.version, seconds = t.elapsed().as_secs(), metrics = %rec.meta["metrics"], "demo retrieval adapter ready");
    Ok(())
}

/// Every tenant's newest stored intent model (trained through the admin API),
/// the demo tenant's aside (`demo_intents` has its own fallbacks). A model
/// trained on another embedder is skipped with a warning: retrain it.
async fn load_tenant_intents(
    store: &Arc<dyn Store>,
    registry: &ModelRegistry,
    worker: &Arc<dyn aicc_core::Embedder>,
    encoder: &str,
    demo: Option<Uuid>,
) {
    let tenants = match store.intent_model_tenants().await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("cannot list the stored intent models: {e}");
            return;
        }
    };
    for tenant in tenants.into_iter().filter(|t| Some(*t) != demo) {
        let loaded = async {
            let Some(rec) = store.latest_intent_model(tenant).await? else { return Ok(None) };
            let head = IntentModel::from_parts(rec.meta, &rec.weights, encoder, worker.dim(), &format!("intent model v{}", rec.version))?;
            anyhow::Ok(Some((rec.version, intent::Classifier::new(worker.clone(), head)?)))
        };
        match loaded.await {
            Ok(Some((version, c))) => {
                registry.set_intents(tenant, Arc::new(c));
                tracing::info!(%tenant, version, "intent model loaded from the store");
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(%tenant, "the tenant's stored intent model is not used: {e:#}"),
        }
    }
}

fn fail(registry: &ModelRegistry, e: anyhow::Error) {
    tracing::error!("the demo intent model is not available: {e:#}");
    registry.set_state(DEMO_INTENTS, ModelState::Failed);
}

/// The configured embedder on its worker thread, for commands that need one
/// outside `serve` (kb import, eval retrieval, bench kb). None for `none`.
pub async fn embedder(settings: &aicc_core::settings::Settings) -> anyhow::Result<Option<Arc<dyn aicc_core::Embedder>>> {
    if settings.embedder == "none" {
        return Ok(None);
    }
    let model = load_embedder(&settings.embedder, &settings.model_dir).await?;
    Ok(Some(Arc::new(EmbedWorker::spawn(&settings.embedder, model, EMBED_QUEUE)?)))
}

/// The first file of manifest model `name` (of `kind`), pulled into the model
/// dir if missing (blocking: pip and hashing).
pub(crate) fn pulled_file(name: &str, kind: &str, model_dir: &Path) -> anyhow::Result<PathBuf> {
    let manifest = aicc_models::Manifest::builtin()?;
    let spec = manifest.get(name)?;
    anyhow::ensure!(spec.kind == kind, "`{name}` is a {}, not a {kind}", spec.kind);
    let fetcher = aicc_models::Fetcher::new(model_dir);
    if fetcher.pull(spec)? > 0 {
        tracing::info!(model = %name, "pulled into {}", model_dir.display());
    }
    Ok(fetcher.file_path(spec, &spec.files[0]))
}

async fn load_embedder(name: &str, model_dir: &Path) -> anyhow::Result<Arc<E5Model>> {
    let (name, model_dir) = (name.to_string(), model_dir.to_path_buf());
    tokio::task::spawn_blocking(move || {
        anyhow::ensure!(name == "multilingual-e5-small", "`{name}` is not an embedder this build can serve");
        let path = pulled_file(&name, "embedder", &model_dir)?;
        let t = Instant::now();
        let model = E5Model::load(&path)?;
        tracing::info!(model = %name, ms = t.elapsed().as_millis() as u64, "embedder loaded");
        Ok(Arc::new(model))
    })
    .await?
}

/// The demo tenant's live intent model: the Store's newest version, else the
/// cached training of the same data, else a fresh training (minutes; the log
/// shows its progress) saved to the cache and the Store.
async fn demo_intents(store: &Arc<dyn Store>, model: &Arc<E5Model>, model_dir: &Path, tenant: Uuid, encoder: &str) -> anyhow::Result<IntentModel> {
    let dim = model.dim();
    if let Some(rec) = store.latest_intent_model(tenant).await? {
        if rec.encoder == encoder {
            let head = IntentModel::from_parts(rec.meta, &rec.weights, encoder, dim, &format!("intent model v{}", rec.version))?;
            tracing::info!(version = rec.version, "demo intent model loaded from the store");
            return Ok(head);
        }
        tracing::warn!(version = rec.version, found = %rec.encoder, "the stored demo intent model was trained on another embedder; training anew");
    }
    let (head, cache, trained) = cached_or_trained(model, model_dir, encoder).await?;
    if !trained {
        tracing::info!(dir = %cache.display(), "demo intent model loaded from the cache");
    } else if let Err(e) = head.save(&cache) {
        tracing::warn!("cannot cache the demo intent model in {}: {e}", cache.display());
    }
    let (meta, weights) = head.to_parts()?;
    let rec = store.put_intent_model(NewIntentModel { tenant_id: tenant, encoder: encoder.into(), meta, weights }).await?;
    tracing::info!(version = rec.version, "demo intent model stored");
    Ok(head)
}

/// The demo head from the trained cache, else freshly trained (not saved:
/// callers decide what a failed save means); with its cache dir and whether
/// it was trained.
async fn cached_or_trained(model: &Arc<E5Model>, model_dir: &Path, encoder: &str) -> anyhow::Result<(IntentModel, PathBuf, bool)> {
    let cache = demo_cache_dir(model_dir, encoder);
    if let Ok(head) = IntentModel::load(&cache, encoder, model.dim()) {
        return Ok((head, cache, false));
    }
    let (model, encoder) = (model.clone(), encoder.to_string());
    let head = tokio::task::spawn_blocking(move || train_demo(&model, &encoder)).await??;
    Ok((head, cache, true))
}

/// The embedder and the demo tenant's head, as `aicc train demo-intents` and
/// `aicc bench intent` need them.
pub struct DemoHead {
    pub model: Arc<E5Model>,
    pub head: IntentModel,
    pub dir: PathBuf,
    pub trained: bool,
}

/// The cached demo model, trained (and cached) if missing.
pub async fn warm_demo_cache(settings: &aicc_core::settings::Settings) -> anyhow::Result<DemoHead> {
    let model = load_embedder(&settings.embedder, &settings.model_dir).await?;
    let (head, dir, trained) = cached_or_trained(&model, &settings.model_dir, &settings.embedder).await?;
    if trained {
        head.save(&dir)?;
    }
    Ok(DemoHead { model, head, dir, trained })
}

/// Keyed by the data, the encoder, the artifact format and the recipe: a new
/// build with other demo data or training code trains anew, an unchanged one
/// reuses the training.
fn demo_cache_dir(model_dir: &Path, encoder: &str) -> PathBuf {
    let mut h = Sha256::new();
    h.update(encoder.as_bytes());
    h.update(intent::head::recipe_fingerprint());
    for (name, bytes) in DEMO_DATA {
        h.update(name.as_bytes());
        h.update(bytes);
    }
    let hex: String = h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
    model_dir.join("trained").join(format!("demo-intents-{hex}"))
}

/// Embeds the demo examples and trains the head, logging progress.
pub fn train_demo(model: &E5Model, encoder: &str) -> anyhow::Result<IntentModel> {
    // Each file holds whole classes (oos.csv only `oos`), so the class rules
    // apply to the union, which training checks.
    let mut examples = vec![];
    for (name, bytes) in DEMO_DATA {
        examples.extend(intent::data::parse(bytes, name, Rules::TEST)?);
    }
    tracing::info!(examples = examples.len(), "training the demo intent model");
    let t = Instant::now();
    let mut vectors = Vec::with_capacity(examples.len());
    for (i, batch) in examples.chunks(64).enumerate() {
        let texts: Vec<&str> = batch.iter().map(|e| e.text.as_str()).collect();
        vectors.extend(model.embed_batch(&texts, EmbedKind::Query)?);
        if i % 40 == 39 {
            tracing::info!(embedded = vectors.len(), of = examples.len(), "embedding the demo examples");
        }
    }
    tracing::info!(seconds = t.elapsed().as_secs(), "demo examples embedded");
    let labels: Vec<String> = examples.iter().map(|e| e.intent.clone()).collect();
    let info = EncoderInfo { name: encoder.into(), dim: model.dim() };
    let texts: Vec<String> = examples.iter().map(|e| e.text.clone()).collect();
    let head = intent::train(&texts, &vectors, &labels, &info, &TrainConfig::default(), &mut |e| {
        tracing::info!(stage = e.stage, epoch = e.epoch, epochs = e.epochs, loss = e.train_loss, dev_accuracy = e.dev_accuracy, "intent training");
    })
    .context("training the demo intent model")?;
    tracing::info!(seconds = t.elapsed().as_secs(), dev = ?head.meta.dev, "demo intent model trained");
    Ok(head)
}
