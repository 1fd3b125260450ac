//! Sign-in through an OpenID Connect provider: authorization code flow with PKCE (S256), state
//! and nonce. Discovery and the token exchange go over HTTP with `ureq` on blocking threads; the
//! ID token comes straight from the token endpoint over TLS (or a loopback test provider), so its
//! claims are checked and its signature is not (OIDC Core 3.1.3.7 item 6). Users are linked by
//! (issuer, subject); a first sign-in creates the user with the configured role.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use hearth_auth::oidc::{
    AuthorizationRequest, Discovery, Expected, Pkce, authorization_url, is_allowed_endpoint,
    parse_discovery, parse_token_response, random_nonce, random_state, validate_id_token,
};
use hearth_store::{NewUser, User, Uuid};

use crate::{Accounts, AccountsError, Client, OidcConfig, Result, SignedIn, blocking};

/// Sign-ins started and not finished, at most this many (oldest dropped).
const MAX_PENDING: usize = 1000;
/// How long a started sign-in may take.
const PENDING_TTL: Duration = Duration::from_secs(10 * 60);
/// Largest provider answer read.
const MAX_BODY: u64 = 64 * 1024;

#[derive(Debug)]
struct Pending {
    verifier: String,
    nonce: String,
    started: SystemTime,
}

/// Started sign-ins (by state) and the provider's discovery document.
#[derive(Debug, Default)]
pub(crate) struct OidcState {
    pending: Mutex<HashMap<String, Pending>>,
    discovery: Mutex<Option<Discovery>>,
}

