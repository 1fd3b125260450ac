use std::time::Duration;

use super::*;

fn check_retry(d: Duration, expect: u64) {
    assert_eq!(retry_after_secs(d), expect, "{d:?}");
}

#[test]
fn retry_after_rounds_up_and_is_at_least_one() {
    check_retry(Duration::ZERO, 1);
    check_retry(Duration::from_millis(1), 1);
    check_retry(Duration::from_secs(30), 30);
    check_retry(Duration::from_millis(30_001), 31);
}

fn check_username(name: &str, ok: bool) {
    assert_eq!(super::check_username(name).is_ok(), ok, "{name:?}");
}

#[test]
fn usernames() {
    check_username("alice", true);
    check_username("bob.smith@example.org", true);
    check_username("", false);
    check_username("a b", false);
    check_username("x\u{0}", false);
    check_username(&"a".repeat(64), true);
    check_username(&"a".repeat(65), false);
}
