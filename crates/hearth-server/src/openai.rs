//! OpenAI-compatible routes and their wire ↔ domain conversions.

use std::time::SystemTime;

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use hearth_api_types::openai as wire_ai;
use hearth_llm::{
    ChatRequest, Completion, CompletionRequest, FinishReason, GenerationOptions, Message,
    ModelInfo, OutputFormat, TokenLogprob, Tool, ToolCall, ToolChoice,
};

use crate::AppState;
use crate::body::OpenAiJson;
use crate::error::{ApiError, Family, OpenAiError};
use crate::generation::{Collected, Encoder, Generation, stream_body};
use crate::wire::{new_id, unix_seconds};

/// The sampling fields both OpenAI generation requests share.
struct Sampling {
    max_tokens: Option<u32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    seed: Option<i64>,
    stop: Option<wire_ai::Stop>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    n: Option<u32>,
    top_logprobs: Option<u32>,
}

/// OpenAI's `logprobs` / `top_logprobs` pair of a chat request: how many alternatives to
/// report per token, or `None` when log-probabilities are off.
fn chat_logprobs(logprobs: Option<bool>, top: Option<i64>) -> Result<Option<u32>, ApiError> {
    let top = match top {
        None => None,
        Some(n @ 0..=20) => Some(n as u32),
        Some(n) => {
            return Err(ApiError::invalid(
                "top_logprobs",
                format!("top_logprobs: must be between 0 and 20 (got {n})"),
            ));
        }
    };
    match (logprobs.unwrap_or(false), top) {
        (true, top) => Ok(Some(top.unwrap_or(0))),
        (false, None) => Ok(None),
        (false, Some(_)) => Err(ApiError::invalid(
            "top_logprobs",
            "top_logprobs: set logprobs to true to use top_logprobs",
        )),
    }
}

/// Log-probabilities in OpenAI's chat shape.
fn wire_logprobs(entries: &[TokenLogprob]) -> wire_ai::ChoiceLogprobs {
    wire_ai::ChoiceLogprobs {
        content: Some(
            entries
                .iter()
                .map(|e| wire_ai::TokenLogprob {
                    token: e.token.clone(),
                    logprob: e.logprob,
                    bytes: Some(e.bytes.clone()),
                    top_logprobs: e
                        .top
                        .iter()
                        .map(|(token, bytes, logprob)| wire_ai::TopLogprob {
                            token: token.clone(),
                            logprob: *logprob,
                            bytes: Some(bytes.clone()),
                        })
                        .collect(),
                })
                .collect(),
        ),
    }
}

/// The legacy completions' `logprobs`: how many alternatives per token (`0..=5`, OpenAI's
/// limit), or `None` when off.
fn completion_logprobs_option(n: Option<i64>) -> Result<Option<u32>, ApiError> {
    match n {
        None => Ok(None),
        Some(n @ 0..=5) => Ok(Some(n as u32)),
        Some(n) => Err(ApiError::invalid(
            "logprobs",
            format!("logprobs: must be between 0 and 5 (got {n})"),
        )),
    }
}

/// Log-probabilities in the legacy completions' shape. `before` holds the bytes of the tokens
/// already reported (earlier chunks), so offsets count from the start of the completion: a
/// token's offset is the number of characters the tokens before it complete.
fn completion_logprobs(
    entries: &[TokenLogprob],
    before: &mut Vec<u8>,
) -> wire_ai::CompletionLogprobs {
    let mut out = wire_ai::CompletionLogprobs {
        tokens: Vec::with_capacity(entries.len()),
        token_logprobs: Vec::with_capacity(entries.len()),
        top_logprobs: Vec::with_capacity(entries.len()),
        text_offset: Vec::with_capacity(entries.len()),
    };
    for e in entries {
        // An unfinished character at the end is not text yet; invalid bytes count as U+FFFD.
        let cut = match std::str::from_utf8(before) {
            Err(err) if err.error_len().is_none() => err.valid_up_to(),
            _ => before.len(),
        };
        let chars = String::from_utf8_lossy(&before[..cut]).chars().count();
        out.text_offset
            .push(u32::try_from(chars).unwrap_or(u32::MAX));
        out.tokens.push(e.token.clone());
        out.token_logprobs.push(e.logprob);
        let mut top = std::collections::BTreeMap::new();
        for (token, _, logprob) in &e.top {
            // Two tokens with the same text (partial characters): the likelier one stays.
            top.entry(token.clone()).or_insert(*logprob);
        }
        out.top_logprobs.push(top);
        before.extend_from_slice(&e.bytes);
    }
    out
}

