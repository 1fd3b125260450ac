//! The auth layer: who is calling, and may they.
//!
//! In the request path it sits between the metrics layer and the handlers. On the OpenAI
//! (`/v1/…`) and Ollama (`/api/…`) routes it accepts `Authorization: Bearer hearth_…` API keys
//! (or a web session cookie, with `X-CSRF-Token` on changes); in required mode a request without
//! one is answered 401 in the family's error shape. A key's scope limits route families and
//! models: a model outside the key's models is "model not found" (404), so a key cannot learn
//! which models exist beyond its own. The account routes (`/api/hearth/v1/…`) authenticate in
//! their handlers through the [`Authed`] extractor.
//!
//! Open mode (a loopback-only server by default): requests without credentials pass as the
//! machine's owner. OpenAI and Ollama clients send a placeholder key even when none is needed,
//! so in open mode only bearer tokens that look like Hearth keys (`hearth_…`) are checked.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hearth_accounts::{
    Accounts, AccountsError, Client, ModelPattern, Permission, Principal, RouteFamily,
};
use hearth_llm::LlmError;

use crate::{ApiError, AppState, OllamaError, OpenAiError};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "hearth_session";
/// The header carrying a session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How the server authenticates.
#[derive(Clone, Default)]
pub struct AuthSettings {
    /// `None`: no accounts database; every route but the account routes is open.
    pub accounts: Option<Arc<Accounts>>,
    /// Model routes need a key or a session.
    pub required: bool,
    /// Mark the session cookie `Secure`. Off only when serving plain http on loopback: a Secure
    /// cookie set over plain http is not sent back by most non-browser clients (and some
    /// browsers), so sign-in would silently fail, while loopback traffic never leaves the machine
    /// and so has nothing for `Secure` to protect. Beyond loopback, serve behind TLS.
    pub secure_cookie: bool,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("accounts", &self.accounts.is_some())
            .field("required", &self.required)
            .field("secure_cookie", &self.secure_cookie)
            .finish()
    }
}

/// The client's address and user agent.
pub(crate) fn client_of(headers: &HeaderMap, ext: &axum::http::Extensions) -> Client {
    Client {
        address: ext
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(a)| a.ip()),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect()),
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The `hearth_session` cookie's value.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == SESSION_COOKIE).then_some(v)
        })
}

