//! Q4_K and Q6_K weights repacked once at load into panels of 16 rows, in
//! place of the GGUF blocks (Q4_K: 2,368 bytes per panel and block of 256
//! against 16 × 144 = 2,304, +2.8 %; Q6_K: 3,360, the same as 16 × 210),
//! and their product with int8 activations.
//!
//! Why: the row kernels of `kquant` spend two instructions per 64
//! multiply-adds (`vpmaddubsw`, then the sub-block scales through
//! `vpdpwssd`) and reduce every row's vector at the end. Here one
//! `vpdpbusd` multiplies 4 weights of each of 16 rows by the same 4
//! activations (broadcast): 64 multiply-adds, and each i32 lane is one
//! row's sum, so a sub-block's scale is a 16-lane vector applied once per
//! 32 activations. About 2.2× fewer instructions per weight; the output of
//! a panel is 16 adjacent floats.
//!
//! Without AVX-512 (AMD before Zen 4, older Intel), the AVX2 product takes
//! each 64-byte register as two halves of 8 rows, `vpmaddubsw` pairs summed
//! in i16 then widened by `vpmaddwd` in place of `vpdpbusd`.
//!
//! Q4_K panel block (16 rows `r`, sub-blocks `j` of 32, groups `g` of 4):
//! `d[r]`, `dmin[r]` (f16), `sc[j][r]`, `m[j][r]` (the 6-bit scales and mins,
//! unpacked to bytes), then for each `j` four 64-byte registers `p`: byte
//! `4r + i` = `q[r][32j + 8p + i] | q[r][32j + 8p + 4 + i] << 4` (the low
//! nibbles are group 2p, the high nibbles group 2p + 1).
//!
//! Q6_K panel block (sub-blocks `j` of 16): `d[r]` (f16), `sc[j][r]` (i8),
//! the low 4 bits of each quant as Q4_K's (two 64-byte registers per `j`),
//! then the high 2 bits: per `j` one 64-byte register, byte `4r + i` holding
//! group `g`'s bits at `2g`.

use rayon::prelude::*;

use super::kquant::{self, Activations, Kind, SendPtr, QK, TASK_BYTES, TOKENS};

const ROWS: usize = 16;
// Q4_K panel block
const D: usize = 0;
const DMIN: usize = 32;
const SC: usize = 64;
const MN: usize = 192;
const QS: usize = 320;
const Q4K_PANEL_BYTES: usize = QS + 2048;
// Q6_K panel block
const SC6: usize = 32;
const QL6: usize = SC6 + 256;
const QH6: usize = QL6 + 2048;
const Q6K_PANEL_BYTES: usize = QH6 + 1024;

fn panel_block_bytes(kind: Kind) -> usize {
    match kind {
        Kind::Q4K => Q4K_PANEL_BYTES,
        Kind::Q6K => Q6K_PANEL_BYTES,
    }
}

/// An (n, k) K-quant weight as panels: `[panel][block]`.
pub struct Panels {
    pub kind: Kind,
    pub n: usize,
    pub k: usize,
    data: Vec<u8>,
}

