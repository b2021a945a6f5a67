//! `aicc kb import`, `aicc eval retrieval` and `aicc bench kb`: the knowledge
//! base from the command line. JSON on stdout, progress on stderr.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use aicc_core::settings::Settings;
use aicc_core::{Article, EmbedKind, ImportMode, KnowledgeIndex, Upload};
use aicc_search::adapter::{self, TrainConfig};
use aicc_search::embeddings::EmbeddingCache;
use aicc_search::fusion::Fusion;
use aicc_search::index::{PassageText, Retrievers, VersionIndex};
use aicc_search::service::index_articles;
use anyhow::Context;
use serde_json::{json, Value};

use crate::models;

#[derive(clap::Args)]
pub struct ImportArgs {
    #[arg(long)]
    tenant: String,
    /// A CSV, JSON or XLSX file with the faq.csv columns.
    file: PathBuf,
    /// `replace` (the draft holds exactly the file) or `merge` (upsert into the live version).
    #[arg(long, default_value = "replace", value_parser = ["replace", "merge"])]
    mode: String,
    /// Publish the new version at once.
    #[arg(long)]
    publish: bool,
}

pub async fn import(args: ImportArgs, settings: &Settings) -> anyhow::Result<Value> {
    let store = aicc_store::open(settings.database_url.as_deref(), &settings.data_dir).await?;
    let tenant = store
        .tenant_by_slug(&args.tenant)
        .await?
        .with_context(|| format!("no tenant `{}` (create it with `aicc admin create-user --tenant {}`)", args.tenant, args.tenant))?;
    let bytes = std::fs::read(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let upload = Upload { bytes, content_type: None, filename: args.file.file_name().map(|f| f.to_string_lossy().into_owned()) };
    let kb = aicc_search::KnowledgeBase::new(store, None, Some(settings.data_dir.join("kb")));
    let t = Instant::now();
    let mode = if args.mode == "merge" { ImportMode::Merge } else { ImportMode::Replace };
    let version = match kb.import(tenant.id, upload, mode).await {
        Ok(v) => v,
        Err(aicc_core::KbError::Invalid(errors)) => {
            for e in errors.iter() {
                eprintln!("{}:{}: {}", args.file.display(), e.line, e.message);
            }
            anyhow::bail!("{} error(s) in {}; nothing was imported", errors.len(), args.file.display());
        }
        Err(e) => return Err(e.into()),
    };
    let imported_s = t.elapsed().as_secs_f64();
    eprintln!("stored {} articles as version {} in {imported_s:.1} s", version.article_count, version.version);
    // Index it now (embedding is the slow part; the cache keeps it for `serve`).
    if let Some(e) = models::embedder(settings).await? {
        kb.set_embedder(e);
    }
    let t = Instant::now();
    let total = version.article_count as usize;
    kb.build_with_progress(tenant.id, version.version, &|done, todo| {
        if done == todo || done % 512 == 0 {
            eprintln!("embedded {done}/{todo} new articles");
        }
    })
    .await?;
    let indexed_s = t.elapsed().as_secs_f64();
    let mut out = json!({
        "tenant": args.tenant, "version": version.version, "imported": version.article_count,
        "import_seconds": round(imported_s), "index_seconds": round(indexed_s),
        "articles_per_s": round(total as f64 / (imported_s + indexed_s).max(1e-9)),
    });
    if args.publish {
        out["published"] = kb.publish(tenant.id, version.version).await?.live.into();
    }
    Ok(out)
}

#[derive(clap::Args)]
pub struct EvalArgs {
    /// The knowledge base (faq.csv columns).
    #[arg(long, required_unless_present = "parakqc")]
    kb: Option<PathBuf>,
    /// Labelled queries `text,intent`; a query is relevant to the articles of its intent.
    #[arg(long, required_unless_present = "parakqc")]
    queries: Option<PathBuf>,
    /// Labelled messages `text,intent` to fine-tune the retrieval model on first.
    #[arg(long)]
    train: Option<PathBuf>,
    /// Evaluate on this fraction of `--queries` (a fixed shuffle) and add the
    /// rest to the training messages.
    #[arg(long)]
    holdout: Option<f64>,
    /// ParaKQC `group,label1,label2,text`: each group an article whose question
    /// is its first sentence, the other sentences its queries (replaces --kb/--queries).
    #[arg(long, conflicts_with_all = ["kb", "queries"])]
    parakqc: Option<PathBuf>,
    /// `blend` (default) or `rrf`.
    #[arg(long, default_value = "blend")]
    fusion: String,
    /// Override the blend's dense weight (experiments).
    #[arg(long, hide = true)]
    dense_weight: Option<f32>,
    /// What of an article is embedded: `question+answer` (default) or `question`.
    #[arg(long, default_value = "question+answer")]
    passage: String,
    /// The seed of `--holdout`'s shuffle: tune on one split, report another.
    #[arg(long, default_value_t = 42)]
    holdout_seed: u64,
    /// The adapter's training settings (experiments; defaults as the server trains).
    #[arg(long, hide = true)]
    question_repeat: Option<usize>,
    #[arg(long, hide = true)]
    adapter_temperature: Option<f32>,
    #[arg(long, hide = true)]
    adapter_lr: Option<f64>,
    #[arg(long, hide = true)]
    adapter_weight_decay: Option<f64>,
}

/// A labelled message: the intent classifier's example type, read by its
/// loader (columns by name, every problem with its line).
type Query = aicc_models::intent::data::Example;

fn read_labelled(path: &Path) -> anyhow::Result<Vec<Query>> {
    Ok(aicc_models::intent::data::load(path, aicc_models::intent::Rules::TEST)?)
}

fn parakqc(path: &Path) -> anyhow::Result<(Vec<Article>, Vec<Query>)> {
    let mut r = csv::ReaderBuilder::new().delimiter(b'\t').from_path(path)?;
    let headers = r.headers()?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name).with_context(|| format!("no `{name}` column"));
    let (g, t) = (col("group")?, col("text")?);
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut order = Vec::new();
    for row in r.records() {
        let row = row?;
        let group = row.get(g).unwrap_or_default().to_string();
        if !groups.contains_key(&group) {
            order.push(group.clone());
        }
        groups.entry(group).or_default().push(row.get(t).unwrap_or_default().to_string());
    }
    let (mut articles, mut queries) = (Vec::new(), Vec::new());
    for group in order {
        let texts = &groups[&group];
        let intent = format!("parakqc-{group}");
        articles.push(Article {
            id: intent.clone(),
            intent: Some(intent.clone()),
            language: "ko".into(),
            question: texts[0].clone(),
            answer: texts[0].clone(),
            tags: vec![],
        });
        queries.extend(texts[1..].iter().map(|t| Query { text: t.clone(), intent: intent.clone(), language: Some("ko".into()) }));
    }
    Ok((articles, queries))
}

