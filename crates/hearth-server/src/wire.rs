//! Small wire-format helpers: ids, timestamps, durations.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hearth_api_types::ollama::KeepAlive;

use crate::error::ApiError;

/// A UUIDv7 (48-bit Unix milliseconds, then random bits) as 32 hex digits: sortable, unique
/// enough for response ids such as `chatcmpl-<hex>`.
pub fn new_id(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let millis = unix_millis(SystemTime::now());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let random = RandomState::new();
    let a = random.hash_one((n, millis, 0u8));
    let b = random.hash_one((n, millis, 1u8));
    let hi = (millis << 16) | 0x7000 | (a & 0x0fff);
    let lo = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    format!("{prefix}{hi:016x}{lo:016x}")
}

fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Unix seconds (0 for times before 1970).
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Nanoseconds, saturating.
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// RFC 3339 in UTC with trailing zeros of the fraction trimmed, as Go's `time.Time` marshals:
/// `2024-05-01T12:00:00.5Z`. Times before 1970 print as the epoch.
pub fn rfc3339(t: SystemTime) -> String {
    hearth_time::rfc3339(t, hearth_time::Precision::GoNanos)
}

/// What a `keep_alive` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAliveSpec {
    /// Stay loaded this long (zero: unload right after).
    For(Duration),
    /// A negative value: stay loaded until told otherwise.
    Forever,
}

impl KeepAliveSpec {
    /// As the model service takes it: forever is [`Duration::MAX`].
    pub fn duration(self) -> Duration {
        match self {
            KeepAliveSpec::For(d) => d,
            KeepAliveSpec::Forever => Duration::MAX,
        }
    }
}

/// Longest finite keep-alive accepted (100 years); longer is treated as forever.
const MAX_KEEP_ALIVE_SECS: f64 = 100.0 * 365.0 * 86_400.0;

/// Parses Ollama's `keep_alive`: seconds as a number, or a Go duration string (`"5m"`,
/// `"1h30m"`, `"1.5h"`, `"300ms"`, `"-1m"`); a bare number in a string is seconds.
pub fn keep_alive(k: &KeepAlive) -> Result<KeepAliveSpec, ApiError> {
    let secs = match k {
        KeepAlive::Seconds(s) => *s,
        KeepAlive::Text(t) => parse_go_duration(t.trim()).ok_or_else(|| {
            ApiError::invalid(
                "keep_alive",
                format!(
                    "keep_alive: cannot read {t:?} as a duration; use e.g. \"5m\", \"1h\", \"-1\" or a number of seconds"
                ),
            )
        })?,
    };
    if !secs.is_finite() {
        return Err(ApiError::invalid(
            "keep_alive",
            "keep_alive: must be a finite number",
        ));
    }
    Ok(if !(0.0..=MAX_KEEP_ALIVE_SECS).contains(&secs) {
        KeepAliveSpec::Forever
    } else {
        KeepAliveSpec::For(Duration::from_secs_f64(secs))
    })
}

/// Seconds of a Go duration string; `None` when it is not one.
fn parse_go_duration(s: &str) -> Option<f64> {
    if let Ok(n) = s.parse::<f64>() {
        return Some(n);
    }
    let (sign, mut rest) = match s.strip_prefix('-') {
        Some(r) => (-1.0, r),
        None => (1.0, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        if num_len == 0 {
            return None;
        }
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    Some(sign * total)
}
