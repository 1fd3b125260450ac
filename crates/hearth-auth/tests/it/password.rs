use hearth_auth::Error;
use hearth_auth::password::{
    HashParams, MAX_LEN, MIN_LEN, PasswordHasher, PasswordPolicy, PasswordProblem,
    common_password_count, is_common,
};

/// Hashes made by argon2-cffi 25.1.0 (the reference C libargon2), not by this crate:
/// `PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1, hash_len=32, salt_len=16,
/// type=Type.ID).hash(...)`.
const CFFI_OWASP: &str = "$argon2id$v=19$m=19456,t=2,p=1$SmVcFSjrx5Bn4pP7ax9H+w$WhWfCuIdn6umXUlFOF29NrthjzMW0PTUY+IJc9MrexM";
const CFFI_OWASP_PASSWORD: &str = "correct horse battery staple";
/// Same password, m=65536, t=3, p=4.
const CFFI_STRONGER: &str = "$argon2id$v=19$m=65536,t=3,p=4$ZsnexilBiUbcWhBrsLJCXw$NlpEysnDDhJFDh+WKKyJUh3vRdGKU11US3mQMqrNRbI";
/// `"pässwörd ✓ ok"`, OWASP parameters.
const CFFI_UNICODE: &str = "$argon2id$v=19$m=19456,t=2,p=1$LqHvjVWQdwYKkHFRkz3mgQ$NAQPyvVpF19LBTBeRFCJeopxfskXUdmWSNs/YJnYbsc";

#[test]
fn policy_asvs_6_2() {
    fn check(password: &str, username: Option<&str>, expect: Result<(), PasswordProblem>) {
        assert_eq!(
            PasswordPolicy::default().check(password, username),
            expect,
            "{password:?}"
        );
    }
    use PasswordProblem::*;
    // 6.2.1: at least 8 characters, counted as Unicode scalar values, not bytes.
    check("kq7#vz!", None, Err(TooShort { min: 8, got: 7 }));
    check("kq7#vz!m", None, Ok(()));
    check("ñçüéàöß", None, Err(TooShort { min: 8, got: 7 })); // 14 bytes, 7 chars
    check("ñçüéàöß€", None, Ok(()));
    // 6.2.9: 64 characters and more are allowed, up to 128.
    check(&"Zq9".repeat(22)[..64], None, Ok(()));
    check(&"x7Kp".repeat(32), None, Ok(()));
    check(
        &format!("{}!", "x7Kp".repeat(32)),
        None,
        Err(TooLong { max: 128, got: 129 }),
    );
    // 6.2.5: no composition rules: all lowercase, all digits, spaces, emoji are fine.
    check("lanterns and marmalade", None, Ok(()));
    check("90210475836", None, Ok(()));
    check("🔥🔥🔥🔥🔥🔥🔥🔥", None, Ok(()));
    // 6.2.4: common passwords, case-insensitively.
    check("password", None, Err(Common));
    check("PassWord", None, Err(Common));
    check("iloveyou", None, Err(Common));
    check("qwertyuiop", None, Err(Common));
    check("12345678", None, Err(Common));
    // 6.2.8: used exactly as given: a space makes it a different password.
    check(" password", None, Ok(()));
    // 6.2.11: the user name is a context-specific word.
    check("my-alice-pass-77", Some("alice"), Err(ContainsUsername));
    check("my-ALICE-pass-77", Some("Alice"), Err(ContainsUsername));
    check("my-alice-pass-77", Some("bob"), Ok(()));
    check("my-al-pass-77xx", Some("al"), Ok(())); // names under 3 characters are not checked
    let lenient = PasswordPolicy {
        reject_username: false,
    };
    assert_eq!(lenient.check("my-alice-pass-77", Some("alice")), Ok(()));
}

#[test]
fn problems_say_what_to_do() {
    fn check(p: PasswordProblem, expect: &str) {
        assert!(p.to_string().contains(expect), "{p}");
    }
    check(
        PasswordProblem::TooShort {
            min: MIN_LEN,
            got: 3,
        },
        "at least 8 characters",
    );
    check(
        PasswordProblem::TooLong {
            max: MAX_LEN,
            got: 200,
        },
        "at most 128 characters",
    );
    check(PasswordProblem::Common, "choose a longer phrase");
    check(
        PasswordProblem::ContainsUsername,
        "do not use your user name",
    );
}

#[test]
fn common_list_size_and_lookup() {
    // 6.2.4 asks for at least the top 3000; the brief for at least 10 000.
    assert!(
        common_password_count() >= 10_000,
        "{}",
        common_password_count()
    );
    assert!(is_common("baseball"));
    assert!(is_common("BASEBALL"));
    assert!(!is_common("baseball "));
    assert!(!is_common("a completely unlisted phrase"));
}

