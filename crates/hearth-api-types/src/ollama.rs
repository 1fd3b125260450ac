//! Ollama-compatible shapes: `/api/chat`, `/api/generate`, `/api/tags`, `/api/show`, `/api/ps`,
//! `/api/version`, `/api/embed`, `/api/embeddings`, errors. Field names follow Ollama's
//! `api/types.go`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: String,
    /// The calls an assistant message made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// On a `tool` message: the tool that answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
}

/// A function the model may call (the OpenAI shape).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct Tool {
    /// `function`
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    pub function: ToolFunction,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct ToolFunction {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<serde_json::Value>,
}

/// A call the model made; Ollama's arguments are an object, not JSON text.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct ToolCall {
    pub function: ToolCallFunction,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct ToolCallFunction {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    pub name: String,
    #[serde(default)]
    pub arguments: serde_json::Value,
}

/// `keep_alive`: a Go duration string (`"5m"`, `"1h30m"`, `"-1"`), or a number of seconds.
/// Negative means "keep loaded forever", zero "unload now".
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum KeepAlive {
    Seconds(f64),
    Text(String),
}

/// `options`. Fields Hearth does not use (`num_ctx`, `num_gpu`, `mirostat`, …) are accepted and
/// ignored.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct Options {
    /// Negative: no limit.
    #[serde(default)]
    pub num_predict: Option<i64>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_k: Option<i64>,
    #[serde(default)]
    pub top_p: Option<f32>,
    #[serde(default)]
    pub min_p: Option<f32>,
    #[serde(default)]
    pub repeat_penalty: Option<f32>,
    /// `-1`: the whole context.
    #[serde(default)]
    pub repeat_last_n: Option<i64>,
    #[serde(default)]
    pub presence_penalty: Option<f32>,
    #[serde(default)]
    pub frequency_penalty: Option<f32>,
    /// Negative: random.
    #[serde(default)]
    pub seed: Option<i64>,
    #[serde(default)]
    pub stop: Option<Vec<String>>,
    /// Accepted and ignored: the context size is the model's.
    #[serde(default)]
    pub num_ctx: Option<i64>,
}

/// `POST /api/chat`
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
pub struct ChatRequest {
    pub model: String,
    #[serde(default)]
    pub messages: Vec<Message>,
    /// `true` when absent.
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub keep_alive: Option<KeepAlive>,
    #[serde(default)]
    pub options: Option<Options>,
    /// `"json"` or a JSON schema asks for structured output; `""` or `null` for none.
    #[serde(default)]
    pub format: Option<serde_json::Value>,
    /// Report each output token's log-probability.
    #[serde(default)]
    pub logprobs: Option<bool>,
    /// With `logprobs: true`, also this many most likely alternatives per token (`0..=20`).
    #[serde(default)]
    pub top_logprobs: Option<i64>,
    /// Functions the model may call (it chooses whether to).
    #[serde(default)]
    pub tools: Option<Vec<Tool>>,
    /// Make a prompt longer than the context window fit by dropping the oldest messages
    /// (Ollama's behaviour). Hearth's default is `false`: such a prompt is refused.
    #[serde(default)]
    pub truncate: Option<bool>,
}

/// `POST /api/generate`
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
pub struct GenerateRequest {
    pub model: String,
    #[serde(default)]
    pub prompt: Option<String>,
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub raw: Option<bool>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub keep_alive: Option<KeepAlive>,
    #[serde(default)]
    pub options: Option<Options>,
    /// `"json"` or a JSON schema asks for structured output; `""` or `null` for none.
    #[serde(default)]
    pub format: Option<serde_json::Value>,
    /// Report each output token's log-probability.
    #[serde(default)]
    pub logprobs: Option<bool>,
    /// With `logprobs: true`, also this many most likely alternatives per token (`0..=20`).
    #[serde(default)]
    pub top_logprobs: Option<i64>,
    /// Make a prompt longer than the context window fit by dropping the oldest messages
    /// (Ollama's behaviour). Hearth's default is `false`: such a prompt is refused.
    #[serde(default)]
    pub truncate: Option<bool>,
}

/// Counts and timings of the final object of a generation; durations in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Metrics {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_duration: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_duration: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_eval_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_eval_duration: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_duration: Option<u64>,
}

/// One of the most likely tokens at a position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "OllamaTokenLogprob")]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f32,
    /// The token's UTF-8 bytes (a token may hold part of a character).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bytes: Vec<u8>,
}

/// An output token's log-probability and the most likely alternatives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Logprob {
    pub token: String,
    pub logprob: f32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bytes: Vec<u8>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_logprobs: Vec<TokenLogprob>,
}

/// One object of `/api/chat` (a streamed line, or the whole answer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatResponse {
    pub model: String,
    /// RFC 3339.
    pub created_at: String,
    pub message: Message,
    pub done: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_reason: Option<String>,
    /// The tokens of this object (absent unless the request set `logprobs: true`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logprobs: Vec<Logprob>,
    #[serde(flatten)]
    pub metrics: Metrics,
}

