//! A decoder layer's small operations on plain `f32` buffers: RMS norm,
//! rotary embedding, grouped-query attention over the key/value cache and
//! the SwiGLU gate.
//!
//! Why not candle's: a decode step runs ~25 of them per layer on one row,
//! and through tensors each allocates its output, and the reshapes,
//! narrows and transposes between them copy; together that was about a
//! fifth of a token, serial between the matrix products. Here they write
//! into buffers the forward pass allocates once, and the loops are
//! compiled for the widest vector unit the CPU has (chosen at run time,
//! like the matrix kernels; `AICC_KERNELS=portable` forces the baseline).

use rayon::prelude::*;

use crate::kernels;

/// Calls `$body($args…)` (a function returning `()`) compiled for
/// AVX-512F, for AVX2 + FMA, or for the baseline, whichever the CPU runs
/// (see `kernels::fast_path` and `kernels::avx2_path`).
macro_rules! widest {
    ($body:ident($($arg:ident: $ty:ty),* $(,)?)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f")]
            unsafe fn avx512($($arg: $ty),*) {
                $body($($arg),*)
            }
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2($($arg: $ty),*) {
                $body($($arg),*)
            }
            if kernels::fast_path() {
                // SAFETY: fast_path implies AVX-512F.
                return unsafe { avx512($($arg),*) };
            }
            if kernels::avx2_path() {
                // SAFETY: avx2_path implies AVX2 and FMA.
                return unsafe { avx2($($arg),*) };
            }
        }
        $body($($arg),*)
    }};
}

/// Sixteen partial sums (one AVX-512 register, two AVX2 ones) instead of
/// one serial chain, which the compiler may not reorder.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn sum(v: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let chunks = v.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for i in 0..16 {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `out = x / rms(x) · w` for every `w.len()`-wide row of `x`.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    #[inline(always)]
    fn body(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
        let h = w.len();
        for (row, out) in x.chunks_exact(h).zip(out.chunks_exact_mut(h)) {
            let inv = 1.0 / (dot(row, row) / h as f32 + eps).sqrt();
            for ((o, v), w) in out.iter_mut().zip(row).zip(w) {
                *o = v * inv * w;
            }
        }
    }
    assert_eq!(x.len(), out.len());
    widest!(body(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]))
}

/// `x += y`.
pub fn add(x: &mut [f32], y: &[f32]) {
    #[inline(always)]
    fn body(x: &mut [f32], y: &[f32]) {
        x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
    }
    assert_eq!(x.len(), y.len());
    widest!(body(x: &mut [f32], y: &[f32]))
}

/// `b` added to every `b.len()`-wide row of `x`.
pub fn add_rows(x: &mut [f32], b: &[f32]) {
    #[inline(always)]
    fn body(x: &mut [f32], b: &[f32]) {
        for row in x.chunks_exact_mut(b.len()) {
            row.iter_mut().zip(b).for_each(|(a, b)| *a += b);
        }
    }
    widest!(body(x: &mut [f32], b: &[f32]))
}

/// `gate = silu(gate) · up`, SwiGLU's feed-forward gate. A prompt chunk's
/// gate is megabytes: both threads share it (it was 6% of prefill on one).
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    #[inline(always)]
    fn body(gate: &mut [f32], up: &[f32]) {
        gate.iter_mut().zip(up).for_each(|(g, u)| *g = *g / (1.0 + kernels::exp(-*g)) * u);
    }
    fn part(gate: &mut [f32], up: &[f32]) {
        widest!(body(gate: &mut [f32], up: &[f32]))
    }
    assert_eq!(gate.len(), up.len());
    const PIECE: usize = 1 << 15;
    if gate.len() >= 2 * PIECE {
        gate.par_chunks_mut(PIECE).zip(up.par_chunks(PIECE)).for_each(|(g, u)| part(g, u));
    } else {
        part(gate, up);
    }
}

/// Rotary position embedding tables, `cos`/`sin` of position × frequency.
pub struct Rope {
    cos: Vec<f32>,
    sin: Vec<f32>,
    dim: usize,
    /// llama GGUFs store q/k permuted for interleaved pairs `(2i, 2i+1)`;
    /// qwen2 rotates the halves `(i, i + dim/2)`.
    interleaved: bool,
}

