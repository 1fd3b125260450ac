//! Hearth's HTTP API: OpenAI- and Ollama-compatible routes over the model service.
//!
//! The server knows HTTP and wire formats and nothing about models: every model question goes to
//! [`hearth_llm::ModelService`]. [`router`] builds the whole API from an [`AppState`]; tests call
//! it without a socket or serve it on `127.0.0.1:0`.
//!
//! Code map: `error` maps every failure to a status and body, once; `body` is the JSON extractor;
//! `generation` turns a [`hearth_llm::GenerationStream`] into a response body (the body owns the
//! stream, so a client that goes away cancels its generation); `openai`, `ollama` and
//! `embeddings` hold the handlers and the hand-written conversions between wire and domain
//! types; `metrics` is the Prometheus text endpoint; `wire` has ids, timestamps and durations;
//! `auth` is the auth layer (API keys and session cookies on the model routes, the [`Authed`]
//! extractor) and `rest` the account routes under `/api/hearth/v1/`.
#![forbid(unsafe_code)]

mod auth;
mod body;
mod embeddings;
mod error;
mod generation;
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
use axum::routing::{get, post};
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
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_body_bytes: 8 * 1024 * 1024,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            system_fingerprint: None,
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

/// The whole HTTP API.
pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/embeddings", post(embeddings::openai))
        .route("/v1/models", get(openai::list_models))
        .route("/v1/models/{*id}", get(openai::get_model))
        .route("/api/chat", post(ollama::chat))
        .route("/api/generate", post(ollama::generate))
        .route("/api/embed", post(embeddings::ollama_embed))
        .route("/api/embeddings", post(embeddings::ollama_embeddings))
        .route("/api/tags", get(ollama::tags))
        .route("/api/show", post(ollama::show))
        .route("/api/ps", get(ollama::ps))
        .route("/api/version", get(ollama::version))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics::scrape))
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
