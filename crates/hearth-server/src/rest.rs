//! Hearth's own REST API for accounts, under `/api/hearth/v1/`: sign-in, the caller's account
//! (`me/…`), and administration (`admin/…`). Errors use the OpenAI error shape. Resources of
//! another user answer 404, the same as missing ones.

use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{delete, get, post, put};
use hearth_accounts::{
    ApiKey, KeyRequest, LoginRequest, NewAccount, Principal, Role, Session, SignedIn, User, Via,
};
use hearth_store::Uuid;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Authed, accounts_of, client_of, set_cookie};
use crate::body::OpenAiJson as Json;
use crate::{ApiError, AppState, OpenAiError};

type R = Result<Response, OpenAiError>;

fn time(t: SystemTime) -> String {
    hearth_time::rfc3339(t, hearth_time::Precision::Seconds)
}

fn user_json(u: &User) -> Value {
    json!({
        "id": u.id.to_string(),
        "username": u.username,
        "display_name": u.display_name,
        "email": u.email,
        "role": u.role.as_str(),
        "disabled": u.disabled,
        "created_at": time(u.created_at),
        "last_login_at": u.last_login_at.map(time),
    })
}

fn session_json(s: &Session, current: Option<Uuid>) -> Value {
    json!({
        "id": s.id.to_string(),
        "created_at": time(s.created_at),
        "last_seen_at": time(s.last_seen_at),
        "expires_at": time(s.expires_at()),
        "client_address": s.client_address,
        "user_agent": s.user_agent,
        "current": Some(s.id) == current,
    })
}

fn key_json(k: &ApiKey) -> Value {
    json!({
        "id": k.id.to_string(),
        "name": k.name,
        "prefix": k.prefix,
        "routes": k.scopes,
        "models": k.models,
        "created_at": time(k.created_at),
        "expires_at": k.expires_at.map(time),
        "last_used_at": k.last_used_at.map(time),
        "use_count": k.use_count,
        "revoked": k.revoked_at.is_some(),
    })
}

fn ok(v: Value) -> R {
    Ok(axum::Json(v).into_response())
}

/// An id from the path; a malformed one is "not found" like any other unknown id.
fn id(text: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text)
        .map_err(|_| ApiError::Accounts(hearth_accounts::AccountsError::NotFound(what.into())))
}

fn signed_in_response(state: &AppState, s: &SignedIn, status: StatusCode) -> Response {
    let (_, lifetime) = state
        .auth
        .accounts
        .as_ref()
        .map_or((Duration::ZERO, Duration::ZERO), |a| a.session_lifetimes());
    let mut r = (
        status,
        axum::Json(json!({
            "user": user_json(&s.user),
            "csrf_token": s.csrf,
            "session": session_json(&s.session, Some(s.session.id)),
            "mfa_enrolment_required": s.restriction == hearth_accounts::Restriction::EnrolMfaOnly,
        })),
    )
        .into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(&state.auth, Some(&s.token), lifetime.as_secs()),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
    #[serde(default)]
    code: Option<String>,
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    Json(b): Json<LoginBody>,
) -> R {
    let accounts = accounts_of(&state)?;
    let client = client_of(&headers, &ext);
    let s = accounts
        .login(
            &LoginRequest {
                username: b.username,
                password: b.password,
                code: b.code,
            },
            &client,
        )
        .await
        .map_err(ApiError::from)?;
    // A session the client had before signing in ends (rotation).
    if let Some(old) = crate::auth::session_cookie(&headers)
        && let Ok(Some(p)) = accounts.authenticate_session(old).await
        && let Some(id) = p.session_id()
        && id != s.session.id
    {
        let _ = accounts.logout(&p, &client).await;
    }
    Ok(signed_in_response(&state, &s, StatusCode::OK))
}

async fn logout(State(state): State<AppState>, a: Authed) -> R {
    a.accounts
        .logout(&a.principal, &a.client)
        .await
        .map_err(ApiError::from)?;
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, set_cookie(&state.auth, None, 0));
    Ok(r)
}

fn me_json(p: &Principal) -> Value {
    let csrf = match &p.via {
        Via::Session { csrf, .. } => Some(csrf.clone()),
        _ => None,
    };
    json!({
        "user": p.user.as_ref().map(user_json),
        "permissions": p.grant.permissions.names(),
        "csrf_token": csrf,
        "via": match p.via { Via::Session { .. } => "session", Via::Key { .. } => "api_key", Via::Local => "local" },
        "mfa_enrolment_required": matches!(p.via, Via::Session { restriction: hearth_accounts::Restriction::EnrolMfaOnly, .. }),
    })
}

