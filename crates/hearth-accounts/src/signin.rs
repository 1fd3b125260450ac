//! Sign-up, sign-in, sessions, and recognising a session cookie or an API key.
//!
//! Sign-in drives `hearth_auth::login::step`: this file performs the effects the machine asks
//! for (check the password or code, record or clear failures, issue the session, audit) and
//! feeds their results back. The password and the one-time code come in one request; without a
//! code an account with MFA answers [`AccountsError::MfaRequired`] (after a correct password
//! only), and the client sends both again.

use std::time::{Duration, SystemTime};

use hearth_auth::login::{
    AccountInfo, AuditNote, Effect, Event, LoginConfig, Reply, Restriction, State, step,
};
use hearth_auth::policy::{Grant, PermissionSet, Scope, effective, user_permissions};
use hearth_auth::throttle::{Decision, address_key};
use hearth_auth::token::{ApiKey as KeyToken, CsrfKey, SessionToken};
use hearth_store::{NewSession, Owner, Role, Session, Subject, User, Uuid, username_key};

use crate::{Accounts, AccountsError, Client, Principal, Result, SignupPolicy, Via, blocking};

/// A sign-in attempt.
#[derive(Debug, Clone, Default)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    /// A TOTP code or a recovery code, for accounts with MFA.
    pub code: Option<String>,
}

/// A new session: put `token` in the cookie, give `csrf` to the page.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub token: String,
    pub csrf: String,
    pub session: Session,
    pub user: User,
    pub restriction: Restriction,
}

/// The CSRF token of a session: HMAC of its id under the session's own secret.
fn csrf_token(session: &Session) -> String {
    let mut key = [0u8; 32];
    let n = session.csrf_secret.len().min(32);
    key[..n].copy_from_slice(&session.csrf_secret[..n]);
    CsrfKey::from_bytes(key).token_for(&session.id.to_string())
}

impl Accounts {
    /// Throttle decision for an account name and a client address, from the stored failures.
    async fn throttle(&self, account: &str, client: &Client, now: SystemTime) -> Result<Decision> {
        let mut d = self
            .decide(&Subject::Account(username_key(account)), now)
            .await?;
        if let Some(a) = client.address {
            d = d.and(
                self.decide(&Subject::Address(address_key(a).to_string()), now)
                    .await?,
            );
        }
        Ok(d)
    }

    /// `hearth_auth::throttle::decide` over counts: the store answers how many failures fall in
    /// a window, not when the latest was, so the wait is measured from "a failure within the
    /// delay" (an upper bound of the exact rule's wait).
    async fn decide(&self, subject: &Subject, now: SystemTime) -> Result<Decision> {
        let p = &self.config.throttle;
        let since = now.checked_sub(p.window).unwrap_or(SystemTime::UNIX_EPOCH);
        let count = self
            .stores
            .login_attempts
            .failures_since(subject, since)
            .await?;
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        if count < p.free_failures {
            return Ok(Decision::Allow);
        }
        let excess = count - p.free_failures;
        let delay = p
            .base_delay
            .checked_mul(1u32.checked_shl(excess).unwrap_or(u32::MAX))
            .unwrap_or(p.max_delay)
            .min(p.max_delay);
        let recent = now.checked_sub(delay).unwrap_or(SystemTime::UNIX_EPOCH);
        if self
            .stores
            .login_attempts
            .failures_since(subject, recent)
            .await?
            > 0
        {
            Ok(Decision::Deny { retry_after: delay })
        } else {
            Ok(Decision::Allow)
        }
    }

    async fn record_failure(&self, account: &str, client: &Client, now: SystemTime) -> Result<()> {
        let attempts = &self.stores.login_attempts;
        attempts
            .record_failure(&Subject::Account(username_key(account)), now)
            .await?;
        if let Some(a) = client.address {
            attempts
                .record_failure(&Subject::Address(address_key(a).to_string()), now)
                .await?;
        }
        Ok(())
    }

