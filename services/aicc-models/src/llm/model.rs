//! The decoder-only transformer of llama- and qwen2-architecture GGUFs.
//! Our own (rather than candle-transformers') so that the key/value cache
//! is ours: it can be cut back to a shared prefix and reused by the next
//! turn, which candle's models cannot do. The matrix products run on our
//! K-quant kernels (or candle's); everything between them (`ops`) works on
//! plain buffers allocated once per forward pass.
//!
//! Token embeddings stay quantized (rows are dequantized on lookup), so the
//! 151,936-row table costs its GGUF size, not four bytes per weight.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};

use super::gguf::Meta;
use super::kquant;
use super::ops::{self, Heads, Rope};
use super::panels::Panels;
use super::LlmError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub arch: Arch,
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub rms_eps: f32,
    pub rope_base: f32,
    pub train_context: usize,
}

struct Layer {
    attn_norm: Vec<f32>,
    q: Linear,
    k: Linear,
    v: Linear,
    // qwen2 has biases on q, k and v.
    q_bias: Option<Vec<f32>>,
    k_bias: Option<Vec<f32>>,
    v_bias: Option<Vec<f32>>,
    o: Linear,
    ffn_norm: Vec<f32>,
    gate: Linear,
    up: Linear,
    down: Linear,
}

pub struct Transformer {
    pub config: Config,
    embed: Arc<QTensor>,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    output: Linear,
    rope: Rope,
    max_context: usize,
    device: Device,
}

/// The keys and values of one sequence, layer by layer: one row of
/// `width` (key heads × head size) floats per position, in buffers that
/// grow by doubling; `tokens` are the ids they were computed from.
pub struct KvCache {
    layers: Vec<(Vec<f32>, Vec<f32>)>,
    width: usize,
    pub tokens: Vec<u32>,
}

