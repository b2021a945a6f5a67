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
use super::model::{Kernels, KvCache, Transformer};
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
    pub kernels: Kernels,
}

impl Default for LocalOptions {
    fn default() -> Self {
        Self { context_tokens: 4096, cache_slots: 4, kernels: Kernels::from_env() }
    }
}

pub struct LocalModel {
    pub name: String,
    model: Transformer,
    pub tokenizer: GgufTokenizer,
    template: ChatTemplate,
    slots: Vec<(KvCache, u64)>,
    /// Slots a running sequence holds.
    busy: Vec<bool>,
    clock: u64,
}

/// What a finished generation did, for benchmarks and logs.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub finish_reason: FinishReason,
    pub usage: Usage,
    pub timings: Timings,
}

/// One generation in progress: its cache slot, where its prompt is, its
/// sampler and text state, and its timings. Made by `LocalModel::start`,
/// advanced by `LocalModel::step`.
pub struct Sequence<S> {
    pub sink: S,
    slot: usize,
    sampler: Sampler,
    detok: Detokenizer,
    stops: StopFilter,
    /// The prompt, then the answer's ids.
    history: Vec<u32>,
    prompt_len: usize,
    /// Prompt tokens in the cache so far (the reused prefix, then each chunk).
    computed: usize,
    reuse: usize,
    budget: usize,
    ignore_eos: bool,
    completion: u32,
    /// The last computed token's logits.
    logits: Vec<f32>,
    started: Instant,
    queued: Duration,
    prefill_ms: f64,
    first_text: Option<Instant>,
    first_token: Option<Instant>,
}

impl<S: Sink> Sequence<S> {
    /// Samples the next token and streams the text it completes: `Ok(id)`
    /// to compute it next, `Err(outcome)` when the sequence has ended (its
    /// `End` sent, unless nobody listens any more).
    fn sample(&mut self, tokenizer: &GgufTokenizer) -> Result<u32, Result<Outcome, LlmError>> {
        // The reader may have gone while the last step ran: no token for nobody.
        if self.sink.cancelled() {
            return Err(Ok(cancelled(self.prompt_len, self.reuse)));
        }
        let id = self.sampler.next(&mut self.logits, &self.history);
        self.first_token.get_or_insert_with(Instant::now);
        if !self.ignore_eos && tokenizer.is_end_of_generation(id) {
            return Err(Ok(self.finish(tokenizer, FinishReason::Stop, false)));
        }
        self.completion += 1;
        self.history.push(id);
        match self.detok.push(tokenizer, id) {
            Err(e) => return Err(Err(e)),
            Ok(None) => {}
            Ok(Some(piece)) => match self.stops.push(&piece) {
                Filtered::Show(text) => {
                    if !self.show(text) {
                        return Err(Ok(cancelled(self.prompt_len, self.reuse)));
                    }
                }
                Filtered::Stop(text) => {
                    self.show(text);
                    return Err(Ok(self.finish(tokenizer, FinishReason::Stop, true)));
                }
            },
        }
        if self.completion as usize >= self.budget {
            return Err(Ok(self.finish(tokenizer, FinishReason::Length, false)));
        }
        if self.sink.cancelled() {
            return Err(Ok(cancelled(self.prompt_len, self.reuse)));
        }
        Ok(id)
    }

    fn show(&mut self, text: String) -> bool {
        if text.is_empty() {
            return true;
        }
        self.first_text.get_or_insert_with(Instant::now);
        self.sink.send(GenEvent::Token { text })
    }

    /// Sends what the detokenizer and the stop filter still hold, then `End`.
    fn finish(&mut self, tokenizer: &GgufTokenizer, mut finish: FinishReason, stopped_by_string: bool) -> Outcome {
        if !stopped_by_string {
            let tail = self.detok.flush(tokenizer).ok().flatten().unwrap_or_default();
            let tail = match self.stops.push(&tail) {
                Filtered::Show(t) => t + &self.stops.finish(),
                Filtered::Stop(t) => {
                    finish = FinishReason::Stop;
                    t
                }
            };
            self.show(tail);
        }
        let now = Instant::now();
        let first = self.first_text.or(self.first_token).unwrap_or(now);
        let outcome = Outcome {
            finish_reason: finish,
            usage: Usage { prompt_tokens: self.prompt_len as u32, cached_tokens: self.reuse as u32, completion_tokens: self.completion },
            timings: Timings {
                queue_ms: ms(self.queued),
                prefill_ms: self.prefill_ms,
                ttft_ms: ms(self.queued) + ms(first - self.started),
                decode_ms: ms(now - self.first_token.unwrap_or(now)),
            },
        };
        self.sink.send(GenEvent::End { finish_reason: outcome.finish_reason, usage: outcome.usage, timings: outcome.timings });
        outcome
    }
}

