//! CPU kernels for the encoders: an int8 matrix product on AVX-512 VNNI
//! (`vpdpbusd`, 64 multiply-adds per instruction, exact i32 accumulation)
//! with a portable fallback computing the same integers; on AVX2 (CPUs
//! without AVX-512 such as AMD's before Zen 4) the same int8 weights times
//! 14-bit activations (`vpmaddwd`); and the small f32 operations around it.
//!
//! Why int8: on this project's reference machine `vpdpbusd` retires ~5.4 G
//! instructions/s per core (~350 G multiply-adds/s) against ~1.2 G for
//! bf16's `vdpbf16ps` and ~3.4 G for f32 FMA (docs/benchmarks.md).
//! Weights are re-quantized once at load from the file's Q4_0 blocks to int8
//! with one scale per output row (finer than Q4_0's own steps, so nothing of
//! the file's precision is lost); activations are quantized per token at each
//! product. With one scale per row and per token the whole dot product stays
//! in i32 and only the epilogue touches floats.
//!
//! Rows of a batch are tokens; no padding is ever computed: windows of
//! different lengths are packed one after another and only attention looks
//! at window boundaries.

use rayon::prelude::*;

/// Output rows per packed panel: one 512-bit register of i32.
const PANEL: usize = 16;
/// Panels computed together (32 outputs) and tokens per micro-tile (`tile`).
const GROUP: usize = 2;
const TOKENS: usize = 8;
/// Tokens per parallel task when a batch is large (keeps a task's activations in L2).
const TASK_TOKENS: usize = 96; // a multiple of TOKENS
/// Below this many multiply-adds a product runs on the calling thread where
/// the pool's threads are hyperthreads of one core (they share its vector
/// units, so waking the pool costs more than it brings for a short query);
/// with cores of their own a short query's products are split too.
const PARALLEL_MACS_SMT: usize = 1 << 24;
const PARALLEL_MACS_CORES: usize = 1 << 19;
/// At most this many inputs per AVX2 product: the activations' bound below
/// keeps k · 8191 · 127 within i32.
const AVX2_MAX_K: usize = 2048;
const I16_MAX: f32 = 8191.0;

/// What happens to each output after the bias is added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epilogue {
    Bias,
    BiasGelu,
}

/// Whether the fast path runs here (`AICC_KERNELS=portable` or `=avx2`
/// turns it off, for tests).
pub fn fast_path() -> bool {
    static FAST: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FAST.get_or_init(|| {
        let forced_off = std::env::var("AICC_KERNELS").is_ok_and(|v| v == "portable" || v == "avx2");
        #[cfg(target_arch = "x86_64")]
        {
            !forced_off && std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512vnni")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = forced_off;
            false
        }
    })
}

/// Whether the AVX2 path runs here where the AVX-512 one does not (AVX2,
/// FMA and F16C; `AICC_KERNELS=portable` turns it off too).
pub fn avx2_path() -> bool {
    static AVX2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVX2.get_or_init(|| {
        let forced_off = std::env::var("AICC_KERNELS").is_ok_and(|v| v == "portable");
        #[cfg(target_arch = "x86_64")]
        {
            !forced_off
                && std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = forced_off;
            false
        }
    })
}

/// The product's instruction set, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Avx512,
    Avx2,
    Portable,
}

fn path() -> Path {
    if fast_path() {
        Path::Avx512
    } else if avx2_path() {
        Path::Avx2
    } else {
        Path::Portable
    }
}

/// `$body` once for each `$i` in `0..$t` (`$t` a constant ≤ 8), unrolled, so
/// that arrays indexed by `$i` can live in registers.
macro_rules! each_token {
    ($t:expr, $i:ident, $body:block) => {{
        debug_assert!($t <= 8);
        if $t > 0 { let $i = 0; $body }
        if $t > 1 { let $i = 1; $body }
        if $t > 2 { let $i = 2; $body }
        if $t > 3 { let $i = 3; $body }
        if $t > 4 { let $i = 4; $body }
        if $t > 5 { let $i = 5; $body }
        if $t > 6 { let $i = 6; $body }
        if $t > 7 { let $i = 7; $body }
    }};
}
pub(crate) use each_token;

/// Threads the kernels use for large batches (rayon's pool; `RAYON_NUM_THREADS` sets it).
pub fn threads() -> usize {
    rayon::current_num_threads()
}

/// The work (multiply-adds) from which a product is split over the pool.
fn parallel_macs() -> usize {
    static MACS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MACS.get_or_init(|| if shares_cores() { PARALLEL_MACS_SMT } else { PARALLEL_MACS_CORES })
}

/// Whether this machine's CPUs are hyperthreads sharing cores, as the kernel
/// reports them (a CPU whose siblings list names more than itself). Unknown
/// counts as shared: the cautious choice, what every box did before.
fn shares_cores() -> bool {
    match std::fs::read_to_string("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list") {
        Ok(list) => list.trim().contains([',', '-']),
        Err(_) => true,
    }
}

/// Symmetric int8 quantization of one row: (values, scale) with `v ≈ q · scale`.
/// (`f32::round` is a library call on baseline x86-64; adding ±0.5 and
/// truncating is one instruction and rounds the same way, half away from zero.)
fn quantize_row(row: &[f32], out: &mut [i8]) -> f32 {
    let max = row.iter().fold(0f32, |m, v| if v.abs() > m { v.abs() } else { m });
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let inv = 1.0 / scale;
    for (q, v) in out.iter_mut().zip(row) {
        let r = v * inv;
        *q = ((r + if r < 0.0 { -0.5 } else { 0.5 }) as i32).clamp(-127, 127) as i8;
    }
    scale
}

/// One token's activations as unsigned bytes `q + 128` (`q` symmetric int8,
/// rounded to nearest even); returns the scale. The scale is set by the
/// channels whose `mask` is 1 (all when `mask` is empty); the others
/// (outliers, mask 0) saturate, and their weights are zero.
fn quantize_activations(row: &[f32], out: &mut [u8], mask: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if fast_path() && row.len() % 16 == 0 {
        // SAFETY: AVX-512 is present (fast_path) and both slices hold row.len() values.
        return unsafe { quantize_activations_avx512(row, out, mask) };
    }
    quantize_activations_portable(row, out, mask)
}

/// One token's activations for the AVX2 product: i16 within ±8191 (rounded
/// to nearest even); returns the scale. `mask` as `quantize_activations`.
fn quantize_i16(row: &[f32], out: &mut [i16], mask: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx2_path() && row.len() % 16 == 0 {
        // SAFETY: AVX2 is present (avx2_path) and both slices hold row.len() values.
        return unsafe { quantize_i16_avx2(row, out, mask) };
    }
    quantize_i16_portable(row, out, mask)
}

/// Largest |value| of `row` where `mask` is 1 (everywhere when it is empty).
fn abs_max_portable(row: &[f32], mask: &[f32]) -> f32 {
    let fold = |m: f32, v: f32| if v > m { v } else { m };
    if mask.is_empty() {
        row.iter().fold(0f32, |m, v| fold(m, v.abs()))
    } else {
        row.iter().zip(mask).fold(0f32, |m, (v, k)| fold(m, v.abs() * k))
    }
}

