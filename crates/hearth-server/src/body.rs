//! The JSON body extractor: size-limited, content type not required (Ollama clients and `curl -d`
//! send whatever), and errors that name the offending field.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::{ApiError, OllamaError, OpenAiError};

/// Reads and parses a JSON body; used by both families' extractors.
async fn parse<T: DeserializeOwned>(req: Request, state: &AppState) -> Result<T, ApiError> {
    let bytes = match Bytes::from_request(req, state).await {
        Ok(b) => b,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(ApiError::BodyTooLarge {
                limit: state.config.max_body_bytes,
            });
        }
        Err(rejection) => return Err(ApiError::Body(rejection.body_text())),
    };
    parse_slice(&bytes)
}

/// Parses JSON, naming the field that did not fit (`messages[0].content: invalid type: …`).
pub fn parse_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // A syntax error has no useful path ("."); a type error names its field.
        if path == "." || inner.is_syntax() || inner.is_eof() {
            ApiError::Json {
                message: inner.to_string(),
                path: None,
            }
        } else {
            ApiError::Json {
                message: format!("{path}: {inner}"),
                path: Some(path),
            }
        }
    })?;
    Ok(value)
}

/// A JSON body of an OpenAI route; rejections use OpenAI's error body.
#[derive(Debug)]
pub struct OpenAiJson<T>(pub T);

/// A JSON body of an Ollama route; rejections use Ollama's error body.
#[derive(Debug)]
pub struct OllamaJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for OpenAiJson<T> {
    type Rejection = OpenAiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(OpenAiJson(parse(req, state).await?))
    }
}

impl<T: DeserializeOwned> FromRequest<AppState> for OllamaJson<T> {
    type Rejection = OllamaError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(OllamaJson(parse(req, state).await?))
    }
}
