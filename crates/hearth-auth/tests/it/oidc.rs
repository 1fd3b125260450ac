use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hearth_auth::oidc::{
    AuthorizationRequest, Expected, Pkce, authorization_url, is_allowed_endpoint, parse_discovery,
    parse_token_response, random_nonce, random_state, validate_id_token,
};
use serde_json::json;

#[test]
fn pkce_rfc7636_appendix_b() {
    let p = Pkce::from_verifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk").unwrap();
    assert_eq!(p.challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    assert_eq!(Pkce::METHOD, "S256");
}

#[test]
fn pkce_verifier_rules() {
    fn check(v: &str, ok: bool) {
        assert_eq!(Pkce::from_verifier(v).is_ok(), ok, "{v:?}");
    }
    check(&"a".repeat(43), true);
    check(&"a".repeat(128), true);
    check(&"a".repeat(42), false);
    check(&"a".repeat(129), false);
    check(&format!("{}-._~", "a".repeat(40)), true);
    check(&format!("{}+", "a".repeat(42)), false);
    check(&format!("{} ", "a".repeat(42)), false);
    let g = Pkce::generate().unwrap();
    assert_eq!(g.verifier.len(), 43);
    assert_eq!(Pkce::from_verifier(&g.verifier).unwrap(), g);
    assert!(!format!("{g:?}").contains(&g.verifier));
}

#[test]
fn state_and_nonce_are_256_bit_random_asvs_10_1_2() {
    let (s1, s2) = (random_state().unwrap(), random_state().unwrap());
    let (n1, n2) = (random_nonce().unwrap(), random_nonce().unwrap());
    assert_ne!(s1, s2);
    assert_ne!(n1, n2);
    for v in [s1, n1] {
        assert_eq!(URL_SAFE_NO_PAD.decode(&v).unwrap().len(), 32);
    }
}

#[test]
fn endpoints_need_tls_except_loopback() {
    fn check(url: &str, ok: bool) {
        assert_eq!(is_allowed_endpoint(url), ok, "{url}");
    }
    check("https://login.example.com/authorize", true);
    check("https://login.example.com", true);
    check("http://127.0.0.1:8080/authorize", true);
    check("http://127.5.5.5/token", true);
    check("http://[::1]:9000/token", true);
    check("http://localhost:9000/token", true);
    check("http://login.example.com/authorize", false);
    check("http://localhost.evil.com/token", false);
    check("http://127.0.0.1.evil.com/token", false);
    check("http://127.0.0.1@evil.com/token", false);
    check("http://evil.com#@127.0.0.1/", false);
    check("https:///path", false);
    check("ftp://127.0.0.1/", false);
    check("javascript:alert(1)", false);
    check("", false);
}

#[test]
fn authorization_url_building() {
    let req = AuthorizationRequest {
        authorization_endpoint: "https://idp.example.com/authorize",
        client_id: "hearth",
        redirect_uri: "https://hearth.example.com/auth/callback",
        scope: "openid email profile",
        state: "st-1",
        nonce: "n_2",
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
    };
    assert_eq!(
        authorization_url(&req).unwrap(),
        "https://idp.example.com/authorize?response_type=code&client_id=hearth&redirect_uri=https%3A%2F%2Fhearth.example.com%2Fauth%2Fcallback&scope=openid%20email%20profile&state=st-1&nonce=n_2&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256"
    );
    let with_query = AuthorizationRequest {
        authorization_endpoint: "https://idp.example.com/authorize?tenant=x",
        ..req.clone()
    };
    assert!(
        authorization_url(&with_query)
            .unwrap()
            .starts_with("https://idp.example.com/authorize?tenant=x&response_type=code&")
    );
    fn refused(req: AuthorizationRequest<'_>, why: &str) {
        let e = authorization_url(&req).unwrap_err().to_string();
        assert!(e.contains(why), "{e}");
    }
    refused(
        AuthorizationRequest {
            authorization_endpoint: "http://idp.example.com/authorize",
            ..req.clone()
        },
        "https://",
    );
    refused(
        AuthorizationRequest {
            scope: "email",
            ..req.clone()
        },
        "openid",
    );
    refused(
        AuthorizationRequest {
            authorization_endpoint: "https://idp.example.com/authorize#x",
            ..req
        },
        "fragment",
    );
}

fn discovery(issuer: &str, extra: serde_json::Value) -> Vec<u8> {
    let mut doc = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    });
    if let (Some(d), Some(e)) = (doc.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            d.insert(k.clone(), v.clone());
        }
    }
    serde_json::to_vec(&doc).unwrap()
}

