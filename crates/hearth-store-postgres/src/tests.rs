use super::redacted;

#[test]
fn messages_never_carry_the_password() {
    for (url, expect) in [
        (
            "postgres://hearth:s3cret@db.example.test:5432/hearth",
            "postgres://hearth:…@db.example.test:5432/hearth",
        ),
        (
            "postgres://hearth@localhost/hearth",
            "postgres://hearth:…@localhost/hearth",
        ),
        ("postgres://localhost/hearth", "postgres://localhost/hearth"),
        // An @ inside the password: everything up to the last @ is user information.
        ("postgres://u:p@ss@h/d", "postgres://u:…@h/d"),
    ] {
        assert_eq!(redacted(url), expect, "{url}");
    }
}
