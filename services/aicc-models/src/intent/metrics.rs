//! Evaluation figures. A prediction of `None` means "rejected as out of
//! scope"; a gold label `oos` means the row should be rejected.

use std::collections::BTreeMap;

use aicc_core::OUT_OF_SCOPE;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    /// Over all rows: an `oos` row is right when rejected.
    pub accuracy: f64,
    /// Mean F1 over the in-scope intents of the gold labels.
    pub macro_f1: f64,
    /// Only when the gold labels contain `oos`: accuracy on the in-scope rows
    /// (a rejection is wrong) and the share of `oos` rows rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_scope_accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oos_recall: Option<f64>,
    pub n: usize,
}

pub fn evaluate<G: AsRef<str>, P: AsRef<str>>(gold: &[G], predicted: &[Option<P>]) -> Metrics {
    assert_eq!(gold.len(), predicted.len(), "one prediction per gold label");
    let n = gold.len();
    let (mut right, mut in_n, mut in_right, mut oos_n, mut oos_rejected) = (0, 0, 0, 0, 0);
    // Per in-scope gold class: (true positives, false positives, false negatives).
    let mut counts: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    for g in gold {
        if g.as_ref() != OUT_OF_SCOPE {
            counts.entry(g.as_ref()).or_default();
        }
    }
    for (g, p) in gold.iter().zip(predicted) {
        let (g, p) = (g.as_ref(), p.as_ref().map(|p| p.as_ref()).filter(|p| *p != OUT_OF_SCOPE));
        if g == OUT_OF_SCOPE {
            oos_n += 1;
            if p.is_none() {
                oos_rejected += 1;
                right += 1;
            }
        } else {
            in_n += 1;
            if p == Some(g) {
                in_right += 1;
                right += 1;
            }
        }
        if p == Some(g) {
            if let Some(c) = counts.get_mut(g) {
                c.0 += 1;
            }
            continue;
        }
        if let Some(c) = counts.get_mut(g) {
            c.2 += 1;
        }
        // A wrong in-scope guess is a false positive of that class (if the gold set has it).
        if let Some(c) = p.and_then(|p| counts.get_mut(p)) {
            c.1 += 1;
        }
    }
    let f1 = |&(tp, fp, fne): &(usize, usize, usize)| if tp == 0 { 0.0 } else { 2.0 * tp as f64 / (2 * tp + fp + fne) as f64 };
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    Metrics {
        accuracy: ratio(right, n),
        macro_f1: if counts.is_empty() { 0.0 } else { counts.values().map(f1).sum::<f64>() / counts.len() as f64 },
        in_scope_accuracy: (oos_n > 0).then(|| ratio(in_right, in_n)),
        oos_recall: (oos_n > 0).then(|| ratio(oos_rejected, oos_n)),
        n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_by_hand() {
        let gold = ["a", "a", "b", "b", "oos", "oos"];
        let pred = [Some("a"), None, Some("b"), Some("a"), None, Some("b")];
        let m = evaluate(&gold, &pred);
        assert_eq!(m.n, 6);
        assert!((m.accuracy - 3.0 / 6.0).abs() < 1e-12);
        assert_eq!(m.in_scope_accuracy, Some(0.5));
        assert_eq!(m.oos_recall, Some(0.5));
        // a: tp 1, fp 1, fn 1 → 0.5; b: tp 1, fp 1 (the oos row), fn 1 → 0.5.
        assert!((m.macro_f1 - 0.5).abs() < 1e-12, "{m:?}");
    }

    #[test]
    fn no_oos_rows_no_oos_fields() {
        let m = evaluate(&["a", "b"], &[Some("a"), Some("b")]);
        assert_eq!((m.accuracy, m.macro_f1, m.in_scope_accuracy, m.oos_recall), (1.0, 1.0, None, None));
        let json = serde_json::to_value(&m).unwrap();
        assert!(json.get("oos_recall").is_none());
        // Predicting the label `oos` is a rejection too.
        let m = evaluate(&["oos"], &[Some("oos")]);
        assert_eq!(m.oos_recall, Some(1.0));
    }
}