impl KvCache {
    pub fn new(layers: usize, width: usize) -> Self {
        Self { layers: vec![(Vec::new(), Vec::new()); layers], width, tokens: Vec::new() }
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Forgets everything after the first `n` tokens (the buffers stay).
    pub fn truncate(&mut self, n: usize) {
        self.tokens.truncate(n);
        for (k, v) in &mut self.layers {
            k.truncate(n * self.width);
            v.truncate(n * self.width);
        }
    }

    /// Becomes a copy of the first `n` tokens of `other` (so that a new
    /// conversation can start from a shared system prompt without cutting
    /// back the conversation that computed it).
    pub fn copy_prefix(&mut self, other: &KvCache, n: usize) {
        let n = n.min(other.len());
        self.truncate(0);
        self.reserve(n);
        let len = n * self.width;
        for ((k, v), (theirs_k, theirs_v)) in self.layers.iter_mut().zip(&other.layers) {
            k.extend_from_slice(&theirs_k[..len]);
            v.extend_from_slice(&theirs_v[..len]);
        }
        self.tokens.extend_from_slice(&other.tokens[..n]);
    }

    fn reserve(&mut self, needed: usize) {
        let capacity = needed.next_power_of_two().max(256) * self.width;
        for (k, v) in &mut self.layers {
            if k.capacity() < needed * self.width {
                k.reserve_exact(capacity - k.len());
                v.reserve_exact(capacity - v.len());
            }
        }
    }

    /// Writes the rows `k`, `v` at position `at` and returns everything up
    /// to `at` plus those rows.
    fn store(&mut self, layer: usize, at: usize, k: &[f32], v: &[f32]) -> (&[f32], &[f32]) {
        let (keys, values) = &mut self.layers[layer];
        keys.truncate(at * self.width);
        values.truncate(at * self.width);
        keys.extend_from_slice(k);
        values.extend_from_slice(v);
        (&keys[..], &values[..])
    }
}

impl Transformer {
    /// Loads a llama or qwen2 GGUF; `max_context` bounds the positions used.
    pub fn load(path: &Path, max_context: usize, kernels: Kernels, device: &Device) -> Result<(Self, Content), LlmError> {
        let mut reader = BufReader::new(File::open(path).map_err(|e| LlmError::Io(format!("{}: {e}", path.display())))?);
        let content = Content::read(&mut reader).map_err(|e| LlmError::Format(format!("{}: {e}", path.display())))?;
        let meta = Meta::new(&content);
        let arch_name = meta.string("general.architecture")?;
        let arch = match arch_name {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            other => return Err(LlmError::Unsupported(format!("architecture `{other}` (llama and qwen2 are)"))),
        };
        let key = |k: &str| format!("{arch_name}.{k}");
        let heads = meta.u32(&key("attention.head_count"))? as usize;
        let hidden = meta.u32(&key("embedding_length"))? as usize;
        let head_dim = meta.opt_u32(&key("rope.dimension_count")).map_or(hidden / heads, |d| d as usize);
        let config = Config {
            arch,
            layers: meta.u32(&key("block_count"))? as usize,
            hidden,
            heads,
            kv_heads: meta.opt_u32(&key("attention.head_count_kv")).map_or(heads, |n| n as usize),
            head_dim,
            rms_eps: meta.f32(&key("attention.layer_norm_rms_epsilon"))?,
            rope_base: meta.f32(&key("rope.freq_base")).unwrap_or(10_000.0),
            train_context: meta.opt_u32(&key("context_length")).map_or(2048, |n| n as usize),
        };
        if config.heads % config.kv_heads != 0 || head_dim % 2 != 0 {
            return Err(LlmError::Format("head counts or head size are inconsistent".into()));
        }
        let max_context = max_context.min(config.train_context);
        let legacy_f32_bytes: usize = content
            .tensor_infos
            .values()
            .filter(|t| is_legacy(t.ggml_dtype))
            .map(|t| t.shape.elem_count() * 4)
            .sum();
        let dequantize_legacy = legacy_f32_bytes <= LEGACY_F32_BUDGET;

        let mut tensor = |name: &str| -> Result<QTensor, LlmError> {
            content.tensor(&mut reader, name, device).map_err(|e| LlmError::Format(format!("tensor {name}: {e}")))
        };
        let embed = Arc::new(tensor("token_embd.weight")?);
        // Norm weights and biases as plain floats, for `ops`.
        let vector = |t: QTensor| -> Result<Vec<f32>, LlmError> { Ok(t.dequantize(device)?.flatten_all()?.to_vec1::<f32>()?) };
        let norm = vector(tensor("output_norm.weight")?)?;
        let output = if content.tensor_infos.contains_key("output.weight") {
            Linear::new(Arc::new(tensor("output.weight")?), dequantize_legacy, kernels, device)?
        } else {
            // Tied embeddings: the output projection is the embedding table.
            Linear::new(embed.clone(), dequantize_legacy, kernels, device)?
        };
        let mut layers = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let p = |n: &str| format!("blk.{i}.{n}");
            let mut bias = |n: &str| -> Result<Option<Vec<f32>>, LlmError> {
                if content.tensor_infos.contains_key(&p(n)) {
                    Ok(Some(vector(tensor(&p(n))?)?))
                } else {
                    Ok(None)
                }
            };
            let (q_bias, k_bias, v_bias) = (bias("attn_q.bias")?, bias("attn_k.bias")?, bias("attn_v.bias")?);
            let (attn_norm, ffn_norm) = (vector(tensor(&p("attn_norm.weight"))?)?, vector(tensor(&p("ffn_norm.weight"))?)?);
            let mut mm = |n: &str| -> Result<Linear, LlmError> { Linear::new(Arc::new(tensor(&p(n))?), dequantize_legacy, kernels, device) };
            layers.push(Layer {
                q: mm("attn_q.weight")?,
                k: mm("attn_k.weight")?,
                v: mm("attn_v.weight")?,
                o: mm("attn_output.weight")?,
                gate: mm("ffn_gate.weight")?,
                up: mm("ffn_up.weight")?,
                down: mm("ffn_down.weight")?,
                attn_norm,
                ffn_norm,
                q_bias,
                k_bias,
                v_bias,
            });
        }
        let rope = Rope::new(head_dim, config.rope_base, max_context, arch == Arch::Llama);
        let model = Self { config, embed, layers, norm, output, rope, max_context, device: device.clone() };
        Ok((model, content))
    }

