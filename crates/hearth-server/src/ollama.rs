//! Ollama-compatible routes and their wire ↔ domain conversions.

use std::time::SystemTime;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use hearth_api_types::ollama as wire_ol;
use hearth_llm::{
    ChatRequest, Completion, CompletionRequest, FinishReason, GenerationOptions, Message,
    ModelDetails, ModelInfo, OutputFormat, TokenLogprob, Tool, ToolCall, Truncation,
};

use crate::AppState;
use crate::body::OllamaJson;
use crate::error::{ApiError, Family, OllamaError};
use crate::generation::{Collected, Encoder, Generation, stream_body};
use crate::wire::{KeepAliveSpec, keep_alive, nanos, rfc3339};

fn clamp_u32(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// Ollama's options as the model service takes them: a negative `num_predict` means no limit, a
/// negative `seed` a random one, a negative `repeat_last_n` the whole context (`u32::MAX`), a
/// negative `top_k` is 0.
fn options(
    o: Option<wire_ol::Options>,
    top_logprobs: Option<u32>,
    format: Option<OutputFormat>,
) -> GenerationOptions {
    let o = o.unwrap_or_default();
    GenerationOptions {
        max_tokens: o.num_predict.filter(|n| *n >= 0).map(clamp_u32),
        temperature: o.temperature,
        top_k: o.top_k.map(clamp_u32),
        top_p: o.top_p,
        min_p: o.min_p,
        repeat_penalty: o.repeat_penalty,
        repeat_last_n: o
            .repeat_last_n
            .map(|n| if n < 0 { u32::MAX } else { clamp_u32(n) }),
        presence_penalty: o.presence_penalty,
        frequency_penalty: o.frequency_penalty,
        seed: o.seed.filter(|s| *s >= 0).map(i64::cast_unsigned),
        stop: o.stop.unwrap_or_default(),
        top_logprobs,
        format,
        // Ollama has no logit bias.
        logit_bias: Vec::new(),
        truncate: Truncation::Refuse,
    }
}

/// Ollama's `truncate`: `true` makes an over-long prompt fit by dropping the oldest messages
/// (Ollama's default; Hearth's default refuses it, never truncating silently).
fn truncation(truncate: Option<bool>) -> Truncation {
    if truncate == Some(true) {
        Truncation::Fit
    } else {
        Truncation::Refuse
    }
}

/// Ollama's `logprobs` / `top_logprobs`: alternatives per token, or `None` when off
/// (`top_logprobs` alone asks for nothing; outside `0..=20` it is refused).
fn logprobs_option(logprobs: Option<bool>, top: Option<i64>) -> Result<Option<u32>, ApiError> {
    let top = match top {
        None => 0,
        Some(n @ 0..=20) => n as u32,
        Some(n) => {
            return Err(ApiError::invalid(
                "top_logprobs",
                format!("top_logprobs must be between 0 and 20 (got {n})"),
            ));
        }
    };
    Ok(logprobs.unwrap_or(false).then_some(top))
}

/// Log-probabilities in Ollama's shape.
fn wire_logprobs(entries: &[TokenLogprob]) -> Vec<wire_ol::Logprob> {
    entries
        .iter()
        .map(|e| wire_ol::Logprob {
            token: e.token.clone(),
            logprob: e.logprob,
            bytes: e.bytes.clone(),
            top_logprobs: e
                .top
                .iter()
                .map(|(token, bytes, logprob)| wire_ol::TokenLogprob {
                    token: token.clone(),
                    logprob: *logprob,
                    bytes: bytes.clone(),
                })
                .collect(),
        })
        .collect()
}

/// Structured output (`format`) is refused rather than silently ignored.
/// Ollama's `format`: `"json"` for any JSON object, a JSON schema, or nothing.
fn output_format(format: Option<serde_json::Value>) -> Result<Option<OutputFormat>, ApiError> {
    match format {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if s.is_empty() => Ok(None),
        Some(serde_json::Value::String(s)) if s == "json" => Ok(Some(OutputFormat::JsonObject)),
        Some(schema @ serde_json::Value::Object(_)) => Ok(Some(OutputFormat::JsonSchema(schema))),
        Some(other) => Err(ApiError::invalid(
            "format",
            format!("format: must be \"json\" or a JSON schema object (got {other})"),
        )),
    }
}

fn parse_keep_alive(k: Option<&wire_ol::KeepAlive>) -> Result<Option<KeepAliveSpec>, ApiError> {
    k.map(keep_alive).transpose()
}

fn metrics(c: &Completion) -> wire_ol::Metrics {
    wire_ol::Metrics {
        total_duration: Some(nanos(c.total_duration)),
        load_duration: Some(nanos(c.load_duration)),
        prompt_eval_count: Some(c.prompt_tokens),
        prompt_eval_duration: Some(nanos(c.prompt_eval_duration)),
        eval_count: Some(c.completion_tokens),
        eval_duration: Some(nanos(c.eval_duration)),
    }
}

fn now() -> String {
    rfc3339(SystemTime::now())
}

fn ndjson_line<T: serde::Serialize>(value: &T, out: &mut String) {
    match serde_json::to_string(value) {
        Ok(json) => {
            out.push_str(&json);
            out.push('\n');
        }
        Err(e) => tracing::error!(error = %e, "could not serialize a stream line"),
    }
}

fn ndjson_response(body: axum::body::Body) -> Response {
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}

fn error_line(error: &ApiError, out: &mut String) {
    out.push_str(&error.body_json(Family::Ollama));
    out.push('\n');
}

fn assistant(content: String) -> wire_ol::Message {
    wire_ol::Message {
        role: "assistant".to_owned(),
        content,
        ..wire_ol::Message::default()
    }
}

/// Ollama's `done_reason`: tool calls end a turn like a stop does.
fn done_reason(r: FinishReason) -> String {
    match r {
        FinishReason::ToolCalls => "stop".to_owned(),
        r => r.as_str().to_owned(),
    }
}

/// Calls as Ollama writes them: arguments as an object.
fn tool_calls_out(calls: &[ToolCall]) -> Option<Vec<wire_ol::ToolCall>> {
    (!calls.is_empty()).then(|| {
        (0u32..)
            .zip(calls)
            .map(|(index, c)| wire_ol::ToolCall {
                function: wire_ol::ToolCallFunction {
                    index: Some(index),
                    name: c.name.clone(),
                    arguments: c.arguments.clone(),
                },
            })
            .collect()
    })
}

/// The conversation of an `/api/chat` request. Ollama gives calls no ids; results name the
/// tool instead, so replayed calls get ids here and each result is matched to the call of
/// its tool.
fn messages_in(messages: Vec<wire_ol::Message>) -> Vec<Message> {
    let mut out = Vec::with_capacity(messages.len());
    let mut n = 0;
    for m in messages {
        let tool_calls = m
            .tool_calls
            .unwrap_or_default()
            .into_iter()
            .map(|c| {
                n += 1;
                ToolCall {
                    id: format!("call_{n}"),
                    name: c.function.name,
                    arguments: c.function.arguments,
                }
            })
            .collect();
        out.push(Message {
            tool_calls,
            name: m.tool_name,
            ..Message::text(m.role, m.content)
        });
    }
    out
}

fn tools_in(tools: Option<Vec<wire_ol::Tool>>) -> Vec<Tool> {
    tools
        .unwrap_or_default()
        .into_iter()
        .map(|t| Tool {
            name: t.function.name,
            description: t.function.description,
            parameters: t
                .function
                .parameters
                .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
        })
        .collect()
}

async fn start(
    state: &AppState,
    rx: Result<hearth_llm::GenerationStream, hearth_llm::LlmError>,
    in_flight: crate::metrics::InFlight,
) -> Result<Generation, ApiError> {
    Generation::start(rx?, state.metrics.clone(), in_flight).await
}

/// A request with nothing to generate loads the model (or, with `keep_alive: 0`, unloads it).
async fn load_only(
    state: &AppState,
    model: &str,
    keep: Option<KeepAliveSpec>,
) -> Result<(), ApiError> {
    state
        .models
        .load(model, keep.map(KeepAliveSpec::duration))
        .await?;
    Ok(())
}

struct ChatEncoder {
    model: String,
}

impl Encoder for ChatEncoder {
    fn delta(&mut self, text: &str, logprobs: &[TokenLogprob], out: &mut String) {
        if text.is_empty() && logprobs.is_empty() {
            return;
        }
        let line = wire_ol::ChatResponse {
            model: self.model.clone(),
            created_at: now(),
            message: assistant(text.to_owned()),
            done: false,
            done_reason: None,
            logprobs: wire_logprobs(logprobs),
            metrics: wire_ol::Metrics::default(),
        };
        ndjson_line(&line, out);
    }

    fn tool_calls(&mut self, calls: &[ToolCall], out: &mut String) {
        let line = wire_ol::ChatResponse {
            model: self.model.clone(),
            created_at: now(),
            message: wire_ol::Message {
                tool_calls: tool_calls_out(calls),
                ..assistant(String::new())
            },
            done: false,
            done_reason: None,
            logprobs: Vec::new(),
            metrics: wire_ol::Metrics::default(),
        };
        ndjson_line(&line, out);
    }

    fn done(&mut self, c: &Completion, out: &mut String) {
        let line = wire_ol::ChatResponse {
            model: self.model.clone(),
            created_at: now(),
            message: assistant(String::new()),
            done: true,
            done_reason: Some(done_reason(c.finish_reason)),
            logprobs: Vec::new(),
            metrics: metrics(c),
        };
        ndjson_line(&line, out);
    }

    fn error(&mut self, error: &ApiError, out: &mut String) {
        error_line(error, out);
    }
}

/// `POST /api/chat`
pub async fn chat(
    State(state): State<AppState>,
    OllamaJson(req): OllamaJson<wire_ol::ChatRequest>,
) -> Result<Response, OllamaError> {
    let keep = parse_keep_alive(req.keep_alive.as_ref())?;
    let format = output_format(req.format)?;
    let top_logprobs = logprobs_option(req.logprobs, req.top_logprobs)?;
    if req.messages.is_empty() {
        load_only(&state, &req.model, keep).await?;
        let body = wire_ol::ChatResponse {
            model: req.model,
            created_at: now(),
            message: assistant(String::new()),
            done: true,
            done_reason: Some("load".to_owned()),
            logprobs: Vec::new(),
            metrics: wire_ol::Metrics::default(),
        };
        return Ok(axum::Json(body).into_response());
    }
    let stream = req.stream.unwrap_or(true);
    let model = req.model.clone();
    let request = ChatRequest {
        model: req.model,
        messages: messages_in(req.messages),
        options: GenerationOptions {
            truncate: truncation(req.truncate),
            ..options(req.options, top_logprobs, format)
        },
        keep_alive: keep.map(KeepAliveSpec::duration),
        tools: tools_in(req.tools),
        ..ChatRequest::default()
    };
    let in_flight = state.metrics.generation_started();
    let generation = start(&state, state.models.chat(request).await, in_flight).await?;
    if stream {
        return Ok(ndjson_response(stream_body(
            generation,
            ChatEncoder { model },
        )));
    }
    let Collected {
        text,
        completion: c,
        logprobs: entries,
        tool_calls,
    } = generation.collect().await?;
    let body = wire_ol::ChatResponse {
        model,
        created_at: now(),
        message: wire_ol::Message {
            tool_calls: tool_calls_out(&tool_calls),
            ..assistant(text)
        },
        done: true,
        done_reason: Some(done_reason(c.finish_reason)),
        logprobs: wire_logprobs(&entries),
        metrics: metrics(&c),
    };
    Ok(axum::Json(body).into_response())
}

struct GenerateEncoder {
    model: String,
}

impl GenerateEncoder {
    fn line(
        &self,
        response: String,
        logprobs: &[TokenLogprob],
        c: Option<&Completion>,
    ) -> wire_ol::GenerateResponse {
        wire_ol::GenerateResponse {
            model: self.model.clone(),
            created_at: now(),
            response,
            done: c.is_some(),
            done_reason: c.map(|c| c.finish_reason.as_str().to_owned()),
            logprobs: wire_logprobs(logprobs),
            metrics: c.map(metrics).unwrap_or_default(),
        }
    }
}

impl Encoder for GenerateEncoder {
    fn delta(&mut self, text: &str, logprobs: &[TokenLogprob], out: &mut String) {
        if text.is_empty() && logprobs.is_empty() {
            return;
        }
        ndjson_line(&self.line(text.to_owned(), logprobs, None), out);
    }

    fn done(&mut self, c: &Completion, out: &mut String) {
        ndjson_line(&self.line(String::new(), &[], Some(c)), out);
    }

    fn error(&mut self, error: &ApiError, out: &mut String) {
        error_line(error, out);
    }
}

/// `POST /api/generate`: `raw` prompts go to the model as they are; others are a chat of one
/// user message, after `system` when given.
pub async fn generate(
    State(state): State<AppState>,
    OllamaJson(req): OllamaJson<wire_ol::GenerateRequest>,
) -> Result<Response, OllamaError> {
    let keep = parse_keep_alive(req.keep_alive.as_ref())?;
    let format = output_format(req.format)?;
    let top_logprobs = logprobs_option(req.logprobs, req.top_logprobs)?;
    let prompt = req.prompt.unwrap_or_default();
    let encoder = GenerateEncoder {
        model: req.model.clone(),
    };
    if prompt.is_empty() {
        load_only(&state, &req.model, keep).await?;
        let mut body = encoder.line(String::new(), &[], None);
        body.done = true;
        body.done_reason = Some("load".to_owned());
        return Ok(axum::Json(body).into_response());
    }
    let stream = req.stream.unwrap_or(true);
    let options = GenerationOptions {
        truncate: truncation(req.truncate),
        ..options(req.options, top_logprobs, format)
    };
    let keep_alive = keep.map(KeepAliveSpec::duration);
    let in_flight = state.metrics.generation_started();
    let rx = if req.raw.unwrap_or(false) {
        let request = CompletionRequest {
            model: req.model,
            prompt,
            options,
            keep_alive,
            user: String::new(),
        };
        state.models.complete(request).await
    } else {
        let mut messages = Vec::with_capacity(2);
        if let Some(system) = req.system.filter(|s| !s.is_empty()) {
            messages.push(Message::text("system".to_owned(), system));
        }
        messages.push(Message::text("user".to_owned(), prompt));
        state
            .models
            .chat(ChatRequest {
                model: req.model,
                messages,
                options,
                keep_alive,
                ..ChatRequest::default()
            })
            .await
    };
    let generation = start(&state, rx, in_flight).await?;
    if stream {
        return Ok(ndjson_response(stream_body(generation, encoder)));
    }
    let Collected {
        text,
        completion: c,
        logprobs: entries,
        ..
    } = generation.collect().await?;
    Ok(axum::Json(encoder.line(text, &entries, Some(&c))).into_response())
}

fn details(info: &ModelInfo) -> wire_ol::ModelDetails {
    wire_ol::ModelDetails {
        parent_model: String::new(),
        format: info.format.clone(),
        family: info.family.clone(),
        families: vec![info.family.clone()],
        parameter_size: info.parameter_size.clone(),
        quantization_level: info.quantization_level.clone(),
    }
}

/// `GET /api/tags`
pub async fn tags(State(state): State<AppState>) -> Result<Response, OllamaError> {
    let models = state.models.list().await?;
    let body = wire_ol::ListResponse {
        models: models
            .iter()
            .map(|m| wire_ol::ListModel {
                name: m.name.clone(),
                model: m.name.clone(),
                modified_at: rfc3339(m.modified_at),
                size: m.size_bytes,
                digest: m.digest.clone(),
                details: details(m),
            })
            .collect(),
    };
    Ok(axum::Json(body).into_response())
}

/// A metadata value as JSON: numbers and booleans as such, anything else as text.
fn metadata_value(text: &str) -> serde_json::Value {
    if let Ok(n) = text.parse::<i64>() {
        return n.into();
    }
    if let Ok(n) = text.parse::<u64>() {
        return n.into();
    }
    if let Ok(x) = text.parse::<f64>()
        && let Some(n) = serde_json::Number::from_f64(x)
    {
        return serde_json::Value::Number(n);
    }
    match text {
        "true" => true.into(),
        "false" => false.into(),
        _ => text.into(),
    }
}

/// Parameters as Ollama's `show` lists them: `name value` lines sorted by name, one per value
/// of a list (`stop`), strings quoted.
fn parameter_lines(d: &ModelDetails) -> Vec<(String, String)> {
    let mut sorted: Vec<&(String, String)> = d.parameters.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::new();
    for (k, text) in sorted {
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Array(items)) => {
                out.extend(items.iter().map(|v| (k.clone(), v.to_string())));
            }
            _ => out.push((k.clone(), text.clone())),
        }
    }
    out
}

