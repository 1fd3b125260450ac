//! Accounts end to end: the router with a real accounts service over SQLite in a temporary
//! folder, served on 127.0.0.1:0 with client addresses, driven over real HTTP. Each test names
//! the OWASP ASVS 5.0 requirements it covers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hearth_accounts::{Accounts, AccountsConfig, Bootstrap};
use hearth_auth::password::{HashParams, PasswordHasher};
use hearth_server::{AppState, AuthSettings, ServerConfig, router};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::http::{Reply, parse};
use crate::scripted::{SMOL, ScriptedModels};

pub struct Env {
    pub addr: SocketAddr,
    pub accounts: Arc<Accounts>,
    pub setup_token: Option<String>,
    _dir: tempfile::TempDir,
}

/// Cheap password hashing: the tests exercise the flows, `hearth-auth` the parameters.
fn test_config() -> AccountsConfig {
    AccountsConfig {
        hasher: PasswordHasher::new(HashParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap(),
        ..AccountsConfig::default()
    }
}

pub async fn env_with(required: bool, tweak: impl FnOnce(&mut AccountsConfig)) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hearth.db");
    let stores = hearth_store_sqlite::open(&db.display().to_string())
        .await
        .unwrap();
    let mut config = test_config();
    tweak(&mut config);
    let accounts = Accounts::new(stores, config);
    let setup_token = match accounts.bootstrap().await.unwrap() {
        Bootstrap::SetupToken { token, .. } => Some(token),
        _ => None,
    };
    let mut state = AppState::new(
        Arc::new(ScriptedModels::default()),
        ServerConfig {
            max_body_bytes: 64 * 1024,
            version: "0.0.0-test".to_owned(),
            system_fingerprint: None,
            max_choices: 8,
        },
    );
    state.auth = AuthSettings {
        accounts: Some(accounts.clone()),
        required,
        secure_cookie: false,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Env {
        addr,
        accounts,
        setup_token,
        _dir: dir,
    }
}

pub async fn env(required: bool) -> Env {
    env_with(required, |_| {}).await
}

/// How a request authenticates.
#[derive(Clone, Default)]
pub struct As {
    pub cookie: Option<String>,
    pub csrf: Option<String>,
    pub key: Option<String>,
}

impl As {
    fn key(k: &str) -> Self {
        As {
            key: Some(k.to_owned()),
            ..As::default()
        }
    }
    /// The session without its CSRF token.
    fn no_csrf(&self) -> Self {
        As {
            csrf: None,
            ..self.clone()
        }
    }
}

pub async fn call(env: &Env, method: &str, path: &str, who: &As, body: Option<Value>) -> Reply {
    let addr = env.addr;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(c) = &who.cookie {
        head.push_str(&format!("Cookie: hearth_session={c}\r\n"));
    }
    if let Some(c) = &who.csrf {
        head.push_str(&format!("X-CSRF-Token: {c}\r\n"));
    }
    if let Some(k) = &who.key {
        head.push_str(&format!("Authorization: Bearer {k}\r\n"));
    }
    let body = body.map(|b| b.to_string().into_bytes());
    if let Some(b) = &body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.as_deref().unwrap_or_default());
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&bytes).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    parse(&raw)
}

fn json_of(r: &Reply) -> Value {
    serde_json::from_str(&r.body).unwrap_or(Value::Null)
}

/// One expectation: the status, and (when given) the error code.
#[track_caller]
fn check(r: &Reply, status: u16, code: Option<&str>) {
    assert_eq!(r.status, status, "body: {}", r.body);
    if let Some(code) = code {
        assert_eq!(json_of(r)["error"]["code"], code, "body: {}", r.body);
    }
}

const V1: &str = "/api/hearth/v1";

fn p(path: &str) -> String {
    format!("{V1}/{path}")
}

/// Signs in; returns the session (cookie and CSRF token).
pub async fn login(env: &Env, username: &str, password: &str, code: Option<&str>) -> Reply {
    let mut body = json!({ "username": username, "password": password });
    if let Some(c) = code {
        body["code"] = json!(c);
    }
    call(env, "POST", &p("auth/login"), &As::default(), Some(body)).await
}

