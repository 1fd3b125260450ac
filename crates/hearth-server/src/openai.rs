//! OpenAI-compatible routes and their wire ↔ domain conversions.

use std::time::SystemTime;

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use hearth_api_types::openai as wire_ai;
use hearth_llm::{
    ChatRequest, Completion, CompletionRequest, FinishReason, GenerationOptions, Message,
    ModelInfo, OutputFormat, TokenLogprob, Tool, ToolCall, ToolChoice, Truncation,
};

use crate::AppState;
use crate::body::OpenAiJson;
use crate::error::{ApiError, Family, OpenAiError};
use crate::generation::{
    Collected, Encoder, Generation, Tail, collect_all, stream_body, stream_choices,
};
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
    top_logprobs: Option<u32>,
    logit_bias: Option<std::collections::BTreeMap<String, f64>>,
    truncate_prompt_tokens: Option<i64>,
}

/// OpenAI's `n`: how many choices, `1..=max` (the server's `max_choices`).
fn choices(n: Option<u32>, max: u32) -> Result<u32, ApiError> {
    match n {
        None => Ok(1),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::invalid(
            "n",
            format!("n: must be between 1 and {max} (got {n})"),
        )),
    }
}

/// OpenAI's `logit_bias`: token ids (as strings) to biases in `-100..=100`. Whether an id is
/// in the model's vocabulary is the model service's to say.
fn logit_bias(
    map: Option<std::collections::BTreeMap<String, f64>>,
) -> Result<Vec<(u32, f32)>, ApiError> {
    let mut out = Vec::new();
    for (key, bias) in map.unwrap_or_default() {
        let Ok(id) = key.parse::<u32>() else {
            return Err(ApiError::invalid(
                "logit_bias",
                format!("logit_bias: {key:?} is not a token id (a non-negative integer)"),
            ));
        };
        if !(-100.0..=100.0).contains(&bias) {
            return Err(ApiError::invalid(
                "logit_bias",
                format!(
                    "logit_bias: the bias of token {id} must be between -100 and 100 (got {bias})"
                ),
            ));
        }
        out.push((id, bias as f32));
    }
    out.sort_by_key(|e| e.0);
    Ok(out)
}

/// vLLM's `truncate_prompt_tokens`: keep the prompt's last N tokens (N ≥ 1; the model service
/// checks N against the context window).
fn truncation(n: Option<i64>) -> Result<Truncation, ApiError> {
    match n {
        None => Ok(Truncation::Refuse),
        Some(n) if n >= 1 => Ok(Truncation::KeepLastTokens(
            u32::try_from(n).unwrap_or(u32::MAX),
        )),
        Some(n) => Err(ApiError::invalid(
            "truncate_prompt_tokens",
            format!("truncate_prompt_tokens: must be at least 1 (got {n})"),
        )),
    }
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
        logit_bias: logit_bias(s.logit_bias)?,
        truncate: truncation(s.truncate_prompt_tokens)?,
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
        top_logprobs,
        logit_bias: req.logit_bias,
        truncate_prompt_tokens: req.truncate_prompt_tokens,
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
        top_logprobs: completion_logprobs_option(req.logprobs)?,
        logit_bias: req.logit_bias,
        truncate_prompt_tokens: req.truncate_prompt_tokens,
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
    /// The choice this encoder writes (`n` > 1 runs one encoder per choice).
    index: u32,
    /// `done` ends the whole stream (usage, `[DONE]`); `false` for one of several choices.
    last: bool,
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
        &self,
        delta: wire_ai::Delta,
        logprobs: Option<wire_ai::ChoiceLogprobs>,
        finish_reason: Option<String>,
    ) -> Vec<wire_ai::ChunkChoice> {
        vec![wire_ai::ChunkChoice {
            index: self.index,
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
        sse_event(&self.chunk(self.choice(delta, None, None), None), out);
    }

    fn delta(&mut self, text: &str, logprobs: &[TokenLogprob], out: &mut String) {
        let delta = wire_ai::Delta {
            role: None,
            content: Some(text.to_owned()),
            tool_calls: None,
        };
        let logprobs = self.logprobs.then(|| wire_logprobs(logprobs));
        sse_event(&self.chunk(self.choice(delta, logprobs, None), None), out);
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
                sse_event(&self.chunk(self.choice(delta, None, None), None), out);
            }
        }
    }

    fn done(&mut self, c: &Completion, out: &mut String) {
        let last = self.choice(
            wire_ai::Delta::default(),
            None,
            Some(finish(c.finish_reason)),
        );
        sse_event(&self.chunk(last, None), out);
        if !self.last {
            return;
        }
        end_stream(
            self.include_usage
                .then(|| self.chunk(Vec::new(), Some(usage(c)))),
            out,
        );
    }

    fn error(&mut self, error: &ApiError, out: &mut String) {
        sse_error(error, out);
    }
}

