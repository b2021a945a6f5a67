//! `LocalGenerator`: the `Generator` on a model of our own, run by one
//! dedicated OS thread (with its own compute pool) behind a bounded queue.
//! A full queue answers `Overloaded` at once, and so does a request that
//! waited longer than `max_queue_wait` for its turn; the async executor never
//! runs inference. Events go back over a channel sized for the whole answer,
//! so the model thread never waits on a slow reader; a dropped stream is
//! seen before the next token and ends the work.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aicc_core::{GenEvent, GenRequest, GenStream, Generator, ModelError};
use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use super::engine::{LocalModel, Sink};
use super::LlmError;

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Compute threads for the model (0 = every core). candle's kernels run
    /// on candle's own pool, sized once per process: see `set_compute_threads`.
    pub threads: usize,
    /// Requests that may wait while one runs.
    pub queue: usize,
    pub max_queue_wait: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self { threads: 0, queue: 8, max_queue_wait: Duration::from_secs(30) }
    }
}

struct Job {
    request: GenRequest,
    events: mpsc::Sender<Result<GenEvent, ModelError>>,
    enqueued: Instant,
}

pub struct LocalGenerator {
    name: String,
    context_tokens: usize,
    jobs: SyncSender<Job>,
    /// Tokens sampled since start (tests watch it stop after a cancel).
    tokens: Arc<AtomicU64>,
}

struct ChannelSink {
    events: mpsc::Sender<Result<GenEvent, ModelError>>,
    tokens: Arc<AtomicU64>,
}

impl Sink for ChannelSink {
    fn send(&mut self, event: GenEvent) -> bool {
        if matches!(event, GenEvent::Token { .. }) {
            self.tokens.fetch_add(1, Ordering::Relaxed);
        }
        // Never blocks: the channel has room for every event of the answer.
        self.events.try_send(Ok(event)).is_ok()
    }

    fn cancelled(&self) -> bool {
        self.events.is_closed()
    }
}

/// Sizes candle's kernel thread pool (`CANDLE_NUM_THREADS`, read once at its
/// first use); call before the first model runs. 0 leaves the default
/// (every core) or what the environment already says.
pub fn set_compute_threads(threads: usize) {
    if threads > 0 && std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
    }
}

impl LocalGenerator {
    /// Moves `model` onto its own thread and returns once it is warm there
    /// (seconds for the default model: call it off the async executor).
    pub fn spawn(mut model: LocalModel, options: WorkerOptions) -> Result<Self, ModelError> {
        set_compute_threads(options.threads);
        let name = model.name.clone();
        let context_tokens = model.context_tokens();
        let (jobs, rx) = sync_channel::<Job>(options.queue);
        let tokens = Arc::new(AtomicU64::new(0));
        let counter = tokens.clone();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(options.threads)
            .thread_name(|i| format!("generate-{i}"))
            .build()
            .map_err(|e| ModelError::Unavailable(format!("cannot start the model's threads: {e}")))?;
        let max_wait = options.max_queue_wait;
        let (warm_tx, warm_rx) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name(format!("generator-{name}"))
            .spawn(move || {
                pool.install(|| {
                    if let Err(e) = model.warm() {
                        tracing::warn!(error = %e, "generator warm-up failed");
                    }
                    drop(warm_tx);
                    serve(&mut model, rx, max_wait, &counter);
                })
            })
            .map_err(|e| ModelError::Unavailable(format!("cannot start the model thread: {e}")))?;
        // Disconnects when the warm-up is over (or the thread died).
        let _ = warm_rx.recv();
        Ok(Self { name, context_tokens, jobs, tokens })
    }

    pub fn context_tokens(&self) -> usize {
        self.context_tokens
    }

    /// Tokens streamed since start.
    pub fn tokens_streamed(&self) -> u64 {
        self.tokens.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl Generator for LocalGenerator {
    fn name(&self) -> &str {
        &self.name
    }

    async fn generate(&self, request: GenRequest) -> Result<GenStream, ModelError> {
        request.validate()?;
        // Room for every token, the end, and an error: the model thread never waits.
        let capacity = (request.sampling.max_tokens as usize).min(self.context_tokens) + 2;
        let (events, rx) = mpsc::channel(capacity);
        match self.jobs.try_send(Job { request, events, enqueued: Instant::now() }) {
            Ok(()) => Ok(Box::pin(ReceiverStream::new(rx))),
            Err(TrySendError::Full(_)) => Err(ModelError::Overloaded),
            Err(TrySendError::Disconnected(_)) => Err(ModelError::Unavailable("the model thread stopped".into())),
        }
    }

    /// One token of the request, thrown away: its prompt stays in a cache slot.
    async fn prepare(&self, mut request: GenRequest) -> Result<(), ModelError> {
        request.sampling.max_tokens = 1;
        let mut stream = self.generate(request).await?;
        while let Some(event) = stream.next().await {
            if let GenEvent::End { .. } = event? {
                return Ok(());
            }
        }
        Err(ModelError::Unavailable("the model thread stopped".into()))
    }
}

/// The model thread's loop: up to one sequence per free cache slot runs at
/// a time, all of them advanced together one token per step (continuous
/// batching: a request that arrives while others decode joins at the next
/// step, and a finished one leaves). Ends when every sender is gone (the
/// generator was dropped) and nothing runs.
fn serve(model: &mut LocalModel, rx: Receiver<Job>, max_wait: Duration, tokens: &Arc<AtomicU64>) {
    let mut running = Vec::new();
    let mut open = true;
    loop {
        while open && model.free_slots() > 0 {
            let job = if running.is_empty() {
                match rx.recv() {
                    Ok(job) => job,
                    Err(_) => return,
                }
            } else {
                match rx.try_recv() {
                    Ok(job) => job,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            };
            let queued = job.enqueued.elapsed();
            if job.events.is_closed() {
                continue;
            }
            if queued > max_wait {
                let _ = job.events.try_send(Err(ModelError::Overloaded));
                continue;
            }
            let sink = ChannelSink { events: job.events.clone(), tokens: tokens.clone() };
            let started = model
                .prompt_ids(&job.request.messages)
                .and_then(|ids| model.start(&ids, &job.request.sampling, false, queued, sink));
            match started {
                Ok(sequence) => running.push(sequence),
                Err(e) => {
                    let _ = job.events.try_send(Err(e.into()));
                }
            }
        }
        if running.is_empty() {
            if open {
                continue;
            }
            return;
        }
        for (sink, result) in model.step(&mut running) {
            if let Err(e) = result {
                let _ = sink.events.try_send(Err(e.into()));
            }
        }
    }
}

impl From<LlmError> for ModelError {
    fn from(e: LlmError) -> Self {
        match e {
            LlmError::ContextFull { .. } => ModelError::InvalidRequest(e.to_string()),
            other => ModelError::Failed(other.to_string()),
        }
    }
}
