//! `RemoteGenerator`: the `Generator` on an OpenAI-compatible server (vLLM,
//! TGI, llama.cpp's llama-server) — `POST /v1/chat/completions` with
//! `stream: true`, read as server-sent events. For deployments where one box
//! is not enough. A semaphore bounds the requests in flight (more is
//! `Overloaded`, as on the local backend); dropping the stream drops the
//! connection, which is how these servers learn to stop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aicc_core::{FinishReason, GenEvent, GenRequest, GenStream, Generator, ModelError, Timings, Usage};
use async_trait::async_trait;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// Base URL, e.g. `http://10.0.0.5:8000` or `…/v1`.
    pub url: String,
    /// The `model` field of each request.
    pub model: String,
    pub api_key: Option<String>,
    /// Requests in flight at once; one more is `Overloaded`.
    pub max_concurrent: usize,
    pub connect_timeout: Duration,
}

pub struct RemoteGenerator {
    endpoint: String,
    options: RemoteOptions,
    client: reqwest::Client,
    permits: Arc<Semaphore>,
}

impl RemoteGenerator {
    pub fn new(options: RemoteOptions) -> Result<Self, ModelError> {
        let base = options.url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ModelError::Unavailable(format!("generator URL `{base}` is not http(s)")));
        }
        let endpoint =
            if base.ends_with("/v1") { format!("{base}/chat/completions") } else { format!("{base}/v1/chat/completions") };
        let client = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .build()
            .map_err(|e| ModelError::Unavailable(format!("HTTP client: {e}")))?;
        let permits = Arc::new(Semaphore::new(options.max_concurrent.max(1)));
        Ok(Self { endpoint, options, client, permits })
    }

    fn body(&self, request: &GenRequest) -> Value {
        let s = &request.sampling;
        let messages: Vec<Value> =
            request.messages.iter().map(|m| json!({"role": m.role.as_str(), "content": m.content})).collect();
        let mut body = json!({
            "model": self.options.model,
            "messages": messages,
            "stream": true,
            "stream_options": {"include_usage": true},
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_tokens": s.max_tokens,
        });
        if !s.stop.is_empty() {
            body["stop"] = json!(s.stop);
        }
        if let Some(seed) = s.seed {
            body["seed"] = json!(seed);
        }
        if s.repetition_penalty != 1.0 {
            // Not in OpenAI's API: vLLM/TGI read the first, llama-server the second.
            body["repetition_penalty"] = json!(s.repetition_penalty);
            body["repeat_penalty"] = json!(s.repetition_penalty);
        }
        body
    }
}

#[async_trait]
impl Generator for RemoteGenerator {
    fn name(&self) -> &str {
        &self.options.model
    }

