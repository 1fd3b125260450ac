//! Hearth's HTTP API: OpenAI- and Ollama-compatible routes over the model service.
//!
//! The server knows HTTP and wire formats and nothing about models: every model question goes to
//! [`hearth_llm::ModelService`]. [`router`] builds the whole API from an [`AppState`]; tests call
//! it without a socket or serve it on `127.0.0.1:0`.
//!
//! Code map: `error` maps every failure to a status and body, once; `body` is the JSON extractor;
//! `generation` turns a [`hearth_llm::GenerationStream`] into a response body (the body owns the
//! stream, so a client that goes away cancels its generation); `openai`, `ollama`,
//! `manage` (pull, delete, copy, blobs, create) and `embeddings` hold the handlers and the
//! hand-written conversions between wire and domain types; `metrics` is the Prometheus text
//! endpoint; `wire` has ids, timestamps and durations; `auth` is the auth layer (API keys and
//! session cookies on the model routes, the [`Authed`] extractor) and `rest` the account routes
//! under `/api/hearth/v1/`.
#![forbid(unsafe_code)]

mod auth;
mod body;
mod embeddings;
mod error;
mod generation;
mod manage;
mod metrics;
mod ollama;
mod openai;
mod rest;
mod wire;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{MethodRouter, delete, get, head, post};
use hearth_llm::ModelService;

pub use auth::{AuthSettings, Authed, CSRF_HEADER, SESSION_COOKIE};
pub use error::{ApiError, BUSY_RETRY_AFTER_SECS, Classified, Family, OllamaError, OpenAiError};
pub use metrics::Metrics;

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// Reported by `/api/version`.
    pub version: String,
    /// Sent as `system_fingerprint` on OpenAI answers when set.
    pub system_fingerprint: Option<String>,
    /// Most choices one OpenAI request may ask for (`n`); more are refused.
    pub max_choices: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_body_bytes: 8 * 1024 * 1024,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            system_fingerprint: None,
            max_choices: 8,
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub models: Arc<dyn ModelService>,
    pub metrics: Arc<Metrics>,
    pub config: ServerConfig,
    pub auth: AuthSettings,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AppState {
    pub fn new(models: Arc<dyn ModelService>, config: ServerConfig) -> Self {
        AppState {
            models,
            metrics: Arc::new(Metrics::default()),
            config,
            auth: AuthSettings::default(),
        }
    }
}

/// Unknown routes: 404 with the error body of the family the path belongs to.
async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = uri.path();
    let error = ApiError::NoRoute {
        method: method.to_string(),
        path: path.chars().take(200).collect(),
    };
    if path.starts_with("/v1/") {
        OpenAiError(error).into_response()
    } else {
        OllamaError(error).into_response()
    }
}

/// Every route: its path as the router matches it, and its handlers. The OpenAPI document
/// (`hearth_api_types::openapi`) lists the same routes; a test holds the two together.
fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/v1/chat/completions", post(openai::chat_completions)),
        ("/v1/completions", post(openai::completions)),
        ("/v1/embeddings", post(embeddings::openai)),
        ("/v1/models", get(openai::list_models)),
        ("/v1/models/{*id}", get(openai::get_model)),
        ("/api/chat", post(ollama::chat)),
        ("/api/generate", post(ollama::generate)),
        ("/api/embed", post(embeddings::ollama_embed)),
        ("/api/embeddings", post(embeddings::ollama_embeddings)),
        ("/api/tags", get(ollama::tags)),
        ("/api/show", post(ollama::show)),
        ("/api/ps", get(ollama::ps)),
        ("/api/version", get(ollama::version)),
        ("/api/pull", post(manage::pull)),
        ("/api/delete", delete(manage::delete)),
        ("/api/copy", post(manage::copy)),
        ("/api/create", post(manage::create)),
        (
            "/api/blobs/{digest}",
            head(manage::blob_exists).post(manage::blob_upload),
        ),
        ("/healthz", get(|| async { "ok" })),
        ("/metrics", get(metrics::scrape)),
        ("/openapi.json", get(openapi)),
    ]
}

/// The paths [`router`] serves, as it matches them (`{name}` a segment, `{*name}` the rest).
pub fn route_paths() -> Vec<&'static str> {
    routes().into_iter().map(|(path, _)| path).collect()
}

/// `GET /openapi.json`: the OpenAPI 3.1 document, generated once from the wire types.
async fn openapi() -> axum::response::Response {
    use axum::response::IntoResponse;
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let text = DOC.get_or_init(hearth_api_types::openapi::document_text);
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        text.as_str(),
    )
        .into_response()
}

/// The whole HTTP API.
pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    let mut router = Router::new();
    for (path, handlers) in routes() {
        router = router.route(path, handlers);
    }
    router
        .nest("/api/hearth/v1", rest::routes())
        .route("/setup", get(rest::setup_page))
        .fallback(no_route)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::layer,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}
