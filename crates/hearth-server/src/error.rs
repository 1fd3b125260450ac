//! Every failure becomes an HTTP status, headers and body here, in one place.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hearth_api_types::{ollama, openai};
use hearth_llm::LlmError;

/// Seconds a client is asked to wait (`Retry-After`) when the model service is busy.
pub const BUSY_RETRY_AFTER_SECS: u64 = 1;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Llm(#[from] LlmError),
    /// The body is not JSON of the expected shape; `path` names the offending field.
    #[error("invalid JSON body: {message}")]
    Json {
        message: String,
        path: Option<String>,
    },
    #[error("request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("could not read the request body: {0}")]
    Body(String),
    /// A well-formed request asking for something not supported or not valid.
    #[error("{message}")]
    Invalid {
        message: String,
        param: Option<&'static str>,
    },
    /// No route has this method and path.
    #[error("no API route for {method} {path}; see the API reference for the routes served")]
    NoRoute { method: String, path: String },
    /// The model service broke its contract (e.g. closed a stream without a final event).
    #[error("model service: {0}")]
    Service(String),
}

impl ApiError {
    pub fn invalid(param: &'static str, message: impl Into<String>) -> Self {
        ApiError::Invalid {
            message: message.into(),
            param: Some(param),
        }
    }
}

/// Which API family's error body to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    OpenAi,
    Ollama,
}

/// The classified error, before it is rendered for one family.
#[derive(Debug)]
pub struct Classified {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: Option<&'static str>,
    pub param: Option<String>,
    pub message: String,
    pub retry_after: bool,
}

impl ApiError {
    /// The one mapping from errors to statuses. Internal details are logged here and replaced by
    /// a generic message.
    pub fn classify(&self, family: Family) -> Classified {
        let user = |status, kind, code, param: Option<String>| Classified {
            status,
            kind,
            code,
            param,
            message: self.to_string(),
            retry_after: false,
        };
        match self {
            ApiError::Llm(LlmError::ModelNotFound(_)) => user(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("model_not_found"),
                Some("model".to_owned()),
            ),
            ApiError::Llm(LlmError::NotFound(_)) => user(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("not_found"),
                None,
            ),
            ApiError::Llm(LlmError::BadRequest(_)) => {
                user(StatusCode::BAD_REQUEST, "invalid_request_error", None, None)
            }
            ApiError::Llm(LlmError::Busy(_)) => {
                let status = match family {
                    Family::OpenAi => StatusCode::TOO_MANY_REQUESTS,
                    Family::Ollama => StatusCode::SERVICE_UNAVAILABLE,
                };
                Classified {
                    retry_after: true,
                    ..user(status, "server_busy_error", Some("server_busy"), None)
                }
            }
            ApiError::Llm(LlmError::Unavailable(_)) => user(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                Some("upstream_unavailable"),
                None,
            ),
            ApiError::Llm(LlmError::NotSupported(_)) => user(
                StatusCode::NOT_IMPLEMENTED,
                "invalid_request_error",
                Some("not_supported"),
                None,
            ),
            ApiError::Json { path, .. } => user(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                path.clone(),
            ),
            ApiError::BodyTooLarge { .. } => user(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                Some("request_too_large"),
                None,
            ),
            ApiError::NoRoute { .. } => user(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("unknown_url"),
                None,
            ),
            ApiError::Body(_) => user(StatusCode::BAD_REQUEST, "invalid_request_error", None, None),
            ApiError::Invalid { param, .. } => user(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                param.map(str::to_owned),
            ),
            ApiError::Llm(LlmError::Internal(_)) | ApiError::Service(_) => {
                tracing::error!(error = %self, "request failed with an internal error");
                Classified {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    kind: "server_error",
                    code: None,
                    param: None,
                    message: "internal error; the server log has the details".to_owned(),
                    retry_after: false,
                }
            }
        }
    }

    /// The JSON error body of `family`, for use inside a stream that has already started.
    pub fn body_json(&self, family: Family) -> String {
        let c = self.classify(family);
        let text = match family {
            Family::OpenAi => serde_json::to_string(&openai_body(c)),
            Family::Ollama => serde_json::to_string(&ollama::ErrorBody { error: c.message }),
        };
        text.unwrap_or_else(|_| r#"{"error":"internal error"}"#.to_owned())
    }

    fn into_family_response(self, family: Family) -> Response {
        let c = self.classify(family);
        let status = c.status;
        let retry_after = c.retry_after;
        let mut response = match family {
            Family::OpenAi => (status, axum::Json(openai_body(c))).into_response(),
            Family::Ollama => {
                (status, axum::Json(ollama::ErrorBody { error: c.message })).into_response()
            }
        };
        if retry_after {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(BUSY_RETRY_AFTER_SECS),
            );
        }
        response
    }
}

fn openai_body(c: Classified) -> openai::ErrorBody {
    openai::ErrorBody {
        error: openai::ErrorDetail {
            message: c.message,
            kind: c.kind.to_owned(),
            param: c.param,
            code: c.code.map(str::to_owned),
        },
    }
}

/// An [`ApiError`] answered with OpenAI's error body.
#[derive(Debug)]
pub struct OpenAiError(pub ApiError);

/// An [`ApiError`] answered with Ollama's error body.
#[derive(Debug)]
pub struct OllamaError(pub ApiError);

impl<E: Into<ApiError>> From<E> for OpenAiError {
    fn from(e: E) -> Self {
        OpenAiError(e.into())
    }
}

impl<E: Into<ApiError>> From<E> for OllamaError {
    fn from(e: E) -> Self {
        OllamaError(e.into())
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        self.0.into_family_response(Family::OpenAi)
    }
}

impl IntoResponse for OllamaError {
    fn into_response(self) -> Response {
        self.0.into_family_response(Family::Ollama)
    }
}
