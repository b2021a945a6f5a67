//! `KnowledgeBase`: the `KnowledgeIndex` of the platform. The Store holds the
//! versions (source of truth); this keeps each tenant's live `VersionIndex` in
//! memory and swaps it whole on publish, so a concurrent search sees the old
//! or the new version, never a mix.
//!
//! Replicas: a publish is announced on the Bus (`Topic::Kb`), and every
//! search re-reads the live version number from the Store at most every
//! `LIVE_CHECK` — so a replica that missed the notice (Redis away) still
//! switches within that time.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use aicc_core::kb::{MAX_K, MAX_QUERY_CHARS};
use aicc_core::{
    Article, Bus, EmbedKind, Embedder, ImportMode, KbError, KbHit, KbQuery, KbVersion, KnowledgeIndex, ModelError, Store,
    StoreError, Topic, Upload,
};
use async_trait::async_trait;
use futures_util::StreamExt;
use uuid::Uuid;

use crate::adapter::Adapter;
use crate::embeddings::EmbeddingCache;
use crate::fusion::Fusion;
use crate::import;
use crate::index::{PassageText, Retrievers, VersionIndex};

const LIVE_CHECK: Duration = Duration::from_secs(2);
/// Non-live versions kept built (drafts being reviewed, the previous live one
/// for an instant rollback).
const KEEP_OTHER_VERSIONS: usize = 4;

struct Live {
    index: Arc<VersionIndex>,
    checked: Instant,
}

impl Live {
    /// The next search re-reads the live version from the Store.
    fn mark_stale(&mut self) {
        self.checked = Instant::now() - LIVE_CHECK * 2;
    }
}

/// A cheap handle (clone it freely) on the shared state below.
#[derive(Clone)]
pub struct KnowledgeBase(Arc<Kb>);

impl std::ops::Deref for KnowledgeBase {
    type Target = Arc<Kb>;
    fn deref(&self) -> &Arc<Kb> {
        &self.0
    }
}

pub struct Kb {
    store: Arc<dyn Store>,
    bus: Option<Arc<dyn Bus>>,
    embedder: RwLock<Option<Arc<dyn Embedder>>>,
    /// Where the embedding caches live (None: memory only, for tests).
    cache_dir: Option<PathBuf>,
    caches: Mutex<HashMap<String, Arc<EmbeddingCache>>>,
    live: RwLock<HashMap<Uuid, Live>>,
    others: Mutex<Vec<((Uuid, i64), Arc<VersionIndex>)>>,
    /// One build at a time: a second request for the same version waits and
    /// then finds it built.
    building: tokio::sync::Mutex<()>,
    subscribed: Mutex<std::collections::HashSet<Uuid>>,
    pub fusion: Fusion,
    pub passage: PassageText,
}

impl KnowledgeBase {
    pub fn new(store: Arc<dyn Store>, bus: Option<Arc<dyn Bus>>, cache_dir: Option<PathBuf>) -> Self {
        Self::with(store, bus, cache_dir, Fusion::default(), PassageText::DEFAULT)
    }

    pub fn with(store: Arc<dyn Store>, bus: Option<Arc<dyn Bus>>, cache_dir: Option<PathBuf>, fusion: Fusion, passage: PassageText) -> Self {
        KnowledgeBase(Arc::new(Kb {
            store,
            bus,
            embedder: RwLock::new(None),
            cache_dir,
            caches: Mutex::new(HashMap::new()),
            live: RwLock::new(HashMap::new()),
            others: Mutex::new(Vec::new()),
            building: tokio::sync::Mutex::new(()),
            subscribed: Mutex::new(Default::default()),
            fusion,
            passage,
        }))
    }
}

impl Kb {