async fn session(a: Authed) -> R {
    ok(me_json(&a.principal))
}

async fn me(a: Authed) -> R {
    let (mfa, codes_left) = a
        .accounts
        .totp_status(&a.principal)
        .await
        .map_err(ApiError::from)?;
    let mut v = me_json(&a.principal);
    v["mfa_enabled"] = json!(mfa);
    v["recovery_codes_left"] = json!(codes_left);
    ok(v)
}

async fn setup_status(State(state): State<AppState>) -> R {
    let accounts = accounts_of(&state)?;
    ok(json!({ "setup_pending": accounts.setup_pending() }))
}

#[derive(Deserialize)]
struct SetupBody {
    token: String,
    username: String,
    password: String,
}

async fn setup(
    State(state): State<AppState>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    Json(b): Json<SetupBody>,
) -> R {
    let accounts = accounts_of(&state)?;
    let client = client_of(&headers, &ext);
    let u = accounts
        .setup(&b.token, &b.username, &b.password, &client)
        .await
        .map_err(ApiError::from)?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "user": user_json(&u) })),
    )
        .into_response())
}

#[derive(Deserialize)]
struct SignupBody {
    username: String,
    password: String,
}

async fn signup(
    State(state): State<AppState>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    Json(b): Json<SignupBody>,
) -> R {
    let accounts = accounts_of(&state)?;
    let client = client_of(&headers, &ext);
    let u = accounts
        .signup(&b.username, &b.password, &client)
        .await
        .map_err(ApiError::from)?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "user": user_json(&u) })),
    )
        .into_response())
}

#[derive(Deserialize)]
struct PasswordBody {
    current_password: String,
    new_password: String,
}

async fn change_password(a: Authed, Json(b): Json<PasswordBody>) -> R {
    let ended = a
        .accounts
        .change_password(
            &a.principal,
            &b.current_password,
            &b.new_password,
            &a.client,
        )
        .await
        .map_err(ApiError::from)?;
    ok(json!({ "other_sessions_ended": ended }))
}

async fn my_sessions(a: Authed) -> R {
    let list = a
        .accounts
        .my_sessions(&a.principal)
        .await
        .map_err(ApiError::from)?;
    let current = a.principal.session_id();
    ok(json!({ "sessions": list.iter().map(|s| session_json(s, current)).collect::<Vec<_>>() }))
}