    /// Bytes of the matrices a decode step reads (every projection once, the
    /// output included; the embedding table only for its one row).
    pub fn weight_bytes(&self) -> usize {
        let layers: usize = self.layers.iter().map(|l| [&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down].iter().map(|m| m.bytes()).sum::<usize>()).sum();
        layers + self.output.bytes()
    }

    pub fn max_context(&self) -> usize {
        self.max_context
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.config.layers, self.config.kv_heads * self.config.head_dim)
    }

    /// Runs `tokens` after what `cache` holds, appends their keys and values,
    /// and returns the logits of the last one.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>, LlmError> {
        let mut logits = self.forward_segments(&mut [(tokens, cache)])?;
        Ok(logits.pop().expect("one segment"))
    }

    /// Runs several sequences at once: each segment's tokens come after what
    /// its cache holds (one token each for a batched decode step, or a
    /// prompt chunk beside them). The projections and the feed-forward run
    /// as one matmul over all segments' rows, so each weight is read once
    /// per step however many conversations decode (decode is memory-bound);
    /// rope and attention are per segment, at its own positions. Returns the
    /// logits of each segment's last token.
    pub fn forward_segments(&self, segments: &mut [(&[u32], &mut KvCache)]) -> Result<Vec<Vec<f32>>, LlmError> {
        if segments.is_empty() || segments.iter().any(|(t, _)| t.is_empty()) {
            return Err(LlmError::Internal("forward without tokens".into()));
        }
        // (rows of the batch, position of the first) per segment
        let mut spans = Vec::with_capacity(segments.len());
        let mut ids = Vec::new();
        for (tokens, cache) in segments.iter_mut() {
            let (t, at) = (tokens.len(), cache.len());
            if at + t > self.max_context {
                return Err(LlmError::ContextFull { needed: at + t, context: self.max_context });
            }
            cache.reserve(at + t);
            spans.push((ids.len(), t, at));
            ids.extend_from_slice(tokens);
        }
        let c = &self.config;
        let (width, kv_width, rows) = (c.heads * c.head_dim, c.kv_heads * c.head_dim, ids.len());
        let ids = Tensor::new(ids.as_slice(), &self.device)?;
        let mut x = self.embed.embedding(&ids)?.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?; // rows × hidden
        let ffn = self.layers.first().map_or(0, |l| l.gate.n());
        let sizes = [c.hidden, c.hidden, width, kv_width, kv_width, width, ffn, ffn].map(|w| rows * w);
        let mut scratch = vec![0f32; sizes.iter().sum()];
        self.layers_pass(&mut x, &spans, segments, carve(&mut scratch, sizes))?;
        for (tokens, cache) in segments.iter_mut() {
            cache.tokens.extend_from_slice(tokens);
        }
        let mut last = Vec::with_capacity(spans.len() * c.hidden);
        for &(row, t, _) in &spans {
            last.extend_from_slice(&x[(row + t - 1) * c.hidden..][..c.hidden]);
        }
        let mut normed = vec![0f32; last.len()];
        ops::rms_norm(&last, &self.norm, c.rms_eps, &mut normed);
        let vocab = self.output.n();
        let mut logits = vec![0f32; spans.len() * vocab];
        self.output.forward(&normed, spans.len(), &mut logits, &self.device)?;
        Ok(logits.chunks_exact(vocab).map(<[f32]>::to_vec).collect())
    }

    /// Every layer over the rows `x` (the segments' tokens, `spans` as in
    /// `forward_segments`), appending their keys and values to the caches.
    fn layers_pass(
        &self,
        x: &mut [f32],
        spans: &[(usize, usize, usize)],
        segments: &mut [(&[u32], &mut KvCache)],
        [h, y, q, k, v, att, gate, up]: [&mut [f32]; 8],
    ) -> Result<(), LlmError> {
        let c = &self.config;
        let shape = Heads { heads: c.heads, kv_heads: c.kv_heads, dim: c.head_dim };
        let (width, kv_width, rows) = (c.heads * c.head_dim, c.kv_heads * c.head_dim, x.len() / c.hidden);
        let dev = &self.device;

        for (i, l) in self.layers.iter().enumerate() {
            ops::rms_norm(x, &l.attn_norm, c.rms_eps, h);
            for (w, b, out) in [(&l.q, &l.q_bias, &mut *q), (&l.k, &l.k_bias, &mut *k), (&l.v, &l.v_bias, &mut *v)] {
                w.forward(h, rows, out, dev)?;
                if let Some(b) = b {
                    ops::add_rows(out, b);
                }
            }
            for (s, &(row, t, at)) in spans.iter().enumerate() {
                let q = &mut q[row * width..(row + t) * width];
                let k = &mut k[row * kv_width..(row + t) * kv_width];
                self.rope.apply(q, c.heads, at);
                self.rope.apply(k, c.kv_heads, at);
                let (keys, values) = segments[s].1.store(i, at, k, &v[row * kv_width..(row + t) * kv_width]);
                ops::attention(q, at, keys, values, shape, &mut att[row * width..(row + t) * width]);
            }
            l.o.forward(att, rows, y, dev)?;
            ops::add(x, y);

            ops::rms_norm(x, &l.ffn_norm, c.rms_eps, h);
            l.gate.forward(h, rows, gate, dev)?;
            l.up.forward(h, rows, up, dev)?;
            ops::silu_mul(gate, up);
            l.down.forward(gate, rows, y, dev)?;
            ops::add(x, y);
        }
        Ok(())
    }
}

