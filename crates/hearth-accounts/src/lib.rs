//! The accounts service: everything a person or a key does to an account, over the stores of
//! `hearth-store` and the pure security pieces of `hearth-auth`. No HTTP: `hearth-server` maps
//! requests onto these calls and [`AccountsError`] onto statuses.
//!
//! Code map: `lib.rs` holds the configuration, the error, who is acting ([`Principal`]) and the
//! bootstrap (first admin, setup token); `signin.rs` sign-up, sign-in (driving
//! `hearth_auth::login`'s state machine), sessions and API-key authentication; `mfa.rs` TOTP and
//! recovery codes; `keys.rs` API keys; `admin.rs` users and groups; `audit.rs` the hash-chained
//! audit log (append, verify, export, retention); `oidc.rs` sign-in through an OpenID provider.
//!
//! Every decision that grants or refuses access, every sign-in and failure, every change of
//! rights and every admin action is written to the audit log (ASVS 16.3.1–16.3.3).
#![forbid(unsafe_code)]

mod admin;
mod audit;
mod keys;
mod mfa;
pub mod oidc;
mod signin;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hearth_auth::password::{PasswordHasher, PasswordPolicy};
use hearth_auth::policy::{Grant, PermissionSet};
use hearth_store::{NewUser, StoreError, Stores, Uuid};

pub use admin::{GroupInfo, NewAccount};
pub use audit::{AuditRecord, VerifyReport};
pub use hearth_auth::login::Restriction;
pub use hearth_auth::policy::{ModelPattern, Permission, RouteFamily};
pub use hearth_auth::throttle::ThrottlePolicy;
pub use hearth_store::{ApiKey, Group, Role, Session, User};
pub use keys::{CreatedKey, KeyRequest};
pub use mfa::TotpEnrolment;
pub use signin::{LoginRequest, SignedIn};

/// What can go wrong, classified the way `hearth-server` maps it to a status.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    /// Malformed or refused input (400).
    #[error("{0}")]
    BadInput(String),
    /// No or an invalid session or key (401).
    #[error("{0}")]
    Unauthenticated(String),
    /// Wrong user name or password — one answer for both, so it does not tell which (401).
    #[error("wrong user name or password")]
    InvalidCredentials,
    /// The password was right; a one-time code is needed too (401, code `mfa_required`).
    #[error(
        "this account uses two-factor sign-in: send the 6-digit code from your authenticator app (or a recovery code) with the password"
    )]
    MfaRequired,
    /// Wrong or already used one-time code (401).
    #[error("that code is wrong or was used already; wait for the next code and try again")]
    InvalidCode,
    /// The account is disabled; said only after a correct password (403).
    #[error("this account is disabled; ask an administrator to enable it")]
    AccountDisabled,
    /// The account waits for approval; said only after a correct password (403).
    #[error("this account is waiting for an administrator's approval")]
    AccountPending,
    /// Too many failed attempts (429 with Retry-After).
    #[error("too many failed attempts; try again in {} seconds", retry_after_secs(*.retry_after))]
    Throttled { retry_after: Duration },
    /// Signed in, but not allowed to do this (403).
    #[error("you are not allowed to {0}")]
    Forbidden(String),
    /// Missing — or belonging to someone else, which is answered the same way (404).
    #[error("{0} not found")]
    NotFound(String),
    /// Taken already, or it would break a rule (409).
    #[error("{0}")]
    Conflict(String),
    /// The database or an identity provider cannot be reached (503).
    #[error("{0}")]
    Unavailable(String),
    /// A bug or damaged data; the details are logged, not shown (500).
    #[error("internal error: {0}")]
    Internal(String),
}

/// Whole seconds to wait, rounded up, at least 1 (for `Retry-After`).
pub fn retry_after_secs(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(1)
}

impl From<StoreError> for AccountsError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => AccountsError::NotFound(what.to_owned()),
            StoreError::Conflict(what) => {
                AccountsError::Conflict(format!("{what} already exists; choose another"))
            }
            StoreError::LastAdmin => AccountsError::Conflict(e.to_string()),
            StoreError::Invalid { .. } => AccountsError::BadInput(e.to_string()),
            StoreError::Unavailable(_) => AccountsError::Unavailable(e.to_string()),
            StoreError::Internal(_) => AccountsError::Internal(e.to_string()),
        }
    }
}