fn parameters_text(d: &ModelDetails) -> String {
    parameter_lines(d)
        .iter()
        .map(|(k, v)| format!("{k:<30} {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn modelfile(d: &ModelDetails) -> String {
    let mut out = format!("# Modelfile generated by Hearth\nFROM {}\n", d.info.name);
    if let Some(t) = &d.chat_template {
        out.push_str(&format!("TEMPLATE \"\"\"{t}\"\"\"\n"));
    }
    if let Some(s) = &d.system {
        out.push_str(&format!("SYSTEM \"\"\"{s}\"\"\"\n"));
    }
    for (k, v) in parameter_lines(d) {
        out.push_str(&format!("PARAMETER {k} {v}\n"));
    }
    if let Some(l) = &d.license {
        out.push_str(&format!("LICENSE \"\"\"{l}\"\"\"\n"));
    }
    out
}

/// `POST /api/show` with `{model}` or the older `{name}`.
pub async fn show(
    State(state): State<AppState>,
    OllamaJson(req): OllamaJson<wire_ol::ShowRequest>,
) -> Result<Response, OllamaError> {
    let name = req
        .model
        .filter(|m| !m.is_empty())
        .or(req.name.filter(|m| !m.is_empty()))
        .ok_or_else(|| ApiError::invalid("model", "model: a model name is required"))?;
    let d = state.models.show(&name).await?;
    let body = wire_ol::ShowResponse {
        license: d.license.clone(),
        modelfile: modelfile(&d),
        parameters: parameters_text(&d),
        template: d.chat_template.clone().unwrap_or_default(),
        system: d.system.clone(),
        details: details(&d.info),
        model_info: d
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), metadata_value(v)))
            .collect(),
        capabilities: d
            .capabilities
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect(),
        modified_at: rfc3339(d.info.modified_at),
    };
    Ok(axum::Json(body).into_response())
}

/// `GET /api/ps`
pub async fn ps(State(state): State<AppState>) -> Response {
    let running = state.models.running().await;
    let body = wire_ol::ProcessResponse {
        models: running
            .iter()
            .map(|r| wire_ol::ProcessModel {
                name: r.info.name.clone(),
                model: r.info.name.clone(),
                size: r.size_in_memory,
                digest: r.info.digest.clone(),
                details: details(&r.info),
                expires_at: rfc3339(r.expires_at),
                size_vram: 0,
                context_length: r.context_length,
            })
            .collect(),
    };
    axum::Json(body).into_response()
}

/// `GET /api/version`
pub async fn version(State(state): State<AppState>) -> Response {
    axum::Json(wire_ol::VersionResponse {
        version: state.config.version.clone(),
    })
    .into_response()
}
