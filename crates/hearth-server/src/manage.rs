//! Ollama's model management routes: `/api/pull`, `/api/delete`, `/api/copy`, `/api/blobs/:digest`
//! and `/api/create`. Progress is sent as Ollama sends it: NDJSON `{"status": …}` lines ending in
//! `{"status":"success"}`, or `{"error": …}` when the work fails after the stream started.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use hearth_api_types::ollama as wire_ol;
use hearth_llm::{CreateRequest, CreateSource, PullEvent, PullStream};

use crate::AppState;
use crate::body::OllamaJson;
use crate::error::{ApiError, Family, OllamaError};

/// Chunks of an upload in flight between the HTTP body and the store.
const UPLOAD_QUEUE: usize = 8;

fn status(s: impl Into<String>) -> wire_ol::ProgressResponse {
    wire_ol::ProgressResponse {
        status: s.into(),
        digest: None,
        total: None,
        completed: None,
    }
}

fn line(p: &wire_ol::ProgressResponse) -> String {
    let mut out = serde_json::to_string(p).unwrap_or_else(|_| r#"{"status":""}"#.to_owned());
    out.push('\n');
    out
}

fn error_line(e: ApiError) -> String {
    let mut out = e.body_json(Family::Ollama);
    out.push('\n');
    out
}

fn ndjson(body: Body) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        body,
    )
        .into_response()
}

/// `model`, else the deprecated `name`; required.
fn model_name(model: Option<String>, name: Option<String>) -> Result<String, ApiError> {
    model
        .filter(|m| !m.is_empty())
        .or(name.filter(|m| !m.is_empty()))
        .ok_or_else(|| ApiError::invalid("model", "model: a model name is required"))
}

/// A pull event as Ollama's progress line, and whether it is the last.
fn pull_line(e: PullEvent) -> (String, bool) {
    match e {
        PullEvent::Resolving => (line(&status("pulling manifest")), false),
        PullEvent::Downloading {
            digest,
            completed,
            total,
        } => {
            let short = digest
                .as_deref()
                .and_then(|d| d.strip_prefix("sha256:"))
                .and_then(|h| h.get(..12))
                .unwrap_or("model")
                .to_owned();
            let p = wire_ol::ProgressResponse {
                status: format!("pulling {short}"),
                digest,
                total,
                completed: Some(completed),
            };
            (line(&p), false)
        }
        PullEvent::Verifying => (line(&status("verifying sha256 digest")), false),
        PullEvent::Writing => (line(&status("writing manifest")), false),
        PullEvent::Done { .. } => (line(&status("success")), true),
        PullEvent::Error(e) => (error_line(ApiError::from(e)), true),
    }
}

fn ended_early() -> ApiError {
    ApiError::Service("the pull ended without a result".to_owned())
}

fn pull_body(rx: PullStream) -> Body {
    let stream = futures_util::stream::unfold(Some(rx), |rx| async move {
        let mut rx = rx?;
        let (text, last) = match rx.recv().await {
            Some(e) => pull_line(e),
            None => (error_line(ended_early()), true),
        };
        Some((
            Ok::<_, Infallible>(Bytes::from(text)),
            (!last).then_some(rx),
        ))
    });
    Body::from_stream(stream)
}

/// `POST /api/pull`
pub async fn pull(
    State(state): State<AppState>,
    OllamaJson(req): OllamaJson<wire_ol::PullRequest>,
) -> Result<Response, OllamaError> {
    let name = model_name(req.model, req.name)?;
    let mut rx = state.models.pull(&name).await?;
    if req.stream.unwrap_or(true) {
        return Ok(ndjson(pull_body(rx)));
    }
    loop {
        match rx.recv().await {
            Some(PullEvent::Done { .. }) => {
                return Ok(axum::Json(status("success")).into_response());
            }
            Some(PullEvent::Error(e)) => return Err(ApiError::from(e).into()),
            Some(_) => {}
            None => return Err(ended_early().into()),
        }
    }
}

/// `DELETE /api/delete`
pub async fn delete(
    State(state): State<AppState>,
    OllamaJson(req): OllamaJson<wire_ol::DeleteRequest>,
) -> Result<Response, OllamaError> {
    let name = model_name(req.model, req.name)?;
    state.models.delete(&name).await?;
    Ok(StatusCode::OK.into_response())
}

