use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hearth_auth::Sha256Hash;
use hearth_auth::token::{ApiKey, CsrfKey, SessionLifetime, SessionStatus, SessionToken};

#[test]
fn session_tokens_asvs_7_2_3() {
    let tokens: Vec<SessionToken> = (0..64).map(|_| SessionToken::generate().unwrap()).collect();
    let distinct: HashSet<&str> = tokens.iter().map(|t| t.expose()).collect();
    assert_eq!(distinct.len(), 64);
    for t in &tokens {
        // 256 bits in unpadded base64url.
        assert_eq!(t.expose().len(), 43);
        assert_eq!(SessionToken::parse(t.expose()).unwrap(), *t);
        assert!(!format!("{t:?}").contains(t.expose()));
    }
}

#[test]
fn session_token_parsing_is_strict() {
    fn check(text: &str, ok: bool) {
        assert_eq!(SessionToken::parse(text).is_ok(), ok, "{text:?}");
    }
    check(&"A".repeat(43), true);
    check(&format!("{}-A", "a".repeat(41)), true);
    check(&"A".repeat(42), false);
    check(&"A".repeat(44), false);
    check(&format!("{}=", "A".repeat(42)), false);
    check(&format!("{}+", "A".repeat(42)), false); // standard base64, not base64url
    check(&format!("{}B", "A".repeat(42)), false); // non-zero trailing bits: not canonical
    check(&format!("{} ", "A".repeat(42)), false);
    check("", false);
}

#[test]
fn session_token_stored_form_is_sha256() {
    // python3 -c 'import hashlib; print(hashlib.sha256(b"A"*43).hexdigest())'
    let t = SessionToken::parse(&"A".repeat(43)).unwrap();
    assert_eq!(
        t.hash().to_hex(),
        "0f007385b6f9d4b7eeb2748605afe1a984a0a3bfa3f014d09e2a784ce9e5cd1a"
    );
}

#[test]
fn api_keys_round_trip() {
    let k = ApiKey::generate().unwrap();
    let text = k.expose();
    assert!(text.starts_with("hearth_"), "{text}");
    assert_eq!(text.len(), "hearth_".len() + 16 + 1 + 43);
    assert_eq!(ApiKey::parse(&text).unwrap(), k);
    assert_eq!(ApiKey::parse(&text).unwrap().id(), k.id());
    assert!(k.matches(&k.secret_hash()));
    let other = ApiKey::generate().unwrap();
    assert_ne!(k.id(), other.id());
    assert!(!other.matches(&k.secret_hash()));
    let dbg = format!("{k:?}");
    assert!(dbg.contains(k.id()) && !dbg.contains(&text[24..]), "{dbg}");
}

#[test]
fn api_key_parsing_is_strict() {
    fn check(text: &str, ok: bool) {
        assert_eq!(ApiKey::parse(text).is_ok(), ok, "{text:?}");
    }
    let id = "0123456789abcdef";
    let secret = "A".repeat(43);
    check(&format!("hearth_{id}_{secret}"), true);
    // Secrets may contain _ and - (base64url); the id may not.
    check(&format!("hearth_{id}_{}_-A", "A".repeat(40)), true);
    check(&format!("Hearth_{id}_{secret}"), false);
    check(&format!("hearth-{id}_{secret}"), false);
    check(&format!("hearth_{id}{secret}"), false);
    check(&format!("hearth_{}_{secret}", &id[..15]), false);
    check(&format!("hearth_{id}0_{secret}"), false);
    check(&format!("hearth_0123456789ABCDEF_{secret}"), false); // uppercase id
    check(&format!("hearth_0123456789abcdeu_{secret}"), false); // u not Crockford
    check(&format!("hearth_{id}_{}", "A".repeat(42)), false);
    check(&format!("hearth_{id}_{secret}A"), false);
    check(&format!("hearth_{id}_{secret}\n"), false);
    check(&format!(" hearth_{id}_{secret}"), false);
    check(&format!("Bearer hearth_{id}_{secret}"), false);
    check("hearth_", false);
    check("", false);
}

#[test]
fn api_key_stored_form_is_sha256_of_the_secret() {
    // python3 -c 'import hashlib; print(hashlib.sha256(b"A"*43).hexdigest())'
    let k = ApiKey::parse(&format!("hearth_0123456789abcdef_{}", "A".repeat(43))).unwrap();
    let want =
        Sha256Hash::from_hex("0f007385b6f9d4b7eeb2748605afe1a984a0a3bfa3f014d09e2a784ce9e5cd1a")
            .unwrap();
    assert_eq!(k.secret_hash(), want);
    assert!(k.matches(&want));
}

#[test]
fn csrf_tokens_are_bound_to_the_session_asvs_3_5_1() {
    let key = CsrfKey::from_bytes(std::array::from_fn(|i| i as u8));
    // python3: base64.urlsafe_b64encode(hmac.new(bytes(range(32)),
    //   b"hearth-csrf-v1\0session-123", hashlib.sha256).digest()).rstrip(b"=")
    let want = "yz9YEX4ZAmISOcBBEV9JGfP7cn7cucTFO-922Qt2hD0";
    assert_eq!(key.token_for("session-123"), want);
    assert!(key.verify("session-123", want));
    assert!(!key.verify("session-124", want), "another session's token");
    assert!(!key.verify("session-123", &want.replace('y', "z")));
    assert!(!key.verify("session-123", ""));
    assert!(!key.verify("session-123", &want[..42]));
    let other = CsrfKey::generate().unwrap();
    assert!(!other.verify("session-123", want), "another server key");
    assert!(!format!("{key:?}").contains("0, 1, 2"));
}

#[test]
fn session_lifetimes_asvs_7_3() {
    fn t(mins: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + mins * 60)
    }
    fn check(created: u64, last_used: u64, now: u64, expect: SessionStatus) {
        assert_eq!(
            SessionLifetime::default().status(t(created), t(last_used), t(now)),
            expect,
            "created {created} min, used {last_used} min, now {now} min"
        );
    }
    use SessionStatus::*;
    check(0, 0, 0, Active);
    check(0, 0, 29, Active);
    check(0, 0, 30, IdleExpired); // 7.3.1: 30 minutes idle
    check(0, 600, 629, Active);
    check(0, 710, 719, Active);
    check(0, 719, 720, AbsoluteExpired); // 7.3.2: 12 hours however active
    check(0, 0, 720, AbsoluteExpired);
    // A last-use time in the future (clock stepped back) does not extend the session.
    check(0, 10_000, 31, Active);
    check(0, 10_000, 720, AbsoluteExpired);
    let l = SessionLifetime::default();
    assert_eq!(l.expires_at(t(0), t(5)), t(35));
    assert_eq!(l.expires_at(t(0), t(700)), t(720));
}