fn session_of(r: &Reply) -> As {
    assert_eq!(r.status, 200, "sign-in failed: {}", r.body);
    let cookie = r
        .headers
        .iter()
        .find(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.clone())
        .expect("a Set-Cookie header");
    let token = cookie
        .strip_prefix("hearth_session=")
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_owned();
    As {
        cookie: Some(token),
        csrf: json_of(r)["csrf_token"].as_str().map(str::to_owned),
        key: None,
    }
}

pub async fn sign_in(env: &Env, username: &str, password: &str) -> As {
    session_of(&login(env, username, password, None).await)
}

const ADMIN_PW: &str = "correct horse battery staple";
const PW: &str = "a long enough passphrase";

/// The first admin, through the setup token; signed in.
async fn admin(env: &Env) -> As {
    let r = call(
        env,
        "POST",
        &p("auth/setup"),
        &As::default(),
        Some(json!({ "token": env.setup_token.clone().unwrap(), "username": "root", "password": ADMIN_PW })),
    )
    .await;
    check(&r, 201, None);
    sign_in(env, "root", ADMIN_PW).await
}

/// A user created by the admin, with `role`; returns (id, session).
async fn user(env: &Env, admin: &As, name: &str, role: &str) -> (String, As) {
    let r = call(
        env,
        "POST",
        &p("admin/users"),
        admin,
        Some(json!({ "username": name, "password": PW, "role": role })),
    )
    .await;
    check(&r, 201, None);
    let id = json_of(&r)["user"]["id"].as_str().unwrap().to_owned();
    (id, sign_in(env, name, PW).await)
}

async fn create_key(env: &Env, who: &As, body: Value) -> Reply {
    call(env, "POST", &p("me/keys"), who, Some(body)).await
}

fn secret(r: &Reply) -> String {
    assert_eq!(r.status, 201, "{}", r.body);
    json_of(r)["key"].as_str().unwrap().to_owned()
}

/// ASVS 5.0: 6.3.x setup (no default password: the first admin comes from a one-time token),
/// 7.2.4 (a new session token at sign-in).
#[tokio::test]
async fn setup_token_works_once() {
    let env = env(false).await;
    let token = env.setup_token.clone().unwrap();
    let r = call(&env, "GET", &p("auth/setup"), &As::default(), None).await;
    assert_eq!(json_of(&r)["setup_pending"], true);
    // The printed link's page: a form; the token is not echoed into it.
    let page = call(
        &env,
        "GET",
        &format!("/setup?token={token}"),
        &As::default(),
        None,
    )
    .await;
    check(&page, 200, None);
    assert!(page.body.contains("<form") && !page.body.contains(&token));
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .contains("default-src 'none'")
    );
    // A wrong token is refused and does not use up the right one.
    let wrong = "A".repeat(43);
    let body = |t: &str| Some(json!({ "token": t, "username": "root", "password": ADMIN_PW }));
    check(
        &call(&env, "POST", &p("auth/setup"), &As::default(), body(&wrong)).await,
        401,
        None,
    );
    // A weak password does not use it up either.
    let weak = Some(json!({ "token": token, "username": "root", "password": "password" }));
    check(
        &call(&env, "POST", &p("auth/setup"), &As::default(), weak).await,
        400,
        None,
    );
    check(
        &call(&env, "POST", &p("auth/setup"), &As::default(), body(&token)).await,
        201,
        None,
    );
    check(
        &call(&env, "POST", &p("auth/setup"), &As::default(), body(&token)).await,
        401,
        None,
    );
    let r = call(&env, "GET", &p("auth/setup"), &As::default(), None).await;
    assert_eq!(json_of(&r)["setup_pending"], false);
    // Two sign-ins get two different sessions.
    let a = sign_in(&env, "root", ADMIN_PW).await;
    let b = sign_in(&env, "root", ADMIN_PW).await;
    assert_ne!(a.cookie, b.cookie);
}