/// `POST /api/copy`
pub async fn copy(
    State(state): State<AppState>,
    OllamaJson(req): OllamaJson<wire_ol::CopyRequest>,
) -> Result<Response, OllamaError> {
    if req.source.is_empty() || req.destination.is_empty() {
        return Err(ApiError::invalid("source", "source and destination are required").into());
    }
    state.models.copy(&req.source, &req.destination).await?;
    Ok(StatusCode::OK.into_response())
}

/// `HEAD /api/blobs/:digest`: 200 when stored, else 404.
pub async fn blob_exists(
    State(state): State<AppState>,
    Path(digest): Path<String>,
) -> Result<Response, OllamaError> {
    Ok(if state.models.has_blob(&digest).await? {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    }
    .into_response())
}

/// `POST /api/blobs/:digest`: the body, streamed to the store and checked against the digest;
/// 201 when stored. A client that goes away leaves nothing behind.
pub async fn blob_upload(
    State(state): State<AppState>,
    Path(digest): Path<String>,
    body: Body,
) -> Result<Response, OllamaError> {
    let (tx, rx) = tokio::sync::mpsc::channel(UPLOAD_QUEUE);
    let forward = async move {
        let mut data = body.into_data_stream();
        while let Some(chunk) = data.next().await {
            let item = chunk
                .map(|b| b.to_vec())
                .map_err(|e| format!("the upload was cut off: {e}"));
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    };
    let ((), stored) = tokio::join!(forward, state.models.put_blob(&digest, rx));
    stored?;
    Ok(StatusCode::CREATED.into_response())
}

/// `POST /api/create`: from one uploaded GGUF (`files`) or `from` a model (or a GGUF file in
/// an import directory of the server), with template, system prompt, license and parameters.
pub async fn create(
    State(state): State<AppState>,
    OllamaJson(req): OllamaJson<wire_ol::CreateRequest>,
) -> Result<Response, OllamaError> {
    let name = model_name(req.model, req.name)?;
    if req.quantize.as_deref().is_some_and(|q| !q.is_empty()) {
        return Err(ApiError::invalid("quantize", "quantize: quantizing is not supported").into());
    }
    if req.adapters.as_ref().is_some_and(|a| !a.is_empty()) {
        return Err(
            ApiError::invalid("adapters", "adapters: LoRA adapters are not supported").into(),
        );
    }
    if req.messages.as_ref().is_some_and(|m| !m.is_empty()) {
        return Err(
            ApiError::invalid("messages", "messages: preset messages are not supported").into(),
        );
    }
    let files = req.files.unwrap_or_default();
    let source = if !files.is_empty() {
        let mut ggufs = files.iter().filter(|(f, _)| f.ends_with(".gguf"));
        match (ggufs.next(), files.len()) {
            (Some((_, digest)), 1) => CreateSource::Blob(digest.clone()),
            _ => {
                return Err(ApiError::invalid(
                    "files",
                    "files: exactly one GGUF file (`name.gguf`: its blob digest) is supported",
                )
                .into());
            }
        }
    } else {
        match req.from.filter(|f| !f.is_empty()) {
            Some(from) => CreateSource::From(from),
            None => {
                return Err(
                    ApiError::invalid("from", "from: name a model, or give `files`").into(),
                );
            }
        }
    };
    let from_blob = matches!(source, CreateSource::Blob(_));
    let license = req.license.map(|l| match l {
        wire_ol::License::One(s) => s,
        wire_ol::License::Many(v) => v.join("\n\n"),
    });
    let created = state
        .models
        .create(CreateRequest {
            model: name,
            source,
            template: req.template,
            system: req.system,
            license,
            parameters: req.parameters.unwrap_or_default(),
        })
        .await?;
    if !req.stream.unwrap_or(true) {
        return Ok(axum::Json(status("success")).into_response());
    }
    let mut out = String::new();
    if from_blob {
        out.push_str(&line(&status("parsing GGUF")));
    }
    out.push_str(&line(&status(format!(
        "using existing layer {}",
        created.digest
    ))));
    out.push_str(&line(&status("writing manifest")));
    out.push_str(&line(&status("success")));
    Ok(ndjson(Body::from(out)))
}
