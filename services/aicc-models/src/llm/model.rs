//! The decoder-only transformer of llama- and qwen2-architecture GGUFs, on
//! candle's quantized matmuls. Our own (rather than candle-transformers')
//! so that the key/value cache is ours: it can be cut back to a shared
//! prefix and reused by the next turn, which candle's models cannot do.
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
    attn_norm: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    // qwen2 has biases on q, k and v.
    q_bias: Option<Tensor>,
    k_bias: Option<Tensor>,
    v_bias: Option<Tensor>,
    o: Linear,
    ffn_norm: Tensor,
    gate: Linear,
    up: Linear,
    down: Linear,
}

pub struct Transformer {
    pub config: Config,
    embed: Arc<QTensor>,
    layers: Vec<Layer>,
    norm: Tensor,
    output: Linear,
    cos: Tensor,
    sin: Tensor,
    max_context: usize,
    device: Device,
}

/// The keys and values of one sequence, layer by layer, in buffers that
/// grow by doubling; `tokens` are the ids they were computed from.
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    capacity: usize,
    pub tokens: Vec<u32>,
}

impl KvCache {
    pub fn new(layers: usize) -> Self {
        Self { layers: (0..layers).map(|_| None).collect(), capacity: 0, tokens: Vec::new() }
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
    }

    /// Becomes a copy of the first `n` tokens of `other` (so that a new
    /// conversation can start from a shared system prompt without cutting
    /// back the conversation that computed it).
    pub fn copy_prefix(&mut self, other: &KvCache, n: usize) -> candle_core::Result<()> {
        let n = n.min(other.len());
        self.tokens.clear();
        self.reserve(n)?;
        for (mine, theirs) in self.layers.iter_mut().zip(&other.layers) {
            let Some((k, v)) = theirs else {
                continue;
            };
            let (heads, _, dim) = k.dims3()?;
            let slot = buffers(mine, heads, self.capacity, dim, k.device())?;
            if n > 0 {
                slot.0.slice_set(&k.narrow(1, 0, n)?.contiguous()?, 1, 0)?;
                slot.1.slice_set(&v.narrow(1, 0, n)?.contiguous()?, 1, 0)?;
            }
        }
        self.tokens.extend_from_slice(&other.tokens[..n]);
        Ok(())
    }

    fn reserve(&mut self, needed: usize) -> candle_core::Result<()> {
        if needed <= self.capacity {
            return Ok(());
        }
        let capacity = needed.next_power_of_two().max(256);
        let used = self.tokens.len();
        for layer in self.layers.iter_mut().flatten() {
            let grow = |t: &Tensor| -> candle_core::Result<Tensor> {
                let (heads, _, dim) = t.dims3()?;
                let bigger = Tensor::zeros((heads, capacity, dim), DType::F32, t.device())?;
                if used > 0 {
                    bigger.slice_set(&t.narrow(1, 0, used)?.contiguous()?, 1, 0)?;
                }
                Ok(bigger)
            };
            *layer = (grow(&layer.0)?, grow(&layer.1)?);
        }
        self.capacity = capacity;
        Ok(())
    }

    /// Writes `k`, `v` (heads, t, dim) at position `at` and returns the
    /// views of everything up to `at + t`.
    fn store(&mut self, layer: usize, at: usize, k: &Tensor, v: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let (heads, t, dim) = k.dims3()?;
        let slot = buffers(&mut self.layers[layer], heads, self.capacity, dim, k.device())?;
        slot.0.slice_set(k, 1, at)?;
        slot.1.slice_set(v, 1, at)?;
        Ok((slot.0.narrow(1, 0, at + t)?, slot.1.narrow(1, 0, at + t)?))
    }
}