    /// Creates an account for someone signing up (pending unless the configuration opens
    /// sign-up; refused when it is closed).
    pub async fn signup(&self, username: &str, password: &str, client: &Client) -> Result<User> {
        let role = match self.config.signup {
            SignupPolicy::Closed => {
                return Err(AccountsError::Forbidden(
                    "sign up here: ask an administrator for an account".into(),
                ));
            }
            SignupPolicy::Pending => Role::Pending,
            SignupPolicy::Open => Role::User,
        };
        let user = match self
            .insert_user(username, Some(password), role, SystemTime::now())
            .await
        {
            Ok(u) => u,
            Err(e) => {
                self.audit_event(
                    "anonymous",
                    "user.signup",
                    username,
                    "failure",
                    client,
                    &e.to_string(),
                )
                .await?;
                return Err(e);
            }
        };
        self.audit_event(
            &user.id.to_string(),
            "user.signup",
            &user.id.to_string(),
            "success",
            client,
            role.as_str(),
        )
        .await?;
        Ok(user)
    }

    /// Signs in: password, then (when enrolled, or required for admins) a one-time code, then a
    /// fresh session (ASVS 7.2.4: a new token at every sign-in).
    pub async fn login(&self, req: &LoginRequest, client: &Client) -> Result<SignedIn> {
        let now = SystemTime::now();
        let name: String = req.username.chars().take(crate::MAX_USERNAME + 1).collect();
        let throttle = self.throttle(&name, client, now).await?;
        let user = if name.chars().count() > crate::MAX_USERNAME {
            None
        } else {
            self.stores.users.user_by_username(&name).await?
        };
        let totp = match &user {
            Some(u) => self.stores.mfa.totp(u.id).await?,
            None => None,
        };
        let account = user.as_ref().map(|u| AccountInfo {
            role: crate::to_auth_role(u.role),
            disabled: u.disabled,
            mfa_enrolled: totp.as_ref().is_some_and(|t| t.enabled),
        });
        let config = LoginConfig {
            mfa_required_for_admins: self.config.mfa_required_for_admins,
            ..LoginConfig::default()
        };
        let target = user.as_ref().map_or_else(String::new, |u| u.id.to_string());
        let actor = if target.is_empty() {
            "anonymous".to_owned()
        } else {
            target.clone()
        };
        let mut state = State::Start;
        let mut event = Event::PasswordSubmitted { account, throttle };
        let mut session: Option<SignedIn> = None;
        // Bounded: each event leads to at most one further event.
        for _ in 0..8 {
            let (next, effects) = step(&config, state, event, now);
            state = next;
            let mut follow: Option<Event> = None;
            for effect in effects {
                match effect {
                    Effect::VerifyPassword => {
                        let ok = match user.as_ref().and_then(|u| u.password_hash.clone()) {
                            Some(phc) => {
                                let hasher = self.config.hasher.clone();
                                let pw = req.password.clone();
                                blocking(move || hasher.verify(&pw, &phc)).await??
                            }
                            None => {
                                let hasher = self.config.hasher.clone();
                                let pw = req.password.clone();
                                blocking(move || hasher.verify_dummy(&pw)).await?
                            }
                        };
                        follow = Some(Event::PasswordChecked { ok });
                    }
                    Effect::VerifyDummyPassword => {
                        let hasher = self.config.hasher.clone();
                        let pw = req.password.clone();
                        blocking(move || hasher.verify_dummy(&pw)).await?;
                        follow = Some(Event::PasswordChecked { ok: false });
                    }
                    Effect::VerifyMfa => {
                        let ok = match (&user, &req.code) {
                            (Some(u), Some(code)) => {
                                self.check_second_factor(u.id, code, now).await?
                            }
                            _ => false,
                        };
                        follow = Some(Event::MfaChecked { ok });
                    }
                    Effect::RecordFailure(_) => self.record_failure(&name, client, now).await?,
                    Effect::ClearFailures => {
                        self.stores
                            .login_attempts
                            .clear_failures(&Subject::Account(username_key(&name)))
                            .await?;
                    }
                    Effect::IssueSession { restriction, .. } => {
                        if let Some(u) = &user {
                            if u.role == Role::Pending {
                                // Pending accounts wait for approval: no session at all.
                                self.audit_event(
                                    &actor,
                                    "login.refused_pending",
                                    &target,
                                    "failure",
                                    client,
                                    "",
                                )
                                .await?;
                                return Err(AccountsError::AccountPending);
                            }
                            session = Some(self.issue_session(u, restriction, client, now).await?);
                        }
                    }
                    Effect::Audit(note) => {
                        let outcome = match note {
                            AuditNote::Success | AuditNote::PasswordOk => "success",
                            _ => "failure",
                        };
                        self.audit_event(&actor, note.action(), &target, outcome, client, "")
                            .await?;
                    }
                    Effect::Reply(reply) => match reply {
                        Reply::Throttled { retry_after } => {
                            return Err(AccountsError::Throttled { retry_after });
                        }
                        Reply::InvalidCredentials => return Err(AccountsError::InvalidCredentials),
                        Reply::AccountDisabled => return Err(AccountsError::AccountDisabled),
                        Reply::InvalidCode | Reply::StartAgain => {
                            return Err(AccountsError::InvalidCode);
                        }
                        Reply::Busy => {
                            return Err(AccountsError::Internal(
                                "sign-in state machine busy".into(),
                            ));
                        }
                        Reply::MfaNeeded => {
                            if req.code.as_deref().is_none_or(str::is_empty) {
                                return Err(AccountsError::MfaRequired);
                            }
                            let throttle = self.throttle(&name, client, now).await?;
                            follow = Some(Event::MfaSubmitted { throttle });
                        }
                        Reply::SignedIn { .. } => {
                            if let Some(u) = &user {
                                self.stores.users.record_login(u.id, now).await?;
                            }
                            return session.ok_or_else(|| {
                                AccountsError::Internal("signed in without a session".into())
                            });
                        }
                    },
                }
            }
            match follow {
                Some(e) => event = e,
                None => break,
            }
        }
        Err(AccountsError::Internal("sign-in did not finish".into()))
    }

