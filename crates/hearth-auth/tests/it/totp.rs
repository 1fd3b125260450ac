use hearth_auth::totp::{
    TotpCheck, TotpSecret, base32_decode, base32_encode, hotp, otpauth_uri, qr_svg, step_at, totp,
    verify,
};

/// RFC 4226 Appendix A / RFC 6238 Appendix B key (ASCII "12345678901234567890").
const RFC_KEY: &[u8] = b"12345678901234567890";

#[test]
fn rfc6238_appendix_b_sha1() {
    fn check(unix: u64, expect: &str) {
        assert_eq!(totp(RFC_KEY, unix, 30, 8), expect, "T = {unix}");
    }
    check(59, "94287082");
    check(1_111_111_109, "07081804");
    check(1_111_111_111, "14050471");
    check(1_234_567_890, "89005924");
    check(2_000_000_000, "69279037");
    check(20_000_000_000, "65353130");
}

#[test]
fn rfc4226_appendix_d_hotp() {
    let expect = [
        "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871",
        "520489",
    ];
    for (counter, want) in expect.iter().enumerate() {
        assert_eq!(hotp(RFC_KEY, counter as u64, 6), *want, "counter {counter}");
    }
}

#[test]
fn six_digit_codes_are_the_low_digits_of_the_rfc_values() {
    // RFC 6238's 8-digit value mod 10^6 is the 6-digit code (same truncation).
    let secret = TotpSecret::from_bytes(*b"12345678901234567890");
    assert_eq!(secret.code_at(59), "287082");
    assert_eq!(secret.code_at(1_111_111_109), "081804");
    assert_eq!(secret.code_at(1_234_567_890), "005924");
}

#[test]
fn rfc4648_base32_vectors() {
    fn check(plain: &str, padded: &str) {
        let unpadded = padded.trim_end_matches('=');
        assert_eq!(base32_encode(plain.as_bytes()), unpadded, "{plain:?}");
        assert_eq!(base32_decode(padded).unwrap(), plain.as_bytes(), "{padded}");
        assert_eq!(
            base32_decode(unpadded).unwrap(),
            plain.as_bytes(),
            "{unpadded}"
        );
        assert_eq!(
            base32_decode(&unpadded.to_lowercase()).unwrap(),
            plain.as_bytes()
        );
    }
    // RFC 4648 section 10.
    check("", "");
    check("f", "MY======");
    check("fo", "MZXQ====");
    check("foo", "MZXW6===");
    check("foob", "MZXW6YQ=");
    check("fooba", "MZXW6YTB");
    check("foobar", "MZXW6YTBOI======");
}

#[test]
fn base32_refuses_garbage() {
    for bad in [
        "MZXW6YT1", // 1 is not in the alphabet
        "MZXW6YT8", // nor 8
        "MZ=XW6YT", // padding inside
        "M",        // no byte string encodes to 1 symbol
        "MZX",      // nor 3
        "MZXW6Y",   // nor 6
        "MZ======", // "f" is MY: MZ has a non-zero leftover bit
        "MY=====",  // wrong padding length
        "MZXW6YTBOI=======",
        "MZXW 6YTB",
    ] {
        assert!(base32_decode(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn secrets_are_160_bits_from_the_csprng_asvs_6_5_3() {
    let a = TotpSecret::generate().unwrap();
    let b = TotpSecret::generate().unwrap();
    assert_ne!(a, b);
    let text = a.to_base32();
    assert_eq!(text.len(), 32);
    assert_eq!(TotpSecret::from_base32(&text).unwrap(), a);
    assert_eq!(
        TotpSecret::from_base32(&text.to_lowercase()).unwrap(),
        a,
        "apps show lowercase too"
    );
    let spaced: String = text
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(TotpSecret::from_base32(&spaced).unwrap(), a);
    assert!(
        TotpSecret::from_base32("MZXW6YTB").is_err(),
        "40 bits is not 160"
    );
    assert!(!format!("{a:?}").contains(&text), "Debug hides the secret");
}

#[test]
fn verification_window_and_single_use_asvs_6_5_1() {
    let secret = TotpSecret::from_bytes(*b"12345678901234567890");
    let now = 1_234_567_890; // step 41152263
    let step = step_at(now);
    assert_eq!(step, 41_152_263);
    let at = |s: u64| secret.code_at(s * 30);
    fn check(got: TotpCheck, expect: TotpCheck) {
        assert_eq!(got, expect);
    }
    // Current step and one either side (6.5.5: a code lives 30 s plus one step of drift).
    check(
        verify(&secret, &at(step), now, None),
        TotpCheck::Valid { step },
    );
    check(
        verify(&secret, &at(step - 1), now, None),
        TotpCheck::Valid { step: step - 1 },
    );
    check(
        verify(&secret, &at(step + 1), now, None),
        TotpCheck::Valid { step: step + 1 },
    );
    check(
        verify(&secret, &at(step - 2), now, None),
        TotpCheck::Invalid,
    );
    check(
        verify(&secret, &at(step + 2), now, None),
        TotpCheck::Invalid,
    );
    // Single use: a step at or before the last used one is a replay.
    check(
        verify(&secret, &at(step), now, Some(step)),
        TotpCheck::Replayed { step },
    );
    check(
        verify(&secret, &at(step - 1), now, Some(step)),
        TotpCheck::Replayed { step: step - 1 },
    );
    check(
        verify(&secret, &at(step + 1), now, Some(step)),
        TotpCheck::Valid { step: step + 1 },
    );
    // Formatting: spaces tolerated; anything else is invalid.
    let code = at(step);
    check(
        verify(
            &secret,
            &format!(" {} {} ", &code[..3], &code[3..]),
            now,
            None,
        ),
        TotpCheck::Valid { step },
    );
    for bad in ["", "12345", "1234567", "12345a", "١٢٣٤٥٦", "+12345"] {
        check(verify(&secret, bad, now, None), TotpCheck::Invalid);
    }
    // At the epoch the window does not underflow.
    check(
        verify(&secret, &secret.code_at(0), 0, None),
        TotpCheck::Valid { step: 0 },
    );
}

#[test]
fn otpauth_uri_format() {
    let secret = TotpSecret::from_bytes(*b"12345678901234567890");
    assert_eq!(
        otpauth_uri(&secret, "Hearth", "alice@example.com"),
        "otpauth://totp/Hearth:alice%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Hearth&algorithm=SHA1&digits=6&period=30"
    );
    assert_eq!(
        otpauth_uri(&secret, "My Home", "a:b&c"),
        "otpauth://totp/My%20Home:a%3Ab%26c?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=My%20Home&algorithm=SHA1&digits=6&period=30"
    );
}

#[test]
fn qr_code_is_an_svg_document() {
    let secret = TotpSecret::from_bytes(*b"12345678901234567890");
    let svg = qr_svg(&otpauth_uri(&secret, "Hearth", "alice")).unwrap();
    assert!(svg.starts_with("<?xml"), "{}", &svg[..60]);
    assert!(svg.contains("<svg"));
    assert!(svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("#000000") && svg.contains("#ffffff"));
    // Deterministic for the same text.
    assert_eq!(
        svg,
        qr_svg(&otpauth_uri(&secret, "Hearth", "alice")).unwrap()
    );
    assert!(qr_svg(&"x".repeat(5000)).is_err());
}
