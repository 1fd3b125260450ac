//! Every parser takes arbitrary input without panicking and refuses what it cannot read.

use std::time::{Duration, UNIX_EPOCH};

use hearth_auth::Sha256Hash;
use hearth_auth::oidc::{
    Expected, Pkce, is_allowed_endpoint, parse_discovery, parse_token_response, validate_id_token,
};
use hearth_auth::password::{PasswordHasher, PasswordPolicy};
use hearth_auth::policy::{PermissionSet, Scope};
use hearth_auth::token::{ApiKey, CsrfKey, SessionToken};
use hearth_auth::totp::{TotpSecret, base32_decode, verify};
use hearth_auth::{Role, recovery};
use proptest::prelude::*;

proptest! {
    #[test]
    fn text_parsers_never_panic(s in "\\PC{0,80}|[A-Za-z0-9_\\-=.]{0,80}") {
        let _ = SessionToken::parse(&s);
        let _ = ApiKey::parse(&s);
        let _ = ApiKey::parse(&format!("hearth_{s}"));
        let _ = base32_decode(&s);
        let _ = TotpSecret::from_base32(&s);
        let _ = recovery::normalise(&s);
        let _ = recovery::find(&s, &[Sha256Hash::of(b"x")]);
        let _ = Sha256Hash::from_hex(&s);
        let _ = s.parse::<Role>();
        let _ = PermissionSet::parse(&[s.as_str()]);
        let _ = Scope::parse(&[s.as_str()], &[s.as_str()]);
        let _ = Pkce::from_verifier(&s);
        let _ = is_allowed_endpoint(&s);
        let _ = PasswordPolicy::default().check(&s, Some(&s));
        let secret = TotpSecret::from_bytes([7; 20]);
        let _ = verify(&secret, &s, u64::MAX, Some(u64::MAX));
        let key = CsrfKey::from_bytes([1; 32]);
        prop_assert!(!key.verify(&s, &s) || s.len() == 43);
        // A parsed key prints back exactly as given.
        if let Ok(k) = ApiKey::parse(&s) {
            prop_assert_eq!(k.expose(), s.clone());
        }
    }

    #[test]
    fn json_and_jwt_parsers_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..200),
        parts in proptest::collection::vec("[A-Za-z0-9_\\-]{0,40}", 0..5),
    ) {
        let _ = parse_discovery(&body, "https://idp.example.com");
        let _ = parse_token_response(&body);
        let expected = Expected {
            issuer: "https://idp.example.com",
            client_id: "hearth",
            nonce: "n",
            now: UNIX_EPOCH + Duration::from_secs(1_763_800_000),
            max_skew: Duration::from_secs(60),
        };
        let token = parts.join(".");
        prop_assert!(validate_id_token(&token, &expected).is_err());
        let lossy = String::from_utf8_lossy(&body);
        prop_assert!(validate_id_token(&lossy, &expected).is_err());
    }

    #[test]
    fn stored_hash_parser_never_panics(s in "\\$argon2(id|i|d)?\\$v=1[69]\\$m=[0-9]{1,11},t=[0-9]{1,6},p=[0-9]{1,3}\\$[A-Za-z0-9+/]{0,30}\\$[A-Za-z0-9+/]{0,50}") {
        // Only the parameter check runs for hostile parameters: no huge allocations.
        let h = PasswordHasher::owasp();
        let _ = h.needs_rehash(&s);
        if s.contains("m=1,") || s.contains("m=2,") {
            let _ = h.verify("x", &s);
        }
    }
}
