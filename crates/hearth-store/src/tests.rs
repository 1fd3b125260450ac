use std::time::{Duration, SystemTime};

use super::*;

#[test]
fn roles_round_trip_by_their_names() {
    for (role, name) in [
        (Role::Admin, "admin"),
        (Role::User, "user"),
        (Role::Viewer, "viewer"),
        (Role::Pending, "pending"),
    ] {
        assert_eq!(role.as_str(), name);
        assert_eq!(Role::parse(name), Some(role));
    }
    for bad in ["Admin", "ADMIN", "", "root", "admin "] {
        assert_eq!(Role::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn millis_convert_both_ways() {
    let check = |ms: i64, t: SystemTime| {
        assert_eq!(to_millis(t), ms);
        assert_eq!(from_millis(ms), t);
    };
    check(0, SystemTime::UNIX_EPOCH);
    // 2023-11-14T22:13:20Z, 1.7e9 seconds.
    check(
        1_700_000_000_123,
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
    );
    check(-1500, SystemTime::UNIX_EPOCH - Duration::from_millis(1500));
    // Sub-millisecond parts are dropped.
    assert_eq!(
        to_millis(SystemTime::UNIX_EPOCH + Duration::from_micros(2999)),
        2
    );
}

#[test]
fn usernames_are_keyed_by_unicode_lowercase() {
    // Expected keys from Python's str.lower (final sigma included).
    for (name, key) in [
        ("Alice", "alice"),
        ("ÄRGER", "ärger"),
        ("ΣΊΣΥΦΟΣ", "σίσυφος"),
    ] {
        assert_eq!(username_key(name), key);
    }
}

#[test]
fn a_session_ends_at_the_earlier_expiry() {
    let t = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
    let mut s = Session {
        id: Uuid::nil(),
        user_id: Uuid::nil(),
        token_hash: [0; 32],
        csrf_secret: Vec::new(),
        created_at: t(0),
        last_seen_at: t(100),
        idle_timeout: Duration::from_secs(50),
        absolute_expires_at: t(1000),
        client_address: None,
        user_agent: None,
    };
    assert_eq!(s.expires_at(), t(150));
    s.last_seen_at = t(990);
    assert_eq!(s.expires_at(), t(1000));
}