fn quantize_i16_portable(row: &[f32], out: &mut [i16], mask: &[f32]) -> f32 {
    let max = abs_max_portable(row, mask);
    let scale = if max > 0.0 { max / I16_MAX } else { 1.0 };
    let inv = 1.0 / scale;
    for (q, v) in out.iter_mut().zip(row) {
        *q = (v * inv).round_ties_even().clamp(-I16_MAX, I16_MAX) as i16;
    }
    scale
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_i16_avx2(row: &[f32], out: &mut [i16], mask: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let mut max = _mm256_setzero_ps();
    if mask.is_empty() {
        for c in row.chunks_exact(8) {
            max = _mm256_max_ps(max, _mm256_and_ps(_mm256_loadu_ps(c.as_ptr()), abs));
        }
    } else {
        for (c, k) in row.chunks_exact(8).zip(mask.chunks_exact(8)) {
            max = _mm256_max_ps(max, _mm256_mul_ps(_mm256_and_ps(_mm256_loadu_ps(c.as_ptr()), abs), _mm256_loadu_ps(k.as_ptr())));
        }
    }
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), max);
    let max = lanes.iter().fold(0f32, |a, &v| a.max(v));
    let scale = if max > 0.0 { max / I16_MAX } else { 1.0 };
    let inv = _mm256_set1_ps(1.0 / scale);
    let (lo, hi) = (_mm256_set1_epi32(-(I16_MAX as i32)), _mm256_set1_epi32(I16_MAX as i32));
    for (c, o) in row.chunks_exact(16).zip(out.chunks_exact_mut(16)) {
        let q = |i: usize| {
            let v = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(c.as_ptr().add(8 * i)), inv));
            _mm256_min_epi32(_mm256_max_epi32(v, lo), hi)
        };
        // packs interleaves the 128-bit lanes: 0 2 1 3 puts them back in order.
        let v = _mm256_permute4x64_epi64(_mm256_packs_epi32(q(0), q(1)), 0b11_01_10_00);
        _mm256_storeu_si256(o.as_mut_ptr() as *mut __m256i, v);
    }
    scale
}

fn quantize_activations_portable(row: &[f32], out: &mut [u8], mask: &[f32]) -> f32 {
    let max = abs_max_portable(row, mask);
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let inv = 1.0 / scale;
    for (q, v) in out.iter_mut().zip(row) {
        *q = ((v * inv).round_ties_even().clamp(-127.0, 127.0) as i32 + 128) as u8;
    }
    scale
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn quantize_activations_avx512(row: &[f32], out: &mut [u8], mask: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let mut max = _mm512_setzero_ps();
    if mask.is_empty() {
        for c in row.chunks_exact(16) {
            max = _mm512_max_ps(max, _mm512_abs_ps(_mm512_loadu_ps(c.as_ptr())));
        }
    } else {
        for (c, k) in row.chunks_exact(16).zip(mask.chunks_exact(16)) {
            max = _mm512_max_ps(max, _mm512_mul_ps(_mm512_abs_ps(_mm512_loadu_ps(c.as_ptr())), _mm512_loadu_ps(k.as_ptr())));
        }
    }
    let max = _mm512_reduce_max_ps(max);
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let inv = _mm512_set1_ps(1.0 / scale);
    let (lo, hi, bias) = (_mm512_set1_epi32(-127), _mm512_set1_epi32(127), _mm512_set1_epi32(128));
    for (c, o) in row.chunks_exact(16).zip(out.chunks_exact_mut(16)) {
        let q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(c.as_ptr()), inv));
        let q = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(q, lo), hi), bias);
        _mm_storeu_si128(o.as_mut_ptr() as *mut _, _mm512_cvtepi32_epi8(q));
    }
    scale
}

/// Symmetric int8 quantisation of `row` (a multiple of 32 long) with one
/// scale, rounding to nearest even: the generator's per-block quantizer
/// (`llm::kquant`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn quantize_bytes_avx2(row: &[f32], out: &mut [u8]) -> f32 {
    use std::arch::x86_64::*;
    debug_assert!(row.len() % 32 == 0 && out.len() == row.len());
    let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let mut max = _mm256_setzero_ps();
    for c in row.chunks_exact(8) {
        max = _mm256_max_ps(max, _mm256_and_ps(_mm256_loadu_ps(c.as_ptr()), abs));
    }
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), max);
    let max = lanes.iter().fold(0f32, |a, &v| a.max(v));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let inv = _mm256_set1_ps(1.0 / scale);
    let (lo, hi) = (_mm256_set1_epi32(-127), _mm256_set1_epi32(127));
    // The packs interleave 128-bit lanes; this puts the 4-byte groups back in order.
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (c, o) in row.chunks_exact(32).zip(out.chunks_exact_mut(32)) {
        // (cvtps rounds to nearest even, as the portable path)
        let q = |i: usize| {
            let v = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(c.as_ptr().add(8 * i)), inv));
            _mm256_min_epi32(_mm256_max_epi32(v, lo), hi)
        };
        let bytes = _mm256_packs_epi16(_mm256_packs_epi32(q(0), q(1)), _mm256_packs_epi32(q(2), q(3)));
        let bytes = _mm256_permutevar8x32_epi32(bytes, order);
        _mm256_storeu_si256(o.as_mut_ptr() as *mut __m256i, bytes);
    }
    scale
}

/// A linear layer `y = x·Wᵀ + b`. W is int8, packed in panels of 16 output
/// rows: `w[(panel·k/4 + j)·16 + i]` holds `W[panel·16+i][4j..4j+4]` as 4 bytes.
pub struct PackedLinear {
    pub n: usize,
    pub k: usize,
    w: Vec<u32>,
    /// Per output row: the weight scale, and 128·Σq (activations are fed as
    /// unsigned `q + 128`, so this is what the product gained).
    scale: Vec<f32>,
    offset: Vec<i32>,
    bias: Vec<f32>,
    /// Input channels computed in f32 beside the int8 product, and their
    /// weights (`outlier_w[i·n + row]` is `W[row][outliers[i]]`).
    /// A BERT layer's inputs have a few channels far larger than the rest;
    /// in the int8 product they would set every token's scale and round the
    /// other channels away. Left out of it (zero columns in `w`, masked
    /// when the activations' scale is taken), they cost a few f32
    /// multiply-adds per output.
    outliers: Vec<usize>,
    outlier_w: Vec<f32>,
    /// Per input channel, 0 for an outlier and 1 for the rest (empty without outliers).
    inliers: Vec<f32>,
}

impl PackedLinear {
    /// `weights`: `n` rows of `k` values (out × in, row-major).
    pub fn new(weights: &[f32], bias: Vec<f32>, n: usize, k: usize) -> Result<Self, String> {
        Self::with_outliers(weights, bias, n, k, &[])
    }