/// `buf` cut into consecutive pieces of `sizes`.
fn carve<const N: usize>(mut buf: &mut [f32], sizes: [usize; N]) -> [&mut [f32]; N] {
    sizes.map(|n| {
        let (piece, rest) = std::mem::take(&mut buf).split_at_mut(n);
        buf = rest;
        piece
    })
}

/// Models whose legacy-block weights fit in this much f32 get them dequantized at load.
const LEGACY_F32_BUDGET: usize = 1 << 30;

/// GGML's pre-K block formats. candle runs them through scalar code with
/// activations rounded to int8, which is both slow and, on a small model,
/// enough to change greedy answers: SmolLM2-135M (Q4_1 layers, Q8_0 tied
/// output) said "L'Étoile, la Marseillaise…" to "What is the capital of
/// France?" quantized and "The capital of France is Paris." in f32.
fn is_legacy(dtype: GgmlDType) -> bool {
    matches!(dtype, GgmlDType::Q4_0 | GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1 | GgmlDType::Q8_0 | GgmlDType::Q8_1)
}

/// Which kernels run the K-quant (Q4_K, Q6_K) weights on the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernels {
    /// Ours (`kquant`), on the GGUF blocks for any number of rows: the
    /// weights are in memory once.
    #[default]
    Own,
    /// candle's: its block dot products for one row, its repacked tiles
    /// (AMX or VNNI, built at first use beside the blocks) for several.
    Candle,
}

impl Kernels {
    /// `AICC_LLM_KERNELS=candle` picks candle's (to compare); anything else ours.
    pub fn from_env() -> Self {
        match std::env::var("AICC_LLM_KERNELS").as_deref() {
            Ok("candle") => Kernels::Candle,
            _ => Kernels::Own,
        }
    }
}

/// A weight for `x · wᵀ`. Legacy blocks become f32 when `dequantize_legacy`.
/// K-quant blocks stay quantized, on the CPU through `Kernels`:
/// - `Own`: repacked into 16-row panels (`panels`, in place of the blocks;
///   AVX-512 or AVX2), for every row count; when the rows are not a
///   multiple of 16, the row kernels of `kquant` on AVX-512, candle's
///   elsewhere.
/// - `Candle`: one row (decode) through candle's block dot products on the
///   compact blocks, which read half the bytes of the tiles candle repacks
///   Q4_K into (decode is memory-bound); several rows (prefill, or a batched
///   decode step) through `QMatMul`, whose repacked tiles reuse each weight
///   across rows, at the price of a second and third copy of the weights.
pub(crate) enum Linear {
    Candle { matmul: QMatMul, compact: Option<Arc<QTensor>>, n: usize },
    Panels(Panels),
    Rows(Arc<QTensor>),
}