impl From<hearth_auth::Error> for AccountsError {
    fn from(e: hearth_auth::Error) -> Self {
        match e {
            hearth_auth::Error::BadInput(_) | hearth_auth::Error::WeakPassword(_) => {
                AccountsError::BadInput(e.to_string())
            }
            hearth_auth::Error::Unavailable(_) => AccountsError::Unavailable(e.to_string()),
            hearth_auth::Error::Internal(_) => AccountsError::Internal(e.to_string()),
        }
    }
}

pub type Result<T, E = AccountsError> = std::result::Result<T, E>;

/// Who may sign up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignupPolicy {
    /// Nobody: admins create accounts.
    Closed,
    /// Anyone, as `pending` until an admin gives them a role.
    Pending,
    /// Anyone, as `user` at once.
    Open,
}

/// An OpenID Connect provider to sign in through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcConfig {
    /// The issuer URL (discovery is at `{issuer}/.well-known/openid-configuration`).
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// Where the provider sends the browser back: `…/api/hearth/v1/auth/oidc/callback`.
    pub redirect_url: String,
    /// The role of a user created at their first OIDC sign-in.
    pub new_user_role: Role,
}

/// The service's settings (`[auth]` in the configuration).
#[derive(Debug, Clone)]
pub struct AccountsConfig {
    pub signup: SignupPolicy,
    /// A session ends this long after its last request…
    pub session_idle: Duration,
    /// …and this long after sign-in in any case.
    pub session_lifetime: Duration,
    /// Admins must pass a second factor; one without gets a session that can only enrol.
    pub mfa_required_for_admins: bool,
    pub throttle: ThrottlePolicy,
    /// How long the first-start setup token is valid.
    pub setup_token_lifetime: Duration,
    /// Audit events older than this are deleted (keeping a checkpoint); `None` keeps them.
    pub audit_retention: Option<Duration>,
    /// The first admin, from `HEARTH_ADMIN_USER` / `HEARTH_ADMIN_PASSWORD`.
    pub bootstrap_admin: Option<(String, String)>,
    /// The issuer name authenticator apps show.
    pub totp_issuer: String,
    pub oidc: Option<OidcConfig>,
    /// Password hashing parameters (tests may use cheaper ones).
    pub hasher: PasswordHasher,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        Self {
            signup: SignupPolicy::Pending,
            session_idle: Duration::from_secs(60 * 60),
            session_lifetime: Duration::from_secs(24 * 60 * 60),
            mfa_required_for_admins: false,
            throttle: ThrottlePolicy::default(),
            setup_token_lifetime: Duration::from_secs(60 * 60),
            audit_retention: None,
            bootstrap_admin: None,
            totp_issuer: "Hearth".to_owned(),
            oidc: None,
            hasher: PasswordHasher::owasp(),
        }
    }
}

/// Where a request comes from (for throttling and the audit log).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Client {
    pub address: Option<IpAddr>,
    pub user_agent: Option<String>,
}

impl Client {
    pub fn at(address: IpAddr) -> Self {
        Self {
            address: Some(address),
            user_agent: None,
        }
    }

    fn addr_text(&self) -> Option<String> {
        self.address.map(|a| a.to_string())
    }
}

/// How the acting party proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// A web session (cookie); `csrf` is the token state-changing requests must carry.
    Session {
        id: Uuid,
        csrf: String,
        restriction: Restriction,
    },
    /// An API key.
    Key { id: Uuid, prefix: String },
    /// The `hearth` command on this machine, with direct access to the database.
    Local,
}

/// Who is acting, and with which rights.
#[derive(Debug, Clone)]
pub struct Principal {
    /// `None` only for [`Via::Local`].
    pub user: Option<User>,
    pub grant: Grant,
    pub via: Via,
}