/// ASVS 5.0: 3.3.1, 3.3.2, 3.3.4 (cookie attributes: HttpOnly, SameSite=Lax, Path=/; Secure is
/// off only for plain http on loopback), 3.5.1 (CSRF token on state-changing requests).
#[tokio::test]
async fn session_cookie_attributes_and_csrf() {
    let env = env(false).await;
    admin(&env).await;
    let r = login(&env, "root", ADMIN_PW, None).await;
    let cookie = r.header("set-cookie").unwrap().to_owned();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let s = session_of(&r);
    // Reading needs no CSRF token; changing does.
    check(
        &call(&env, "GET", &p("me"), &s.no_csrf(), None).await,
        200,
        None,
    );
    let body = Some(json!({ "name": "k" }));
    check(
        &create_key(&env, &s.no_csrf(), json!({ "name": "k" })).await,
        403,
        Some("csrf"),
    );
    let mut wrong = s.clone();
    wrong.csrf = Some("B".repeat(43));
    check(
        &call(&env, "POST", &p("me/keys"), &wrong, body.clone()).await,
        403,
        Some("csrf"),
    );
    check(
        &call(&env, "POST", &p("me/keys"), &s, body).await,
        201,
        None,
    );
}

/// ASVS 5.0: 7.4.1 (logout ends the session at the server), 7.4.3 (a password change ends the
/// other sessions), 7.4.2 (disabling an account ends its sessions), 7.4.5 (an admin can end
/// anyone's sessions), 7.5.2 (users list and end their own sessions).
#[tokio::test]
async fn session_revocation_really_revokes() {
    let env = env(false).await;
    let root = admin(&env).await;
    let (uid, s1) = user(&env, &root, "alice", "user").await;
    let me = |s: As| {
        let env = &env;
        async move { call(env, "GET", &p("me"), &s, None).await.status }
    };

    // Logout.
    check(
        &call(&env, "POST", &p("auth/logout"), &s1, None).await,
        204,
        None,
    );
    assert_eq!(me(s1.clone()).await, 401);

    // Password change: the other session ends, this one goes on.
    let a = sign_in(&env, "alice", PW).await;
    let b = sign_in(&env, "alice", PW).await;
    let r = call(&env, "GET", &p("me/sessions"), &a, None).await;
    assert_eq!(json_of(&r)["sessions"].as_array().unwrap().len(), 2);
    let change = json!({ "current_password": PW, "new_password": "another long passphrase" });
    check(
        &call(&env, "POST", &p("me/password"), &a, Some(change)).await,
        200,
        None,
    );
    assert_eq!(me(b.clone()).await, 401);
    assert_eq!(me(a.clone()).await, 200);

    // A user ends one of their own sessions.
    let c = sign_in(&env, "alice", "another long passphrase").await;
    let r = call(&env, "GET", &p("me/sessions"), &a, None).await;
    let other = json_of(&r)["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == false)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    check(
        &call(
            &env,
            "DELETE",
            &p(&format!("me/sessions/{other}")),
            &a,
            None,
        )
        .await,
        204,
        None,
    );
    assert_eq!(me(c).await, 401);

    // Admin ends all.
    check(
        &call(
            &env,
            "DELETE",
            &p(&format!("admin/users/{uid}/sessions")),
            &root,
            None,
        )
        .await,
        200,
        None,
    );
    assert_eq!(me(a).await, 401);

    // Disable.
    let d = sign_in(&env, "alice", "another long passphrase").await;
    let off = Some(json!({ "disabled": true }));
    check(
        &call(
            &env,
            "POST",
            &p(&format!("admin/users/{uid}/disable")),
            &root,
            off,
        )
        .await,
        204,
        None,
    );
    assert_eq!(me(d).await, 401);
    // …and the account cannot sign in (said only with the right password).
    check(
        &login(&env, "alice", "another long passphrase", None).await,
        403,
        Some("account_disabled"),
    );
    check(
        &login(&env, "alice", "wrong password!!", None).await,
        401,
        Some("invalid_credentials"),
    );
}

fn totp_code(secret_b32: &str, at: SystemTime) -> String {
    let secret = hearth_auth::totp::TotpSecret::from_base32(secret_b32).unwrap();
    let secs = at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    secret.code_at(secs)
}

