//! Training the intent model: a head on precomputed sentence embeddings,
//! blended with the lexical model of `lexical.rs` on the texts.
//!
//! Inputs are standardised per dimension (E5 vectors sit in a narrow cone, so
//! raw coordinates differ by tiny amounts), then an MLP (dim → hidden →
//! classes, ReLU, dropout, label smoothing, AdamW with decoupled weight decay,
//! cosine learning-rate decay) and plain softmax regression are each trained
//! on a stratified split with early stopping on the held-out dev part; the one
//! that scores better on dev is kept, the lexical model is trained on the same
//! split and blended in, the out-of-scope threshold is calibrated on dev, and
//! both are retrained on all rows for their best epoch counts. Everything
//! random comes from seeded RNGs: the same data and settings give the same
//! model.

use std::collections::{BTreeSet, HashMap};

use aicc_core::OUT_OF_SCOPE;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Module, Optimizer, VarBuilder, VarMap};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::lexical::{self, Features, LexicalConfig, Lexicon};
use super::metrics;
use super::model::{blend, decide, DevMetrics, IntentError, IntentMeta, IntentModel, LexicalMeta, FORMAT_VERSION};

/// Names what the code below does beyond its settings (bump it when the
/// training changes): caches of trained models are keyed by it.
pub const RECIPE: &str = "head + lexical, geometric blend, 1";

/// What decides a model trained on the same data with the defaults: the
/// recipe, the artifact format and the default settings. Caches of trained
/// models hash it in, so that new training code trains anew.
pub fn recipe_fingerprint() -> Vec<u8> {
    let mut out = format!("{RECIPE}\n{FORMAT_VERSION}\n").into_bytes();
    out.extend(serde_json::to_vec(&TrainConfig::default()).unwrap_or_default());
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Mlp,
    Linear,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Candidates, compared on dev.
    pub architectures: Vec<Arch>,
    pub hidden: usize,
    /// At most this many epochs; the cosine schedule spans them.
    pub epochs: usize,
    /// Stop after this many epochs without a better dev score.
    pub patience: usize,
    pub batch_size: usize,
    pub lr: f64,
    /// Softmax regression learns faster with a larger step.
    pub linear_lr: f64,
    pub weight_decay: f64,
    /// On the hidden layer; the input gets half of it.
    pub dropout: f32,
    pub label_smoothing: f32,
    pub dev_fraction: f64,
    /// Without `oos` training rows: the share of in-scope dev rows the
    /// threshold rejects (the least confident ones).
    pub reject_rate: f64,
    /// With oos training rows: the threshold is the lowest whose dev oos
    /// recall reaches this share (the most in-scope messages answered for
    /// that recall) instead of the one maximising in-scope accuracy + oos
    /// recall, which, with few oos dev rows, trades many in-scope answers
    /// for one more oos row. Falls back to that rule when unreachable.
    /// (Left out of the serialised settings when unset: caches of trained
    /// models are keyed by them, and unset trains as before.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oos_recall_target: Option<f64>,
    pub retrain_on_all: bool,
    /// The retraining on all rows runs at least this many epochs. A dev split
    /// of one or two rows per intent often peaks at epoch 1 by luck; the
    /// admin API's trainer sets a floor for small sets (0: the best epoch).
    #[serde(default)]
    pub min_final_epochs: usize,
    pub seed: u64,
    /// The lexical model's (word and character n-grams, `lexical.rs`) share
    /// of the blend: probabilities ∝ head^(1 − w) · lexical^w. 0 leaves it
    /// out, 1 is the lexical model alone. A fixed, measured weight: a dev
    /// split's choice was noisier than the differences it chose between, and
    /// blind to a language with few rows (docs/intent.md).
    #[serde(default = "lexical_weight")]
    pub lexical_weight: f32,
    /// The lexical model's features and optimiser (at most `epochs` passes;
    /// the best dev pass count is kept).
    #[serde(default)]
    pub lexical_config: LexicalConfig,
}

fn lexical_weight() -> f32 {
    0.3
}