/// A layer's key and value buffers, allocated at first use.
fn buffers<'a>(
    layer: &'a mut Option<(Tensor, Tensor)>,
    heads: usize,
    capacity: usize,
    dim: usize,
    device: &Device,
) -> candle_core::Result<&'a mut (Tensor, Tensor)> {
    if layer.is_none() {
        let z = || Tensor::zeros((heads, capacity, dim), DType::F32, device);
        *layer = Some((z()?, z()?));
    }
    Ok(layer.as_mut().expect("just filled"))
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
        let norm = tensor("output_norm.weight")?.dequantize(device)?;
        let output = if content.tensor_infos.contains_key("output.weight") {
            Linear::new(Arc::new(tensor("output.weight")?), dequantize_legacy, kernels, device)?
        } else {
            // Tied embeddings: the output projection is the embedding table.
            Linear::new(embed.clone(), dequantize_legacy, kernels, device)?
        };
        let mut layers = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let p = |n: &str| format!("blk.{i}.{n}");
            let mut bias = |n: &str| -> Result<Option<Tensor>, LlmError> {
                if content.tensor_infos.contains_key(&p(n)) {
                    Ok(Some(tensor(&p(n))?.dequantize(device)?))
                } else {
                    Ok(None)
                }
            };
            let (q_bias, k_bias, v_bias) = (bias("attn_q.bias")?, bias("attn_k.bias")?, bias("attn_v.bias")?);
            let mut mm = |n: &str| -> Result<Linear, LlmError> { Linear::new(Arc::new(tensor(&p(n))?), dequantize_legacy, kernels, device) };
            layers.push(Layer {
                q: mm("attn_q.weight")?,
                k: mm("attn_k.weight")?,
                v: mm("attn_v.weight")?,
                o: mm("attn_output.weight")?,
                gate: mm("ffn_gate.weight")?,
                up: mm("ffn_up.weight")?,
                down: mm("ffn_down.weight")?,
                attn_norm: tensor(&p("attn_norm.weight"))?.dequantize(device)?,
                ffn_norm: tensor(&p("ffn_norm.weight"))?.dequantize(device)?,
                q_bias,
                k_bias,
                v_bias,
            });
        }
        let (cos, sin) = rope_tables(&config, max_context, device)?;
        let model = Self { config, embed, layers, norm, output, cos, sin, max_context, device: device.clone() };
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
        KvCache::new(self.config.layers)
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
            cache.reserve(at + t)?;
            spans.push((ids.len(), t, at));
            ids.extend_from_slice(tokens);
        }
        let c = &self.config;
        let group = c.heads / c.kv_heads;
        let rows = ids.len();
        let ids = Tensor::new(ids.as_slice(), &self.device)?;
        let mut x = self.embed.embedding(&ids)?; // (rows, hidden)
        let masks = spans
            .iter()
            .map(|&(_, t, at)| (t > 1).then(|| causal_mask(t, at, group, &self.device)).transpose())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let scale = 1.0 / (c.head_dim as f64).sqrt();

        for (i, l) in self.layers.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &l.attn_norm, c.rms_eps)?;
            let project = |w: &Linear, b: &Option<Tensor>| -> candle_core::Result<Tensor> {
                let y = w.forward(&h)?;
                match b {
                    Some(b) => y.broadcast_add(b),
                    None => Ok(y),
                }
            };
            let (q_all, k_all, v_all) = (project(&l.q, &l.q_bias)?, project(&l.k, &l.k_bias)?, project(&l.v, &l.v_bias)?);
            let mut outputs = Vec::with_capacity(spans.len());
            for (s, &(row, t, at)) in spans.iter().enumerate() {
                // (t, heads·dim) → (heads, t, dim)
                let heads = |y: &Tensor, n: usize| y.narrow(0, row, t)?.reshape((t, n, c.head_dim))?.transpose(0, 1)?.contiguous();
                let (cos, sin) = (self.cos.narrow(0, at, t)?, self.sin.narrow(0, at, t)?);
                let q = self.rope(&heads(&q_all, c.heads)?, &cos, &sin)?;
                let k = self.rope(&heads(&k_all, c.kv_heads)?, &cos, &sin)?;
                let v = heads(&v_all, c.kv_heads)?;
                let (k, v) = segments[s].1.store(i, at, &k, &v)?;

                // Grouped-query attention without copying keys: the `group`
                // query heads sharing a key head become rows of one matmul.
                let q = q.reshape((c.kv_heads, group * t, c.head_dim))?;
                let mut att = (q.matmul(&k.t()?)? * scale)?; // (kv_heads, group·t, at+t)
                if let Some(mask) = &masks[s] {
                    att = att.broadcast_add(mask)?;
                }
                let att = candle_nn::ops::softmax_last_dim(&att)?;
                let y = att.matmul(&v)?; // (kv_heads, group·t, dim)
                outputs.push(y.reshape((c.heads, t, c.head_dim))?.transpose(0, 1)?.reshape((t, c.heads * c.head_dim))?);
            }
            let y = if outputs.len() == 1 { outputs.pop().expect("one") } else { Tensor::cat(&outputs, 0)? };
            x = (x + l.o.forward(&y)?)?;

            let h = candle_nn::ops::rms_norm(&x, &l.ffn_norm, c.rms_eps)?;
            let ff = (candle_nn::ops::silu(&l.gate.forward(&h)?)? * l.up.forward(&h)?)?;
            x = (x + l.down.forward(&ff)?)?;
        }
        for (tokens, cache) in segments.iter_mut() {
            cache.tokens.extend_from_slice(tokens);
        }
        debug_assert_eq!(x.dims2()?.0, rows);
        let last: Vec<u32> = spans.iter().map(|&(row, t, _)| (row + t - 1) as u32).collect();
        let last = x.index_select(&Tensor::new(last.as_slice(), &self.device)?, 0)?;
        let last = candle_nn::ops::rms_norm(&last, &self.norm, c.rms_eps)?;
        let logits = self.output.forward(&last)?.to_dtype(DType::F32)?;
        Ok(logits.to_vec2::<f32>()?)
    }

    fn rope(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
        let x4 = x.unsqueeze(0)?;
        let y = match self.config.arch {
            // llama GGUFs store q/k permuted for interleaved pairs; qwen2 rotates halves.
            Arch::Llama => candle_nn::rotary_emb::rope_i(&x4, cos, sin)?,
            Arch::Qwen2 => candle_nn::rotary_emb::rope(&x4, cos, sin)?,
        };
        y.squeeze(0)
    }
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
    Candle { matmul: QMatMul, compact: Option<Arc<QTensor>> },
    Panels(Panels),
    Rows(Arc<QTensor>),
}

