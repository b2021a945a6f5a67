//! Choosing the next token from the logits: repetition penalty, then greedy
//! (temperature 0) or temperature + nucleus (top-p) sampling with a seeded RNG.

use aicc_core::Sampling;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Recent tokens the repetition penalty looks at (llama.cpp's default).
const PENALTY_WINDOW: usize = 64;
/// Nucleus sampling sorts only this many best candidates first; the full
/// vocabulary is sorted only when they do not reach `top_p`.
const NUCLEUS_CANDIDATES: usize = 256;

pub struct Sampler {
    temperature: f32,
    top_p: f32,
    penalty: f32,
    rng: StdRng,
}

impl Sampler {
    pub fn new(s: &Sampling) -> Self {
        let rng = match s.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        };
        Self { temperature: s.temperature, top_p: s.top_p, penalty: s.repetition_penalty, rng }
    }

    /// `context`: the ids so far (prompt and answer), for the penalty.
    pub fn next(&mut self, logits: &mut [f32], context: &[u32]) -> u32 {
        if self.penalty > 1.0 {
            let recent = &context[context.len().saturating_sub(PENALTY_WINDOW)..];
            let mut seen = recent.to_vec();
            seen.sort_unstable();
            seen.dedup();
            for id in seen {
                if let Some(l) = logits.get_mut(id as usize) {
                    *l = if *l > 0.0 { *l / self.penalty } else { *l * self.penalty };
                }
            }
        }
        if self.temperature <= 0.0 {
            return super::model::argmax(logits);
        }
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut probs: Vec<f32> = logits.iter().map(|&l| ((l - max) / self.temperature).exp()).collect();
        let total: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);

        let mut order: Vec<u32> = (0..probs.len() as u32).collect();
        let by_prob = |a: &u32, b: &u32| probs[*b as usize].total_cmp(&probs[*a as usize]);
        let mut chosen = if self.top_p < 1.0 && order.len() > NUCLEUS_CANDIDATES {
            order.select_nth_unstable_by(NUCLEUS_CANDIDATES, by_prob);
            let mut head = order[..NUCLEUS_CANDIDATES].to_vec();
            head.sort_unstable_by(by_prob);
            head
        } else {
            Vec::new()
        };
        let reaches = |ids: &[u32]| ids.iter().map(|&i| probs[i as usize]).sum::<f32>() >= self.top_p;
        if chosen.is_empty() || !reaches(&chosen) {
            order.sort_unstable_by(by_prob);
            chosen = order;
        }
        // Keep the smallest prefix whose mass reaches top_p.
        let mut mass = 0.0;
        let mut keep = chosen.len();
        for (n, &id) in chosen.iter().enumerate() {
            mass += probs[id as usize];
            if mass >= self.top_p {
                keep = n + 1;
                break;
            }
        }
        let chosen = &chosen[..keep];
        let mut r = self.rng.gen::<f32>() * mass.min(1.0);
        for &id in chosen {
            r -= probs[id as usize];
            if r <= 0.0 {
                return id;
            }
        }
        chosen[chosen.len() - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampling(temperature: f32, top_p: f32, seed: u64) -> Sampling {
        Sampling { temperature, top_p, seed: Some(seed), ..Sampling::default() }
    }

    #[test]
    fn greedy_takes_the_best_and_the_penalty_can_move_it() {
        let mut s = Sampler::new(&sampling(0.0, 1.0, 1));
        assert_eq!(s.next(&mut [0.1, 3.0, 2.9], &[]), 1);
        let mut s = Sampler::new(&Sampling { repetition_penalty: 1.3, ..sampling(0.0, 1.0, 1) });
        assert_eq!(s.next(&mut [0.1, 3.0, 2.9], &[1]), 2, "3.0/1.3 < 2.9");
    }

    #[test]
    fn nucleus_never_picks_outside_top_p_and_seed_repeats() {
        let mut logits = vec![-10.0f32; 1000];
        logits[7] = 5.0;
        logits[9] = 4.5;
        let picks = |seed| {
            let mut s = Sampler::new(&sampling(1.0, 0.9, seed));
            (0..200).map(|_| s.next(&mut logits.clone(), &[])).collect::<Vec<_>>()
        };
        let a = picks(42);
        assert!(a.iter().all(|&id| id == 7 || id == 9), "{a:?}");
        assert!(a.contains(&7) && a.contains(&9));
        assert_eq!(a, picks(42));
        assert_ne!(a, picks(43));
    }
}
