//! OpenID Connect (authorization code flow with PKCE) protocol pieces, without HTTP.
//!
//! The caller fetches the discovery document and posts the token request; this module makes and
//! checks what goes over the wire:
//! - PKCE S256 verifier and challenge (RFC 7636), and random `state` and `nonce` (256 bits each,
//!   ASVS 10.1.2, 11.5.1). Keep all three in the pre-login session and use them once.
//! - The authorization URL ([`authorization_url`]).
//! - The discovery document ([`parse_discovery`]): its `issuer` must equal the configured issuer
//!   exactly (ASVS 10.5.3), its endpoints must use HTTPS (loopback excepted), and it must offer
//!   S256 when it lists PKCE methods.
//! - The token response ([`parse_token_response`]) and the ID-token claims
//!   ([`validate_id_token`]): `iss` exact, `aud` contains the client id and `azp` equals it when
//!   present or when there are several audiences (ASVS 10.5.4), `exp` in the future and `iat` not
//!   in the future (with a clock-skew allowance), `nonce` equal to the one sent (ASVS 10.5.1).
//!
//! **Signatures are not checked.** OIDC Core 1.0 §3.1.3.7 item 6 lets a client that receives the
//! ID token directly from the token endpoint over TLS rely on that TLS server validation instead
//! of the token's signature. So the caller MUST fetch the token endpoint over HTTPS with
//! certificate validation; only a loopback provider (tests, a provider on the same host) may use
//! plain HTTP, which [`is_allowed_endpoint`] enforces for discovered endpoints. (ASVS 6.8.2 asks
//! for signature validation regardless; see the crate report.) Identify users by (`iss`, `sub`),
//! never by e-mail (ASVS 6.8.1, 10.5.2).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::Error;
use crate::util::{b64url, b64url_decode, percent_encode, random_bytes};

/// Largest discovery document or token response accepted.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// Largest ID token accepted.
pub const MAX_ID_TOKEN_BYTES: usize = 16 * 1024;

/// A PKCE pair: send `challenge` (method S256) in the authorization request, `verifier` in the
/// token request.
#[derive(Clone, PartialEq, Eq)]
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl std::fmt::Debug for Pkce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkce")
            .field("challenge", &self.challenge)
            .finish_non_exhaustive()
    }
}

impl Pkce {
    /// A fresh pair: a 256-bit verifier (43 base64url characters).
    pub fn generate() -> Result<Self, Error> {
        Self::from_verifier(&b64url(&random_bytes::<32>()?))
    }

    /// The pair for a given verifier: 43 to 128 characters of `[A-Za-z0-9-._~]` (RFC 7636 §4.1).
    pub fn from_verifier(verifier: &str) -> Result<Self, Error> {
        let ok_len = (43..=128).contains(&verifier.len());
        let ok_chars = verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        if !ok_len || !ok_chars {
            return Err(Error::bad(
                "a PKCE code verifier is 43 to 128 characters of A-Z, a-z, 0-9, -, ., _ and ~",
            ));
        }
        Ok(Self {
            verifier: verifier.to_owned(),
            challenge: b64url(&Sha256::digest(verifier.as_bytes())),
        })
    }

    pub const METHOD: &'static str = "S256";
}

/// A random `state` value (256 bits, base64url).
pub fn random_state() -> Result<String, Error> {
    Ok(b64url(&random_bytes::<32>()?))
}

/// A random `nonce` value (256 bits, base64url).
pub fn random_nonce() -> Result<String, Error> {
    Ok(b64url(&random_bytes::<32>()?))
}

