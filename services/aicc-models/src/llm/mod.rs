//! The generative model: GGUF files (llama and qwen2 architectures) run on
//! candle's quantized kernels, with the tokenizer and chat template built
//! from the file's own metadata. `local` is the `Generator` on our own
//! thread; `remote` the same trait on an OpenAI-compatible server.

pub mod engine;
pub mod gguf;
pub mod kquant;
pub mod local;
pub mod memory;
pub mod model;
pub mod ops;
pub mod panels;
pub mod remote;
pub mod sampler;
pub mod template;
pub mod text;
pub mod tokenizer;

pub use engine::{LocalModel, LocalOptions, Outcome, Sink};
pub use model::Kernels;
pub use local::{set_compute_threads, LocalGenerator, WorkerOptions};
pub use remote::{RemoteGenerator, RemoteOptions};
pub use template::ChatTemplate;
pub use tokenizer::GgufTokenizer;

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("cannot read the model file: {0}")]
    Io(String),
    #[error("not a usable GGUF: {0}")]
    Format(String),
    #[error("unsupported model: {0}")]
    Unsupported(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("the prompt needs {needed} tokens but the context window is {context}")]
    ContextFull { needed: usize, context: usize },
    #[error("inference: {0}")]
    Internal(String),
}

impl From<candle_core::Error> for LlmError {
    fn from(e: candle_core::Error) -> Self {
        LlmError::Internal(e.to_string())
    }
}

/// Where the local model runs: the first CUDA GPU when built with the
/// `cuda` feature and one is present, else the CPU.
pub fn device() -> candle_core::Device {
    #[cfg(feature = "cuda")]
    if let Ok(gpu) = candle_core::Device::new_cuda(0) {
        tracing::info!("generator on CUDA device 0");
        return gpu;
    }
    candle_core::Device::Cpu
}

/// The tokenizer and chat template of a GGUF, without its weights (reads
/// the header only).
pub fn read_tokenizer(path: &std::path::Path) -> Result<(GgufTokenizer, template::ChatTemplate), LlmError> {
    let mut f = std::io::BufReader::new(std::fs::File::open(path).map_err(|e| LlmError::Io(format!("{}: {e}", path.display())))?);
    let content = candle_core::quantized::gguf_file::Content::read(&mut f)
        .map_err(|e| LlmError::Format(format!("{}: {e}", path.display())))?;
    let meta = gguf::Meta::new(&content);
    let tokenizer = GgufTokenizer::from_meta(&meta)?;
    let template = template::ChatTemplate::detect(meta.opt_string("tokenizer.chat_template"), &tokenizer)?;
    Ok((tokenizer, template))
}