impl Principal {
    /// The local administrator (the CLI): every permission.
    pub fn local() -> Self {
        Self {
            user: None,
            grant: Grant::for_session(PermissionSet::all()),
            via: Via::Local,
        }
    }

    /// The audit log's actor: the user's id (sessions), `key:<id>` (API keys), `local` (CLI).
    pub fn actor(&self) -> String {
        match (&self.via, &self.user) {
            (Via::Key { id, .. }, _) => format!("key:{id}"),
            (Via::Local, _) => "local".to_owned(),
            (Via::Session { .. }, Some(u)) => u.id.to_string(),
            (Via::Session { .. }, None) => "anonymous".to_owned(),
        }
    }

    pub fn user_id(&self) -> Option<Uuid> {
        self.user.as_ref().map(|u| u.id)
    }

    pub fn session_id(&self) -> Option<Uuid> {
        match &self.via {
            Via::Session { id, .. } => Some(*id),
            _ => None,
        }
    }

    pub fn has(&self, p: Permission) -> bool {
        self.grant.permissions.contains(p)
    }

    /// Whether this principal may use `family` routes needing `permission` on `model`.
    pub fn allows(&self, family: RouteFamily, permission: Permission, model: Option<&str>) -> bool {
        let restricted = matches!(
            self.via,
            Via::Session {
                restriction: Restriction::EnrolMfaOnly | Restriction::Pending,
                ..
            }
        );
        !restricted && self.grant.allows(family, permission, model)
    }
}

/// What the first start did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// Users exist already.
    Ready,
    /// The admin named by `HEARTH_ADMIN_USER` was created.
    AdminCreated { username: String },
    /// No user yet: whoever opens `/setup?token=…` with this token creates the first admin.
    SetupToken {
        token: String,
        expires_at: SystemTime,
    },
}

#[derive(Debug)]
struct SetupToken {
    hash: hearth_auth::Sha256Hash,
    expires_at: SystemTime,
}

/// The accounts service. Cheap to share (`Arc`); every method is async and safe to call
/// concurrently.
pub struct Accounts {
    stores: Stores,
    config: AccountsConfig,
    policy: PasswordPolicy,
    setup: Mutex<Option<SetupToken>>,
    oidc: oidc::OidcState,
    /// Each key's use count at the last use summary.
    key_use_reported: Mutex<std::collections::HashMap<Uuid, u64>>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts")
            .field("stores", &self.stores)
            .finish_non_exhaustive()
    }
}

/// Longest user name accepted.
pub const MAX_USERNAME: usize = 64;

/// Checks a new user name: 1..=64 characters, letters, digits, `.`, `_`, `-`, `@`.
fn check_username(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_USERNAME
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(AccountsError::BadInput(format!(
            "a user name has 1 to {MAX_USERNAME} letters, digits, '.', '_', '-' or '@'"
        )))
    }
}

pub(crate) fn to_auth_role(r: Role) -> hearth_auth::Role {
    match r {
        Role::Admin => hearth_auth::Role::Admin,
        Role::User => hearth_auth::Role::User,
        Role::Viewer => hearth_auth::Role::Viewer,
        Role::Pending => hearth_auth::Role::Pending,
    }
}

/// Unix seconds of `t` (0 before 1970).
pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A password hash computed off the async threads (argon2id takes tens of milliseconds).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AccountsError::Internal(format!("password hashing task failed: {e}")))
}

impl Accounts {
    pub fn new(stores: Stores, config: AccountsConfig) -> Arc<Self> {
        Arc::new(Self {
            stores,
            config,
            policy: PasswordPolicy::default(),
            setup: Mutex::new(None),
            oidc: oidc::OidcState::default(),
            key_use_reported: Mutex::new(std::collections::HashMap::new()),
        })
    }

    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    pub fn config(&self) -> &AccountsConfig {
        &self.config
    }

    /// Checks `password` against the policy and hashes it.
    async fn hash_new_password(&self, password: &str, username: &str) -> Result<String> {
        self.policy
            .check(password, Some(username))
            .map_err(|p| AccountsError::BadInput(p.to_string()))?;
        let hasher = self.config.hasher.clone();
        let password = password.to_owned();
        Ok(blocking(move || hasher.hash(&password)).await??)
    }