/// Whether `url` may be used as a provider endpoint: `https://…`, or `http://` to a loopback
/// host (`127.0.0.0/8`, `[::1]`, `localhost`).
pub fn is_allowed_endpoint(url: &str) -> bool {
    if let Some(rest) = url.strip_prefix("https://") {
        return !rest.is_empty() && !rest.starts_with('/');
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return false;
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The parameters of an authorization request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRequest<'a> {
    pub authorization_endpoint: &'a str,
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    /// Space-separated; must include `openid`.
    pub scope: &'a str,
    pub state: &'a str,
    pub nonce: &'a str,
    pub code_challenge: &'a str,
}

/// The URL to send the browser to: the endpoint with `response_type=code`, `client_id`,
/// `redirect_uri`, `scope`, `state`, `nonce`, `code_challenge` and `code_challenge_method=S256`
/// appended (after any query the endpoint already has).
pub fn authorization_url(req: &AuthorizationRequest<'_>) -> Result<String, Error> {
    if !is_allowed_endpoint(req.authorization_endpoint) {
        return Err(Error::bad(
            "the authorization endpoint must be an https:// URL (http:// only to a loopback address)",
        ));
    }
    if req.authorization_endpoint.contains('#') {
        return Err(Error::bad(
            "the authorization endpoint must not contain a fragment (#)",
        ));
    }
    if !req.scope.split(' ').any(|s| s == "openid") {
        return Err(Error::bad("the scope must include openid"));
    }
    let params = [
        ("response_type", "code"),
        ("client_id", req.client_id),
        ("redirect_uri", req.redirect_uri),
        ("scope", req.scope),
        ("state", req.state),
        ("nonce", req.nonce),
        ("code_challenge", req.code_challenge),
        ("code_challenge_method", Pkce::METHOD),
    ];
    let mut url = req.authorization_endpoint.to_owned();
    let mut sep = if url.contains('?') {
        if url.ends_with('?') || url.ends_with('&') {
            ""
        } else {
            "&"
        }
    } else {
        "?"
    };
    for (k, v) in params {
        url.push_str(sep);
        url.push_str(k);
        url.push('=');
        url.push_str(&percent_encode(v));
        sep = "&";
    }
    Ok(url)
}

/// The parts of a discovery document (`/.well-known/openid-configuration`) Hearth uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<String>>,
}

/// Parses and checks a discovery document against the configured issuer.
pub fn parse_discovery(body: &[u8], expected_issuer: &str) -> Result<Discovery, Error> {
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(Error::bad(format!(
            "the provider's discovery document is over {MAX_DOCUMENT_BYTES} bytes; check the issuer URL"
        )));
    }
    let d: Discovery = serde_json::from_slice(body).map_err(|e| {
        Error::bad(format!(
            "the provider's discovery document is not valid: {e}; check the issuer URL"
        ))
    })?;
    if d.issuer != expected_issuer {
        return Err(Error::bad(format!(
            "the provider says its issuer is {:?}, but {expected_issuer:?} is configured; they must match exactly (check for a trailing slash)",
            d.issuer
        )));
    }
    for (name, url) in [
        ("authorization_endpoint", Some(&d.authorization_endpoint)),
        ("token_endpoint", Some(&d.token_endpoint)),
        ("userinfo_endpoint", d.userinfo_endpoint.as_ref()),
        ("jwks_uri", d.jwks_uri.as_ref()),
        ("end_session_endpoint", d.end_session_endpoint.as_ref()),
    ] {
        if let Some(url) = url
            && !is_allowed_endpoint(url)
        {
            return Err(Error::bad(format!(
                "the provider's {name} {url:?} is not https:// (plain http:// is allowed only to a loopback address)"
            )));
        }
    }
    if let Some(methods) = &d.code_challenge_methods_supported
        && !methods.iter().any(|m| m == Pkce::METHOD)
    {
        return Err(Error::bad(
            "the provider does not support PKCE with S256; enable it in the provider's client settings",
        ));
    }
    Ok(d)
}

/// A successful token response (RFC 6749 §5.1, OIDC Core §3.1.3.3).
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub id_token: String,
    #[serde(default)]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// Parses a token endpoint's JSON answer: an error response (RFC 6749 §5.2) becomes a
/// `BadInput` naming the provider's error code; a success must have `token_type` Bearer
/// (any case) and an `id_token`.
pub fn parse_token_response(body: &[u8]) -> Result<TokenResponse, Error> {
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(Error::bad(format!(
            "the provider's token response is over {MAX_DOCUMENT_BYTES} bytes"
        )));
    }
    if let Ok(err) = serde_json::from_slice::<TokenError>(body) {
        let desc = err.error_description.unwrap_or_default();
        return Err(Error::bad(format!(
            "the provider refused the sign-in: {} {desc}; sign in again",
            err.error
        )));
    }
    let t: TokenResponse = serde_json::from_slice(body).map_err(|e| {
        Error::bad(format!(
            "the provider's token response is not valid: {e} (an OpenID Connect provider must return an id_token)"
        ))
    })?;
    if !t.token_type.eq_ignore_ascii_case("bearer") {
        return Err(Error::bad(format!(
            "the provider's token_type is {:?}, not Bearer",
            t.token_type
        )));
    }
    Ok(t)
}

