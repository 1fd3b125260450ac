//! Storage, one trait per concern: users (and their MFA secrets), groups, sessions, API keys,
//! the audit chain, login attempts. Row types and errors live here; SQL does not: the traits
//! are implemented by `hearth-store-sqlite` and `hearth-store-postgres`, and both run the same
//! contract suite ([`contract`], behind the `contract` feature).
//!
//! Conventions every backend keeps:
//! - ids are UUIDv7 chosen by the caller; times are UTC, stored as integer unix milliseconds,
//!   [`SystemTime`] here;
//! - every call that depends on the time takes `now` from the caller, so expiry is decided by
//!   one clock that tests can set;
//! - lookups never return revoked or expired rows; the atomic operations
//!   ([`UserStore::set_role`], [`MfaStore::accept_totp_step`],
//!   [`MfaStore::consume_recovery_code`], [`AuditStore::append`]) hold under concurrent callers,
//!   across processes on PostgreSQL.
#![forbid(unsafe_code)]

#[cfg(feature = "contract")]
pub mod contract;
mod types;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::SystemTime;

pub use async_trait::async_trait;
pub use types::*;
pub use uuid::Uuid;

/// What a store call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row to change does not exist (lookups answer `Ok(None)` instead).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A uniqueness rule was broken; names what was taken.
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// The change would leave no active admin.
    #[error(
        "this would leave no active admin; make another user admin first, then change this one"
    )]
    LastAdmin,
    /// A value the database cannot hold (a number out of range, a list that will not encode).
    #[error("invalid {what}: {why}")]
    Invalid { what: &'static str, why: String },
    /// The database cannot be reached or opened.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or a damaged database. Details are for the log.
    #[error("database error: {0}")]
    Internal(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Who may act on a row that has an owner: its owner only, or anyone (an admin).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Any,
    User(Uuid),
}

/// Accounts: identity, role, password hash, OIDC links, last login.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Conflict when the username (compared case-insensitively) is taken.
    async fn create_user(&self, user: &NewUser) -> Result<User>;
    async fn user(&self, id: Uuid) -> Result<Option<User>>;
    /// Case-insensitive.
    async fn user_by_username(&self, username: &str) -> Result<Option<User>>;
    async fn user_by_oidc(&self, issuer: &str, subject: &str) -> Result<Option<User>>;
    /// Conflict when the (issuer, subject) pair is linked already (to anyone).
    async fn link_oidc(
        &self,
        user: Uuid,
        issuer: &str,
        subject: &str,
        at: SystemTime,
    ) -> Result<()>;
    /// Users in id (creation) order, after `after`, at most `limit`.
    async fn list_users(&self, after: Option<Uuid>, limit: u32) -> Result<Vec<User>>;
    /// Atomic: refuses with [`StoreError::LastAdmin`] when it would demote the last active admin.
    async fn set_role(&self, id: Uuid, role: Role) -> Result<()>;
    /// Atomic: refuses with [`StoreError::LastAdmin`] when it would disable the last active admin.
    async fn set_disabled(&self, id: Uuid, disabled: bool) -> Result<()>;
    /// Sets (or clears) the password hash and `credentials_changed_at = at`.
    async fn set_password_hash(&self, id: Uuid, hash: Option<&str>, at: SystemTime) -> Result<()>;
    async fn record_login(&self, id: Uuid, at: SystemTime) -> Result<()>;
    /// Admins that are not disabled.
    async fn count_active_admins(&self) -> Result<u64>;
}

