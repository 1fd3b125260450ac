use crate::Sha256Hash;
use crate::util::percent_encode;

#[test]
fn sha256_hex_round_trip() {
    // FIPS 180-2 example: SHA-256("abc").
    let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    let h = Sha256Hash::of(b"abc");
    assert_eq!(h.to_hex(), abc);
    assert_eq!(Sha256Hash::from_hex(abc), Ok(h));
    assert_eq!(Sha256Hash::from_hex(&abc.to_uppercase()), Ok(h));
    for bad in [
        "",
        "ba78",
        &abc[1..],
        &format!("{abc}0"),
        &abc.replace('a', "g"),
    ] {
        assert!(Sha256Hash::from_hex(bad).is_err(), "{bad}");
    }
    assert!(!format!("{h:?}").contains(abc), "Debug shows only a prefix");
}

#[test]
fn percent_encoding() {
    fn check(input: &str, expect: &str) {
        assert_eq!(percent_encode(input), expect, "{input:?}");
    }
    check("Hearth", "Hearth");
    check("a-b.c_d~e", "a-b.c_d~e");
    check("alice@example.com", "alice%40example.com");
    check("a b:c/d?e&f=g", "a%20b%3Ac%2Fd%3Fe%26f%3Dg");
    check("é", "%C3%A9");
}