    /// `new`, with the input channels `outliers` computed in f32.
    pub fn with_outliers(weights: &[f32], bias: Vec<f32>, n: usize, k: usize, outliers: &[usize]) -> Result<Self, String> {
        if n % (PANEL * GROUP) != 0 || k % 4 != 0 || weights.len() != n * k || bias.len() != n {
            return Err(format!("unsupported linear shape {n}×{k} (outputs must be a multiple of 32, inputs of 4)"));
        }
        if let Some(c) = outliers.iter().find(|&&c| c >= k) {
            return Err(format!("outlier channel {c} of a linear with {k} inputs"));
        }
        let kq = k / 4;
        let mut w = vec![0u32; n * kq];
        let (mut scale, mut offset) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let mut outlier_w = vec![0f32; n * outliers.len()];
        let (mut q, mut row_w) = (vec![0i8; k], vec![0f32; k]);
        for row in 0..n {
            row_w.copy_from_slice(&weights[row * k..][..k]);
            for (i, &c) in outliers.iter().enumerate() {
                outlier_w[i * n + row] = row_w[c];
                row_w[c] = 0.0;
            }
            scale.push(quantize_row(&row_w, &mut q));
            offset.push(128 * q.iter().map(|&v| v as i32).sum::<i32>());
            let (p, i) = (row / PANEL, row % PANEL);
            for j in 0..kq {
                w[(p * kq + j) * PANEL + i] = u32::from_le_bytes([q[4 * j] as u8, q[4 * j + 1] as u8, q[4 * j + 2] as u8, q[4 * j + 3] as u8]);
            }
        }
        let mut inliers = if outliers.is_empty() { vec![] } else { vec![1.0; k] };
        outliers.iter().for_each(|&c| inliers[c] = 0.0);
        Ok(Self { n, k, w, scale, offset, bias, outliers: outliers.to_vec(), outlier_w, inliers })
    }

    /// `out[m×n] = x[m×k]·Wᵀ + b`, then the epilogue.
    pub fn forward(&self, x: &[f32], m: usize, out: &mut [f32], epilogue: Epilogue) {
        self.forward_with(x, m, out, epilogue, path())
    }

    fn forward_with(&self, x: &[f32], m: usize, out: &mut [f32], epilogue: Epilogue, path: Path) {
        assert_eq!(x.len(), m * self.k);
        assert_eq!(out.len(), m * self.n);
        let gelu = epilogue == Epilogue::BiasGelu;
        if path == Path::Avx2 && self.k <= AVX2_MAX_K {
            return self.forward_i16(x, m, out, gelu);
        }
        let path = if path == Path::Avx2 { Path::Portable } else { path };
        let kq = self.k / 4;
        // Activations: per token, int8 shifted to unsigned (`q + 128`), four
        // to a u32; whole tiles of rows (the padding rows are computed and dropped).
        let rows = m.div_ceil(TOKENS) * TOKENS;
        with_scratch(&ACTIVATIONS, rows * kq, |xq| {
            with_scratch(&SCALES, rows, |xs| {
                self.quantize(x, xq, xs);
                self.schedule(m, out, gelu, |group, t0, t1, out| {
                    // SAFETY: each path is taken only where the CPU has its instructions (`path()`).
                    unsafe {
                        #[cfg(target_arch = "x86_64")]
                        match path {
                            Path::Avx512 => self.group_avx512(x, xq, xs, group, t0, t1, m, out),
                            _ => self.group_portable(x, xq, xs, group, t0, t1, out),
                        }
                        #[cfg(not(target_arch = "x86_64"))]
                        self.group_portable(x, xq, xs, group, t0, t1, out);
                    }
                });
            })
        });
    }

    /// The AVX2 product: 14-bit activations, one pass. `vpmaddwd` multiplies
    /// 16 pairs of i16 per instruction; fed int8 activations instead it
    /// needs `vpmaddubsw` and a sign trick first, so on AVX2 the wider
    /// activations cost no more than int8 ones.
    fn forward_i16(&self, x: &[f32], m: usize, out: &mut [f32], gelu: bool) {
        with_scratch(&ACTIVATIONS_I16, m * self.k, |xq| {
            with_scratch(&SCALES, m, |xs| {
                for (t, row) in x.chunks_exact(self.k).enumerate() {
                    xs[t] = quantize_i16(row, &mut xq[t * self.k..][..self.k], &self.inliers);
                }
                self.schedule(m, out, gelu, |group, t0, t1, out| {
                    // SAFETY: only reached where `path()` allows AVX2.
                    #[cfg(target_arch = "x86_64")]
                    unsafe {
                        self.group_avx2(x, xq, xs, group, t0, t1, out)
                    };
                });
            })
        });
    }

    fn quantize(&self, x: &[f32], xq: &mut [u32], xs: &mut [f32]) {
        let kq = self.k / 4;
        for (t, row) in x.chunks_exact(self.k).enumerate() {
            // SAFETY: the row of `xq` is k bytes long.
            let dst = unsafe { std::slice::from_raw_parts_mut(xq.as_mut_ptr().add(t * kq) as *mut u8, self.k) };
            xs[t] = quantize_activations(row, dst, &self.inliers);
        }
    }

    /// Splits a product of `m` tokens into (token range × 32 outputs) tasks,
    /// runs `block(group, t0, t1, out)` for each — on the pool when the
    /// product is large — then GELU on the block. Each task writes only its
    /// own block of `out`.
    fn schedule(&self, m: usize, out: &mut [f32], gelu: bool, block: impl Fn(usize, usize, usize, *mut f32) + Sync) {
        let groups = self.n / (PANEL * GROUP);
        let chunks = m.div_ceil(TASK_TOKENS);
        let out_ptr = SendPtr(out.as_mut_ptr());
        let task = |task: usize| {
            let (chunk, group) = (task / groups, task % groups);
            let (t0, t1) = (chunk * TASK_TOKENS, ((chunk + 1) * TASK_TOKENS).min(m));
            let out = out_ptr;
            block(group, t0, t1, out.0);
            if gelu {
                let c0 = group * PANEL * GROUP;
                for t in t0..t1 {
                    // SAFETY: the block this task just wrote.
                    gelu_slice(unsafe { std::slice::from_raw_parts_mut(out.0.add(t * self.n + c0), PANEL * GROUP) });
                }
            }
        };
        if m * self.n * self.k < parallel_macs() {
            (0..groups * chunks).for_each(task);
        } else {
            (0..groups * chunks).into_par_iter().for_each(task);
        }
    }

