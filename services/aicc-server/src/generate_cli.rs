//! The generator for the server and the command line: the configured
//! backend (a local GGUF pulled into the model dir, or a remote server),
//! `aicc generate` (one streamed answer) and `aicc bench generate`.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aicc_core::settings::{GeneratorBackend, GeneratorSettings, Settings};
use aicc_core::{ChatMessage, GenEvent, GenRequest, Generator, Sampling};
use aicc_models::llm::{LocalGenerator, LocalModel, LocalOptions, Outcome, RemoteGenerator, RemoteOptions, Sink, WorkerOptions};
use anyhow::Context;
use futures_util::StreamExt;
use serde_json::{json, Value};

/// The configured generator, ready to take requests (a local model is
/// loaded and warmed first).
pub async fn load(settings: &Settings) -> anyhow::Result<Option<Arc<dyn Generator>>> {
    let g = &settings.generator;
    match g.backend {
        GeneratorBackend::None => Ok(None),
        GeneratorBackend::Remote => {
            let url = g.remote_url.clone().context("generator.backend = remote needs generator.remote_url (AICC_GENERATOR_URL)")?;
            let remote = RemoteGenerator::new(RemoteOptions {
                url,
                model: g.remote_model.clone(),
                api_key: g.remote_api_key.clone(),
                max_concurrent: g.queue.max(1),
                connect_timeout: Duration::from_secs(5),
            })?;
            Ok(Some(Arc::new(remote)))
        }
        GeneratorBackend::Local => {
            let model = load_local(&settings.model_dir, g).await?;
            let options =
                WorkerOptions { threads: g.threads, queue: g.queue, max_queue_wait: Duration::from_millis(g.max_queue_wait_ms) };
            let worker = tokio::task::spawn_blocking(move || LocalGenerator::spawn(model, options)).await??;
            Ok(Some(Arc::new(worker)))
        }
    }
}

/// Pulls the model if missing (with the progress bar) and loads it.
async fn load_local(model_dir: &std::path::Path, g: &GeneratorSettings) -> anyhow::Result<LocalModel> {
    let (name, model_dir) = (g.model.clone(), model_dir.to_path_buf());
    let options = LocalOptions { context_tokens: g.context_tokens, cache_slots: g.cache_slots, ..LocalOptions::default() };
    tokio::task::spawn_blocking(move || {
        let path = crate::models::pulled_file(&name, "generator", &model_dir)?;
        let t = Instant::now();
        let model = LocalModel::load(&name, &path, &options)?;
        tracing::info!(model = %name, ms = t.elapsed().as_millis() as u64, "generator loaded");
        Ok(model)
    })
    .await?
}

#[derive(clap::Args, Debug, Clone)]
pub struct GenerateArgs {
    /// What to ask.
    pub prompt: Vec<String>,
    /// A system message.
    #[arg(long)]
    pub system: Option<String>,
    #[arg(long, default_value_t = 256)]
    pub max_tokens: u32,
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long)]
    pub seed: Option<u64>,
}