impl Panels {
    /// Repacks GGUF blocks (row-major, `k / 256` per row); `None` when `n`
    /// is not a multiple of 16 (the row kernels of `kquant` take those).
    pub fn from_blocks(kind: Kind, blocks: &[u8], n: usize, k: usize) -> Option<Self> {
        if n % ROWS != 0 || k % QK != 0 || blocks.len() != n * (k / QK) * kind.block_bytes() {
            return None;
        }
        let kb = k / QK;
        let bytes = panel_block_bytes(kind);
        let mut data = vec![0u8; (n / ROWS) * kb * bytes];
        data.par_chunks_mut(kb * bytes).enumerate().for_each(|(panel, out)| {
            for b in 0..kb {
                let o = &mut out[b * bytes..(b + 1) * bytes];
                let row = |r: usize| &blocks[((panel * ROWS + r) * kb + b) * kind.block_bytes()..][..kind.block_bytes()];
                match kind {
                    Kind::Q4K => pack_q4k(o, row),
                    Kind::Q6K => pack_q6k(o, row),
                }
            }
        });
        Some(Self { kind, n, k, data })
    }

    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// `out (m, n) = x (m, k) · wᵀ`.
    pub fn matmul(&self, x: &[f32], m: usize, out: &mut [f32]) {
        let (n, k) = (self.n, self.k);
        assert_eq!(x.len(), m * k);
        assert_eq!(out.len(), m * n);
        let kind = self.kind;
        let act = Activations::quantize_as(x, m, k, kind.group(), false);
        let panel_bytes = (k / QK) * panel_block_bytes(kind);
        let panels = n / ROWS;
        let threads = rayon::current_num_threads().max(1);
        let per_task = (TASK_BYTES / panel_bytes).clamp(1, panels.div_ceil(threads).max(1));
        let tasks = panels.div_ceil(per_task);
        let dst = SendPtr(out.as_mut_ptr());
        let one = |panel: usize, t0: usize| {
            let w = &self.data[panel * panel_bytes..(panel + 1) * panel_bytes];
            let t = TOKENS.min(m - t0);
            let mut acc = [[0f32; ROWS]; TOKENS];
            panel_product(kind, w, &act, t0, t, &mut acc);
            for (i, rows) in acc[..t].iter().enumerate() {
                // SAFETY: each panel's 16 outputs of a token are written by one task only.
                unsafe { std::ptr::copy_nonoverlapping(rows.as_ptr(), dst.get().add((t0 + i) * n + panel * ROWS), ROWS) };
            }
        };
        let run = |task: usize| {
            for panel in task * per_task..((task + 1) * per_task).min(panels) {
                for t0 in (0..m).step_by(TOKENS) {
                    one(panel, t0);
                }
            }
        };
        if tasks == 1 || m * n * k < 1 << 20 {
            (0..tasks).for_each(run);
        } else {
            (0..tasks).into_par_iter().for_each(run);
        }
    }
}

fn pack_q4k<'a>(o: &mut [u8], row: impl Fn(usize) -> &'a [u8]) {
    for r in 0..ROWS {
        let blk = row(r);
        o[D + 2 * r..D + 2 * r + 2].copy_from_slice(&blk[0..2]);
        o[DMIN + 2 * r..DMIN + 2 * r + 2].copy_from_slice(&blk[2..4]);
        let (sc, mn) = kquant::q4k_scales(&blk[4..16]);
        for j in 0..8 {
            o[SC + j * ROWS + r] = sc[j];
            o[MN + j * ROWS + r] = mn[j];
        }
        let q = kquant::q4k_quants(&blk[16..144]);
        for j in 0..8 {
            for p in 0..4 {
                for i in 0..4 {
                    let (lo, hi) = (q[32 * j + 8 * p + i], q[32 * j + 8 * p + 4 + i]);
                    o[QS + (j * 4 + p) * 64 + 4 * r + i] = lo | (hi << 4);
                }
            }
        }
    }
}

fn pack_q6k<'a>(o: &mut [u8], row: impl Fn(usize) -> &'a [u8]) {
    for r in 0..ROWS {
        let blk = row(r);
        o[D + 2 * r..D + 2 * r + 2].copy_from_slice(&blk[208..210]);
        for j in 0..16 {
            o[SC6 + j * ROWS + r] = blk[192 + j];
        }
        let q = kquant::q6k_quants(&blk[0..128], &blk[128..192]);
        for j in 0..16 {
            for p in 0..2 {
                for i in 0..4 {
                    let (lo, hi) = (q[16 * j + 8 * p + i] & 0x0f, q[16 * j + 8 * p + 4 + i] & 0x0f);
                    o[QL6 + (j * 2 + p) * 64 + 4 * r + i] = lo | (hi << 4);
                }
            }
            for i in 0..4 {
                o[QH6 + j * 64 + 4 * r + i] = (0..4).map(|g| (q[16 * j + 4 * g + i] >> 4) << (2 * g)).fold(0, |a, v| a | v);
            }
        }
    }
}