    /// Tokens `t0..t1` × the 32 outputs of `group`. `xq` has whole tiles of
    /// rows, `out` only `m` rows.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vnni")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn group_avx512(&self, x: &[f32], xq: &[u32], xs: &[f32], group: usize, t0: usize, t1: usize, m: usize, out: *mut f32) {
        let kq = self.k / 4;
        let c0 = group * PANEL * GROUP;
        let w = self.w.as_ptr().add(group * GROUP * kq * PANEL);
        let mut acc = [0i32; TOKENS * PANEL * GROUP];
        for t in (t0..t1).step_by(TOKENS) {
            // A short query (12 tokens: 8 + 4) wastes no half tile.
            if t1 - t <= TOKENS / 2 {
                tile_half(xq.as_ptr().add(t * kq), kq, w, acc.as_mut_ptr());
            } else {
                tile(xq.as_ptr().add(t * kq), kq, w, acc.as_mut_ptr());
            }
            for (r, row) in acc.chunks_exact(PANEL * GROUP).enumerate().take(m.saturating_sub(t)) {
                self.finish_avx512(row, xs[t + r], c0, out.add((t + r) * self.n + c0), &x[(t + r) * self.k..][..self.k]);
            }
        }
    }

    /// Tokens `t0..t1` × the 32 outputs of `group` on AVX2 (i16 activations,
    /// `k` apart), in tiles of 4, 2 and 1 tokens.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn group_avx2(&self, x: &[f32], xq: &[i16], xs: &[f32], group: usize, t0: usize, t1: usize, out: *mut f32) {
        let kq = self.k / 4;
        let c0 = group * PANEL * GROUP;
        let mut acc = [0i32; 4 * PANEL * GROUP];
        let mut t = t0;
        while t < t1 {
            let n = [4, 2, 1].into_iter().find(|&n| t1 - t >= n).expect("t < t1");
            for g in 0..GROUP {
                let w = self.w.as_ptr().add((group * GROUP + g) * kq * PANEL);
                let (x, dst) = (xq.as_ptr().add(t * self.k), acc.as_mut_ptr().add(g * PANEL));
                match n {
                    4 => panel_i16_avx2::<4>(x, self.k, kq, w, dst),
                    2 => panel_i16_avx2::<2>(x, self.k, kq, w, dst),
                    _ => panel_i16_avx2::<1>(x, self.k, kq, w, dst),
                }
            }
            for r in 0..n {
                let row = &acc[r * PANEL * GROUP..(r + 1) * PANEL * GROUP];
                self.finish_avx2(row, xs[t + r], c0, out.add((t + r) * self.n + c0), &x[(t + r) * self.k..][..self.k]);
            }
            t += n;
        }
    }

    /// The same integers in plain Rust, for CPUs without AVX-512 VNNI or AVX2.
    #[allow(clippy::too_many_arguments)]
    unsafe fn group_portable(&self, x: &[f32], xq: &[u32], xs: &[f32], group: usize, t0: usize, t1: usize, out: *mut f32) {
        let kq = self.k / 4;
        let c0 = group * PANEL * GROUP;
        let mut acc = [0i32; PANEL * GROUP];
        for t in t0..t1 {
            let q = &xq[t * kq..][..kq];
            for (c, a) in acc.iter_mut().enumerate() {
                let (p, i) = ((c0 + c) / PANEL, (c0 + c) % PANEL);
                *a = q.iter().enumerate().fold(0i32, |s, (j, xv)| {
                    let wv = self.w[(p * kq + j) * PANEL + i].to_le_bytes();
                    let xv = xv.to_le_bytes();
                    s + (0..4).map(|b| xv[b] as i32 * wv[b] as i8 as i32).sum::<i32>()
                });
            }
            let dst = std::slice::from_raw_parts_mut(out.add(t * self.n + c0), PANEL * GROUP);
            self.finish(&acc, xs[t], c0, dst, &x[t * self.k..][..self.k]);
        }
    }

    /// Integer sums of one token (unsigned activations: less their offset)
    /// → floats, with the bias and the outlier channels of `x_row`.
    fn finish(&self, acc: &[i32], x_scale: f32, c0: usize, dst: &mut [f32], x_row: &[f32]) {
        let cols = c0..c0 + PANEL * GROUP;
        for (((d, a), (sc, off)), b) in dst.iter_mut().zip(acc).zip(self.scale[cols.clone()].iter().zip(&self.offset[cols.clone()])).zip(&self.bias[cols]) {
            *d = (a - off) as f32 * (x_scale * sc) + b;
        }
        for (i, &channel) in self.outliers.iter().enumerate() {
            let v = x_row[channel];
            let w = &self.outlier_w[i * self.n + c0..][..PANEL * GROUP];
            dst.iter_mut().zip(w).for_each(|(d, w)| *d += v * w);
        }
    }

    /// `finish` in two registers of 16 outputs (written with intrinsics:
    /// the compiler left the outlier sums scalar). Multiplies and adds
    /// rounded apart, as `finish`: every path gives the same floats.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn finish_avx512(&self, acc: &[i32], x_scale: f32, c0: usize, dst: *mut f32, x_row: &[f32]) {
        use std::arch::x86_64::*;
        let xs = _mm512_set1_ps(x_scale);
        let mut v = [_mm512_setzero_ps(); GROUP];
        for (h, v) in v.iter_mut().enumerate() {
            let c = c0 + h * PANEL;
            let a = _mm512_sub_epi32(_mm512_loadu_si512(acc.as_ptr().add(h * PANEL) as *const _), _mm512_loadu_si512(self.offset.as_ptr().add(c) as *const _));
            let scale = _mm512_mul_ps(xs, _mm512_loadu_ps(self.scale.as_ptr().add(c)));
            *v = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(a), scale), _mm512_loadu_ps(self.bias.as_ptr().add(c)));
        }
        for (i, &channel) in self.outliers.iter().enumerate() {
            let x = _mm512_set1_ps(x_row[channel]);
            let w = self.outlier_w.as_ptr().add(i * self.n + c0);
            for (h, v) in v.iter_mut().enumerate() {
                *v = _mm512_add_ps(*v, _mm512_mul_ps(x, _mm512_loadu_ps(w.add(h * PANEL))));
            }
        }
        for (h, v) in v.iter().enumerate() {
            _mm512_storeu_ps(dst.add(h * PANEL), *v);
        }
    }

    /// `finish` for the AVX2 path's signed activations (no offset), in four
    /// registers of 8 outputs.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn finish_avx2(&self, acc: &[i32], x_scale: f32, c0: usize, dst: *mut f32, x_row: &[f32]) {
        use std::arch::x86_64::*;
        let xs = _mm256_set1_ps(x_scale);
        let mut v = [_mm256_setzero_ps(); 4];
        for (q, v) in v.iter_mut().enumerate() {
            let c = c0 + q * 8;
            let a = _mm256_cvtepi32_ps(_mm256_loadu_si256(acc.as_ptr().add(q * 8) as *const _));
            let scale = _mm256_mul_ps(xs, _mm256_loadu_ps(self.scale.as_ptr().add(c)));
            *v = _mm256_add_ps(_mm256_mul_ps(a, scale), _mm256_loadu_ps(self.bias.as_ptr().add(c)));
        }
        for (i, &channel) in self.outliers.iter().enumerate() {
            let x = _mm256_set1_ps(x_row[channel]);
            let w = self.outlier_w.as_ptr().add(i * self.n + c0);
            for (q, v) in v.iter_mut().enumerate() {
                *v = _mm256_add_ps(*v, _mm256_mul_ps(x, _mm256_loadu_ps(w.add(q * 8))));
            }
        }
        for (q, v) in v.iter().enumerate() {
            _mm256_storeu_ps(dst.add(q * 8), *v);
        }
    }
}