impl TrainConfig {
    /// Settings no training can run with; `train` calls it, and callers
    /// with slow work before training (embedding) can call it first.
    pub fn check(&self) -> Result<(), IntentError> {
        if self.architectures.is_empty() {
            return Err(IntentError::Invalid("no architecture to train".into()));
        }
        if let Some(r) = self.oos_recall_target.filter(|r| !(0.0..=1.0).contains(r)) {
            return Err(IntentError::Invalid(format!("the oos recall target must be between 0 and 1, not {r}")));
        }
        if !(0.0..=1.0).contains(&self.lexical_weight) {
            return Err(IntentError::Invalid(format!("the lexical weight must be between 0 and 1, not {}", self.lexical_weight)));
        }
        Ok(())
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            architectures: vec![Arch::Mlp, Arch::Linear],
            hidden: 768,
            epochs: 40,
            patience: 8,
            batch_size: 64,
            lr: 1e-3,
            linear_lr: 5e-3,
            weight_decay: 0.01,
            dropout: 0.3,
            label_smoothing: 0.1,
            dev_fraction: 0.1,
            reject_rate: 0.01,
            oos_recall_target: None,
            retrain_on_all: true,
            min_final_epochs: 0,
            seed: 42,
            lexical_weight: lexical_weight(),
            lexical_config: LexicalConfig::default(),
        }
    }
}

/// One line of progress.
#[derive(Debug, Clone)]
pub struct Epoch<'a> {
    /// `mlp`, `linear`, or `final` (the retraining on all rows).
    pub stage: &'a str,
    pub epoch: usize,
    pub epochs: usize,
    pub train_loss: f32,
    /// `None` in the final stage (there is no held-out data left).
    pub dev_accuracy: Option<f64>,
}

/// What the embeddings are, for the artifact's metadata.
#[derive(Debug, Clone)]
pub struct EncoderInfo {
    pub name: String,
    pub dim: usize,
}

/// Per class, a seeded shuffle; `round(fraction · n)` rows (at least one, at
/// most n − 1) go to dev. Returns (train, dev) row indices, each sorted.
pub fn stratified_split(labels: &[usize], fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let classes: BTreeSet<usize> = labels.iter().copied().collect();
    let (mut train, mut dev) = (vec![], vec![]);
    for c in classes {
        let mut rows: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
        rows.shuffle(&mut rng);
        let n = rows.len();
        let k = if n < 2 { 0 } else { ((fraction * n as f64).round() as usize).clamp(1, n - 1) };
        dev.extend_from_slice(&rows[..k]);
        train.extend_from_slice(&rows[k..]);
    }
    train.sort_unstable();
    dev.sort_unstable();
    (train, dev)
}

/// The out-of-scope threshold, from dev probabilities (`gold` are class indices).
///
/// With an `oos` class: the threshold that maximises in-scope accuracy + oos
/// recall on dev (the middle of the best range, to sit away from single dev
/// rows), or with `oos_recall_target`, the lowest whose oos recall reaches
/// it. Without: the `reject_rate` quantile of the best in-scope
/// probability, so that share of in-scope dev rows would be rejected.
pub fn calibrate(probs: &[Vec<f32>], gold: &[usize], labels: &[String], oos: Option<usize>, reject_rate: f64, oos_recall_target: Option<f64>) -> (f32, String) {
    let best_in_scope = |p: &Vec<f32>| p.iter().enumerate().filter(|(i, _)| Some(*i) != oos).map(|(_, v)| *v).fold(0f32, f32::max);
    let Some(o) = oos.filter(|o| gold.contains(o)) else {
        let mut conf: Vec<f32> = probs.iter().zip(gold).filter(|(_, g)| Some(**g) != oos).map(|(p, _)| best_in_scope(p)).collect();
        conf.sort_by(f32::total_cmp);
        let k = (reject_rate * conf.len() as f64).floor() as usize;
        // Rejecting is `confidence < threshold`: the k least confident rows fall under it.
        let t = if k == 0 || conf.is_empty() { 0.0 } else { conf[k.min(conf.len() - 1)] };
        return (t, format!("rejects the {:.1}% least confident in-scope dev rows (no oos training rows)", reject_rate * 100.0));
    };
    let mut candidates: Vec<f32> = probs.iter().map(best_in_scope).collect();
    candidates.push(0.0);
    candidates.push(1.0 + f32::EPSILON);
    candidates.sort_by(f32::total_cmp);
    candidates.dedup();
    let gold_names: Vec<&str> = gold.iter().map(|&g| labels[g].as_str()).collect();
    // Each row decided once; a threshold only turns confident answers away.
    let decided: Vec<_> = probs.iter().map(|p| decide(p, labels, Some(o), 0.0)).collect();
    let metrics_at = |t: f32| {
        let pred: Vec<Option<String>> = decided.iter().map(|d| d.intent.clone().filter(|_| d.confidence >= t)).collect();
        metrics::evaluate(&gold_names, &pred)
    };
    if let Some(target) = oos_recall_target {
        // Rejecting only turns answers away: in-scope accuracy falls and oos
        // recall rises with the threshold, so the lowest threshold that
        // reaches the target recall answers the most in-scope messages.
        if let Some(&t) = candidates.iter().find(|&&t| metrics_at(t).oos_recall.unwrap_or(0.0) >= target) {
            return (t, format!("the lowest that rejects {:.0}% of the oos dev rows", target * 100.0));
        }
    }
    let scores: Vec<f64> = candidates
        .iter()
        .map(|&t| {
            let m = metrics_at(t);
            m.in_scope_accuracy.unwrap_or(0.0) + m.oos_recall.unwrap_or(0.0)
        })
        .collect();
    let best = scores.iter().copied().fold(f64::MIN, f64::max);
    let first = scores.iter().position(|s| *s >= best - 1e-12).unwrap_or(0);
    // The run of equally good candidates starting at `first`; its middle.
    let last = first + scores[first..].iter().take_while(|s| **s >= best - 1e-12).count() - 1;
    let t = if last + 1 < candidates.len() && last > first { (candidates[first] + candidates[last]) / 2.0 } else { candidates[first] };
    (t, "maximises in-scope accuracy + oos recall on the dev split".into())
}