async fn end_my_session(a: Authed, Path(sid): Path<String>) -> R {
    let sid = id(&sid, "session")?;
    a.accounts
        .end_my_session(&a.principal, sid, &a.client)
        .await
        .map_err(ApiError::from)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn totp_status(a: Authed) -> R {
    let (on, left) = a
        .accounts
        .totp_status(&a.principal)
        .await
        .map_err(ApiError::from)?;
    ok(json!({ "enabled": on, "recovery_codes_left": left }))
}

async fn totp_enrol(a: Authed) -> R {
    let e = a
        .accounts
        .totp_enrol(&a.principal, &a.client)
        .await
        .map_err(ApiError::from)?;
    let mut r = axum::Json(json!({
        "secret": e.secret,
        "otpauth_uri": e.otpauth_uri,
        "qr_svg": e.qr_svg,
        "recovery_codes": e.recovery_codes,
    }))
    .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

#[derive(Deserialize)]
struct CodeBody {
    code: String,
}

async fn totp_confirm(a: Authed, Json(b): Json<CodeBody>) -> R {
    a.accounts
        .totp_confirm(&a.principal, &b.code, &a.client)
        .await
        .map_err(ApiError::from)?;
    ok(json!({ "enabled": true }))
}

async fn totp_disable(a: Authed, Json(b): Json<CodeBody>) -> R {
    a.accounts
        .totp_disable(&a.principal, &b.code, &a.client)
        .await
        .map_err(ApiError::from)?;
    ok(json!({ "enabled": false }))
}

async fn list_keys(a: Authed) -> R {
    let keys = a
        .accounts
        .list_keys(&a.principal, None)
        .await
        .map_err(ApiError::from)?;
    ok(json!({ "keys": keys.iter().map(key_json).collect::<Vec<_>>() }))
}

#[derive(Deserialize)]
struct KeyBody {
    name: String,
    #[serde(default)]
    routes: Vec<String>,
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    expires_in_days: Option<u32>,
}

async fn create_key(a: Authed, Json(b): Json<KeyBody>) -> R {
    let created = a
        .accounts
        .create_key(
            &a.principal,
            None,
            &KeyRequest {
                name: b.name,
                routes: b.routes,
                models: b.models,
                expires_in: b
                    .expires_in_days
                    .map(|d| Duration::from_secs(u64::from(d) * 86_400)),
            },
            &a.client,
        )
        .await
        .map_err(ApiError::from)?;
    let mut v = key_json(&created.key);
    v["key"] = json!(created.secret);
    let mut r = (StatusCode::CREATED, axum::Json(v)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

async fn revoke_key(a: Authed, Path(kid): Path<String>) -> R {
    let kid = id(&kid, "API key")?;
    a.accounts
        .revoke_key(&a.principal, kid, &a.client)
        .await
        .map_err(ApiError::from)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn admin_users(a: Authed) -> R {
    let users = a
        .accounts
        .list_users(&a.principal, &a.client)
        .await
        .map_err(ApiError::from)?;
    ok(json!({ "users": users.iter().map(user_json).collect::<Vec<_>>() }))
}

fn role(text: &str) -> Result<Role, ApiError> {
    Role::parse(text).ok_or_else(|| {
        ApiError::invalid(
            "role",
            format!("unknown role {text:?}; use admin, user, viewer or pending"),
        )
    })
}

#[derive(Deserialize)]
struct NewUserBody {
    username: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default = "default_role")]
    role: String,
}

fn default_role() -> String {
    "user".to_owned()
}

async fn admin_create_user(a: Authed, Json(b): Json<NewUserBody>) -> R {
    let u = a
        .accounts
        .create_user(
            &a.principal,
            &NewAccount {
                username: b.username,
                password: b.password,
                role: role(&b.role)?,
            },
            &a.client,
        )
        .await
        .map_err(ApiError::from)?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "user": user_json(&u) })),
    )
        .into_response())
}

#[derive(Deserialize)]
struct RoleBody {
    role: String,
}

async fn admin_set_role(a: Authed, Path(uid): Path<String>, Json(b): Json<RoleBody>) -> R {
    let uid = id(&uid, "user")?;
    a.accounts
        .set_role(&a.principal, uid, role(&b.role)?, &a.client)
        .await
        .map_err(ApiError::from)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct DisableBody {
    #[serde(default = "yes")]
    disabled: bool,
}

fn yes() -> bool {
    true
}

async fn admin_disable(a: Authed, Path(uid): Path<String>, Json(b): Json<DisableBody>) -> R {
    let uid = id(&uid, "user")?;
    a.accounts
        .set_disabled(&a.principal, uid, b.disabled, &a.client)
        .await
        .map_err(ApiError::from)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn admin_end_sessions(a: Authed, Path(uid): Path<String>) -> R {
    let uid = id(&uid, "user")?;
    let n = a
        .accounts
        .end_user_sessions(&a.principal, uid, &a.client)
        .await
        .map_err(ApiError::from)?;
    ok(json!({ "sessions_ended": n }))
}

async fn admin_groups(a: Authed) -> R {
    let groups = a
        .accounts
        .list_groups(&a.principal, &a.client)
        .await
        .map_err(ApiError::from)?;
    ok(json!({ "groups": groups }))
}

#[derive(Deserialize)]
struct GroupBody {
    #[serde(default)]
    permissions: Vec<String>,
    #[serde(default)]
    members: Vec<String>,
}

async fn admin_put_group(a: Authed, Path(name): Path<String>, Json(b): Json<GroupBody>) -> R {
    let members = b
        .members
        .iter()
        .map(|m| id(m, "user"))
        .collect::<Result<Vec<_>, _>>()?;
    let g = a
        .accounts
        .put_group(&a.principal, &name, &b.permissions, &members, &a.client)
        .await
        .map_err(ApiError::from)?;
    ok(json!(g))
}

async fn admin_delete_group(a: Authed, Path(gid): Path<String>) -> R {
    let gid = id(&gid, "group")?;
    a.accounts
        .delete_group(&a.principal, gid, &a.client)
        .await
        .map_err(ApiError::from)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct TailQuery {
    #[serde(default)]
    n: Option<u32>,
}

async fn audit_tail(a: Authed, Query(q): Query<TailQuery>) -> R {
    let events = a
        .accounts
        .audit_tail(&a.principal, q.n.unwrap_or(100))
        .await
        .map_err(ApiError::from)?;
    ok(json!({ "events": events }))
}

async fn audit_verify(a: Authed) -> R {
    let r = a
        .accounts
        .audit_verify(&a.principal)
        .await
        .map_err(ApiError::from)?;
    ok(json!({ "ok": r.ok(), "report": r }))
}

async fn audit_export(a: Authed) -> R {
    let mut out: Vec<u8> = Vec::new();
    a.accounts
        .audit_export(&a.principal, &mut out)
        .await
        .map_err(ApiError::from)?;
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], out).into_response())
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: String,
    state: String,
}

