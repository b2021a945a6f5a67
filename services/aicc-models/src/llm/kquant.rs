//! Q4_K and Q6_K matrix products on the GGUF's own blocks, for any number
//! of rows, on AVX-512 (BW + VNNI) with a portable fallback that computes
//! the same integer sums, and the activations' int8 quantisation (AVX-512,
//! AVX2 or portable) that these and `panels` share.
//!
//! Why our own: for several rows candle repacks Q4_K into AMX tiles (2.2×
//! the bytes) or VNNI tiles (1.3×, for 2–31 rows), and Q6_K into tiles too,
//! beside the GGUF blocks it keeps for one row: up to three copies of the
//! weights (2.95 GB peak for the 1.1 GB default model, 4.5 GB once several
//! conversations decode as a batch). These kernels read the blocks as they
//! are, so the model is in memory once.
//!
//! Arithmetic (ggml's formats): activations are quantized per token and
//! block of 256 to int8 with one scale `da` (like ggml's Q8_K).
//! - Q4_K: 8 sub-blocks of 32, `w = d·sc_j·q − dmin·m_j`, q in 0..15.
//! - Q6_K: 16 sub-blocks of 16, `w = d·sc_j·(q − 32)`, q in 0..63, sc_j signed.
//!
//! So `Σ w·a = da·d·Σ_j sc_j·Σ q·a + Σ_j c_j·da·Σ a` with `c_j = −dmin·m_j`
//! or `−32·d·sc_j`. The first sum is integer: `vpmaddubsw` (unsigned q ×
//! signed a, pairs) then `vpdpwssd` with the sub-block scales; the second
//! needs only per-sub-block sums of the activations and is a short f32 dot
//! product per row and token (k/32 or k/16 terms).

use rayon::prelude::*;

pub(super) use crate::kernels::each_token;

pub(super) const QK: usize = 256;
pub const Q4K_BYTES: usize = 144;
pub const Q6K_BYTES: usize = 210;
/// Tokens computed together against one unpacked weight block.
pub(super) const TOKENS: usize = 8;
/// Weight bytes a task keeps hot in L2 while every token passes over them.
pub(super) const TASK_BYTES: usize = 96 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Q4K,
    Q6K,
}

impl Kind {
    pub fn block_bytes(self) -> usize {
        match self {
            Kind::Q4K => Q4K_BYTES,
            Kind::Q6K => Q6K_BYTES,
        }
    }

    /// Sub-block length: the activation sums the correction term needs.
    pub(super) fn group(self) -> usize {
        match self {
            Kind::Q4K => 32,
            Kind::Q6K => 16,
        }
    }
}