struct Data {
    x: Tensor,
    y: Tensor,
    y_host: Vec<usize>,
}

impl Data {
    fn new(x: &[Vec<f32>], y: &[usize], rows: &[usize], mean: &[f32], std: &[f32]) -> candle_core::Result<Self> {
        let d = mean.len();
        let mut flat = Vec::with_capacity(rows.len() * d);
        for &r in rows {
            flat.extend(x[r].iter().zip(mean).zip(std).map(|((v, m), s)| (v - m) / s));
        }
        let y_host: Vec<usize> = rows.iter().map(|&r| y[r]).collect();
        Ok(Self {
            x: Tensor::from_vec(flat, (rows.len(), d), &Device::Cpu)?,
            y: Tensor::from_vec(y_host.iter().map(|&v| v as u32).collect::<Vec<_>>(), rows.len(), &Device::Cpu)?,
            y_host,
        })
    }
}

fn standardisation(x: &[Vec<f32>], rows: &[usize], d: usize) -> (Vec<f32>, Vec<f32>) {
    let n = rows.len().max(1) as f64;
    let mut mean = vec![0f64; d];
    for &r in rows {
        for (m, v) in mean.iter_mut().zip(&x[r]) {
            *m += *v as f64 / n;
        }
    }
    let mut var = vec![0f64; d];
    for &r in rows {
        for ((s, v), m) in var.iter_mut().zip(&x[r]).zip(&mean) {
            *s += (*v as f64 - m).powi(2) / n;
        }
    }
    (mean.iter().map(|m| *m as f32).collect(), var.iter().map(|v| (v.sqrt() as f32).max(1e-6)).collect())
}

/// Uniform(−1/√fan_in, 1/√fan_in), as PyTorch initialises linear layers.
fn init(varmap: &VarMap, name: &str, out: usize, inp: usize, rng: &mut StdRng) -> candle_core::Result<()> {
    let bound = 1.0 / (inp as f32).sqrt();
    let mut uniform = |n: usize| (0..n).map(|_| rng.gen_range(-bound..bound)).collect::<Vec<f32>>();
    let w = Tensor::from_vec(uniform(out * inp), (out, inp), &Device::Cpu)?;
    let b = Tensor::from_vec(uniform(out), out, &Device::Cpu)?;
    let mut data = varmap.data().lock().unwrap_or_else(|p| p.into_inner());
    data.insert(format!("{name}.weight"), Var::from_tensor(&w)?);
    data.insert(format!("{name}.bias"), Var::from_tensor(&b)?);
    Ok(())
}

