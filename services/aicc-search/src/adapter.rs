//! The tenant's fine-tuned retrieval model: a residual linear adapter on the
//! query embeddings, `q' = normalise(q + A·q)`, trained (candle) so that the
//! tenant's labelled customer messages land on the articles of their intent.
//! `A` starts at zero, so an untrained adapter is zero-shot retrieval, and the
//! article vectors are left alone (no re-embedding when the adapter changes).
//!
//! Loss: for each message, −log of the softmax mass on its intent's articles
//! (an intent may have an article per language) over all articles, at a low
//! temperature; each article's own question is a message too, aimed at that
//! article alone; weight decay keeps `A` small. The epoch with the best recall@1
//! on a held-out tenth of the messages is kept.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::Optimizer;

/// The stored adapter's format: 2 is trained on the articles' own questions
/// too and keeps in `intents` only what it learned (1 kept every article's
/// intent, which left the articles of intents without messages behind a
/// query space trained to avoid them); 3 trains at temperature 0.02, not
/// 0.05 (the demo's stored adapter is retrained when older).
pub const FORMAT: u64 = 3;

/// Whether a stored adapter's description is of the current format.
pub fn is_current(meta: &serde_json::Value) -> bool {
    meta["format"].as_u64() == Some(FORMAT)
}

#[derive(Debug, Clone)]
pub struct Adapter {
    pub dim: usize,
    /// `A`, row-major `dim × dim`.
    pub weight: Vec<f32>,
    /// The embedder the adapter was trained for.
    pub encoder: String,
    /// Held-out recall@1 before and after training.
    pub metrics: AdapterMetrics,
    /// The intents it pulled queries towards: those with training messages
    /// and articles. It pulls queries towards those articles and away from
    /// the rest, so articles of any other intent (one without messages, or
    /// added after training) are scored without it. Articles without an
    /// intent count as known (they were there as negatives, and a new one is
    /// indistinguishable). Empty for adapters stored before this was kept:
    /// then every article counts as known.
    pub intents: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct AdapterMetrics {
    pub n_train: usize,
    pub n_dev: usize,
    pub dev_recall_at_1_zero_shot: f32,
    pub dev_recall_at_1: f32,
    pub epochs: usize,
    /// The adapted query space's cosine range on held-out messages: a typical
    /// best wrong article (median) and a typical right one (median), what the
    /// fusion maps to confidence 0 and 1.
    #[serde(default)]
    pub cos_floor: f32,
    #[serde(default)]
    pub cos_ceil: f32,
}

#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// At least this many epochs, and more when needed to reach `min_steps`
    /// optimiser steps (a small tenant's few hundred messages are one or two
    /// batches an epoch).
    pub epochs: usize,
    pub min_steps: usize,
    pub lr: f64,
    pub weight_decay: f64,
    /// Of the softmax over articles. 0.02 was chosen on three Korean and one
    /// English tuning split (`aicc eval retrieval --holdout-seed`): mean
    /// recall@1 +3 points English, +1 Korean against 0.05 (docs/benchmarks.md).
    pub temperature: f32,
    pub batch: usize,
    pub seed: u64,
    /// How often each article's own question is trained on.
    pub question_repeat: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig { epochs: 30, min_steps: 300, lr: 2e-3, weight_decay: 1e-2, temperature: 0.02, batch: 256, seed: 7, question_repeat: 10 }
    }
}

impl Adapter {
    /// Whether the adapter was trained towards articles of this intent.
    pub fn learned(&self, intent: Option<&str>) -> bool {
        match intent {
            None => true,
            Some(i) => self.intents.is_empty() || self.intents.iter().any(|x| x == i),
        }
    }

    pub fn apply(&self, q: &[f32]) -> Vec<f32> {
        let d = self.dim;
        let mut out: Vec<f32> = q.to_vec();
        for (i, o) in out.iter_mut().enumerate() {
            *o += crate::vector::dot_f32(&self.weight[i * d..(i + 1) * d], q);
        }
        let n = out.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        out.iter_mut().for_each(|x| *x /= n);
        out
    }

    /// Safetensors bytes of `A` plus a JSON description, for the Store.
    pub fn to_parts(&self) -> anyhow::Result<(serde_json::Value, Vec<u8>)> {
        let t = Tensor::from_slice(&self.weight, (self.dim, self.dim), &Device::Cpu)?;
        let bytes = safetensors::serialize([("adapter.weight", &t)], None)?;
        let meta = serde_json::json!({ "kind": "query_adapter", "format": FORMAT, "encoder": self.encoder, "dim": self.dim, "metrics": self.metrics, "intents": self.intents });
        Ok((meta, bytes))
    }