thread_local! {
    static ACTIVATIONS: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
    static ACTIVATIONS_I16: std::cell::RefCell<Vec<i16>> = const { std::cell::RefCell::new(Vec::new()) };
    static SCALES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    static ATTENTION: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on a buffer of at least `len` values kept by this thread: a
/// forward pass needs megabytes, and fresh pages cost ~5% of the time in page
/// faults. The contents are whatever the last user left. (A re-entrant call,
/// e.g. from a rayon job stolen while waiting, gets a fresh buffer.)
pub fn with_scratch<T: Copy + Default + 'static, R>(
    slot: &'static std::thread::LocalKey<std::cell::RefCell<Vec<T>>>,
    len: usize,
    f: impl FnOnce(&mut [T]) -> R,
) -> R {
    let mut f = Some(f);
    let reused = slot.with(|cell| {
        let mut buf = cell.try_borrow_mut().ok()?;
        if buf.len() < len {
            buf.resize(len, T::default());
        }
        Some((f.take().expect("called once"))(&mut buf[..len]))
    });
    match reused {
        Some(r) => r,
        None => (f.take().expect("called once"))(&mut vec![T::default(); len]),
    }
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: used only to hand disjoint output blocks to rayon tasks.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// Micro-tiles of i32 sums, TOKENS (or 4, for a short remainder) tokens ×
/// 32 outputs: for each group of 4 inputs, broadcast each token's 4 bytes and
/// accumulate them against 2 panels of 16 weight quads. Eight tokens per
/// weight load halve the weight traffic of a 4-token tile, which matters once
/// a panel pair (k up to 1536) no longer fits L1. Named accumulators: written
/// as arrays, the compiler spilled them to the stack.
macro_rules! micro_tile {
    ($name:ident, $($t:literal: $r0:ident $r1:ident),+) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx512vnni")]
        unsafe fn $name(x: *const u32, kq: usize, w: *const u32, out: *mut i32) {
            use std::arch::x86_64::*;
            let (w0, w1) = (w, w.add(kq * PANEL));
            $(let mut $r0 = _mm512_setzero_si512(); let mut $r1 = _mm512_setzero_si512();)+
            for j in 0..kq {
                let o = j * PANEL;
                let p0 = _mm512_loadu_si512(w0.add(o) as *const _);
                let p1 = _mm512_loadu_si512(w1.add(o) as *const _);
                $(
                    let v = _mm512_set1_epi32(*x.add($t * kq + j) as i32);
                    $r0 = _mm512_dpbusd_epi32($r0, v, p0);
                    $r1 = _mm512_dpbusd_epi32($r1, v, p1);
                )+
            }
            $(
                _mm512_storeu_si512(out.add($t * GROUP * PANEL) as *mut _, $r0);
                _mm512_storeu_si512(out.add(($t * GROUP + 1) * PANEL) as *mut _, $r1);
            )+
        }
    };
}

// Token row t of `x` goes to output row t.
micro_tile!(tile, 0: a0 a1, 1: b0 b1, 2: c0 c1, 3: d0 d1, 4: e0 e1, 5: f0 f1, 6: g0 g1, 7: h0 h1);
micro_tile!(tile_half, 0: a0 a1, 1: b0 b1, 2: c0 c1, 3: d0 d1);

/// `T` tokens (i16 rows of `x`, `k` apart) × one panel of 16 outputs:
/// `out[i·32 + r]` = Σ w·x. Four tokens' sums fill the registers with half
/// a panel, so they take it in two halves of 8 outputs; one or two tokens
/// take all 16 at once (each weight line read once: a short remainder is
/// bound by the weight loads).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn panel_i16_avx2<const T: usize>(x: *const i16, k: usize, kq: usize, w: *const u32, out: *mut i32) {
    if T <= 2 {
        panel_part_avx2::<T, 4>(x, k, kq, w, out, 0);
    } else {
        panel_part_avx2::<T, 2>(x, k, kq, w, out, 0);
        panel_part_avx2::<T, 2>(x, k, kq, w, out, 8);
    }
}

/// Outputs `first..first + 4Q` of a panel for `T` tokens. The weights of 4
/// outputs for 4 inputs are 16 bytes, widened to one register of (output,
/// input) i16; a token's 4 inputs are broadcast, and `vpmaddwd` leaves each
/// output's sum in two lanes (inputs 0+1 and 2+3), added at the end.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn panel_part_avx2<const T: usize, const Q: usize>(x: *const i16, k: usize, kq: usize, w: *const u32, out: *mut i32, first: usize) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_si256(); Q]; T];
    for j in 0..kq {
        let wq = w.add(j * PANEL + first) as *const __m128i;
        let mut wv = [_mm256_setzero_si256(); Q];
        for (q, v) in wv.iter_mut().enumerate() {
            *v = _mm256_cvtepi8_epi16(_mm_loadu_si128(wq.add(q)));
        }
        each_token!(T, i, {
            let v = _mm256_set1_epi64x((x.add(i * k + 4 * j) as *const i64).read_unaligned());
            for q in 0..Q {
                acc[i][q] = _mm256_add_epi32(acc[i][q], _mm256_madd_epi16(wv[q], v));
            }
        });
    }
    for (i, a) in acc.iter().enumerate() {
        for q in (0..Q).step_by(2) {
            // hadd pairs within 128-bit lanes: outputs 0 1 4 5 | 2 3 6 7.
            let sums = _mm256_permute4x64_epi64(_mm256_hadd_epi32(a[q], a[q + 1]), 0b11_01_10_00);
            _mm256_storeu_si256(out.add(i * PANEL * GROUP + first + 4 * q) as *mut __m256i, sums);
        }
    }
}

/// erf as a rational function of x (the single-precision approximation of
/// Eigen and XLA): no `exp`, no branch, so loops over it vectorise.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    p = x2 * p + -2.101_024e-6;
    p = x2 * p + -5.692_506_4e-5;
    p = x2 * p + -7.349_906_3e-4;
    p = x2 * p + -2.954_6e-3;
    p = x2 * p + -1.609_603_3e-2;
    let mut q = x2 * -1.456_607_2e-5 + -2.133_740_6e-4;
    q = x2 * q + -1.682_827e-3;
    q = x2 * q + -7.373_329e-3;
    q = x2 * q + -1.426_474e-2;
    x * p / q
}

/// eˣ by range reduction to 2ⁿ·eᶠ and the Cephes polynomial (relative
/// error ~1e-7); branch-free, unlike the library call, so it vectorises.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // Round to nearest with the 1.5·2²³ trick (no rounding instruction
    // needed); `t`'s low bits are then n itself, so no float-to-int
    // conversion either (Rust's saturating `as i32` would not vectorise).
    let t = x * std::f32::consts::LOG2_E + 12_582_912.0;
    let n = t - 12_582_912.0;
    let f = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4 * f + 1.398_2e-3;
    p = p * f + 8.333_452e-3;
    p = p * f + 4.166_579_6e-2;
    p = p * f + 1.666_666_5e-1;
    p = p * f + 5.000_000_1e-1;
    let e = p * f * f + f + 1.0;
    let n = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    e * f32::from_bits(((n + 127) << 23) as u32)
}

/// The exact (erf) GELU, as BERT uses it.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// Calls `body(args…)` (an `#[inline(always)]` fn) compiled for AVX-512 or
/// for AVX2 and FMA where this CPU takes those paths, else as it is: plain
/// loops over slices that the compiler vectorises for whichever unit is there.
macro_rules! on_widest_unit {
    ($body:ident($($arg:ident: $ty:ty),*)) => {{
        #[cfg(target_arch = "x86_64")]
        if fast_path() {
            #[target_feature(enable = "avx512f")]
            unsafe fn wide($($arg: $ty),*) {
                $body($($arg),*)
            }
            // SAFETY: fast_path implies AVX-512F.
            return unsafe { wide($($arg),*) };
        }
        #[cfg(target_arch = "x86_64")]
        if avx2_path() {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn wide($($arg: $ty),*) {
                $body($($arg),*)
            }
            // SAFETY: avx2_path implies AVX2 and FMA.
            return unsafe { wide($($arg),*) };
        }
        $body($($arg),*)
    }};
}

fn gelu_slice(v: &mut [f32]) {
    #[inline(always)]
    fn body(v: &mut [f32]) {
        v.iter_mut().for_each(|x| *x = gelu(*x));
    }
    on_widest_unit!(body(v: &mut [f32]))
}

