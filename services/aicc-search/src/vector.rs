//! Dense retrieval: the vector index behind a small trait, so an ANN index
//! can replace the exact one when a knowledge base outgrows it.
//!
//! `FlatIndex` is exact search in two steps: a scan over int8 copies of the
//! vectors (a quarter of the bytes of f32: the scan is memory-bound), then the
//! best candidates rescored in f32 so the reported cosine is exact.

/// Unit-length vectors, searched by inner product (= cosine).
pub trait VectorIndex: Send + Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn dim(&self) -> usize;
    /// The `k` nearest rows to `query` as (row, cosine), best first.
    fn search(&self, query: &[f32], k: usize) -> Vec<(u32, f32)>;
    /// The cosine of `query` with row `row` (for fusing hits that only one
    /// retriever found).
    fn score(&self, query: &[f32], row: u32) -> f32;
}

pub struct FlatIndex {
    dim: usize,
    f32s: Vec<f32>,
    i8s: Vec<i8>,
    scales: Vec<f32>,
    /// Σ of each int8 row: `vpdpbusd` multiplies unsigned by signed bytes, so
    /// the query is shifted by +128 and the shift taken back out per row.
    row_sums: Vec<i32>,
}

/// How many int8 candidates are rescored in f32 per requested hit.
const RESCORE_FACTOR: usize = 4;
const MIN_RESCORE: usize = 64;

impl FlatIndex {
    pub fn new(dim: usize, vectors: &[Vec<f32>]) -> Self {
        let mut index = FlatIndex { dim, f32s: Vec::new(), i8s: Vec::new(), scales: Vec::new(), row_sums: Vec::new() };
        index.f32s.reserve(vectors.len() * dim);
        index.i8s.reserve(vectors.len() * dim);
        for v in vectors {
            assert_eq!(v.len(), dim, "vector of the wrong dimension");
            index.f32s.extend_from_slice(v);
            let (q, scale) = quantize(v);
            index.i8s.extend_from_slice(&q);
            index.row_sums.push(q.iter().map(|&x| x as i32).sum());
            index.scales.push(scale);
        }
        index
    }

    fn row(&self, row: usize) -> &[f32] {
        &self.f32s[row * self.dim..(row + 1) * self.dim]
    }
}

fn quantize(v: &[f32]) -> (Vec<i8>, f32) {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    if max == 0.0 {
        return (vec![0; v.len()], 0.0);
    }
    let inv = 127.0 / max;
    (v.iter().map(|x| (x * inv).round() as i8).collect(), max / 127.0)
}

impl VectorIndex for FlatIndex {
    fn len(&self) -> usize {
        self.scales.len()
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn search(&self, query: &[f32], k: usize) -> Vec<(u32, f32)> {
        if self.is_empty() || k == 0 || query.len() != self.dim {
            return Vec::new();
        }
        let (q, q_scale) = quantize(query);
        let keep = (k * RESCORE_FACTOR).max(MIN_RESCORE).min(self.len());
        // Exact integer dot products of every row, then the best `keep`.
        let mut dots = vec![0i32; self.len()];
        scan(&q, &self.i8s, &self.row_sums, self.dim, &mut dots);
        let mut approx: Vec<(f32, u32)> =
            dots.iter().zip(&self.scales).enumerate().map(|(row, (&d, s))| (d as f32 * s * q_scale, row as u32)).collect();
        if keep < approx.len() {
            approx.select_nth_unstable_by(keep, |a, b| b.0.total_cmp(&a.0));
            approx.truncate(keep);
        }
        let mut exact: Vec<(u32, f32)> =
            approx.into_iter().map(|(_, row)| (row, dot_f32(query, self.row(row as usize)))).collect();
        exact.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        exact.truncate(k);
        exact
    }

    fn score(&self, query: &[f32], row: u32) -> f32 {
        dot_f32(query, self.row(row as usize))
    }
}

/// `out[r] = q · row r` for every int8 row, exactly.
fn scan(q: &[i8], rows: &[i8], row_sums: &[i32], dim: usize, out: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    if dim % 64 == 0
        && std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512vnni")
    {
        // SAFETY: the features were just detected; rows hold `out.len()` rows of `dim`.
        unsafe { scan_vnni(q, rows, row_sums, dim, out) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if dim % 32 == 0 && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the feature was just detected; rows hold `out.len()` rows of `dim`.
        unsafe { scan_avx2(q, rows, dim, out) };
        return;
    }
    let _ = row_sums;
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(dim)) {
        *o = dot_i8(q, row);
    }
}

/// 64 multiply-adds an instruction: `Σ (q+128)·r − 128·Σr = q·r`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn scan_vnni(q: &[i8], rows: &[i8], row_sums: &[i32], dim: usize, out: &mut [i32]) {
    use std::arch::x86_64::*;
    let shifted: Vec<u8> = q.iter().map(|&x| (x as i16 + 128) as u8).collect();
    let lanes = dim / 64;
    let qv: Vec<__m512i> = (0..lanes).map(|l| _mm512_loadu_si512(shifted.as_ptr().add(l * 64) as *const _)).collect();
    for (r, o) in out.iter_mut().enumerate() {
        let row = rows.as_ptr().add(r * dim);
        let mut acc = _mm512_setzero_si512();
        for (l, qv) in qv.iter().enumerate() {
            acc = _mm512_dpbusd_epi32(acc, *qv, _mm512_loadu_si512(row.add(l * 64) as *const _));
        }
        *o = _mm512_reduce_add_epi32(acc) - 128 * row_sums[r];
    }
}