    /// Creates a user after checking the name and password; audits nothing (callers do).
    async fn insert_user(
        &self,
        username: &str,
        password: Option<&str>,
        role: Role,
        now: SystemTime,
    ) -> Result<User> {
        check_username(username)?;
        let password_hash = match password {
            Some(p) => Some(self.hash_new_password(p, username).await?),
            None => None,
        };
        Ok(self
            .stores
            .users
            .create_user(&NewUser {
                id: Uuid::now_v7(),
                username: username.to_owned(),
                display_name: username.to_owned(),
                email: None,
                role,
                password_hash,
                created_at: now,
            })
            .await?)
    }

    /// First start: when no user exists, create the admin named by the configuration, or make
    /// a one-time setup token (printed by `hearth serve` as a link). Never a default password.
    pub async fn bootstrap(&self) -> Result<Bootstrap> {
        let now = SystemTime::now();
        if !self.stores.users.list_users(None, 1).await?.is_empty() {
            return Ok(Bootstrap::Ready);
        }
        if let Some((username, password)) = &self.config.bootstrap_admin {
            let user = self
                .insert_user(username, Some(password), Role::Admin, now)
                .await?;
            self.audit_system(
                "user.bootstrap_admin",
                &user.id.to_string(),
                "success",
                "from HEARTH_ADMIN_USER",
            )
            .await?;
            return Ok(Bootstrap::AdminCreated {
                username: user.username,
            });
        }
        let token = hearth_auth::token::SessionToken::generate()?;
        let expires_at = now + self.config.setup_token_lifetime;
        let mut slot = self
            .setup
            .lock()
            .map_err(|_| AccountsError::Internal("setup token lock poisoned".into()))?;
        *slot = Some(SetupToken {
            hash: token.hash(),
            expires_at,
        });
        drop(slot);
        Ok(Bootstrap::SetupToken {
            token: token.expose().to_owned(),
            expires_at,
        })
    }

    /// Whether a setup token is waiting to be used.
    pub fn setup_pending(&self) -> bool {
        self.setup.lock().is_ok_and(|s| s.is_some())
    }

    /// Uses the setup token (once) to create the first admin.
    pub async fn setup(
        &self,
        token: &str,
        username: &str,
        password: &str,
        client: &Client,
    ) -> Result<User> {
        let now = SystemTime::now();
        let presented = hearth_auth::token::SessionToken::parse(token)
            .map_err(|_| AccountsError::Unauthenticated(SETUP_INVALID.into()))?;
        // Check and take the token in one step so two requests cannot both use it.
        let taken = {
            let mut slot = self
                .setup
                .lock()
                .map_err(|_| AccountsError::Internal("setup token lock poisoned".into()))?;
            match slot.as_ref() {
                Some(s)
                    if hearth_auth::constant_time_eq(&s.hash.0, &presented.hash().0)
                        && now < s.expires_at =>
                {
                    slot.take()
                }
                _ => None,
            }
        };
        let Some(taken) = taken else {
            self.audit_event("anonymous", "setup.refused", "", "failure", client, "")
                .await?;
            return Err(AccountsError::Unauthenticated(SETUP_INVALID.into()));
        };
        match self
            .insert_user(username, Some(password), Role::Admin, now)
            .await
        {
            Ok(user) => {
                self.audit_event(
                    &user.id.to_string(),
                    "setup.admin_created",
                    &user.id.to_string(),
                    "success",
                    client,
                    "",
                )
                .await?;
                Ok(user)
            }
            Err(e) => {
                // A weak password must not burn the token.
                if let Ok(mut slot) = self.setup.lock() {
                    *slot = Some(taken);
                }
                Err(e)
            }
        }
    }
}

const SETUP_INVALID: &str = "this setup link is not valid (used already, expired, or mistyped); restart `hearth serve` for a new one, or set HEARTH_ADMIN_USER and HEARTH_ADMIN_PASSWORD";

#[cfg(test)]
mod tests;