impl Linear {
    fn new(t: Arc<QTensor>, dequantize_legacy: bool, kernels: Kernels, device: &Device) -> Result<Self, LlmError> {
        if dequantize_legacy && is_legacy(t.dtype()) {
            let n = t.shape().dims2()?.0;
            return Ok(Self::Candle { matmul: QMatMul::Tensor(t.dequantize(device)?), compact: None, n });
        }
        // (CPU only: on a GPU the blocks live on the device.)
        let k_quant = device.is_cpu() && matches!(t.dtype(), GgmlDType::Q4K | GgmlDType::Q6K);
        match kernels {
            Kernels::Own if k_quant => {
                let (n, k) = t.shape().dims2()?;
                let kind = if t.dtype() == GgmlDType::Q4K { kquant::Kind::Q4K } else { kquant::Kind::Q6K };
                match Panels::from_blocks(kind, &t.data()?, n, k) {
                    Some(panels) => Ok(Self::Panels(panels)),
                    // The row kernels are fast on AVX-512 only; elsewhere candle's are faster.
                    None if kquant::fast_path() => Ok(Self::Rows(t)),
                    None => Self::new(t, dequantize_legacy, Kernels::Candle, device),
                }
            }
            _ => {
                let compact = k_quant.then(|| t.clone());
                let n = t.shape().dims2()?.0;
                Ok(Self::Candle { matmul: QMatMul::from_arc(t)?, compact, n })
            }
        }
    }

    /// The bytes one product reads from this weight.
    fn bytes(&self) -> usize {
        match self {
            Self::Panels(p) => p.bytes(),
            Self::Rows(w) | Self::Candle { compact: Some(w), .. } => w.storage_size_in_bytes(),
            Self::Candle { matmul: QMatMul::QTensor(w), .. } => w.storage_size_in_bytes(),
            Self::Candle { matmul: QMatMul::Tensor(t), .. } => t.elem_count() * 4,
            Self::Candle { matmul: QMatMul::TensorF16(t), .. } => t.elem_count() * 2,
        }
    }

    /// The outputs per row.
    fn n(&self) -> usize {
        match self {
            Self::Panels(p) => p.n,
            Self::Rows(w) => w.shape().dims()[0],
            Self::Candle { n, .. } => *n,
        }
    }

    /// `out` = the `m` rows of `x` times the weight, transposed (`m × n`).
    /// `device` is where candle's products run.
    fn forward(&self, x: &[f32], m: usize, out: &mut [f32], device: &Device) -> candle_core::Result<()> {
        match self {
            Self::Panels(p) => p.matmul(x, m, out),
            Self::Rows(w) => own(w, x, m, out)?,
            Self::Candle { compact: Some(w), .. } if m == 1 => gemv(w, x, m, out)?,
            Self::Candle { matmul, .. } => {
                let y = matmul.forward(&Tensor::from_slice(x, (m, x.len() / m), device)?)?;
                out.copy_from_slice(&y.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?);
            }
        }
        Ok(())
    }
}

/// (m, k) · (n, k)ᵀ on our K-quant kernels.
fn own(w: &QTensor, x: &[f32], m: usize, out: &mut [f32]) -> candle_core::Result<()> {
    let (n, k) = w.shape().dims2()?;
    let kind = match w.dtype() {
        GgmlDType::Q4K => kquant::Kind::Q4K,
        GgmlDType::Q6K => kquant::Kind::Q6K,
        other => candle_core::bail!("no K-quant kernel for {other:?}"),
    };
    kquant::matmul(kind, &w.data()?, n, k, x, m, out);
    Ok(())
}

/// (m, k) · (n, k)ᵀ through candle's block dot products on the GGUF blocks
/// as they are (used for m = 1 with `Kernels::Candle`).
fn gemv(w: &QTensor, x: &[f32], m: usize, out: &mut [f32]) -> candle_core::Result<()> {
    use candle_core::quantized::k_quants::{self, BlockQ4K, BlockQ6K, GgmlType};
    fn blocks<T: GgmlType>(bytes: &[u8]) -> &[T] {
        // SAFETY: the bytes are a QTensor's storage of exactly these blocks
        // (a Vec<T> inside candle, so aligned for T).
        unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const T, bytes.len() / std::mem::size_of::<T>()) }
    }
    let (n, k) = w.shape().dims2()?;
    let data = w.data()?;
    match w.dtype() {
        GgmlDType::Q4K => k_quants::matmul((m, k, n), x, blocks::<BlockQ4K>(&data), out),
        GgmlDType::Q6K => k_quants::matmul((m, k, n), x, blocks::<BlockQ6K>(&data), out),
        other => candle_core::bail!("no compact gemv for {other:?}"),
    }
}