impl<T: Sink + ?Sized> Sink for &mut T {
    fn send(&mut self, event: GenEvent) -> bool {
        (**self).send(event)
    }
    fn cancelled(&self) -> bool {
        (**self).cancelled()
    }
}

impl LocalModel {
    pub fn load(name: &str, path: &Path, options: &LocalOptions) -> Result<Self, LlmError> {
        let (model, content) = Transformer::load(path, options.context_tokens, options.kernels, &super::device())?;
        let meta = Meta::new(&content);
        let tokenizer = GgufTokenizer::from_meta(&meta)?;
        let template = ChatTemplate::detect(meta.opt_string("tokenizer.chat_template"), &tokenizer)?;
        let slots: Vec<_> = (0..options.cache_slots.max(1)).map(|_| (model.new_cache(), 0)).collect();
        let busy = vec![false; slots.len()];
        Ok(Self { name: name.to_string(), model, tokenizer, template, slots, busy, clock: 0 })
    }

    /// Bytes of weights each decode step reads (see `Transformer::weight_bytes`).
    pub fn weight_bytes(&self) -> usize {
        self.model.weight_bytes()
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

    /// One generation on prompt ids, alone, to the end. `ignore_eos` keeps
    /// decoding to `max_tokens` (benchmarks).
    pub fn generate_ids(
        &mut self,
        prompt: &[u32],
        sampling: &Sampling,
        ignore_eos: bool,
        queued: Duration,
        sink: &mut dyn Sink,
    ) -> Result<Outcome, LlmError> {
        let mut batch = vec![self.start(prompt, sampling, ignore_eos, queued, sink)?];
        loop {
            if let Some((_, result)) = self.step(&mut batch).pop() {
                return result;
            }
        }
    }

    /// Cache slots not held by a running sequence: how many more may start.
    pub fn free_slots(&self) -> usize {
        self.busy.iter().filter(|b| !**b).count()
    }

    /// Takes a free cache slot for `prompt` (reusing the longest cached
    /// prefix) and returns the sequence, to be advanced by `step` together
    /// with the others. Fails when the prompt does not fit or no slot is free.
    pub fn start<S: Sink>(
        &mut self,
        prompt: &[u32],
        sampling: &Sampling,
        ignore_eos: bool,
        queued: Duration,
        sink: S,
    ) -> Result<Sequence<S>, LlmError> {
        let context = self.context_tokens();
        if prompt.is_empty() {
            return Err(LlmError::Internal("empty prompt".into()));
        }
        if prompt.len() >= context {
            return Err(LlmError::ContextFull { needed: prompt.len() + 1, context });
        }
        let slot = self.pick_slot(prompt)?;
        self.busy[slot] = true;
        let cache = &mut self.slots[slot].0;
        // At least the last prompt token is computed: its logits start the answer.
        let reuse = common_prefix(&cache.tokens, prompt).min(prompt.len() - 1);
        cache.truncate(reuse);
        Ok(Sequence {
            sink,
            slot,
            sampler: Sampler::new(sampling),
            detok: Detokenizer::default(),
            stops: StopFilter::new(&sampling.stop),
            history: prompt.to_vec(),
            prompt_len: prompt.len(),
            computed: reuse,
            reuse,
            budget: (sampling.max_tokens as usize).min(context - prompt.len()),
            ignore_eos,
            completion: 0,
            logits: Vec::new(),
            started: Instant::now(),
            queued,
            prefill_ms: 0.0,
            first_text: None,
            first_token: None,
        })
    }

    /// Advances every sequence of `batch` by one step, all in one forward
    /// pass: a sequence still reading its prompt computes its next chunk of
    /// it, the others sample a token (streamed to their sink) and compute
    /// it. Sequences that end leave `batch` and come back with their outcome
    /// (their `End` already sent) or their error; their slots are free again.
    pub fn step<S: Sink>(&mut self, batch: &mut Vec<Sequence<S>>) -> Vec<(S, Result<Outcome, LlmError>)> {
        let mut done = Vec::new();
        let mut feeds: Vec<Vec<u32>> = Vec::with_capacity(batch.len());
        let mut i = 0;
        while i < batch.len() {
            let seq = &mut batch[i];
            let feed = if seq.computed < seq.prompt_len {
                if seq.sink.cancelled() {
                    Err(Ok(cancelled(seq.prompt_len, seq.reuse)))
                } else {
                    let end = (seq.computed + PREFILL_CHUNK).min(seq.prompt_len);
                    Ok(seq.history[seq.computed..end].to_vec())
                }
            } else {
                seq.sample(&self.tokenizer).map(|id| vec![id])
            };
            match feed {
                Ok(feed) => {
                    feeds.push(feed);
                    i += 1;
                }
                Err(result) => {
                    let seq = batch.remove(i);
                    self.busy[seq.slot] = false;
                    done.push((seq.sink, result));
                }
            }
        }
        if batch.is_empty() {
            return done;
        }
        let forward = {
            // Each sequence's own slot (distinct: `start` hands out free ones only).
            let mut caches: Vec<Option<&mut KvCache>> = self.slots.iter_mut().map(|(c, _)| Some(c)).collect();
            let mut segments: Vec<(&[u32], &mut KvCache)> =
                batch.iter().zip(&feeds).map(|(seq, f)| (f.as_slice(), caches[seq.slot].take().expect("one sequence per slot"))).collect();
            self.model.forward_segments(&mut segments)
        };
        match forward {
            Ok(logits) => {
                for ((seq, feed), logits) in batch.iter_mut().zip(&feeds).zip(logits) {
                    seq.logits = logits;
                    if seq.computed < seq.prompt_len {
                        seq.computed += feed.len();
                        if seq.computed == seq.prompt_len {
                            seq.prefill_ms = ms(seq.started.elapsed());
                        }
                    }
                }
            }
            Err(e) => {
                for seq in batch.drain(..) {
                    self.busy[seq.slot] = false;
                    done.push((seq.sink, Err(LlmError::Internal(e.to_string()))));
                }
            }
        }
        done
    }

    /// The free slot to compute `prompt` in: the one sharing the longest
    /// prefix with it. When using that would cut back a longer history
    /// (another conversation that shares only the system prompt), or the
    /// slot is running, the shared part is copied into the least recently
    /// used free slot instead, so both conversations keep their cache.
    fn pick_slot(&mut self, prompt: &[u32]) -> Result<usize, LlmError> {
        self.clock += 1;
        let shared: Vec<usize> = self.slots.iter().map(|(c, _)| common_prefix(&c.tokens, prompt)).collect();
        let best =
            (0..self.slots.len()).max_by_key(|&i| (shared[i], !self.busy[i], std::cmp::Reverse(self.slots[i].1))).unwrap_or(0);
        let lru = |except: Option<usize>| {
            (0..self.slots.len()).filter(|&i| !self.busy[i] && Some(i) != except).min_by_key(|&i| self.slots[i].1)
        };
        let in_place = !self.busy[best] && (shared[best] == 0 || shared[best] + 1 >= self.slots[best].0.len());
        let slot = match lru(Some(best)) {
            _ if shared[best] == 0 => lru(None).ok_or_else(no_free_slot)?,
            // Nothing (or just the last token) would be cut: continue in place.
            _ if in_place => best,
            Some(free) => {
                let (src, dst) = if best < free {
                    let (a, b) = self.slots.split_at_mut(free);
                    (&a[best].0, &mut b[0].0)
                } else {
                    let (a, b) = self.slots.split_at_mut(best);
                    (&b[0].0, &mut a[free].0)
                };
                dst.copy_prefix(src, shared[best]);
                free
            }
            None if !self.busy[best] => best,
            None => return Err(no_free_slot()),
        };
        self.slots[slot].1 = self.clock;
        Ok(slot)
    }
}

fn no_free_slot() -> LlmError {
    LlmError::Internal("every cache slot is running a sequence".into())
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