fn options(s: Sampling) -> Result<GenerationOptions, ApiError> {
    if let Some(n) = s.n
        && n != 1
    {
        return Err(ApiError::invalid(
            "n",
            format!(
                "n: only one choice per request is supported (got {n}); send n=1 or leave it out"
            ),
        ));
    }
    // OpenAI's defaults, not the model service's (which are Ollama's): temperature 1, no
    // nucleus or top-k cut, no penalties beyond the two OpenAI names.
    Ok(GenerationOptions {
        max_tokens: s.max_tokens,
        temperature: Some(s.temperature.unwrap_or(1.0)),
        top_p: Some(s.top_p.unwrap_or(1.0)),
        top_k: Some(0),
        min_p: Some(0.0),
        repeat_penalty: Some(1.0),
        repeat_last_n: Some(64),
        seed: s.seed.map(i64::cast_unsigned),
        stop: s.stop.map(wire_ai::Stop::into_vec).unwrap_or_default(),
        presence_penalty: Some(s.presence_penalty.unwrap_or(0.0)),
        frequency_penalty: Some(s.frequency_penalty.unwrap_or(0.0)),
        top_logprobs: s.top_logprobs,
        format: None,
    })
}

fn message_text(
    index: usize,
    content: Option<wire_ai::MessageContent>,
) -> Result<String, ApiError> {
    match content {
        None => Ok(String::new()),
        Some(wire_ai::MessageContent::Text(t)) => Ok(t),
        Some(wire_ai::MessageContent::Parts(parts)) => {
            let mut text = String::new();
            for (j, part) in parts.into_iter().enumerate() {
                match (part.kind.as_str(), part.text) {
                    ("text", Some(t)) => text.push_str(&t),
                    (kind, _) => {
                        return Err(ApiError::invalid(
                            "messages",
                            format!(
                                "messages[{index}].content[{j}]: only text parts are supported, not `{kind}`"
                            ),
                        ));
                    }
                }
            }
            Ok(text)
        }
    }
}

/// `response_format`: text, any JSON object, or an instance of a JSON schema.
fn output_format(f: Option<wire_ai::ResponseFormat>) -> Result<Option<OutputFormat>, ApiError> {
    let Some(f) = f else { return Ok(None) };
    match f.kind.as_str() {
        "text" => Ok(None),
        "json_object" => Ok(Some(OutputFormat::JsonObject)),
        "json_schema" => match f.json_schema.and_then(|s| s.schema) {
            Some(schema) => Ok(Some(OutputFormat::JsonSchema(schema))),
            None => Err(ApiError::invalid(
                "response_format",
                "response_format: `json_schema` needs `json_schema.schema`",
            )),
        },
        other => Err(ApiError::invalid(
            "response_format",
            format!(
                "response_format: `{other}` is not one of `text`, `json_object`, `json_schema`"
            ),
        )),
    }
}