fn panel_product(kind: Kind, w: &[u8], act: &Activations, t0: usize, t: usize, acc: &mut [[f32; ROWS]; TOKENS]) {
    #[cfg(target_arch = "x86_64")]
    if kquant::fast_path() {
        // Tiles of 8, 4, 2, then single tokens, each token count known at compile
        // time: 4 conversations decoding as one batch share one unpacking of the
        // weights instead of 4 passes over the panel.
        // SAFETY: AVX-512 F/BW/VNNI are present; `w` holds the panel's blocks.
        unsafe {
            in_tiles(t, &[TOKENS, 4, 2, 1], acc, |i, n, part| match (kind, n) {
                (Kind::Q4K, TOKENS) => q4k_avx512::<TOKENS>(w, act, t0 + i, part),
                (Kind::Q4K, 4) => q4k_avx512::<4>(w, act, t0 + i, part),
                (Kind::Q4K, 2) => q4k_avx512::<2>(w, act, t0 + i, part),
                (Kind::Q4K, _) => q4k_avx512::<1>(w, act, t0 + i, part),
                (Kind::Q6K, TOKENS) => q6k_avx512::<TOKENS>(w, act, t0 + i, part),
                (Kind::Q6K, 4) => q6k_avx512::<4>(w, act, t0 + i, part),
                (Kind::Q6K, 2) => q6k_avx512::<2>(w, act, t0 + i, part),
                (Kind::Q6K, _) => q6k_avx512::<1>(w, act, t0 + i, part),
            });
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if kquant::avx2_path() {
        // Tiles of 4 tokens: with 16 vector registers, 4 × 8 rows of
        // accumulators and one sub-block's weights just fit.
        // SAFETY: AVX2, FMA and F16C are present; `w` holds the panel's blocks.
        unsafe {
            in_tiles(t, &[4, 1], acc, |i, n, part| match (kind, n) {
                (Kind::Q4K, 4) => q4k_avx2::<4>(w, act, t0 + i, part),
                (Kind::Q4K, _) => q4k_avx2::<1>(w, act, t0 + i, part),
                (Kind::Q6K, 4) => q6k_avx2::<4>(w, act, t0 + i, part),
                (Kind::Q6K, _) => q6k_avx2::<1>(w, act, t0 + i, part),
            });
        }
        return;
    }
    match kind {
        Kind::Q4K => q4k_portable(w, act, t0, t, acc),
        Kind::Q6K => q6k_portable(w, act, t0, t, acc),
    }
}

/// Splits `t` tokens into tiles, the largest of `sizes` (descending, the last
/// 1) that fits first: `product(i, n, out)` computes tokens `i..i + n` into
/// `out[..n]`, which is `acc[i..]`.
fn in_tiles(t: usize, sizes: &[usize], acc: &mut [[f32; ROWS]; TOKENS], mut product: impl FnMut(usize, usize, &mut [[f32; ROWS]])) {
    let mut i = 0;
    while i < t {
        let n = sizes.iter().copied().find(|&n| n <= t - i).unwrap_or(1);
        product(i, n, &mut acc[i..]);
        i += n;
    }
}

/// The same sums in scalar code: per row, `d·Σ_j sc_j·Σ q·a − dmin·Σ_j m_j·Σ a` per block.
fn q4k_portable(w: &[u8], act: &Activations, t0: usize, t: usize, acc: &mut [[f32; ROWS]; TOKENS]) {
    let kb = act.kb;
    for (i, rows) in acc[..t].iter_mut().enumerate() {
        let tok = t0 + i;
        rows.fill(0.0);
        for b in 0..kb {
            let o = &w[b * Q4K_PANEL_BYTES..(b + 1) * Q4K_PANEL_BYTES];
            let a = &act.q[(tok * kb + b) * QK..][..QK];
            let da = act.d[tok * kb + b];
            for (r, out) in rows.iter_mut().enumerate() {
                let (d, dmin) = (kquant::f16(&o[D + 2 * r..]), kquant::f16(&o[DMIN + 2 * r..]));
                let (mut sum, mut min) = (0i32, 0f32);
                for j in 0..8 {
                    let mut s = 0i32;
                    for p in 0..4 {
                        for l in 0..4 {
                            let byte = o[QS + (j * 4 + p) * 64 + 4 * r + l];
                            s += (byte & 0x0f) as i32 * a[32 * j + 8 * p + l] as i32;
                            s += (byte >> 4) as i32 * a[32 * j + 8 * p + 4 + l] as i32;
                        }
                    }
                    sum += o[SC + j * ROWS + r] as i32 * s;
                    min += o[MN + j * ROWS + r] as f32 * act.sums[(tok * kb + b) * 8 + j];
                }
                *out += d * da * sum as f32 - dmin * min;
            }
        }
    }
}

/// Per row, `d·Σ_j sc_j·(Σ q·a − 32·Σ a)` per block.
fn q6k_portable(w: &[u8], act: &Activations, t0: usize, t: usize, acc: &mut [[f32; ROWS]; TOKENS]) {
    let kb = act.kb;
    for (i, rows) in acc[..t].iter_mut().enumerate() {
        let tok = t0 + i;
        rows.fill(0.0);
        for b in 0..kb {
            let o = &w[b * Q6K_PANEL_BYTES..(b + 1) * Q6K_PANEL_BYTES];
            let a = &act.q[(tok * kb + b) * QK..][..QK];
            let da = act.d[tok * kb + b];
            for (r, out) in rows.iter_mut().enumerate() {
                let d = kquant::f16(&o[D + 2 * r..]);
                let (mut sum, mut corr) = (0i32, 0f32);
                for j in 0..16 {
                    let mut s = 0i32;
                    for g in 0..4 {
                        for l in 0..4 {
                            let low = o[QL6 + (j * 2 + g / 2) * 64 + 4 * r + l] >> (4 * (g % 2)) & 0x0f;
                            let high = (o[QH6 + j * 64 + 4 * r + l] >> (2 * g)) & 3;
                            s += (low | high << 4) as i32 * a[16 * j + 4 * g + l] as i32;
                        }
                    }
                    let sc = o[SC6 + j * ROWS + r] as i8 as i32;
                    sum += sc * s;
                    corr += sc as f32 * act.sums[(tok * kb + b) * 16 + j];
                }
                *out += d * (da * sum as f32 - 32.0 * corr);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn q4k_avx512<const T: usize>(w: &[u8], act: &Activations, t0: usize, out: &mut [[f32; ROWS]]) {
    use std::arch::x86_64::*;
    let low = _mm512_set1_epi8(0x0f);
    let mut acc = [_mm512_setzero_ps(); T];
    let kb = act.kb;
    for b in 0..kb {
        let o = w.as_ptr().add(b * Q4K_PANEL_BYTES);
        // Σ_j sc_j·d·Σ q·a per token, times the token's scale once per block
        // (a multiply per token and sub-block fewer: prefill is ALU-bound).
        let mut blk = [_mm512_setzero_ps(); T];
        let d = _mm512_cvtph_ps(_mm256_loadu_si256(o.add(D) as *const __m256i));
        let dmin = _mm512_cvtph_ps(_mm256_loadu_si256(o.add(DMIN) as *const __m256i));
        for j in 0..8 {
            // As on AVX2: 5 lines a sub-block cover the block's 37.
            for p in 0..5 {
                _mm_prefetch(o.wrapping_add(PREFETCH_BLOCKS_AVX512 * Q4K_PANEL_BYTES + (j * 5 + p) * 64) as *const i8, _MM_HINT_T0);
            }
            let bytes = |at: usize| _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(o.add(at + j * ROWS) as *const __m128i)));
            let scale = _mm512_mul_ps(d, bytes(SC));
            let min = _mm512_mul_ps(dmin, bytes(MN));
            let mut wq = [_mm512_setzero_si512(); 8];
            for p in 0..4 {
                let raw = _mm512_loadu_si512(o.add(QS + (j * 4 + p) * 64) as *const _);
                wq[2 * p] = _mm512_and_si512(raw, low);
                wq[2 * p + 1] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), low);
            }
            // Unrolled by hand, so that the accumulators stay in registers.
            kquant::each_token!(T, i, {
                let tok = t0 + i;
                let a = act.q.as_ptr().add((tok * kb + b) * QK + 32 * j) as *const i32;
                let mut s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq[0], _mm512_set1_epi32(a.read_unaligned()));
                for g in 1..8 {
                    s = _mm512_dpbusd_epi32(s, wq[g], _mm512_set1_epi32(a.add(g).read_unaligned()));
                }
                blk[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), scale, blk[i]);
                let asum = *act.sums.get_unchecked((tok * kb + b) * 8 + j);
                acc[i] = _mm512_fnmadd_ps(min, _mm512_set1_ps(asum), acc[i]);
            });
        }
        kquant::each_token!(T, i, {
            let da = *act.d.get_unchecked((t0 + i) * kb + b);
            acc[i] = _mm512_fmadd_ps(blk[i], _mm512_set1_ps(da), acc[i]);
        });
    }
    for i in 0..T {
        _mm512_storeu_ps(out[i].as_mut_ptr(), acc[i]);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn q6k_avx512<const T: usize>(w: &[u8], act: &Activations, t0: usize, out: &mut [[f32; ROWS]]) {
    use std::arch::x86_64::*;
    let (low, high) = (_mm512_set1_epi8(0x0f), _mm512_set1_epi8(0x30));
    let mut acc = [_mm512_setzero_ps(); T];
    let kb = act.kb;
    for b in 0..kb {
        let o = w.as_ptr().add(b * Q6K_PANEL_BYTES);
        let mut blk = [_mm512_setzero_ps(); T];
        let d = _mm512_cvtph_ps(_mm256_loadu_si256(o.add(D) as *const __m256i));
        for j in 0..16 {
            // 4 lines a sub-block cover the block's 53.
            for p in 0..4 {
                _mm_prefetch(o.wrapping_add(PREFETCH_BLOCKS_AVX512 * Q6K_PANEL_BYTES + (j * 4 + p) * 64) as *const i8, _MM_HINT_T0);
            }
            let sc = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(o.add(SC6 + j * ROWS) as *const __m128i)));
            let scale = _mm512_mul_ps(d, sc);
            let scale32 = _mm512_mul_ps(scale, _mm512_set1_ps(32.0));
            let l0 = _mm512_loadu_si512(o.add(QL6 + (j * 2) * 64) as *const _);
            let l1 = _mm512_loadu_si512(o.add(QL6 + (j * 2 + 1) * 64) as *const _);
            let h = _mm512_loadu_si512(o.add(QH6 + j * 64) as *const _);
            // Group g's high bits sit at 2g; move them to bits 4-5.
            let wq = [
                _mm512_or_si512(_mm512_and_si512(l0, low), _mm512_and_si512(_mm512_slli_epi16(h, 4), high)),
                _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l0, 4), low), _mm512_and_si512(_mm512_slli_epi16(h, 2), high)),
                _mm512_or_si512(_mm512_and_si512(l1, low), _mm512_and_si512(h, high)),
                _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l1, 4), low), _mm512_and_si512(_mm512_srli_epi16(h, 2), high)),
            ];
            kquant::each_token!(T, i, {
                let tok = t0 + i;
                let a = act.q.as_ptr().add((tok * kb + b) * QK + 16 * j) as *const i32;
                let mut s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq[0], _mm512_set1_epi32(a.read_unaligned()));
                for g in 1..4 {
                    s = _mm512_dpbusd_epi32(s, wq[g], _mm512_set1_epi32(a.add(g).read_unaligned()));
                }
                blk[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), scale, blk[i]);
                let asum = *act.sums.get_unchecked((tok * kb + b) * 16 + j);
                acc[i] = _mm512_fnmadd_ps(scale32, _mm512_set1_ps(asum), acc[i]);
            });
        }
        kquant::each_token!(T, i, {
            let da = *act.d.get_unchecked((t0 + i) * kb + b);
            acc[i] = _mm512_fmadd_ps(blk[i], _mm512_set1_ps(da), acc[i]);
        });
    }
    for i in 0..T {
        _mm512_storeu_ps(out[i].as_mut_ptr(), acc[i]);
    }
}

