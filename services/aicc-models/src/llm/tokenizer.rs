//! The tokenizer, built from the GGUF's own metadata (neither model ships a
//! `tokenizer.json`): byte-level BPE over `tokenizer.ggml.tokens` and
//! `merges`, with the pre-tokenizer `tokenizer.ggml.pre` names, and the
//! token types deciding what is special.
//!
//! Text is encoded with control tokens *not* recognised (llama.cpp's
//! `parse_special = false`): a customer who types `<|im_end|>` gets those
//! characters, not the end of their turn. The chat template puts control
//! tokens in by id.

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::tokenizer::SplitDelimiterBehavior;
use tokenizers::{AddedToken, Tokenizer};

use super::gguf::Meta;
use super::LlmError;

// llama.cpp's token types (`llama_token_type`).
const TYPE_CONTROL: u32 = 3;
const TYPE_USER_DEFINED: u32 = 4;

// The split patterns of the pre-tokenizers these models declare; the same
// expressions as the models' own tokenizer.json files.
const REGEX_QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const REGEX_LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

pub struct GgufTokenizer {
    inner: Tokenizer,
    /// Control tokens by text, longest first (for `encode_with_special`).
    control: Vec<(String, u32)>,
    tokens: Vec<String>,
    bos: Option<u32>,
    add_bos: bool,
    /// Tokens that end a turn: EOS and the end-of-turn markers the vocabulary has.
    end_of_generation: Vec<u32>,
    pub pre: String,
}