fn chat_request(req: wire_ai::ChatCompletionRequest) -> Result<ChatRequest, ApiError> {
    let format = output_format(req.response_format)?;
    if req.messages.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "messages: at least one message is required",
        ));
    }
    let messages = req
        .messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            Ok(Message {
                tool_calls: m
                    .tool_calls
                    .unwrap_or_default()
                    .into_iter()
                    .enumerate()
                    .map(|(j, c)| tool_call_in(i, j, c))
                    .collect::<Result<_, _>>()?,
                tool_call_id: m.tool_call_id,
                name: m.name,
                ..Message::text(m.role, message_text(i, m.content)?)
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let tools = req
        .tools
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, t)| tool_in(i, t))
        .collect::<Result<Vec<_>, _>>()?;
    let tool_choice = match req.tool_choice {
        None => ToolChoice::Auto,
        Some(c) => tool_choice_in(c)?,
    };
    let top_logprobs = chat_logprobs(req.logprobs, req.top_logprobs)?;
    let options = options(Sampling {
        max_tokens: req.max_completion_tokens.or(req.max_tokens),
        temperature: req.temperature,
        top_p: req.top_p,
        seed: req.seed,
        stop: req.stop,
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
        n: req.n,
        top_logprobs,
    })?;
    let options = GenerationOptions { format, ..options };
    Ok(ChatRequest {
        model: req.model,
        messages,
        options,
        keep_alive: None,
        user: req.user.unwrap_or_default(),
        tools,
        tool_choice,
        single_tool_call: req.parallel_tool_calls == Some(false),
    })
}

/// A call replayed in the conversation; its arguments arrive as JSON text.
fn tool_call_in(i: usize, j: usize, c: wire_ai::ToolCall) -> Result<ToolCall, ApiError> {
    let arguments = serde_json::from_str(&c.function.arguments).map_err(|e| {
        ApiError::invalid(
            "messages",
            format!("messages[{i}].tool_calls[{j}].function.arguments: not JSON ({e})"),
        )
    })?;
    Ok(ToolCall {
        id: c.id,
        name: c.function.name,
        arguments,
    })
}

fn tool_in(i: usize, t: wire_ai::Tool) -> Result<Tool, ApiError> {
    if t.kind != "function" {
        return Err(ApiError::invalid(
            "tools",
            format!(
                "tools[{i}].type: only `function` tools are supported (got `{}`)",
                t.kind
            ),
        ));
    }
    Ok(Tool {
        name: t.function.name,
        description: t.function.description,
        parameters: t
            .function
            .parameters
            .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
    })
}

fn tool_choice_in(c: wire_ai::ToolChoice) -> Result<ToolChoice, ApiError> {
    match c {
        wire_ai::ToolChoice::Mode(m) => match m.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            other => Err(ApiError::invalid(
                "tool_choice",
                format!(
                    "tool_choice: `{other}` is not one of `none`, `auto`, `required` or a named function"
                ),
            )),
        },
        wire_ai::ToolChoice::Named(n) if n.kind == "function" => {
            Ok(ToolChoice::Function(n.function.name))
        }
        wire_ai::ToolChoice::Named(n) => Err(ApiError::invalid(
            "tool_choice",
            format!("tool_choice.type: must be `function` (got `{}`)", n.kind),
        )),
    }
}

/// A call as OpenAI writes it: arguments as JSON text.
fn tool_call_out(c: &ToolCall) -> wire_ai::ToolCall {
    wire_ai::ToolCall {
        id: c.id.clone(),
        kind: "function".to_owned(),
        function: wire_ai::FunctionCall {
            name: c.name.clone(),
            arguments: c.arguments.to_string(),
        },
    }
}

fn completion_request(req: wire_ai::CompletionRequest) -> Result<CompletionRequest, ApiError> {
    let prompt = match req.prompt {
        wire_ai::Prompt::One(p) => p,
        wire_ai::Prompt::Many(mut v) if v.len() == 1 => v.remove(0),
        wire_ai::Prompt::Many(v) => {
            return Err(ApiError::invalid(
                "prompt",
                format!(
                    "prompt: only one prompt per request is supported (got {})",
                    v.len()
                ),
            ));
        }
    };
    let options = options(Sampling {
        max_tokens: req.max_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        seed: req.seed,
        stop: req.stop,
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
        n: req.n,
        top_logprobs: completion_logprobs_option(req.logprobs)?,
    })?;
    Ok(CompletionRequest {
        model: req.model,
        prompt,
        options,
        keep_alive: None,
        user: req.user.unwrap_or_default(),
    })
}