#[test]
fn discovery_documents_asvs_10_5_3() {
    fn check(body: &[u8], issuer: &str, expect: Result<(), &str>) {
        match (parse_discovery(body, issuer), expect) {
            (Ok(_), Ok(())) => {}
            (Err(e), Err(want)) => assert!(e.to_string().contains(want), "{e}"),
            (got, want) => panic!("{issuer}: got {got:?}, want {want:?}"),
        }
    }
    let iss = "https://idp.example.com";
    check(&discovery(iss, json!({})), iss, Ok(()));
    check(
        &discovery(
            iss,
            json!({"code_challenge_methods_supported": ["plain", "S256"]}),
        ),
        iss,
        Ok(()),
    );
    check(
        &discovery("http://127.0.0.1:5556", json!({})),
        "http://127.0.0.1:5556",
        Ok(()),
    );
    // The issuer must match exactly: no trailing slash, no other host.
    check(
        &discovery(iss, json!({})),
        "https://idp.example.com/",
        Err("must match exactly"),
    );
    check(
        &discovery("https://evil.example.com", json!({})),
        iss,
        Err("must match exactly"),
    );
    check(
        &discovery(
            iss,
            json!({"token_endpoint": "http://idp.example.com/token"}),
        ),
        iss,
        Err("token_endpoint"),
    );
    check(
        &discovery(iss, json!({"code_challenge_methods_supported": ["plain"]})),
        iss,
        Err("S256"),
    );
    check(b"{\"issuer\": 5}", iss, Err("not valid"));
    check(b"<html>", iss, Err("not valid"));
    check(&vec![b' '; 70_000], iss, Err("over 65536 bytes"));
    let d = parse_discovery(&discovery(iss, json!({})), iss).unwrap();
    assert_eq!(d.token_endpoint, "https://idp.example.com/token");
    assert_eq!(d.jwks_uri.as_deref(), Some("https://idp.example.com/jwks"));
}