/// The AVX2 form of `q4k_avx512`: a panel's 16 rows as two halves of 8
/// (one 32-byte half of each 64-byte register), and `vpmaddubsw` pairs
/// summed as i16 in place of `vpdpbusd` (no overflow: 8 groups of 4 weights
/// of at most 15 times activations of at most 127 sum to at most 30,480).
///
/// AVX2 has 16 vector registers: one token (decode) keeps both halves'
/// accumulators and reads each cache line once; a tile of 4 tokens goes
/// over the panel once per half, so that 4 accumulators and one
/// sub-block's weights stay in registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4k_avx2<const T: usize>(w: &[u8], act: &Activations, t0: usize, out: &mut [[f32; ROWS]]) {
    avx2_passes::<T>(act.kb, out, |b, h, acc| q4k_avx2_step::<T>(w, act, t0, b, h, acc));
}

/// The block loop of both AVX2 products: `step(b, h, acc)` for every block
/// and half, one token both halves per block, a tile one half at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn avx2_passes<const T: usize>(kb: usize, out: &mut [[f32; ROWS]], step: impl Fn(usize, usize, &mut [std::arch::x86_64::__m256; T])) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); T]; 2];
    if T == 1 {
        for b in 0..kb {
            for (h, acc) in acc.iter_mut().enumerate() {
                step(b, h, acc);
            }
        }
    } else {
        for (h, acc) in acc.iter_mut().enumerate() {
            for b in 0..kb {
                step(b, h, acc);
            }
        }
    }
    for i in 0..T {
        _mm256_storeu_ps(out[i].as_mut_ptr(), acc[0][i]);
        _mm256_storeu_ps(out[i].as_mut_ptr().add(8), acc[1][i]);
    }
}