/// Layer norm of every `w.len()`-wide row of `x`, in place.
/// (Sums in sixteen lanes and compiled for the vector unit at hand: with
/// serial sums it ran as scalar code, ~8% of a batch of passages.)
pub fn layer_norm(x: &mut [f32], w: &[f32], b: &[f32], eps: f32) {
    #[inline(always)]
    fn body(x: &mut [f32], w: &[f32], b: &[f32], eps: f32) {
        let h = w.len();
        for row in x.chunks_exact_mut(h) {
            let mean = sum16(row) / h as f32;
            let var = fold16(row, 0.0, |v| (v - mean) * (v - mean), |a, b| a + b) / h as f32;
            let inv = 1.0 / (var + eps).sqrt();
            for ((v, w), b) in row.iter_mut().zip(w).zip(b) {
                *v = (*v - mean) * inv * w + b;
            }
        }
    }
    on_widest_unit!(body(x: &mut [f32], w: &[f32], b: &[f32], eps: f32))
}

/// `x += y`, then layer norm: the residual step of a post-LN transformer.
pub fn add_layer_norm(x: &mut [f32], y: &[f32], w: &[f32], b: &[f32], eps: f32) {
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
    layer_norm(x, w, b, eps);
}

/// Bidirectional self-attention over windows packed one after another.
/// `qkv`: rows of `[q | k | v]` (3·hidden wide); `lens`: tokens per window;
/// writes each token's context (hidden wide) into `ctx`.
pub fn attention(qkv: &[f32], lens: &[usize], heads: usize, hidden: usize, ctx: &mut [f32]) {
    let hd = hidden / heads;
    let mut tasks = Vec::with_capacity(lens.len() * heads);
    let mut start = 0;
    for &len in lens {
        tasks.extend((0..heads).map(|h| (start, len, h)));
        start += len;
    }
    let work: usize = lens.iter().map(|l| l * l).sum::<usize>() * heads * hd;
    let ctx_ptr = SendPtr(ctx.as_mut_ptr());
    let run = |&(start, len, h): &(usize, usize, usize)| {
        let ctx = ctx_ptr;
        // SAFETY: (token, head) cells are disjoint across tasks; fast_path implies AVX-512F.
        unsafe {
            #[cfg(target_arch = "x86_64")]
            if fast_path() {
                return attend_avx512(qkv, start, len, h, hd, hidden, ctx.0);
            }
            #[cfg(target_arch = "x86_64")]
            if avx2_path() {
                return attend_avx2(qkv, start, len, h, hd, hidden, ctx.0);
            }
            attend(qkv, start, len, h, hd, hidden, ctx.0)
        }
    };
    // Short inputs are not worth waking the pool (on hyperthreads).
    if work < if parallel_macs() == PARALLEL_MACS_SMT { 1 << 20 } else { 1 << 14 } {
        tasks.iter().for_each(run);
    } else {
        tasks.par_iter().for_each(run);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn attend_avx512(qkv: &[f32], start: usize, len: usize, h: usize, hd: usize, hidden: usize, ctx: *mut f32) {
    if hd == HEAD {
        return attend_blocked_avx512(qkv, start, len, h, hidden, ctx);
    }
    attend(qkv, start, len, h, hd, hidden, ctx)
}

/// E5-small's head width, and the queries `attend_blocked_avx512` takes together.
const HEAD: usize = 32;
const QUERIES: usize = 8;

/// `attend` for 32-wide heads, eight queries at a time: each load of 16
/// transposed keys (or of a value row) feeds eight queries' multiply-adds
/// from registers, where one query at a time loaded and stored its scores
/// for every multiply-add. Long passages spend most of their attention time
/// here.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn attend_blocked_avx512(qkv: &[f32], start: usize, len: usize, h: usize, hidden: usize, ctx: *mut f32) {
    use std::arch::x86_64::*;
    let scale = 1.0 / (HEAD as f32).sqrt();
    let base = qkv.as_ptr().add(start * 3 * hidden + h * HEAD);
    debug_assert!(qkv.len() >= (start + len) * 3 * hidden);
    let stride = 3 * hidden;
    let row = move |t: usize, part: usize| base.add(t * stride + part * hidden);
    // Keys transposed (HEAD × padded len, zeros past the end), then eight rows of scores.
    let lp = len.div_ceil(16) * 16;
    with_scratch(&ATTENTION, (HEAD + QUERIES) * lp, |buf| {
        let (kt, scores) = buf.split_at_mut(HEAD * lp);
        for (c, kt) in kt.chunks_exact_mut(lp).enumerate() {
            let mut k = base.add(hidden + c);
            for v in &mut kt[..len] {
                *v = *k;
                k = k.add(stride);
            }
            kt[len..].fill(0.0);
        }
        let mut i0 = 0;
        while i0 < len {
            let rows = (len - i0).min(QUERIES);
            // Scaled queries; a short last block repeats its last row.
            // (With intrinsics: the compiler made gathers and scatters of it.)
            let mut q = [[0f32; HEAD]; QUERIES];
            let sc = _mm512_set1_ps(scale);
            for (r, q) in q.iter_mut().enumerate() {
                let src = row(i0 + r.min(rows - 1), 0);
                for half in 0..HEAD / 16 {
                    _mm512_storeu_ps(q.as_mut_ptr().add(16 * half), _mm512_mul_ps(_mm512_loadu_ps(src.add(16 * half)), sc));
                }
            }
            for jb in (0..lp).step_by(16) {
                let mut acc = [_mm512_setzero_ps(); QUERIES];
                for c in 0..HEAD {
                    let k = _mm512_loadu_ps(kt.as_ptr().add(c * lp + jb));
                    for r in 0..QUERIES {
                        acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(q[r][c]), k, acc[r]);
                    }
                }
                for (r, a) in acc.iter().enumerate() {
                    _mm512_storeu_ps(scores.as_mut_ptr().add(r * lp + jb), *a);
                }
            }
            // Softmax, normalised in place (the repeated rows are left as they are).
            for r in 0..rows {
                let s = &mut scores[r * lp..r * lp + len];
                let max = max16(s);
                s.iter_mut().for_each(|s| *s = exp(*s - max));
                let inv = 1.0 / sum16(s);
                s.iter_mut().for_each(|s| *s *= inv);
            }
            let mut acc = [[_mm512_setzero_ps(); 2]; QUERIES];
            for j in 0..len {
                let v = row(j, 2);
                let (v0, v1) = (_mm512_loadu_ps(v), _mm512_loadu_ps(v.add(16)));
                for r in 0..QUERIES {
                    let p = _mm512_set1_ps(*scores.get_unchecked(r * lp + j));
                    acc[r][0] = _mm512_fmadd_ps(p, v0, acc[r][0]);
                    acc[r][1] = _mm512_fmadd_ps(p, v1, acc[r][1]);
                }
            }
            for (r, a) in acc.iter().enumerate().take(rows) {
                let out = ctx.add((start + i0 + r) * hidden + h * HEAD);
                _mm512_storeu_ps(out, a[0]);
                _mm512_storeu_ps(out.add(16), a[1]);
            }
            i0 += rows;
        }
    });
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_avx2(qkv: &[f32], start: usize, len: usize, h: usize, hd: usize, hidden: usize, ctx: *mut f32) {
    attend(qkv, start, len, h, hd, hidden, ctx)
}

/// `combine` over `map` of every value of `v`, in sixteen lanes (one
/// AVX-512 register) instead of one serial chain; the lanes are combined
/// from `init`, then the tail.
#[inline(always)]
fn fold16(v: &[f32], init: f32, map: impl Fn(f32) -> f32, combine: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [init; 16];
    let chunks = v.chunks_exact(16);
    let tail = chunks.remainder().iter().fold(init, |a, &x| combine(a, map(x)));
    for c in chunks {
        for i in 0..16 {
            acc[i] = combine(acc[i], map(c[i]));
        }
    }
    combine(acc.iter().fold(init, |a, &x| combine(a, x)), tail)
}

/// The largest value (`f32::max` in a fold is a serial chain of
/// compare-and-blend for NaN's sake: a fifth of attention's time on
/// 30-token passages).
#[inline(always)]
fn max16(v: &[f32]) -> f32 {
    fold16(v, f32::NEG_INFINITY, |x| x, |a, b| if b > a { b } else { a })
}

/// The sum (a serial f32 sum does not vectorise).
#[inline(always)]
fn sum16(v: &[f32]) -> f32 {
    fold16(v, 0.0, |x| x, |a, b| a + b)
}

/// One head of one window: softmax(q·kᵀ/√d)·v for each of its tokens.
/// The head's keys are first copied transposed (`hd × len`), so a query's
/// scores are `hd` vector updates across all keys at once instead of `len`
/// short dot products, each ending in a horizontal sum (attention was half
/// the time of a 150-token passage before).
#[inline(always)]
unsafe fn attend(qkv: &[f32], start: usize, len: usize, h: usize, hd: usize, hidden: usize, ctx: *mut f32) {
    let scale = 1.0 / (hd as f32).sqrt();
    let row = |t: usize, part: usize| &qkv[(start + t) * 3 * hidden + part * hidden + h * hd..][..hd];
    let mut kt = vec![0f32; hd * len];
    for j in 0..len {
        for (c, k) in row(j, 1).iter().enumerate() {
            kt[c * len + j] = *k;
        }
    }
    let mut scores = vec![0f32; len];
    for i in 0..len {
        let q = row(i, 0);
        scores.fill(0.0);
        for (c, qc) in q.iter().enumerate() {
            let qc = qc * scale;
            scores.iter_mut().zip(&kt[c * len..(c + 1) * len]).for_each(|(s, k)| *s += qc * k);
        }
        let max = max16(&scores);
        // Apart from the sum, so the branch-free exp vectorises (a float sum
        // in the same loop is one serial chain the compiler may not reorder).
        scores.iter_mut().for_each(|s| *s = exp(*s - max));
        let sum = sum16(&scores);
        let out = std::slice::from_raw_parts_mut(ctx.add((start + i) * hidden + h * hd), hd);
        let inv = 1.0 / sum;
        match hd {
            // E5-small's heads: a fixed-size accumulator stays in registers
            // instead of a load and a store of `out` per key.
            32 => weighted_sum::<32>(&scores, inv, |j| row(j, 2), out),
            _ => {
                out.fill(0.0);
                for (j, s) in scores.iter().enumerate() {
                    let p = s * inv;
                    out.iter_mut().zip(row(j, 2)).for_each(|(a, v)| *a += p * v);
                }
            }
        }
    }
}

/// `out = Σ_j (p_j · inv) · v_j` with an `N`-float accumulator.
#[inline(always)]
fn weighted_sum<'a, const N: usize>(p: &[f32], inv: f32, v: impl Fn(usize) -> &'a [f32], out: &mut [f32]) {
    let mut acc = [0f32; N];
    for (j, s) in p.iter().enumerate() {
        let (w, v) = (s * inv, &v(j)[..N]);
        for c in 0..N {
            acc[c] += w * v[c];
        }
    }
    out[..N].copy_from_slice(&acc);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    }

    #[test]
    fn packed_product_matches_plain_floats() {
        let (n, k) = (128, 96);
        // int8 on both sides: ~1% of the largest term per product.
        let mut seed = 7;
        let w: Vec<f32> = (0..n * k).map(|_| lcg(&mut seed)).collect();
        let b: Vec<f32> = (0..n).map(|_| lcg(&mut seed)).collect();
        let plain = PackedLinear::new(&w, b.clone(), n, k).unwrap();
        // Channels 3 and 40 carry values 50 times the rest: computed in f32
        // they leave the others' precision alone.
        let outliers = PackedLinear::with_outliers(&w, b.clone(), n, k, &[3, 40]).unwrap();
        for (lin, m) in [1, 5, 6, 7, 13, 200].into_iter().flat_map(|m| [(&plain, m), (&outliers, m)]) {
            let mut x: Vec<f32> = (0..m * k).map(|_| lcg(&mut seed)).collect();
            if !lin.outliers.is_empty() {
                x.chunks_exact_mut(k).for_each(|row| (row[3], row[40]) = (row[3] * 50.0, row[40] * -50.0));
            }
            // Every scheme this CPU can run.
            let paths = [(Path::Avx512, fast_path()), (Path::Avx2, avx2_path()), (Path::Portable, true)];
            for (ep, path) in [Epilogue::Bias, Epilogue::BiasGelu]
                .into_iter()
                .flat_map(|ep| paths.iter().filter(|p| p.1).map(move |p| (ep, p.0)))
            {
                let mut out = vec![0f32; m * n];
                lin.forward_with(&x, m, &mut out, ep, path);
                for t in 0..m {
                    for c in 0..n {
                        let mut want: f32 = (0..k).map(|i| x[t * k + i] * w[c * k + i]).sum::<f32>() + b[c];
                        if ep == Epilogue::BiasGelu {
                            want = gelu(want);
                        }
                        let got = out[t * n + c];
                        assert!((got - want).abs() < 0.05, "{path:?}, m {m} token {t} col {c}: {got} vs {want}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_portable_path_computes_the_same_numbers() {
        let (n, k, m) = (64, 64, 11);
        let mut seed = 3;
        let w: Vec<f32> = (0..n * k).map(|_| lcg(&mut seed)).collect();
        let x: Vec<f32> = (0..m * k).map(|_| lcg(&mut seed) * 4.0).collect();
        let lin = PackedLinear::with_outliers(&w, vec![0.5; n], n, k, &[0, 17, 63]).unwrap();
        if fast_path() {
            let (mut fast, mut portable) = (vec![0f32; m * n], vec![0f32; m * n]);
            lin.forward_with(&x, m, &mut fast, Epilogue::BiasGelu, Path::Avx512);
            lin.forward_with(&x, m, &mut portable, Epilogue::BiasGelu, Path::Portable);
            assert_eq!(fast, portable);
        }
    }

    /// The AVX2 product is exactly the integers of 14-bit activations times
    /// the int8 weights, for every tile size (4, 2, 1) and remainder.
    #[test]
    fn the_avx2_path_computes_i16_activations_times_int8_weights() {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            let (n, k) = (64, 96);
            let mut seed = 11;
            let w: Vec<f32> = (0..n * k).map(|_| lcg(&mut seed)).collect();
            let lin = PackedLinear::new(&w, (0..n).map(|c| c as f32 * 0.01).collect(), n, k).unwrap();
            let weight = |row: usize, col: usize| {
                let quad = lin.w[((row / PANEL) * (k / 4) + col / 4) * PANEL + row % PANEL];
                quad.to_le_bytes()[col % 4] as i8 as i32
            };
            for m in [1, 2, 3, 4, 7, 11] {
                let x: Vec<f32> = (0..m * k).map(|_| lcg(&mut seed) * 4.0).collect();
                for ep in [Epilogue::Bias, Epilogue::BiasGelu] {
                    let mut got = vec![0f32; m * n];
                    lin.forward_with(&x, m, &mut got, ep, Path::Avx2);
                    for t in 0..m {
                        let mut q = vec![0i16; k];
                        let scale = quantize_i16_portable(&x[t * k..][..k], &mut q, &[]);
                        let mut want = vec![0f32; n];
                        let acc: Vec<i32> =
                            (0..n).map(|c| (0..k).map(|i| q[i] as i32 * weight(c, i)).sum::<i32>() + lin.offset[c]).collect();
                        for c0 in (0..n).step_by(PANEL * GROUP) {
                            lin.finish(&acc[c0..], scale, c0, &mut want[c0..c0 + PANEL * GROUP], &x[t * k..][..k]);
                        }
                        if ep == Epilogue::BiasGelu {
                            gelu_slice(&mut want);
                        }
                        assert_eq!(&got[t * n..][..n], &want[..], "{m} tokens, token {t}");
                    }
                }
            }
        }
    }

    /// The vector quantizers round exactly as the portable one (ties
    /// included), and take the scale from the unmasked channels alone.
    #[test]
    fn activation_quantisation_is_the_same_on_every_path() {
        let mut seed = 5;
        for case in 0..20 {
            let mut row: Vec<f32> = (0..384).map(|_| lcg(&mut seed) * 6.0).collect();
            if case % 4 < 2 {
                // exact ties: multiples of half a step (of int8, then of i16)
                row[0] = if case % 4 == 0 { 127.0 } else { I16_MAX };
                for (i, x) in row.iter_mut().enumerate().skip(1) {
                    *x = (i % 255) as f32 * 0.5 - 63.5;
                }
            }
            // Every third case: two outlier channels, masked out.
            let mut mask = vec![];
            if case % 3 == 2 {
                let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
                (row[5], row[300]) = (row[5] * 100.0, -1000.0);
                mask = vec![1.0; 384];
                (mask[5], mask[300]) = (0.0, 0.0);
                let mut q = vec![0u8; 384];
                assert!(quantize_activations_portable(&row, &mut q, &mask) <= max / 127.0 * 1.0001, "the outliers set no scale");
            }
            let (mut want, mut got) = (vec![0u8; 384], vec![0u8; 384]);
            let scale = quantize_activations_portable(&row, &mut want, &mask);
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    assert_eq!(unsafe { quantize_activations_avx512(&row, &mut got, &mask) }, scale);
                    assert_eq!(got, want, "AVX-512, case {case}");
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    let (mut want, mut got) = (vec![0i16; 384], vec![0i16; 384]);
                    let scale = quantize_i16_portable(&row, &mut want, &mask);
                    assert_eq!(unsafe { quantize_i16_avx2(&row, &mut got, &mask) }, scale);
                    assert_eq!(got, want, "AVX2, case {case}");
                }
            }
        }
    }

    #[test]
    fn unsupported_shapes_are_refused() {
        assert!(PackedLinear::new(&[0.0; 48 * 4], vec![0.0; 48], 48, 4).is_err());
        assert!(PackedLinear::new(&[0.0; 32 * 4], vec![0.0; 32], 32, 4).is_ok());
        assert!(PackedLinear::new(&[0.0; 64 * 6], vec![0.0; 64], 64, 6).is_err());
        let err = PackedLinear::with_outliers(&[0.0; 32 * 8], vec![0.0; 32], 32, 8, &[2, 8]).err().unwrap();
        assert!(err.contains("outlier channel 8") && err.contains("8 inputs"), "{err}");
    }

    #[test]
    fn erf_and_exp_are_accurate() {
        // Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7) as the yardstick.
        let reference = |x: f64| {
            let t = 1.0 / (1.0 + 0.3275911 * x.abs());
            let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * (-x * x).exp();
            y.copysign(x)
        };
        for i in -600..=600 {
            let x = i as f32 / 100.0;
            assert!((erf(x) as f64 - reference(x as f64)).abs() < 1e-6, "erf({x}) = {} vs {}", erf(x), reference(x as f64));
            let y = x * 14.0;
            let e = (y as f64).exp();
            assert!(((exp(y) as f64 - e) / e).abs() < 1e-6, "exp({y}) = {} vs {e}", exp(y));
        }
    }

    #[test]
    fn gelu_and_layer_norm() {
        assert!((gelu(1.0) - 0.841_344_7).abs() < 1e-6);
        assert!((gelu(-2.0) - -0.045_500_26).abs() < 1e-6);
        let mut x = vec![1.0, 2.0, 3.0, 4.0];
        layer_norm(&mut x, &[1.0; 4], &[0.0; 4], 1e-12);
        let mean: f32 = x.iter().sum::<f32>() / 4.0;
        assert!(mean.abs() < 1e-6 && (x[3] - 1.341_640_8).abs() < 1e-5, "{x:?}");
    }

    /// Every attention kernel against softmax(q·kᵀ/√d)·v in f64, for
    /// windows shorter than, equal to and longer than a query block.
    #[test]
    fn attention_matches_the_definition() {
        let (heads, hidden) = (2, 2 * HEAD);
        let lens = [1, 5, 8, 16, 17, 40, 300];
        let total: usize = lens.iter().sum();
        let mut seed = 17;
        let qkv: Vec<f32> = (0..total * 3 * hidden).map(|_| lcg(&mut seed) * 6.0).collect();
        let mut ctx = vec![0f32; total * hidden];
        attention(&qkv, &lens, heads, hidden, &mut ctx);
        let mut generic = vec![0f32; total * hidden];
        for h in 0..heads {
            let mut start = 0;
            for &len in &lens {
                // SAFETY: the window's rows are inside qkv and ctx.
                unsafe { attend(&qkv, start, len, h, HEAD, hidden, generic.as_mut_ptr()) };
                start += len;
            }
        }
        let at = |t: usize, part: usize, h: usize, c: usize| qkv[t * 3 * hidden + part * hidden + h * HEAD + c] as f64;
        let mut start = 0;
        for &len in &lens {
            for h in 0..heads {
                for i in start..start + len {
                    let s: Vec<f64> = (start..start + len)
                        .map(|j| (0..HEAD).map(|c| at(i, 0, h, c) * at(j, 1, h, c)).sum::<f64>() / (HEAD as f64).sqrt())
                        .collect();
                    let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = s.iter().map(|s| (s - max).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    for c in 0..HEAD {
                        let want: f64 = (0..len).map(|j| e[j] / sum * at(start + j, 2, h, c)).sum();
                        for (name, got) in [("attention", &ctx), ("generic attend", &generic)] {
                            let got = got[i * hidden + h * HEAD + c] as f64;
                            assert!((got - want).abs() < 1e-4, "{name}: window {len}, token {i}, head {h}, {c}: {got} vs {want}");
                        }
                    }
                }
            }
            start += len;
        }
    }

    #[test]
    fn attention_stays_inside_its_window() {
        // Two windows; the second's keys are huge, so leaking across would show.
        let (heads, hidden) = (1, 2);
        let mut qkv = vec![];
        for t in 0..4 {
            let (k, v) = if t < 2 { (0.0, 1.0) } else { (50.0, 9.0) };
            qkv.extend([1.0, 1.0, k, k, v, v]);
        }
        let mut ctx = vec![0f32; 4 * hidden];
        attention(&qkv, &[2, 2], heads, hidden, &mut ctx);
        assert_eq!(&ctx[..4], &[1.0; 4]);
        assert_eq!(&ctx[4..], &[9.0; 4]);
    }
}
