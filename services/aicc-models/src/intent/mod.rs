//! Intent classification: labelled utterances (`data`), a head trained on
//! sentence embeddings (`head`), its on-disk artifact and batched prediction
//! (`model`), evaluation figures (`metrics`) and the `IntentClassifier`
//! implementation that puts an embedder in front (`classifier`).
//! docs/intent.md describes the training recipe and the artifact.

pub mod classifier;
pub mod data;
pub mod head;
pub mod lexical;
pub mod metrics;
pub mod model;
pub mod trainer;

pub use classifier::Classifier;
pub use data::{DataError, Example, Problem, Rules};
pub use head::{calibrate, stratified_split, train, Arch, EncoderInfo, Epoch, TrainConfig};
pub use metrics::{evaluate, Metrics};
pub use model::{DevMetrics, IntentError, IntentMeta, IntentModel, LexicalMeta};
pub use trainer::Trainer;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use aicc_core::{EmbedKind, Embedder, IntentClassifier, ModelError};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    const DIM: usize = 16;

    fn unit(v: Vec<f32>) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        v.into_iter().map(|x| x / n).collect()
    }

    fn centres(k: usize, rng: &mut StdRng) -> Vec<Vec<f32>> {
        (0..k).map(|_| unit((0..DIM).map(|_| rng.gen_range(-1.0..1.0)).collect())).collect()
    }

    fn near(c: &[f32], noise: f32, rng: &mut StdRng) -> Vec<f32> {
        unit(c.iter().map(|x| x + rng.gen_range(-noise..noise)).collect())
    }

    /// `per` noisy points around each centre, labelled `c0`, `c1`, …
    fn clusters(cs: &[Vec<f32>], per: usize, noise: f32, rng: &mut StdRng) -> (Vec<Vec<f32>>, Vec<String>) {
        let mut x = vec![];
        let mut y = vec![];
        for (i, c) in cs.iter().enumerate() {
            for _ in 0..per {
                x.push(near(c, noise, rng));
                y.push(format!("c{i}"));
            }
        }
        (x, y)
    }

    /// One empty text per vector: no vocabulary, so no lexical model, and
    /// these tests see the head alone.
    fn blank_texts(x: &[Vec<f32>]) -> Vec<String> {
        vec![String::new(); x.len()]
    }

    fn blank(n: usize) -> Vec<&'static str> {
        vec![""; n]
    }

    fn small() -> TrainConfig {
        TrainConfig { hidden: 32, epochs: 25, patience: 5, batch_size: 16, lr: 3e-3, ..TrainConfig::default() }
    }

    fn enc() -> EncoderInfo {
        EncoderInfo { name: "test-encoder".into(), dim: DIM }
    }

    #[test]
    fn learns_clusters_and_reports_progress() {
        let mut rng = StdRng::seed_from_u64(1);
        let cs = centres(5, &mut rng);
        let (x, y) = clusters(&cs, 40, 0.5, &mut rng);
        let mut lines = vec![];
        let m = train(&blank_texts(&x), &x, &y, &enc(), &small(), &mut |e| lines.push((e.stage.to_string(), e.epoch, e.train_loss, e.dev_accuracy))).unwrap();
        assert!(lines.iter().any(|l| l.0 == "mlp") && lines.iter().any(|l| l.0 == "linear") && lines.iter().any(|l| l.0 == "final"));
        assert!(lines.iter().filter(|l| l.0 != "final").all(|l| l.3.is_some()));
        assert_eq!(m.meta.n_train, 200);
        assert!(m.meta.lexical.is_none(), "empty texts give no vocabulary");
        assert_eq!(m.meta.labels, ["c0", "c1", "c2", "c3", "c4"]);
        let (tx, ty) = clusters(&cs, 20, 0.5, &mut rng);
        let preds = m.predict(&blank(tx.len()), &tx);
        let got: Vec<Option<String>> = preds.iter().map(|p| p.intent.clone()).collect();
        let metrics = evaluate(&ty, &got);
        assert!(metrics.accuracy > 0.9, "{metrics:?}");
        let p = &preds[0];
        assert_eq!(p.ranked.len(), 5);
        assert!(p.ranked.windows(2).all(|w| w[0].1 >= w[1].1));
        assert_eq!(p.confidence, p.ranked[0].1);
        // No oos rows: the threshold rejects about reject_rate of in-scope dev rows.
        assert!(m.meta.threshold_rule.contains("least confident"));
    }

    #[test]
    fn store_parts_round_trip() {
        let mut rng = StdRng::seed_from_u64(4);
        let cs = centres(3, &mut rng);
        let (x, y) = clusters(&cs, 30, 0.4, &mut rng);
        let m = train(&blank_texts(&x), &x, &y, &enc(), &small(), &mut |_| {}).unwrap();
        let (meta, weights) = m.to_parts().unwrap();
        let back = IntentModel::from_parts(meta.clone(), &weights, "test-encoder", DIM, "store").unwrap();
        assert_eq!(back.meta, m.meta);
        assert_eq!(back.predict(&blank(5), &x[..5]), m.predict(&blank(5), &x[..5]));
        let err = IntentModel::from_parts(meta.clone(), &weights, "multilingual-e5-small", DIM, "store").err().unwrap();
        assert!(matches!(err, IntentError::Mismatch { .. }), "{err}");
        let err = IntentModel::from_parts(meta, &weights[..weights.len() / 2], "test-encoder", DIM, "store").err().unwrap();
        assert!(err.to_string().contains("store"), "{err}");
    }

    #[test]
    fn out_of_scope_class_and_threshold() {
        let mut rng = StdRng::seed_from_u64(2);
        let cs = centres(4, &mut rng);
        let (mut x, mut y) = clusters(&cs, 40, 0.3, &mut rng);
        // Out of scope: points spread everywhere else.
        for _ in 0..40 {
            x.push(unit((0..DIM).map(|_| rng.gen_range(-1.0..1.0)).collect()));
            y.push("oos".into());
        }
        let m = train(&blank_texts(&x), &x, &y, &enc(), &small(), &mut |_| {}).unwrap();
        assert!(m.meta.labels.contains(&"oos".to_string()));
        assert!(m.meta.dev.oos_recall.is_some());
        let (tx, ty) = clusters(&cs, 10, 0.3, &mut rng);
        let p = m.predict(&blank(tx.len()), &tx);
        assert!(p.iter().zip(&ty).filter(|(p, g)| p.intent.as_deref() == Some(g.as_str())).count() >= 36);
        // `oos` is never a ranked intent.
        assert!(p.iter().all(|p| p.ranked.iter().all(|(l, _)| l != "oos")));
        let far: Vec<Vec<f32>> = (0..20).map(|_| unit((0..DIM).map(|_| rng.gen_range(-1.0..1.0)).collect())).collect();
        let rejected = m.predict(&blank(far.len()), &far).iter().filter(|p| p.out_of_scope && p.intent.is_none()).count();
        assert!(rejected >= 10, "{rejected} of 20 random points rejected");
    }

    #[test]
    fn calibration_rules() {
        let labels: Vec<String> = ["a", "b", "oos"].iter().map(|s| s.to_string()).collect();
        // In-scope rows confident, oos rows unsure: a threshold between them.
        let probs = vec![vec![0.9, 0.05, 0.05], vec![0.1, 0.8, 0.1], vec![0.5, 0.3, 0.2], vec![0.4, 0.35, 0.25]];
        let gold = [0, 1, 2, 2];
        let (t, _) = calibrate(&probs, &gold, &labels, Some(2), 0.01, None);
        assert!(t > 0.5 && t <= 0.8, "{t}");
        // Without oos: reject the least confident 25%.
        let conf: Vec<Vec<f32>> = [0.9f32, 0.8, 0.7, 0.6].iter().map(|c| vec![*c, 1.0 - c]).collect();
        let (t, rule) = calibrate(&conf, &[0, 0, 0, 0], &labels[..2], None, 0.25, None);
        assert_eq!(t, 0.7, "{rule}");
        let (t, _) = calibrate(&conf, &[0, 0, 0, 0], &labels[..2], None, 0.0, None);
        assert_eq!(t, 0.0);
        // A recall target: the lowest threshold whose oos recall reaches it.
        let probs = vec![
            vec![0.9, 0.05, 0.05],
            vec![0.1, 0.8, 0.1],
            vec![0.45, 0.3, 0.25],
            vec![0.5, 0.3, 0.2],
            vec![0.4, 0.35, 0.25],
        ];
        let gold = [0, 1, 0, 2, 2];
        let (t, rule) = calibrate(&probs, &gold, &labels, Some(2), 0.01, Some(0.5));
        assert_eq!(t, 0.45, "{rule}");
        assert!(rule.contains("50%"), "{rule}");
        assert_eq!(calibrate(&probs, &gold, &labels, Some(2), 0.01, Some(1.0)).0, 0.8);
    }

    #[test]
    fn split_is_stratified_and_seeded() {
        let y: Vec<usize> = (0..100).map(|i| i % 4).chain([4, 4]).collect();
        let (tr, dev) = stratified_split(&y, 0.1, 7);
        assert_eq!(tr.len() + dev.len(), y.len());
        for c in 0..5 {
            let n = dev.iter().filter(|&&i| y[i] == c).count();
            assert_eq!(n, if c == 4 { 1 } else { 3 }, "class {c}");
        }
        assert_eq!(stratified_split(&y, 0.1, 7), (tr.clone(), dev.clone()));
        assert_ne!(stratified_split(&y, 0.1, 8).1, dev);
    }

    #[test]
    fn deterministic_save_load_and_refusals() {
        let mut rng = StdRng::seed_from_u64(3);
        let cs = centres(3, &mut rng);
        let (x, y) = clusters(&cs, 20, 0.5, &mut rng);
        let cfg = TrainConfig { architectures: vec![Arch::Mlp], ..small() };
        let a = train(&blank_texts(&x), &x, &y, &enc(), &cfg, &mut |_| {}).unwrap();
        let b = train(&blank_texts(&x), &x, &y, &enc(), &cfg, &mut |_| {}).unwrap();
        assert_eq!(a.probabilities(&blank(x.len()), &x).unwrap(), b.probabilities(&blank(x.len()), &x).unwrap());
        assert_eq!(a.meta.threshold, b.meta.threshold);

        let root = std::env::temp_dir().join(format!("aicc-intent-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dir = root.join("model");
        a.save(&dir).unwrap();
        // Saving over an existing artifact replaces it, leaving no temp dirs.
        a.save(&dir).unwrap();
        let names: Vec<String> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["model"]);
        let loaded = IntentModel::load(&dir, "test-encoder", DIM).unwrap();
        assert_eq!(loaded.meta, a.meta);
        assert_eq!(loaded.predict(&blank(x.len()), &x), a.predict(&blank(x.len()), &x));
        assert!(matches!(IntentModel::load(&dir, "other", DIM), Err(IntentError::Mismatch { .. })));
        assert!(matches!(IntentModel::load(&dir, "test-encoder", DIM + 1), Err(IntentError::Mismatch { .. })));
        // A wrong-length vector is rejected, never guessed at.
        assert!(a.try_predict(&[""], &[vec![0.0; DIM - 1]]).is_err());
        assert!(a.predict(&[""], &[vec![0.0; DIM - 1]])[0].out_of_scope);
        // A failed save leaves nothing behind (the parent is a file).
        std::fs::write(root.join("file"), b"x").unwrap();
        assert!(a.save(&root.join("file").join("model")).is_err());
        // A head whose tensors do not match its metadata is refused.
        let mut meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("intent.json")).unwrap()).unwrap();
        meta["hidden"] = 31.into();
        std::fs::write(dir.join("intent.json"), meta.to_string()).unwrap();
        assert!(matches!(IntentModel::load(&dir, "test-encoder", DIM), Err(IntentError::Format(..))));
        let _ = std::fs::remove_dir_all(&root);
    }

    /// Embeds a text as the centre it names (`c0` …), or a fixed far point.
    struct Fake(Vec<Vec<f32>>);

    #[async_trait::async_trait]
    impl Embedder for Fake {
        fn name(&self) -> &str {
            "test-encoder"
        }
        fn dim(&self) -> usize {
            DIM
        }
        async fn embed(&self, texts: Vec<String>, kind: EmbedKind) -> Result<Vec<Vec<f32>>, ModelError> {
            assert_eq!(kind, EmbedKind::Query);
            Ok(texts.iter().map(|t| t.strip_prefix('c').and_then(|i| i.parse::<usize>().ok()).map_or(vec![0.0; DIM], |i| self.0[i].clone())).collect())
        }
    }

    #[tokio::test]
    async fn classifier_embeds_then_predicts() {
        let mut rng = StdRng::seed_from_u64(4);
        let cs = centres(3, &mut rng);
        let (x, y) = clusters(&cs, 20, 0.3, &mut rng);
        let m = train(&blank_texts(&x), &x, &y, &enc(), &small(), &mut |_| {}).unwrap();
        let c = Classifier::new(Arc::new(Fake(cs.clone())), m).unwrap();
        let p = c.classify("c2").await.unwrap();
        assert_eq!(p.intent.as_deref(), Some("c2"));
        assert!(!p.out_of_scope);
        let m = train(&blank_texts(&x), &x, &y, &EncoderInfo { name: "other".into(), dim: DIM }, &small(), &mut |_| {}).unwrap();
        assert!(Classifier::new(Arc::new(Fake(cs)), m).is_err());
    }

    /// Vectors that cannot separate two of three classes, texts whose words
    /// can: the blend with the lexical model tells them apart, and it
    /// survives a save and load.
    #[test]
    fn lexical_model_is_blended_when_the_words_decide() {
        let mut rng = StdRng::seed_from_u64(5);
        let cs = centres(3, &mut rng);
        // c1 and c2 share a centre: only their texts tell them apart.
        let shared = [cs[0].clone(), cs[1].clone(), cs[1].clone()];
        let (x, y) = clusters(&shared, 40, 0.3, &mut rng);
        let words = [["balance", "account", "statement"], ["refund", "money back", "returned"], ["card", "lost card", "stolen card"]];
        let texts: Vec<String> = y
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let c: usize = l[1..].parse().unwrap();
                format!("please help with my {} number {}", words[c][i % 3], i % 7)
            })
            .collect();
        let mut stages = vec![];
        let m = train(&texts, &x, &y, &enc(), &small(), &mut |e| stages.push(e.stage.to_string())).unwrap();
        let lex = m.meta.lexical.clone().expect("the lexical model is blended in");
        assert!(lex.weight > 0.0 && lex.terms > 10, "{lex:?}");
        assert!(stages.iter().any(|s| s == "lexical") && stages.iter().any(|s| s == "lexical final"));
        let probe = ["a refund please", "my card was stolen", "account statement"];
        let v = [cs[1].clone(), cs[1].clone(), cs[0].clone()];
        let got: Vec<Option<String>> = m.predict(&probe, &v).into_iter().map(|p| p.intent).collect();
        assert_eq!(got, [Some("c1".into()), Some("c2".into()), Some("c0".into())]);
        // The head alone cannot split c1 from c2.
        let head_only = train(&texts, &x, &y, &enc(), &TrainConfig { lexical_weight: 0.0, ..small() }, &mut |_| {}).unwrap();
        assert!(head_only.meta.lexical.is_none());
        assert!(head_only.meta.dev.accuracy < m.meta.dev.accuracy, "{} vs {}", head_only.meta.dev.accuracy, m.meta.dev.accuracy);
        let err = train(&texts, &x, &y, &enc(), &TrainConfig { lexical_weight: 1.5, ..small() }, &mut |_| {}).err().unwrap();
        assert!(err.to_string().contains("lexical weight"), "{err}");

        let dir = std::env::temp_dir().join(format!("aicc-intent-lexical-{}", std::process::id()));
        m.save(&dir).unwrap();
        let back = IntentModel::load(&dir, "test-encoder", DIM).unwrap();
        assert_eq!(back.meta, m.meta);
        assert_eq!(back.probabilities(&probe, &v).unwrap(), m.probabilities(&probe, &v).unwrap());
        let (meta, weights) = m.to_parts().unwrap();
        let parts = IntentModel::from_parts(meta.clone(), &weights, "test-encoder", DIM, "store").unwrap();
        assert_eq!(parts.predict(&probe, &v), m.predict(&probe, &v));
        // Metadata that promises another vocabulary size is refused.
        let mut bad = meta;
        bad["lexical"]["terms"] = (lex.terms + 1).into();
        let err = IntentModel::from_parts(bad, &weights, "test-encoder", DIM, "store").err().unwrap();
        assert!(err.to_string().contains("lex."), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