    /// The embedder became available (models load after the server starts):
    /// indexes built without vectors get them at their next search.
    pub fn set_embedder(&self, embedder: Arc<dyn Embedder>) {
        *self.embedder.write().unwrap_or_else(|p| p.into_inner()) = Some(embedder);
        // Force a re-check: `live_index` rebuilds what lacks dense vectors.
        self.live.write().unwrap_or_else(|p| p.into_inner()).values_mut().for_each(Live::mark_stale);
        self.others.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    pub fn embedder(&self) -> Option<Arc<dyn Embedder>> {
        self.embedder.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn cache(&self, e: &dyn Embedder) -> Result<Arc<EmbeddingCache>, KbError> {
        let mut caches = self.caches.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = caches.get(e.name()) {
            return Ok(c.clone());
        }
        let c = Arc::new(
            EmbeddingCache::open(self.cache_dir.as_deref(), e.name(), e.dim())
                .map_err(|err| KbError::Failed(format!("cannot open the embedding cache: {err}")))?,
        );
        caches.insert(e.name().to_string(), c.clone());
        Ok(c)
    }

    /// Builds the index of a stored version (embedding what is not cached).
    pub async fn build(&self, tenant_id: Uuid, version: i64) -> Result<Arc<VersionIndex>, KbError> {
        self.build_with_progress(tenant_id, version, &|_, _| {}).await
    }

    pub async fn build_with_progress(
        &self,
        tenant_id: Uuid,
        version: i64,
        progress: &(dyn Fn(usize, usize) + Send + Sync),
    ) -> Result<Arc<VersionIndex>, KbError> {
        let _one_at_a_time = self.building.lock().await;
        let embedder = self.embedder();
        if let Some(found) = self.built(tenant_id, version) {
            if found.dense.is_some() || embedder.is_none() {
                return Ok(found);
            }
        }
        if self.store.kb_version(tenant_id, version).await?.is_none() {
            return Err(KbError::NotFound(format!("knowledge version {version} does not exist")));
        }
        let articles = self.store.kb_articles(tenant_id, version).await?;
        let mut index = self.index_articles(version, articles, embedder.as_deref(), progress).await?;
        let adapter = self.stored_adapter(tenant_id, &index).await?;
        index.set_adapter(adapter);
        let index = Arc::new(index);
        self.remember(tenant_id, index.clone());
        Ok(index)
    }

    /// Keeps a built non-live version, the most recent `KEEP_OTHER_VERSIONS`.
    fn remember(&self, tenant_id: Uuid, index: Arc<VersionIndex>) {
        let key = (tenant_id, index.version);
        let mut others = self.others.lock().unwrap_or_else(|p| p.into_inner());
        others.retain(|(k, _)| *k != key);
        others.push((key, index));
        let excess = others.len().saturating_sub(KEEP_OTHER_VERSIONS);
        others.drain(..excess);
    }

    /// The tenant's newest adapter, if it maps this index's query space.
    async fn stored_adapter(&self, tenant_id: Uuid, index: &VersionIndex) -> Result<Option<Arc<Adapter>>, KbError> {
        let Some(dense) = &index.dense else { return Ok(None) };
        let Some(rec) = self.store.latest_kb_adapter(tenant_id).await? else { return Ok(None) };
        if rec.encoder != dense.model {
            return Ok(None);
        }
        match Adapter::from_parts(&rec.meta, &rec.weights) {
            Ok(a) if a.dim == dense.index.dim() => Ok(Some(Arc::new(a))),
            Ok(_) | Err(_) => {
                tracing::warn!(%tenant_id, version = rec.version, "stored retrieval adapter unusable; zero-shot retrieval");
                Ok(None)
            }
        }
    }

    /// Trains the tenant's retrieval adapter on labelled messages `(text,
    /// intent)` against its live articles, stores it as a new version, and
    /// switches this replica's live index to use it. Others pick it up at
    /// their next index build (a publish or a restart).
    pub async fn train_adapter(
        self: &Arc<Self>,
        tenant_id: Uuid,
        messages: &[(String, String)],
        progress: &(dyn Fn(&str, usize, usize) + Send + Sync),
    ) -> Result<aicc_core::kb::AdapterRecord, KbError> {
        let embedder = self.embedder().ok_or_else(|| KbError::Unavailable("no embedder is loaded".into()))?;
        let live = self
            .store
            .kb_live_version(tenant_id)
            .await?
            .ok_or_else(|| KbError::NotFound("the tenant has no published knowledge to train against".into()))?;
        let articles = self.store.kb_articles(tenant_id, live).await?;
        let cache = self.cache(embedder.as_ref())?;
        let texts: Vec<String> = articles.iter().map(|a| self.passage.text(a)).collect();
        let vectors = cache.embed_all(embedder.as_ref(), &texts, self.passage.kind(), &|d, t| progress("articles", d, t)).await?;
        let message_texts: Vec<String> = messages.iter().map(|(t, _)| t.clone()).collect();
        let message_vectors =
            cache.embed_all(embedder.as_ref(), &message_texts, EmbedKind::Query, &|d, t| progress("messages", d, t)).await?;
        let questions = cache.article_questions(embedder.as_ref(), &articles, &|d, t| progress("questions", d, t)).await?;
        let labelled: Vec<(Vec<f32>, Option<String>, String)> =
            vectors.into_iter().zip(&articles).map(|(v, a)| (v, a.intent.clone(), a.language.clone())).collect();
        let examples: Vec<(Vec<f32>, String, Option<String>)> = message_vectors
            .into_iter()
            .zip(messages)
            .map(|(v, (text, intent))| (v, intent.clone(), Some(import::detect_language(text))))
            .collect();
        let encoder = embedder.name().to_string();
        let trained = tokio::task::spawn_blocking(move || {
            crate::adapter::train(&encoder, &labelled, &examples, &questions, &crate::adapter::TrainConfig::default(), |_, _, _| {})
        })
        .await
        .map_err(|e| KbError::Failed(format!("adapter training: {e}")))?
        .map_err(|e| KbError::Failed(format!("adapter training: {e}")))?
        .ok_or_else(|| {
            KbError::Invalid(vec![aicc_core::LineError {
                line: 1,
                message: "fewer than 10 messages have an intent that an article of the live version has".into(),
            }])
        })?;
        let (meta, weights) = trained.to_parts().map_err(|e| KbError::Failed(format!("adapter: {e}")))?;
        let rec = self
            .store
            .put_kb_adapter(aicc_core::kb::NewAdapter {
                tenant_id,
                kb_version: Some(live),
                encoder: embedder.name().to_string(),
                meta,
                weights,
            })
            .await?;
        // Rebuild (vectors are cached) so this replica uses it at once.
        self.others.lock().unwrap_or_else(|p| p.into_inner()).retain(|(k, _)| k.0 != tenant_id);
        self.live.write().unwrap_or_else(|p| p.into_inner()).remove(&tenant_id);
        self.live_index(tenant_id).await?;
        Ok(rec)
    }

    async fn index_articles(
        &self,
        version: i64,
        articles: Vec<Article>,
        embedder: Option<&dyn Embedder>,
        progress: &(dyn Fn(usize, usize) + Send + Sync),
    ) -> Result<VersionIndex, KbError> {
        let with = match embedder {
            Some(e) => Some((e, self.cache(e)?)),
            None => None,
        };
        let with = with.as_ref().map(|(e, c)| (*e, c.as_ref()));
        index_articles(version, articles, with, self.passage, self.fusion, progress).await
    }

    fn built(&self, tenant_id: Uuid, version: i64) -> Option<Arc<VersionIndex>> {
        if let Some(l) = self.live.read().unwrap_or_else(|p| p.into_inner()).get(&tenant_id) {
            if l.index.version == version {
                return Some(l.index.clone());
            }
        }
        let others = self.others.lock().unwrap_or_else(|p| p.into_inner());
        others.iter().find(|(k, _)| *k == (tenant_id, version)).map(|(_, i)| i.clone())
    }

    fn install(&self, tenant_id: Uuid, index: Arc<VersionIndex>) {
        let mut live = self.live.write().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = live.insert(tenant_id, Live { index, checked: Instant::now() }) {
            // Keep the previous live version built: a rollback is then instant.
            self.remember(tenant_id, old.index);
        }
    }

    /// The tenant's live index, loading or switching it when the Store says
    /// another version is live now. None: nothing published yet.
    pub async fn live_index(self: &Arc<Self>, tenant_id: Uuid) -> Result<Option<Arc<VersionIndex>>, KbError> {
        let current = {
            let live = self.live.read().unwrap_or_else(|p| p.into_inner());
            live.get(&tenant_id).map(|l| (l.index.clone(), l.checked.elapsed() < LIVE_CHECK))
        };
        let needs_dense = |i: &VersionIndex| i.dense.is_none() && self.embedder().is_some();
        match current {
            Some((index, true)) => return Ok(Some(index)),
            Some((index, false)) => {
                let version = match self.store.kb_live_version(tenant_id).await {
                    Ok(v) => v,
                    // The store is away: keep answering from what is loaded.
                    Err(e) => {
                        tracing::warn!(%tenant_id, error = %e, "live knowledge version unknown; serving the loaded one");
                        return Ok(Some(index));
                    }
                };
                if version == Some(index.version) {
                    if needs_dense(&index) {
                        self.spawn_rebuild(tenant_id, index.version);
                    }
                    if let Some(l) = self.live.write().unwrap_or_else(|p| p.into_inner()).get_mut(&tenant_id) {
                        l.checked = Instant::now();
                    }
                    return Ok(Some(index));
                }
            }
            None => {}
        }
        self.subscribe(tenant_id).await;
        let Some(version) = self.store.kb_live_version(tenant_id).await? else { return Ok(None) };
        let index = self.build(tenant_id, version).await?;
        self.install(tenant_id, index.clone());
        Ok(Some(index))
    }

    /// Rebuilds the live version in the background (e.g. to add vectors once
    /// the embedder is loaded) and installs it if it is still live.
    fn spawn_rebuild(self: &Arc<Self>, tenant_id: Uuid, version: i64) {
        let this = self.clone();
        tokio::spawn(async move { this.rebuild_if_live(tenant_id, version).await });
    }

    /// Builds `version` and installs it if the Store still says it is live.
    async fn rebuild_if_live(&self, tenant_id: Uuid, version: i64) {
        match self.build(tenant_id, version).await {
            Ok(index) if self.store.kb_live_version(tenant_id).await.ok().flatten() == Some(version) => {
                self.install(tenant_id, index)
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(%tenant_id, version, error = %e, "knowledge index rebuild failed"),
        }
    }

    /// Follows the tenant's publish notices from other replicas.
    async fn subscribe(self: &Arc<Self>, tenant_id: Uuid) {
        let Some(bus) = &self.bus else { return };
        if !self.subscribed.lock().unwrap_or_else(|p| p.into_inner()).insert(tenant_id) {
            return;
        }
        let Ok(mut events) = bus.subscribe(&Topic::Kb(tenant_id)).await else {
            // Unsubscribed: the periodic check still switches versions.
            self.subscribed.lock().unwrap_or_else(|p| p.into_inner()).remove(&tenant_id);
            return;
        };
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            while events.next().await.is_some() {
                let Some(this) = this.upgrade() else { break };
                // Let the next search re-read the live version now.
                if let Some(l) = this.live.write().unwrap_or_else(|p| p.into_inner()).get_mut(&tenant_id) {
                    l.mark_stale();
                }
                if let Ok(Some(version)) = this.store.kb_live_version(tenant_id).await {
                    this.rebuild_if_live(tenant_id, version).await;
                }
            }
        });
    }

    async fn base_articles(&self, tenant_id: Uuid, base: Option<i64>) -> Result<(Option<i64>, Vec<Article>), KbError> {
        let base = match base {
            Some(v) => {
                if self.store.kb_version(tenant_id, v).await?.is_none() {
                    return Err(KbError::NotFound(format!("knowledge version {v} does not exist")));
                }
                Some(v)
            }
            None => match self.store.kb_live_version(tenant_id).await? {
                Some(v) => Some(v),
                // Nothing published yet: edit the newest draft.
                None => self.store.kb_versions(tenant_id).await?.first().map(|v| v.version),
            },
        };
        let articles = match base {
            Some(v) => self.store.kb_articles(tenant_id, v).await?,
            None => Vec::new(),
        };
        Ok((base, articles))
    }

    async fn search_index(&self, index: &Arc<VersionIndex>, text: &str, k: usize) -> Result<Vec<KbHit>, KbError> {
        search_index(index, self.embedder().as_deref(), text, k, Retrievers::Hybrid).await
    }
}

/// An index over `articles`, embedding (through the cache) what it needs.
/// Also what `aicc eval retrieval` and the benchmark build.
pub async fn index_articles(
    version: i64,
    articles: Vec<Article>,
    embedder: Option<(&dyn Embedder, &EmbeddingCache)>,
    passage: PassageText,
    fusion: Fusion,
    progress: &(dyn Fn(usize, usize) + Send + Sync),
) -> Result<VersionIndex, KbError> {
    let vectors = match embedder {
        Some((e, cache)) => {
            let texts: Vec<String> = articles.iter().map(|a| passage.text(a)).collect();
            Some((e.name().to_string(), e.dim(), cache.embed_all(e, &texts, passage.kind(), progress).await?))
        }
        None => None,
    };
    tokio::task::spawn_blocking(move || {
        let mut index = VersionIndex::build(version, articles).map_err(|e| KbError::Failed(format!("index: {e}")))?;
        index.fusion = fusion;
        if let Some((model, dim, v)) = vectors {
            index = index.with_vectors(&model, dim, &v);
        }
        Ok(index)
    })
    .await
    .map_err(|e| KbError::Failed(format!("index build: {e}")))?
}

/// Embeds the query (when the index has vectors of this embedder) and searches.
pub async fn search_index(
    index: &Arc<VersionIndex>,
    embedder: Option<&dyn Embedder>,
    text: &str,
    k: usize,
    use_: Retrievers,
) -> Result<Vec<KbHit>, KbError> {
    let vector = match (&index.dense, embedder) {
        (Some(d), Some(e)) if e.name() == d.model && use_ != Retrievers::Bm25 => {
            match e.embed(vec![text.to_string()], EmbedKind::Query).await {
                Ok(mut v) => v.pop(),
                Err(ModelError::Overloaded) => return Err(KbError::Overloaded),
                Err(ModelError::Unavailable(m) | ModelError::Failed(m) | ModelError::InvalidRequest(m)) => {
                    tracing::warn!(error = %m, "query embedding failed; BM25 only");
                    None
                }
            }
        }
        _ => None,
    };
    let (index, text) = (index.clone(), text.to_string());
    tokio::task::spawn_blocking(move || index.search(&text, vector.as_deref(), k, use_))
        .await
        .map_err(|e| KbError::Failed(format!("search: {e}")))?
        .map_err(|e| KbError::Failed(format!("search: {e}")))
}

/// Validates a search request: trims, cuts very long text, bounds `k`.
pub fn normalise_query(query: &KbQuery) -> Result<(String, usize), KbError> {
    let text = query.text.trim();
    if text.is_empty() {
        return Err(KbError::BadQuery("the query `q` is empty".into()));
    }
    if query.k == 0 || query.k > MAX_K {
        return Err(KbError::BadQuery(format!("k must be between 1 and {MAX_K}")));
    }
    let text = match text.char_indices().nth(MAX_QUERY_CHARS) {
        Some((cut, _)) => &text[..cut],
        None => text,
    };
    Ok((text.to_string(), query.k))
}

fn check_article(a: &Article) -> Result<Article, KbError> {
    let mut problems = Vec::new();
    let mut a = a.clone();
    a.question = a.question.trim().to_string();
    a.answer = a.answer.trim().to_string();
    a.language = a.language.trim().to_ascii_lowercase();
    if a.question.is_empty() {
        problems.push("question is empty");
    }
    if a.answer.is_empty() {
        problems.push("answer is empty");
    }
    if a.question.chars().count() > 1_000 {
        problems.push("question is longer than 1000 characters");
    }
    if a.answer.chars().count() > 20_000 {
        problems.push("answer is longer than 20000 characters");
    }
    if a.id.is_empty() || a.id.len() > 128 || !a.id.chars().all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c)) {
        problems.push("id must be 1-128 characters of A-Z a-z 0-9 . _ : -");
    }
    if a.language.is_empty() {
        a.language = import::detect_language(&format!("{} {}", a.question, a.answer));
    } else if !(2..=3).contains(&a.language.len()) || !a.language.chars().all(|c| c.is_ascii_lowercase()) {
        problems.push("language must be a language code such as en or ko");
    }
    a.tags.retain(|t| !t.trim().is_empty());
    if problems.is_empty() {
        Ok(a)
    } else {
        Err(KbError::Invalid(problems.into_iter().map(|m| aicc_core::LineError { line: 1, message: m.into() }).collect()))
    }
}