fn unavailable(e: impl std::fmt::Display) -> AccountsError {
    AccountsError::Unavailable(format!(
        "the sign-in provider cannot be reached or answered badly ({e}); try again, or check the [auth.oidc] settings"
    ))
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .max_redirects(0)
        .user_agent(concat!("hearth/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

fn read_body(mut resp: ureq::http::Response<ureq::Body>) -> Result<Vec<u8>> {
    let status = resp.status();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_vec()
        .map_err(unavailable)?;
    if !status.is_success() {
        return Err(unavailable(format!("HTTP {status}")));
    }
    Ok(body)
}

impl Accounts {
    fn oidc_config(&self) -> Result<&OidcConfig> {
        self.config.oidc.as_ref().ok_or_else(|| {
            AccountsError::NotFound(
                "sign-in provider (none is configured under [auth.oidc])".into(),
            )
        })
    }

    async fn discovery(&self) -> Result<Discovery> {
        if let Ok(d) = self.oidc.discovery.lock()
            && let Some(d) = d.as_ref()
        {
            return Ok(d.clone());
        }
        let cfg = self.oidc_config()?.clone();
        let url = format!(
            "{}/.well-known/openid-configuration",
            cfg.issuer.trim_end_matches('/')
        );
        if !is_allowed_endpoint(&url) {
            return Err(AccountsError::BadInput(
                "the OIDC issuer must be an https:// URL (http:// only on loopback)".into(),
            ));
        }
        let issuer = cfg.issuer.clone();
        let d = blocking(move || -> Result<Discovery> {
            let resp = agent().get(&url).call().map_err(unavailable)?;
            let body = read_body(resp)?;
            Ok(parse_discovery(&body, &issuer)?)
        })
        .await??;
        if let Ok(mut slot) = self.oidc.discovery.lock() {
            *slot = Some(d.clone());
        }
        Ok(d)
    }

    /// Starts a sign-in: the URL to send the browser to.
    pub async fn oidc_start(&self) -> Result<String> {
        let cfg = self.oidc_config()?.clone();
        let d = self.discovery().await?;
        let pkce = Pkce::generate()?;
        let state = random_state()?;
        let nonce = random_nonce()?;
        let url = authorization_url(&AuthorizationRequest {
            authorization_endpoint: &d.authorization_endpoint,
            client_id: &cfg.client_id,
            redirect_uri: &cfg.redirect_url,
            scope: "openid profile email",
            state: &state,
            nonce: &nonce,
            code_challenge: &pkce.challenge,
        })?;
        let now = SystemTime::now();
        let mut pending = self
            .oidc
            .pending
            .lock()
            .map_err(|_| AccountsError::Internal("OIDC state lock poisoned".into()))?;
        pending.retain(|_, p| now.duration_since(p.started).is_ok_and(|a| a < PENDING_TTL));
        if pending.len() >= MAX_PENDING
            && let Some(oldest) = pending
                .iter()
                .min_by_key(|(_, p)| p.started)
                .map(|(k, _)| k.clone())
        {
            pending.remove(&oldest);
        }
        pending.insert(
            state,
            Pending {
                verifier: pkce.verifier,
                nonce,
                started: now,
            },
        );
        Ok(url)
    }

    /// Finishes a sign-in: exchanges the code, checks the ID token, finds or creates the user
    /// linked to (issuer, subject), and issues a session.
    pub async fn oidc_callback(
        &self,
        code: &str,
        state: &str,
        client: &Client,
    ) -> Result<SignedIn> {
        let cfg = self.oidc_config()?.clone();
        let refused = || {
            AccountsError::Unauthenticated(
                "this sign-in link is not valid (expired or used already); start again".into(),
            )
        };
        let pending = self
            .oidc
            .pending
            .lock()
            .map_err(|_| AccountsError::Internal("OIDC state lock poisoned".into()))?
            .remove(state);
        let Some(pending) = pending else {
            self.audit_event(
                "anonymous",
                "login.oidc",
                "",
                "failure",
                client,
                "unknown state",
            )
            .await?;
            return Err(refused());
        };
        let now = SystemTime::now();
        if now
            .duration_since(pending.started)
            .map_or(true, |a| a >= PENDING_TTL)
        {
            return Err(refused());
        }
        let d = self.discovery().await?;
        if !is_allowed_endpoint(&d.token_endpoint) {
            return Err(AccountsError::BadInput(
                "the provider's token endpoint must be https:// (http:// only on loopback)".into(),
            ));
        }
        let form = [
            ("grant_type".to_owned(), "authorization_code".to_owned()),
            ("code".to_owned(), code.to_owned()),
            ("redirect_uri".to_owned(), cfg.redirect_url.clone()),
            ("client_id".to_owned(), cfg.client_id.clone()),
            ("client_secret".to_owned(), cfg.client_secret.clone()),
            ("code_verifier".to_owned(), pending.verifier.clone()),
        ];
        let endpoint = d.token_endpoint.clone();
        let tokens = blocking(move || -> Result<_> {
            let resp = agent()
                .post(&endpoint)
                .send_form(form.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .map_err(unavailable)?;
            let body = read_body(resp)?;
            Ok(parse_token_response(&body)?)
        })
        .await??;
        let claims = match validate_id_token(
            &tokens.id_token,
            &Expected {
                issuer: &cfg.issuer,
                client_id: &cfg.client_id,
                nonce: &pending.nonce,
                now,
                max_skew: Duration::from_secs(120),
            },
        ) {
            Ok(c) => c,
            Err(e) => {
                self.audit_event(
                    "anonymous",
                    "login.oidc",
                    "",
                    "failure",
                    client,
                    &e.to_string(),
                )
                .await?;
                return Err(AccountsError::Unauthenticated(e.to_string()));
            }
        };
        let user = match self
            .stores
            .users
            .user_by_oidc(&claims.iss, &claims.sub)
            .await?
        {
            Some(u) => u,
            None => self.create_oidc_user(&cfg, &claims, client, now).await?,
        };
        match self.session_for(&user, client).await {
            Ok(s) => {
                self.audit_event(
                    &user.id.to_string(),
                    "login.oidc",
                    &user.id.to_string(),
                    "success",
                    client,
                    &claims.iss,
                )
                .await?;
                Ok(s)
            }
            Err(e) => {
                self.audit_event(
                    &user.id.to_string(),
                    "login.oidc",
                    &user.id.to_string(),
                    "failure",
                    client,
                    &e.to_string(),
                )
                .await?;
                Err(e)
            }
        }
    }

    async fn create_oidc_user(
        &self,
        cfg: &OidcConfig,
        claims: &hearth_auth::oidc::IdTokenClaims,
        client: &Client,
        now: SystemTime,
    ) -> Result<User> {
        // A readable, valid, unused name: the provider's preferred one when it fits, else one
        // derived from the subject.
        let clean = |s: &str| -> String {
            s.chars()
                .filter(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
                .take(crate::MAX_USERNAME - 9)
                .collect()
        };
        let base = claims
            .preferred_username
            .as_deref()
            .map(clean)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("oidc-{}", clean(&claims.sub)));
        let mut username = base.clone();
        for i in 2..20 {
            if self
                .stores
                .users
                .user_by_username(&username)
                .await?
                .is_none()
            {
                break;
            }
            username = format!("{base}-{i}");
        }
        let user = self
            .stores
            .users
            .create_user(&NewUser {
                id: Uuid::now_v7(),
                username: username.clone(),
                display_name: claims.name.clone().unwrap_or(username),
                email: claims
                    .email
                    .clone()
                    .filter(|_| claims.email_verified == Some(true)),
                role: cfg.new_user_role,
                password_hash: None,
                created_at: now,
            })
            .await?;
        self.stores
            .users
            .link_oidc(user.id, &claims.iss, &claims.sub, now)
            .await?;
        self.audit_event(
            &user.id.to_string(),
            "user.oidc_created",
            &user.id.to_string(),
            "success",
            client,
            cfg.new_user_role.as_str(),
        )
        .await?;
        Ok(user)
    }
}
