//! The model service: what the HTTP server asks of models, with no HTTP or wire formats in it.
//!
//! [`ModelService`] is the one seam between `hearth-server` and whatever serves a model (today
//! the embedded engine; later upstream providers behind a router). Requests name a model and carry
//! typed generation options; answers stream back as [`StreamEvent`]s over a channel. Dropping the
//! [`GenerationStream`] cancels the generation.
#![forbid(unsafe_code)]

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

mod local;
pub use local::{LocalConfig, LocalModels};

/// One chat message as the chat template sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// Sampling and stopping options. `None` means "the model's default".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerationOptions {
    /// Most tokens to generate; `None` generates until end of generation or the context is full.
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_k: Option<u32>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    /// How many recent tokens the repeat, presence and frequency penalties look at.
    pub repeat_last_n: Option<u32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub seed: Option<u64>,
    /// Generation stops before any of these strings; the stop string is not returned.
    pub stop: Vec<String>,
    /// Report each generated token's log-probability with this many most likely alternatives
    /// (`0..=20`; more are cut to 20) as [`StreamEvent::Logprobs`]. `None`: no log-probabilities.
    pub top_logprobs: Option<u32>,
    /// `(token id, bias)` added to the logits before sampling (OpenAI's `logit_bias`); an id
    /// outside the model's vocabulary is refused as bad input.
    pub logit_bias: Vec<(u32, f32)>,
    /// What to do with a prompt the context window cannot hold.
    pub truncate: Truncation,
}

/// What to do with a prompt longer than the context window (or than the window less
/// `max_tokens`, when given).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Truncation {
    /// Refuse it as bad input (the default: never silent truncation).
    #[default]
    Refuse,
    /// Keep the prompt's last `n` tokens (vLLM's `truncate_prompt_tokens`; `n` at most the
    /// context window). The result must still fit.
    KeepLastTokens(u32),
    /// Make it fit (Ollama's `truncate`): a chat drops its oldest messages other than system
    /// messages and the last message; a raw prompt keeps its last tokens that fit.
    Fit,
}

/// A chat request: the model renders `messages` through its chat template.
#[derive(Debug, Clone, Default)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    pub options: GenerationOptions,
    /// How long the model stays loaded after this request (`None`: the configured default).
    pub keep_alive: Option<Duration>,
    /// Who asks; requests are scheduled fairly across users. Empty: anonymous.
    pub user: String,
}

/// A raw completion request: `prompt` is tokenized as is (special tokens parsed), with the
/// model's BOS token added when the model asks for one. Ollama's non-raw `/api/generate` is sent
/// as a [`ChatRequest`] instead.
#[derive(Debug, Clone, Default)]
pub struct CompletionRequest {
    pub model: String,
    pub prompt: String,
    pub options: GenerationOptions,
    pub keep_alive: Option<Duration>,
    /// Who asks; requests are scheduled fairly across users. Empty: anonymous.
    pub user: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// End-of-generation token or a stop string.
    Stop,
    /// `max_tokens` reached or the context window is full.
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// Counts and timings of a finished generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub finish_reason: FinishReason,
    pub prompt_tokens: u32,
    /// Of the prompt tokens, how many were not computed but reused from the prefix cache.
    pub cached_prompt_tokens: u32,
    pub completion_tokens: u32,
    /// Time spent loading the model for this request (zero when it was already loaded).
    pub load_duration: Duration,
    pub prompt_eval_duration: Duration,
    pub eval_duration: Duration,
    pub total_duration: Duration,
}

/// A generated token's log-probability under the model's raw distribution (before temperature,
/// penalties or truncation), with the most likely alternatives, most likely first.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    /// The token's text (its bytes decoded lossily: a token may hold part of a character).
    pub token: String,
    pub bytes: Vec<u8>,
    pub logprob: f32,
    /// `(text, bytes, logprob)` of the most likely tokens.
    pub top: Vec<(String, Vec<u8>, f32)>,
}

/// What a generation stream yields: text deltas, then exactly one `Done` or `Error`.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// Log-probabilities of the tokens whose text the next `Delta` carries (or, at the end, of
    /// tokens that produced no text), only when [`GenerationOptions::top_logprobs`] asked.
    Logprobs(Vec<TokenLogprob>),
    /// New text. Never splits a UTF-8 character; may be empty when a token completes no text.
    Delta(String),
    Done(Completion),
    Error(LlmError),
}

/// The receiving end of a generation. Dropping it cancels the generation. Unbounded, so a slow
/// reader never stalls the engine thread that serves every other request (a stream holds at
/// most the request's own tokens).
pub type GenerationStream = tokio::sync::mpsc::UnboundedReceiver<StreamEvent>;