/// ASVS 5.0: 6.5.1 (a TOTP code and a recovery code are accepted once), 6.3.2 (MFA when
/// enrolled), 7.4.3 (enabling MFA ends the other sessions).
#[tokio::test]
async fn totp_codes_are_single_use() {
    let env = env(false).await;
    let root = admin(&env).await;
    let (_, s) = user(&env, &root, "bob", "user").await;
    let other = sign_in(&env, "bob", PW).await;
    let r = call(&env, "POST", &p("me/totp"), &s, None).await;
    check(&r, 200, None);
    let e = json_of(&r);
    let secret = e["secret"].as_str().unwrap().to_owned();
    assert!(
        e["otpauth_uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/")
    );
    assert!(e["qr_svg"].as_str().unwrap().contains("<svg"));
    let recovery: Vec<String> = serde_json::from_value(e["recovery_codes"].clone()).unwrap();
    assert_eq!(recovery.len(), 10);

    let now = SystemTime::now();
    let confirm = |code: String| Some(json!({ "code": code }));
    check(
        &call(
            &env,
            "POST",
            &p("me/totp/confirm"),
            &s,
            confirm("000000".into()),
        )
        .await,
        401,
        Some("invalid_code"),
    );
    check(
        &call(
            &env,
            "POST",
            &p("me/totp/confirm"),
            &s,
            confirm(totp_code(&secret, now)),
        )
        .await,
        200,
        None,
    );
    assert_eq!(call(&env, "GET", &p("me"), &other, None).await.status, 401);

    // Password alone is no longer enough.
    check(
        &login(&env, "bob", PW, None).await,
        401,
        Some("mfa_required"),
    );
    // The code used to confirm cannot sign in; the next step's code can, once.
    let used = totp_code(&secret, now);
    check(
        &login(&env, "bob", PW, Some(&used)).await,
        401,
        Some("invalid_code"),
    );
    let next = totp_code(&secret, now + Duration::from_secs(30));
    check(&login(&env, "bob", PW, Some(&next)).await, 200, None);
    check(
        &login(&env, "bob", PW, Some(&next)).await,
        401,
        Some("invalid_code"),
    );
    // A recovery code works once.
    check(&login(&env, "bob", PW, Some(&recovery[3])).await, 200, None);
    check(
        &login(&env, "bob", PW, Some(&recovery[3])).await,
        401,
        Some("invalid_code"),
    );
    let r = call(&env, "GET", &p("me/totp"), &s, None).await;
    assert_eq!(json_of(&r)["recovery_codes_left"], 9);
}

