//! The contract every backend keeps: one async body per behaviour, run against each backend by
//! [`contract_tests!`](crate::contract_tests). A backend crate's `tests/it/main.rs` says
//!
//! ```ignore
//! async fn fresh(name: &str) -> Option<hearth_store::Stores> { /* an empty database */ }
//! hearth_store::contract_tests!(fresh);
//! ```
//!
//! and gets one multi-threaded `#[tokio::test]` per body (`fresh` answers `None` to skip).
#![expect(
    clippy::unwrap_used,
    reason = "test bodies: a failed expectation is a failed test"
)]

use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use uuid::Uuid;

use crate::*;

/// Expands to one multi-threaded `#[tokio::test]` per contract body. `$fresh` is an async fn
/// `(test_name: &str) -> Option<Stores>` giving each test its own empty database; `None` skips.
#[macro_export]
macro_rules! contract_tests {
    ($fresh:path) => {
        $crate::contract_tests!(@each $fresh;
            users_unique_username,
            users_case_insensitive_username,
            users_get_update_and_list,
            users_oidc_links,
            users_last_admin_protected,
            users_last_admin_concurrent,
            users_not_found,
            mfa_totp_lifecycle,
            mfa_totp_step_monotonic_concurrent,
            mfa_recovery_code_single_use_concurrent,
            groups_names_members_permissions,
            sessions_idle_expiry,
            sessions_absolute_expiry,
            sessions_revocation,
            sessions_delete_expired,
            api_keys_lookup_only_live,
            api_keys_revoke_by_owner,
            api_keys_unique_prefix_and_use,
            audit_chain_concurrent,
            audit_retention_checkpoint,
            login_attempts_window,
        );
    };
    (@each $fresh:path; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                match $fresh(stringify!($name)).await {
                    Some(stores) => $crate::contract::$name(&stores).await,
                    None => eprintln!("skipped {}: no database for this backend", stringify!($name)),
                }
            }
        )*
    };
}

/// A fixed instant plus `secs` seconds, so tests do not depend on the clock.
pub fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

fn new_user(username: &str, role: Role) -> NewUser {
    NewUser {
        id: Uuid::now_v7(),
        username: username.to_owned(),
        display_name: format!("{username} (display)"),
        email: Some(format!("{username}@example.test")),
        role,
        password_hash: Some(format!("$argon2id$stub${username}")),
        created_at: t(0),
    }
}

async fn user(s: &Stores, username: &str, role: Role) -> User {
    s.users
        .create_user(&new_user(username, role))
        .await
        .unwrap()
}

fn conflict<T: std::fmt::Debug>(r: Result<T>) {
    assert!(
        matches!(r, Err(StoreError::Conflict(_))),
        "expected Conflict, got {r:?}"
    );
}

pub async fn users_unique_username(s: &Stores) {
    let a = user(s, "alice", Role::User).await;
    conflict(s.users.create_user(&new_user("alice", Role::Viewer)).await);
    // The same id twice is a conflict too.
    let mut again = new_user("alice2", Role::User);
    again.id = a.id;
    conflict(s.users.create_user(&again).await);
    // Unicode usernames compare case-insensitively as well.
    user(s, "Ärger", Role::User).await;
    conflict(s.users.create_user(&new_user("äRGER", Role::User)).await);
}

pub async fn users_case_insensitive_username(s: &Stores) {
    let a = user(s, "Alice", Role::User).await;
    assert_eq!(a.username, "Alice", "kept as given");
    conflict(s.users.create_user(&new_user("ALICE", Role::User)).await);
    for name in ["alice", "ALICE", "aLiCe"] {
        let got = s.users.user_by_username(name).await.unwrap().unwrap();
        assert_eq!(got.id, a.id, "{name}");
    }
    assert!(s.users.user_by_username("alicia").await.unwrap().is_none());
}