impl Rope {
    pub fn new(dim: usize, base: f32, positions: usize, interleaved: bool) -> Self {
        let half = dim / 2;
        let inv: Vec<f32> = (0..half).map(|i| 1.0 / base.powf(2.0 * i as f32 / dim as f32)).collect();
        let angles = || (0..positions).flat_map(|p| inv.iter().map(move |f| p as f32 * f));
        Self { cos: angles().map(f32::cos).collect(), sin: angles().map(f32::sin).collect(), dim, interleaved }
    }

    pub fn positions(&self) -> usize {
        self.cos.len() / (self.dim / 2)
    }

    /// Rotates the `heads` heads of each row of `x`, row `i` being at
    /// position `at + i`.
    pub fn apply(&self, x: &mut [f32], heads: usize, at: usize) {
        let (dim, half) = (self.dim, self.dim / 2);
        assert!(x.len() / (heads * dim) + at <= self.positions());
        for (i, row) in x.chunks_exact_mut(heads * dim).enumerate() {
            let (cos, sin) = (&self.cos[(at + i) * half..][..half], &self.sin[(at + i) * half..][..half]);
            for head in row.chunks_exact_mut(dim) {
                if self.interleaved {
                    for (j, pair) in head.chunks_exact_mut(2).enumerate() {
                        let (a, b) = (pair[0], pair[1]);
                        pair[0] = a * cos[j] - b * sin[j];
                        pair[1] = a * sin[j] + b * cos[j];
                    }
                } else {
                    let (lo, hi) = head.split_at_mut(half);
                    for j in 0..half {
                        let (a, b) = (lo[j], hi[j]);
                        lo[j] = a * cos[j] - b * sin[j];
                        hi[j] = b * cos[j] + a * sin[j];
                    }
                }
            }
        }
    }
}

/// The shape of grouped-query attention: `heads` query heads of `dim`
/// floats, `heads / kv_heads` of them sharing each key/value head.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    pub heads: usize,
    pub kv_heads: usize,
    pub dim: usize,
}

/// Causal attention of `t` queries at positions `at..at + t` (rows of `q`,
/// `heads · dim` wide) over the cached `keys` and `values` (rows of
/// `kv_heads · dim`, one per position, at least `at + t` of them): query
/// `i` sees positions `0..=at + i`. Writes rows of `heads · dim` to `out`.
pub fn attention(q: &[f32], at: usize, keys: &[f32], values: &[f32], shape: Heads, out: &mut [f32]) {
    let Heads { heads, kv_heads, dim } = shape;
    let (width, kv_width) = (heads * dim, kv_heads * dim);
    let t = q.len() / width;
    assert!(keys.len() >= (at + t) * kv_width && values.len() >= (at + t) * kv_width && out.len() == q.len());
    // One task per query row and key head: its `group` query heads read
    // each key once.
    let group = heads / kv_heads;
    let cells: Vec<(usize, &mut [f32])> = out
        .chunks_exact_mut(width)
        .enumerate()
        .flat_map(|(i, row)| row.chunks_exact_mut(group * dim).map(move |c| (i, c)))
        .collect();
    // A prompt chunk's queries share the keys: transposed once per key head
    // (`dim` rows of `span` positions, zero-padded to whole chunks), a
    // query's scores become vector updates across keys, with no
    // horizontal sum per key (that sum was half the cost of a dot product).
    let span = (at + t).next_multiple_of(CHUNK);
    let transposed: Vec<Vec<f32>> = if t >= TRANSPOSE_FROM {
        (0..kv_heads)
            .map(|g| {
                let mut kt = vec![0f32; dim * span];
                for j in 0..at + t {
                    for (c, k) in keys[j * kv_width + g * dim..][..dim].iter().enumerate() {
                        kt[c * span + j] = *k;
                    }
                }
                kt
            })
            .collect()
    } else {
        Vec::new()
    };
    let run = |(n, (i, out)): (usize, (usize, &mut [f32]))| {
        let g = n % kv_heads;
        let q = &q[i * width + g * group * dim..][..group * dim];
        let keys = match transposed.get(g) {
            Some(kt) => Keys::Transposed { kt, span },
            None => Keys::Rows { keys: &keys[g * dim..], stride: kv_width },
        };
        attend(q, at + i + 1, keys, &values[g * dim..], kv_width, dim, out);
    };
    let work = heads * t * (at + t) * dim;
    if work < 1 << 20 {
        cells.into_iter().enumerate().for_each(run);
    } else {
        cells.into_par_iter().enumerate().for_each(run);
    }
}