/// The index of the largest logit.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// candle's quantized matmul against the same weights dequantized to f32,
    /// as ‖fast − exact‖ / ‖exact‖: a few per cent (activations are rounded
    /// to int8 per block), with an outlier channel as real activations have.
    /// Seeded data, so the figure is the same every run.
    fn worst_error(dtype: GgmlDType, m: usize, k: usize, n: usize) -> f32 {
        error_of(dtype, m, k, n, |q, x| QMatMul::from_qtensor(q).unwrap().forward(x).unwrap())
    }

    fn error_of(dtype: GgmlDType, m: usize, k: usize, n: usize, product: impl Fn(QTensor, &Tensor) -> Tensor) -> f32 {
        use rand::{Rng, SeedableRng};
        let dev = Device::Cpu;
        let mut rng = rand::rngs::StdRng::seed_from_u64((m * 31 + k * 7 + n) as u64);
        let mut normal = |len: usize| -> Vec<f32> { (0..len).map(|_| rng.gen::<f32>() * 2.0 - 1.0).collect() };
        let w = Tensor::from_vec(normal(n * k), (n, k), &dev).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        let wd = q.dequantize(&dev).unwrap();
        let mut xv = normal(m * k);
        for r in 0..m {
            xv[r * k + 5] = 100.0;
        }
        let x = Tensor::from_vec(xv, (m, k), &dev).unwrap();
        let fast = product(q, &x);
        let exact = x.matmul(&wd.t().unwrap()).unwrap();
        let norm = |t: &Tensor| t.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap().sqrt();
        norm(&(fast - &exact).unwrap()) / norm(&exact)
    }

    #[test]
    fn quantized_matmuls_agree_with_f32() {
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0, GgmlDType::Q4K, GgmlDType::Q6K] {
            for (m, k, n) in [(1, 576, 192), (37, 576, 192), (1, 1536, 256), (37, 1536, 256), (1, 256, 64)] {
                if k % dtype.block_size() != 0 {
                    continue;
                }
                let e = worst_error(dtype, m, k, n);
                assert!(e < 0.06, "{dtype:?} m={m} k={k} n={n}: relative error {e}");
            }
        }
    }

    /// Our K-quant kernels on blocks that candle quantized: they read the
    /// format as candle (and ggml) write it, and round activations no worse
    /// than candle's kernels do (an outlier channel makes that error visible).
    #[test]
    fn own_kernels_read_candles_blocks() {
        for dtype in [GgmlDType::Q4K, GgmlDType::Q6K] {
            for (m, k, n) in [(1, 1536, 48), (13, 512, 32), (1, 256, 16)] {
                let product = |x: &Tensor, f: &dyn Fn(&[f32], usize, &mut [f32])| {
                    let (m, _) = x.dims2().unwrap();
                    let mut out = vec![0f32; m * n];
                    f(&x.flatten_all().unwrap().to_vec1::<f32>().unwrap(), m, &mut out);
                    Tensor::from_vec(out, (m, n), &Device::Cpu).unwrap()
                };
                let ours = error_of(dtype, m, k, n, |q, x| product(x, &|x, m, out| own(&q, x, m, out).unwrap()));
                let linear = error_of(dtype, m, k, n, |q, x| {
                    let l = Linear::new(Arc::new(q), true, Kernels::Own, &Device::Cpu).unwrap();
                    assert!(matches!(l, Linear::Panels(_)));
                    product(x, &|x, m, out| l.forward(x, m, out, &Device::Cpu).unwrap())
                });
                assert!((linear - ours).abs() < 1e-4, "{dtype:?} m={m} k={k} n={n}: panels {linear}, rows {ours}");
                let candle = worst_error(dtype, m, k, n);
                assert!(ours < 0.06 && ours <= candle * 1.25 + 0.002, "{dtype:?} m={m} k={k} n={n}: relative error {ours}, candle's {candle}");
            }
        }
    }
}