/// The end of a streamed answer: the usage chunk when the request asked for it, then
/// `[DONE]`.
fn end_stream<T: serde::Serialize>(usage_chunk: Option<T>, out: &mut String) {
    if let Some(chunk) = usage_chunk {
        sse_event(&chunk, out);
    }
    out.push_str("data: [DONE]\n\n");
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
    let n = choices(req.n, state.config.max_choices)?;
    let request = chat_request(req)?;
    let logprobs = request.options.top_logprobs.is_some();
    let header = Header::new("chatcmpl-", &request.model, &state);
    if n > 1 {
        let encoder = ChatEncoder {
            header,
            include_usage,
            logprobs,
            index: 0,
            last: false,
        };
        return chat_choices(&state, request, n, stream, encoder).await;
    }
    let in_flight = state.metrics.generation_started();
    let generation = start(&state, state.models.chat(request).await, in_flight).await?;
    if stream {
        let encoder = ChatEncoder {
            header,
            include_usage,
            logprobs,
            index: 0,
            last: true,
        };
        return Ok(sse_response(stream_body(generation, encoder)));
    }
    let answer = generation.collect().await?;
    let usage = usage(&answer.completion);
    let body = wire_ai::ChatCompletion {
        id: header.id,
        object: "chat.completion".to_owned(),
        created: header.created,
        model: header.model,
        system_fingerprint: header.system_fingerprint,
        choices: vec![chat_choice(0, answer, logprobs)],
        usage,
    };
    Ok(axum::Json(body).into_response())
}

/// One choice of a non-streaming chat answer: its text, or (content `null`) its tool calls.
fn chat_choice(index: u32, answer: Collected, logprobs: bool) -> wire_ai::ChatChoice {
    let Collected {
        text,
        completion,
        logprobs: entries,
        tool_calls,
    } = answer;
    wire_ai::ChatChoice {
        index,
        message: wire_ai::AssistantMessage {
            role: "assistant".to_owned(),
            content: (tool_calls.is_empty() || !text.is_empty()).then_some(text),
            tool_calls: (!tool_calls.is_empty())
                .then(|| tool_calls.iter().map(tool_call_out).collect()),
        },
        logprobs: logprobs.then(|| wire_logprobs(&entries)),
        finish_reason: finish(completion.finish_reason),
    }
}