/// 32 multiply-adds per `vpmaddubsw`, which takes unsigned × signed bytes:
/// |q| (prepared once) times the row with q's sign. Pairs stay within i16
/// because both sides are within ±127 (as `quantize` makes them).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn scan_avx2(q: &[i8], rows: &[i8], dim: usize, out: &mut [i32]) {
    use std::arch::x86_64::*;
    let lanes = dim / 32;
    let qv: Vec<__m256i> = (0..lanes).map(|l| _mm256_loadu_si256(q.as_ptr().add(l * 32) as *const _)).collect();
    let qa: Vec<__m256i> = qv.iter().map(|v| _mm256_abs_epi8(*v)).collect();
    let ones = _mm256_set1_epi16(1);
    for (r, o) in out.iter_mut().enumerate() {
        let row = rows.as_ptr().add(r * dim);
        let mut acc = _mm256_setzero_si256();
        for l in 0..lanes {
            let x = _mm256_sign_epi8(_mm256_loadu_si256(row.add(l * 32) as *const _), qv[l]);
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(qa[l], x), ones));
        }
        let s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        *o = _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01)));
    }
}

pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the features were just detected.
        return unsafe { dot_f32_avx2(a, b) };
    }
    dot_f32_portable(a, b)
}

#[inline(always)]
fn dot_f32_portable(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums let the compiler vectorise without reassociating.
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] = x[i].mul_add(y[i], acc[i]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_f32_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_f32_portable(a, b)
}

pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the feature was just detected.
        return unsafe { dot_i8_avx2(a, b) };
    }
    dot_i8_portable(a, b)
}

#[inline(always)]
fn dot_i8_portable(a: &[i8], b: &[i8]) -> i32 {
    // i16 products summed in i32 lanes: the shape `vpmaddwd` computes.
    let mut acc = [0i32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: i32 = ca.remainder().iter().zip(cb.remainder()).map(|(&x, &y)| x as i32 * y as i32).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] as i16 as i32 * y[i] as i16 as i32;
        }
    }
    acc.iter().sum::<i32>() + tail
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_i8_avx2(a: &[i8], b: &[i8]) -> i32 {
    dot_i8_portable(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(seed: u64, dim: usize) -> Vec<f32> {
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let v: Vec<f32> = (0..dim)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((x >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect();
        let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
        v.into_iter().map(|a| a / n).collect()
    }

    #[test]
    fn flat_search_equals_brute_force() {
        let dim = 384;
        let rows: Vec<Vec<f32>> = (0..2000).map(|i| unit(i, dim)).collect();
        let index = FlatIndex::new(dim, &rows);
        for q in 0..20 {
            let query = unit(10_000 + q, dim);
            let mut brute: Vec<(u32, f32)> =
                rows.iter().enumerate().map(|(i, r)| (i as u32, dot_f32_portable(&query, r))).collect();
            brute.sort_by(|a, b| b.1.total_cmp(&a.1));
            let got = index.search(&query, 10);
            assert_eq!(got.iter().map(|h| h.0).collect::<Vec<_>>(), brute[..10].iter().map(|h| h.0).collect::<Vec<_>>());
            assert!((got[0].1 - brute[0].1).abs() < 1e-5);
        }
        // A row is its own nearest neighbour.
        assert_eq!(index.search(&rows[42], 1)[0].0, 42);
    }

    #[test]
    fn kernels_agree_with_the_portable_code() {
        let a: Vec<i8> = (0..383).map(|i| ((i * 37) % 255 - 127) as i8).collect();
        let b: Vec<i8> = (0..383).map(|i| ((i * 91) % 255 - 127) as i8).collect();
        assert_eq!(dot_i8(&a, &b), dot_i8_portable(&a, &b));
        let (x, y) = (unit(1, 383), unit(2, 383));
        assert!((dot_f32(&x, &y) - dot_f32_portable(&x, &y)).abs() < 1e-6);
    }

    #[test]
    fn the_scan_equals_the_portable_dot_products() {
        let (dim, n) = (384, 300);
        // Symmetric int8, as `quantize` makes it: within ±127.
        let rows: Vec<i8> = (0..dim * n).map(|i| ((i * 7919 + 13) % 255) as i32 - 127).map(|v| v as i8).collect();
        let q: Vec<i8> = (0..dim).map(|i| ((i * 104729) % 255) as i32 - 127).map(|v| v as i8).collect();
        let sums: Vec<i32> = rows.chunks_exact(dim).map(|r| r.iter().map(|&x| x as i32).sum()).collect();
        let mut fast = vec![0; n];
        scan(&q, &rows, &sums, dim, &mut fast);
        let slow: Vec<i32> = rows.chunks_exact(dim).map(|r| dot_i8_portable(&q, r)).collect();
        assert_eq!(fast, slow);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // (an AVX-512 CPU's `scan` takes the other kernel)
            unsafe { scan_avx2(&q, &rows, dim, &mut fast) };
            assert_eq!(fast, slow, "AVX2");
        }
    }

    #[test]
    fn empty_and_odd_inputs() {
        let index = FlatIndex::new(4, &[]);
        assert!(index.search(&[1.0, 0.0, 0.0, 0.0], 3).is_empty());
        let index = FlatIndex::new(4, &[vec![1.0, 0.0, 0.0, 0.0], vec![0.0; 4]]);
        assert_eq!(index.search(&[1.0, 0.0, 0.0, 0.0], 5).len(), 2);
        assert!(index.search(&[1.0, 0.0], 5).is_empty(), "wrong dimension");
    }
}