/// Inverted dropout with a mask from our own RNG (candle's would not be seeded).
fn dropout(x: &Tensor, p: f32, rng: &mut StdRng) -> candle_core::Result<Tensor> {
    if p <= 0.0 {
        return Ok(x.clone());
    }
    let keep = 1.0 / (1.0 - p);
    let mask: Vec<f32> = (0..x.elem_count()).map(|_| if rng.gen::<f32>() < p { 0.0 } else { keep }).collect();
    x.mul(&Tensor::from_vec(mask, x.shape(), x.device())?)
}

struct Net {
    varmap: VarMap,
    layers: Vec<candle_nn::Linear>,
}

impl Net {
    fn new(arch: Arch, d: usize, hidden: usize, classes: usize, rng: &mut StdRng) -> candle_core::Result<Self> {
        let varmap = VarMap::new();
        let widths: Vec<(&'static str, usize, usize)> = match arch {
            Arch::Mlp => vec![("l1", d, hidden), ("l2", hidden, classes)],
            Arch::Linear => vec![("out", d, classes)],
        };
        for &(name, inp, out) in &widths {
            init(&varmap, name, out, inp, rng)?;
        }
        // The VarBuilder finds the seeded variables already in the map.
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let layers = widths.iter().map(|&(name, inp, out)| candle_nn::linear(inp, out, vb.pp(name))).collect::<candle_core::Result<_>>()?;
        Ok(Self { varmap, layers })
    }

    fn forward(&self, x: &Tensor, train: Option<(f32, &mut StdRng)>) -> candle_core::Result<Tensor> {
        let (p, mut rng) = match train {
            Some((p, rng)) => (p, Some(rng)),
            None => (0.0, None),
        };
        let mut x = match rng.as_deref_mut() {
            Some(r) => dropout(x, p / 2.0, r)?,
            None => x.clone(),
        };
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x)?;
            if i + 1 < self.layers.len() {
                x = x.relu()?;
                if let Some(r) = rng.as_deref_mut() {
                    x = dropout(&x, p, r)?;
                }
            }
        }
        Ok(x)
    }

    /// Copies of the current weights (a later step must not change them).
    fn snapshot(&self) -> candle_core::Result<HashMap<String, Tensor>> {
        let data = self.varmap.data().lock().unwrap_or_else(|p| p.into_inner());
        data.iter().map(|(k, v)| Ok((k.clone(), v.as_tensor().copy()?))).collect()
    }
}

/// Cross-entropy against (1 − ε)·one-hot + ε·uniform.
fn smoothed_loss(logits: &Tensor, y: &Tensor, eps: f32) -> candle_core::Result<Tensor> {
    let log_p = candle_nn::ops::log_softmax(logits, 1)?;
    let nll = log_p.gather(&y.unsqueeze(1)?, 1)?.mean_all()?.neg()?;
    if eps <= 0.0 {
        return Ok(nll);
    }
    let uniform = log_p.mean_all()?.neg()?;
    (nll * (1.0 - eps as f64))? + (uniform * eps as f64)?
}

fn probabilities(net: &Net, x: &Tensor) -> candle_core::Result<Vec<Vec<f32>>> {
    candle_nn::ops::softmax_last_dim(&net.forward(x, None)?)?.to_vec2::<f32>()
}

/// The share of rows whose most probable class is the gold one.
pub fn accuracy(probs: &[Vec<f32>], gold: &[usize]) -> f64 {
    probs.iter().zip(gold).filter(|(p, g)| argmax(p) == **g).count() as f64 / gold.len().max(1) as f64
}

/// The most probable class (the first of equals).
pub fn argmax(p: &[f32]) -> usize {
    p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0))).map_or(0, |(i, _)| i)
}

struct Run {
    best_epoch: usize,
    weights: HashMap<String, Tensor>,
    dev_probs: Vec<Vec<f32>>,
}