fn shuffle<T>(v: &mut [T], seed: u64) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
}

#[derive(Default)]
struct Tally {
    at1: f64,
    at5: f64,
    mrr: f64,
}

impl Tally {
    fn add(&mut self, hits: &[aicc_core::KbHit], relevant: &[&str]) {
        if let Some(rank) = hits.iter().take(10).position(|h| relevant.contains(&h.article_id.as_str())) {
            self.at1 += (rank == 0) as u8 as f64;
            self.at5 += (rank < 5) as u8 as f64;
            self.mrr += 1.0 / (rank + 1) as f64;
        }
    }

    fn json(&self, n: usize) -> Value {
        let n = n.max(1) as f64;
        json!({ "recall@1": round(self.at1 / n), "recall@5": round(self.at5 / n), "mrr@10": round(self.mrr / n) })
    }
}

fn round(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// Recall and MRR of each retriever over `queries` (vectors in the same order).
fn score(index: &VersionIndex, queries: &[(&Query, Vec<&str>)], vectors: &[Vec<f32>]) -> anyhow::Result<Value> {
    let mut out = serde_json::Map::new();
    for (name, which) in [("bm25", Retrievers::Bm25), ("dense", Retrievers::Dense), ("hybrid", Retrievers::Hybrid)] {
        let mut t = Tally::default();
        for ((q, relevant), v) in queries.iter().zip(vectors) {
            t.add(&index.search(&q.text, Some(v), 10, which)?, relevant);
        }
        out.insert(name.into(), t.json(queries.len()));
    }
    Ok(Value::Object(out))
}

pub async fn eval(args: EvalArgs, settings: &Settings) -> anyhow::Result<Value> {
    let mut fusion = Fusion::parse(&args.fusion).context("--fusion must be blend or rrf")?;
    if let (Some(w), Fusion::Blend { dense_weight, .. }) = (args.dense_weight, &mut fusion) {
        *dense_weight = w;
    }
    let passage = PassageText::parse(&args.passage).context("--passage must be question or question+answer")?;
    let (articles, mut queries) = match &args.parakqc {
        Some(p) => parakqc(p)?,
        None => {
            let kb = args.kb.as_ref().expect("clap requires --kb");
            let upload = Upload { bytes: std::fs::read(kb)?, content_type: None, filename: Some(kb.display().to_string()) };
            let articles = aicc_search::import::parse(&upload).map_err(|e| anyhow::anyhow!("{}: {e:?}", kb.display()))?;
            (articles, read_labelled(args.queries.as_ref().expect("clap requires --queries"))?)
        }
    };
    let mut training = match &args.train {
        Some(p) => read_labelled(p)?,
        None => Vec::new(),
    };
    if let Some(f) = args.holdout {
        anyhow::ensure!(f > 0.0 && f < 1.0, "--holdout must be between 0 and 1");
        shuffle(&mut queries, args.holdout_seed);
        let keep = ((queries.len() as f64) * f).round() as usize;
        training.extend(queries.drain(keep..));
    }
    let embedder = models::embedder(settings).await?.context("eval retrieval needs an embedder (AICC_EMBEDDER)")?;
    let cache = EmbeddingCache::open(Some(&settings.model_dir.join("cache").join("kb")), embedder.name(), embedder.dim())?;
    let progress = |what: &'static str| move |done: usize, todo: usize| {
        if done == todo || done % 1024 == 0 {
            eprintln!("{what}: embedded {done}/{todo}");
        }
    };
    let mut index = index_articles(1, articles, Some((embedder.as_ref(), &cache)), passage, fusion, &progress("articles")).await?;

    let mut by_intent: HashMap<&str, Vec<&str>> = HashMap::new();
    for a in &index.articles {
        if let Some(i) = &a.intent {
            by_intent.entry(i.as_str()).or_default().push(a.id.as_str());
        }
    }
    let by_intent: HashMap<String, Vec<String>> =
        by_intent.into_iter().map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect())).collect();
    let judged: Vec<(&Query, Vec<&str>)> = queries
        .iter()
        .filter_map(|q| Some((q, by_intent.get(&q.intent)?.iter().map(String::as_str).collect::<Vec<_>>())))
        .collect();
    let n_skipped = queries.len() - judged.len();
    let texts: Vec<String> = judged.iter().map(|(q, _)| q.text.clone()).collect();
    let vectors = cache.embed_all(embedder.as_ref(), &texts, EmbedKind::Query, &progress("queries")).await?;
    let zero_shot = score(&index, &judged, &vectors)?;

    let mut out = json!({ "n_queries": judged.len(), "n_skipped": n_skipped });
    if training.is_empty() {
        for k in ["bm25", "dense", "hybrid"] {
            out[k] = zero_shot[k].clone();
        }
        return Ok(out);
    }
    let train_texts: Vec<String> = training.iter().map(|q| q.text.clone()).collect();
    let train_vectors = cache.embed_all(embedder.as_ref(), &train_texts, EmbedKind::Query, &progress("training")).await?;
    let article_vectors = {
        let texts: Vec<String> = index.articles.iter().map(|a| passage.text(a)).collect();
        cache.embed_all(embedder.as_ref(), &texts, passage.kind(), &|_, _| {}).await?
    };
    let articles: Vec<(Vec<f32>, Option<String>, String)> =
        article_vectors.into_iter().zip(&index.articles).map(|(v, a)| (v, a.intent.clone(), a.language.clone())).collect();
    let messages: Vec<(Vec<f32>, String, Option<String>)> = train_vectors
        .into_iter()
        .zip(&training)
        .map(|(v, q)| (v, q.intent.clone(), Some(q.language.clone().unwrap_or_else(|| aicc_search::import::detect_language(&q.text)))))
        .collect();
    // The articles' own questions too, as the server trains (KnowledgeBase::train_adapter).
    let questions = cache.article_questions(embedder.as_ref(), &index.articles, &|_, _| {}).await?;
    let t = Instant::now();
    let defaults = TrainConfig::default();
    let cfg = TrainConfig {
        question_repeat: args.question_repeat.unwrap_or(defaults.question_repeat),
        temperature: args.adapter_temperature.unwrap_or(defaults.temperature),
        lr: args.adapter_lr.unwrap_or(defaults.lr),
        weight_decay: args.adapter_weight_decay.unwrap_or(defaults.weight_decay),
        ..defaults
    };
    let trained = adapter::train(embedder.name(), &articles, &messages, &questions, &cfg, |epoch, loss, r1| {
        eprintln!("adapter epoch {epoch}: loss {loss:.4}, held-out recall@1 {r1:.4}");
    })?;
    out["train_seconds"] = round(t.elapsed().as_secs_f64()).into();
    out["n_train"] = messages.len().into();
    match trained {
        Some(a) => {
            out["adapter"] = serde_json::to_value(a.metrics)?;
            index.set_adapter(Some(Arc::new(a)));
            let tuned = score(&index, &judged, &vectors)?;
            for k in ["bm25", "dense", "hybrid"] {
                out[k] = tuned[k].clone();
            }
        }
        None => {
            eprintln!("no training message matches an article's intent: zero-shot figures only");
            for k in ["bm25", "dense", "hybrid"] {
                out[k] = zero_shot[k].clone();
            }
        }
    }
    out["zero_shot"] = json!({ "dense": zero_shot["dense"], "hybrid": zero_shot["hybrid"] });
    Ok(out)
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Articles in the synthetic knowledge base searched.
    #[arg(long, default_value_t = 100_000)]
    articles: usize,
    /// Queries timed (BANKING77-style customer messages from the demo data).
    #[arg(long, default_value_t = 1000)]
    queries: usize,
    /// Articles imported and indexed end to end for the import figure (real
    /// embeddings; 0 skips it).
    #[arg(long, default_value_t = 10_000)]
    import_articles: usize,
}

