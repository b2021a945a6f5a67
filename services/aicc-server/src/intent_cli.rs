//! `aicc train intent` and `aicc eval intent`: embed labelled utterances with
//! the default embedder (multilingual-e5-small, `query: ` prefix), train the
//! intent head, write its artifact or score it on a test file. Embeddings are
//! cached in the model dir (keyed by the model file's hash, kind and text), so
//! a second run on the same texts skips the slow part. JSON on stdout,
//! progress on stderr.

use std::path::{Path, PathBuf};
use std::time::Instant;

use aicc_core::OUT_OF_SCOPE;
use aicc_models::intent::{self, data::Rules, Arch, EncoderInfo, TrainConfig};
use aicc_models::{E5Model, EmbedCache, EmbedKind};
use anyhow::Context;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const ENCODER: &str = "multilingual-e5-small";
const MODEL_FILE: &str = "multilingual-e5-small/e5-small-q4.bin";
const BATCH: usize = 32;

/// Settings shared by train and eval; the defaults are the tuned recipe.
#[derive(clap::Args, Debug, Clone)]
pub struct HeadArgs {
    /// Do not read or write the embedding cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Candidate heads, compared on the dev split.
    #[arg(long, value_delimiter = ',', value_parser = ["mlp", "linear"])]
    pub arch: Option<Vec<String>>,
    #[arg(long)]
    pub hidden: Option<usize>,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub dropout: Option<f32>,
    #[arg(long)]
    pub weight_decay: Option<f64>,
    #[arg(long)]
    pub label_smoothing: Option<f32>,
    /// Without oos training rows: the share of in-scope dev rows the threshold rejects.
    #[arg(long)]
    pub reject_rate: Option<f64>,
    /// With oos training rows: calibrate the threshold as the lowest whose
    /// dev oos recall reaches this share (e.g. 0.8), instead of maximising
    /// in-scope accuracy + oos recall.
    #[arg(long)]
    pub oos_recall: Option<f64>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Keep the dev-selected model instead of retraining on all rows.
    #[arg(long)]
    pub no_retrain: bool,
    /// The lexical (n-gram) model's share of the blend, 0..1 (0 = the
    /// embedding head alone, 1 = the lexical model alone; default 0.3).
    #[arg(long)]
    pub lexical_weight: Option<f32>,
    /// `eval` only: also print (stderr) the test accuracy (argmax, no
    /// threshold) of the head and lexical model blended with each of these
    /// weights, e.g. `0,0.2,0.4` (needs a lexical model: a weight above 0).
    #[arg(long, value_delimiter = ',')]
    pub sweep_lexical: Option<Vec<f32>>,
    /// `eval` only: also print (stderr) the test in-scope accuracy and oos
    /// recall at each of these thresholds, e.g. `0.05,0.1,0.2`: the
    /// trade-off a threshold chosen on dev picks a point of.
    #[arg(long, value_delimiter = ',')]
    pub sweep_threshold: Option<Vec<f32>>,
    /// At most this many passes for the lexical model.
    #[arg(long)]
    pub lexical_epochs: Option<usize>,
    /// The lexical model's AdaGrad step.
    #[arg(long)]
    pub lexical_lr: Option<f32>,
    /// Word n-grams in fewer training texts than this are dropped.
    #[arg(long)]
    pub word_min_df: Option<u32>,
    /// Character n-grams likewise.
    #[arg(long)]
    pub char_min_df: Option<u32>,
}