fn usage(c: &Completion) -> wire_ai::Usage {
    wire_ai::Usage {
        prompt_tokens: c.prompt_tokens,
        completion_tokens: c.completion_tokens,
        total_tokens: c.prompt_tokens.saturating_add(c.completion_tokens),
        prompt_tokens_details: (c.cached_prompt_tokens > 0).then_some(
            wire_ai::PromptTokensDetails {
                cached_tokens: c.cached_prompt_tokens,
            },
        ),
    }
}

fn finish(r: FinishReason) -> String {
    r.as_str().to_owned()
}

/// What every response of one request repeats.
#[derive(Debug, Clone)]
struct Header {
    id: String,
    created: u64,
    model: String,
    system_fingerprint: Option<String>,
}

impl Header {
    fn new(prefix: &str, model: &str, state: &AppState) -> Self {
        Header {
            id: new_id(prefix),
            created: unix_seconds(SystemTime::now()),
            model: model.to_owned(),
            system_fingerprint: state.config.system_fingerprint.clone(),
        }
    }
}

fn sse_event<T: serde::Serialize>(value: &T, out: &mut String) {
    match serde_json::to_string(value) {
        Ok(json) => {
            out.push_str("data: ");
            out.push_str(&json);
            out.push_str("\n\n");
        }
        Err(e) => tracing::error!(error = %e, "could not serialize a stream event"),
    }
}

fn sse_response(body: axum::body::Body) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn start(
    state: &AppState,
    rx: Result<hearth_llm::GenerationStream, hearth_llm::LlmError>,
    in_flight: crate::metrics::InFlight,
) -> Result<Generation, ApiError> {
    Generation::start(rx?, state.metrics.clone(), in_flight).await
}

struct ChatEncoder {
    header: Header,
    include_usage: bool,
    /// The request asked for log-probabilities: each content chunk carries its tokens'.
    logprobs: bool,
}

impl ChatEncoder {
    fn chunk(
        &self,
        choices: Vec<wire_ai::ChunkChoice>,
        usage: Option<wire_ai::Usage>,
    ) -> wire_ai::ChatCompletionChunk {
        wire_ai::ChatCompletionChunk {
            id: self.header.id.clone(),
            object: "chat.completion.chunk".to_owned(),
            created: self.header.created,
            model: self.header.model.clone(),
            system_fingerprint: self.header.system_fingerprint.clone(),
            choices,
            usage: self.include_usage.then_some(usage),
        }
    }

    fn choice(
        delta: wire_ai::Delta,
        logprobs: Option<wire_ai::ChoiceLogprobs>,
        finish_reason: Option<String>,
    ) -> Vec<wire_ai::ChunkChoice> {
        vec![wire_ai::ChunkChoice {
            index: 0,
            delta,
            logprobs,
            finish_reason,
        }]
    }
}

impl Encoder for ChatEncoder {
    fn start(&mut self, out: &mut String) {
        let delta = wire_ai::Delta {
            role: Some("assistant".to_owned()),
            content: Some(String::new()),
            tool_calls: None,
        };
        sse_event(&self.chunk(Self::choice(delta, None, None), None), out);
    }

    fn delta(&mut self, text: &str, logprobs: &[TokenLogprob], out: &mut String) {
        let delta = wire_ai::Delta {
            role: None,
            content: Some(text.to_owned()),
            tool_calls: None,
        };
        let logprobs = self.logprobs.then(|| wire_logprobs(logprobs));
        sse_event(&self.chunk(Self::choice(delta, logprobs, None), None), out);
    }