/// ASVS 5.0: 8.2.1 (function-level access: a viewer's key cannot reach admin routes, nor can
/// a viewer give a key admin rights), 8.3.1 (enforced at the server).
#[tokio::test]
async fn viewer_key_cannot_reach_admin_routes() {
    let env = env(false).await;
    let root = admin(&env).await;
    let (vid, viewer) = user(&env, &root, "vera", "viewer").await;
    // A viewer may not make keys; an admin makes one for her (as `hearth key create` does).
    check(
        &create_key(&env, &viewer, json!({ "name": "x" })).await,
        403,
        Some("forbidden"),
    );
    let local = hearth_accounts::Principal::local();
    let vid: hearth_store::Uuid = vid.parse().unwrap();
    let req = |routes: &[&str]| hearth_accounts::KeyRequest {
        name: "x".into(),
        routes: routes.iter().map(|r| r.to_string()).collect(),
        ..Default::default()
    };
    let client = hearth_accounts::Client::default();
    let refused = env
        .accounts
        .create_key(&local, Some(vid), &req(&["admin"]), &client)
        .await;
    assert!(
        matches!(refused, Err(hearth_accounts::AccountsError::Forbidden(_))),
        "{refused:?}"
    );
    let key = env
        .accounts
        .create_key(
            &local,
            Some(vid),
            &req(&["openai", "account", "admin"][..2]),
            &client,
        )
        .await
        .unwrap()
        .secret;
    let k = As::key(&key);
    check(
        &call(&env, "GET", &p("admin/users"), &k, None).await,
        403,
        Some("forbidden"),
    );
    check(
        &call(&env, "GET", &p("admin/audit"), &k, None).await,
        403,
        None,
    );
    // The viewer's session cannot either.
    check(
        &call(&env, "GET", &p("admin/users"), &viewer, None).await,
        403,
        None,
    );
    // Reading models is a viewer's right; using them is not.
    check(&call(&env, "GET", "/v1/models", &k, None).await, 200, None);
    let chat = json!({ "model": SMOL, "messages": [{ "role": "user", "content": "hi" }] });
    check(
        &call(&env, "POST", "/v1/chat/completions", &k, Some(chat)).await,
        403,
        None,
    );
    // The refusals are in the audit log.
    let r = call(&env, "GET", &p("admin/audit?n=50"), &root, None).await;
    let denied = json_of(&r)["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "denied")
        .count();
    assert!(denied >= 3, "{}", r.body);
}

/// ASVS 5.0: 8.2.1, 8.3.1 (function-level access enforced at the server): pulling, deleting,
/// copying and creating models need the right to manage models; a user's key cannot.
#[tokio::test]
async fn only_model_managers_may_pull_delete_copy_or_create() {
    let env = env(true).await;
    let root = admin(&env).await;
    let (_, alice) = user(&env, &root, "alice", "user").await;
    let key = secret(&create_key(&env, &alice, json!({ "name": "x", "routes": ["ollama"] })).await);
    let k = As::key(&key);
    let digest = format!("/api/blobs/sha256:{}", "0".repeat(64));
    for (method, path, body) in [
        ("POST", "/api/pull", Some(json!({ "model": SMOL }))),
        ("DELETE", "/api/delete", Some(json!({ "model": SMOL }))),
        (
            "POST",
            "/api/copy",
            Some(json!({ "source": SMOL, "destination": "x:y" })),
        ),
        (
            "POST",
            "/api/create",
            Some(json!({ "model": "x:y", "from": SMOL })),
        ),
        ("HEAD", digest.as_str(), None),
    ] {
        let r = call(&env, method, path, &k, body).await;
        assert_eq!(r.status, 403, "{method} {path}: {}", r.body);
    }
    // Using models stays allowed for the same key.
    check(&call(&env, "GET", "/api/tags", &k, None).await, 200, None);
}

/// ASVS 5.0: 8.2.1, 8.2.2 (scope limits): a key never carries more than its owner (an owner's
/// demotion limits the key at once), models outside the key's models are "not found", route
/// families outside its scope are refused.
#[tokio::test]
async fn key_cannot_exceed_its_owner() {
    let env = env(true).await;
    let root = admin(&env).await;
    let (uid, alice) = user(&env, &root, "alice", "user").await;
    check(
        &create_key(
            &env,
            &alice,
            json!({ "name": "x", "routes": ["openai", "admin"] }),
        )
        .await,
        403,
        None,
    );
    let key = secret(
        &create_key(
            &env,
            &alice,
            json!({ "name": "x", "routes": ["openai"], "models": ["smollm2*"] }),
        )
        .await,
    );
    let k = As::key(&key);
    let chat =
        |model: &str| json!({ "model": model, "messages": [{ "role": "user", "content": "hi" }] });
    check(
        &call(&env, "POST", "/v1/chat/completions", &k, Some(chat(SMOL))).await,
        200,
        None,
    );
    check(
        &call(
            &env,
            "POST",
            "/v1/chat/completions",
            &k,
            Some(chat("hf.co/org/repo:Q4_1")),
        )
        .await,
        404,
        Some("model_not_found"),
    );
    check(
        &call(&env, "GET", "/v1/models/hf.co/org/repo:Q4_1", &k, None).await,
        404,
        None,
    );
    // Lists show only the key's models.
    let list = json_of(&call(&env, "GET", "/v1/models", &k, None).await);
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [SMOL]);
    // Uses are summarised into the audit log, once per period.
    assert_eq!(env.accounts.audit_key_use_summary().await.unwrap(), 1);
    assert_eq!(env.accounts.audit_key_use_summary().await.unwrap(), 0);
    // Not an Ollama-scoped key.
    let r = call(&env, "POST", "/api/chat", &k, Some(chat(SMOL))).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        json_of(&r)["error"].is_string(),
        "Ollama's error shape: {}",
        r.body
    );
    // Demote the owner: the key loses the right to use models at once.
    let to_viewer = Some(json!({ "role": "viewer" }));
    check(
        &call(
            &env,
            "PUT",
            &p(&format!("admin/users/{uid}/role")),
            &root,
            to_viewer,
        )
        .await,
        204,
        None,
    );
    check(
        &call(&env, "POST", "/v1/chat/completions", &k, Some(chat(SMOL))).await,
        403,
        None,
    );
    // Revoked: unknown.
    let kid = json_of(&call(&env, "GET", &p("me/keys"), &alice, None).await)["keys"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    check(
        &call(&env, "DELETE", &p(&format!("me/keys/{kid}")), &alice, None).await,
        204,
        None,
    );
    check(&call(&env, "GET", "/v1/models", &k, None).await, 401, None);
}