    async fn issue_session(
        &self,
        user: &User,
        restriction: Restriction,
        client: &Client,
        now: SystemTime,
    ) -> Result<SignedIn> {
        let token = SessionToken::generate()?;
        let csrf_secret = CsrfKey::generate()?;
        let session = self
            .stores
            .sessions
            .create_session(&NewSession {
                id: Uuid::now_v7(),
                user_id: user.id,
                token_hash: token.hash().0,
                csrf_secret: csrf_secret.as_bytes().to_vec(),
                created_at: now,
                idle_timeout: self.config.session_idle,
                absolute_expires_at: now + self.config.session_lifetime,
                client_address: client.addr_text(),
                user_agent: client
                    .user_agent
                    .as_ref()
                    .map(|a| a.chars().take(256).collect()),
            })
            .await?;
        Ok(SignedIn {
            token: token.expose().to_owned(),
            csrf: csrf_token(&session),
            session,
            user: user.clone(),
            restriction,
        })
    }

    /// Issues a session for a user who proved who they are some other way (OIDC).
    pub(crate) async fn session_for(&self, user: &User, client: &Client) -> Result<SignedIn> {
        let now = SystemTime::now();
        if user.disabled {
            return Err(AccountsError::AccountDisabled);
        }
        if user.role == Role::Pending {
            return Err(AccountsError::AccountPending);
        }
        let s = self
            .issue_session(user, Restriction::None, client, now)
            .await?;
        self.stores.users.record_login(user.id, now).await?;
        Ok(s)
    }