pub async fn users_get_update_and_list(s: &Stores) {
    let mut nu = new_user("bob", Role::Pending);
    nu.email = None;
    let created = s.users.create_user(&nu).await.unwrap();
    let want = User {
        id: nu.id,
        username: "bob".into(),
        display_name: "bob (display)".into(),
        email: None,
        role: Role::Pending,
        password_hash: nu.password_hash.clone(),
        disabled: false,
        created_at: t(0),
        credentials_changed_at: t(0),
        last_login_at: None,
    };
    assert_eq!(created, want);
    assert_eq!(s.users.user(nu.id).await.unwrap(), Some(want.clone()));
    assert_eq!(s.users.user(Uuid::now_v7()).await.unwrap(), None);

    s.users.set_role(nu.id, Role::User).await.unwrap();
    s.users.set_disabled(nu.id, true).await.unwrap();
    s.users
        .set_password_hash(nu.id, Some("$argon2id$new"), t(50))
        .await
        .unwrap();
    s.users.record_login(nu.id, t(60)).await.unwrap();
    let got = s.users.user(nu.id).await.unwrap().unwrap();
    assert_eq!(got.role, Role::User);
    assert!(got.disabled);
    assert_eq!(got.password_hash.as_deref(), Some("$argon2id$new"));
    assert_eq!(got.credentials_changed_at, t(50));
    assert_eq!(got.last_login_at, Some(t(60)));
    // OIDC-only: no password at all.
    s.users.set_password_hash(nu.id, None, t(70)).await.unwrap();
    let got = s.users.user(nu.id).await.unwrap().unwrap();
    assert_eq!(got.password_hash, None);
    assert_eq!(got.credentials_changed_at, t(70));

    // Paging in creation order.
    let mut ids = vec![nu.id];
    for i in 0..4 {
        ids.push(user(s, &format!("u{i}"), Role::User).await.id);
    }
    let first = s.users.list_users(None, 2).await.unwrap();
    let rest = s.users.list_users(Some(first[1].id), 10).await.unwrap();
    let listed: Vec<Uuid> = first.iter().chain(&rest).map(|u| u.id).collect();
    assert_eq!(listed, ids);
    assert!(
        s.users
            .list_users(Some(ids[4]), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn users_oidc_links(s: &Stores) {
    let a = user(s, "carol", Role::User).await;
    let b = user(s, "dave", Role::User).await;
    let iss = "https://id.example.test";
    s.users.link_oidc(a.id, iss, "sub-1", t(1)).await.unwrap();
    assert_eq!(
        s.users
            .user_by_oidc(iss, "sub-1")
            .await
            .unwrap()
            .map(|u| u.id),
        Some(a.id)
    );
    assert!(s.users.user_by_oidc(iss, "sub-2").await.unwrap().is_none());
    assert!(
        s.users
            .user_by_oidc("https://other.test", "sub-1")
            .await
            .unwrap()
            .is_none()
    );
    conflict(s.users.link_oidc(b.id, iss, "sub-1", t(2)).await);
    // The same subject at another issuer is another identity.
    s.users
        .link_oidc(b.id, "https://other.test", "sub-1", t(3))
        .await
        .unwrap();
    assert_eq!(
        s.users
            .user_by_oidc("https://other.test", "sub-1")
            .await
            .unwrap()
            .map(|u| u.id),
        Some(b.id)
    );
    assert!(matches!(
        s.users.link_oidc(Uuid::now_v7(), iss, "sub-9", t(4)).await,
        Err(StoreError::NotFound(_))
    ));
}

fn last_admin(r: Result<()>) {
    assert!(
        matches!(r, Err(StoreError::LastAdmin)),
        "expected LastAdmin, got {r:?}"
    );
}

pub async fn users_last_admin_protected(s: &Stores) {
    let a = user(s, "root", Role::Admin).await;
    let u = user(s, "plain", Role::User).await;
    assert_eq!(s.users.count_active_admins().await.unwrap(), 1);
    for role in [Role::User, Role::Viewer, Role::Pending] {
        last_admin(s.users.set_role(a.id, role).await);
    }
    last_admin(s.users.set_disabled(a.id, true).await);
    // Harmless changes go through.
    s.users.set_role(a.id, Role::Admin).await.unwrap();
    s.users.set_disabled(a.id, false).await.unwrap();
    s.users.set_disabled(u.id, true).await.unwrap();

    // A second admin, but disabled: does not count.
    let b = user(s, "second", Role::Admin).await;
    s.users.set_disabled(b.id, true).await.unwrap();
    assert_eq!(s.users.count_active_admins().await.unwrap(), 1);
    last_admin(s.users.set_role(a.id, Role::User).await);
    // Enabled, it does: now `a` may go, and then `b` is the last.
    s.users.set_disabled(b.id, false).await.unwrap();
    assert_eq!(s.users.count_active_admins().await.unwrap(), 2);
    s.users.set_role(a.id, Role::User).await.unwrap();
    last_admin(s.users.set_disabled(b.id, true).await);
    last_admin(s.users.set_role(b.id, Role::Viewer).await);
    assert_eq!(s.users.count_active_admins().await.unwrap(), 1);
    assert_eq!(s.users.user(a.id).await.unwrap().unwrap().role, Role::User);
}

pub async fn users_last_admin_concurrent(s: &Stores) {
    // The two admins there are: one is demoted while the other is disabled, at once. Exactly one
    // change goes through; the survivor meets a new second admin next round.
    let mut a = user(s, "a", Role::Admin).await;
    for round in 0..8 {
        let b = user(s, &format!("b{round}"), Role::Admin).await;
        assert_eq!(s.users.count_active_admins().await.unwrap(), 2);
        let (ra, rb) = tokio::join!(
            {
                let s = s.clone();
                tokio::spawn(async move { s.users.set_role(a.id, Role::User).await })
            },
            {
                let s = s.clone();
                tokio::spawn(async move { s.users.set_disabled(b.id, true).await })
            }
        );
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert!(
            ra.is_ok() != rb.is_ok(),
            "round {round}: exactly one change goes through: {ra:?} {rb:?}"
        );
        assert!(matches!(ra, Ok(()) | Err(StoreError::LastAdmin)), "{ra:?}");
        assert!(matches!(rb, Ok(()) | Err(StoreError::LastAdmin)), "{rb:?}");
        assert_eq!(s.users.count_active_admins().await.unwrap(), 1);
        if ra.is_ok() {
            a = b;
        }
    }
}

pub async fn users_not_found(s: &Stores) {
    let ghost = Uuid::now_v7();
    let nf = |r: Result<()>| {
        assert!(
            matches!(r, Err(StoreError::NotFound(_))),
            "expected NotFound, got {r:?}"
        )
    };
    nf(s.users.set_role(ghost, Role::User).await);
    nf(s.users.set_disabled(ghost, true).await);
    nf(s.users.set_password_hash(ghost, None, t(1)).await);
    nf(s.users.record_login(ghost, t(1)).await);
    nf(s.mfa.enable_totp(ghost).await);
    nf(s.groups.delete_group(ghost).await);
}

pub async fn mfa_totp_lifecycle(s: &Stores) {
    let u = user(s, "erin", Role::User).await;
    assert!(s.mfa.totp(u.id).await.unwrap().is_none());
    assert!(
        !s.mfa.accept_totp_step(u.id, 5).await.unwrap(),
        "no secret, no step"
    );
    let secret = [
        7u8, 0, 255, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17,
    ];
    s.mfa.set_totp(u.id, &secret, t(1)).await.unwrap();
    let got = s.mfa.totp(u.id).await.unwrap().unwrap();
    assert_eq!(
        (
            got.secret.as_slice(),
            got.enabled,
            got.last_step,
            got.created_at
        ),
        (secret.as_slice(), false, None, t(1))
    );
    assert!(s.mfa.accept_totp_step(u.id, 100).await.unwrap());
    assert!(
        !s.mfa.accept_totp_step(u.id, 100).await.unwrap(),
        "same step twice"
    );
    assert!(
        !s.mfa.accept_totp_step(u.id, 99).await.unwrap(),
        "an older step"
    );
    assert!(s.mfa.accept_totp_step(u.id, 101).await.unwrap());
    s.mfa.enable_totp(u.id).await.unwrap();
    let got = s.mfa.totp(u.id).await.unwrap().unwrap();
    assert!(got.enabled);
    assert_eq!(got.last_step, Some(101));
    // A new secret starts over: not enabled, no step.
    s.mfa.set_totp(u.id, &[1, 2, 3], t(2)).await.unwrap();
    let got = s.mfa.totp(u.id).await.unwrap().unwrap();
    assert_eq!(
        (got.secret, got.enabled, got.last_step),
        (vec![1, 2, 3], false, None)
    );

    let codes: Vec<[u8; 32]> = (0..10u8).map(|i| [i; 32]).collect();
    s.mfa.set_recovery_codes(u.id, &codes).await.unwrap();
    assert_eq!(s.mfa.recovery_codes_left(u.id).await.unwrap(), 10);
    assert!(s.mfa.consume_recovery_code(u.id, &[3; 32]).await.unwrap());
    assert!(!s.mfa.consume_recovery_code(u.id, &[3; 32]).await.unwrap());
    assert!(!s.mfa.consume_recovery_code(u.id, &[99; 32]).await.unwrap());
    // Another user's code is not this user's.
    let other = user(s, "frank", Role::User).await;
    assert!(
        !s.mfa
            .consume_recovery_code(other.id, &[4; 32])
            .await
            .unwrap()
    );
    assert_eq!(s.mfa.recovery_codes_left(u.id).await.unwrap(), 9);
    // New codes replace the old ones, used or not.
    s.mfa.set_recovery_codes(u.id, &[[42; 32]]).await.unwrap();
    assert_eq!(s.mfa.recovery_codes_left(u.id).await.unwrap(), 1);
    assert!(!s.mfa.consume_recovery_code(u.id, &[4; 32]).await.unwrap());
    s.mfa.delete_totp(u.id).await.unwrap();
    assert!(s.mfa.totp(u.id).await.unwrap().is_none());
    assert_eq!(s.mfa.recovery_codes_left(u.id).await.unwrap(), 0);
}

/// Run `n` copies of `f` at once on the runtime's threads; answer their results.
async fn race<T, F, Fut>(n: usize, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let b = barrier.clone();
            let fut = f(i);
            tokio::spawn(async move {
                b.wait().await;
                fut.await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

pub async fn mfa_totp_step_monotonic_concurrent(s: &Stores) {
    let u = user(s, "grace", Role::User).await;
    s.mfa.set_totp(u.id, b"secret", t(0)).await.unwrap();
    for step in [1000u64, 1001, 1005] {
        let won = race(8, |_| {
            let s = s.clone();
            async move { s.mfa.accept_totp_step(u.id, step).await.unwrap() }
        })
        .await;
        assert_eq!(
            won.iter().filter(|w| **w).count(),
            1,
            "step {step}: {won:?}"
        );
    }
    // Mixed steps at once: the greatest ends up stored, and each step is accepted at most once.
    let won = race(8, |i| {
        let s = s.clone();
        let step = 2000 + (i as u64 % 4);
        async move { (step, s.mfa.accept_totp_step(u.id, step).await.unwrap()) }
    })
    .await;
    let accepted: Vec<u64> = won.iter().filter(|w| w.1).map(|w| w.0).collect();
    let distinct: BTreeSet<u64> = accepted.iter().copied().collect();
    assert_eq!(
        accepted.len(),
        distinct.len(),
        "a step accepted twice: {won:?}"
    );
    assert!(accepted.contains(&2003), "{won:?}");
    assert_eq!(
        s.mfa.totp(u.id).await.unwrap().unwrap().last_step,
        Some(2003)
    );
}

pub async fn mfa_recovery_code_single_use_concurrent(s: &Stores) {
    let u = user(s, "heidi", Role::User).await;
    let codes: Vec<[u8; 32]> = (0..3u8).map(|i| [i + 1; 32]).collect();
    s.mfa.set_recovery_codes(u.id, &codes).await.unwrap();
    for code in &codes {
        let code = *code;
        let won = race(8, |_| {
            let s = s.clone();
            async move { s.mfa.consume_recovery_code(u.id, &code).await.unwrap() }
        })
        .await;
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    }
    assert_eq!(s.mfa.recovery_codes_left(u.id).await.unwrap(), 0);
}

pub async fn groups_names_members_permissions(s: &Stores) {
    let a = user(s, "ivan", Role::User).await;
    let b = user(s, "judy", Role::User).await;
    let g = s
        .groups
        .create_group(Uuid::now_v7(), "staff", t(1))
        .await
        .unwrap();
    assert_eq!(g.name, "staff");
    assert_eq!(g.created_at, t(1));
    conflict(s.groups.create_group(Uuid::now_v7(), "staff", t(2)).await);
    let h = s
        .groups
        .create_group(Uuid::now_v7(), "admins-lite", t(3))
        .await
        .unwrap();
    assert_eq!(s.groups.group(g.id).await.unwrap(), Some(g.clone()));
    assert_eq!(
        s.groups.group_by_name("staff").await.unwrap(),
        Some(g.clone())
    );
    assert_eq!(s.groups.group_by_name("nobody").await.unwrap(), None);
    let names: Vec<String> = s
        .groups
        .list_groups()
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert_eq!(names, ["admins-lite", "staff"]);

    s.groups.add_member(g.id, a.id).await.unwrap();
    s.groups.add_member(g.id, a.id).await.unwrap(); // idempotent
    s.groups.add_member(g.id, b.id).await.unwrap();
    s.groups.add_member(h.id, a.id).await.unwrap();
    assert!(matches!(
        s.groups.add_member(g.id, Uuid::now_v7()).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.groups.add_member(Uuid::now_v7(), a.id).await,
        Err(StoreError::NotFound(_))
    ));
    let mut members = s.groups.members(g.id).await.unwrap();
    members.sort();
    let mut want = vec![a.id, b.id];
    want.sort();
    assert_eq!(members, want);

    let set = |v: &[&str]| {
        v.iter()
            .map(|s| (*s).to_owned())
            .collect::<BTreeSet<String>>()
    };
    s.groups
        .set_permissions(g.id, &set(&["chat", "models:read"]))
        .await
        .unwrap();
    s.groups
        .set_permissions(h.id, &set(&["models:read", "keys:create"]))
        .await
        .unwrap();
    assert_eq!(
        s.groups.permissions(g.id).await.unwrap(),
        set(&["chat", "models:read"])
    );
    assert_eq!(
        s.groups.user_permissions(a.id).await.unwrap(),
        set(&["chat", "keys:create", "models:read"])
    );
    assert_eq!(
        s.groups.user_permissions(b.id).await.unwrap(),
        set(&["chat", "models:read"])
    );
    // Replacing, not adding.
    s.groups
        .set_permissions(g.id, &set(&["chat"]))
        .await
        .unwrap();
    assert_eq!(
        s.groups.user_permissions(b.id).await.unwrap(),
        set(&["chat"])
    );
    let of_a: Vec<String> = s
        .groups
        .groups_of(a.id)
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert_eq!(of_a, ["admins-lite", "staff"]);

    assert!(s.groups.remove_member(g.id, b.id).await.unwrap());
    assert!(!s.groups.remove_member(g.id, b.id).await.unwrap());
    assert!(s.groups.user_permissions(b.id).await.unwrap().is_empty());
    s.groups.delete_group(h.id).await.unwrap();
    assert_eq!(s.groups.group(h.id).await.unwrap(), None);
    assert_eq!(
        s.groups.user_permissions(a.id).await.unwrap(),
        set(&["chat"])
    );
    let of_a: Vec<Uuid> = s
        .groups
        .groups_of(a.id)
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.id)
        .collect();
    assert_eq!(of_a, [g.id]);
}

fn new_session(user: Uuid, token: u8, created: SystemTime) -> NewSession {
    NewSession {
        id: Uuid::now_v7(),
        user_id: user,
        token_hash: [token; 32],
        csrf_secret: vec![token, 0xcc],
        created_at: created,
        idle_timeout: Duration::from_secs(600),
        absolute_expires_at: created + Duration::from_secs(3600),
        client_address: Some("192.0.2.7".into()),
        user_agent: Some("test-agent/1".into()),
    }
}

pub async fn sessions_idle_expiry(s: &Stores) {
    let u = user(s, "kate", Role::User).await;
    let ns = new_session(u.id, 1, t(0));
    let created = s.sessions.create_session(&ns).await.unwrap();
    assert_eq!(created.last_seen_at, t(0));
    assert_eq!(created.csrf_secret, vec![1, 0xcc]);
    assert_eq!(created.client_address.as_deref(), Some("192.0.2.7"));
    assert_eq!(created.user_agent.as_deref(), Some("test-agent/1"));
    assert_eq!(created.expires_at(), t(600));
    let live = |now| {
        let s = s.clone();
        async move {
            s.sessions
                .session_by_token_hash(&[1; 32], now)
                .await
                .unwrap()
                .is_some()
        }
    };
    assert!(live(t(599)).await);
    assert!(!live(t(600)).await, "idle timeout reached");
    assert!(
        !s.sessions.touch_session(ns.id, t(600)).await.unwrap(),
        "cannot revive"
    );
    // Seen in time, the idle window moves.
    let ns2 = new_session(u.id, 2, t(0));
    s.sessions.create_session(&ns2).await.unwrap();
    assert!(s.sessions.touch_session(ns2.id, t(500)).await.unwrap());
    let got = s
        .sessions
        .session_by_token_hash(&[2; 32], t(1099))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.last_seen_at, t(500));
    assert!(
        s.sessions
            .session_by_token_hash(&[2; 32], t(1100))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.sessions
            .session_by_token_hash(&[3; 32], t(1))
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn sessions_absolute_expiry(s: &Stores) {
    let u = user(s, "liam", Role::User).await;
    let ns = new_session(u.id, 1, t(0));
    s.sessions.create_session(&ns).await.unwrap();
    // Kept busy, it still ends at the absolute expiry.
    for now in (500..3600).step_by(500) {
        assert!(
            s.sessions.touch_session(ns.id, t(now)).await.unwrap(),
            "{now}"
        );
    }
    assert!(
        s.sessions
            .session_by_token_hash(&[1; 32], t(3599))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        s.sessions
            .session_by_token_hash(&[1; 32], t(3600))
            .await
            .unwrap()
            .is_none()
    );
    assert!(!s.sessions.touch_session(ns.id, t(3600)).await.unwrap());
    assert!(
        s.sessions
            .user_sessions(u.id, t(3600))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn sessions_revocation(s: &Stores) {
    let a = user(s, "mia", Role::User).await;
    let b = user(s, "noah", Role::User).await;
    let s1 = new_session(a.id, 1, t(0));
    let s2 = new_session(a.id, 2, t(1));
    let s3 = new_session(a.id, 3, t(2));
    let sb = new_session(b.id, 4, t(0));
    for ns in [&s1, &s2, &s3, &sb] {
        s.sessions.create_session(ns).await.unwrap();
    }
    conflict(s.sessions.create_session(&new_session(a.id, 1, t(3))).await);
    let ids = |v: Vec<Session>| v.into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.sessions.user_sessions(a.id, t(10)).await.unwrap()),
        [s3.id, s2.id, s1.id]
    );

    // Another user cannot end a's session; the owner and an admin can.
    assert!(
        !s.sessions
            .revoke_session(s1.id, Owner::User(b.id), t(10))
            .await
            .unwrap()
    );
    assert!(
        s.sessions
            .session_by_token_hash(&[1; 32], t(10))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        s.sessions
            .revoke_session(s1.id, Owner::User(a.id), t(10))
            .await
            .unwrap()
    );
    assert!(
        s.sessions
            .session_by_token_hash(&[1; 32], t(11))
            .await
            .unwrap()
            .is_none()
    );
    assert!(!s.sessions.touch_session(s1.id, t(11)).await.unwrap());
    assert!(
        !s.sessions
            .revoke_session(s1.id, Owner::Any, t(12))
            .await
            .unwrap(),
        "once"
    );

    // Sign out everywhere else.
    assert_eq!(
        s.sessions
            .revoke_user_sessions(a.id, Some(s3.id), t(20))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        ids(s.sessions.user_sessions(a.id, t(21)).await.unwrap()),
        [s3.id]
    );
    assert!(
        s.sessions
            .session_by_token_hash(&[2; 32], t(21))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.sessions
            .revoke_session(s3.id, Owner::Any, t(22))
            .await
            .unwrap()
    );
    assert!(
        s.sessions
            .user_sessions(a.id, t(23))
            .await
            .unwrap()
            .is_empty()
    );
    // b untouched; then everything of b.
    assert!(
        s.sessions
            .session_by_token_hash(&[4; 32], t(23))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        s.sessions
            .revoke_user_sessions(b.id, None, t(24))
            .await
            .unwrap(),
        1
    );
    assert!(
        s.sessions
            .session_by_token_hash(&[4; 32], t(25))
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn sessions_delete_expired(s: &Stores) {
    let u = user(s, "olga", Role::User).await;
    let live = new_session(u.id, 1, t(1000));
    let idle = new_session(u.id, 2, t(0));
    let revoked = new_session(u.id, 3, t(1000));
    for ns in [&live, &idle, &revoked] {
        s.sessions.create_session(ns).await.unwrap();
    }
    s.sessions
        .revoke_session(revoked.id, Owner::Any, t(1001))
        .await
        .unwrap();
    assert_eq!(
        s.sessions.delete_expired_sessions(t(1100)).await.unwrap(),
        2
    );
    assert_eq!(
        s.sessions.delete_expired_sessions(t(1100)).await.unwrap(),
        0
    );
    let left: Vec<Uuid> = s
        .sessions
        .user_sessions(u.id, t(1100))
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(left, [live.id]);
}

fn new_key(owner: Uuid, prefix: &str, expires_at: Option<SystemTime>) -> NewApiKey {
    NewApiKey {
        id: Uuid::now_v7(),
        owner,
        name: format!("key {prefix}"),
        prefix: prefix.to_owned(),
        secret_hash: [9; 32],
        scopes: vec!["openai".into(), "ollama".into()],
        models: vec!["smollm2:135m".into(), "odd \"name\"\n,".into()],
        expires_at,
        created_at: t(0),
    }
}

pub async fn api_keys_lookup_only_live(s: &Stores) {
    let u = user(s, "pat", Role::User).await;
    let k = new_key(u.id, "hk_live", Some(t(100)));
    let created = s.api_keys.create_key(&k).await.unwrap();
    let want = ApiKey {
        id: k.id,
        owner: u.id,
        name: "key hk_live".into(),
        prefix: "hk_live".into(),
        secret_hash: [9; 32],
        scopes: k.scopes.clone(),
        models: k.models.clone(),
        expires_at: Some(t(100)),
        created_at: t(0),
        last_used_at: None,
        use_count: 0,
        revoked_at: None,
    };
    assert_eq!(created, want);
    assert_eq!(
        s.api_keys.key_by_prefix("hk_live", t(99)).await.unwrap(),
        Some(want)
    );
    assert_eq!(
        s.api_keys.key_by_prefix("hk_live", t(100)).await.unwrap(),
        None,
        "expired"
    );
    assert_eq!(
        s.api_keys.key_by_prefix("hk_liv", t(1)).await.unwrap(),
        None,
        "exact prefix only"
    );
    assert_eq!(
        s.api_keys.key_by_prefix("HK_LIVE", t(1)).await.unwrap(),
        None
    );

    let forever = new_key(u.id, "hk_forever", None);
    s.api_keys.create_key(&forever).await.unwrap();
    assert!(
        s.api_keys
            .key_by_prefix("hk_forever", t(1_000_000))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        s.api_keys
            .revoke_key(forever.id, Owner::User(u.id), t(5))
            .await
            .unwrap()
    );
    assert_eq!(
        s.api_keys.key_by_prefix("hk_forever", t(6)).await.unwrap(),
        None,
        "revoked"
    );
    // Listed still, with the revocation.
    let listed = s.api_keys.owner_keys(u.id).await.unwrap();
    assert_eq!(
        listed.iter().map(|k| k.id).collect::<Vec<_>>(),
        [forever.id, k.id]
    );
    assert_eq!(listed[0].revoked_at, Some(t(5)));
}

pub async fn api_keys_revoke_by_owner(s: &Stores) {
    let a = user(s, "quinn", Role::User).await;
    let b = user(s, "rita", Role::User).await;
    let ka = new_key(a.id, "hk_a", None);
    let kb = new_key(b.id, "hk_b", None);
    s.api_keys.create_key(&ka).await.unwrap();
    s.api_keys.create_key(&kb).await.unwrap();
    assert!(
        !s.api_keys
            .revoke_key(ka.id, Owner::User(b.id), t(1))
            .await
            .unwrap()
    );
    assert!(
        s.api_keys
            .key_by_prefix("hk_a", t(2))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        s.api_keys
            .revoke_key(ka.id, Owner::User(a.id), t(3))
            .await
            .unwrap()
    );
    assert!(
        !s.api_keys
            .revoke_key(ka.id, Owner::User(a.id), t(4))
            .await
            .unwrap(),
        "once"
    );
    assert!(
        s.api_keys
            .revoke_key(kb.id, Owner::Any, t(5))
            .await
            .unwrap(),
        "an admin"
    );
    assert!(
        !s.api_keys
            .revoke_key(Uuid::now_v7(), Owner::Any, t(6))
            .await
            .unwrap()
    );
    assert!(
        s.api_keys
            .owner_keys(Uuid::now_v7())
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn api_keys_unique_prefix_and_use(s: &Stores) {
    let u = user(s, "sam", Role::User).await;
    let k = new_key(u.id, "hk_same", None);
    s.api_keys.create_key(&k).await.unwrap();
    conflict(s.api_keys.create_key(&new_key(u.id, "hk_same", None)).await);
    let concurrent = race(6, |i| {
        let s = s.clone();
        async move {
            s.api_keys
                .record_key_use(k.id, t(10 + i as u64))
                .await
                .unwrap()
        }
    })
    .await;
    assert_eq!(concurrent.len(), 6);
    let got = s
        .api_keys
        .key_by_prefix("hk_same", t(100))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.use_count, 6, "no lost updates");
    assert!(got.last_used_at.is_some_and(|l| l >= t(10) && l <= t(15)));
    s.api_keys.record_key_use(k.id, t(50)).await.unwrap();
    let got = s
        .api_keys
        .key_by_prefix("hk_same", t(100))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got.use_count, got.last_used_at), (7, Some(t(50))));
}

/// A stand-in for the real chain hash (SHA-256 in the caller): deterministic within a run and
/// sensitive to the sequence number, every field and the previous hash.
pub fn test_hash(seq: u64, prev: &[u8; 32], e: &NewEvent) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let mut h = std::hash::DefaultHasher::new();
        (
            i,
            prev,
            to_millis(e.time),
            &e.actor,
            &e.action,
            &e.target,
            &e.outcome,
        )
            .hash(&mut h);
        (&e.client_address, &e.detail, seq).hash(&mut h);
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

fn event(i: u64, time: SystemTime) -> NewEvent {
    NewEvent {
        time,
        actor: format!("user-{}", i % 3),
        action: "auth.login".into(),
        target: format!("session-{i}"),
        outcome: if i.is_multiple_of(2) {
            "success"
        } else {
            "failure"
        }
        .into(),
        client_address: (!i.is_multiple_of(4)).then(|| "198.51.100.1".to_owned()),
        detail: format!("{{\"i\":{i}}}"),
    }
}

/// The chain from `from` is gap-free, linked, and each hash is right.
fn verify(events: &[Event], start: Option<Checkpoint>) {
    let (mut seq, mut prev) = start.map_or((0, [0; 32]), |c| (c.seq, c.hash));
    for e in events {
        assert_eq!(e.seq, seq + 1, "gap or repeat before {}", e.seq);
        assert_eq!(e.prev_hash, prev, "fork at {}", e.seq);
        assert_eq!(
            e.hash,
            test_hash(e.seq, &prev, &e.as_new()),
            "hash of {}",
            e.seq
        );
        seq = e.seq;
        prev = e.hash;
    }
}

pub async fn audit_chain_concurrent(s: &Stores) {
    assert!(s.audit.tail(5).await.unwrap().is_empty());
    assert_eq!(s.audit.checkpoint().await.unwrap(), None);
    let first = s.audit.append(&event(0, t(0)), &test_hash).await.unwrap();
    assert_eq!((first.seq, first.prev_hash), (1, [0; 32]));
    assert_eq!(first.as_new(), event(0, t(0)));
    let appended = race(16, |i| {
        let s = s.clone();
        async move {
            let mut out = Vec::new();
            for j in 0..5u64 {
                let n = 1 + i as u64 * 5 + j;
                out.push(
                    s.audit
                        .append(&event(n, t(n)), &test_hash)
                        .await
                        .unwrap()
                        .seq,
                );
            }
            out
        }
    })
    .await;
    let mut seqs: Vec<u64> = appended.into_iter().flatten().collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (2..=81).collect::<Vec<u64>>());
    let all = s.audit.events(1, 1000).await.unwrap();
    assert_eq!(all.len(), 81);
    verify(&all, None);
    // Paging and tail agree with the whole.
    let page = s.audit.events(10, 5).await.unwrap();
    assert_eq!(page, all[9..14]);
    let tail = s.audit.tail(3).await.unwrap();
    assert_eq!(tail, all[78..]);
    assert!(s.audit.events(82, 10).await.unwrap().is_empty());
}

pub async fn audit_retention_checkpoint(s: &Stores) {
    for i in 0..10u64 {
        s.audit
            .append(&event(i, t(i * 10)), &test_hash)
            .await
            .unwrap();
    }
    let all = s.audit.events(0, 100).await.unwrap();
    assert_eq!(s.audit.delete_events_before(t(0)).await.unwrap(), 0);
    assert_eq!(s.audit.checkpoint().await.unwrap(), None);
    // Events at t(0)..t(30) go; the checkpoint is the fourth event.
    assert_eq!(s.audit.delete_events_before(t(35)).await.unwrap(), 4);
    let cp = s.audit.checkpoint().await.unwrap().unwrap();
    assert_eq!(
        cp,
        Checkpoint {
            seq: 4,
            hash: all[3].hash
        }
    );
    let left = s.audit.events(0, 100).await.unwrap();
    assert_eq!(left, all[4..]);
    verify(&left, Some(cp));
    // Appending continues the chain from the retained end.
    let next = s
        .audit
        .append(&event(10, t(100)), &test_hash)
        .await
        .unwrap();
    assert_eq!((next.seq, next.prev_hash), (11, all[9].hash));
    // Delete everything: the checkpoint is the last event, and the chain still continues.
    assert_eq!(s.audit.delete_events_before(t(1000)).await.unwrap(), 7);
    let cp = s.audit.checkpoint().await.unwrap().unwrap();
    assert_eq!(
        cp,
        Checkpoint {
            seq: 11,
            hash: next.hash
        }
    );
    assert!(s.audit.tail(10).await.unwrap().is_empty());
    let after = s
        .audit
        .append(&event(11, t(1001)), &test_hash)
        .await
        .unwrap();
    assert_eq!((after.seq, after.prev_hash), (12, next.hash));
    verify(&[after], Some(cp));
}

pub async fn login_attempts_window(s: &Stores) {
    let acct = Subject::Account("alice".into());
    let addr = Subject::Address("203.0.113.9".into());
    let other = Subject::Address("203.0.113.10".into());
    for i in 0..5 {
        s.login_attempts
            .record_failure(&acct, t(i * 10))
            .await
            .unwrap();
        s.login_attempts
            .record_failure(&addr, t(i * 10))
            .await
            .unwrap();
    }
    let count = |subject: &Subject, since| {
        let s = s.clone();
        let subject = subject.clone();
        async move {
            s.login_attempts
                .failures_since(&subject, since)
                .await
                .unwrap()
        }
    };
    assert_eq!(count(&acct, t(0)).await, 5);
    assert_eq!(
        count(&acct, t(20)).await,
        3,
        "the window includes its start"
    );
    assert_eq!(count(&acct, t(41)).await, 0);
    assert_eq!(count(&other, t(0)).await, 0);
    // An account and an address with the same text are different subjects.
    assert_eq!(
        count(&Subject::Account("203.0.113.9".into()), t(0)).await,
        0
    );
    s.login_attempts.clear_failures(&acct).await.unwrap();
    assert_eq!(count(&acct, t(0)).await, 0);
    assert_eq!(
        count(&addr, t(0)).await,
        5,
        "clearing the account keeps the address"
    );
    assert_eq!(s.login_attempts.prune_failures(t(25)).await.unwrap(), 3);
    assert_eq!(count(&addr, t(0)).await, 2);
}
