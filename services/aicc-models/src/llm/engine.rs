//! One loaded model and its key/value caches: prompt → prefill → sample →
//! detokenise → stop, reporting each piece to a `Sink`. Runs on the model's
//! own thread (see `local`); nothing here is async.
//!
//! Prefix cache: a few `KvCache` slots, each remembering the ids it holds.
//! A new prompt takes the slot sharing its longest prefix (a conversation's
//! earlier turns, or just the common system prompt) and computes only the
//! rest; with no shared prefix it takes the least recently used slot.

use std::path::Path;
use std::time::{Duration, Instant};

use aicc_core::{ChatMessage, FinishReason, GenEvent, GenRequest, Sampling, Timings, Usage};

use super::gguf::Meta;
use super::model::{KvCache, Transformer};
use super::sampler::Sampler;
use super::template::ChatTemplate;
use super::text::{Detokenizer, Filtered, StopFilter};
use super::tokenizer::GgufTokenizer;
use super::LlmError;

/// Prompts are computed in pieces of at most this many tokens: it bounds the
/// attention scores' memory and lets a cancelled request stop between pieces.
const PREFILL_CHUNK: usize = 256;

/// Where generated events go. `send` returns false once nobody listens
/// (the stream was dropped): generation then stops.
pub trait Sink {
    fn send(&mut self, event: GenEvent) -> bool;
    fn cancelled(&self) -> bool;
}

#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub context_tokens: usize,
    pub cache_slots: usize,
}

impl Default for LocalOptions {
    fn default() -> Self {
        Self { context_tokens: 4096, cache_slots: 4 }
    }
}

pub struct LocalModel {
    pub name: String,
    model: Transformer,
    pub tokenizer: GgufTokenizer,
    template: ChatTemplate,
    slots: Vec<(KvCache, u64)>,
    clock: u64,
}

/// What a finished generation did, for benchmarks and logs.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub finish_reason: FinishReason,
    pub usage: Usage,
    pub timings: Timings,
}

impl LocalModel {
    pub fn load(name: &str, path: &Path, options: &LocalOptions) -> Result<Self, LlmError> {
        let (model, content) = Transformer::load(path, options.context_tokens, &super::device())?;
        let meta = Meta::new(&content);
        let tokenizer = GgufTokenizer::from_meta(&meta)?;
        let template = ChatTemplate::detect(meta.opt_string("tokenizer.chat_template"), &tokenizer)?;
        let slots = (0..options.cache_slots.max(1)).map(|_| (model.new_cache(), 0)).collect();
        Ok(Self { name: name.to_string(), model, tokenizer, template, slots, clock: 0 })
    }

    pub fn context_tokens(&self) -> usize {
        self.model.max_context()
    }

    /// candle's first large forward after load is slow (allocations, weight
    /// repacking); pay it at start instead of on a customer's first question.
    pub fn warm(&mut self) -> Result<(), LlmError> {
        let ids = self.tokenizer.encode(&"Hello, 안녕하세요. ".repeat(40))?;
        let n = ids.len().min(PREFILL_CHUNK).min(self.context_tokens());
        let mut cache = self.model.new_cache();
        self.model.forward(&ids[..n], &mut cache)?;
        self.model.forward(&ids[..1], &mut cache)?;
        Ok(())
    }