/// `aicc generate`: one answer streamed to stdout as it is produced; the
/// usage and timings as JSON on stderr.
pub async fn generate(args: GenerateArgs, settings: &Settings) -> anyhow::Result<()> {
    let generator = load(settings).await?.context("the generator is off (generator.backend = none)")?;
    let mut messages = Vec::new();
    if let Some(system) = args.system {
        messages.push(ChatMessage::system(system));
    }
    messages.push(ChatMessage::user(args.prompt.join(" ")));
    let sampling = Sampling { max_tokens: args.max_tokens, temperature: args.temperature, seed: args.seed, ..Sampling::default() };
    let mut stream = generator.generate(GenRequest { messages, sampling }).await?;
    let mut out = std::io::stdout().lock();
    while let Some(event) = stream.next().await {
        match event? {
            GenEvent::Token { text } => {
                out.write_all(text.as_bytes())?;
                out.flush()?;
            }
            GenEvent::End { finish_reason, usage, timings } => {
                writeln!(out)?;
                eprintln!("{}", json!({ "model": generator.name(), "finish_reason": finish_reason, "usage": usage, "timings": timings }));
            }
        }
    }
    Ok(())
}

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Prompt length, in tokens.
    #[arg(long, default_value_t = 400)]
    pub prompt_tokens: usize,
    /// Tokens decoded after the prompt (end-of-sequence is ignored).
    #[arg(long, default_value_t = 128)]
    pub max_tokens: u32,
    /// The model (manifest name; default: the configured generator).
    #[arg(long)]
    pub model: Option<String>,
    /// Compute threads (default: the configured number; 0 = every core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Measured runs after one warm-up run; the figures are their medians.
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Conversations generating at once, decoded as one batch (each its own
    /// prompt of `--prompt-tokens`); adds the aggregate decode rate.
    #[arg(long, default_value_t = 1)]
    pub streams: usize,
    /// Tokens of the prompt already in the cache before each run (a shared
    /// system prefix): only the rest is prefilled.
    #[arg(long, default_value_t = 0)]
    pub cached_prefix: usize,
}

/// Collects nothing: the benchmark reads the outcome's timings.
struct Discard;

impl Sink for Discard {
    fn send(&mut self, _: GenEvent) -> bool {
        true
    }
    fn cancelled(&self) -> bool {
        false
    }
}