/// Trains one network. With `dev`, keeps the weights of the best dev epoch
/// (accuracy, ties to the lower dev loss) and stops after `patience` epochs
/// without progress; without, trains exactly `fixed_epochs`.
fn fit(
    arch: Arch,
    cfg: &TrainConfig,
    classes: usize,
    train: &Data,
    dev: Option<&Data>,
    fixed_epochs: usize,
    rng: &mut StdRng,
    stage: &str,
    progress: &mut dyn FnMut(&Epoch),
) -> candle_core::Result<Run> {
    let d = train.x.dim(1)?;
    let net = Net::new(arch, d, cfg.hidden, classes, rng)?;
    let lr = if arch == Arch::Linear { cfg.linear_lr } else { cfg.lr };
    let params = candle_nn::ParamsAdamW { lr, weight_decay: cfg.weight_decay, ..Default::default() };
    let mut opt = candle_nn::AdamW::new(net.varmap.all_vars(), params)?;
    let n = train.y_host.len();
    let batch = cfg.batch_size.max(1);
    let steps_per_epoch = n.div_ceil(batch);
    let total_steps = (cfg.epochs.max(1) * steps_per_epoch) as f64;
    let dropout = if arch == Arch::Mlp { cfg.dropout } else { 0.0 };
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut best: Option<(f64, f64, usize, HashMap<String, Tensor>, Vec<Vec<f32>>)> = None;
    let (mut step, mut since_best) = (0usize, 0usize);
    let epochs = if dev.is_some() { cfg.epochs } else { fixed_epochs };
    for epoch in 1..=epochs {
        order.shuffle(rng);
        let mut loss_sum = 0f64;
        for chunk in order.chunks(batch) {
            // Cosine decay from lr to 0 over the configured epochs.
            opt.set_learning_rate(lr * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / total_steps).cos()));
            step += 1;
            let idx = Tensor::from_slice(chunk, chunk.len(), &Device::Cpu)?;
            let (xb, yb) = (train.x.index_select(&idx, 0)?, train.y.index_select(&idx, 0)?);
            let logits = net.forward(&xb, Some((dropout, &mut *rng)))?;
            let loss = smoothed_loss(&logits, &yb, cfg.label_smoothing)?;
            opt.backward_step(&loss)?;
            loss_sum += loss.to_scalar::<f32>()? as f64 * chunk.len() as f64;
        }
        let train_loss = (loss_sum / n.max(1) as f64) as f32;
        let Some(dev) = dev else {
            progress(&Epoch { stage, epoch, epochs, train_loss, dev_accuracy: None });
            continue;
        };
        let probs = probabilities(&net, &dev.x)?;
        let acc = accuracy(&probs, &dev.y_host);
        let dev_loss = probs.iter().zip(&dev.y_host).map(|(p, &g)| -(p[g].max(1e-12) as f64).ln()).sum::<f64>() / dev.y_host.len().max(1) as f64;
        progress(&Epoch { stage, epoch, epochs, train_loss, dev_accuracy: Some(acc) });
        let better = best.as_ref().is_none_or(|(a, l, ..)| acc > *a || (acc == *a && dev_loss < *l));
        if better {
            best = Some((acc, dev_loss, epoch, net.snapshot()?, probs));
            since_best = 0;
        } else {
            since_best += 1;
            if since_best >= cfg.patience.max(1) {
                break;
            }
        }
    }
    Ok(match best {
        Some((_, _, best_epoch, weights, dev_probs)) => Run { best_epoch, weights, dev_probs },
        None => Run { best_epoch: epochs, weights: net.snapshot()?, dev_probs: vec![] },
    })
}

/// A candidate's dev figures: the threshold calibrated on `probs`, the
/// metrics with it, and the score candidates are compared by (in-scope
/// accuracy + oos recall with oos rows; plain argmax accuracy without).
fn dev_score(probs: &[Vec<f32>], gold: &[usize], labels: &[String], oos: Option<usize>, cfg: &TrainConfig, gold_names: &[&str]) -> (f64, f32, String, metrics::Metrics) {
    let (threshold, rule) = calibrate(probs, gold, labels, oos, cfg.reject_rate, cfg.oos_recall_target);
    let pred: Vec<Option<String>> = probs.iter().map(|p| decide(p, labels, oos, threshold).intent).collect();
    let m = metrics::evaluate(gold_names, &pred);
    let score = match (m.in_scope_accuracy, m.oos_recall) {
        (Some(a), Some(r)) => a + r,
        _ => accuracy(probs, gold),
    };
    (score, threshold, rule, m)
}

/// The vocabulary of `rows`' texts, their feature vectors and labels.
fn lexical_rows(texts: &[String], y: &[usize], rows: &[usize], cfg: &LexicalConfig) -> (Lexicon, Vec<Features>, Vec<usize>) {
    let row_texts: Vec<&str> = rows.iter().map(|&r| texts[r].as_str()).collect();
    let lexicon = Lexicon::build(&row_texts, cfg.word_min_df, cfg.char_min_df);
    let x = row_texts.iter().map(|t| lexicon.features(t)).collect();
    (lexicon, x, rows.iter().map(|&r| y[r]).collect())
}