/// One object of `/api/generate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GenerateResponse {
    pub model: String,
    pub created_at: String,
    pub response: String,
    pub done: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_reason: Option<String>,
    /// The tokens of this object (absent unless the request set `logprobs: true`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logprobs: Vec<Logprob>,
    #[serde(flatten)]
    pub metrics: Metrics,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModelDetails {
    pub parent_model: String,
    pub format: String,
    pub family: String,
    pub families: Vec<String>,
    pub parameter_size: String,
    pub quantization_level: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ListModel {
    pub name: String,
    pub model: String,
    pub modified_at: String,
    pub size: u64,
    pub digest: String,
    pub details: ModelDetails,
}

/// `GET /api/tags`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ListResponse {
    pub models: Vec<ListModel>,
}

/// `POST /api/show`: `model`, or the deprecated `name`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
pub struct ShowRequest {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ShowResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    pub modelfile: String,
    pub parameters: String,
    pub template: String,
    /// The system prompt a created model was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    pub details: ModelDetails,
    pub model_info: serde_json::Map<String, serde_json::Value>,
    pub capabilities: Vec<String>,
    pub modified_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProcessModel {
    pub name: String,
    pub model: String,
    pub size: u64,
    pub digest: String,
    pub details: ModelDetails,
    pub expires_at: String,
    pub size_vram: u64,
    pub context_length: u64,
}

/// `GET /api/ps`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProcessResponse {
    pub models: Vec<ProcessModel>,
}

/// `GET /api/version`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VersionResponse {
    pub version: String,
}

/// `{"error":"..."}`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "OllamaErrorBody")]
pub struct ErrorBody {
    pub error: String,
}

/// `input` of `POST /api/embed`: one text or several.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum EmbedInput {
    One(String),
    Many(Vec<String>),
}

/// `POST /api/embed`
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
pub struct EmbedRequest {
    pub model: String,
    pub input: EmbedInput,
    /// `true` when absent: inputs longer than the model's limit are cut.
    #[serde(default)]
    pub truncate: Option<bool>,
    #[serde(default)]
    pub dimensions: Option<i64>,
    #[serde(default)]
    pub keep_alive: Option<KeepAlive>,
    /// Accepted and ignored.
    #[serde(default)]
    pub options: Option<serde_json::Value>,
}

/// The answer of `POST /api/embed`; durations in nanoseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EmbedResponse {
    pub model: String,
    pub embeddings: Vec<Vec<f32>>,
    pub total_duration: u64,
    pub load_duration: u64,
    pub prompt_eval_count: u32,
}

/// `POST /api/embeddings` (the older, one-text form).
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
pub struct EmbeddingsRequest {
    pub model: String,
    #[serde(default)]
    pub prompt: String,
    #[serde(default)]
    pub keep_alive: Option<KeepAlive>,
    /// Accepted and ignored.
    #[serde(default)]
    pub options: Option<serde_json::Value>,
}

/// The answer of `POST /api/embeddings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EmbeddingsResponse {
    pub embedding: Vec<f32>,
}

/// `POST /api/pull`: `model`, or the deprecated `name`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
pub struct PullRequest {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// Accepted and ignored (Hearth's sources are always fetched over TLS).
    #[serde(default)]
    pub insecure: Option<bool>,
    /// `true` when absent.
    #[serde(default)]
    pub stream: Option<bool>,
}

/// A line of the progress of `POST /api/pull` and `POST /api/create`: `status` alone
/// (`"pulling manifest"`, `"success"`, …), or with the bytes of one file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProgressResponse {
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<u64>,
}

/// `DELETE /api/delete`: `model`, or the deprecated `name`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
pub struct DeleteRequest {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// `POST /api/copy`
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
pub struct CopyRequest {
    pub source: String,
    pub destination: String,
}

/// `license` of `POST /api/create`: one text or several.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum License {
    One(String),
    Many(Vec<String>),
}

/// `POST /api/create`: a model from uploaded files (`files`: file name → blob digest) or
/// `from` another model, with what a Modelfile adds. `model`, or the deprecated `name`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
pub struct CreateRequest {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    /// File name → `sha256:<hex>` of a blob uploaded with `POST /api/blobs/:digest`.
    #[serde(default)]
    pub files: Option<std::collections::BTreeMap<String, String>>,
    /// Not supported: refused when not empty.
    #[serde(default)]
    pub adapters: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    pub license: Option<License>,
    #[serde(default)]
    pub system: Option<String>,
    /// Default options (`temperature`, `stop`, …).
    #[serde(default)]
    pub parameters: Option<serde_json::Map<String, serde_json::Value>>,
    /// Not supported: refused when not empty.
    #[serde(default)]
    pub messages: Option<Vec<Message>>,
    /// Not supported: refused when set.
    #[serde(default)]
    pub quantize: Option<String>,
    /// `true` when absent.
    #[serde(default)]
    pub stream: Option<bool>,
}