async fn oidc_start(State(state): State<AppState>) -> R {
    let accounts = accounts_of(&state)?;
    let url = accounts.oidc_start().await.map_err(ApiError::from)?;
    Ok(Redirect::to(&url).into_response())
}

async fn oidc_callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    Query(q): Query<CallbackQuery>,
) -> R {
    let accounts = accounts_of(&state)?;
    let client = client_of(&headers, &ext);
    let s = accounts
        .oidc_callback(&q.code, &q.state, &client)
        .await
        .map_err(ApiError::from)?;
    let mut r = signed_in_response(&state, &s, StatusCode::SEE_OTHER);
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/"));
    Ok(r)
}

/// The account routes, to nest under `/api/hearth/v1`.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/logout", post(logout))
        .route("/auth/session", get(session))
        .route("/auth/setup", get(setup_status).post(setup))
        .route("/auth/signup", post(signup))
        .route("/auth/oidc/start", get(oidc_start))
        .route("/auth/oidc/callback", get(oidc_callback))
        .route("/me", get(me))
        .route("/me/password", post(change_password))
        .route("/me/sessions", get(my_sessions))
        .route("/me/sessions/{id}", delete(end_my_session))
        .route("/me/totp", get(totp_status).post(totp_enrol))
        .route("/me/totp/confirm", post(totp_confirm))
        .route("/me/totp/disable", post(totp_disable))
        .route("/me/keys", get(list_keys).post(create_key))
        .route("/me/keys/{id}", delete(revoke_key))
        .route("/admin/users", get(admin_users).post(admin_create_user))
        .route("/admin/users/{id}/role", put(admin_set_role))
        .route("/admin/users/{id}/disable", post(admin_disable))
        .route("/admin/users/{id}/sessions", delete(admin_end_sessions))
        .route("/admin/groups", get(admin_groups))
        .route("/admin/groups/{name}", put(admin_put_group))
        .route("/admin/groups/id/{id}", delete(admin_delete_group))
        .route("/admin/audit", get(audit_tail))
        .route("/admin/audit/verify", get(audit_verify))
        .route("/admin/audit/export", get(audit_export))
}

/// The page the first-start link opens: a form that posts the token (read from the URL by the
/// page's script, never echoed into the HTML) with the new admin's name and password.
const SETUP_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Hearth setup</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:16px system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem}
label,input,button{display:block;width:100%;margin:.4rem 0}input{padding:.4rem}</style></head>
<body><h1>Create the first admin</h1>
<p>This link works once. Choose a password of at least 8 characters that is not a common one.</p>
<form id="f"><label>User name <input id="u" autocomplete="username" required></label>
<label>Password <input id="p" type="password" autocomplete="new-password" required minlength="8"></label>
<button>Create admin</button></form><p id="m" role="status"></p>
<script>
const token = new URLSearchParams(location.search).get("token") || "";
document.getElementById("f").addEventListener("submit", async (e) => {
  e.preventDefault();
  const r = await fetch("/api/hearth/v1/auth/setup", {method: "POST",
    headers: {"content-type": "application/json"},
    body: JSON.stringify({token, username: document.getElementById("u").value,
                          password: document.getElementById("p").value})});
  const body = await r.json().catch(() => ({}));
  document.getElementById("m").textContent = r.ok
    ? "Done: sign in with these details." : ((body.error && body.error.message) || "Failed.");
});
</script></body></html>"#;

pub(crate) async fn setup_page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
            ),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        SETUP_PAGE,
    )
        .into_response()
}
