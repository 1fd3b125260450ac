//! Row types: what callers pass in (`New…`) and what the stores answer.

use std::time::{Duration, SystemTime};

use uuid::Uuid;

/// What a user may do, coarsely; groups add permissions on top.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Admin,
    User,
    Viewer,
    /// Signed up, waiting for an admin's approval.
    Pending,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::User, Role::Viewer, Role::Pending];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
            Role::Viewer => "viewer",
            Role::Pending => "pending",
        }
    }

    /// The role named exactly `s` (lowercase, as [`Role::as_str`] writes it).
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    pub role: Role,
    /// None for users who sign in only through OIDC.
    pub password_hash: Option<String>,
    pub created_at: SystemTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    /// As given at creation (unique case-insensitively).
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    pub role: Role,
    pub password_hash: Option<String>,
    pub disabled: bool,
    pub created_at: SystemTime,
    /// Last change of the password (creation at first): sessions older than this are stale.
    pub credentials_changed_at: SystemTime,
    pub last_login_at: Option<SystemTime>,
}

/// A user's TOTP secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Totp {
    pub secret: Vec<u8>,
    pub enabled: bool,
    /// The greatest time step accepted so far.
    pub last_step: Option<u64>,
    pub created_at: SystemTime,
}

impl std::fmt::Debug for Totp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Totp")
            .field("secret", &"<hidden>")
            .field("enabled", &self.enabled)
            .field("last_step", &self.last_step)
            .field("created_at", &self.created_at)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: Uuid,
    pub name: String,
    pub created_at: SystemTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    pub id: Uuid,
    pub user_id: Uuid,
    /// SHA-256 of the cookie's token; the token itself is never stored.
    pub token_hash: [u8; 32],
    /// The session's CSRF secret (or its hash: the caller decides).
    pub csrf_secret: Vec<u8>,
    pub created_at: SystemTime,
    /// The session ends this long after it was last seen…
    pub idle_timeout: Duration,
    /// …and at this time in any case.
    pub absolute_expires_at: SystemTime,
    pub client_address: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: Uuid,
    pub user_id: Uuid,
    pub token_hash: [u8; 32],
    pub csrf_secret: Vec<u8>,
    pub created_at: SystemTime,
    pub last_seen_at: SystemTime,
    pub idle_timeout: Duration,
    pub absolute_expires_at: SystemTime,
    pub client_address: Option<String>,
    pub user_agent: Option<String>,
}

impl Session {
    /// When the session ends if it is not seen again.
    pub fn expires_at(&self) -> SystemTime {
        self.last_seen_at
            .checked_add(self.idle_timeout)
            .map_or(self.absolute_expires_at, |idle| {
                idle.min(self.absolute_expires_at)
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiKey {
    pub id: Uuid,
    pub owner: Uuid,
    pub name: String,
    /// The public part of the key, unique, used to find it.
    pub prefix: String,
    /// Hash of the secret part.
    pub secret_hash: [u8; 32],
    /// Which routes (the caller's vocabulary).
    pub scopes: Vec<String>,
    /// Which models; empty means every model the owner may use.
    pub models: Vec<String>,
    pub expires_at: Option<SystemTime>,
    pub created_at: SystemTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: Uuid,
    pub owner: Uuid,
    pub name: String,
    pub prefix: String,
    pub secret_hash: [u8; 32],
    pub scopes: Vec<String>,
    pub models: Vec<String>,
    pub expires_at: Option<SystemTime>,
    pub created_at: SystemTime,
    pub last_used_at: Option<SystemTime>,
    pub use_count: u64,
    pub revoked_at: Option<SystemTime>,
}

/// An audit event before it is appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub time: SystemTime,
    /// A user id, a key id, "anonymous" or "system".
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub client_address: Option<String>,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// 1, 2, 3, … with no gaps.
    pub seq: u64,
    pub time: SystemTime,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub client_address: Option<String>,
    pub detail: String,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

impl Event {
    /// The event as it was given to `append` (what its hash covers).
    pub fn as_new(&self) -> NewEvent {
        NewEvent {
            time: self.time,
            actor: self.actor.clone(),
            action: self.action.clone(),
            target: self.target.clone(),
            outcome: self.outcome.clone(),
            client_address: self.client_address.clone(),
            detail: self.detail.clone(),
        }
    }
}

/// Where the retained chain starts: the last deleted event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: u64,
    pub hash: [u8; 32],
}

/// Whose failed sign-ins are counted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A username key (see [`crate::username_key`]), whether or not such a user exists.
    Account(String),
    /// A client address.
    Address(String),
}

impl Subject {
    /// (kind, key) as stored.
    pub fn parts(&self) -> (&'static str, &str) {
        match self {
            Subject::Account(a) => ("account", a),
            Subject::Address(a) => ("address", a),
        }
    }
}