/// ASVS 5.0: 8.2.2 (data-specific access: user A cannot read, end or revoke B's sessions and
/// keys — they answer 404, the same as ids that do not exist).
#[tokio::test]
async fn users_cannot_reach_each_others_resources() {
    let env = env(false).await;
    let root = admin(&env).await;
    let (_, a) = user(&env, &root, "ann", "user").await;
    let (_, b) = user(&env, &root, "ben", "user").await;
    secret(&create_key(&env, &b, json!({ "name": "ben's" })).await);
    let bkeys = json_of(&call(&env, "GET", &p("me/keys"), &b, None).await);
    let bkey = bkeys["keys"][0]["id"].as_str().unwrap().to_owned();
    let bsessions = json_of(&call(&env, "GET", &p("me/sessions"), &b, None).await);
    let bsession = bsessions["sessions"][0]["id"].as_str().unwrap().to_owned();

    let akeys = json_of(&call(&env, "GET", &p("me/keys"), &a, None).await);
    assert_eq!(akeys["keys"].as_array().unwrap().len(), 0);
    let asess = json_of(&call(&env, "GET", &p("me/sessions"), &a, None).await);
    assert!(!asess.to_string().contains(&bsession));

    let unknown = "01890000-0000-7000-8000-000000000000";
    for path in [
        format!("me/keys/{bkey}"),
        format!("me/sessions/{bsession}"),
        format!("me/keys/{unknown}"),
        format!("me/sessions/{unknown}"),
        "me/keys/not-an-id".to_owned(),
    ] {
        check(
            &call(&env, "DELETE", &p(&path), &a, None).await,
            404,
            Some("not_found"),
        );
    }
    // B's key and session still work.
    check(&call(&env, "GET", &p("me"), &b, None).await, 200, None);
    let bk = json_of(&call(&env, "GET", &p("me/keys"), &b, None).await);
    assert_eq!(bk["keys"][0]["revoked"], false);
}

/// ASVS 5.0: 6.3.1 (brute-force throttling per account and per address, 429 with Retry-After;
/// a throttled attempt is refused even with the right password; success clears the account's
/// failures), 6.3.8 (unknown users and wrong passwords get the same answer).
#[tokio::test]
async fn throttling_answers_429_with_retry_after_and_clears_on_success() {
    let env = env_with(false, |c| {
        c.throttle.free_failures = 3;
        c.throttle.base_delay = Duration::from_secs(1);
        c.throttle.max_delay = Duration::from_secs(1);
    })
    .await;
    admin(&env).await;
    let wrong = login(&env, "root", "not the password", None).await;
    let unknown = login(&env, "nobody", "not the password", None).await;
    check(&wrong, 401, Some("invalid_credentials"));
    assert_eq!(json_of(&wrong), json_of(&unknown));
    // The third failure from this address (the unknown name counts for the address too).
    check(
        &login(&env, "root", "not the password", None).await,
        401,
        None,
    );
    // Now throttled, even with the right password.
    let r = login(&env, "root", ADMIN_PW, None).await;
    check(&r, 429, Some("too_many_attempts"));
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(wait >= 1);
    tokio::time::sleep(Duration::from_secs(wait)).await;
    check(&login(&env, "root", ADMIN_PW, None).await, 200, None);
    // The account's counter is clear: a wrong password is a plain 401 again.
    check(
        &login(&env, "root", "not the password", None).await,
        401,
        None,
    );
}

/// ASVS 5.0: 8.2.1, 8.3.1 (required mode: every model route needs a valid key; each family
/// answers 401 in its own error shape); malformed, unknown and revoked keys are all refused
/// alike.
#[tokio::test]
async fn required_mode_rejects_missing_and_invalid_keys() {
    let env = env(true).await;
    let root = admin(&env).await;
    let bad = format!("hearth_{}_{}", "0".repeat(16), "A".repeat(43));
    for who in [As::default(), As::key("sk-placeholder"), As::key(&bad)] {
        let r = call(&env, "GET", "/v1/models", &who, None).await;
        check(&r, 401, Some("invalid_credentials"));
        assert_eq!(json_of(&r)["error"]["type"], "authentication_error");
        let r = call(&env, "GET", "/api/tags", &who, None).await;
        assert_eq!(r.status, 401, "{}", r.body);
        assert!(
            json_of(&r)["error"].is_string(),
            "Ollama's shape: {}",
            r.body
        );
        let r = call(&env, "GET", &p("me"), &who, None).await;
        assert_eq!(r.status, 401, "{}", r.body);
    }
    let key = secret(&create_key(&env, &root, json!({ "name": "ok" })).await);
    check(
        &call(&env, "GET", "/v1/models", &As::key(&key), None).await,
        200,
        None,
    );
    check(
        &call(&env, "GET", "/api/tags", &As::key(&key), None).await,
        200,
        None,
    );
    // Health stays open for probes.
    check(
        &call(&env, "GET", "/healthz", &As::default(), None).await,
        200,
        None,
    );
}