struct CompletionEncoder {
    header: Header,
    include_usage: bool,
    /// The request asked for log-probabilities.
    logprobs: bool,
    /// Bytes of the tokens reported so far (for `text_offset`).
    reported: Vec<u8>,
    /// The choice this encoder writes (`n` > 1 runs one encoder per choice).
    index: u32,
    /// `done` ends the whole stream (usage, `[DONE]`); `false` for one of several choices.
    last: bool,
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
        index: u32,
        text: &str,
        logprobs: Option<wire_ai::CompletionLogprobs>,
        finish_reason: Option<String>,
    ) -> Vec<wire_ai::CompletionChoice> {
        vec![wire_ai::CompletionChoice {
            text: text.to_owned(),
            index,
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
        sse_event(
            &self.chunk(Self::choice(self.index, text, logprobs, None), None),
            out,
        );
    }

    fn done(&mut self, c: &Completion, out: &mut String) {
        sse_event(
            &self.chunk(
                Self::choice(self.index, "", None, Some(finish(c.finish_reason))),
                None,
            ),
            out,
        );
        if !self.last {
            return;
        }
        end_stream(
            self.include_usage
                .then(|| self.chunk(Vec::new(), Some(usage(c)))),
            out,
        );
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
    let n = choices(req.n, state.config.max_choices)?;
    let request = completion_request(req)?;
    let logprobs = request.options.top_logprobs.is_some();
    let header = Header::new("cmpl-", &request.model, &state);
    if n > 1 {
        let encoder = CompletionEncoder {
            header,
            include_usage,
            logprobs,
            reported: Vec::new(),
            index: 0,
            last: false,
        };
        return completion_choices(&state, request, n, stream, encoder).await;
    }
    let in_flight = state.metrics.generation_started();
    let generation = start(&state, state.models.complete(request).await, in_flight).await?;
    if stream {
        let encoder = CompletionEncoder {
            header,
            include_usage,
            logprobs,
            reported: Vec::new(),
            index: 0,
            last: true,
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
        choices: CompletionEncoder::choice(0, &text, logprobs, Some(finish(c.finish_reason))),
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

/// Usage of an `n`-choice request: the prompt counted once (the choices share it, and all but
/// the first reuse its computed keys and values), completion tokens summed over the choices.
fn usage_of_choices(cs: &[Completion]) -> wire_ai::Usage {
    let mut u = cs.first().map_or(
        wire_ai::Usage {
            prompt_tokens: 0,
            completion_tokens: 0,
            total_tokens: 0,
            prompt_tokens_details: None,
        },
        usage,
    );
    u.completion_tokens = cs
        .iter()
        .map(|c| c.completion_tokens)
        .fold(0, u32::saturating_add);
    u.total_tokens = u.prompt_tokens.saturating_add(u.completion_tokens);
    u
}

/// The seed of choice `i`: `seed + i`, so each choice is reproducible and they differ.
fn choice_seed(options: &mut GenerationOptions, i: u32) {
    options.seed = options.seed.map(|s| s.wrapping_add(u64::from(i)));
}

/// Starts one generation per request future: the first alone until its first event (its
/// prompt is computed then), the rest together after it, so they copy its computed prompt
/// from the engine instead of computing it again.
async fn start_choices(
    state: &AppState,
    mut starts: Vec<
        hearth_llm::BoxFuture<'_, Result<hearth_llm::GenerationStream, hearth_llm::LlmError>>,
    >,
) -> Result<Vec<Generation>, ApiError> {
    let rest = starts.split_off(1.min(starts.len()));
    let mut out = Vec::with_capacity(rest.len() + 1);
    for first in starts {
        let in_flight = state.metrics.generation_started();
        out.push(start(state, first.await, in_flight).await?);
    }
    let others = futures_util::future::join_all(rest.into_iter().map(|f| async move {
        let in_flight = state.metrics.generation_started();
        start(state, f.await, in_flight).await
    }))
    .await;
    for g in others {
        out.push(g?);
    }
    Ok(out)
}

/// `n` > 1 on `/v1/chat/completions`: `n` generations of the same messages (seeds `seed + i`).
async fn chat_choices(
    state: &AppState,
    request: ChatRequest,
    n: u32,
    stream: bool,
    encoder: ChatEncoder,
) -> Result<Response, OpenAiError> {
    let starts = (0..n)
        .map(|i| {
            let mut r = request.clone();
            choice_seed(&mut r.options, i);
            state.models.chat(r)
        })
        .collect();
    let generations = start_choices(state, starts).await?;
    if stream {
        let encoders = (0..n)
            .map(|index| ChatEncoder {
                header: encoder.header.clone(),
                index,
                ..encoder
            })
            .collect();
        let tail: Tail = Box::new(move |cs, out| {
            let usage = || encoder.chunk(Vec::new(), Some(usage_of_choices(cs)));
            end_stream(encoder.include_usage.then(usage), out);
        });
        return Ok(sse_response(stream_choices(generations, encoders, tail)));
    }
    let results = collect_all(generations).await?;
    let completions: Vec<Completion> = results.iter().map(|r| r.completion.clone()).collect();
    let header = encoder.header;
    let body = wire_ai::ChatCompletion {
        id: header.id,
        object: "chat.completion".to_owned(),
        created: header.created,
        model: header.model,
        system_fingerprint: header.system_fingerprint,
        choices: results
            .into_iter()
            .zip(0..)
            .map(|(answer, index)| chat_choice(index, answer, encoder.logprobs))
            .collect(),
        usage: usage_of_choices(&completions),
    };
    Ok(axum::Json(body).into_response())
}

/// `n` > 1 on `/v1/completions`: `n` generations of the same prompt (seeds `seed + i`).
async fn completion_choices(
    state: &AppState,
    request: CompletionRequest,
    n: u32,
    stream: bool,
    encoder: CompletionEncoder,
) -> Result<Response, OpenAiError> {
    let starts = (0..n)
        .map(|i| {
            let mut r = request.clone();
            choice_seed(&mut r.options, i);
            state.models.complete(r)
        })
        .collect();
    let generations = start_choices(state, starts).await?;
    if stream {
        let encoders = (0..n)
            .map(|index| CompletionEncoder {
                header: encoder.header.clone(),
                reported: Vec::new(),
                index,
                ..encoder
            })
            .collect();
        let tail: Tail = Box::new(move |cs, out| {
            let usage = || encoder.chunk(Vec::new(), Some(usage_of_choices(cs)));
            end_stream(encoder.include_usage.then(usage), out);
        });
        return Ok(sse_response(stream_choices(generations, encoders, tail)));
    }
    let results = collect_all(generations).await?;
    let completions: Vec<Completion> = results.iter().map(|r| r.completion.clone()).collect();
    let header = encoder.header;
    let body = wire_ai::Completion {
        id: header.id,
        object: "text_completion".to_owned(),
        created: header.created,
        model: header.model,
        system_fingerprint: header.system_fingerprint,
        choices: results
            .into_iter()
            .zip(0..)
            .flat_map(
                |(
                    Collected {
                        text,
                        completion: c,
                        logprobs: entries,
                        ..
                    },
                    index,
                )| {
                    let logprobs = encoder
                        .logprobs
                        .then(|| completion_logprobs(&entries, &mut Vec::new()));
                    CompletionEncoder::choice(index, &text, logprobs, Some(finish(c.finish_reason)))
                },
            )
            .collect(),
        usage: Some(Some(usage_of_choices(&completions))),
    };
    Ok(axum::Json(body).into_response())
}