fn is_safe(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// `Set-Cookie` for a new session (`None`: clear it).
pub(crate) fn set_cookie(
    settings: &AuthSettings,
    token: Option<&str>,
    max_age: u64,
) -> HeaderValue {
    let secure = if settings.secure_cookie {
        "; Secure"
    } else {
        ""
    };
    let text = match token {
        Some(t) => format!(
            "{SESSION_COOKIE}={t}; HttpOnly{secure}; SameSite=Lax; Path=/; Max-Age={max_age}"
        ),
        None => format!("{SESSION_COOKIE}=; HttpOnly{secure}; SameSite=Lax; Path=/; Max-Age=0"),
    };
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Who is calling, from a key or a session cookie (with the CSRF check on changes); `Ok(None)`
/// when the request carries neither. `hearth_keys_only`: ignore bearer tokens that are not
/// Hearth keys (open mode on the model routes).
pub(crate) async fn identify(
    accounts: &Accounts,
    method: &Method,
    headers: &HeaderMap,
    client: &Client,
    hearth_keys_only: bool,
) -> Result<Option<Principal>, ApiError> {
    if let Some(token) = bearer(headers)
        && (!hearth_keys_only || token.starts_with("hearth_"))
    {
        return Ok(Some(accounts.authenticate_key(token, client).await?));
    }
    let Some(cookie) = session_cookie(headers) else {
        return Ok(None);
    };
    let Some(p) = accounts.authenticate_session(cookie).await? else {
        return Err(AccountsError::Unauthenticated(
            "your session has ended (signed out, expired or revoked); sign in again".into(),
        )
        .into());
    };
    if !is_safe(method) {
        let presented = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if !accounts.check_csrf(&p, presented) {
            return Err(ApiError::Csrf);
        }
    }
    Ok(Some(p))
}

/// An authenticated caller of an account route.
#[derive(Debug, Clone)]
pub struct Authed {
    pub principal: Principal,
    pub client: Client,
    pub accounts: Arc<Accounts>,
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = OpenAiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, OpenAiError> {
        let accounts = accounts_of(state)?;
        let client = client_of(&parts.headers, &parts.extensions);
        match identify(&accounts, &parts.method, &parts.headers, &client, false).await? {
            Some(principal) => Ok(Authed {
                principal,
                client,
                accounts,
            }),
            None => Err(OpenAiError(ApiError::Accounts(
                AccountsError::Unauthenticated(
                    "sign in first (POST /api/hearth/v1/auth/login) or send an API key".into(),
                ),
            ))),
        }
    }
}

/// The accounts service, or 503 when the server runs without a database.
pub(crate) fn accounts_of(state: &AppState) -> Result<Arc<Accounts>, ApiError> {
    state.auth.accounts.clone().ok_or_else(|| {
        ApiError::Accounts(AccountsError::Unavailable(
            "accounts are not available on this server (it was started without a database)".into(),
        ))
    })
}

#[derive(serde::Deserialize)]
struct ModelField {
    model: Option<String>,
    name: Option<String>,
}

/// Which API family a path belongs to (`None`: neither model API).
fn family_of(path: &str) -> Option<RouteFamily> {
    if path.starts_with("/api/hearth/") {
        None
    } else if path.starts_with("/v1/") {
        Some(RouteFamily::OpenAi)
    } else if path.starts_with("/api/") {
        Some(RouteFamily::Ollama)
    } else {
        None
    }
}

/// Ollama's model-management routes (pull, delete, copy, create, blobs): they change what the
/// server holds for everyone, so they need the right to manage models, not just to use them.
fn manages_models(path: &str) -> bool {
    matches!(
        path,
        "/api/pull" | "/api/delete" | "/api/copy" | "/api/create"
    ) || path.starts_with("/api/blobs/")
}

fn family_error(family: RouteFamily, e: ApiError) -> Response {
    match family {
        RouteFamily::OpenAi => OpenAiError(e).into_response(),
        _ => OllamaError(e).into_response(),
    }
}

/// The layer on every route (see the module docs).
pub(crate) async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(family) = family_of(req.uri().path()) else {
        return next.run(req).await;
    };
    let Some(accounts) = state.auth.accounts.clone() else {
        return next.run(req).await;
    };
    let client = client_of(req.headers(), req.extensions());
    let principal = match identify(
        &accounts,
        req.method(),
        req.headers(),
        &client,
        !state.auth.required,
    )
    .await
    {
        Ok(p) => p,
        Err(e) => return family_error(family, e),
    };
    let Some(principal) = principal else {
        if state.auth.required {
            let _ = accounts
                .audit_access(None, "api.access", req.uri().path(), false, &client)
                .await;
            return family_error(
                family,
                AccountsError::Unauthenticated(
                    "this server requires an API key: send Authorization: Bearer hearth_…; create one with `hearth key create` or in your account settings".into(),
                )
                .into(),
            );
        }
        return next.run(req).await;
    };
    let path = req.uri().path().to_owned();
    let reads = is_safe(req.method()) || path == "/api/show";
    let permission = if manages_models(&path) {
        Permission::ManageModels
    } else if reads {
        Permission::ListModels
    } else {
        Permission::UseModels
    };
    if !principal.allows(family, permission, None) {
        let _ = accounts
            .audit_access(Some(&principal), "api.access", &path, false, &client)
            .await;
        return family_error(
            family,
            AccountsError::Forbidden(format!(
                "use {} routes with this key or account ({})",
                family.as_str(),
                permission.as_str()
            ))
            .into(),
        );
    }
    // A key limited to some models: find the model the request names.
    let limited = principal
        .grant
        .scope
        .as_ref()
        .is_some_and(|s| !s.models.contains(&ModelPattern::Any));
    if !limited {
        return next.run(req).await;
    }
    if matches!(path.as_str(), "/v1/models" | "/api/tags" | "/api/ps") {
        // Lists show only the models the key may use.
        let response = next.run(req).await;
        return filter_models(response, &principal).await;
    }
    let (parts, body) = req.into_parts();
    let model = if let Some(id) = path.strip_prefix("/v1/models/") {
        Some(id.to_owned())
    } else if is_safe(&parts.method) {
        None
    } else {
        let bytes = match axum::body::to_bytes(body, state.config.max_body_bytes).await {
            Ok(b) => b,
            Err(_) => {
                return family_error(
                    family,
                    ApiError::BodyTooLarge {
                        limit: state.config.max_body_bytes,
                    },
                );
            }
        };
        let model = serde_json::from_slice::<ModelField>(&bytes)
            .ok()
            .and_then(|m| m.model.or(m.name));
        let req = Request::from_parts(parts, Body::from(bytes));
        return match model {
            Some(m) if !principal.allows(family, permission, Some(&m)) => {
                let _ = accounts
                    .audit_access(Some(&principal), "api.model_access", &m, false, &client)
                    .await;
                family_error(family, ApiError::Llm(LlmError::ModelNotFound(m)))
            }
            _ => next.run(req).await,
        };
    };
    match model {
        Some(m) if !principal.allows(family, permission, Some(&m)) => {
            family_error(family, ApiError::Llm(LlmError::ModelNotFound(m)))
        }
        _ => next.run(Request::from_parts(parts, body)).await,
    }
}

/// Removes the models `principal` may not use from a model list (`data[].id` on OpenAI's,
/// `models[].name` on Ollama's).
async fn filter_models(response: Response, principal: &Principal) -> Response {
    if !response.status().is_success() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024 * 1024).await else {
        return ApiError::Service("model list too large to filter".into()).into_openai_response();
    };
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let allowed = |m: &serde_json::Value, field: &str| {
        m.get(field).and_then(|n| n.as_str()).is_some_and(|n| {
            principal
                .grant
                .scope
                .as_ref()
                .is_none_or(|s| s.allows_model(n))
        })
    };
    if let Some(list) = v.get_mut("data").and_then(|d| d.as_array_mut()) {
        list.retain(|m| allowed(m, "id"));
    }
    if let Some(list) = v.get_mut("models").and_then(|d| d.as_array_mut()) {
        list.retain(|m| allowed(m, "name"));
    }
    let body = serde_json::to_vec(&v).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}
