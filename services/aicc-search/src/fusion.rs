//! Hybrid fusion of the BM25 and dense candidate lists into one ranking and
//! one confidence.
//!
//! Every candidate either retriever found is scored on both signals: the
//! cosine is exact for all of them (the vector is at hand); BM25 is known for
//! what BM25 returned and taken as 0 otherwise (it ranked below the list).
//!
//! `Blend` (the default, chosen by measurement: docs/benchmarks.md) maps each
//! signal to [0, 1] and mixes them; its value is the `score` the dialog compares
//! with its thresholds. `Rrf` (reciprocal-rank fusion) is kept for comparison
//! and for tenants without dense retrieval it equals BM25's order.

/// Raw retriever outputs for one candidate.
#[derive(Debug, Clone, Copy, Default)]
pub struct Signals {
    pub bm25: Option<f32>,
    pub bm25_rank: Option<usize>,
    pub dense: Option<f32>,
    pub dense_rank: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fusion {
    /// `w·dense' + (1−w)·bm25'` with `dense' = clamp((cos − floor) / (ceil − floor))`
    /// and `bm25' = s / (s + half)`.
    Blend { dense_weight: f32, floor: f32, ceil: f32, bm25_half: f32 },
    /// `Σ 1 / (k + rank)` over the retrievers that ranked the candidate.
    Rrf { k: f32 },
}

impl Default for Fusion {
    fn default() -> Self {
        Fusion::DEFAULT_BLEND
    }
}

impl Fusion {
    /// E5 cosines of unrelated texts sit around 0.75 and paraphrases above
    /// 0.9; a BM25 of ~8 (with the field boosts) is a solid keyword match.
    /// The weights were picked on BANKING77 dev queries against the demo FAQ
    /// (docs/benchmarks.md): 0.5 zero-shot; a tenant's adapter makes the dense
    /// signal much stronger, and its blend leans on it (`ADAPTED_DENSE_WEIGHT`).
    pub const DEFAULT_BLEND: Fusion = Fusion::Blend { dense_weight: 0.5, floor: 0.75, ceil: 0.95, bm25_half: 8.0 };
    pub const ADAPTED_DENSE_WEIGHT: f32 = 0.85;

    pub fn parse(name: &str) -> Option<Fusion> {
        match name {
            "blend" => Some(Fusion::DEFAULT_BLEND),
            "rrf" => Some(Fusion::Rrf { k: 60.0 }),
            _ => None,
        }
    }

    /// The BM25 part alone in [0, 1] (what `score` is without dense retrieval).
    pub fn bm25_confidence(&self, s: f32) -> f32 {
        let half = match self {
            Fusion::Blend { bm25_half, .. } => *bm25_half,
            Fusion::Rrf { .. } => 8.0,
        };
        s / (s + half)
    }

    pub fn dense_confidence(&self, cos: f32) -> f32 {
        let (floor, ceil) = match self {
            Fusion::Blend { floor, ceil, .. } => (*floor, *ceil),
            Fusion::Rrf { .. } => (0.75, 0.95),
        };
        ((cos - floor) / (ceil - floor)).clamp(0.0, 1.0)
    }

    /// The blend for an adapted query space: its own cosine range (the adapter
    /// moves cosines away from the encoder's) and the adapted dense weight.
    pub fn with_dense_range(self, floor: f32, ceil: f32) -> Fusion {
        match self {
            Fusion::Blend { bm25_half, .. } if ceil > floor => {
                Fusion::Blend { dense_weight: Self::ADAPTED_DENSE_WEIGHT, floor, ceil, bm25_half }
            }
            other => other,
        }
    }

    /// The fused value used for ranking: the blend without the clamp, so that
    /// candidates below the cosine floor still keep their order.
    pub fn rank_score(&self, s: &Signals, dense_available: bool) -> f32 {
        match self {
            Fusion::Rrf { k } => {
                s.bm25_rank.map_or(0.0, |r| 1.0 / (k + r as f32 + 1.0))
                    + s.dense_rank.map_or(0.0, |r| 1.0 / (k + r as f32 + 1.0))
            }
            Fusion::Blend { dense_weight, floor, ceil, .. } => {
                let b = self.bm25_confidence(s.bm25.unwrap_or(0.0));
                if !dense_available {
                    return b;
                }
                let d = (s.dense.unwrap_or(0.0) - floor) / (ceil - floor);
                dense_weight * d + (1.0 - dense_weight) * b
            }
        }
    }

    /// The calibrated confidence in [0, 1] reported as a hit's `score`.
    pub fn confidence(&self, s: &Signals, dense_available: bool) -> f32 {
        let b = self.bm25_confidence(s.bm25.unwrap_or(0.0));
        if !dense_available {
            return b;
        }
        let w = match self {
            Fusion::Blend { dense_weight, .. } => *dense_weight,
            Fusion::Rrf { .. } => 0.7,
        };
        let d = self.dense_confidence(s.dense.unwrap_or(0.0));
        w * d + (1.0 - w) * b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blend_is_a_confidence_in_the_unit_interval() {
        let f = Fusion::default();
        let strong = Signals { bm25: Some(60.0), dense: Some(0.97), ..Default::default() };
        let weak = Signals { bm25: None, dense: Some(0.70), ..Default::default() };
        assert!(f.confidence(&strong, true) > 0.9 && f.confidence(&strong, true) <= 1.0);
        assert_eq!(f.confidence(&weak, true), 0.0);
        // More evidence never lowers the score.
        let more = Signals { bm25: Some(5.0), ..weak };
        assert!(f.confidence(&more, true) > f.confidence(&weak, true));
        // Without dense retrieval the score is BM25's alone.
        assert!((f.confidence(&strong, false) - 60.0 / 68.0).abs() < 1e-6);
    }

    #[test]
    fn ranking_keeps_the_order_below_the_floor() {
        let f = Fusion::default();
        let (a, b) = (Signals { dense: Some(0.6), ..Default::default() }, Signals { dense: Some(0.5), ..Default::default() });
        assert_eq!(f.confidence(&a, true), f.confidence(&b, true));
        assert!(f.rank_score(&a, true) > f.rank_score(&b, true));
    }

    #[test]
    fn rrf_rewards_agreement() {
        let f = Fusion::parse("rrf").unwrap();
        let both = Signals { bm25_rank: Some(3), dense_rank: Some(3), ..Default::default() };
        let one = Signals { bm25_rank: Some(0), ..Default::default() };
        assert!(f.rank_score(&both, true) > f.rank_score(&one, true));
    }
}