    pub fn prompt_ids(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, LlmError> {
        self.template.render(&self.tokenizer, messages)
    }

    /// Empties every cache slot (benchmarks measure prefill from nothing).
    pub fn clear_cache(&mut self) {
        for (cache, _) in &mut self.slots {
            cache.truncate(0);
        }
    }

    pub fn generate(&mut self, request: &GenRequest, queued: Duration, sink: &mut dyn Sink) -> Result<Outcome, LlmError> {
        let ids = self.prompt_ids(&request.messages)?;
        self.generate_ids(&ids, &request.sampling, false, queued, sink)
    }

    /// The generation loop on prompt ids. `ignore_eos` keeps decoding to
    /// `max_tokens` (benchmarks).
    pub fn generate_ids(
        &mut self,
        prompt: &[u32],
        sampling: &Sampling,
        ignore_eos: bool,
        queued: Duration,
        sink: &mut dyn Sink,
    ) -> Result<Outcome, LlmError> {
        let started = Instant::now();
        let context = self.context_tokens();
        if prompt.is_empty() {
            return Err(LlmError::Internal("empty prompt".into()));
        }
        if prompt.len() >= context {
            return Err(LlmError::ContextFull { needed: prompt.len() + 1, context });
        }
        let budget = (sampling.max_tokens as usize).min(context - prompt.len());

        let slot = self.pick_slot(prompt)?;
        let cache = &mut self.slots[slot].0;
        // At least the last prompt token is computed: its logits start the answer.
        let reuse = common_prefix(&cache.tokens, prompt).min(prompt.len() - 1);
        cache.truncate(reuse);
        let mut logits = Vec::new();
        for chunk in prompt[reuse..].chunks(PREFILL_CHUNK) {
            if sink.cancelled() {
                return Ok(cancelled(prompt.len(), reuse));
            }
            logits = self.model.forward(chunk, cache)?;
        }
        let prefill_ms = ms(started.elapsed());

        let mut sampler = Sampler::new(sampling);
        let mut detok = Detokenizer::default();
        let mut stops = StopFilter::new(&sampling.stop);
        let mut history: Vec<u32> = prompt.to_vec();
        let mut first_text: Option<Instant> = None;
        let mut first_token: Option<Instant> = None;
        let mut completion = 0u32;
        let mut finish = FinishReason::Length;
        let mut stopped_by_string = false;
        let show = |text: String, sink: &mut dyn Sink, first_text: &mut Option<Instant>| -> bool {
            if text.is_empty() {
                return true;
            }
            first_text.get_or_insert_with(Instant::now);
            sink.send(GenEvent::Token { text })
        };
        'decode: loop {
            let id = sampler.next(&mut logits, &history);
            first_token.get_or_insert_with(Instant::now);
            if !ignore_eos && self.tokenizer.is_end_of_generation(id) {
                finish = FinishReason::Stop;
                break;
            }
            completion += 1;
            history.push(id);
            if let Some(piece) = detok.push(&self.tokenizer, id)? {
                match stops.push(&piece) {
                    Filtered::Show(text) => {
                        if !show(text, sink, &mut first_text) {
                            return Ok(cancelled(prompt.len(), reuse));
                        }
                    }
                    Filtered::Stop(text) => {
                        show(text, sink, &mut first_text);
                        finish = FinishReason::Stop;
                        stopped_by_string = true;
                        break 'decode;
                    }
                }
            }
            if completion as usize >= budget {
                break;
            }
            if sink.cancelled() {
                return Ok(cancelled(prompt.len(), reuse));
            }
            logits = self.model.forward(&[id], cache)?;
        }
        if !stopped_by_string {
            // Whatever the detokenizer and the stop filter still hold.
            let tail = detok.flush(&self.tokenizer)?.unwrap_or_default();
            let tail = match stops.push(&tail) {
                Filtered::Show(t) => t + &stops.finish(),
                Filtered::Stop(t) => {
                    finish = FinishReason::Stop;
                    t
                }
            };
            show(tail, sink, &mut first_text);
        }

        let now = Instant::now();
        let first = first_text.or(first_token).unwrap_or(now);
        let outcome = Outcome {
            finish_reason: finish,
            usage: Usage { prompt_tokens: prompt.len() as u32, cached_tokens: reuse as u32, completion_tokens: completion },
            timings: Timings {
                queue_ms: ms(queued),
                prefill_ms,
                ttft_ms: ms(queued) + ms(first - started),
                decode_ms: ms(now - first_token.unwrap_or(now)),
            },
        };
        sink.send(GenEvent::End { finish_reason: outcome.finish_reason, usage: outcome.usage, timings: outcome.timings });
        Ok(outcome)
    }

    /// The slot sharing the longest prefix with `prompt`. When using it
    /// would cut back a longer history (another conversation that shares
    /// only the system prompt), the shared part is copied into the least
    /// recently used slot instead, so both conversations keep their cache.
    fn pick_slot(&mut self, prompt: &[u32]) -> Result<usize, LlmError> {
        self.clock += 1;
        let shared: Vec<usize> = self.slots.iter().map(|(c, _)| common_prefix(&c.tokens, prompt)).collect();
        let best = (0..self.slots.len()).max_by_key(|&i| (shared[i], std::cmp::Reverse(self.slots[i].1))).unwrap_or(0);
        let lru = (0..self.slots.len()).filter(|&i| i != best).min_by_key(|&i| self.slots[i].1);
        let slot = match lru {
            _ if shared[best] == 0 => (0..self.slots.len()).min_by_key(|&i| self.slots[i].1).unwrap_or(0),
            // Nothing (or just the last token) would be cut: continue in place.
            _ if shared[best] + 1 >= self.slots[best].0.len() => best,
            Some(free) => {
                let (src, dst) = if best < free {
                    let (a, b) = self.slots.split_at_mut(free);
                    (&a[best].0, &mut b[0].0)
                } else {
                    let (a, b) = self.slots.split_at_mut(best);
                    (&b[0].0, &mut a[free].0)
                };
                dst.copy_prefix(src, shared[best])?;
                free
            }
            None => best,
        };
        self.slots[slot].1 = self.clock;
        Ok(slot)
    }
}

fn cancelled(prompt: usize, reuse: usize) -> Outcome {
    Outcome {
        finish_reason: FinishReason::Stop,
        usage: Usage { prompt_tokens: prompt as u32, cached_tokens: reuse as u32, completion_tokens: 0 },
        timings: Timings::default(),
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
