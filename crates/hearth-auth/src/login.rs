//! The sign-in state machine, as a pure function: `step(config, state, event, now) -> (state,
//! effects)`.
//!
//! The machine decides; the caller does the work it asks for ([`Effect`]) and reports results back
//! as events. Checking a password or a second factor is an effect (`VerifyPassword`, `VerifyMfa`)
//! whose answer comes back as `PasswordChecked` / `MfaChecked`, so the tests can show that a
//! throttled attempt never reaches the password check.
//!
//! ```text
//! Start ──PasswordSubmitted──▶ VerifyingPassword ──PasswordChecked(ok)──▶ PasswordOk ─┐
//!   ▲  (throttled: Deny, no check)        │ (bad: RecordFailure)                      │ MFA required?
//!   └─────────────────────────────────────┘                                           │ no ─▶ SessionIssued
//!                    PasswordOk ──MfaSubmitted──▶ VerifyingMfa ──MfaChecked(ok)──▶ MfaOk ─▶ SessionIssued
//! ```
//!
//! Rules (each a proptest invariant in `tests/it/login.rs`):
//! - no session without a correct password for a known account, and — when MFA is required
//!   (enrolled, or an admin under `mfa_required_for_admins`) — a correct second factor
//!   (ASVS 6.3.2); an admin who must use MFA but has not enrolled gets a session restricted to
//!   enrolling ([`Restriction::EnrolMfaOnly`]);
//! - a disabled account never gets a session;
//! - a throttled attempt never verifies the password or the second factor (ASVS 6.3.1);
//! - a failure is always recorded and never clears the failure counter; only a complete sign-in
//!   does;
//! - an unknown account costs the same password-hashing work as a known one
//!   (`VerifyDummyPassword`) and gets the same reply as a wrong password (ASVS 6.3.8);
//! - every attempt, success or failure, emits an audit effect (ASVS 16.3.1);
//! - a session is always a new one ([`Effect::IssueSession`]: the caller makes a fresh token and
//!   drops any pre-login session, ASVS 7.2.4).

use std::time::{Duration, SystemTime};

use crate::policy::Role;
use crate::throttle::Decision;

/// What the caller knows about the account named in the attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountInfo {
    pub role: Role,
    pub disabled: bool,
    /// Whether the account has a second factor (TOTP) enrolled.
    pub mfa_enrolled: bool,
}

/// Sign-in configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginConfig {
    /// Admins must pass a second factor; an admin without one is let in only to enrol.
    pub mfa_required_for_admins: bool,
    /// How long after the password step the second factor may come.
    pub mfa_timeout: Duration,
    /// Wrong second factors allowed in one sign-in before it starts over.
    pub max_mfa_failures: u32,
}

impl Default for LoginConfig {
    fn default() -> Self {
        Self {
            mfa_required_for_admins: true,
            mfa_timeout: Duration::from_secs(5 * 60),
            max_mfa_failures: 3,
        }
    }
}

impl LoginConfig {
    /// Whether `account` must pass a second factor.
    pub fn mfa_required(&self, account: &AccountInfo) -> bool {
        account.mfa_enrolled || (self.mfa_required_for_admins && account.role == Role::Admin)
    }
}

/// Where a sign-in stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Start,
    /// Waiting for the password check asked for by `VerifyPassword`/`VerifyDummyPassword`.
    VerifyingPassword {
        account: Option<AccountInfo>,
    },
    /// Password correct; a second factor is needed.
    PasswordOk {
        account: AccountInfo,
        since: SystemTime,
        mfa_failures: u32,
    },
    /// Waiting for the second-factor check asked for by `VerifyMfa`.
    VerifyingMfa {
        account: AccountInfo,
        since: SystemTime,
        mfa_failures: u32,
    },
    /// Terminal: a session was issued. Further events change nothing.
    SessionIssued {
        restriction: Restriction,
        mfa: bool,
    },
}

/// Limits on an issued session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restriction {
    /// The account's full rights.
    None,
    /// The account awaits approval: it can only see its own status (its role grants no more).
    Pending,
    /// MFA is required but not enrolled: the session may only enrol a second factor.
    EnrolMfaOnly,
}

