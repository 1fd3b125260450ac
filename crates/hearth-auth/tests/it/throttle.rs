use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hearth_auth::throttle::{Decision, Throttle, ThrottlePolicy, address_key, decide};
use proptest::prelude::*;

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn deny(secs: u64) -> Decision {
    Decision::Deny {
        retry_after: Duration::from_secs(secs),
    }
}

#[test]
fn policy_as_data_asvs_6_3_1() {
    fn check(failures: &[u64], now: u64, expect: Decision) {
        let f: Vec<SystemTime> = failures.iter().map(|s| t(*s)).collect();
        assert_eq!(
            decide(&ThrottlePolicy::default(), &f, t(now)),
            expect,
            "{failures:?} at {now}"
        );
    }
    check(&[], 0, Decision::Allow);
    // Four failures: still free.
    check(&[0, 1, 2, 3], 4, Decision::Allow);
    // Five: wait 30 s after the latest.
    check(&[0, 1, 2, 3, 4], 4, deny(30));
    check(&[0, 1, 2, 3, 4], 20, deny(14));
    check(&[0, 1, 2, 3, 4], 34, Decision::Allow);
    // Then 60 s, 120 s, … doubling.
    check(&[0, 1, 2, 3, 4, 40], 41, deny(59));
    check(&[0, 1, 2, 3, 4, 40, 110], 110, deny(120));
    // Order does not matter.
    check(&[110, 0, 40, 3, 1, 4, 2], 110, deny(120));
    // Capped at 15 minutes.
    let many: Vec<u64> = (0..40).collect();
    check(&many, 39, deny(900));
    // Failures older than 15 minutes are forgotten.
    check(&[0, 1, 2, 3, 4], 900, Decision::Allow);
    check(&[0, 1, 2, 3, 899], 900, Decision::Allow);
    check(&[1, 2, 3, 4, 899], 900, deny(29));
    // A failure "in the future" (clock step back) counts as now.
    check(&[0, 1, 2, 3, 1000], 4, deny(30));
}

#[test]
fn the_stricter_decision_wins() {
    assert_eq!(Decision::Allow.and(Decision::Allow), Decision::Allow);
    assert_eq!(Decision::Allow.and(deny(5)), deny(5));
    assert_eq!(deny(5).and(Decision::Allow), deny(5));
    assert_eq!(deny(5).and(deny(9)), deny(9));
}

#[test]
fn ipv6_clients_are_keyed_by_slash_64() {
    fn check(addr: &str, expect: &str) {
        let a: IpAddr = addr.parse().unwrap();
        assert_eq!(address_key(a), expect.parse::<IpAddr>().unwrap(), "{addr}");
    }
    check("192.0.2.7", "192.0.2.7");
    check("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::");
    check("2001:db8:1:2::1", "2001:db8:1:2::");
    check("::ffff:192.0.2.7", "192.0.2.7");
}

#[test]
fn throttle_per_account_and_address() {
    let mut th = Throttle::new(ThrottlePolicy::default(), 100);
    let ip: IpAddr = "192.0.2.7".parse().unwrap();
    let other_ip: IpAddr = "198.51.100.1".parse().unwrap();
    for i in 0..5 {
        assert_eq!(th.check(Some("alice"), Some(ip), t(i)), Decision::Allow);
        th.record_failure(Some("alice"), Some(ip), t(i));
    }
    // The account is throttled from any address, and the address for any account.
    assert_eq!(th.check(Some("alice"), Some(other_ip), t(5)), deny(29));
    assert_eq!(th.check(Some("bob"), Some(ip), t(5)), deny(29));
    assert_eq!(th.check(Some("bob"), Some(other_ip), t(5)), Decision::Allow);
    assert_eq!(th.check(None, Some(ip), t(5)), deny(29));
    // A success clears the account but not the address.
    th.record_success("alice");
    assert_eq!(
        th.check(Some("alice"), Some(other_ip), t(6)),
        Decision::Allow
    );
    assert_eq!(th.check(Some("alice"), Some(ip), t(6)), deny(28));
    // IPv6 neighbours in one /64 share a record.
    let v6a: IpAddr = "2001:db8::1".parse().unwrap();
    let v6b: IpAddr = "2001:db8::ffff".parse().unwrap();
    for i in 0..5 {
        th.record_failure(None, Some(v6a), t(i));
    }
    assert_eq!(th.check(None, Some(v6b), t(5)), deny(29));
}

#[test]
fn memory_is_bounded() {
    let cap = 50;
    let mut th = Throttle::new(ThrottlePolicy::default(), cap);
    for i in 0..10_000u32 {
        let name = format!("user{i}");
        let ip = IpAddr::from(i.to_be_bytes());
        th.record_failure(Some(&name), Some(ip), t(u64::from(i)));
        let (a, b) = th.len();
        assert!(a <= cap && b <= cap, "{a} {b}");
    }
    // One key's history is bounded too.
    let mut one = Throttle::new(ThrottlePolicy::default(), 1);
    for i in 0..10_000 {
        one.record_failure(Some("alice"), None, t(i));
    }
    assert_eq!(one.len(), (1, 0));
    assert_eq!(one.check(Some("alice"), None, t(10_000)), deny(899));
}

#[test]
fn a_flood_of_addresses_does_not_evict_accounts() {
    let mut th = Throttle::new(ThrottlePolicy::default(), 10);
    for i in 0..5 {
        th.record_failure(Some("alice"), None, t(i));
    }
    for i in 0..1000u32 {
        th.record_failure(None, Some(IpAddr::from(i.to_be_bytes())), t(5));
    }
    assert_eq!(th.check(Some("alice"), None, t(5)), deny(29));
}

proptest! {
    /// More failures never make the decision more lenient, and a denial always names a wait no
    /// longer than the cap.
    #[test]
    fn monotone_and_capped(
        mut failures in proptest::collection::vec(0u64..2000, 0..30),
        extra in 0u64..2000,
        now in 0u64..3000,
    ) {
        let p = ThrottlePolicy::default();
        let fs: Vec<SystemTime> = failures.iter().map(|s| t(*s)).collect();
        let before = decide(&p, &fs, t(now));
        failures.push(extra.min(now));
        let fs2: Vec<SystemTime> = failures.iter().map(|s| t(*s)).collect();
        let after = decide(&p, &fs2, t(now));
        let wait = |d: Decision| match d {
            Decision::Allow => Duration::ZERO,
            Decision::Deny { retry_after } => retry_after,
        };
        prop_assert!(wait(after) >= wait(before), "{before:?} then {after:?}");
        prop_assert!(wait(after) <= p.max_delay);
    }
}