#[test]
fn verifies_reference_hashes_asvs_11_4_2() {
    fn check(password: &str, phc: &str, expect: bool) {
        let h = PasswordHasher::owasp();
        assert_eq!(h.verify(password, phc), Ok(expect), "{password:?} vs {phc}");
    }
    check(CFFI_OWASP_PASSWORD, CFFI_OWASP, true);
    check(CFFI_OWASP_PASSWORD, CFFI_STRONGER, true);
    check("pässwörd ✓ ok", CFFI_UNICODE, true);
    // 6.2.8: no normalisation, trimming or case folding at verification either.
    check("Correct horse battery staple", CFFI_OWASP, false);
    check("correct horse battery staple ", CFFI_OWASP, false);
    check("correct horse battery stapl", CFFI_OWASP, false);
    check("pa\u{0308}sswörd ✓ ok", CFFI_UNICODE, false); // NFD spelling of ä
    check("", CFFI_OWASP, false);
}

#[test]
fn hash_round_trip_and_form() {
    let h = PasswordHasher::owasp();
    let phc = h.hash("lanterns and marmalade").unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    assert_eq!(h.verify("lanterns and marmalade", &phc), Ok(true));
    assert_eq!(h.verify("lanterns and marmalade!", &phc), Ok(false));
    // A fresh salt each time.
    assert_ne!(phc, h.hash("lanterns and marmalade").unwrap());
    assert!(!h.needs_rehash(&phc));
    // Too long to hash: refused, and never matches.
    let long = "x".repeat(MAX_LEN + 1);
    assert!(matches!(h.hash(&long), Err(Error::WeakPassword(_))));
    assert_eq!(h.verify(&long, &phc), Ok(false));
}

#[test]
fn needs_rehash_when_parameters_change() {
    fn check(hasher: &PasswordHasher, phc: &str, expect: bool) {
        assert_eq!(hasher.needs_rehash(phc), expect, "{phc}");
    }
    let owasp = PasswordHasher::owasp();
    let stronger = PasswordHasher::new(HashParams {
        memory_kib: 65_536,
        iterations: 3,
        parallelism: 4,
    })
    .unwrap();
    check(&owasp, CFFI_OWASP, false);
    check(&owasp, CFFI_STRONGER, true);
    check(&stronger, CFFI_STRONGER, false);
    check(&stronger, CFFI_OWASP, true);
    // argon2i, other versions and garbage need replacing.
    check(
        &owasp,
        "$argon2i$v=19$m=19456,t=2,p=1$SmVcFSjrx5Bn4pP7ax9H+w$WhWfCuIdn6umXUlFOF29NrthjzMW0PTUY+IJc9MrexM",
        true,
    );
    check(
        &owasp,
        "$argon2id$v=16$m=19456,t=2,p=1$SmVcFSjrx5Bn4pP7ax9H+w$WhWfCuIdn6umXUlFOF29NrthjzMW0PTUY+IJc9MrexM",
        true,
    );
    check(&owasp, "not a hash", true);
}

#[test]
fn corrupt_stored_hashes_are_errors_not_matches() {
    fn check(phc: &str) {
        let r = PasswordHasher::owasp().verify(CFFI_OWASP_PASSWORD, phc);
        assert!(matches!(r, Err(Error::Internal(_))), "{phc}: {r:?}");
    }
    check("");
    check("plaintext-password");
    check("$2b$12$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui"); // bcrypt
    check("$pbkdf2-sha256$29000$abc$def");
    // Work bounds: a planted hash cannot make verification allocate 4 TiB or loop forever.
    check(
        "$argon2id$v=19$m=4294967295,t=2,p=1$SmVcFSjrx5Bn4pP7ax9H+w$WhWfCuIdn6umXUlFOF29NrthjzMW0PTUY+IJc9MrexM",
    );
    check(
        "$argon2id$v=19$m=19456,t=100000,p=1$SmVcFSjrx5Bn4pP7ax9H+w$WhWfCuIdn6umXUlFOF29NrthjzMW0PTUY+IJc9MrexM",
    );
    check(&format!(
        "$argon2id$v=19$m=19456,t=2,p=1${}$x",
        "A".repeat(600)
    ));
}

#[test]
fn dummy_verification_never_matches() {
    let h = PasswordHasher::owasp();
    assert!(!h.verify_dummy("hearth dummy password, never matches"));
    assert!(!h.verify_dummy(""));
}

#[test]
fn invalid_parameters_are_refused() {
    let r = PasswordHasher::new(HashParams {
        memory_kib: 1,
        iterations: 0,
        parallelism: 0,
    });
    assert!(matches!(r, Err(Error::BadInput(_))), "{r:?}");
    assert_eq!(PasswordHasher::owasp().params(), HashParams::OWASP);
}