#[test]
fn token_responses() {
    fn check(body: serde_json::Value, expect: Result<(), &str>) {
        let bytes = serde_json::to_vec(&body).unwrap();
        match (parse_token_response(&bytes), expect) {
            (Ok(t), Ok(())) => assert_eq!(t.id_token, "h.p.s"),
            (Err(e), Err(want)) => assert!(e.to_string().contains(want), "{e}"),
            (got, want) => panic!("{body}: got {got:?}, want {want:?}"),
        }
    }
    check(
        json!({"access_token": "at", "token_type": "Bearer", "id_token": "h.p.s", "expires_in": 3600}),
        Ok(()),
    );
    check(
        json!({"access_token": "at", "token_type": "bearer", "id_token": "h.p.s"}),
        Ok(()),
    );
    check(
        json!({"access_token": "at", "token_type": "Bearer"}),
        Err("id_token"),
    );
    check(
        json!({"access_token": "at", "token_type": "DPoP", "id_token": "h.p.s"}),
        Err("not Bearer"),
    );
    check(
        json!({"error": "invalid_grant", "error_description": "code expired"}),
        Err("invalid_grant code expired"),
    );
    let t = parse_token_response(
        &serde_json::to_vec(
            &json!({"access_token": "secret-at", "token_type": "Bearer", "id_token": "h.p.s"}),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(!format!("{t:?}").contains("secret-at"));
}

const NOW: u64 = 1_763_800_000;

fn jwt(header: serde_json::Value, claims: serde_json::Value) -> String {
    let enc = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    format!("{}.{}.c2lnbmF0dXJl", enc(&header), enc(&claims))
}

fn claims() -> serde_json::Value {
    json!({
        "iss": "https://idp.example.com",
        "sub": "248289761001",
        "aud": "hearth",
        "exp": NOW + 600,
        "iat": NOW - 5,
        "nonce": "n-0S6_WzA2Mj",
        "email": "alice@example.com",
        "email_verified": true,
        "name": "Alice",
    })
}

fn with(mut base: serde_json::Value, changes: serde_json::Value) -> serde_json::Value {
    if let (Some(b), Some(c)) = (base.as_object_mut(), changes.as_object()) {
        for (k, v) in c {
            if v.is_null() {
                b.remove(k);
            } else {
                b.insert(k.clone(), v.clone());
            }
        }
    }
    base
}

#[test]
fn id_token_claims_asvs_10_5() {
    let expected = Expected {
        issuer: "https://idp.example.com",
        client_id: "hearth",
        nonce: "n-0S6_WzA2Mj",
        now: UNIX_EPOCH + Duration::from_secs(NOW),
        max_skew: Duration::from_secs(60),
    };
    let rs256 = json!({"alg": "RS256", "kid": "1"});
    fn check(token: &str, expected: &Expected<'_>, expect: Result<(), &str>) {
        match (validate_id_token(token, expected), expect) {
            (Ok(c), Ok(())) => assert_eq!(c.sub, "248289761001"),
            (Err(e), Err(want)) => assert!(e.to_string().contains(want), "{e}"),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }
    let ok = |changes| jwt(rs256.clone(), with(claims(), changes));
    check(&ok(json!({})), &expected, Ok(()));
    // aud as an array with azp.
    check(
        &ok(json!({"aud": ["hearth", "other"], "azp": "hearth"})),
        &expected,
        Ok(()),
    );
    check(&ok(json!({"aud": ["hearth"]})), &expected, Ok(()));
    // Within the skew allowance.
    check(&ok(json!({"exp": NOW - 30})), &expected, Ok(()));
    check(&ok(json!({"iat": NOW + 30})), &expected, Ok(()));

    // 10.5.3 / OIDC 3.1.3.7 item 2: issuer exact.
    check(
        &ok(json!({"iss": "https://idp.example.com/"})),
        &expected,
        Err("issued by"),
    );
    // 10.5.4: audience.
    check(&ok(json!({"aud": "someone-else"})), &expected, Err("(aud)"));
    check(
        &ok(json!({"aud": ["other", "hearth"]})),
        &expected,
        Err("(azp)"),
    );
    check(
        &ok(json!({"aud": "hearth", "azp": "other"})),
        &expected,
        Err("(azp)"),
    );
    // Expiry and issue time.
    check(&ok(json!({"exp": NOW - 61})), &expected, Err("expired"));
    check(
        &ok(json!({"iat": NOW + 120})),
        &expected,
        Err("in the future"),
    );
    // 10.5.1: nonce.
    check(&ok(json!({"nonce": "other"})), &expected, Err("nonce"));
    check(&ok(json!({"nonce": null})), &expected, Err("nonce"));
    // Required claims and shapes.
    check(
        &ok(json!({"sub": null})),
        &expected,
        Err("missing or malformed"),
    );
    check(&ok(json!({"sub": ""})), &expected, Err("subject"));
    check(
        &ok(json!({"exp": "tomorrow"})),
        &expected,
        Err("missing or malformed"),
    );
    check(
        &jwt(json!({"alg": "none"}), claims()),
        &expected,
        Err("unsigned"),
    );
    check(
        &jwt(json!({"typ": "JWT"}), claims()),
        &expected,
        Err("no algorithm"),
    );
    check("a.b", &expected, Err("three dot-separated parts"));
    check("a.b.c.d", &expected, Err("three dot-separated parts"));
    check("!!!.b.c", &expected, Err("header is not base64url"));
    check(&"a".repeat(20_000), &expected, Err("too long"));

    let c = validate_id_token(&ok(json!({})), &expected).unwrap();
    assert_eq!(c.iss, "https://idp.example.com");
    assert_eq!(c.aud, ["hearth"]);
    assert_eq!(c.email.as_deref(), Some("alice@example.com"));
    assert_eq!(c.email_verified, Some(true));
}
