//! Every failure becomes an HTTP status, headers and body here, in one place.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hearth_accounts::AccountsError;
use hearth_api_types::{ollama, openai};
use hearth_llm::LlmError;

/// Seconds a client is asked to wait (`Retry-After`) when the model service is busy.
pub const BUSY_RETRY_AFTER_SECS: u64 = 1;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Llm(#[from] LlmError),
    #[error(transparent)]
    Accounts(#[from] AccountsError),
    /// State-changing request on a session without the session's `X-CSRF-Token`.
    #[error(
        "missing or wrong X-CSRF-Token header; send the csrf_token from auth/session with every change"
    )]
    Csrf,
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
    /// Seconds for `Retry-After`, when the client should come back later.
    pub retry_after: Option<u64>,
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
            retry_after: None,
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
                    retry_after: Some(BUSY_RETRY_AFTER_SECS),
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
            ApiError::Csrf => user(
                StatusCode::FORBIDDEN,
                "invalid_request_error",
                Some("csrf"),
                None,
            ),
            ApiError::Accounts(e) => match e {
                AccountsError::BadInput(_) => {
                    user(StatusCode::BAD_REQUEST, "invalid_request_error", None, None)
                }
                AccountsError::Unauthenticated(_) | AccountsError::InvalidCredentials => user(
                    StatusCode::UNAUTHORIZED,
                    "authentication_error",
                    Some("invalid_credentials"),
                    None,
                ),
                AccountsError::MfaRequired => user(
                    StatusCode::UNAUTHORIZED,
                    "authentication_error",
                    Some("mfa_required"),
                    None,
                ),
                AccountsError::InvalidCode => user(
                    StatusCode::UNAUTHORIZED,
                    "authentication_error",
                    Some("invalid_code"),
                    None,
                ),
                AccountsError::AccountDisabled => user(
                    StatusCode::FORBIDDEN,
                    "permission_error",
                    Some("account_disabled"),
                    None,
                ),
                AccountsError::AccountPending => user(
                    StatusCode::FORBIDDEN,
                    "permission_error",
                    Some("account_pending"),
                    None,
                ),
                AccountsError::Forbidden(_) => user(
                    StatusCode::FORBIDDEN,
                    "permission_error",
                    Some("forbidden"),
                    None,
                ),
                AccountsError::NotFound(_) => user(
                    StatusCode::NOT_FOUND,
                    "invalid_request_error",
                    Some("not_found"),
                    None,
                ),
                AccountsError::Conflict(_) => user(
                    StatusCode::CONFLICT,
                    "invalid_request_error",
                    Some("conflict"),
                    None,
                ),
                AccountsError::Throttled { retry_after } => Classified {
                    retry_after: Some(hearth_accounts::retry_after_secs(*retry_after)),
                    ..user(
                        StatusCode::TOO_MANY_REQUESTS,
                        "rate_limit_error",
                        Some("too_many_attempts"),
                        None,
                    )
                },
                AccountsError::Unavailable(_) => {
                    tracing::warn!(error = %self, "accounts unavailable");
                    Classified {
                        retry_after: Some(BUSY_RETRY_AFTER_SECS),
                        ..user(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "server_error",
                            Some("unavailable"),
                            None,
                        )
                    }
                }
                AccountsError::Internal(_) => internal(self),
            },
            ApiError::Llm(LlmError::Internal(_)) | ApiError::Service(_) => internal(self),
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

    /// This error as an OpenAI-shaped response.
    pub(crate) fn into_openai_response(self) -> Response {
        self.into_family_response(Family::OpenAi)
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
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"hearth\""),
            );
        }
        response
    }
}

/// An internal failure: logged here, a generic message for the client.
fn internal(e: &ApiError) -> Classified {
    tracing::error!(error = %e, "request failed with an internal error");
    Classified {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        kind: "server_error",
        code: None,
        param: None,
        message: "internal error; the server log has the details".to_owned(),
        retry_after: None,
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