/// Deterministic text from the demo FAQ's own words, so the analyzers see
/// real English and Korean vocabulary at any scale.
struct Synth {
    words: Vec<String>,
    x: u64,
}

impl Synth {
    fn new() -> Self {
        let text = String::from_utf8_lossy(crate::bootstrap::DEMO_FAQ).into_owned();
        let mut words: Vec<String> =
            text.split(|c: char| !c.is_alphanumeric()).filter(|w| w.chars().count() > 1).map(str::to_string).collect();
        words.sort();
        words.dedup();
        Synth { words, x: 0x2545_F491_4F6C_DD1D }
    }

    fn next(&mut self) -> u64 {
        self.x ^= self.x << 13;
        self.x ^= self.x >> 7;
        self.x ^= self.x << 17;
        self.x
    }

    fn sentence(&mut self, min: usize, max: usize) -> String {
        let n = min + (self.next() as usize) % (max - min + 1);
        (0..n)
            .map(|_| {
                let i = (self.next() as usize) % self.words.len();
                self.words[i].clone()
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn articles(&mut self, n: usize) -> Vec<Article> {
        (0..n)
            .map(|i| Article {
                id: format!("synthetic-{i}"),
                intent: None,
                language: "en".into(),
                question: format!("{}?", self.sentence(6, 14)),
                answer: self.sentence(25, 60),
                tags: vec![],
            })
            .collect()
    }
}

fn latency(times: &mut [u64]) -> Value {
    times.sort_unstable();
    json!({ "p50_ms": crate::bench::percentile(times, 0.5), "p99_ms": crate::bench::percentile(times, 0.99) })
}

/// `aicc bench kb`: BM25 and hybrid search latency on a synthetic knowledge
/// base, and the import + index rate of `--import-articles` real articles.
pub async fn bench(args: BenchArgs, settings: &Settings) -> anyhow::Result<Value> {
    let embedder = models::embedder(settings).await?.context("bench kb needs an embedder (AICC_EMBEDDER)")?;
    let mut synth = Synth::new();
    let queries: Vec<String> = String::from_utf8_lossy(crate::models::DEMO_DATA[0].1)
        .lines()
        .skip(1)
        .filter_map(|l| l.rsplit_once(',').map(|(t, _)| t.trim_matches('"').to_string()))
        .take(args.queries.max(1))
        .collect();

    // Search: real analyzers and real query embeddings over synthetic
    // articles; their vectors are real FAQ embeddings with noise (embedding
    // 100k texts would take the benchmark most of an hour on two cores).
    eprintln!("building a {}-article index", args.articles);
    let articles = synth.articles(args.articles);
    let t = Instant::now();
    let base_texts: Vec<String> = synth.articles(256).into_iter().map(|a| a.question).collect();
    let base = embed_batches(embedder.as_ref(), &base_texts).await?;
    let dim = embedder.dim();
    let vectors: Vec<Vec<f32>> = (0..articles.len())
        .map(|i| {
            let b = &base[i % base.len()];
            let v: Vec<f32> = b.iter().map(|x| x + ((synth.next() % 2001) as f32 / 1000.0 - 1.0) * 0.02).collect();
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / n).collect()
        })
        .collect();
    let index = tokio::task::spawn_blocking(move || -> anyhow::Result<VersionIndex> {
        Ok(VersionIndex::build(1, articles)?.with_vectors("bench", dim, &vectors))
    })
    .await??;
    let index = Arc::new(index);
    eprintln!("index built in {:.1} s", t.elapsed().as_secs_f64());

    let mut bm25 = Vec::with_capacity(queries.len());
    for q in &queries {
        let t = Instant::now();
        index.search(q, None, 10, Retrievers::Bm25)?;
        bm25.push(t.elapsed().as_micros() as u64);
    }
    // The vector search alone, on query vectors embedded beforehand.
    let vectors = embed_batches(embedder.as_ref(), &queries).await?;
    let mut dense = Vec::with_capacity(queries.len());
    for (q, v) in queries.iter().zip(&vectors) {
        let t = Instant::now();
        index.search(q, Some(v), 10, Retrievers::Dense)?;
        dense.push(t.elapsed().as_micros() as u64);
    }
    let mut embed = Vec::with_capacity(queries.len());
    for q in &queries {
        let t = Instant::now();
        embedder.embed(vec![q.clone()], EmbedKind::Query).await?;
        embed.push(t.elapsed().as_micros() as u64);
    }
    let mut hybrid = Vec::with_capacity(queries.len());
    for q in &queries {
        let t = Instant::now();
        let v = embedder.embed(vec![q.clone()], EmbedKind::Query).await?;
        index.search(q, Some(&v[0]), 10, Retrievers::Hybrid)?;
        hybrid.push(t.elapsed().as_micros() as u64);
    }
    let mut out = json!({
        "articles": args.articles, "queries": queries.len(), "model": embedder.name(),
        "bm25_top10": latency(&mut bm25), "dense_top10_without_embedding": latency(&mut dense),
        "query_embedding": latency(&mut embed),
        "hybrid_top10": latency(&mut hybrid),
    });

    if args.import_articles > 0 {
        // The whole path of `aicc kb import`: parse, store (SQLite), embed, index.
        let dir = std::env::temp_dir().join(format!("aicc-bench-kb-{}", std::process::id()));
        let store = aicc_store::open(None, &dir).await?;
        let tenant = store.ensure_tenant("bench", "bench", &Default::default()).await?.0;
        let mut csv = String::from("id,language,question,answer\n");
        for a in synth.articles(args.import_articles) {
            csv.push_str(&format!("{},en,\"{}\",\"{}\"\n", a.id, a.question, a.answer));
        }
        let kb = aicc_search::KnowledgeBase::new(store, None, Some(dir.join("kb")));
        kb.set_embedder(embedder.clone());
        let t = Instant::now();
        let upload = Upload { bytes: csv.into_bytes(), content_type: Some("text/csv".into()), filename: None };
        let version = kb.import(tenant.id, upload, ImportMode::Replace).await?;
        let stored = t.elapsed().as_secs_f64();
        kb.build_with_progress(tenant.id, version.version, &|done, todo| {
            if done % 2048 < 32 || done == todo {
                eprintln!("import: embedded {done}/{todo}");
            }
        })
        .await?;
        let total = t.elapsed().as_secs_f64();
        let _ = std::fs::remove_dir_all(&dir);
        out["import"] = json!({
            "articles": args.import_articles, "store_seconds": round(stored), "total_seconds": round(total),
            "articles_per_s": round(args.import_articles as f64 / total),
        });
    }
    Ok(out)
}

/// Embeds texts as queries in batches (bench set-up only).
async fn embed_batches(embedder: &dyn aicc_core::Embedder, texts: &[String]) -> anyhow::Result<Vec<Vec<f32>>> {
    let mut out = Vec::new();
    for chunk in texts.chunks(32) {
        out.extend(embedder.embed(chunk.to_vec(), EmbedKind::Query).await?);
    }
    Ok(out)
}

#[derive(clap::Args)]
pub struct TrainAdapterArgs {
    #[arg(long)]
    tenant: String,
    /// Labelled customer messages `text,intent`; an article belongs to the intent in its `intent` column.
    #[arg(long)]
    data: PathBuf,
}

/// `aicc train kb-adapter`: the tenant's fine-tuned retrieval model, trained
/// against its live knowledge and stored as a new version.
pub async fn train_adapter(args: TrainAdapterArgs, settings: &Settings) -> anyhow::Result<Value> {
    let store = aicc_store::open(settings.database_url.as_deref(), &settings.data_dir).await?;
    let tenant = store.tenant_by_slug(&args.tenant).await?.with_context(|| format!("no tenant `{}`", args.tenant))?;
    let messages: Vec<(String, String)> = read_labelled(&args.data)?.into_iter().map(|q| (q.text, q.intent)).collect();
    let kb = aicc_search::KnowledgeBase::new(store, None, Some(settings.data_dir.join("kb")));
    kb.set_embedder(models::embedder(settings).await?.context("training needs an embedder (AICC_EMBEDDER)")?);
    let t = Instant::now();
    let rec = kb
        .train_adapter(tenant.id, &messages, &|what, done, todo| {
            if done == todo || done % 1024 == 0 {
                eprintln!("{what}: embedded {done}/{todo}");
            }
        })
        .await?;
    Ok(json!({
        "tenant": args.tenant, "version": rec.version, "kb_version": rec.kb_version, "encoder": rec.encoder,
        "metrics": rec.meta["metrics"], "seconds": round(t.elapsed().as_secs_f64()),
    }))
}