#[async_trait]
impl KnowledgeIndex for KnowledgeBase {
    async fn import(&self, tenant_id: Uuid, upload: Upload, mode: ImportMode) -> Result<KbVersion, KbError> {
        let imported = tokio::task::spawn_blocking(move || import::parse(&upload))
            .await
            .map_err(|e| KbError::Failed(format!("import: {e}")))??;
        let (parent, articles, source) = match mode {
            ImportMode::Replace => (None, imported, "import:replace"),
            ImportMode::Merge => {
                let live = self.store.kb_live_version(tenant_id).await?;
                let mut base = match live {
                    Some(v) => self.store.kb_articles(tenant_id, v).await?,
                    None => Vec::new(),
                };
                let mut at: HashMap<String, usize> = base.iter().enumerate().map(|(i, a)| (a.id.clone(), i)).collect();
                for a in imported {
                    match at.get(&a.id) {
                        Some(&i) => base[i] = a,
                        None => {
                            at.insert(a.id.clone(), base.len());
                            base.push(a);
                        }
                    }
                }
                (live, base, "import:merge")
            }
        };
        Ok(self.store.create_kb_version(tenant_id, parent, source, &articles).await?)
    }

    async fn versions(&self, tenant_id: Uuid) -> Result<Vec<KbVersion>, KbError> {
        Ok(self.store.kb_versions(tenant_id).await?)
    }