/// How far ahead one token's pass asks for the weights: two panel blocks.
/// Decode streams the weights once from memory, and without these hints
/// the two threads read 11–12 GB/s of the box's ~20 (docs/benchmarks.md);
/// with them 13–16. On the AVX-512 path (Intel, ~30 GB/s) they took decode
/// from 14.0–14.2 to 16.9–17.3 tokens/s.
const PREFETCH_BLOCKS: usize = 2;

/// The same for the AVX-512 path: 4 blocks ahead read 17.2–17.5 tokens/s
/// against 16.6–16.8 with 2 (the same binaries alternating).
const PREFETCH_BLOCKS_AVX512: usize = 4;

/// Block `b`, rows `8h..8h + 8` of a Q4_K panel, tokens `t0..t0 + T`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn q4k_avx2_step<const T: usize>(w: &[u8], act: &Activations, t0: usize, b: usize, h: usize, acc: &mut [std::arch::x86_64::__m256; T]) {
    use std::arch::x86_64::*;
    let low = _mm256_set1_epi8(0x0f);
    let kb = act.kb;
    let o = w.as_ptr().add(b * Q4K_PANEL_BYTES);
    let d = _mm256_cvtph_ps(_mm_loadu_si128(o.add(D + 16 * h) as *const __m128i));
    let dmin = _mm256_cvtph_ps(_mm_loadu_si128(o.add(DMIN + 16 * h) as *const __m128i));
    // Σ_j sc_j·Σ q·a per token (i32: at most 8 · 63 · 2 · 30,480), and the mins' Σ_j m_j·Σ a.
    let mut sum = [_mm256_setzero_si256(); T];
    let mut mins = [_mm256_setzero_ps(); T];
    for j in 0..8 {
        if h == 0 {
            // 5 lines a sub-block cover the block's 37 (a hint: past the end it does nothing, hence wrapping_add).
            for p in 0..5 {
                _mm_prefetch(o.wrapping_add(PREFETCH_BLOCKS * Q4K_PANEL_BYTES + (j * 5 + p) * 64) as *const i8, _MM_HINT_T0);
            }
        }
        let sc = _mm256_cvtepu8_epi32(_mm_loadl_epi64(o.add(SC + j * ROWS + 8 * h) as *const __m128i));
        // Each row's scale in both i16 halves of its lane, for vpmaddwd.
        let sc16 = _mm256_or_si256(sc, _mm256_slli_epi32(sc, 16));
        let mn = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(o.add(MN + j * ROWS + 8 * h) as *const __m128i)));
        let mut wq = [_mm256_setzero_si256(); 8];
        for p in 0..4 {
            let raw = _mm256_loadu_si256(o.add(QS + (j * 4 + p) * 64 + 32 * h) as *const __m256i);
            wq[2 * p] = _mm256_and_si256(raw, low);
            wq[2 * p + 1] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low);
        }
        kquant::each_token!(T, i, {
            let tok = t0 + i;
            let a = act.q.as_ptr().add((tok * kb + b) * QK + 32 * j) as *const i32;
            let mut s = _mm256_maddubs_epi16(wq[0], _mm256_set1_epi32(a.read_unaligned()));
            for g in 1..8 {
                s = _mm256_add_epi16(s, _mm256_maddubs_epi16(wq[g], _mm256_set1_epi32(a.add(g).read_unaligned())));
            }
            sum[i] = _mm256_add_epi32(sum[i], _mm256_madd_epi16(s, sc16));
            let asum = *act.sums.get_unchecked((tok * kb + b) * 8 + j);
            mins[i] = _mm256_fmadd_ps(mn, _mm256_set1_ps(asum), mins[i]);
        });
    }
    kquant::each_token!(T, i, {
        let da = *act.d.get_unchecked((t0 + i) * kb + b);
        acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[i]), _mm256_mul_ps(d, _mm256_set1_ps(da)), acc[i]);
        acc[i] = _mm256_fnmadd_ps(dmin, mins[i], acc[i]);
    });
}

