//! The memory read bandwidth of this machine, as the decode loop sees it:
//! decode streams every weight once per token, so tokens per second times
//! `Transformer::weight_bytes` against this figure says how close an engine
//! is to the machine's limit (docs/benchmarks.md).

use rayon::prelude::*;
use std::time::Instant;

/// Bytes per second read from a buffer of `bytes` (far larger than the
/// caches) by the current rayon pool's threads: the best of `reps` passes.
pub fn read_bandwidth(bytes: usize, reps: usize) -> f64 {
    // Written first, so that every page is its own (zero pages all map to one).
    let buf = vec![1u64; bytes / 8];
    let chunk = (buf.len() / rayon::current_num_threads().max(1) / 8).max(1 << 12);
    let mut best = 0f64;
    for _ in 0..reps.max(1) {
        let start = Instant::now();
        let sum: u64 = buf.par_chunks(chunk).map(|c| c.iter().fold(0u64, |a, &v| a.wrapping_add(v))).sum();
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(sum, buf.len() as u64, "every word was read");
        best = best.max((buf.len() * 8) as f64 / secs);
    }
    best
}

#[cfg(test)]
mod tests {
    #[test]
    fn bandwidth_is_a_plausible_figure() {
        let b = super::read_bandwidth(64 << 20, 2);
        // Between a slow laptop's DRAM and an L1 cache.
        assert!(b > 5e8 && b < 1e12, "{b} bytes/s");
    }
}