    async fn generate(&self, request: GenRequest) -> Result<GenStream, ModelError> {
        request.validate()?;
        let permit = self.permits.clone().try_acquire_owned().map_err(|_| ModelError::Overloaded)?;
        let started = Instant::now();
        let mut post = self.client.post(&self.endpoint).json(&self.body(&request));
        if let Some(key) = &self.options.api_key {
            post = post.bearer_auth(key);
        }
        let response = post.send().await.map_err(|e| ModelError::Unavailable(format!("generator server: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            let text: String = text.chars().take(300).collect();
            return Err(match status.as_u16() {
                429 | 503 => ModelError::Overloaded,
                400 | 413 | 422 => ModelError::InvalidRequest(format!("generator server said {status}: {text}")),
                _ => ModelError::Failed(format!("generator server said {status}: {text}")),
            });
        }
        let state = SseState {
            bytes: Box::pin(response.bytes_stream()),
            buffer: Vec::new(),
            pending: std::collections::VecDeque::new(),
            finish: None,
            usage: Usage::default(),
            started,
            first: None,
            done: false,
            _permit: permit,
        };
        Ok(Box::pin(futures_util::stream::unfold(state, |mut st| async move {
            let item = st.next_event().await?;
            Some((item, st))
        })))
    }
}

type ByteStream = std::pin::Pin<Box<dyn futures_core::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

struct SseState {
    bytes: ByteStream,
    buffer: Vec<u8>,
    pending: std::collections::VecDeque<Result<GenEvent, ModelError>>,
    finish: Option<FinishReason>,
    usage: Usage,
    started: Instant,
    first: Option<Instant>,
    done: bool,
    _permit: OwnedSemaphorePermit,
}

impl SseState {
    async fn next_event(&mut self) -> Option<Result<GenEvent, ModelError>> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            if self.done {
                return None;
            }
            // One complete line at a time (events are `data: …` lines).
            if let Some(nl) = self.buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=nl).collect();
                let line = String::from_utf8_lossy(&line);
                self.on_line(line.trim_end_matches(['\r', '\n']));
                continue;
            }
            match self.bytes.next().await {
                Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(ModelError::Unavailable(format!("generator server: {e}"))));
                }
                None => {
                    // The server closed without `[DONE]`: end if it said why, else it broke off.
                    self.done = true;
                    return Some(match self.finish {
                        Some(_) => Ok(self.end()),
                        None => Err(ModelError::Failed("the generator server ended the stream early".into())),
                    });
                }
            }
        }
    }

    fn on_line(&mut self, line: &str) {
        let Some(data) = line.strip_prefix("data:") else { return };
        let data = data.trim();
        if data == "[DONE]" {
            self.done = true;
            let end = self.end();
            self.pending.push_back(Ok(end));
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            self.done = true;
            self.pending.push_back(Err(ModelError::Failed(format!("generator server sent `{}`", truncate(data)))));
            return;
        };
        if let Some(err) = v.get("error") {
            self.done = true;
            self.pending.push_back(Err(ModelError::Failed(format!("generator server: {}", truncate(&err.to_string())))));
            return;
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0) as u32;
            self.usage.prompt_tokens = n("prompt_tokens");
            self.usage.completion_tokens = n("completion_tokens");
            self.usage.cached_tokens =
                u.pointer("/prompt_tokens_details/cached_tokens").and_then(Value::as_u64).unwrap_or(0) as u32;
        }
        let Some(choice) = v.pointer("/choices/0") else { return };
        if let Some(text) = choice.pointer("/delta/content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
            self.first.get_or_insert_with(Instant::now);
            self.pending.push_back(Ok(GenEvent::Token { text: text.to_string() }));
        }
        match choice.get("finish_reason").and_then(Value::as_str) {
            Some("length") => self.finish = Some(FinishReason::Length),
            Some(_) => self.finish = Some(FinishReason::Stop),
            None => {}
        }
    }

    fn end(&self) -> GenEvent {
        let now = Instant::now();
        let first = self.first.unwrap_or(now);
        GenEvent::End {
            finish_reason: self.finish.unwrap_or(FinishReason::Stop),
            usage: self.usage,
            timings: Timings {
                queue_ms: 0.0,
                prefill_ms: 0.0,
                ttft_ms: (first - self.started).as_secs_f64() * 1000.0,
                decode_ms: (now - first).as_secs_f64() * 1000.0,
            },
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_body_carries_the_sampling() {
        let g = RemoteGenerator::new(RemoteOptions {
            url: "http://127.0.0.1:1/v1/".into(),
            model: "m".into(),
            api_key: None,
            max_concurrent: 1,
            connect_timeout: Duration::from_secs(1),
        })
        .unwrap();
        assert_eq!(g.endpoint, "http://127.0.0.1:1/v1/chat/completions");
        let mut r = GenRequest::new(vec![aicc_core::ChatMessage::user("hi")]);
        r.sampling.stop = vec!["\n\n".into()];
        r.sampling.seed = Some(7);
        let b = g.body(&r);
        assert_eq!(b["messages"][0]["role"], "user");
        assert_eq!(b["stream"], true);
        assert_eq!(b["stop"][0], "\n\n");
        assert_eq!(b["seed"], 7);
        assert!(b.get("repeat_penalty").is_none());
    }
}