impl Linear {
    fn new(t: Arc<QTensor>, dequantize_legacy: bool, kernels: Kernels, device: &Device) -> Result<Self, LlmError> {
        if dequantize_legacy && is_legacy(t.dtype()) {
            return Ok(Self::Candle { matmul: QMatMul::Tensor(t.dequantize(device)?), compact: None });
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
                Ok(Self::Candle { matmul: QMatMul::from_arc(t)?, compact })
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

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Panels(p) => {
                let m = x.dims2()?.0;
                let lhs = x.flatten_all()?.to_vec1::<f32>()?;
                let mut dst = vec![0f32; m * p.n];
                p.matmul(&lhs, m, &mut dst);
                Tensor::from_vec(dst, (m, p.n), x.device())
            }
            Self::Rows(w) => own(w, x),
            Self::Candle { compact: Some(w), .. } if x.dims2().is_ok_and(|(m, _)| m == 1) => gemv(w, x),
            Self::Candle { matmul, .. } => matmul.forward(x),
        }
    }
}

/// (m, k) · (n, k)ᵀ on our K-quant kernels.
fn own(w: &QTensor, x: &Tensor) -> candle_core::Result<Tensor> {
    let (n, k) = w.shape().dims2()?;
    let m = x.dims2()?.0;
    let kind = match w.dtype() {
        GgmlDType::Q4K => kquant::Kind::Q4K,
        GgmlDType::Q6K => kquant::Kind::Q6K,
        other => candle_core::bail!("no K-quant kernel for {other:?}"),
    };
    let lhs = x.flatten_all()?.to_vec1::<f32>()?;
    let mut dst = vec![0f32; m * n];
    kquant::matmul(kind, &w.data()?, n, k, &lhs, m, &mut dst);
    Tensor::from_vec(dst, (m, n), x.device())
}

