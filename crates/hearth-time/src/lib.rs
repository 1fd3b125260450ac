//! UTC calendar arithmetic (Howard Hinnant's days-from-civil algorithms) and RFC 3339 text, for
//! manifests, API timestamps and chat templates' `strftime_now`.
#![forbid(unsafe_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// (year, month 1..=12, day 1..=31) of the day `days` after 1970-01-01, proleptic Gregorian.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let y = yoe + era * 400 + i64::from(m <= 2);
    // d and m are small and positive by construction.
    (y, m.unsigned_abs() as u32, d.unsigned_abs() as u32)
}

/// How many fraction digits [`rfc3339`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Whole seconds: `2024-05-01T12:00:00Z`.
    Seconds,
    /// Nanoseconds with trailing zeros trimmed, as Go's `time.Time` marshals (and Ollama
    /// answers): `2024-05-01T12:00:00.5Z`.
    GoNanos,
}

/// `t` in RFC 3339, UTC. Times before 1970 print as the epoch.
pub fn rfc3339(t: SystemTime, precision: Precision) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    let (y, m, day) = civil_from_days(days);
    let mut out = format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    let frac = d.subsec_nanos();
    if precision == Precision::GoNanos && frac != 0 {
        let digits = format!("{frac:09}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

#[cfg(test)]
mod tests;