/// A user's second factor: one TOTP secret and its recovery codes.
#[async_trait]
pub trait MfaStore: Send + Sync {
    /// Store a new, not yet enabled secret (replacing any), forgetting the last accepted step.
    async fn set_totp(&self, user: Uuid, secret: &[u8], at: SystemTime) -> Result<()>;
    async fn totp(&self, user: Uuid) -> Result<Option<Totp>>;
    /// NotFound when the user has no secret.
    async fn enable_totp(&self, user: Uuid) -> Result<()>;
    /// Remove the secret and every recovery code.
    async fn delete_totp(&self, user: Uuid) -> Result<()>;
    /// Atomic: record `step` as accepted and answer true only if it is greater than the stored
    /// one; so of concurrent callers with the same step exactly one wins.
    async fn accept_totp_step(&self, user: Uuid, step: u64) -> Result<bool>;
    /// Replace the user's recovery codes (their hashes).
    async fn set_recovery_codes(&self, user: Uuid, hashes: &[[u8; 32]]) -> Result<()>;
    /// Atomic: mark the unused code with this hash used and answer true; false when there is no
    /// such unused code. Of concurrent callers exactly one wins.
    async fn consume_recovery_code(&self, user: Uuid, hash: &[u8; 32]) -> Result<bool>;
    async fn recovery_codes_left(&self, user: Uuid) -> Result<u64>;
}

/// Groups: names, members and additive permissions.
#[async_trait]
pub trait GroupStore: Send + Sync {
    /// Conflict when the name is taken.
    async fn create_group(&self, id: Uuid, name: &str, at: SystemTime) -> Result<Group>;
    async fn group(&self, id: Uuid) -> Result<Option<Group>>;
    async fn group_by_name(&self, name: &str) -> Result<Option<Group>>;
    /// By name.
    async fn list_groups(&self) -> Result<Vec<Group>>;
    /// With its memberships and permissions; NotFound when missing.
    async fn delete_group(&self, id: Uuid) -> Result<()>;
    /// Idempotent; NotFound when the group or the user is missing.
    async fn add_member(&self, group: Uuid, user: Uuid) -> Result<()>;
    /// False when the user was not a member.
    async fn remove_member(&self, group: Uuid, user: Uuid) -> Result<bool>;
    async fn members(&self, group: Uuid) -> Result<Vec<Uuid>>;
    /// Replace the group's permissions.
    async fn set_permissions(&self, group: Uuid, permissions: &BTreeSet<String>) -> Result<()>;
    async fn permissions(&self, group: Uuid) -> Result<BTreeSet<String>>;
    /// The groups `user` belongs to, by name.
    async fn groups_of(&self, user: Uuid) -> Result<Vec<Group>>;
    /// The union of the permissions of the user's groups.
    async fn user_permissions(&self, user: Uuid) -> Result<BTreeSet<String>>;
}

/// Web sessions, looked up by the hash of their token.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Conflict when the id or token hash exists.
    async fn create_session(&self, session: &NewSession) -> Result<Session>;
    /// Only a live session: not revoked, `now` before both expiries.
    async fn session_by_token_hash(
        &self,
        token_hash: &[u8; 32],
        now: SystemTime,
    ) -> Result<Option<Session>>;
    /// Move `last_seen_at` to `now` (extending the idle expiry); false when not live.
    async fn touch_session(&self, id: Uuid, now: SystemTime) -> Result<bool>;
    /// False when there is no such live session for `by`.
    async fn revoke_session(&self, id: Uuid, by: Owner, at: SystemTime) -> Result<bool>;
    /// Revoke every session of `user` but `except`; answers how many.
    async fn revoke_user_sessions(
        &self,
        user: Uuid,
        except: Option<Uuid>,
        at: SystemTime,
    ) -> Result<u64>;
    /// The user's live sessions, newest first.
    async fn user_sessions(&self, user: Uuid, now: SystemTime) -> Result<Vec<Session>>;
    /// Delete revoked and expired sessions; answers how many.
    async fn delete_expired_sessions(&self, now: SystemTime) -> Result<u64>;
}

/// API keys, looked up by their public prefix; the secret is checked by the caller against the
/// stored hash.
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// Conflict when the id or prefix exists.
    async fn create_key(&self, key: &NewApiKey) -> Result<ApiKey>;
    /// Only an unrevoked, unexpired key.
    async fn key_by_prefix(&self, prefix: &str, now: SystemTime) -> Result<Option<ApiKey>>;
    /// Every key of `owner`, revoked and expired ones too, newest first.
    async fn owner_keys(&self, owner: Uuid) -> Result<Vec<ApiKey>>;
    /// False when there is no such unrevoked key for `by`.
    async fn revoke_key(&self, id: Uuid, by: Owner, at: SystemTime) -> Result<bool>;
    /// `last_used_at = at`, `use_count += 1`.
    async fn record_key_use(&self, id: Uuid, at: SystemTime) -> Result<()>;
}