/// `aicc bench generate`: prefill and decode speed of the local backend,
/// greedy, from an empty cache each run (CONTRACT.md's JSON, plus detail).
pub async fn bench(args: BenchArgs, settings: &Settings) -> anyhow::Result<Value> {
    let mut g = settings.generator.clone();
    if let Some(m) = &args.model {
        g.model = m.clone();
    }
    let threads = args.threads.unwrap_or(g.threads);
    aicc_models::llm::set_compute_threads(threads);
    g.context_tokens = g.context_tokens.max(args.prompt_tokens + args.max_tokens as usize + 8);
    let streams = args.streams.max(1);
    g.cache_slots = streams;
    if args.cached_prefix >= args.prompt_tokens {
        anyhow::bail!("--cached-prefix must be shorter than --prompt-tokens");
    }
    let mut model = load_local(&settings.model_dir, &g).await?;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    let threads = pool.current_num_threads();
    // candle's own pool (the kernels) reads this once; report what it got.
    let threads = std::env::var("CANDLE_NUM_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(threads);
    let (prompt_tokens, max_tokens, reps, prefix) = (args.prompt_tokens, args.max_tokens, args.reps.max(1), args.cached_prefix);
    let name = g.model.clone();
    tokio::task::spawn_blocking(move || {
        pool.install(|| -> anyhow::Result<Value> {
            // Different prompts (each starts further into the text), so no
            // stream reuses another's cache beyond the shared prefix.
            let prompts =
                (0..streams).map(|i| bench_prompt(&model, prompt_tokens, if i == 0 { 0 } else { prefix.max(1) + 37 * i }, prefix)).collect::<anyhow::Result<Vec<_>>>()?;
            let sampling = Sampling { max_tokens, ..Sampling::default() };
            let mut runs: Vec<Vec<Outcome>> = Vec::new();
            for rep in 0..=reps {
                model.clear_cache();
                if prefix > 0 {
                    let one = Sampling { max_tokens: 1, ..Sampling::default() };
                    model.generate_ids(&prompts[0][..prefix], &one, true, Duration::ZERO, &mut Discard)?;
                }
                let mut batch = Vec::with_capacity(streams);
                for p in &prompts {
                    batch.push(model.start(p, &sampling, true, Duration::ZERO, Discard)?);
                }
                let mut outcomes = Vec::with_capacity(streams);
                while !batch.is_empty() {
                    for (_, result) in model.step(&mut batch) {
                        outcomes.push(result?);
                    }
                }
                let o = &outcomes[0];
                eprintln!(
                    "{} run {rep}: prefill {:.0} ms, ttft {:.0} ms, decode {} tokens in {:.0} ms ({} cached, {streams} streams)",
                    if rep == 0 { "warm-up" } else { "measured" },
                    o.timings.prefill_ms,
                    o.timings.ttft_ms,
                    o.usage.completion_tokens,
                    o.timings.decode_ms,
                    o.usage.cached_tokens,
                );
                if rep > 0 {
                    runs.push(outcomes);
                }
            }
            let median = |mut v: Vec<f64>| {
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            // The first answer token comes out of the prefill; the rest are decode steps.
            let decode_rate = |o: &Outcome| (o.usage.completion_tokens.saturating_sub(1)) as f64 / (o.timings.decode_ms / 1000.0);
            let first = |run: &Vec<Outcome>| run[0];
            // Every stream's prompt is prefilled in the same steps: all of them over the time of the last.
            let prefill = median(
                runs.iter()
                    .map(|r| {
                        let ms = r.iter().map(|o| o.timings.prefill_ms).fold(0.0, f64::max);
                        (streams * (prompt_tokens - prefix)) as f64 / (ms / 1000.0)
                    })
                    .collect(),
            );
            let decode = median(runs.iter().map(|r| decode_rate(&first(r))).collect());
            let ttft = median(runs.iter().map(|r| first(r).timings.ttft_ms).collect());
            let mut out = json!({
                "model": name,
                "threads": threads,
                "prompt_tokens": prompt_tokens,
                "max_tokens": max_tokens,
                "prefill_tokens_per_s": round1(prefill),
                "decode_tokens_per_s": round1(decode),
                "ttft_ms": ttft.round(),
                "peak_rss_bytes": peak_rss_bytes(),
                "reps": reps,
            });
            // Decode reads every weight once a step: against the machine's read
            // bandwidth (measured now, after the peak memory was read), how
            // close decode is to the limit.
            let weight_bytes = model.weight_bytes();
            let bandwidth = aicc_models::llm::memory::read_bandwidth(512 << 20, 3);
            out["weight_bytes"] = json!(weight_bytes);
            out["decode_weight_gb_s"] = json!(round1(decode * weight_bytes as f64 / 1e9));
            out["memory_read_gb_s"] = json!(round1(bandwidth / 1e9));
            if prefix > 0 {
                out["cached_prefix_tokens"] = json!(prefix);
            }
            if streams > 1 {
                // The streams decode over the same steps: their rates add up.
                out["streams"] = json!(streams);
                out["aggregate_decode_tokens_per_s"] = json!(round1(median(runs.iter().map(|r| r.iter().map(decode_rate).sum()).collect())));
                out["decode_tokens_per_s_slowest_stream"] =
                    json!(round1(median(runs.iter().map(|r| r.iter().map(decode_rate).fold(f64::INFINITY, f64::min)).collect())));
            }
            Ok(out)
        })
    })
    .await?
}

/// Exactly `n` prompt tokens of ordinary bilingual FAQ text: the first
/// `keep` of the text's start, then the text from token `skip` on.
fn bench_prompt(model: &LocalModel, n: usize, skip: usize, keep: usize) -> anyhow::Result<Vec<u32>> {
    let faq = include_str!("../../../demo/faq.csv");
    let mut ids = Vec::with_capacity(n + skip);
    while ids.len() < n + skip {
        ids.extend(model.tokenizer.encode(faq)?);
    }
    let mut prompt = ids[..keep].to_vec();
    prompt.extend_from_slice(&ids[keep.max(skip)..]);
    prompt.truncate(n);
    Ok(prompt)
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The process's peak resident memory (Linux `VmHWM`).
fn peak_rss_bytes() -> Option<u64> {
    Some(crate::bench::status_kb(std::process::id(), "VmHWM:")? * 1024)
}
