//! `Trainer`: the aicc-core `IntentTrainer` for the API's training jobs. It
//! embeds a tenant's examples through the serving embedder (its worker
//! thread, in batches), trains the head with the default recipe
//! (`TrainConfig::default()`, as `aicc train intent` and the demo tenant) on
//! a blocking thread, stores the artifact as the tenant's next intent-model
//! version and hands back a `Classifier` to serve with.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aicc_core::intent_data::Example;
use aicc_core::{
    EmbedKind, Embedder, IntentTrainer, ModelError, NewIntentModel, Store, TrainProgress, TrainedIntents,
};
use async_trait::async_trait;
use serde_json::json;
use uuid::Uuid;

use super::{train, Classifier, EncoderInfo, TrainConfig};

/// Texts per embedding request.
const BATCH: usize = 16;
/// The share of the progress bar that embedding takes (the rest is training).
const EMBED_SHARE: f64 = 0.5;

pub struct Trainer {
    store: Arc<dyn Store>,
    embedder: Arc<dyn Embedder>,
    config: TrainConfig,
}

impl Trainer {
    /// With the default recipe.
    pub fn new(store: Arc<dyn Store>, embedder: Arc<dyn Embedder>) -> Self {
        Self { store, embedder, config: TrainConfig::default() }
    }
}

/// One request to the embedder, waiting out a full queue (live traffic first).
async fn embed(embedder: &dyn Embedder, texts: Vec<String>) -> Result<Vec<Vec<f32>>, ModelError> {
    let mut tries = 0;
    loop {
        match embedder.embed(texts.clone(), EmbedKind::Query).await {
            Err(ModelError::Overloaded) if tries < 300 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

/// The recipe for `n` examples: the default's batches of 64 leave a tenant's
/// few dozen examples one optimiser step per epoch, and early stopping on a
/// dev split of one row per intent often peaks at epoch 1 by luck, so the
/// retraining on all rows kept a barely trained head (near-uniform
/// probabilities). Smaller sets get smaller batches (an epoch is about 8
/// steps) and the retraining at least 10 epochs; from 512 examples on the
/// recipe is the default's.
pub fn config_for(base: &TrainConfig, n: usize) -> TrainConfig {
    let small = n < 512;
    TrainConfig {
        batch_size: (n / 8).clamp(8, base.batch_size.max(8)),
        min_final_epochs: if small { base.min_final_epochs.max(10) } else { base.min_final_epochs },
        ..base.clone()
    }
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

#[async_trait]
impl IntentTrainer for Trainer {
    async fn train(&self, tenant_id: Uuid, examples: Vec<Example>, progress: TrainProgress) -> Result<TrainedIntents, ModelError> {
        let start = Instant::now();
        let n = examples.len();
        if n == 0 {
            return Err(ModelError::InvalidRequest("no examples to train on".into()));
        }
        progress(0.0);
        let mut vectors = Vec::with_capacity(n);
        for batch in examples.chunks(BATCH) {
            let texts: Vec<String> = batch.iter().map(|e| e.text.clone()).collect();
            let got = embed(&*self.embedder, texts).await?;
            if got.len() != batch.len() {
                return Err(ModelError::Failed(format!("the embedder returned {} vectors for {} texts", got.len(), batch.len())));
            }
            vectors.extend(got);
            progress(EMBED_SHARE * vectors.len() as f64 / n as f64);
        }
        let labels: Vec<String> = examples.iter().map(|e| e.intent.clone()).collect();
        let texts: Vec<String> = examples.iter().map(|e| e.text.clone()).collect();
        let info = EncoderInfo { name: self.embedder.name().to_string(), dim: self.embedder.dim() };
        let cfg = config_for(&self.config, n);
        let (p, encoder) = (progress.clone(), info.clone());
        // The head's training is CPU work: off the async executor.
        let head = tokio::task::spawn_blocking(move || {
            // Each stage (candidate architectures, then the retraining on all
            // rows) is an equal slice of the training share; epochs fill it.
            let mut stages: Vec<&'static str> =
                cfg.architectures.iter().map(|a| if *a == super::Arch::Mlp { "mlp" } else { "linear" }).collect();
            if cfg.lexical_weight > 0.0 {
                stages.push("lexical");
            }
            if cfg.retrain_on_all {
                stages.push("final");
            }
            if cfg.lexical_weight > 0.0 {
                stages.push("lexical final");
            }
            let best = Mutex::new(EMBED_SHARE);
            train(&texts, &vectors, &labels, &encoder, &cfg, &mut |e| {
                let i = stages.iter().position(|s| *s == e.stage).unwrap_or(0);
                let within = e.epoch as f64 / e.epochs.max(1) as f64;
                let f = EMBED_SHARE + (1.0 - EMBED_SHARE) * 0.98 * (i as f64 + within.min(1.0)) / stages.len().max(1) as f64;
                let mut b = best.lock().unwrap_or_else(|p| p.into_inner());
                if f > *b {
                    *b = f;
                    p(f);
                }
            })
        })
        .await
        .map_err(|e| ModelError::Failed(format!("the training thread failed: {e}")))?
        .map_err(|e| match e {
            super::IntentError::Invalid(m) => ModelError::InvalidRequest(m),
            other => ModelError::Failed(other.to_string()),
        })?;
        let (meta, weights) = head.to_parts().map_err(|e| ModelError::Failed(e.to_string()))?;
        let rec = self
            .store
            .put_intent_model(NewIntentModel { tenant_id, encoder: info.name.clone(), meta, weights })
            .await
            .map_err(|e| ModelError::Failed(format!("cannot store the intent model: {e}")))?;
        let m = &head.meta;
        let mut metrics = json!({
            "batch_size": m.config.get("batch_size").cloned().unwrap_or_default(),
            "accuracy": round4(m.dev.accuracy),
            "macro_f1": round4(m.dev.macro_f1),
            "n_dev": m.dev.n,
            "n_train": m.n_train,
            "n_examples": n,
            "intents": m.labels.iter().filter(|l| *l != aicc_core::OUT_OF_SCOPE).count(),
            "architecture": m.architecture,
            "epochs": m.epochs,
            "threshold": round4(m.threshold as f64),
            "model_version": rec.version,
            "train_seconds": round4(start.elapsed().as_secs_f64()),
        });
        if let Some(a) = m.dev.in_scope_accuracy {
            metrics["in_scope_accuracy"] = round4(a).into();
        }
        if let Some(r) = m.dev.oos_recall {
            metrics["oos_recall"] = round4(r).into();
        }
        tracing::info!(tenant = %tenant_id, version = rec.version, %metrics, "intent model trained");
        let classifier = Classifier::new(self.embedder.clone(), head).map_err(|e| ModelError::Failed(e.to_string()))?;
        Ok(TrainedIntents { version: rec.version, metrics, classifier: Arc::new(classifier) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_sets_get_small_batches_and_a_floor_of_epochs() {
        let base = TrainConfig::default();
        let c = config_for(&base, 32);
        assert_eq!((c.batch_size, c.min_final_epochs), (8, 10));
        assert_eq!(config_for(&base, 200).batch_size, 25);
        let c = config_for(&base, 5000);
        assert_eq!((c.batch_size, c.min_final_epochs, c.epochs), (64, 0, base.epochs));
    }
}