    /// The user's permissions now: role, groups, disabled.
    pub(crate) async fn permissions_of(&self, user: &User) -> Result<PermissionSet> {
        let names = self.stores.groups.user_permissions(user.id).await?;
        // Unknown names (from a newer version) are skipped, not fatal.
        let groups: Vec<PermissionSet> = names
            .iter()
            .filter_map(|n| PermissionSet::parse(&[n.as_str()]).ok())
            .collect();
        Ok(user_permissions(
            crate::to_auth_role(user.role),
            user.disabled,
            &groups,
        ))
    }

    /// The principal a session cookie stands for, or `None` when the token is malformed,
    /// unknown, revoked, expired, or its user is disabled or changed their password since.
    /// Seeing a live session moves its idle expiry.
    pub async fn authenticate_session(&self, token: &str) -> Result<Option<Principal>> {
        let now = SystemTime::now();
        let Ok(token) = SessionToken::parse(token) else {
            return Ok(None);
        };
        let Some(session) = self
            .stores
            .sessions
            .session_by_token_hash(&token.hash().0, now)
            .await?
        else {
            return Ok(None);
        };
        let Some(user) = self.stores.users.user(session.user_id).await? else {
            return Ok(None);
        };
        if user.disabled || user.role == Role::Pending {
            return Ok(None);
        }
        self.stores.sessions.touch_session(session.id, now).await?;
        let mfa_enabled = self
            .stores
            .mfa
            .totp(user.id)
            .await?
            .is_some_and(|t| t.enabled);
        let restriction =
            if self.config.mfa_required_for_admins && user.role == Role::Admin && !mfa_enabled {
                Restriction::EnrolMfaOnly
            } else {
                Restriction::None
            };
        let grant = Grant::for_session(self.permissions_of(&user).await?);
        Ok(Some(Principal {
            via: Via::Session {
                id: session.id,
                csrf: csrf_token(&session),
                restriction,
            },
            user: Some(user),
            grant,
        }))
    }

    /// The principal an API key (`hearth_<id>_<secret>`) stands for: the owner's current
    /// rights intersected with the key's scope (ASVS 8.2.1). Records the use.
    pub async fn authenticate_key(&self, presented: &str, client: &Client) -> Result<Principal> {
        let now = SystemTime::now();
        let invalid = || {
            AccountsError::Unauthenticated(
                "invalid API key: it is malformed, unknown, revoked or expired; create a new one with `hearth key create` or in your account settings".into(),
            )
        };
        let Ok(key) = KeyToken::parse(presented) else {
            return Err(invalid());
        };
        let Some(row) = self.stores.api_keys.key_by_prefix(key.id(), now).await? else {
            return Err(invalid());
        };
        if !key.matches(&hearth_auth::Sha256Hash(row.secret_hash)) {
            self.audit_event(
                "anonymous",
                "key.rejected",
                &format!("key:{}", row.id),
                "failure",
                client,
                "wrong secret",
            )
            .await?;
            return Err(invalid());
        }
        let Some(owner) = self.stores.users.user(row.owner).await? else {
            return Err(invalid());
        };
        if owner.disabled || owner.role == Role::Pending {
            return Err(invalid());
        }
        let scope = Scope::parse(&row.scopes, &row.models)
            .map_err(|e| AccountsError::Internal(format!("stored key scope: {e}")))?;
        let grant = effective(self.permissions_of(&owner).await?, &scope);
        self.stores.api_keys.record_key_use(row.id, now).await?;
        Ok(Principal {
            user: Some(owner),
            grant,
            via: Via::Key {
                id: row.id,
                prefix: row.prefix,
            },
        })
    }

    /// Whether `presented` is the CSRF token of the principal's session. Keys and the CLI need
    /// none (they are not sent by browsers on their own).
    pub fn check_csrf(&self, who: &Principal, presented: Option<&str>) -> bool {
        match &who.via {
            Via::Session { csrf, .. } => presented
                .is_some_and(|p| hearth_auth::constant_time_eq(p.as_bytes(), csrf.as_bytes())),
            Via::Key { .. } | Via::Local => true,
        }
    }