    async fn publish(&self, tenant_id: Uuid, version: i64) -> Result<KbVersion, KbError> {
        // Built before the switch: searches go from one complete index to the next.
        let index = self.build(tenant_id, version).await?;
        let published = self.store.publish_kb_version(tenant_id, version).await.map_err(|e| match e {
            StoreError::NotFound(_) => KbError::NotFound(format!("knowledge version {version} does not exist")),
            e => e.into(),
        })?;
        self.install(tenant_id, index);
        if let Some(bus) = &self.bus {
            let notice = serde_json::json!({ "type": "kb_published", "tenant_id": tenant_id, "version": version });
            if let Err(e) = bus.publish(&Topic::Kb(tenant_id), notice).await {
                tracing::warn!(error = %e, "publish notice not sent; other replicas switch at their next check");
            }
        }
        Ok(published)
    }

    async fn article(&self, tenant_id: Uuid, id: &str, version: Option<i64>) -> Result<Article, KbError> {
        let (_, articles) = self.base_articles(tenant_id, version).await?;
        articles.into_iter().find(|a| a.id == id).ok_or_else(|| KbError::NotFound(format!("article `{id}` not found")))
    }

    async fn put_article(&self, tenant_id: Uuid, article: Article, base: Option<i64>) -> Result<KbVersion, KbError> {
        let article = check_article(&article)?;
        let (parent, mut articles) = self.base_articles(tenant_id, base).await?;
        match articles.iter_mut().find(|a| a.id == article.id) {
            Some(a) => *a = article,
            None => articles.push(article),
        }
        Ok(self.store.create_kb_version(tenant_id, parent, "edit", &articles).await?)
    }

    async fn delete_article(&self, tenant_id: Uuid, id: &str, base: Option<i64>) -> Result<KbVersion, KbError> {
        let (parent, mut articles) = self.base_articles(tenant_id, base).await?;
        let before = articles.len();
        articles.retain(|a| a.id != id);
        if articles.len() == before {
            return Err(KbError::NotFound(format!("article `{id}` not found")));
        }
        Ok(self.store.create_kb_version(tenant_id, parent, "delete", &articles).await?)
    }

    async fn search(&self, tenant_id: Uuid, query: &KbQuery) -> Result<Vec<KbHit>, KbError> {
        let (text, k) = normalise_query(query)?;
        let index = match query.version {
            Some(v) => self.build(tenant_id, v).await?,
            None => match self.live_index(tenant_id).await? {
                Some(i) => i,
                None => return Ok(Vec::new()),
            },
        };
        self.search_index(&index, &text, k).await
    }
}