/// Which factor an attempt or failure concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
    Password,
    /// TOTP code or recovery code.
    Mfa,
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A user name and password arrived. `account` is the looked-up account (`None`: no such
    /// user); `throttle` the decision for this account and client address.
    PasswordSubmitted {
        account: Option<AccountInfo>,
        throttle: Decision,
    },
    /// The answer to `VerifyPassword` (or `VerifyDummyPassword`, which the caller reports as
    /// `ok: false`).
    PasswordChecked { ok: bool },
    /// A TOTP or recovery code arrived.
    MfaSubmitted { throttle: Decision },
    /// The answer to `VerifyMfa`.
    MfaChecked { ok: bool },
}

/// What the caller must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Verify the submitted password against the account's stored hash, then send
    /// `PasswordChecked`.
    VerifyPassword,
    /// No such account: spend the same work on a dummy hash, then send `PasswordChecked { ok:
    /// false }`.
    VerifyDummyPassword,
    /// Verify the submitted TOTP (single use) or recovery code (single use), then send
    /// `MfaChecked`.
    VerifyMfa,
    /// Add a failure for this account and client address to the throttle.
    RecordFailure(Factor),
    /// Clear the account's failure counter (only after a complete sign-in).
    ClearFailures,
    /// Create a new session (fresh token; drop any session the client had).
    IssueSession { restriction: Restriction, mfa: bool },
    /// Write an audit event.
    Audit(AuditNote),
    /// Answer the client.
    Reply(Reply),
}

/// The audit events a sign-in produces (action names for `audit::AuditEvent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditNote {
    /// `login.throttled`
    Throttled(Factor),
    /// `login.password_failed` / `login.mfa_failed`
    Failed(Factor),
    /// `login.password_ok` (more factors to come)
    PasswordOk,
    /// `login.refused_disabled`
    RefusedDisabled,
    /// `login.success`
    Success,
    /// `login.abandoned` (MFA step timed out, too many MFA failures, or an out-of-order event)
    Abandoned,
}

impl AuditNote {
    pub fn action(self) -> &'static str {
        match self {
            AuditNote::Throttled(Factor::Password) => "login.password_throttled",
            AuditNote::Throttled(Factor::Mfa) => "login.mfa_throttled",
            AuditNote::Failed(Factor::Password) => "login.password_failed",
            AuditNote::Failed(Factor::Mfa) => "login.mfa_failed",
            AuditNote::PasswordOk => "login.password_ok",
            AuditNote::RefusedDisabled => "login.refused_disabled",
            AuditNote::Success => "login.success",
            AuditNote::Abandoned => "login.abandoned",
        }
    }
}

/// What the client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Too many attempts: wait.
    Throttled { retry_after: Duration },
    /// Wrong user name or password — the same answer for both (ASVS 6.3.8).
    InvalidCredentials,
    /// Password accepted; send a TOTP or recovery code.
    MfaNeeded,
    /// Wrong or already used code; try again.
    InvalidCode,
    /// The account is disabled (said only after a correct password).
    AccountDisabled,
    /// Signed in.
    SignedIn { restriction: Restriction },
    /// The sign-in took too long or went wrong; start again.
    StartAgain,
    /// Still waiting for the caller's check; nothing to answer yet.
    Busy,
}

