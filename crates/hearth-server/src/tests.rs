//! Unit tests of the wire helpers; expected values computed independently (by `date -u` and by
//! Go's `time.ParseDuration` semantics as documented).

use std::time::{Duration, UNIX_EPOCH};

use hearth_api_types::ollama::KeepAlive;

use crate::wire::{self, KeepAliveSpec};

#[test]
fn rfc3339_matches_date_u() {
    let check = |secs: u64, nanos: u32, expect: &str| {
        let t = UNIX_EPOCH + Duration::new(secs, nanos);
        assert_eq!(wire::rfc3339(t), expect, "{secs}.{nanos}");
    };
    check(0, 0, "1970-01-01T00:00:00Z");
    // date -u -d @951782400 → 2000-02-29 00:00:00
    check(951_782_400, 0, "2000-02-29T00:00:00Z");
    // date -u -d @1691177065 → 2023-08-04 19:24:25
    check(1_691_177_065, 499_127_000, "2023-08-04T19:24:25.499127Z");
    // date -u -d @4102444799 → 2099-12-31 23:59:59
    check(4_102_444_799, 1, "2099-12-31T23:59:59.000000001Z");
}

#[test]
fn keep_alive_forms() {
    let check = |k: KeepAlive, expect: Option<KeepAliveSpec>| {
        assert_eq!(wire::keep_alive(&k).ok(), expect, "{k:?}");
    };
    let secs = |s: f64| Some(KeepAliveSpec::For(Duration::from_secs_f64(s)));
    check(KeepAlive::Text("5m".into()), secs(300.0));
    check(KeepAlive::Text("1h30m".into()), secs(5400.0));
    check(KeepAlive::Text("1.5h".into()), secs(5400.0));
    check(KeepAlive::Text("300ms".into()), secs(0.3));
    check(KeepAlive::Text("0".into()), secs(0.0));
    check(KeepAlive::Text("120".into()), secs(120.0));
    check(KeepAlive::Text("-1".into()), Some(KeepAliveSpec::Forever));
    check(KeepAlive::Text("-1m".into()), Some(KeepAliveSpec::Forever));
    check(KeepAlive::Seconds(60.0), secs(60.0));
    check(KeepAlive::Seconds(-1.0), Some(KeepAliveSpec::Forever));
    check(KeepAlive::Text("5 minutes".into()), None);
    check(KeepAlive::Text("m".into()), None);
    check(KeepAlive::Text("".into()), None);
    check(KeepAlive::Text("5x".into()), None);
}

#[test]
fn ids_are_uuid_v7_shaped_and_distinct() {
    let a = wire::new_id("chatcmpl-");
    let b = wire::new_id("chatcmpl-");
    assert_ne!(a, b);
    let hex = a.strip_prefix("chatcmpl-").expect("prefix");
    assert_eq!(hex.len(), 32);
    assert!(hex.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(&hex[12..13], "7", "version nibble");
    assert!(
        matches!(&hex[16..17], "8" | "9" | "a" | "b"),
        "variant bits"
    );
}

#[test]
fn histogram_buckets_are_cumulative_and_overflow_only_counts() {
    use std::time::Duration;

    use axum::http::Method;

    let m = crate::Metrics::default();
    for ms in [4, 300, 200_000] {
        m.record_request("/r", &Method::GET, 200, Duration::from_millis(ms));
    }
    let text = m.render(&[]);
    let check = |line: &str| {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        )
    };
    check("hearth_http_request_duration_seconds_bucket{route=\"/r\",le=\"0.005\"} 1");
    check("hearth_http_request_duration_seconds_bucket{route=\"/r\",le=\"0.25\"} 1");
    check("hearth_http_request_duration_seconds_bucket{route=\"/r\",le=\"0.5\"} 2");
    check("hearth_http_request_duration_seconds_bucket{route=\"/r\",le=\"120\"} 2");
    check("hearth_http_request_duration_seconds_bucket{route=\"/r\",le=\"+Inf\"} 3");
    check("hearth_http_request_duration_seconds_sum{route=\"/r\"} 200.304");
    check("hearth_http_request_duration_seconds_count{route=\"/r\"} 3");
    check("hearth_http_requests_total{route=\"/r\",method=\"GET\",status=\"200\"} 3");
}

#[test]
fn unknown_methods_share_one_label() {
    use axum::http::Method;

    let m = crate::Metrics::default();
    for name in ["BREW", "PROPFIND"] {
        let method = Method::from_bytes(name.as_bytes()).expect("method");
        m.record_request("unmatched", &method, 404, std::time::Duration::ZERO);
    }
    let text = m.render(&[]);
    assert!(
        text.contains(
            "hearth_http_requests_total{route=\"unmatched\",method=\"other\",status=\"404\"} 2"
        ),
        "{text}"
    );
}

/// RFC 4648 §10's test vectors, and `f32` vectors encoded by Python's
/// `base64.b64encode(struct.pack('<…f', …))`.
#[test]
fn base64_matches_rfc_4648_and_python() {
    use crate::embeddings::{base64, base64_f32};
    let check = |input: &[u8], expect: &str| assert_eq!(base64(input), expect, "{input:?}");
    check(b"", "");
    check(b"f", "Zg==");
    check(b"fo", "Zm8=");
    check(b"foo", "Zm9v");
    check(b"foob", "Zm9vYg==");
    check(b"fooba", "Zm9vYmE=");
    check(b"foobar", "Zm9vYmFy");
    check(&[0xff, 0xfe, 0xfd, 0xfc], "//79/A==");
    let check_f32 = |input: &[f32], expect: &str| assert_eq!(base64_f32(input), expect);
    check_f32(&[1.0], "AACAPw==");
    check_f32(&[1.0, -2.0], "AACAPwAAAMA=");
    check_f32(&[0.5, -0.25, f32::MAX], "AAAAPwAAgL7//39/");
}
