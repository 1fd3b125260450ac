//! OIDC sign-in (authorization code + PKCE) against a tiny provider this test starts on
//! loopback: it serves discovery, answers /authorize with a code, and /token with an ID token,
//! checking the PKCE verifier against the challenge (RFC 7636 S256).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hearth_accounts::{OidcConfig, Role};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::accounts::{As, call, env_with};
use crate::http::{Reply, parse};

const CLIENT: &str = "hearth-test";
const SECRET: &str = "provider-secret";

#[derive(Default)]
struct Provider {
    issuer: String,
    /// code → (nonce, challenge)
    codes: Mutex<HashMap<String, (String, String)>>,
    subject: String,
}

fn b64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

async fn discovery(State(p): State<Arc<Provider>>) -> Json<Value> {
    Json(json!({
        "issuer": p.issuer,
        "authorization_endpoint": format!("{}/authorize", p.issuer),
        "token_endpoint": format!("{}/token", p.issuer),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
    }))
}

async fn authorize(
    State(p): State<Arc<Provider>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    assert_eq!(q["client_id"], CLIENT);
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["code_challenge_method"], "S256");
    let code = format!("code{}", p.codes.lock().unwrap().len());
    p.codes.lock().unwrap().insert(
        code.clone(),
        (q["nonce"].clone(), q["code_challenge"].clone()),
    );
    Redirect::to(&format!(
        "{}?code={code}&state={}",
        q["redirect_uri"], q["state"]
    ))
    .into_response()
}

/// The form fields this test's client sends are all unreserved characters except the redirect
/// URI, which is not checked here; no percent-decoding needed.
fn form(body: &str) -> HashMap<String, String> {
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

async fn token(State(p): State<Arc<Provider>>, body: String) -> Response {
    let f = form(&body);
    let Some((nonce, challenge)) = p.codes.lock().unwrap().remove(&f["code"]) else {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant"})),
        )
            .into_response();
    };
    // RFC 7636 4.6: BASE64URL(SHA256(verifier)) == challenge.
    let expected = hearth_auth::oidc::Pkce::from_verifier(&f["code_verifier"])
        .unwrap()
        .challenge;
    if expected != challenge
        || f["client_secret"] != SECRET
        || f["grant_type"] != "authorization_code"
    {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant"})),
        )
            .into_response();
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = b64url(br#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = b64url(
        json!({
            "iss": p.issuer, "sub": p.subject, "aud": CLIENT, "exp": now + 300, "iat": now,
            "nonce": nonce, "preferred_username": "olivia", "name": "Olivia",
        })
        .to_string()
        .as_bytes(),
    );
    Json(json!({
        "access_token": "at", "token_type": "Bearer", "expires_in": 300,
        "id_token": format!("{header}.{claims}.c2ln"),
    }))
    .into_response()
}

async fn provider() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let p = Arc::new(Provider {
        issuer: issuer.clone(),
        subject: "subject-42".to_owned(),
        ..Provider::default()
    });
    let app = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .with_state(p);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    issuer
}

/// GET an absolute http://HOST:PORT/PATH URL.
async fn get_url(url: &str) -> Reply {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let addr: SocketAddr = host.parse().unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    parse(&raw)
}

/// One sign-in through the provider; answers hearth's reply to the callback and its path.
async fn sign_in(env: &crate::accounts::Env) -> (Reply, String) {
    let start = call(
        env,
        "GET",
        "/api/hearth/v1/auth/oidc/start",
        &As::default(),
        None,
    )
    .await;
    assert!(matches!(start.status, 302 | 303 | 307), "{}", start.body);
    let to_provider = start.header("location").unwrap().to_owned();
    assert!(to_provider.contains("code_challenge="), "{to_provider}");
    let back = get_url(&to_provider).await;
    let callback = back.header("location").unwrap().to_owned();
    let path = callback
        .strip_prefix("http://hearth.invalid")
        .unwrap()
        .to_owned();
    (call(env, "GET", &path, &As::default(), None).await, path)
}

/// ASVS 5.0 chapter V10 (OAuth and OIDC client): authorization code with PKCE S256, state bound
/// to the flow and single use; 10.5.1-10.5.4 (ID token: issuer, audience, expiry, nonce checked), 7.2.4 (a new
/// session at sign-in); users are linked by (issuer, subject).
#[tokio::test]
async fn oidc_sign_in_links_by_issuer_and_subject() {
    let issuer = provider().await;
    let env = env_with(false, |c| {
        c.oidc = Some(OidcConfig {
            issuer: issuer.clone(),
            client_id: CLIENT.to_owned(),
            client_secret: SECRET.to_owned(),
            redirect_url: "http://hearth.invalid/api/hearth/v1/auth/oidc/callback".to_owned(),
            new_user_role: Role::User,
        });
    })
    .await;
    let (r, path) = sign_in(&env).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let cookie = r.header("set-cookie").unwrap();
    let token = cookie
        .strip_prefix("hearth_session=")
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_owned();
    let me = call(
        &env,
        "GET",
        "/api/hearth/v1/me",
        &As {
            cookie: Some(token),
            ..As::default()
        },
        None,
    )
    .await;
    assert_eq!(me.status, 200, "{}", me.body);
    let v: Value = serde_json::from_str(&me.body).unwrap();
    assert_eq!(v["user"]["username"], "olivia");
    assert_eq!(v["user"]["role"], "user");
    let id = v["user"]["id"].clone();

    // The callback cannot be replayed (state is single use).
    let again = call(&env, "GET", &path, &As::default(), None).await;
    assert_eq!(again.status, 401, "{}", again.body);

    // A second sign-in finds the same user.
    let (r2, _) = sign_in(&env).await;
    assert_eq!(r2.status, 303, "{}", r2.body);
    let users = env
        .accounts
        .list_users(
            &hearth_accounts::Principal::local(),
            &hearth_accounts::Client::default(),
        )
        .await
        .unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].id.to_string(), id.as_str().unwrap());
}