/// (m, k) · (n, k)ᵀ through candle's block dot products on the GGUF blocks
/// as they are (used for m = 1 with `Kernels::Candle`).
fn gemv(w: &QTensor, x: &Tensor) -> candle_core::Result<Tensor> {
    use candle_core::quantized::k_quants::{self, BlockQ4K, BlockQ6K, GgmlType};
    fn blocks<T: GgmlType>(bytes: &[u8]) -> &[T] {
        // SAFETY: the bytes are a QTensor's storage of exactly these blocks
        // (a Vec<T> inside candle, so aligned for T).
        unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const T, bytes.len() / std::mem::size_of::<T>()) }
    }
    let (n, k) = w.shape().dims2()?;
    let m = x.dims2()?.0;
    let lhs = x.flatten_all()?.to_vec1::<f32>()?;
    let mut dst = vec![0f32; m * n];
    let data = w.data()?;
    match w.dtype() {
        GgmlDType::Q4K => k_quants::matmul((m, k, n), &lhs, blocks::<BlockQ4K>(&data), &mut dst)?,
        GgmlDType::Q6K => k_quants::matmul((m, k, n), &lhs, blocks::<BlockQ6K>(&data), &mut dst)?,
        other => candle_core::bail!("no compact gemv for {other:?}"),
    }
    Tensor::from_vec(dst, (m, n), x.device())
}

fn rope_tables(c: &Config, positions: usize, device: &Device) -> Result<(Tensor, Tensor), LlmError> {
    let half = c.head_dim / 2;
    let inv: Vec<f32> = (0..half).map(|i| 1.0 / c.rope_base.powf(2.0 * i as f32 / c.head_dim as f32)).collect();
    let inv = Tensor::from_vec(inv, (1, half), device)?;
    let pos = Tensor::arange(0u32, positions as u32, device)?.to_dtype(DType::F32)?.reshape((positions, 1))?;
    let freqs = pos.broadcast_mul(&inv)?;
    Ok((freqs.cos()?, freqs.sin()?))
}

/// −∞ where query row `r` (of `group` stacked copies of `t` positions after
/// `at`) would see a later key: shape (group·t, at+t).
fn causal_mask(t: usize, at: usize, group: usize, device: &Device) -> candle_core::Result<Tensor> {
    let width = at + t;
    let mut m = vec![0f32; group * t * width];
    for g in 0..group {
        for i in 0..t {
            let row = &mut m[(g * t + i) * width..][..width];
            row[at + i + 1..].fill(f32::NEG_INFINITY);
        }
    }
    Tensor::from_vec(m, (group * t, width), device)
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
                let ours = error_of(dtype, m, k, n, |q, x| own(&q, x).unwrap());
                let linear = error_of(dtype, m, k, n, |q, x| {
                    let l = Linear::new(Arc::new(q), true, Kernels::Own, &Device::Cpu).unwrap();
                    assert!(matches!(l, Linear::Panels(_)));
                    l.forward(x).unwrap()
                });
                assert!((linear - ours).abs() < 1e-4, "{dtype:?} m={m} k={k} n={n}: panels {linear}, rows {ours}");
                let candle = worst_error(dtype, m, k, n);
                assert!(ours < 0.06 && ours <= candle * 1.25 + 0.002, "{dtype:?} m={m} k={k} n={n}: relative error {ours}, candle's {candle}");
            }
        }
    }
}