/// A model the service can serve.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// The name clients use, e.g. `smollm2:135m`.
    pub name: String,
    pub size_bytes: u64,
    /// sha256 of the model file, hex.
    pub digest: String,
    pub modified_at: SystemTime,
    /// e.g. `gguf`
    pub format: String,
    /// e.g. `llama`
    pub family: String,
    /// e.g. `135M`
    pub parameter_size: String,
    /// e.g. `Q4_1`
    pub quantization_level: String,
}

/// What `show` reports beyond [`ModelInfo`].
#[derive(Debug, Clone, PartialEq)]
pub struct ModelDetails {
    pub info: ModelInfo,
    /// What the model can do.
    pub capabilities: Vec<Capability>,
    pub context_length: u64,
    pub chat_template: Option<String>,
    /// GGUF metadata rendered as `(key, value-as-text)`, large arrays summarised.
    pub metadata: Vec<(String, String)>,
    pub license: Option<String>,
}

/// Something a model can be asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// Chat and text completion.
    Completion,
    /// Sentence embeddings.
    Embedding,
}

impl Capability {
    /// The name Ollama's `/api/show` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Completion => "completion",
            Capability::Embedding => "embedding",
        }
    }
}

/// A model loaded in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct RunningModel {
    pub info: ModelInfo,
    /// Bytes the loaded model holds in memory.
    pub size_in_memory: u64,
    /// When it will be unloaded if unused.
    pub expires_at: SystemTime,
    pub context_length: u64,
}

/// Why the model service refused or failed a request. Classified so the server can map each
/// variant to one HTTP status.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    #[error(
        "model `{0}` not found; `hearth pull {0}` fetches it, `hearth list` shows what is here"
    )]
    ModelNotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("busy: {0}")]
    Busy(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// What to embed: texts, or texts given as token ids.
#[derive(Debug, Clone, PartialEq)]
pub enum EmbedInput {
    Texts(Vec<String>),
    /// Texts as ids of tiktoken's `cl100k_base`, the encoding OpenAI's API defines token-array
    /// inputs in (LangChain's `OpenAIEmbeddings` sends them), whatever the embedding model's
    /// own tokenizer: each is decoded to text, which the model then tokenizes. The vocabulary
    /// is the catalog's `tiktoken:cl100k_base`, fetched on first need when not installed.
    Tokens(Vec<Vec<u32>>),
}

impl EmbedInput {
    pub fn len(&self) -> usize {
        match self {
            EmbedInput::Texts(t) => t.len(),
            EmbedInput::Tokens(t) => t.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A request for sentence embeddings, one vector per input.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedRequest {
    pub model: String,
    pub inputs: EmbedInput,
    /// Cut inputs longer than the model's limit (Ollama's default); `false` refuses them.
    pub truncate: bool,
    /// Keep the first `n` components and re-normalise; `1..=dim`.
    pub dimensions: Option<usize>,
    pub keep_alive: Option<Duration>,
    /// Who asks. Empty: anonymous.
    pub user: String,
}

/// Unit-length embeddings, in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    /// Tokens embedded, over all inputs (after truncation, `[CLS]` and `[SEP]` included).
    pub prompt_tokens: u32,
    /// Time spent loading the model for this request (zero when it was already loaded).
    pub load_duration: Duration,
    pub total_duration: Duration,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the server asks of models. Implemented by the embedded engine's model manager.
pub trait ModelService: Send + Sync + 'static {
    fn chat(&self, req: ChatRequest) -> BoxFuture<'_, Result<GenerationStream, LlmError>>;
    fn complete(&self, req: CompletionRequest)
    -> BoxFuture<'_, Result<GenerationStream, LlmError>>;
    fn list(&self) -> BoxFuture<'_, Result<Vec<ModelInfo>, LlmError>>;
    fn show(&self, model: &str) -> BoxFuture<'_, Result<ModelDetails, LlmError>>;
    /// Sentence embeddings from an embedding model (a chat model is refused as bad input).
    fn embed(&self, req: EmbedRequest) -> BoxFuture<'_, Result<Embeddings, LlmError>>;
    fn running(&self) -> BoxFuture<'_, Vec<RunningModel>>;
    /// Load `model` now without generating, to stay for `keep_alive` (a zero keep-alive unloads
    /// it). Returns how long loading took (zero when it was already loaded).
    fn load(
        &self,
        model: &str,
        keep_alive: Option<Duration>,
    ) -> BoxFuture<'_, Result<Duration, LlmError>>;
}