/// One audience or several.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct RawClaims {
    iss: String,
    sub: String,
    aud: Audience,
    exp: i64,
    iat: i64,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    auth_time: Option<i64>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<bool>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    preferred_username: Option<String>,
}

/// The checked claims of an ID token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdTokenClaims {
    pub iss: String,
    /// With `iss`, the user's stable identity at the provider.
    pub sub: String,
    pub aud: Vec<String>,
    pub azp: Option<String>,
    pub exp: i64,
    pub iat: i64,
    pub auth_time: Option<i64>,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    pub name: Option<String>,
    pub preferred_username: Option<String>,
}

/// What an ID token must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    /// The nonce sent in the authorization request.
    pub nonce: &'a str,
    pub now: SystemTime,
    /// Clock difference tolerated between the provider and this server.
    pub max_skew: Duration,
}

/// Decodes an ID token (a JWS in compact form) and validates its claims against `expected`. The
/// signature is NOT verified: see the module docs for when that is acceptable.
pub fn validate_id_token(id_token: &str, expected: &Expected<'_>) -> Result<IdTokenClaims, Error> {
    let bad = |why: &str| Error::bad(format!("the provider's ID token is not acceptable: {why}"));
    if id_token.len() > MAX_ID_TOKEN_BYTES {
        return Err(bad("it is too long"));
    }
    let mut parts = id_token.split('.');
    let (Some(header), Some(payload), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("it is not a signed JWT (three dot-separated parts)"));
    };
    let header = b64url_decode(header).ok_or_else(|| bad("its header is not base64url"))?;
    let header: serde_json::Value =
        serde_json::from_slice(&header).map_err(|_| bad("its header is not JSON"))?;
    match header.get("alg").and_then(|a| a.as_str()) {
        None => return Err(bad("its header names no algorithm")),
        Some(alg) if alg.eq_ignore_ascii_case("none") => {
            return Err(bad("it is unsigned (alg none)"));
        }
        Some(_) => {}
    }
    let payload = b64url_decode(payload).ok_or_else(|| bad("its payload is not base64url"))?;
    let c: RawClaims = serde_json::from_slice(&payload)
        .map_err(|e| bad(&format!("its claims are missing or malformed ({e})")))?;

    if c.iss != expected.issuer {
        return Err(bad(&format!(
            "issued by {:?}, expected {:?}",
            c.iss, expected.issuer
        )));
    }
    if c.sub.is_empty() || c.sub.len() > 255 {
        return Err(bad(
            "its subject (sub) is empty or longer than 255 characters",
        ));
    }
    let aud = match c.aud {
        Audience::One(a) => vec![a],
        Audience::Many(v) => v,
    };
    if !aud.iter().any(|a| a == expected.client_id) {
        return Err(bad("it is not meant for this client (aud)"));
    }
    match &c.azp {
        Some(azp) if azp != expected.client_id => {
            return Err(bad("it was issued to another client (azp)"));
        }
        None if aud.len() > 1 => {
            return Err(bad(
                "it has several audiences but no authorized party (azp)",
            ));
        }
        _ => {}
    }
    let now = unix_secs(expected.now);
    let skew = i64::try_from(expected.max_skew.as_secs()).unwrap_or(i64::MAX);
    if c.exp.saturating_add(skew) <= now {
        return Err(bad("it has expired (exp); sign in again"));
    }
    if c.iat.saturating_sub(skew) > now {
        return Err(bad(
            "it was issued in the future (iat); check this server's clock",
        ));
    }
    match &c.nonce {
        Some(n) if crate::constant_time_eq(n.as_bytes(), expected.nonce.as_bytes()) => {}
        _ => return Err(bad("its nonce does not match this sign-in; sign in again")),
    }
    Ok(IdTokenClaims {
        iss: c.iss,
        sub: c.sub,
        aud,
        azp: c.azp,
        exp: c.exp,
        iat: c.iat,
        auth_time: c.auth_time,
        email: c.email,
        email_verified: c.email_verified,
        name: c.name,
        preferred_username: c.preferred_username,
    })
}

fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}
