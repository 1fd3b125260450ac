use super::*;

/// Known dates (from `date -u -d @SECONDS`), as a table.
#[test]
fn known_dates() {
    let check = |secs: u64, nanos: u32, seconds: &str, go: &str| {
        let t = UNIX_EPOCH + Duration::new(secs, nanos);
        assert_eq!(rfc3339(t, Precision::Seconds), seconds);
        assert_eq!(rfc3339(t, Precision::GoNanos), go);
    };
    check(0, 0, "1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z");
    check(
        951_782_400,
        500_000_000,
        "2000-02-29T00:00:00Z",
        "2000-02-29T00:00:00.5Z",
    );
    check(
        1_709_251_199,
        123_456_789,
        "2024-02-29T23:59:59Z",
        "2024-02-29T23:59:59.123456789Z",
    );
    check(
        4_102_444_800,
        10,
        "2100-01-01T00:00:00Z",
        "2100-01-01T00:00:00.00000001Z",
    );
}

#[test]
fn days_round_the_calendar() {
    assert_eq!(civil_from_days(-1), (1969, 12, 31));
    assert_eq!(civil_from_days(-719_468), (0, 3, 1));
    assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    assert_eq!(civil_from_days(47_482), (2100, 1, 1));
    // Consecutive days never skip or repeat a date.
    let mut last = civil_from_days(-800_000);
    for d in -799_999..800_000 {
        let now = civil_from_days(d);
        assert!(now > last, "{d}: {now:?} after {last:?}");
        last = now;
    }
}