/// Advances the sign-in. Unexpected events start over without a session; `SessionIssued` is
/// terminal.
pub fn step(
    config: &LoginConfig,
    state: State,
    event: Event,
    now: SystemTime,
) -> (State, Vec<Effect>) {
    use Effect::*;
    match (state, event) {
        (done @ State::SessionIssued { .. }, _) => (done, vec![]),

        // A new password attempt restarts any unfinished sign-in.
        (
            State::Start | State::PasswordOk { .. },
            Event::PasswordSubmitted { account, throttle },
        ) => match throttle {
            Decision::Deny { retry_after } => (
                State::Start,
                vec![
                    Audit(AuditNote::Throttled(Factor::Password)),
                    Reply(self::Reply::Throttled { retry_after }),
                ],
            ),
            Decision::Allow => {
                let check = if account.is_some() {
                    VerifyPassword
                } else {
                    VerifyDummyPassword
                };
                (State::VerifyingPassword { account }, vec![check])
            }
        },

        (State::VerifyingPassword { account }, Event::PasswordChecked { ok }) => match account {
            Some(account) if ok => password_ok(config, account, now),
            _ => (
                State::Start,
                vec![
                    RecordFailure(Factor::Password),
                    Audit(AuditNote::Failed(Factor::Password)),
                    Reply(self::Reply::InvalidCredentials),
                ],
            ),
        },

        (
            State::PasswordOk {
                account,
                since,
                mfa_failures,
            },
            Event::MfaSubmitted { throttle },
        ) => {
            if expired(config, since, now) {
                return abandoned();
            }
            match throttle {
                Decision::Deny { retry_after } => (
                    State::PasswordOk {
                        account,
                        since,
                        mfa_failures,
                    },
                    vec![
                        Audit(AuditNote::Throttled(Factor::Mfa)),
                        Reply(self::Reply::Throttled { retry_after }),
                    ],
                ),
                Decision::Allow => (
                    State::VerifyingMfa {
                        account,
                        since,
                        mfa_failures,
                    },
                    vec![VerifyMfa],
                ),
            }
        }

        (
            State::VerifyingMfa {
                account,
                since,
                mfa_failures,
            },
            Event::MfaChecked { ok },
        ) => {
            if ok && !expired(config, since, now) {
                return issue(account, Restriction::None, true);
            }
            if ok {
                return abandoned();
            }
            let mfa_failures = mfa_failures.saturating_add(1);
            let mut effects = vec![
                RecordFailure(Factor::Mfa),
                Audit(AuditNote::Failed(Factor::Mfa)),
            ];
            if mfa_failures >= config.max_mfa_failures || expired(config, since, now) {
                effects.push(Audit(AuditNote::Abandoned));
                effects.push(Reply(self::Reply::StartAgain));
                (State::Start, effects)
            } else {
                effects.push(Reply(self::Reply::InvalidCode));
                (
                    State::PasswordOk {
                        account,
                        since,
                        mfa_failures,
                    },
                    effects,
                )
            }
        }

        // Waiting for a check the caller has not reported: a second submission is not
        // processed (it cannot skip the check).
        (
            state @ (State::VerifyingPassword { .. } | State::VerifyingMfa { .. }),
            Event::PasswordSubmitted { .. } | Event::MfaSubmitted { .. },
        ) => (state, vec![Reply(self::Reply::Busy)]),

        // Anything else is out of order: start over, without a session.
        (State::Start, _) => (State::Start, vec![Reply(self::Reply::StartAgain)]),
        (_, _) => abandoned(),
    }
}

fn expired(config: &LoginConfig, since: SystemTime, now: SystemTime) -> bool {
    now.duration_since(since)
        .is_ok_and(|d| d > config.mfa_timeout)
}

fn abandoned() -> (State, Vec<Effect>) {
    (
        State::Start,
        vec![
            Effect::Audit(AuditNote::Abandoned),
            Effect::Reply(Reply::StartAgain),
        ],
    )
}

fn password_ok(
    config: &LoginConfig,
    account: AccountInfo,
    now: SystemTime,
) -> (State, Vec<Effect>) {
    if account.disabled {
        // The password was right, so this is not a guess; it still counts as a failure so that a
        // disabled account cannot be used as an unthrottled password oracle.
        return (
            State::Start,
            vec![
                Effect::RecordFailure(Factor::Password),
                Effect::Audit(AuditNote::RefusedDisabled),
                Effect::Reply(Reply::AccountDisabled),
            ],
        );
    }
    if account.mfa_enrolled {
        return (
            State::PasswordOk {
                account,
                since: now,
                mfa_failures: 0,
            },
            vec![
                Effect::Audit(AuditNote::PasswordOk),
                Effect::Reply(Reply::MfaNeeded),
            ],
        );
    }
    if config.mfa_required(&account) {
        // Required but not enrolled: a session that can only enrol.
        return issue(account, Restriction::EnrolMfaOnly, false);
    }
    let restriction = if account.role == Role::Pending {
        Restriction::Pending
    } else {
        Restriction::None
    };
    issue(account, restriction, false)
}

fn issue(account: AccountInfo, restriction: Restriction, mfa: bool) -> (State, Vec<Effect>) {
    let restriction = if account.role == Role::Pending && restriction == Restriction::None {
        Restriction::Pending
    } else {
        restriction
    };
    (
        State::SessionIssued { restriction, mfa },
        vec![
            Effect::ClearFailures,
            Effect::IssueSession { restriction, mfa },
            Effect::Audit(AuditNote::Success),
            Effect::Reply(Reply::SignedIn { restriction }),
        ],
    )
}