/// Open mode (loopback): model routes answer without a key, and clients' placeholder keys are
/// ignored; a Hearth key that is sent is still checked.
#[tokio::test]
async fn open_mode_lets_loopback_clients_in() {
    let env = env(false).await;
    admin(&env).await;
    check(
        &call(&env, "GET", "/v1/models", &As::default(), None).await,
        200,
        None,
    );
    check(
        &call(&env, "GET", "/v1/models", &As::key("sk-anything"), None).await,
        200,
        None,
    );
    let bad = format!("hearth_{}_{}", "0".repeat(16), "A".repeat(43));
    check(
        &call(&env, "GET", "/v1/models", &As::key(&bad), None).await,
        401,
        None,
    );
    // Account routes still need a sign-in.
    check(
        &call(&env, "GET", &p("me"), &As::default(), None).await,
        401,
        None,
    );
}

/// ASVS 5.0: 16.3.1, 16.3.2, 16.3.3 (sign-ins, failures, admin actions and access decisions are
/// logged with actor, action, target, outcome, time and client address), 16.4.2 (the log is a
/// hash chain that verifies).
#[tokio::test]
async fn audit_log_records_and_verifies() {
    let env = env(false).await;
    let root = admin(&env).await;
    login(&env, "root", "wrong password here", None).await;
    user(&env, &root, "carl", "user").await;
    let r = call(&env, "GET", &p("admin/audit/verify"), &root, None).await;
    check(&r, 200, None);
    assert_eq!(json_of(&r)["ok"], true, "{}", r.body);
    let events = json_of(&call(&env, "GET", &p("admin/audit?n=100"), &root, None).await);
    let actions: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "setup.admin_created",
        "login.success",
        "login.password_failed",
        "admin.create_user",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    let failed = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "login.password_failed")
        .unwrap();
    assert_eq!(failed["client_address"], "127.0.0.1");
    assert_eq!(failed["outcome"], "failure");
    let export = call(&env, "GET", &p("admin/audit/export"), &root, None).await;
    check(&export, 200, None);
    assert_eq!(export.body.lines().count(), actions.len());
    for line in export.body.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["hash"].as_str().unwrap().len(), 64);
    }
}

/// Sign-up: pending accounts wait for approval, with a message only after the right password.
/// ASVS 5.0: 6.3.8 (no account enumeration through the pending message).
#[tokio::test]
async fn signup_is_pending_until_an_admin_approves() {
    let env = env(false).await;
    let root = admin(&env).await;
    let r = call(
        &env,
        "POST",
        &p("auth/signup"),
        &As::default(),
        Some(json!({ "username": "dora", "password": PW })),
    )
    .await;
    check(&r, 201, None);
    assert_eq!(json_of(&r)["user"]["role"], "pending");
    let uid = json_of(&r)["user"]["id"].as_str().unwrap().to_owned();
    check(
        &login(&env, "dora", PW, None).await,
        403,
        Some("account_pending"),
    );
    check(
        &login(&env, "dora", "not her password", None).await,
        401,
        Some("invalid_credentials"),
    );
    let approve = Some(json!({ "role": "user" }));
    check(
        &call(
            &env,
            "PUT",
            &p(&format!("admin/users/{uid}/role")),
            &root,
            approve,
        )
        .await,
        204,
        None,
    );
    check(&login(&env, "dora", PW, None).await, 200, None);
    // Taken names conflict.
    let r = call(
        &env,
        "POST",
        &p("auth/signup"),
        &As::default(),
        Some(json!({ "username": "DORA", "password": PW })),
    )
    .await;
    check(&r, 409, None);
}