/// Prompt chunks of at least this many tokens transpose the keys.
const TRANSPOSE_FROM: usize = 8;

/// Keys scored at once from transposed keys: 64 floats, four AVX-512
/// registers (eight AVX2 ones) of running scores.
const CHUNK: usize = 64;

/// A key head's cached keys: rows `stride` floats apart (as cached), or
/// transposed (`dim` rows of `span`).
#[derive(Clone, Copy)]
enum Keys<'a> {
    Rows { keys: &'a [f32], stride: usize },
    Transposed { kt: &'a [f32], span: usize },
}

/// `q`'s heads (one after another, `dim` each) against the first `len`
/// keys, and the values, which start `stride` floats apart.
fn attend(q: &[f32], len: usize, keys: Keys<'_>, values: &[f32], stride: usize, dim: usize, out: &mut [f32]) {
    #[inline(always)]
    fn body(q: &[f32], len: usize, keys: Keys<'_>, values: &[f32], stride: usize, dim: usize, out: &mut [f32]) {
        let scale = 1.0 / (dim as f32).sqrt();
        let group = q.len() / dim;
        let width = len.next_multiple_of(CHUNK);
        let mut scores = vec![0f32; group * width];
        match keys {
            Keys::Rows { keys, stride } => {
                for j in 0..len {
                    let k = &keys[j * stride..][..dim];
                    for (h, q) in q.chunks_exact(dim).enumerate() {
                        scores[h * width + j] = dot(q, k) * scale;
                    }
                }
            }
            Keys::Transposed { kt, span } => {
                for (q, scores) in q.chunks_exact(dim).zip(scores.chunks_exact_mut(width)) {
                    for (j0, scores) in (0..len).step_by(CHUNK).zip(scores.chunks_exact_mut(CHUNK)) {
                        let mut acc = [0f32; CHUNK];
                        for (c, qc) in q.iter().enumerate() {
                            let k = &kt[c * span + j0..][..CHUNK];
                            for l in 0..CHUNK {
                                acc[l] += qc * k[l];
                            }
                        }
                        for (s, a) in scores.iter_mut().zip(acc) {
                            *s = a * scale;
                        }
                    }
                }
            }
        }
        for (p, out) in scores.chunks_exact_mut(width).zip(out.chunks_exact_mut(dim)) {
            let p = &mut p[..len];
            let max = p.iter().fold(f32::NEG_INFINITY, |m, s| m.max(*s));
            p.iter_mut().for_each(|s| *s = kernels::exp(*s - max));
            let inv = 1.0 / sum(p);
            let v = |j: usize| &values[j * stride..][..dim];
            match dim {
                // A fixed-size accumulator stays in registers.
                64 => weighted_sum::<64>(p, inv, v, out),
                128 => weighted_sum::<128>(p, inv, v, out),
                _ => {
                    out.fill(0.0);
                    for (j, s) in p.iter().enumerate() {
                        let w = s * inv;
                        out.iter_mut().zip(v(j)).for_each(|(a, v)| *a += w * v);
                    }
                }
            }
        }
    }
    widest!(body(q: &[f32], len: usize, keys: Keys<'_>, values: &[f32], stride: usize, dim: usize, out: &mut [f32]))
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
    use candle_core::{Device, Tensor, D};

    fn random(seed: &mut u64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((*seed >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{what}[{i}]: {x} vs {y}");
        }
    }

    /// Each op against candle's, which the model used before (the reference).
    #[test]
    fn norm_gate_and_rope_match_candle() {
        let dev = Device::Cpu;
        let mut seed = 11;
        let (rows, h) = (5, 96);
        let x = random(&mut seed, rows * h);
        let w = random(&mut seed, h);
        let xt = Tensor::from_vec(x.clone(), (rows, h), &dev).unwrap();
        let wt = Tensor::from_vec(w.clone(), h, &dev).unwrap();

        let mut out = vec![0f32; rows * h];
        rms_norm(&x, &w, 1e-6, &mut out);
        let want = candle_nn::ops::rms_norm(&xt, &wt, 1e-6).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        close(&out, &want, 1e-5, "rms_norm");

        let up = random(&mut seed, rows * h).iter().map(|v| v * 8.0).collect::<Vec<_>>();
        let mut gate: Vec<f32> = x.iter().map(|v| v * 30.0).collect();
        let (gt, ut) = (Tensor::from_vec(gate.clone(), (rows, h), &dev).unwrap(), Tensor::from_vec(up.clone(), (rows, h), &dev).unwrap());
        silu_mul(&mut gate, &up);
        let want = (candle_nn::ops::silu(&gt).unwrap() * ut).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        close(&gate, &want, 1e-5, "silu_mul");
        // Long enough to be shared between threads.
        let n = 70_001;
        let up: Vec<f32> = random(&mut seed, n);
        let mut gate: Vec<f32> = random(&mut seed, n).iter().map(|v| v * 20.0).collect();
        let want: Vec<f32> = gate.iter().zip(&up).map(|(g, u)| g / (1.0 + (-g).exp()) * u).collect();
        silu_mul(&mut gate, &up);
        close(&gate, &want, 1e-5, "silu_mul, long");

        // Three heads of 32 at positions 7.. for both layouts.
        let (heads, dim, at) = (3, 32, 7);
        for interleaved in [false, true] {
            let rope = Rope::new(dim, 10_000.0, 64, interleaved);
            let mut mine = x.clone();
            rope.apply(&mut mine, heads, at);
            let half = dim / 2;
            let cos = Tensor::from_vec(rope.cos[at * half..(at + rows) * half].to_vec(), (rows, half), &dev).unwrap();
            let sin = Tensor::from_vec(rope.sin[at * half..(at + rows) * half].to_vec(), (rows, half), &dev).unwrap();
            let x4 = xt.reshape((1, rows, heads, dim)).unwrap().transpose(1, 2).unwrap().contiguous().unwrap();
            let y = if interleaved {
                candle_nn::rotary_emb::rope_i(&x4, &cos, &sin).unwrap()
            } else {
                candle_nn::rotary_emb::rope(&x4, &cos, &sin).unwrap()
            };
            let want = y.transpose(1, 2).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            close(&mine, &want, 1e-5, if interleaved { "rope_i" } else { "rope" });
        }
    }

    /// Grouped-query causal attention against candle's matmul + mask +
    /// softmax on the same cache, for a decode step and a prompt chunk,
    /// with head sizes that take each accumulator path.
    #[test]
    fn attention_matches_candle() {
        let dev = Device::Cpu;
        let mut seed = 5;
        for (heads, kv_heads, dim, at, t) in [(6, 2, 128, 40, 1), (6, 2, 128, 13, 9), (6, 2, 128, 100, 64), (4, 4, 64, 0, 5), (2, 1, 48, 3, 300)] {
            let shape = Heads { heads, kv_heads, dim };
            let total = at + t;
            let q = random(&mut seed, t * heads * dim);
            let keys = random(&mut seed, total * kv_heads * dim);
            let values = random(&mut seed, total * kv_heads * dim);
            let mut out = vec![0f32; q.len()];
            attention(&q, at, &keys, &values, shape, &mut out);

            let group = heads / kv_heads;
            let qt = Tensor::from_vec(q, (t, heads, dim), &dev).unwrap().transpose(0, 1).unwrap().contiguous().unwrap();
            let qt = qt.reshape((kv_heads, group * t, dim)).unwrap();
            let kv = |v: Vec<f32>| Tensor::from_vec(v, (total, kv_heads, dim), &dev).unwrap().transpose(0, 1).unwrap().contiguous().unwrap();
            let (kt, vt) = (kv(keys), kv(values));
            let att = (qt.matmul(&kt.t().unwrap()).unwrap() / (dim as f64).sqrt()).unwrap();
            let mut mask = vec![0f32; group * t * total];
            for r in 0..group * t {
                mask[r * total..][..total][at + r % t + 1..].fill(f32::NEG_INFINITY);
            }
            let att = att.broadcast_add(&Tensor::from_vec(mask, (group * t, total), &dev).unwrap()).unwrap();
            let att = candle_nn::ops::softmax(&att, D::Minus1).unwrap();
            let y = att.matmul(&vt).unwrap().reshape((heads, t, dim)).unwrap().transpose(0, 1).unwrap();
            let want = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            close(&out, &want, 1e-4, &format!("attention heads {heads}/{kv_heads} dim {dim} at {at} t {t}"));
        }
    }
}