impl GgufTokenizer {
    pub fn from_meta(meta: &Meta<'_>) -> Result<Self, LlmError> {
        let kind = meta.string("tokenizer.ggml.model")?;
        if kind != "gpt2" {
            return Err(LlmError::Unsupported(format!("tokenizer model `{kind}` (only byte-level BPE, `gpt2`, is supported)")));
        }
        let tokens: Vec<String> = meta.strings("tokenizer.ggml.tokens")?.into_iter().map(str::to_string).collect();
        let types = if meta.has("tokenizer.ggml.token_type") { meta.u32s("tokenizer.ggml.token_type")? } else { vec![1; tokens.len()] };
        if types.len() != tokens.len() {
            return Err(LlmError::Format("token_type and tokens differ in length".into()));
        }
        let merges = meta
            .strings("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| LlmError::Format(format!("merge `{m}` is not two tokens")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let vocab: Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(meta.opt_bool("tokenizer.ggml.ignore_merges").unwrap_or(false))
            .build()
            .map_err(|e| LlmError::Format(format!("BPE: {e}")))?;
        let mut inner = Tokenizer::new(bpe);

        let pre = meta.opt_string("tokenizer.ggml.pre").unwrap_or("default").to_string();
        inner.with_pre_tokenizer(Some(pre_tokenizer(&pre)?));
        // No normaliser: llama.cpp (the reference the tests hold us to)
        // applies none, though Qwen's tokenizer.json has NFC. Callers that
        // may see decomposed Hangul (macOS text) normalise it first.
        inner.with_decoder(Some(ByteLevelDecoder::default()));

        let mut control = Vec::new();
        let mut added = Vec::new();
        for (id, (text, ty)) in tokens.iter().zip(&types).enumerate() {
            match *ty {
                TYPE_CONTROL => {
                    control.push((text.clone(), id as u32));
                    added.push(AddedToken::from(text.clone(), true).normalized(false));
                }
                TYPE_USER_DEFINED => added.push(AddedToken::from(text.clone(), false).normalized(false)),
                _ => {}
            }
        }
        inner.add_tokens(added.iter().filter(|t| !t.special).cloned()).map_err(|e| LlmError::Format(e.to_string()))?;
        inner.add_special_tokens(added.into_iter().filter(|t| t.special)).map_err(|e| LlmError::Format(e.to_string()))?;
        // Text is text: control tokens are only ever inserted by id.
        inner.set_encode_special_tokens(true);
        control.sort_by(|a, b| b.0.len().cmp(&a.0.len()));

        let eos = meta.opt_u32("tokenizer.ggml.eos_token_id");
        let mut end_of_generation: Vec<u32> = eos.into_iter().collect();
        end_of_generation.extend(meta.opt_u32("tokenizer.ggml.eot_token_id"));
        // As llama.cpp: Qwen's coder models may also end a turn on their
        // fill-in-the-middle / repository markers.
        for marker in
            ["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "</s>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"]
        {
            if let Some(&(_, id)) = control.iter().find(|(t, _)| t == marker) {
                end_of_generation.push(id);
            }
        }
        end_of_generation.sort_unstable();
        end_of_generation.dedup();
        if end_of_generation.is_empty() {
            return Err(LlmError::Format("the vocabulary has no end-of-sequence token".into()));
        }
        Ok(Self {
            inner,
            control,
            tokens,
            bos: meta.opt_u32("tokenizer.ggml.bos_token_id"),
            add_bos: meta.opt_bool("tokenizer.ggml.add_bos_token").unwrap_or(false),
            end_of_generation,
            pre,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// Plain text to ids; no BOS, control tokens not recognised.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, LlmError> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        let enc = self.inner.encode_fast(text, false).map_err(|e| LlmError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text in which control tokens (`<|im_start|>` …) are recognised, as
    /// llama.cpp's `parse_special = true`: the text is cut at each control
    /// token and the pieces are encoded separately.
    pub fn encode_with_special(&self, text: &str) -> Result<Vec<u32>, LlmError> {
        let mut ids = Vec::new();
        let mut rest = text;
        let mut pos = 0;
        while pos < rest.len() {
            if let Some((tok, id)) = self.control.iter().find(|(t, _)| rest[pos..].starts_with(t.as_str())) {
                ids.extend(self.encode(&rest[..pos])?);
                ids.push(*id);
                rest = &rest[pos + tok.len()..];
                pos = 0;
            } else {
                pos += rest[pos..].chars().next().map_or(1, char::len_utf8);
            }
        }
        ids.extend(self.encode(rest)?);
        Ok(ids)
    }

    /// Ids to text, control tokens left out. Bytes that do not yet form a
    /// whole character come out as U+FFFD (the streaming decoder waits for them).
    pub fn decode(&self, ids: &[u32]) -> Result<String, LlmError> {
        self.inner.decode(ids, true).map_err(|e| LlmError::Tokenizer(e.to_string()))
    }

    /// The id of a control token, e.g. `<|im_start|>`.
    pub fn control_id(&self, text: &str) -> Option<u32> {
        self.control.iter().find(|(t, _)| t == text).map(|&(_, id)| id)
    }

    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// BOS, when the model wants one in front of every prompt.
    pub fn bos_prefix(&self) -> Option<u32> {
        if self.add_bos {
            self.bos
        } else {
            None
        }
    }

    pub fn is_end_of_generation(&self, id: u32) -> bool {
        self.end_of_generation.binary_search(&id).is_ok()
    }
}

fn pre_tokenizer(pre: &str) -> Result<PreTokenizerWrapper, LlmError> {
    let split = |regex: &str| -> Result<PreTokenizerWrapper, LlmError> {
        let split = Split::new(SplitPattern::Regex(regex.into()), SplitDelimiterBehavior::Isolated, false)
            .map_err(|e| LlmError::Format(e.to_string()))?;
        Ok(Sequence::new(vec![split.into(), ByteLevel::new(false, false, false).into()]).into())
    };
    match pre {
        "qwen2" => split(REGEX_QWEN2),
        "llama3" | "llama-bpe" | "smaug-bpe" => split(REGEX_LLAMA3),
        // Each digit alone, then GPT-2's split (SmolLM, StarCoder).
        "smollm" | "starcoder" | "codeshell" => {
            Ok(Sequence::new(vec![Digits::new(true).into(), ByteLevel::new(false, true, true).into()]).into())
        }
        "gpt2" | "default" => Ok(ByteLevel::new(false, true, true).into()),
        other => Err(LlmError::Unsupported(format!("pre-tokenizer `{other}`"))),
    }
}