/// The hash of an event given its sequence number and the previous event's hash (all zeros
/// before the first).
pub type ChainHash = dyn Fn(u64, &[u8; 32], &NewEvent) -> [u8; 32] + Send + Sync;

/// The append-only audit log, a hash chain. Nothing updates or deletes events except
/// [`AuditStore::delete_events_before`], which keeps a checkpoint.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Serialised: reads the last hash, computes this event's with `hash`, inserts, in one
    /// transaction; sequence numbers have no gaps and the chain no forks.
    async fn append(&self, event: &NewEvent, hash: &ChainHash) -> Result<Event>;
    /// Events with `seq >= from`, in order, at most `limit`.
    async fn events(&self, from: u64, limit: u32) -> Result<Vec<Event>>;
    /// The last `n` events, in order.
    async fn tail(&self, n: u32) -> Result<Vec<Event>>;
    /// The sequence number and hash of the last deleted event, where verification starts.
    async fn checkpoint(&self) -> Result<Option<Checkpoint>>;
    /// Retention: delete the events before the first one at or after `before` (a prefix of the
    /// chain), moving the checkpoint to the last deleted; answers how many.
    async fn delete_events_before(&self, before: SystemTime) -> Result<u64>;
}

/// Failed sign-in attempts per account and per client address, for throttling.
#[async_trait]
pub trait LoginAttemptStore: Send + Sync {
    async fn record_failure(&self, subject: &Subject, at: SystemTime) -> Result<()>;
    /// Failures at or after `since`.
    async fn failures_since(&self, subject: &Subject, since: SystemTime) -> Result<u64>;
    /// Forget the subject's failures (after a successful sign-in).
    async fn clear_failures(&self, subject: &Subject) -> Result<()>;
    /// Delete failures before `before`; answers how many.
    async fn prune_failures(&self, before: SystemTime) -> Result<u64>;
}

/// Every store of one database.
#[derive(Clone)]
pub struct Stores {
    /// "sqlite" or "postgres", for logs.
    pub backend: &'static str,
    pub users: Arc<dyn UserStore>,
    pub mfa: Arc<dyn MfaStore>,
    pub groups: Arc<dyn GroupStore>,
    pub sessions: Arc<dyn SessionStore>,
    pub api_keys: Arc<dyn ApiKeyStore>,
    pub audit: Arc<dyn AuditStore>,
    pub login_attempts: Arc<dyn LoginAttemptStore>,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Stores {
    /// Every trait from one value that implements them all.
    pub fn from_one<S>(backend: &'static str, s: Arc<S>) -> Self
    where
        S: UserStore
            + MfaStore
            + GroupStore
            + SessionStore
            + ApiKeyStore
            + AuditStore
            + LoginAttemptStore
            + 'static,
    {
        Self {
            backend,
            users: s.clone(),
            mfa: s.clone(),
            groups: s.clone(),
            sessions: s.clone(),
            api_keys: s.clone(),
            audit: s.clone(),
            login_attempts: s,
        }
    }
}

/// Unix milliseconds of `t` (negative before 1970), saturating.
pub fn to_millis(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |m| -m),
    }
}

/// The time `ms` unix milliseconds denote.
pub fn from_millis(ms: i64) -> SystemTime {
    let d = std::time::Duration::from_millis(ms.unsigned_abs());
    let t = if ms >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(d)
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(d)
    };
    t.unwrap_or(SystemTime::UNIX_EPOCH)
}

/// The key usernames are unique by: Unicode lowercase.
pub fn username_key(username: &str) -> String {
    username.to_lowercase()
}

#[cfg(test)]
mod tests;