/// Whether the AVX-512 path runs here (`AICC_KERNELS=portable` turns it off, as for the encoders).
pub fn fast_path() -> bool {
    static FAST: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FAST.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            crate::kernels::fast_path() && std::arch::is_x86_feature_detected!("avx512bw")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// Whether the AVX2 path of the panels runs here (AVX2, FMA and F16C: the
/// CPUs without AVX-512, such as AMD's before Zen 4).
pub fn avx2_path() -> bool {
    crate::kernels::avx2_path()
}

/// `m` tokens' activations quantized for one weight kind.
pub struct Activations {
    pub(super) kb: usize,
    /// m·k int8, per block in the order the kernel reads (Q4_K rows: see `q4k_order`).
    pub(super) q: Vec<i8>,
    /// m·kb block scales.
    pub(super) d: Vec<f32>,
    /// m·(k / group): `da·Σ q` over each sub-block, in natural order.
    pub(super) sums: Vec<f32>,
}

/// Where activation `i` of a block goes for Q4_K: each 128 is stored as
/// [0..32, 64..96, 32..64, 96..128], so that one 64-byte load matches the
/// low nibbles of 64 weight bytes (sub-blocks 0 and 2) and the next their
/// high nibbles (1 and 3).
fn q4k_order(i: usize) -> usize {
    let (half, within) = (i / 128, i % 128);
    let chunk = [0, 2, 1, 3][within / 32];
    half * 128 + chunk * 32 + within % 32
}

impl Activations {
    pub fn quantize(x: &[f32], m: usize, k: usize, kind: Kind) -> Self {
        Self::quantize_as(x, m, k, kind.group(), kind == Kind::Q4K)
    }

    /// With activation sums per `group`, in natural order or (`q4k_rows`) in `q4k_order`.
    pub(super) fn quantize_as(x: &[f32], m: usize, k: usize, group: usize, q4k_rows: bool) -> Self {
        assert!(k % QK == 0 && x.len() == m * k, "activations of {m}×{k} with k a multiple of 256");
        let kb = k / QK;
        let mut q = vec![0i8; m * k];
        let mut d = vec![0f32; m * kb];
        let mut sums = vec![0f32; m * k / group];
        let mut block = [0i8; QK];
        for (b, xs) in x.chunks_exact(QK).enumerate() {
            let scale = quantize_block(xs.try_into().expect("a block"), &mut block);
            d[b] = scale;
            for (j, s) in block.chunks_exact(group).enumerate() {
                sums[b * (QK / group) + j] = scale * s.iter().map(|&v| v as i32).sum::<i32>() as f32;
            }
            let out = &mut q[b * QK..(b + 1) * QK];
            if q4k_rows {
                for (o, src) in out.chunks_exact_mut(32).zip([0, 2, 1, 3, 4, 6, 5, 7]) {
                    o.copy_from_slice(&block[src * 32..(src + 1) * 32]);
                }
            } else {
                out.copy_from_slice(&block);
            }
        }
        Self { kb, q, d, sums }
    }
}

/// One block of 256 activations to int8 with one scale (rounding to nearest even).
fn quantize_block(xs: &[f32; QK], out: &mut [i8; QK]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if fast_path() {
        // SAFETY: AVX-512 is present (fast_path).
        return unsafe { quantize_block_avx512(xs, out) };
    }
    #[cfg(target_arch = "x86_64")]
    if avx2_path() {
        // SAFETY: AVX2 is present (avx2_path).
        return unsafe { quantize_block_avx2(xs, out) };
    }
    quantize_block_portable(xs, out)
}

// (`round_ties_even` is a library call on baseline x86-64: the vector paths
// above are what runs on any x86 CPU of the last ten years.)
fn quantize_block_portable(xs: &[f32; QK], out: &mut [i8; QK]) -> f32 {
    let max = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let inv = 1.0 / scale;
    for (o, v) in out.iter_mut().zip(xs) {
        *o = (v * inv).round_ties_even().clamp(-127.0, 127.0) as i8;
    }
    scale
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn quantize_block_avx512(xs: &[f32; QK], out: &mut [i8; QK]) -> f32 {
    use std::arch::x86_64::*;
    let mut max = _mm512_setzero_ps();
    for c in xs.chunks_exact(16) {
        max = _mm512_max_ps(max, _mm512_abs_ps(_mm512_loadu_ps(c.as_ptr())));
    }
    let max = _mm512_reduce_max_ps(max);
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let inv = _mm512_set1_ps(1.0 / scale);
    let (lo, hi) = (_mm512_set1_epi32(-127), _mm512_set1_epi32(127));
    for (c, o) in xs.chunks_exact(16).zip(out.chunks_exact_mut(16)) {
        // (the default rounding mode: to nearest even, as the portable path)
        let q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(c.as_ptr()), inv));
        _mm_storeu_si128(o.as_mut_ptr() as *mut _, _mm512_cvtepi32_epi8(_mm512_min_epi32(_mm512_max_epi32(q, lo), hi)));
    }
    scale
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_block_avx2(xs: &[f32; QK], out: &mut [i8; QK]) -> f32 {
    // SAFETY: i8 and u8 have the same layout.
    let bytes = &mut *(out as *mut [i8; QK] as *mut [u8; QK]);
    crate::kernels::quantize_bytes_avx2(xs, bytes)
}

/// `out (m, n) = x (m, k) · wᵀ` for `w` the GGUF blocks of an (n, k) weight.
pub fn matmul(kind: Kind, w: &[u8], n: usize, k: usize, x: &[f32], m: usize, out: &mut [f32]) {
    assert_eq!(w.len(), n * (k / QK) * kind.block_bytes(), "weight bytes of {n}×{k} {kind:?}");
    assert_eq!(out.len(), m * n);
    let act = Activations::quantize(x, m, k, kind);
    let row_bytes = (k / QK) * kind.block_bytes();
    // Rows per task: their weights stay in L2 while all tokens pass; at
    // least enough tasks for every thread.
    let threads = rayon::current_num_threads().max(1);
    let rows = (TASK_BYTES / row_bytes).clamp(4, n.div_ceil(threads).max(4));
    let dst = SendPtr(out.as_mut_ptr());
    let tasks = n.div_ceil(rows);
    let run = |task: usize| {
        let (r0, r1) = (task * rows, ((task + 1) * rows).min(n));
        let mut corr = vec![0f32; k / kind.group()];
        for t0 in (0..m).step_by(TOKENS) {
            let t = TOKENS.min(m - t0);
            for r in r0..r1 {
                let mut acc = [0f32; TOKENS];
                row(kind, &w[r * row_bytes..(r + 1) * row_bytes], &act, t0, t, &mut corr, &mut acc);
                for (i, v) in acc[..t].iter().enumerate() {
                    // SAFETY: each (token, row) is written by exactly one task.
                    unsafe { *dst.get().add((t0 + i) * n + r) = *v };
                }
            }
        }
    };
    if tasks == 1 || m * n * k < 1 << 20 {
        (0..tasks).for_each(run);
    } else {
        (0..tasks).into_par_iter().for_each(run);
    }
}

#[derive(Clone, Copy)]
pub(super) struct SendPtr(pub(super) *mut f32);
// SAFETY: the tasks write disjoint elements (see `matmul`).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}
impl SendPtr {
    pub(super) fn get(self) -> *mut f32 {
        self.0
    }
}

/// One weight row against tokens `t0..t0+t`: `acc[i]` = the dot product.
/// `corr` is scratch for the row's correction coefficients.
fn row(kind: Kind, w: &[u8], act: &Activations, t0: usize, t: usize, corr: &mut [f32], acc: &mut [f32; TOKENS]) {
    #[cfg(target_arch = "x86_64")]
    if fast_path() {
        // Full tiles with the token count known at compile time (the
        // accumulators stay in registers), the rest one token at a time.
        // SAFETY: AVX-512 F/BW/VNNI are present (fast_path); the slices were sized by `matmul`.
        unsafe {
            if t == TOKENS {
                match kind {
                    Kind::Q4K => q4k_row_avx512::<TOKENS>(w, act, t0, corr, acc),
                    Kind::Q6K => q6k_row_avx512::<TOKENS>(w, act, t0, corr, acc),
                }
            } else {
                for i in 0..t {
                    let mut one = [0f32; TOKENS];
                    match kind {
                        Kind::Q4K => q4k_row_avx512::<1>(w, act, t0 + i, corr, &mut one),
                        Kind::Q6K => q6k_row_avx512::<1>(w, act, t0 + i, corr, &mut one),
                    }
                    acc[i] = one[0];
                }
            }
        }
        return;
    }
    match kind {
        Kind::Q4K => q4k_row_portable(w, act, t0, t, corr, acc),
        Kind::Q6K => q6k_row_portable(w, act, t0, t, corr, acc),
    }
    add_corrections(act, kind, t0, t, corr, acc);
}

fn add_corrections(act: &Activations, kind: Kind, t0: usize, t: usize, corr: &[f32], acc: &mut [f32; TOKENS]) {
    let groups = act.kb * (QK / kind.group());
    for (i, a) in acc[..t].iter_mut().enumerate() {
        let sums = &act.sums[(t0 + i) * groups..(t0 + i + 1) * groups];
        *a += dot(corr, sums);
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight lanes, so that the compiler vectorises it.
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    lanes.iter().sum::<f32>() + ra.iter().zip(rb).map(|(x, y)| x * y).sum::<f32>()
}

#[inline(always)]
pub(super) fn f16(bytes: &[u8]) -> f32 {
    let h = u16::from_le_bytes([bytes[0], bytes[1]]) as u32;
    let (sign, exp, frac) = ((h & 0x8000) << 16, (h >> 10) & 0x1f, h & 0x3ff);
    let bits = match exp {
        0 if frac == 0 => sign,
        0 => {
            // subnormal: normalise
            let shift = frac.leading_zeros() - 21;
            sign | ((127 - 15 + 1 - shift) << 23) | ((frac << shift) & 0x3ff) << 13
        }
        31 => sign | 0x7f80_0000 | (frac << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

/// Q4_K's 6-bit scales and mins of a block: (sc[0..8], m[0..8]) (ggml's `get_scale_min_k4`).
#[inline(always)]
pub(super) fn q4k_scales(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let (mut sc, mut mn) = ([0u8; 8], [0u8; 8]);
    for j in 0..8 {
        if j < 4 {
            sc[j] = s[j] & 63;
            mn[j] = s[j + 4] & 63;
        } else {
            sc[j] = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
            mn[j] = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        }
    }
    (sc, mn)
}

/// A Q4_K block's 256 quants in natural order.
pub(super) fn q4k_quants(qs: &[u8]) -> [u8; QK] {
    let mut v = [0u8; QK];
    for c in 0..4 {
        for j in 0..32 {
            v[c * 64 + j] = qs[c * 32 + j] & 0x0f;
            v[c * 64 + 32 + j] = qs[c * 32 + j] >> 4;
        }
    }
    v
}

/// A Q6_K block's 256 quants (0..63) in natural order (ggml's `dequantize_row_q6_K`).
pub(super) fn q6k_quants(ql: &[u8], qh: &[u8]) -> [u8; QK] {
    let mut v = [0u8; QK];
    for n in 0..2 {
        let (ql, qh) = (&ql[n * 64..], &qh[n * 32..]);
        for l in 0..32 {
            let y = &mut v[n * 128..];
            y[l] = (ql[l] & 0x0f) | ((qh[l] & 3) << 4);
            y[l + 32] = (ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4);
            y[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
            y[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
        }
    }
    v
}

/// The activations of token `t`, block `b`, in natural order.
fn natural(act: &Activations, kind: Kind, t: usize, b: usize) -> [i8; QK] {
    let q = &act.q[(t * act.kb + b) * QK..][..QK];
    match kind {
        Kind::Q4K => std::array::from_fn(|i| q[q4k_order(i)]),
        Kind::Q6K => q.try_into().expect("a block"),
    }
}

fn q4k_row_portable(w: &[u8], act: &Activations, t0: usize, t: usize, corr: &mut [f32], acc: &mut [f32; TOKENS]) {
    acc.fill(0.0);
    for (b, blk) in w.chunks_exact(Q4K_BYTES).enumerate() {
        let (d, dmin) = (f16(&blk[0..2]), f16(&blk[2..4]));
        let (sc, mn) = q4k_scales(&blk[4..16]);
        let q = q4k_quants(&blk[16..144]);
        for j in 0..8 {
            corr[b * 8 + j] = -dmin * mn[j] as f32;
        }
        for (i, a) in acc[..t].iter_mut().enumerate() {
            let x = natural(act, Kind::Q4K, t0 + i, b);
            let mut sum = 0i32;
            for j in 0..8 {
                let s: i32 = (0..32).map(|l| q[j * 32 + l] as i32 * x[j * 32 + l] as i32).sum();
                sum += sc[j] as i32 * s;
            }
            *a += d * act.d[(t0 + i) * act.kb + b] * sum as f32;
        }
    }
}

fn q6k_row_portable(w: &[u8], act: &Activations, t0: usize, t: usize, corr: &mut [f32], acc: &mut [f32; TOKENS]) {
    acc.fill(0.0);
    for (b, blk) in w.chunks_exact(Q6K_BYTES).enumerate() {
        let q = q6k_quants(&blk[0..128], &blk[128..192]);
        let sc = &blk[192..208];
        let d = f16(&blk[208..210]);
        for j in 0..16 {
            corr[b * 16 + j] = -32.0 * d * sc[j] as i8 as f32;
        }
        for (i, a) in acc[..t].iter_mut().enumerate() {
            let x = natural(act, Kind::Q6K, t0 + i, b);
            let mut sum = 0i32;
            for j in 0..16 {
                let s: i32 = (0..16).map(|l| q[j * 16 + l] as i32 * x[j * 16 + l] as i32).sum();
                sum += sc[j] as i8 as i32 * s;
            }
            *a += d * act.d[(t0 + i) * act.kb + b] * sum as f32;
        }
    }
}

/// `out[i]` = token i's accumulated products plus the correction term
/// `corr · sums` (see the module comment).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn finish_avx512<const T: usize>(acc: &[std::arch::x86_64::__m512; T], act: &Activations, corr: &[f32], t0: usize, out: &mut [f32; TOKENS]) {
    use std::arch::x86_64::*;
    let groups = corr.len();
    for i in 0..T {
        let sums = act.sums.as_ptr().add((t0 + i) * groups);
        let mut c = acc[i];
        let mut g = 0;
        while g + 16 <= groups {
            c = _mm512_fmadd_ps(_mm512_loadu_ps(corr.as_ptr().add(g)), _mm512_loadu_ps(sums.add(g)), c);
            g += 16;
        }
        let mut rest = 0f32;
        while g < groups {
            rest += corr[g] * *sums.add(g);
            g += 1;
        }
        out[i] = _mm512_reduce_add_ps(c) + rest;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn q4k_row_avx512<const T: usize>(w: &[u8], act: &Activations, t0: usize, corr: &mut [f32], out: &mut [f32; TOKENS]) {
    use std::arch::x86_64::*;
    // i16 lane → scale index: lanes 0..16 take the first sub-block of a
    // 64-byte register, lanes 16..32 the second.
    let idx = |a: i16, b: i16| _mm512_set_epi16(b, b, b, b, b, b, b, b, b, b, b, b, b, b, b, b, a, a, a, a, a, a, a, a, a, a, a, a, a, a, a, a);
    let (i02, i13, i46, i57) = (idx(0, 2), idx(1, 3), idx(4, 6), idx(5, 7));
    let low = _mm512_set1_epi8(0x0f);
    let mut acc = [_mm512_setzero_ps(); T];
    let kb = act.kb;
    for b in 0..kb {
        let blk = w.as_ptr().add(b * Q4K_BYTES);
        let blk_s = std::slice::from_raw_parts(blk, Q4K_BYTES);
        let (d, dmin) = (f16(&blk_s[0..2]), f16(&blk_s[2..4]));
        let (sc, mn) = q4k_scales(&blk_s[4..16]);
        for j in 0..8 {
            *corr.get_unchecked_mut(b * 8 + j) = -dmin * mn[j] as f32;
        }
        let scales = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_loadl_epi64(sc.as_ptr() as *const __m128i)));
        let (s0, s1, s2, s3) = (
            _mm512_permutexvar_epi16(i02, scales),
            _mm512_permutexvar_epi16(i13, scales),
            _mm512_permutexvar_epi16(i46, scales),
            _mm512_permutexvar_epi16(i57, scales),
        );
        let qa = _mm512_loadu_si512(blk.add(16) as *const _);
        let qb = _mm512_loadu_si512(blk.add(80) as *const _);
        let w0 = _mm512_and_si512(qa, low);
        let w1 = _mm512_and_si512(_mm512_srli_epi16(qa, 4), low);
        let w2 = _mm512_and_si512(qb, low);
        let w3 = _mm512_and_si512(_mm512_srli_epi16(qb, 4), low);
        each_token!(T, i, {
            let tok = t0 + i;
            let a = act.q.as_ptr().add((tok * kb + b) * QK) as *const __m512i;
            let mut p = _mm512_madd_epi16(_mm512_maddubs_epi16(w0, _mm512_loadu_si512(a as *const _)), s0);
            p = _mm512_dpwssd_epi32(p, _mm512_maddubs_epi16(w1, _mm512_loadu_si512(a.add(1) as *const _)), s1);
            p = _mm512_dpwssd_epi32(p, _mm512_maddubs_epi16(w2, _mm512_loadu_si512(a.add(2) as *const _)), s2);
            p = _mm512_dpwssd_epi32(p, _mm512_maddubs_epi16(w3, _mm512_loadu_si512(a.add(3) as *const _)), s3);
            let scale = _mm512_set1_ps(d * *act.d.get_unchecked(tok * kb + b));
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), scale, acc[i]);
        });
    }
    finish_avx512::<T>(&acc, act, corr, t0, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn q6k_row_avx512<const T: usize>(w: &[u8], act: &Activations, t0: usize, corr: &mut [f32], out: &mut [f32; TOKENS]) {
    use std::arch::x86_64::*;
    // i16 lane → scale index: a 64-byte register holds four sub-blocks of 16.
    let idx = |a: i16| {
        let (b, c, d) = (a + 1, a + 2, a + 3);
        _mm512_set_epi16(
            d, d, d, d, d, d, d, d, c, c, c, c, c, c, c, c, b, b, b, b, b, b, b, b, a, a, a, a, a, a, a, a,
        )
    };
    let ids = [idx(0), idx(4), idx(8), idx(12)];
    let (low, two) = (_mm512_set1_epi8(0x0f), _mm512_set1_epi8(3));
    let mut acc = [_mm512_setzero_ps(); T];
    let kb = act.kb;
    for b in 0..kb {
        let blk = w.as_ptr().add(b * Q6K_BYTES);
        let blk_s = std::slice::from_raw_parts(blk, Q6K_BYTES);
        let d = f16(&blk_s[208..210]);
        for j in 0..16 {
            *corr.get_unchecked_mut(b * 16 + j) = -32.0 * d * blk_s[192 + j] as i8 as f32;
        }
        let scales = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(_mm_loadu_si128(blk.add(192) as *const __m128i)));
        let mut wq = [_mm512_setzero_si512(); 4];
        let mut ws = [_mm512_setzero_si512(); 4];
        for n in 0..2 {
            let ql = _mm512_loadu_si512(blk.add(n * 64) as *const _);
            let qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(blk.add(128 + n * 32) as *const __m256i));
            let bits = |shift_a: u32, shift_b: u32| {
                let a = _mm512_and_si512(_mm512_srl_epi16(qh, _mm_cvtsi32_si128(shift_a as i32)), two);
                let b = _mm512_and_si512(_mm512_srl_epi16(qh, _mm_cvtsi32_si128(shift_b as i32)), two);
                // bytes 0..32 from `a`, 32..64 from `b`
                _mm512_slli_epi16(_mm512_mask_blend_epi64(0xf0, a, b), 4)
            };
            // values n·128 + 0..64: low nibbles of ql with qh bits 0-1 (first 32) and 2-3 (next 32)
            wq[n * 2] = _mm512_or_si512(_mm512_and_si512(ql, low), bits(0, 2));
            // values n·128 + 64..128: high nibbles with qh bits 4-5 and 6-7
            wq[n * 2 + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), low), bits(4, 6));
            ws[n * 2] = _mm512_permutexvar_epi16(ids[n * 2], scales);
            ws[n * 2 + 1] = _mm512_permutexvar_epi16(ids[n * 2 + 1], scales);
        }
        each_token!(T, i, {
            let tok = t0 + i;
            let a = act.q.as_ptr().add((tok * kb + b) * QK) as *const __m512i;
            let mut p = _mm512_madd_epi16(_mm512_maddubs_epi16(wq[0], _mm512_loadu_si512(a as *const _)), ws[0]);
            for r in 1..4 {
                p = _mm512_dpwssd_epi32(p, _mm512_maddubs_epi16(wq[r], _mm512_loadu_si512(a.add(r) as *const _)), ws[r]);
            }
            let scale = _mm512_set1_ps(d * *act.d.get_unchecked(tok * kb + b));
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), scale, acc[i]);
        });
    }
    finish_avx512::<T>(&acc, act, corr, t0, out);
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Random blocks of a kind: random quants and scales, small f16 scales.
    pub(in crate::llm) fn random_blocks(kind: Kind, n: usize, k: usize, rng: &mut impl Rng) -> Vec<u8> {
        let mut w = vec![0u8; n * (k / QK) * kind.block_bytes()];
        rng.fill(&mut w[..]);
        let f16_bits = |x: f32| -> [u8; 2] {
            // x in [2^-10, 2^-6): normal f16 with a random mantissa
            let bits = x.to_bits();
            let exp = ((bits >> 23) & 0xff) as i32 - 127 + 15;
            (((exp as u16) << 10) | ((bits >> 13) & 0x3ff) as u16).to_le_bytes()
        };
        for blk in w.chunks_exact_mut(kind.block_bytes()) {
            let (a, b) = (f16_bits(rng.gen_range(0.001..0.01)), f16_bits(rng.gen_range(0.001..0.01)));
            match kind {
                Kind::Q4K => {
                    blk[0..2].copy_from_slice(&a);
                    blk[2..4].copy_from_slice(&b);
                }
                Kind::Q6K => blk[208..210].copy_from_slice(&a),
            }
        }
        w
    }

    /// The weights as f32, straight from the formats' definitions.
    pub(in crate::llm) fn dequantize(kind: Kind, w: &[u8]) -> Vec<f32> {
        let mut out = Vec::new();
        for blk in w.chunks_exact(kind.block_bytes()) {
            match kind {
                Kind::Q4K => {
                    let (d, dmin) = (f16(&blk[0..2]), f16(&blk[2..4]));
                    let (sc, mn) = q4k_scales(&blk[4..16]);
                    let q = q4k_quants(&blk[16..144]);
                    out.extend((0..QK).map(|i| d * sc[i / 32] as f32 * q[i] as f32 - dmin * mn[i / 32] as f32));
                }
                Kind::Q6K => {
                    let q = q6k_quants(&blk[0..128], &blk[128..192]);
                    let d = f16(&blk[208..210]);
                    out.extend((0..QK).map(|i| d * blk[192 + i / 16] as i8 as f32 * (q[i] as f32 - 32.0)));
                }
            }
        }
        out
    }

    pub(in crate::llm) fn exact(wf: &[f32], x: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
        let mut y = vec![0f32; m * n];
        for t in 0..m {
            for r in 0..n {
                y[t * n + r] = (0..k).map(|i| x[t * k + i] as f64 * wf[r * k + i] as f64).sum::<f64>() as f32;
            }
        }
        y
    }

    pub(in crate::llm) fn relative_error(a: &[f32], b: &[f32]) -> f32 {
        let diff: f32 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
        let norm: f32 = b.iter().map(|y| y * y).sum();
        (diff / norm).sqrt()
    }

    fn check(kind: Kind, m: usize, n: usize, k: usize) {
        let mut rng = rand::rngs::StdRng::seed_from_u64((m * 131 + n * 7 + k) as u64);
        let w = random_blocks(kind, n, k, &mut rng);
        let x: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        let mut fast = vec![0f32; m * n];
        matmul(kind, &w, n, k, &x, m, &mut fast);
        // The portable path computes the same integer sums.
        let act = Activations::quantize(&x, m, k, kind);
        let mut corr = vec![0f32; k / kind.group()];
        let row_bytes = (k / QK) * kind.block_bytes();
        for t0 in (0..m).step_by(TOKENS) {
            let t = TOKENS.min(m - t0);
            for r in 0..n {
                let mut acc = [0f32; TOKENS];
                match kind {
                    Kind::Q4K => q4k_row_portable(&w[r * row_bytes..][..row_bytes], &act, t0, t, &mut corr, &mut acc),
                    Kind::Q6K => q6k_row_portable(&w[r * row_bytes..][..row_bytes], &act, t0, t, &mut corr, &mut acc),
                }
                add_corrections(&act, kind, t0, t, &corr, &mut acc);
                for i in 0..t {
                    let (f, p) = (fast[(t0 + i) * n + r], acc[i]);
                    assert!((f - p).abs() <= 1e-4 * (1.0 + p.abs()), "{kind:?} {m}×{n}×{k} at ({}, {r}): fast {f}, portable {p}", t0 + i);
                }
            }
        }
        // Against the f32 weights: only the activations' int8 rounding (with
        // outliers: llm::model's tests, beside candle's own kernels).
        let e = relative_error(&fast, &exact(&dequantize(kind, &w), &x, m, n, k));
        assert!(e < 0.01, "{kind:?} {m}×{n}×{k}: relative error {e}");
    }

    #[test]
    fn q4k_matches_the_reference() {
        for (m, n, k) in [(1, 16, 256), (1, 67, 512), (3, 33, 1536), (9, 20, 768), (17, 40, 256)] {
            check(Kind::Q4K, m, n, k);
        }
    }

    #[test]
    fn q6k_matches_the_reference() {
        for (m, n, k) in [(1, 16, 256), (1, 67, 512), (3, 33, 1536), (9, 20, 768), (17, 40, 256)] {
            check(Kind::Q6K, m, n, k);
        }
    }

    /// Every vector path rounds activations exactly as the portable one (ties included).
    #[test]
    fn activation_quantisation_is_the_same_on_every_path() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for case in 0..50 {
            let mut xs = [0f32; QK];
            for x in xs.iter_mut() {
                *x = rng.gen_range(-3.0f32..3.0);
            }
            if case % 5 == 0 {
                // exact ties: multiples of half a step
                xs[0] = 127.0;
                for (i, x) in xs.iter_mut().enumerate().skip(1) {
                    *x = (i % 255) as f32 * 0.5 - 63.5;
                }
            }
            if case == 1 {
                xs = [0.0; QK];
            }
            let (mut want, mut got) = ([0i8; QK], [0i8; QK]);
            let scale = quantize_block_portable(&xs, &mut want);
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    assert_eq!(unsafe { quantize_block_avx512(&xs, &mut got) }, scale);
                    assert_eq!(got, want, "AVX-512, case {case}");
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    assert_eq!(unsafe { quantize_block_avx2(&xs, &mut got) }, scale);
                    assert_eq!(got, want, "AVX2, case {case}");
                }
            }
            assert_eq!(quantize_block(&xs, &mut got), scale);
            assert_eq!(got, want);
        }
    }

    #[test]
    fn f16_conversion_is_exact() {
        for (bits, want) in [(0x3c00u16, 1.0f32), (0xc000, -2.0), (0x0001, 5.960_464_5e-8), (0x03ff, 6.097_555e-5), (0x7bff, 65504.0), (0, 0.0)] {
            assert_eq!(f16(&bits.to_le_bytes()), want, "{bits:#x}");
        }
    }
}
