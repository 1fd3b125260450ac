//! Embedding routes of both families: `POST /v1/embeddings` (OpenAI), `POST /api/embed` and the
//! older `POST /api/embeddings` (Ollama), with their wire ↔ domain conversions.
//!
//! Token-array inputs (`[1, 2, 3]` or `[[…], …]` on `/v1/embeddings`) are ids of OpenAI's
//! `cl100k_base` encoding, as OpenAI's API defines them and as clients that tokenize with
//! tiktoken before sending (LangChain's `OpenAIEmbeddings`) send them: the model service decodes
//! them to text and embeds that with the model's own tokenizer, so the vectors equal those of
//! the same texts sent as strings.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use hearth_api_types::{ollama as wire_ol, openai as wire_ai};
use hearth_llm::{EmbedInput, EmbedRequest};

use crate::AppState;
use crate::body::{OllamaJson, OpenAiJson};
use crate::error::{ApiError, OllamaError, OpenAiError};
use crate::wire::{KeepAliveSpec, keep_alive, nanos};

/// `dimensions` as the model service takes it: a positive count (its upper bound, the model's
/// width, is checked there).
fn dimensions(d: Option<i64>) -> Result<Option<usize>, ApiError> {
    match d {
        None => Ok(None),
        Some(n) if n >= 1 => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
        Some(n) => Err(ApiError::invalid(
            "dimensions",
            format!("dimensions: must be at least 1 (got {n})"),
        )),
    }
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 (RFC 4648 §4) with `=` padding.
pub fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    let sym = |v: u32| char::from(BASE64[(v & 63) as usize]);
    for chunk in bytes.chunks(3) {
        let b = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let v = (b(0) << 16) | (b(1) << 8) | b(2);
        out.push(sym(v >> 18));
        out.push(sym(v >> 12));
        out.push(if chunk.len() > 1 { sym(v >> 6) } else { '=' });
        out.push(if chunk.len() > 2 { sym(v) } else { '=' });
    }
    out
}

/// An embedding as OpenAI's `encoding_format: "base64"` sends it: little-endian `f32` bytes.
pub fn base64_f32(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64(&bytes)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Float,
    Base64,
}

fn encoding(format: Option<&str>) -> Result<Encoding, ApiError> {
    match format {
        None | Some("float") => Ok(Encoding::Float),
        Some("base64") => Ok(Encoding::Base64),
        Some(other) => Err(ApiError::invalid(
            "encoding_format",
            format!("encoding_format: {other:?} is not supported; use \"float\" or \"base64\""),
        )),
    }
}

fn openai_inputs(input: wire_ai::EmbeddingInput) -> EmbedInput {
    match input {
        wire_ai::EmbeddingInput::Text(t) => EmbedInput::Texts(vec![t]),
        wire_ai::EmbeddingInput::Texts(t) => EmbedInput::Texts(t),
        wire_ai::EmbeddingInput::Tokens(t) => EmbedInput::Tokens(vec![t]),
        wire_ai::EmbeddingInput::TokenLists(t) => EmbedInput::Tokens(t),
    }
}

/// `POST /v1/embeddings`. Over-long inputs are refused (as OpenAI does), naming the input.
pub async fn openai(
    State(state): State<AppState>,
    OpenAiJson(req): OpenAiJson<wire_ai::EmbeddingRequest>,
) -> Result<Response, OpenAiError> {
    let format = encoding(req.encoding_format.as_deref())?;
    let request = EmbedRequest {
        model: req.model,
        inputs: openai_inputs(req.input),
        truncate: false,
        dimensions: dimensions(req.dimensions)?,
        keep_alive: None,
        user: req.user.unwrap_or_default(),
    };
    let model = request.model.clone();
    let e = state.models.embed(request).await.map_err(ApiError::from)?;
    let data = e
        .vectors
        .into_iter()
        .enumerate()
        .map(|(i, v)| wire_ai::Embedding {
            object: "embedding".to_owned(),
            index: u32::try_from(i).unwrap_or(u32::MAX),
            embedding: match format {
                Encoding::Float => wire_ai::EmbeddingVector::Float(v),
                Encoding::Base64 => wire_ai::EmbeddingVector::Base64(base64_f32(&v)),
            },
        })
        .collect();
    Ok(axum::Json(wire_ai::EmbeddingResponse {
        object: "list".to_owned(),
        data,
        model,
        usage: wire_ai::EmbeddingUsage {
            prompt_tokens: e.prompt_tokens,
            total_tokens: e.prompt_tokens,
        },
    })
    .into_response())
}

fn keep(k: Option<&wire_ol::KeepAlive>) -> Result<Option<std::time::Duration>, ApiError> {
    Ok(k.map(keep_alive).transpose()?.map(KeepAliveSpec::duration))
}

/// `POST /api/embed`. `truncate` defaults to true. As in Ollama, an empty input (`""` or `[]`)
/// only loads the model and answers no embeddings.
pub async fn ollama_embed(
    State(state): State<AppState>,
    OllamaJson(req): OllamaJson<wire_ol::EmbedRequest>,
) -> Result<Response, OllamaError> {
    let started = std::time::Instant::now();
    let keep_alive = keep(req.keep_alive.as_ref())?;
    let texts = match req.input {
        wire_ol::EmbedInput::One(t) if t.is_empty() => Vec::new(),
        wire_ol::EmbedInput::One(t) => vec![t],
        wire_ol::EmbedInput::Many(t) => t,
    };
    if texts.is_empty() {
        let load = state.models.load(&req.model, keep_alive).await?;
        return Ok(axum::Json(wire_ol::EmbedResponse {
            model: req.model,
            embeddings: Vec::new(),
            total_duration: nanos(started.elapsed()),
            load_duration: nanos(load),
            prompt_eval_count: 0,
        })
        .into_response());
    }
    let request = EmbedRequest {
        model: req.model,
        inputs: EmbedInput::Texts(texts),
        truncate: req.truncate.unwrap_or(true),
        dimensions: dimensions(req.dimensions)?,
        keep_alive,
        user: String::new(),
    };
    let model = request.model.clone();
    let e = state.models.embed(request).await?;
    Ok(axum::Json(wire_ol::EmbedResponse {
        model,
        embeddings: e.vectors,
        total_duration: nanos(e.total_duration),
        load_duration: nanos(e.load_duration),
        prompt_eval_count: e.prompt_tokens,
    })
    .into_response())
}

/// `POST /api/embeddings`, Ollama's older one-text route: `{"embedding": […]}`. An empty
/// prompt loads the model and answers an empty embedding, as Ollama does.
pub async fn ollama_embeddings(
    State(state): State<AppState>,
    OllamaJson(req): OllamaJson<wire_ol::EmbeddingsRequest>,
) -> Result<Response, OllamaError> {
    let keep_alive = keep(req.keep_alive.as_ref())?;
    if req.prompt.is_empty() {
        state.models.load(&req.model, keep_alive).await?;
        return Ok(axum::Json(wire_ol::EmbeddingsResponse {
            embedding: Vec::new(),
        })
        .into_response());
    }
    let request = EmbedRequest {
        model: req.model,
        inputs: EmbedInput::Texts(vec![req.prompt]),
        truncate: true,
        dimensions: None,
        keep_alive,
        user: String::new(),
    };
    let e = state.models.embed(request).await?;
    Ok(axum::Json(wire_ol::EmbeddingsResponse {
        embedding: e.vectors.into_iter().next().unwrap_or_default(),
    })
    .into_response())
}