    /// Ends the principal's session.
    pub async fn logout(&self, who: &Principal, client: &Client) -> Result<()> {
        let (Some(id), Some(user)) = (who.session_id(), who.user_id()) else {
            return Err(AccountsError::BadInput(
                "only a web session can sign out".into(),
            ));
        };
        self.stores
            .sessions
            .revoke_session(id, Owner::User(user), SystemTime::now())
            .await?;
        self.audit_event(
            &who.actor(),
            "logout",
            &id.to_string(),
            "success",
            client,
            "",
        )
        .await
    }

    fn own_user<'a>(&self, who: &'a Principal) -> Result<&'a User> {
        who.user
            .as_ref()
            .ok_or_else(|| AccountsError::BadInput("this needs a signed-in user".into()))
    }

    /// Changes the principal's password (the current one must be given) and ends every other
    /// session of theirs (ASVS 7.4.3).
    pub async fn change_password(
        &self,
        who: &Principal,
        current: &str,
        new: &str,
        client: &Client,
    ) -> Result<u64> {
        let user = self.own_user(who)?.clone();
        self.require_own_account(who)?;
        let ok = match user.password_hash.clone() {
            Some(phc) => {
                let hasher = self.config.hasher.clone();
                let pw = current.to_owned();
                blocking(move || hasher.verify(&pw, &phc)).await??
            }
            None => false,
        };
        if !ok {
            self.audit_event(
                &who.actor(),
                "user.password_change",
                &user.id.to_string(),
                "failure",
                client,
                "wrong current password",
            )
            .await?;
            return Err(AccountsError::BadInput(
                "the current password is wrong".into(),
            ));
        }
        let hash = self.hash_new_password(new, &user.username).await?;
        let now = SystemTime::now();
        self.stores
            .users
            .set_password_hash(user.id, Some(&hash), now)
            .await?;
        self.end_other_sessions(who, user.id, "user.password_change", client, now)
            .await
    }

    /// End every session of `user` but the caller's own (after a credential changed) and audit
    /// `action` with how many ended; returns that number.
    pub(crate) async fn end_other_sessions(
        &self,
        who: &Principal,
        user: Uuid,
        action: &str,
        client: &Client,
        now: SystemTime,
    ) -> Result<u64> {
        let ended = self
            .stores
            .sessions
            .revoke_user_sessions(user, who.session_id(), now)
            .await?;
        self.audit_event(
            &who.actor(),
            action,
            &user.to_string(),
            "success",
            client,
            &format!("ended {ended} other sessions"),
        )
        .await?;
        Ok(ended)
    }

    pub(crate) fn require_own_account(&self, who: &Principal) -> Result<()> {
        if who.allows(
            crate::RouteFamily::Account,
            crate::Permission::ManageOwnAccount,
            None,
        ) || matches!(
            who.via,
            Via::Session {
                restriction: Restriction::EnrolMfaOnly,
                ..
            }
        ) {
            Ok(())
        } else {
            Err(AccountsError::Forbidden("change this account".into()))
        }
    }

    /// The principal's live sessions, newest first.
    pub async fn my_sessions(&self, who: &Principal) -> Result<Vec<Session>> {
        let user = self.own_user(who)?;
        Ok(self
            .stores
            .sessions
            .user_sessions(user.id, SystemTime::now())
            .await?)
    }

    /// Ends one of the principal's sessions; another user's answers NotFound.
    pub async fn end_my_session(&self, who: &Principal, id: Uuid, client: &Client) -> Result<()> {
        let user = self.own_user(who)?;
        if !self
            .stores
            .sessions
            .revoke_session(id, Owner::User(user.id), SystemTime::now())
            .await?
        {
            return Err(AccountsError::NotFound("session".into()));
        }
        self.audit_event(
            &who.actor(),
            "session.end",
            &id.to_string(),
            "success",
            client,
            "",
        )
        .await
    }

    /// Session lifetimes, for the `auth/session` answer.
    pub fn session_lifetimes(&self) -> (Duration, Duration) {
        (self.config.session_idle, self.config.session_lifetime)
    }
}
