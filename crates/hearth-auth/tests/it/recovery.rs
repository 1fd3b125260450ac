use std::collections::HashSet;

use hearth_auth::Sha256Hash;
use hearth_auth::recovery::{BITS, CODE_COUNT, find, generate, hash, normalise};

#[test]
fn batch_shape_and_entropy_asvs_6_5_2_6_5_4() {
    let codes = generate().unwrap();
    assert_eq!(codes.len(), CODE_COUNT);
    assert_eq!(CODE_COUNT, 10);
    // ≥ 112 bits lets SHA-256 be the stored form (6.5.2); ≥ 128 meets 11.5.1.
    const { assert!(BITS >= 128) };
    let distinct: HashSet<&String> = codes.iter().collect();
    assert_eq!(distinct.len(), CODE_COUNT);
    for c in &codes {
        let groups: Vec<&str> = c.split('-').collect();
        assert_eq!(groups.len(), 7, "{c}");
        assert!(groups.iter().all(|g| g.len() == 4), "{c}");
        assert!(
            c.chars()
                .all(|ch| ch == '-' || "0123456789abcdefghjkmnpqrstvwxyz".contains(ch)),
            "{c}"
        );
        assert_eq!(normalise(c).as_deref(), Some(c.replace('-', "").as_str()));
    }
}

#[test]
fn normalising_forgives_typing() {
    fn check(input: &str, expect: Option<&str>) {
        assert_eq!(normalise(input).as_deref(), expect, "{input:?}");
    }
    let canonical = "0123456789abcdefghjkmnpqrstv";
    check("0123-4567-89ab-cdef-ghjk-mnpq-rstv", Some(canonical));
    check("0123 4567 89AB CDEF GHJK MNPQ RSTV", Some(canonical));
    check("O123-4567-89ab-cdef-ghjk-mnpq-rstv", Some(canonical)); // O read as 0
    check(
        "0I23-4567-89ab-cdef-ghjk-mnpq-rstv",
        Some("0123456789abcdefghjkmnpqrstv"),
    ); // I → 1
    check("0l23-4567-89ab-cdef-ghjk-mnpq-rstv", Some(canonical)); // l → 1
    check("0123-4567-89ab-cdef-ghjk-mnpq-rst", None); // too short
    check("0123-4567-89ab-cdef-ghjk-mnpq-rstvw", None); // too long
    check("0123-4567-89ab-cdef-ghjk-mnpq-rstu", None); // u is not in the alphabet
    check("0123-4567-89ab-cdef-ghjk-mnpq-rst!", None);
    check("", None);
    check(&"0".repeat(10_000), None);
}

#[test]
fn stored_form_is_sha256_of_the_normalised_code() {
    // printf %s 0123456789abcdefghjkmnpqrstv | sha256sum (Python hashlib agrees)
    let expect =
        Sha256Hash::from_hex("d6e6229139f7628a8803a9c247c8f0dcb79ce885ff3eadd0c91ea02756b3039a")
            .unwrap();
    assert_eq!(hash("0123-4567-89ab-cdef-ghjk-mnpq-rstv"), Some(expect));
    assert_eq!(hash("O123 4567 89AB CDEF GHJK MNPQ RSTV"), Some(expect));
    assert_eq!(hash("nonsense"), None);
}

#[test]
fn find_matches_one_stored_code_single_use_asvs_6_5_1() {
    let codes = generate().unwrap();
    let mut stored: Vec<Sha256Hash> = codes.iter().map(|c| hash(c).unwrap()).collect();
    assert_eq!(find(&codes[3], &stored), Some(3));
    assert_eq!(find(&codes[3].to_uppercase(), &stored), Some(3));
    // The store removes the used one; the same code then fails.
    stored.remove(3);
    assert_eq!(find(&codes[3], &stored), None);
    assert_eq!(find(&codes[4], &stored), Some(3));
    assert_eq!(find("0123-4567-89ab-cdef-ghjk-mnpq-rstv", &stored), None);
    assert_eq!(find("garbage", &stored), None);
    assert_eq!(find(&codes[0], &[]), None);
}