impl HeadArgs {
    fn config(&self) -> TrainConfig {
        let mut c = TrainConfig::default();
        if let Some(a) = &self.arch {
            c.architectures = a.iter().map(|a| if a == "mlp" { Arch::Mlp } else { Arch::Linear }).collect();
        }
        c.hidden = self.hidden.unwrap_or(c.hidden);
        c.epochs = self.epochs.unwrap_or(c.epochs);
        c.lr = self.lr.unwrap_or(c.lr);
        c.dropout = self.dropout.unwrap_or(c.dropout);
        c.weight_decay = self.weight_decay.unwrap_or(c.weight_decay);
        c.label_smoothing = self.label_smoothing.unwrap_or(c.label_smoothing);
        c.reject_rate = self.reject_rate.unwrap_or(c.reject_rate);
        c.oos_recall_target = self.oos_recall.or(c.oos_recall_target);
        c.seed = self.seed.unwrap_or(c.seed);
        c.retrain_on_all = !self.no_retrain;
        c.lexical_weight = self.lexical_weight.unwrap_or(c.lexical_weight);
        let l = &mut c.lexical_config;
        l.epochs = self.lexical_epochs.unwrap_or(l.epochs);
        l.lr = self.lexical_lr.unwrap_or(l.lr);
        l.word_min_df = self.word_min_df.unwrap_or(l.word_min_df);
        l.char_min_df = self.char_min_df.unwrap_or(l.char_min_df);
        c
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct TrainArgs {
    /// CSV with `text,intent[,language]` columns (`oos` marks out-of-scope rows).
    #[arg(long)]
    pub data: PathBuf,
    /// The artifact directory to write (replaced atomically).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub head: HeadArgs,
}

#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    #[arg(long)]
    pub train: PathBuf,
    #[arg(long)]
    pub test: PathBuf,
    #[command(flatten)]
    pub head: HeadArgs,
}

/// The embedder with its cache.
struct Encoder {
    model: E5Model,
    cache: Option<EmbedCache>,
}

impl Encoder {
    fn open(model_dir: &Path, use_cache: bool) -> anyhow::Result<Self> {
        let path = model_dir.join(MODEL_FILE);
        let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}: run `aicc models pull {ENCODER}` first", path.display()))?;
        let model = E5Model::from_bytes(&bytes, &path.display().to_string())?;
        let cache = if use_cache {
            // The file's hash names the exact weights: other weights never read these vectors.
            let id = format!("{ENCODER}:{:x}", Sha256::digest(&bytes));
            let file = model_dir.join("cache").join(format!("embeddings-{ENCODER}.bin"));
            match EmbedCache::open(&file, &id, model.dim()) {
                Ok(c) => Some(c),
                Err(e) => {
                    eprintln!("embedding cache {} unusable ({e}); continuing without it", file.display());
                    None
                }
            }
        } else {
            None
        };
        Ok(Self { model, cache })
    }

    fn info(&self) -> EncoderInfo {
        EncoderInfo { name: ENCODER.into(), dim: self.model.dim() }
    }