    pub fn from_parts(meta: &serde_json::Value, bytes: &[u8]) -> anyhow::Result<Self> {
        let dim = meta["dim"].as_u64().ok_or_else(|| anyhow::anyhow!("adapter meta without dim"))? as usize;
        let tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)?;
        let t = tensors.get("adapter.weight").ok_or_else(|| anyhow::anyhow!("adapter weights missing"))?;
        anyhow::ensure!(t.dims() == [dim, dim], "adapter weights of shape {:?}, expected {dim}×{dim}", t.dims());
        Ok(Adapter {
            dim,
            weight: t.flatten_all()?.to_vec1::<f32>()?,
            encoder: meta["encoder"].as_str().unwrap_or_default().to_string(),
            metrics: serde_json::from_value(meta["metrics"].clone()).unwrap_or_default(),
            intents: serde_json::from_value(meta["intents"].clone()).unwrap_or_default(),
        })
    }
}

/// Trains an adapter. `articles[j]` is article j's (vector, intent, language);
/// `messages[i]` a labelled message's (query vector, intent, language if
/// known). A message's targets are its intent's articles in its language when
/// there are any (a Korean customer should land on the Korean article, not
/// on whichever translation is easiest), else all of its intent's articles.
/// Messages whose intent has no article are ignored. `questions[k]` is the
/// query vector of article `questions[k].1`'s own question: trained on (never
/// held out), repeated `cfg.question_repeat` times, each towards its article
/// alone, so that every article is learned, including those of an intent
/// with no messages (a tenant's own "general" questions) and the articles
/// sharing one intent are told apart. None when there is nothing to learn
/// from (fewer than 10 usable messages).
pub fn train(
    encoder: &str,
    articles: &[(Vec<f32>, Option<String>, String)],
    messages: &[(Vec<f32>, String, Option<String>)],
    questions: &[(Vec<f32>, usize)],
    cfg: &TrainConfig,
    mut progress: impl FnMut(usize, f32, f32),
) -> anyhow::Result<Option<Adapter>> {
    let dim = match articles.first() {
        Some((v, _, _)) => v.len(),
        None => return Ok(None),
    };
    let mut by_intent: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut by_intent_language: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    for (j, (_, intent, language)) in articles.iter().enumerate() {
        if let Some(i) = intent {
            by_intent.entry(i.as_str()).or_default().push(j);
            by_intent_language.entry((i.as_str(), language.as_str())).or_default().push(j);
        }
    }
    let mut learned: Vec<String> = Vec::new();
    let mut usable: Vec<(&[f32], &[usize])> = messages
        .iter()
        .filter(|(v, _, _)| v.len() == dim)
        .filter_map(|(v, intent, language)| {
            let same = language.as_deref().and_then(|l| by_intent_language.get(&(intent.as_str(), l)));
            let targets = same.or_else(|| by_intent.get(intent.as_str()))?;
            learned.push(intent.clone());
            Some((v.as_slice(), targets.as_slice()))
        })
        .collect();
    // Only intents with messages (or article questions, below) are pulled
    // towards: the articles of the others are negatives all along (queries
    // learn to avoid them), so they are scored with the raw query, as if
    // added after training.
    if usable.len() < 10 {
        return Ok(None);
    }
    let n_messages = usable.len();
    for (v, j) in questions.iter().filter(|(v, j)| v.len() == dim && *j < articles.len()) {
        if let Some(intent) = &articles[*j].1 {
            learned.push(intent.clone());
        }
        for _ in 0..cfg.question_repeat {
            usable.push((v.as_slice(), std::slice::from_ref(j)));
        }
    }
    learned.sort();
    learned.dedup();
    // A deterministic shuffle of the messages, then a tenth of them held out.
    let mut order: Vec<usize> = (0..n_messages).collect();
    let mut x = cfg.seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    for i in (1..order.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let n_dev = (n_messages / 10).max(1);
    let (dev, train_rows) = order.split_at(n_dev);
    let train_rows: Vec<usize> = train_rows.iter().copied().chain(n_messages..usable.len()).collect();

    let dev_ = Device::Cpu;
    let n_art = articles.len();
    let p = Tensor::from_vec(articles.iter().flat_map(|(v, _, _)| v.iter().copied()).collect(), (n_art, dim), &dev_)?;
    let pt = p.t()?.contiguous()?;
    let a = Var::from_tensor(&Tensor::zeros((dim, dim), DType::F32, &dev_)?)?;
    let params = candle_nn::ParamsAdamW { lr: cfg.lr, weight_decay: cfg.weight_decay, ..Default::default() };
    let mut opt = candle_nn::AdamW::new(vec![a.clone()], params)?;

    let batch = |rows: &[usize]| -> candle_core::Result<(Tensor, Tensor)> {
        let q = Tensor::from_vec(rows.iter().flat_map(|&r| usable[r].0.iter().copied()).collect(), (rows.len(), dim), &dev_)?;
        let mut mask = vec![-1e9f32; rows.len() * n_art];
        for (i, &r) in rows.iter().enumerate() {
            for &j in usable[r].1 {
                mask[i * n_art + j] = 0.0;
            }
        }
        Ok((q, Tensor::from_vec(mask, (rows.len(), n_art), &dev_)?))
    };
    let logits = |q: &Tensor| -> candle_core::Result<Tensor> {
        let adapted = (q + q.matmul(&a.as_tensor().t()?)?)?;
        let norm = adapted.sqr()?.sum_keepdim(1)?.sqrt()?;
        let unit = adapted.broadcast_div(&norm)?;
        unit.matmul(&pt)? / cfg.temperature as f64
    };
    let recall_at_1 = |rows: &[usize]| -> candle_core::Result<f32> {
        let (q, _) = batch(rows)?;
        let best = logits(&q)?.argmax(D::Minus1)?.to_vec1::<u32>()?;
        let hits = rows.iter().zip(best).filter(|(&r, b)| usable[r].1.contains(&(*b as usize))).count();
        Ok(hits as f32 / rows.len() as f32)
    };

    let zero_shot = recall_at_1(dev)?;
    let (mut best, mut best_epoch, mut best_weight) = (zero_shot, 0, a.as_tensor().copy()?);
    let mut rows = train_rows.to_vec();
    let steps_per_epoch = rows.len().div_ceil(cfg.batch).max(1);
    let epochs = cfg.epochs.max(cfg.min_steps.div_ceil(steps_per_epoch)).min(1000);
    for epoch in 1..=epochs {
        for i in (1..rows.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            rows.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let mut total = 0f32;
        for chunk in rows.chunks(cfg.batch) {
            let (q, mask) = batch(chunk)?;
            let z = logits(&q)?;
            let pos = z.broadcast_add(&mask)?.log_sum_exp(1)?;
            let all = z.log_sum_exp(1)?;
            let loss = (all - pos)?.mean_all()?;
            opt.backward_step(&loss)?;
            total += loss.to_scalar::<f32>()? * chunk.len() as f32;
        }
        let r1 = recall_at_1(dev)?;
        progress(epoch, total / rows.len() as f32, r1);
        // A tie keeps the later epoch: it has learned more of what the
        // held-out messages cannot show (the articles' own questions).
        if r1 >= best {
            (best, best_epoch, best_weight) = (r1, epoch, a.as_tensor().copy()?);
        }
    }
    // Calibration with the kept weights: cosines of the right and the best wrong article.
    a.set(&best_weight)?;
    let (q, _) = batch(dev)?;
    let cos = (logits(&q)? * cfg.temperature as f64)?.to_vec2::<f32>()?;
    let (mut right, mut wrong) = (Vec::new(), Vec::new());
    for (row, &r) in cos.iter().zip(dev) {
        let pos = usable[r].1;
        right.push(pos.iter().map(|&j| row[j]).fold(f32::MIN, f32::max));
        wrong.push(row.iter().enumerate().filter(|(j, _)| !pos.contains(j)).map(|(_, &c)| c).fold(f32::MIN, f32::max));
    }
    let median = |v: &mut Vec<f32>| {
        v.sort_by(f32::total_cmp);
        v[v.len() / 2]
    };
    let (cos_floor, cos_ceil) = (median(&mut wrong), median(&mut right));
    Ok(Some(Adapter {
        dim,
        weight: best_weight.flatten_all()?.to_vec1::<f32>()?,
        encoder: encoder.to_string(),
        metrics: AdapterMetrics {
            n_train: train_rows.len(),
            n_dev: dev.len(),
            dev_recall_at_1_zero_shot: zero_shot,
            dev_recall_at_1: best,
            epochs: best_epoch,
            cos_floor,
            cos_ceil,
        },
        intents: learned,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: Vec<f32>) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }

    #[test]
    fn learns_to_map_messages_onto_their_articles() {
        // Articles on the axes; messages of intent k sit near axis (k+1) mod 4,
        // so zero-shot retrieval gets every one wrong.
        let dim = 8;
        let axis = |k: usize, noise: f32| unit((0..dim).map(|i| if i == k { 1.0 } else { noise * ((i * 7 + k) % 5) as f32 }).collect());
        let articles: Vec<_> = (0..4).map(|k| (axis(k, 0.0), Some(format!("i{k}")), "en".to_string())).collect();
        let messages: Vec<_> =
            (0..200).map(|n| (axis((n % 4 + 1) % 4, 0.05 + 0.01 * (n % 3) as f32), format!("i{}", n % 4), None)).collect();
        let cfg = TrainConfig { epochs: 60, min_steps: 0, lr: 2e-2, ..Default::default() };
        let adapter = train("test", &articles, &messages, &[], &cfg, |_, _, _| {}).unwrap().unwrap();
        assert!(adapter.metrics.dev_recall_at_1_zero_shot < 0.1);
        assert!(adapter.metrics.dev_recall_at_1 > 0.9, "{:?}", adapter.metrics);
        // The adapter applied outside candle agrees with training.
        let q = adapter.apply(&axis(2, 0.05));
        let best = (0..4).max_by(|&a, &b| crate::vector::dot_f32(&q, &articles[a].0).total_cmp(&crate::vector::dot_f32(&q, &articles[b].0)));
        assert_eq!(best, Some(1));
        // And survives the Store round trip.
        let (meta, bytes) = adapter.to_parts().unwrap();
        let back = Adapter::from_parts(&meta, &bytes).unwrap();
        assert_eq!(back.weight, adapter.weight);
        assert_eq!(back.encoder, "test");
        assert!(is_current(&meta));
    }

    #[test]
    fn intents_without_messages_are_not_learned() {
        let dim = 4;
        let axis = |k: usize| (0..dim).map(|i| if i == k { 1.0 } else { 0.0 }).collect::<Vec<f32>>();
        let articles: Vec<_> = (0..3).map(|k| (axis(k), Some(format!("i{k}")), "en".to_string())).collect();
        // Messages for i0 and i1 only: i2's article was a negative throughout.
        let messages: Vec<_> = (0..40).map(|n| (axis(n % 2), format!("i{}", n % 2), None)).collect();
        let adapter = train("t", &articles, &messages, &[], &TrainConfig { min_steps: 5, ..Default::default() }, |_, _, _| {}).unwrap().unwrap();
        assert_eq!(adapter.intents, ["i0", "i1"]);
        assert!(adapter.learned(Some("i1")) && !adapter.learned(Some("i2")) && adapter.learned(None));
    }

    #[test]
    fn article_questions_are_learned_towards_their_own_article() {
        // Two articles of one intent without messages; their questions sit
        // nearer the other article, so zero-shot both go wrong.
        let dim = 6;
        let axis = |k: usize| unit((0..dim).map(|i| if i == k { 1.0 } else { 0.05 }).collect());
        let mix = |a: usize, b: usize| unit((0..dim).map(|i| if i == a { 0.6 } else if i == b { 0.8 } else { 0.0 }).collect());
        let mut articles: Vec<_> = (0..2).map(|k| (axis(k), Some("general".to_string()), "en".to_string())).collect();
        articles.push((axis(2), Some("card".to_string()), "en".to_string()));
        let messages: Vec<_> = (0..40).map(|n| (axis(2 + n % 2), "card".to_string(), None)).collect();
        let questions = vec![(mix(0, 1), 0), (mix(1, 0), 1)];
        let cfg = TrainConfig { min_steps: 200, lr: 2e-2, ..Default::default() };
        let adapter = train("t", &articles, &messages, &questions, &cfg, |_, _, _| {}).unwrap().unwrap();
        assert_eq!(adapter.intents, ["card", "general"]);
        for (q, j) in &questions {
            let a = adapter.apply(q);
            let best = (0..3).max_by(|&x, &y| crate::vector::dot_f32(&a, &articles[x].0).total_cmp(&crate::vector::dot_f32(&a, &articles[y].0)));
            assert_eq!(best, Some(*j));
        }
        // Questions are never held out: the dev set holds messages only.
        assert_eq!(adapter.metrics.n_dev, 4);
    }

    #[test]
    fn nothing_to_learn_from_is_no_adapter() {
        let articles = vec![(vec![1.0, 0.0], Some("a".to_string()), "en".to_string())];
        let messages = vec![(vec![1.0, 0.0], "other".to_string(), None); 50];
        assert!(train("t", &articles, &messages, &[], &TrainConfig::default(), |_, _, _| {}).unwrap().is_none());
    }
}