/// Trains the lexical model on `train_rows` with early stopping on
/// `dev_rows`; returns the best pass count and that pass's dev probabilities
/// (`None` when the training texts have no terms).
#[allow(clippy::too_many_arguments)]
fn fit_lexical_on_dev(
    texts: &[String],
    y: &[usize],
    train_rows: &[usize],
    dev_rows: &[usize],
    classes: usize,
    cfg: &LexicalConfig,
    patience: usize,
    rng: &mut StdRng,
    progress: &mut dyn FnMut(&Epoch),
) -> Option<(usize, Vec<Vec<f32>>)> {
    let (lexicon, xt, yt) = lexical_rows(texts, y, train_rows, cfg);
    if lexicon.is_empty() {
        return None;
    }
    let xd: Vec<Features> = dev_rows.iter().map(|&r| lexicon.features(&texts[r])).collect();
    let yd: Vec<usize> = dev_rows.iter().map(|&r| y[r]).collect();
    let mut best: Option<(f64, usize, Vec<Vec<f32>>)> = None;
    let mut since_best = 0;
    lexical::fit(lexicon, &xt, &yt, classes, cfg, rng, &mut |epoch, loss, m| {
        let probs: Vec<Vec<f32>> = xd.iter().map(|x| lexical::softmax(m.logits_of(x))).collect();
        let acc = accuracy(&probs, &yd);
        progress(&Epoch { stage: "lexical", epoch, epochs: cfg.epochs, train_loss: loss, dev_accuracy: Some(acc) });
        if best.as_ref().is_none_or(|b| acc > b.0) {
            best = Some((acc, epoch, probs));
            since_best = 0;
        } else {
            since_best += 1;
        }
        since_best < patience.max(1)
    });
    best.map(|b| (b.1, b.2))
}