    /// Each call as OpenAI streams it: a chunk that opens it (id, type, name, empty
    /// arguments), then one with its arguments.
    fn tool_calls(&mut self, calls: &[ToolCall], out: &mut String) {
        for (index, c) in (0u32..).zip(calls) {
            let pieces = [
                wire_ai::ToolCallDelta {
                    index,
                    id: Some(c.id.clone()),
                    kind: Some("function".to_owned()),
                    function: wire_ai::FunctionCallDelta {
                        name: Some(c.name.clone()),
                        arguments: Some(String::new()),
                    },
                },
                wire_ai::ToolCallDelta {
                    index,
                    id: None,
                    kind: None,
                    function: wire_ai::FunctionCallDelta {
                        name: None,
                        arguments: Some(c.arguments.to_string()),
                    },
                },
            ];
            for piece in pieces {
                let delta = wire_ai::Delta {
                    tool_calls: Some(vec![piece]),
                    ..wire_ai::Delta::default()
                };
                sse_event(&self.chunk(Self::choice(delta, None, None), None), out);
            }
        }
    }

    fn done(&mut self, c: &Completion, out: &mut String) {
        let last = Self::choice(
            wire_ai::Delta::default(),
            None,
            Some(finish(c.finish_reason)),
        );
        sse_event(&self.chunk(last, None), out);
        if self.include_usage {
            sse_event(&self.chunk(Vec::new(), Some(usage(c))), out);
        }
        out.push_str("data: [DONE]\n\n");
    }

    fn error(&mut self, error: &ApiError, out: &mut String) {
        sse_error(error, out);
    }
}

/// A failure after streaming began: an error event and no `[DONE]`.
fn sse_error(error: &ApiError, out: &mut String) {
    out.push_str("data: ");
    out.push_str(&error.body_json(Family::OpenAi));
    out.push_str("\n\n");
}

/// `POST /v1/chat/completions`
pub async fn chat_completions(
    State(state): State<AppState>,
    OpenAiJson(req): OpenAiJson<wire_ai::ChatCompletionRequest>,
) -> Result<Response, OpenAiError> {
    let stream = req.stream.unwrap_or(false);
    let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let request = chat_request(req)?;
    let logprobs = request.options.top_logprobs.is_some();
    let header = Header::new("chatcmpl-", &request.model, &state);
    let in_flight = state.metrics.generation_started();
    let generation = start(&state, state.models.chat(request).await, in_flight).await?;
    if stream {
        let encoder = ChatEncoder {
            header,
            include_usage,
            logprobs,
        };
        return Ok(sse_response(stream_body(generation, encoder)));
    }
    let Collected {
        text,
        completion: c,
        logprobs: entries,
        tool_calls,
    } = generation.collect().await?;
    let body = wire_ai::ChatCompletion {
        id: header.id,
        object: "chat.completion".to_owned(),
        created: header.created,
        model: header.model,
        system_fingerprint: header.system_fingerprint,
        choices: vec![wire_ai::ChatChoice {
            index: 0,
            message: wire_ai::AssistantMessage {
                role: "assistant".to_owned(),
                content: (tool_calls.is_empty() || !text.is_empty()).then_some(text),
                tool_calls: (!tool_calls.is_empty())
                    .then(|| tool_calls.iter().map(tool_call_out).collect()),
            },
            logprobs: logprobs.then(|| wire_logprobs(&entries)),
            finish_reason: finish(c.finish_reason),
        }],
        usage: usage(&c),
    };
    Ok(axum::Json(body).into_response())
}

struct CompletionEncoder {
    header: Header,
    include_usage: bool,
    /// The request asked for log-probabilities.
    logprobs: bool,
    /// Bytes of the tokens reported so far (for `text_offset`).
    reported: Vec<u8>,
}

impl CompletionEncoder {
    fn chunk(
        &self,
        choices: Vec<wire_ai::CompletionChoice>,
        usage: Option<wire_ai::Usage>,
    ) -> wire_ai::Completion {
        wire_ai::Completion {
            id: self.header.id.clone(),
            object: "text_completion".to_owned(),
            created: self.header.created,
            model: self.header.model.clone(),
            system_fingerprint: self.header.system_fingerprint.clone(),
            choices,
            usage: self.include_usage.then_some(usage),
        }
    }