/// The AVX2 form of `q6k_avx512`, arranged as `q4k_avx2`: i16 sums of two
/// groups at a time (4 weights of at most 63 times activations of at most
/// 127, twice: 32,004), each widened with the rows' sub-block scales by
/// `vpmaddwd`, so the block's sum stays integer until its end.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6k_avx2<const T: usize>(w: &[u8], act: &Activations, t0: usize, out: &mut [[f32; ROWS]]) {
    avx2_passes::<T>(act.kb, out, |b, h, acc| q6k_avx2_step::<T>(w, act, t0, b, h, acc));
}

/// Block `b`, rows `8h..8h + 8` of a Q6_K panel, tokens `t0..t0 + T`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn q6k_avx2_step<const T: usize>(w: &[u8], act: &Activations, t0: usize, b: usize, h: usize, acc: &mut [std::arch::x86_64::__m256; T]) {
    use std::arch::x86_64::*;
    let (low, high) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(0x30));
    let kb = act.kb;
    let o = w.as_ptr().add(b * Q6K_PANEL_BYTES);
    let d = _mm256_cvtph_ps(_mm_loadu_si128(o.add(D + 16 * h) as *const __m128i));
    // Σ_j sc_j·Σ q·a per token (i32: at most 16 · 127 · 2 · 32,004), and the −32 offset's Σ_j sc_j·Σ a.
    let mut sum = [_mm256_setzero_si256(); T];
    let mut corr = [_mm256_setzero_ps(); T];
    for j in 0..16 {
        if h == 0 {
            // 4 lines a sub-block cover the block's 53.
            for p in 0..4 {
                _mm_prefetch(o.wrapping_add(PREFETCH_BLOCKS * Q6K_PANEL_BYTES + (j * 4 + p) * 64) as *const i8, _MM_HINT_T0);
            }
        }
        let sc = _mm256_cvtepi8_epi32(_mm_loadl_epi64(o.add(SC6 + j * ROWS + 8 * h) as *const __m128i));
        // Each row's scale in both i16 halves of its lane, for vpmaddwd.
        let sc16 = _mm256_or_si256(_mm256_and_si256(sc, _mm256_set1_epi32(0xffff)), _mm256_slli_epi32(sc, 16));
        let scf = _mm256_cvtepi32_ps(sc);
        let l0 = _mm256_loadu_si256(o.add(QL6 + (j * 2) * 64 + 32 * h) as *const __m256i);
        let l1 = _mm256_loadu_si256(o.add(QL6 + (j * 2 + 1) * 64 + 32 * h) as *const __m256i);
        let hb = _mm256_loadu_si256(o.add(QH6 + j * 64 + 32 * h) as *const __m256i);
        let wq = [
            _mm256_or_si256(_mm256_and_si256(l0, low), _mm256_and_si256(_mm256_slli_epi16(hb, 4), high)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), low), _mm256_and_si256(_mm256_slli_epi16(hb, 2), high)),
            _mm256_or_si256(_mm256_and_si256(l1, low), _mm256_and_si256(hb, high)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), low), _mm256_and_si256(_mm256_srli_epi16(hb, 2), high)),
        ];
        kquant::each_token!(T, i, {
            let tok = t0 + i;
            let a = act.q.as_ptr().add((tok * kb + b) * QK + 16 * j) as *const i32;
            let pair = |g: usize| {
                let s = _mm256_maddubs_epi16(wq[g], _mm256_set1_epi32(a.add(g).read_unaligned()));
                let s = _mm256_add_epi16(s, _mm256_maddubs_epi16(wq[g + 1], _mm256_set1_epi32(a.add(g + 1).read_unaligned())));
                _mm256_madd_epi16(s, sc16)
            };
            sum[i] = _mm256_add_epi32(sum[i], _mm256_add_epi32(pair(0), pair(2)));
            let asum = *act.sums.get_unchecked((tok * kb + b) * 16 + j);
            corr[i] = _mm256_fmadd_ps(scf, _mm256_set1_ps(asum), corr[i]);
        });
    }
    let d32 = _mm256_mul_ps(d, _mm256_set1_ps(32.0));
    kquant::each_token!(T, i, {
        let da = *act.d.get_unchecked((t0 + i) * kb + b);
        acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[i]), _mm256_mul_ps(d, _mm256_set1_ps(da)), acc[i]);
        acc[i] = _mm256_fnmadd_ps(d32, corr[i], acc[i]);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::kquant::tests::{dequantize, exact, random_blocks, relative_error};
    use rand::{Rng, SeedableRng};

    /// Panels give what the row kernels give on the same blocks (the
    /// AVX-512, AVX2 and portable products), and the f32 product to int8 error.
    fn check(kind: Kind) {
        for (m, n, k) in [(1, 16, 256), (1, 48, 1536), (3, 32, 512), (4, 48, 1536), (8, 16, 768), (19, 64, 256), (15, 32, 512)] {
            let mut rng = rand::rngs::StdRng::seed_from_u64((m * 17 + n * 3 + k) as u64);
            let w = random_blocks(kind, n, k, &mut rng);
            let x: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
            let panels = Panels::from_blocks(kind, &w, n, k).unwrap();
            let block = panel_block_bytes(kind);
            assert_eq!(panels.bytes(), n / 16 * (k / 256) * block);
            let mut ours = vec![0f32; m * n];
            panels.matmul(&x, m, &mut ours);
            let mut rows = vec![0f32; m * n];
            kquant::matmul(kind, &w, n, k, &x, m, &mut rows);
            let act = Activations::quantize_as(&x, m, k, kind.group(), false);
            let mut portable = vec![0f32; m * n];
            for panel in 0..n / 16 {
                let pw = &panels.data[panel * (k / 256) * block..][..(k / 256) * block];
                for t0 in (0..m).step_by(TOKENS) {
                    let t = TOKENS.min(m - t0);
                    let mut acc = [[0f32; ROWS]; TOKENS];
                    match kind {
                        Kind::Q4K => q4k_portable(pw, &act, t0, t, &mut acc),
                        Kind::Q6K => q6k_portable(pw, &act, t0, t, &mut acc),
                    }
                    for i in 0..t {
                        portable[(t0 + i) * n + panel * 16..][..16].copy_from_slice(&acc[i]);
                    }
                }
            }
            // The AVX2 product, wherever the CPU has it (on an AVX-512 CPU it is not the one `matmul` picks).
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") && std::arch::is_x86_feature_detected!("f16c") {
                for panel in 0..n / 16 {
                    let pw = &panels.data[panel * (k / 256) * block..][..(k / 256) * block];
                    for t0 in 0..m {
                        let mut one = [[0f32; ROWS]; TOKENS];
                        let mut four = [[0f32; ROWS]; TOKENS];
                        // SAFETY: the features were just detected.
                        unsafe {
                            match kind {
                                Kind::Q4K => q4k_avx2::<1>(pw, &act, t0, &mut one),
                                Kind::Q6K => q6k_avx2::<1>(pw, &act, t0, &mut one),
                            }
                            if t0 + 4 <= m {
                                match kind {
                                    Kind::Q4K => q4k_avx2::<4>(pw, &act, t0, &mut four),
                                    Kind::Q6K => q6k_avx2::<4>(pw, &act, t0, &mut four),
                                }
                            }
                        }
                        for r in 0..16 {
                            let want = portable[t0 * n + panel * 16 + r];
                            assert!((one[0][r] - want).abs() <= 1e-4 * (1.0 + want.abs()), "{kind:?} AVX2 {m}×{n}×{k} token {t0} row {r}");
                            if t0 + 4 <= m {
                                for i in 0..4 {
                                    let want = portable[(t0 + i) * n + panel * 16 + r];
                                    assert!((four[i][r] - want).abs() <= 1e-4 * (1.0 + want.abs()), "{kind:?} AVX2×4 {m}×{n}×{k} token {} row {r}", t0 + i);
                                }
                            }
                        }
                    }
                }
            }
            for (i, ((a, b), c)) in ours.iter().zip(&rows).zip(&portable).enumerate() {
                assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{kind:?} {m}×{n}×{k} [{i}]: panels {a}, rows {b}");
                assert!((a - c).abs() <= 1e-4 * (1.0 + c.abs()), "{kind:?} {m}×{n}×{k} [{i}]: panels {a}, portable {c}");
            }
            let e = relative_error(&ours, &exact(&dequantize(kind, &w), &x, m, n, k));
            assert!(e < 0.01, "{kind:?} {m}×{n}×{k}: relative error {e}");
        }
        let bytes = vec![0u8; kind.block_bytes() * 8];
        assert!(Panels::from_blocks(kind, &bytes, 8, 256).is_none(), "8 rows make no panel");
    }

    #[test]
    fn q4k_panels_match_the_row_kernels_and_f32() {
        check(Kind::Q4K);
    }

    #[test]
    fn q6k_panels_match_the_row_kernels_and_f32() {
        check(Kind::Q6K);
    }
}