/// Trains an intent model on `texts` and their `embeddings` (one per example,
/// `encoder.dim` long, in the order of `intents`). `oos` labels mark
/// out-of-scope rows.
pub fn train(
    texts: &[String],
    embeddings: &[Vec<f32>],
    intents: &[String],
    encoder: &EncoderInfo,
    cfg: &TrainConfig,
    progress: &mut dyn FnMut(&Epoch),
) -> Result<IntentModel, IntentError> {
    let d = encoder.dim;
    if embeddings.len() != intents.len() || texts.len() != intents.len() {
        return Err(IntentError::Invalid(format!("{} texts and {} embeddings for {} labels", texts.len(), embeddings.len(), intents.len())));
    }
    if let Some(bad) = embeddings.iter().find(|e| e.len() != d) {
        return Err(IntentError::Invalid(format!("an embedding has {} values; the encoder's dim is {d}", bad.len())));
    }
    cfg.check()?;
    let labels: Vec<String> = intents.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect();
    if labels.len() < 2 {
        return Err(IntentError::Invalid("at least two intents are needed".into()));
    }
    let index: HashMap<&str, usize> = labels.iter().enumerate().map(|(i, l)| (l.as_str(), i)).collect();
    let y: Vec<usize> = intents.iter().map(|l| index[l.as_str()]).collect();
    let oos = index.get(OUT_OF_SCOPE).copied();
    let (train_rows, dev_rows) = stratified_split(&y, cfg.dev_fraction, cfg.seed);
    if dev_rows.is_empty() || train_rows.is_empty() {
        return Err(IntentError::Invalid("too few examples for a dev split (every intent needs two)".into()));
    }
    let mut rng = StdRng::seed_from_u64(cfg.seed.wrapping_add(1));
    let (mean, std) = standardisation(embeddings, &train_rows, d);
    let train_data = Data::new(embeddings, &y, &train_rows, &mean, &std)?;
    let dev_data = Data::new(embeddings, &y, &dev_rows, &mean, &std)?;
    let dev_gold: Vec<&str> = dev_rows.iter().map(|&r| labels[y[r]].as_str()).collect();

    let dev_score = |probs: &[Vec<f32>]| dev_score(probs, &dev_data.y_host, &labels, oos, cfg, &dev_gold);

    // Each candidate: dev-selected weights, then its calibrated dev score.
    let mut chosen: Option<(f64, Arch, Run)> = None;
    for &arch in &cfg.architectures {
        let stage = if arch == Arch::Mlp { "mlp" } else { "linear" };
        let run = fit(arch, cfg, labels.len(), &train_data, Some(&dev_data), 0, &mut rng, stage, progress)?;
        let (score, ..) = dev_score(&run.dev_probs);
        if chosen.as_ref().is_none_or(|c| score > c.0) {
            chosen = Some((score, arch, run));
        }
    }
    let Some((_, arch, run)) = chosen else {
        return Err(IntentError::Invalid("no architecture to train".into()));
    };

    // The lexical model on the same split (its pass count chosen on dev),
    // blended in before the threshold is calibrated on dev.
    let mut dev_probs = run.dev_probs.clone();
    // Its own RNG: the head's retraining below draws the same numbers with or without it.
    let mut lex_rng = StdRng::seed_from_u64(cfg.seed.wrapping_add(2));
    let mut lexical_passes: Option<usize> = None;
    if cfg.lexical_weight > 0.0 {
        let lex_cfg = LexicalConfig { epochs: cfg.lexical_config.epochs.max(1), ..cfg.lexical_config };
        // Texts with no words at all give no vocabulary and no lexical model.
        if let Some((lex_epochs, lex_probs)) = fit_lexical_on_dev(texts, &y, &train_rows, &dev_rows, labels.len(), &lex_cfg, cfg.patience, &mut lex_rng, progress) {
            dev_probs = blend(&run.dev_probs, &lex_probs, cfg.lexical_weight);
            lexical_passes = Some(lex_epochs);
        }
    }
    let (_, threshold, rule, dev_m) = dev_score(&dev_probs);

    let (weights, mean, std, epochs, n_train, final_rows) = if cfg.retrain_on_all {
        let all: Vec<usize> = (0..y.len()).collect();
        let (mean, std) = standardisation(embeddings, &all, d);
        let all_data = Data::new(embeddings, &y, &all, &mean, &std)?;
        let epochs = run.best_epoch.max(cfg.min_final_epochs).min(cfg.epochs.max(1));
        let again = fit(arch, cfg, labels.len(), &all_data, None, epochs, &mut rng, "final", progress)?;
        (again.weights, mean, std, epochs, y.len(), all)
    } else {
        (run.weights, mean, std, run.best_epoch, train_rows.len(), train_rows.clone())
    };
    // The lexical model for keeps: on the same rows as the head, for its best dev pass count.
    let lexical = lexical_passes.map(|lex_epochs| {
        let lex_cfg = LexicalConfig { epochs: lex_epochs, ..cfg.lexical_config };
        let (lexicon, x, yr) = lexical_rows(texts, &y, &final_rows, &lex_cfg);
        let model = lexical::fit(lexicon, &x, &yr, labels.len(), &lex_cfg, &mut lex_rng, &mut |epoch, loss, _| {
            progress(&Epoch { stage: "lexical final", epoch, epochs: lex_epochs, train_loss: loss, dev_accuracy: None });
            true
        });
        (model, cfg.lexical_weight, lex_epochs)
    });
    let mut tensors = weights;
    tensors.insert("norm.mean".into(), Tensor::from_vec(mean, d, &Device::Cpu)?);
    tensors.insert("norm.std".into(), Tensor::from_vec(std, d, &Device::Cpu)?);
    let meta = IntentMeta {
        format_version: FORMAT_VERSION,
        encoder: encoder.name.clone(),
        prefix: "query".into(),
        dim: d,
        architecture: if arch == Arch::Mlp { "mlp" } else { "linear" }.into(),
        hidden: (arch == Arch::Mlp).then_some(cfg.hidden),
        labels,
        threshold,
        threshold_rule: rule,
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        n_train,
        epochs,
        dev: DevMetrics {
            accuracy: dev_m.accuracy,
            macro_f1: dev_m.macro_f1,
            in_scope_accuracy: dev_m.in_scope_accuracy,
            oos_recall: dev_m.oos_recall,
            n: dev_m.n,
        },
        config: serde_json::to_value(cfg).unwrap_or_default(),
        lexical: lexical.as_ref().map(|(m, weight, epochs)| LexicalMeta { weight: *weight, terms: m.lexicon.len(), epochs: *epochs }),
    };
    if let Some((m, ..)) = &lexical {
        tensors.extend(m.tensors()?);
    }
    IntentModel::new(meta, tensors, "the trained head")
}