    fn choice(
        text: &str,
        logprobs: Option<wire_ai::CompletionLogprobs>,
        finish_reason: Option<String>,
    ) -> Vec<wire_ai::CompletionChoice> {
        vec![wire_ai::CompletionChoice {
            text: text.to_owned(),
            index: 0,
            logprobs,
            finish_reason,
        }]
    }
}

impl Encoder for CompletionEncoder {
    fn delta(&mut self, text: &str, logprobs: &[TokenLogprob], out: &mut String) {
        if text.is_empty() && logprobs.is_empty() {
            return;
        }
        let logprobs = self
            .logprobs
            .then(|| completion_logprobs(logprobs, &mut self.reported));
        sse_event(&self.chunk(Self::choice(text, logprobs, None), None), out);
    }

    fn done(&mut self, c: &Completion, out: &mut String) {
        sse_event(
            &self.chunk(Self::choice("", None, Some(finish(c.finish_reason))), None),
            out,
        );
        if self.include_usage {
            sse_event(&self.chunk(Vec::new(), Some(usage(c))), out);
        }
        out.push_str("data: [DONE]\n\n");
    }

    fn error(&mut self, error: &ApiError, out: &mut String) {
        sse_error(error, out);
    }
}

/// `POST /v1/completions`
pub async fn completions(
    State(state): State<AppState>,
    OpenAiJson(req): OpenAiJson<wire_ai::CompletionRequest>,
) -> Result<Response, OpenAiError> {
    let stream = req.stream.unwrap_or(false);
    let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let request = completion_request(req)?;
    let logprobs = request.options.top_logprobs.is_some();
    let header = Header::new("cmpl-", &request.model, &state);
    let in_flight = state.metrics.generation_started();
    let generation = start(&state, state.models.complete(request).await, in_flight).await?;
    if stream {
        let encoder = CompletionEncoder {
            header,
            include_usage,
            logprobs,
            reported: Vec::new(),
        };
        return Ok(sse_response(stream_body(generation, encoder)));
    }
    let Collected {
        text,
        completion: c,
        logprobs: entries,
        ..
    } = generation.collect().await?;
    let logprobs = logprobs.then(|| completion_logprobs(&entries, &mut Vec::new()));
    let body = wire_ai::Completion {
        id: header.id,
        object: "text_completion".to_owned(),
        created: header.created,
        model: header.model,
        system_fingerprint: header.system_fingerprint,
        choices: CompletionEncoder::choice(&text, logprobs, Some(finish(c.finish_reason))),
        usage: Some(Some(usage(&c))),
    };
    Ok(axum::Json(body).into_response())
}

fn model(info: &ModelInfo) -> wire_ai::Model {
    wire_ai::Model {
        id: info.name.clone(),
        object: "model".to_owned(),
        created: unix_seconds(info.modified_at),
        owned_by: "hearth".to_owned(),
    }
}

/// `GET /v1/models`
pub async fn list_models(State(state): State<AppState>) -> Result<Response, OpenAiError> {
    let models = state.models.list().await?;
    let body = wire_ai::ModelList {
        object: "list".to_owned(),
        data: models.iter().map(model).collect(),
    };
    Ok(axum::Json(body).into_response())
}

/// `GET /v1/models/{id}`; the id may contain `/` and `:`.
pub async fn get_model(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, OpenAiError> {
    let id = id.strip_prefix('/').unwrap_or(&id);
    let models = state.models.list().await?;
    let found = models
        .iter()
        .find(|m| m.name == id)
        .ok_or_else(|| ApiError::Llm(hearth_llm::LlmError::ModelNotFound(id.to_owned())))?;
    Ok(axum::Json(model(found)).into_response())
}
