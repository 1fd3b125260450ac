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
mod tools;
pub use local::{DEFAULT_MAX_BLOB_BYTES, LocalConfig, LocalModels};

/// One chat message as the chat template sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Message {
    pub role: String,
    pub content: String,
    /// Tools an assistant message called (its `content` may then be empty).
    pub tool_calls: Vec<ToolCall>,
    /// On a `tool` message: the id of the call this message answers.
    pub tool_call_id: Option<String>,
    /// On a `tool` message: the name of the tool that answered.
    pub name: Option<String>,
}

impl Message {
    /// A plain text message.
    pub fn text(role: impl Into<String>, content: impl Into<String>) -> Self {
        Message {
            role: role.into(),
            content: content.into(),
            ..Message::default()
        }
    }
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the arguments object (`{"type":"object"}` when the client gave none).
    pub parameters: serde_json::Value,
}

/// Whether and how the model must call tools.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model answers in text or calls tools, as it likes.
    #[default]
    Auto,
    /// The model answers in text; the tools are not shown to it.
    None,
    /// The model calls one or more tools.
    Required,
    /// The model calls this tool.
    Function(String),
}

/// A call of a tool, as the model made it (or as a client replays it in the conversation).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// `call_…`, unique within the conversation.
    pub id: String,
    pub name: String,
    /// The arguments object, valid against the tool's `parameters` schema.
    pub arguments: serde_json::Value,
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
    /// The output must be JSON of this form (OpenAI `response_format`, Ollama `format`);
    /// `None`: any text.
    pub format: Option<OutputFormat>,
    /// `(token id, bias)` added to the logits before sampling (OpenAI's `logit_bias`); an id
    /// outside the model's vocabulary is refused as bad input.
    pub logit_bias: Vec<(u32, f32)>,
    /// What to do with a prompt the context window cannot hold.
    pub truncate: Truncation,
}

/// A required output format: generation is constrained so the text always parses.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputFormat {
    /// Any JSON object (OpenAI `json_object`, Ollama `"json"`).
    JsonObject,
    /// An instance of this JSON schema (OpenAI `json_schema`, Ollama `format: {schema}`).
    /// Unsupported keywords are refused with [`LlmError::BadRequest`].
    JsonSchema(serde_json::Value),
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
    /// Functions the model may call (see [`ToolChoice`]).
    pub tools: Vec<Tool>,
    pub tool_choice: ToolChoice,
    /// At most one tool call per answer (OpenAI's `parallel_tool_calls: false`).
    pub single_tool_call: bool,
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
    /// The answer is a set of tool calls ([`StreamEvent::ToolCalls`]).
    ToolCalls,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
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
    /// The model called these tools; sent once, just before `Done` (whose finish reason is
    /// then [`FinishReason::ToolCalls`]).
    ToolCalls(Vec<ToolCall>),
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
    /// The system prompt a created model was given (Ollama's `SYSTEM`).
    pub system: Option<String>,
    /// Default options a created model was given (Ollama's `PARAMETER`), as `(name, JSON text)`.
    pub parameters: Vec<(String, String)>,
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
    /// Something named (a model to pull, a blob) does not exist; the message says what and
    /// what to do.
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("busy: {0}")]
    Busy(String),
    /// Something the service depends on (a package index, a model hub) failed; the message says
    /// what and is meant for the user.
    #[error("{0}")]
    Unavailable(String),
    /// The operation is not offered by this model service.
    #[error("{0} is not supported by this server")]
    NotSupported(&'static str),
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

/// Progress of a pull, in order: `Resolving`, any number of `Downloading`, `Verifying`,
/// `Writing`, then `Done` or, at any point, `Error` (which ends the stream).
#[derive(Debug, Clone, PartialEq)]
pub enum PullEvent {
    /// Finding what to download.
    Resolving,
    /// Bytes of the model's file; `digest` (`sha256:<hex>`) when known ahead of time.
    Downloading {
        digest: Option<String>,
        completed: u64,
        total: Option<u64>,
    },
    /// Checking the download against its digest and format.
    Verifying,
    /// Recording the model in the store.
    Writing,
    /// Installed; `digest` of what was installed.
    Done {
        digest: String,
    },
    Error(LlmError),
}

/// The receiving end of a pull. Dropping it does not cancel the pull: a pull always finishes
/// or fails whole, and the store never holds half of one.
pub type PullStream = tokio::sync::mpsc::UnboundedReceiver<PullEvent>;

/// The bytes of an upload, in order; an `Err` (the client went away, a read failed) aborts it.
pub type BlobChunks = tokio::sync::mpsc::Receiver<Result<Vec<u8>, String>>;

/// What a created model is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateSource {
    /// An uploaded GGUF blob, `sha256:<64 lowercase hex>`.
    Blob(String),
    /// An installed model (the new one shares its weights), or a path of a GGUF file on the
    /// server, which is allowed only inside the directories the server's settings list.
    From(String),
}

/// A request to create a model: weights from `source`, plus what a Modelfile adds.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateRequest {
    pub model: String,
    pub source: CreateSource,
    pub template: Option<String>,
    pub system: Option<String>,
    pub license: Option<String>,
    /// Default options by Ollama option name.
    pub parameters: serde_json::Map<String, serde_json::Value>,
}

/// What a finished create reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub name: String,
    /// `sha256:<hex>` of the weights.
    pub digest: String,
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

    /// Download `model` (unless installed), reporting progress. A bad name fails at once; later
    /// failures arrive as [`PullEvent::Error`].
    fn pull(&self, model: &str) -> BoxFuture<'_, Result<PullStream, LlmError>> {
        let _ = model;
        Box::pin(async { Err(LlmError::NotSupported("pulling models")) })
    }

    /// Remove `model` (unloading it first when loaded).
    fn delete(&self, model: &str) -> BoxFuture<'_, Result<(), LlmError>> {
        let _ = model;
        Box::pin(async { Err(LlmError::NotSupported("deleting models")) })
    }

    /// Install `source` again as `destination`, sharing its weights.
    fn copy(&self, source: &str, destination: &str) -> BoxFuture<'_, Result<(), LlmError>> {
        let _ = (source, destination);
        Box::pin(async { Err(LlmError::NotSupported("copying models")) })
    }

    /// Whether the blob `digest` (`sha256:<hex>`) is stored.
    fn has_blob(&self, digest: &str) -> BoxFuture<'_, Result<bool, LlmError>> {
        let _ = digest;
        Box::pin(async { Err(LlmError::NotSupported("blobs")) })
    }

    /// Store the upload `data` as the blob `digest`, checked against it; its size.
    fn put_blob(&self, digest: &str, data: BlobChunks) -> BoxFuture<'_, Result<u64, LlmError>> {
        let _ = (digest, data);
        Box::pin(async { Err(LlmError::NotSupported("blobs")) })
    }

    /// Create (or replace) a model.
    fn create(&self, req: CreateRequest) -> BoxFuture<'_, Result<Created, LlmError>> {
        let _ = req;
        Box::pin(async { Err(LlmError::NotSupported("creating models")) })
    }
}