    /// Query embeddings of `texts`, in order: cached ones read back, the rest
    /// embedded in batches of 32 (similar lengths together, less padding).
    fn embed(&mut self, texts: &[&str], what: &str) -> anyhow::Result<Vec<Vec<f32>>> {
        let kind = EmbedKind::Query;
        let mut todo: Vec<&str> = texts.iter().copied().filter(|t| self.cache.as_ref().is_none_or(|c| c.get(kind, t).is_none())).collect();
        let cached = texts.len() - todo.len();
        todo.sort_by_key(|t| (t.len(), *t));
        todo.dedup();
        let mut fresh: std::collections::HashMap<&str, Vec<f32>> = Default::default();
        if !todo.is_empty() {
            eprintln!("{what}: embedding {} distinct texts of {} ({cached} cached)", todo.len(), texts.len());
        }
        let start = Instant::now();
        let mut last = Instant::now();
        for (b, batch) in todo.chunks(BATCH).enumerate() {
            let vecs = self.model.embed_batch(batch, kind)?;
            if let Some(c) = self.cache.as_mut() {
                let items: Vec<(&str, &[f32])> = batch.iter().copied().zip(vecs.iter().map(Vec::as_slice)).collect();
                if let Err(e) = c.insert(kind, &items) {
                    eprintln!("cannot write the embedding cache ({e}); continuing without it");
                    self.cache = None;
                }
            }
            fresh.extend(batch.iter().copied().zip(vecs));
            let done = ((b + 1) * BATCH).min(todo.len());
            if last.elapsed().as_secs_f64() >= 10.0 || done == todo.len() {
                last = Instant::now();
                let rate = done as f64 / start.elapsed().as_secs_f64().max(1e-9);
                let eta = (todo.len() - done) as f64 / rate.max(1e-9);
                eprintln!("{what}: {done}/{} embedded, {rate:.1} texts/s, {eta:.0} s left", todo.len());
            }
        }
        texts
            .iter()
            .map(|t| {
                fresh.get(t).cloned().or_else(|| self.cache.as_ref().and_then(|c| c.get(kind, t)).map(<[f32]>::to_vec))
                    .with_context(|| format!("no embedding for {t:?}"))
            })
            .collect()
    }
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

/// Embeds and trains; returns the model and the seconds both took.
fn fit(encoder: &mut Encoder, examples: &[intent::Example], head: &HeadArgs) -> anyhow::Result<(intent::IntentModel, f64)> {
    // Bad settings fail before the minutes of embedding.
    let cfg = head.config();
    cfg.check()?;
    let start = Instant::now();
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    let x = encoder.embed(&texts, "train")?;
    let y: Vec<String> = examples.iter().map(|e| e.intent.clone()).collect();
    let texts: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
    let model = intent::train(&texts, &x, &y, &encoder.info(), &cfg, &mut |e| match e.dev_accuracy {
        Some(acc) => eprintln!("{} epoch {}/{}: train loss {:.4}, dev accuracy {:.4}", e.stage, e.epoch, e.epochs, e.train_loss, acc),
        None => eprintln!("{} epoch {}/{}: train loss {:.4}", e.stage, e.epoch, e.epochs, e.train_loss),
    })?;
    let m = &model.meta;
    let lexical = m.lexical.as_ref().map_or("no lexical model".into(), |l| format!("lexical weight {} ({} terms, {} passes)", l.weight, l.terms, l.epochs));
    eprintln!(
        "chose {} ({} epochs), {lexical}, threshold {:.4} ({}); dev accuracy {:.4}",
        m.architecture, m.epochs, m.threshold, m.threshold_rule, m.dev.accuracy
    );
    Ok((model, start.elapsed().as_secs_f64()))
}

pub fn train(args: TrainArgs, model_dir: &Path) -> anyhow::Result<Value> {
    let examples = intent::data::load(&args.data, Rules::TRAIN)?;
    let mut encoder = Encoder::open(model_dir, !args.head.no_cache)?;
    let (model, seconds) = fit(&mut encoder, &examples, &args.head)?;
    model.save(&args.out).with_context(|| format!("cannot write the model to {}", args.out.display()))?;
    let m = &model.meta;
    Ok(json!({
        "out": args.out, "encoder": m.encoder, "architecture": m.architecture, "hidden": m.hidden,
        "intents": m.labels.len(), "n_train": m.n_train, "epochs": m.epochs, "threshold": m.threshold,
        "dev": m.dev, "train_seconds": round4(seconds),
    }))
}

pub fn eval(args: EvalArgs, model_dir: &Path) -> anyhow::Result<Value> {
    // Both files are checked before the slow part starts.
    let train = intent::data::load(&args.train, Rules::TRAIN)?;
    let test = intent::data::load(&args.test, Rules::TEST)?;
    if let Some(weights) = &args.head.sweep_lexical {
        anyhow::ensure!(args.head.config().lexical_weight > 0.0, "--sweep-lexical needs a lexical model: a --lexical-weight above 0");
        if let Some(w) = weights.iter().find(|w| !(0.0..=1.0).contains(*w)) {
            anyhow::bail!("--sweep-lexical weights must be between 0 and 1, not {w}");
        }
    }
    let mut encoder = Encoder::open(model_dir, !args.head.no_cache)?;
    let (model, seconds) = fit(&mut encoder, &train, &args.head)?;
    let texts: Vec<&str> = test.iter().map(|e| e.text.as_str()).collect();
    let x = encoder.embed(&texts, "test")?;
    let predicted: Vec<Option<String>> = model.try_predict(&texts, &x)?.into_iter().map(|p| p.intent).collect();
    let gold: Vec<&str> = test.iter().map(|e| e.intent.as_str()).collect();
    if let Some(weights) = &args.head.sweep_lexical {
        let (head, lexical) = model.part_probabilities(&texts, &x)?;
        let lexical = lexical.context("--sweep-lexical needs a model with a lexical part (a --lexical-weight above 0)")?;
        let labels = model.labels();
        for w in weights {
            let blended = intent::model::blend(&head, &lexical, *w);
            let right = blended.iter().zip(&gold).filter(|(p, g)| labels[intent::head::argmax(p)] == **g).count();
            // The in-scope ceiling: in-scope rows, best in-scope class, never out of scope.
            let in_scope: Vec<(&Vec<f32>, &&str)> = blended.iter().zip(&gold).filter(|(_, g)| **g != OUT_OF_SCOPE).collect();
            let ceiling = in_scope.iter().filter(|(p, g)| model.decide_at(p, 0.0).ranked.first().is_some_and(|(l, _)| l == **g)).count();
            eprintln!(
                "sweep: lexical weight {w}: argmax accuracy {:.4}, in-scope rows never rejected {:.4}",
                right as f64 / gold.len().max(1) as f64,
                ceiling as f64 / in_scope.len().max(1) as f64
            );
        }
    }
    if let Some(thresholds) = &args.head.sweep_threshold {
        // Decided as the model decides (the oos class wins, or the best
        // in-scope probability is under the threshold), per threshold.
        let probs = model.probabilities(&texts, &x)?;
        for &t in thresholds {
            let pred: Vec<Option<String>> = probs.iter().map(|p| model.decide_at(p, t).intent).collect();
            let m = intent::evaluate(&gold, &pred);
            let show = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.4}"));
            eprintln!("sweep: threshold {t}: in-scope accuracy {}, oos recall {}", show(m.in_scope_accuracy), show(m.oos_recall));
        }
    }
    let m = intent::evaluate(&gold, &predicted);
    let mut out = json!({ "accuracy": round4(m.accuracy), "macro_f1": round4(m.macro_f1) });
    if let (Some(a), Some(r)) = (m.in_scope_accuracy, m.oos_recall) {
        out["in_scope_accuracy"] = round4(a).into();
        out["oos_recall"] = round4(r).into();
    }
    out["n_train"] = train.len().into();
    out["n_test"] = test.len().into();
    out["train_seconds"] = round4(seconds).into();
    Ok(out)
}
