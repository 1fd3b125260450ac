//! `strftime` over UTC for `strftime_now`, without a date-time dependency.
//!
//! The civil date comes from the UNIX time with Howard Hinnant's `civil_from_days`. Directives follow
//! C/glibc `strftime` in the C locale (what Python's `datetime.strftime` calls): `%a %A %b %B %c %C %d
//! %D %e %F %g %G %h %H %I %j %m %M %n %p %r %R %S %t %T %u %V %w %x %X %y %Y %z %Z %%`, plus glibc's
//! `-` flag (`%-d`) that drops padding. Unknown directives are copied through unchanged, as glibc does.

const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// A broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Civil {
    pub year: i64,
    /// 1..=12
    pub month: u32,
    /// 1..=31
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// 0 = Sunday
    pub weekday: u32,
    /// 1..=366
    pub yday: u32,
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

impl Civil {
    /// Breaks down `unix` seconds (UTC). Times are clamped to years -9999..=9999 worth of seconds
    /// so that hostile inputs cannot overflow.
    pub(crate) fn from_unix(unix: i64) -> Self {
        const LIMIT: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
        let unix = unix.clamp(-LIMIT - 62_167_219_200, LIMIT);
        let days = unix.div_euclid(86_400);
        let secs = unix.rem_euclid(86_400).unsigned_abs() as u32;
        let (year, month, day) = hearth_time::civil_from_days(days);
        let weekday = (days + 4).rem_euclid(7).unsigned_abs() as u32; // 1970-01-01 was a Thursday
        const CUM: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let leap = u32::from(month > 2 && is_leap(year));
        let yday = CUM[(month - 1) as usize] + day + leap;
        Civil {
            year,
            month,
            day,
            hour: secs / 3600,
            minute: secs / 60 % 60,
            second: secs % 60,
            weekday,
            yday,
        }
    }

    /// ISO 8601 week-based year and week number.
    fn iso_week(&self) -> (i64, u32) {
        // A year has 53 ISO weeks when its Jan 1 is a Thursday, or a Wednesday in a leap year.
        let weeks_in = |year: i64, jan1_weekday: i64| -> i64 {
            if jan1_weekday == 4 || (jan1_weekday == 3 && is_leap(year)) {
                53
            } else {
                52
            }
        };
        let weekday = i64::from(self.weekday);
        let yday0 = i64::from(self.yday) - 1;
        let monday0 = (weekday + 6) % 7;
        let week = (yday0 - monday0 + 10) / 7;
        let jan1 = (weekday - yday0).rem_euclid(7);
        if week < 1 {
            let prev = self.year - 1;
            let prev_len = if is_leap(prev) { 366 } else { 365 };
            let jan1_prev = (jan1 - prev_len).rem_euclid(7);
            (prev, weeks_in(prev, jan1_prev).unsigned_abs() as u32)
        } else if week > weeks_in(self.year, jan1) {
            (self.year + 1, 1)
        } else {
            (self.year, week.unsigned_abs() as u32)
        }
    }
}

fn pad(out: &mut String, n: i64, width: usize, fill: char, no_pad: bool) {
    let s = n.unsigned_abs().to_string();
    if n < 0 {
        out.push('-');
    }
    if !no_pad {
        for _ in s.len()..width {
            out.push(fill);
        }
    }
    out.push_str(&s);
}

/// Formats `t` with a C `strftime` format string.
pub(crate) fn strftime(fmt: &str, t: &Civil) -> String {
    let mut out = String::with_capacity(fmt.len() + 16);
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = chars.next();
        let no_pad = spec == Some('-');
        if no_pad {
            spec = chars.next();
        }
        let Some(spec) = spec else {
            out.push('%');
            if no_pad {
                out.push('-');
            }
            break;
        };
        directive(&mut out, spec, no_pad, t);
    }
    out
}

fn directive(out: &mut String, spec: char, no_pad: bool, t: &Civil) {
    let day_name = DAYS[t.weekday as usize % 7];
    let month_name = MONTHS[(t.month as usize + 11) % 12];
    let hour12 = match t.hour % 12 {
        0 => 12,
        h => h,
    };
    match spec {
        'a' => out.push_str(&day_name[..3]),
        'A' => out.push_str(day_name),
        'b' | 'h' => out.push_str(&month_name[..3]),
        'B' => out.push_str(month_name),
        'c' => {
            directive(out, 'a', false, t);
            out.push(' ');
            directive(out, 'b', false, t);
            out.push(' ');
            directive(out, 'e', false, t);
            out.push(' ');
            directive(out, 'T', false, t);
            out.push(' ');
            directive(out, 'Y', false, t);
        }
        'C' => pad(out, t.year.div_euclid(100), 2, '0', no_pad),
        'd' => pad(out, i64::from(t.day), 2, '0', no_pad),
        'D' | 'x' => {
            directive(out, 'm', false, t);
            out.push('/');
            directive(out, 'd', false, t);
            out.push('/');
            directive(out, 'y', false, t);
        }
        'e' => pad(out, i64::from(t.day), 2, ' ', no_pad),
        'F' => {
            pad(out, t.year, 4, '0', false);
            out.push('-');
            directive(out, 'm', false, t);
            out.push('-');
            directive(out, 'd', false, t);
        }
        'g' => pad(out, t.iso_week().0.rem_euclid(100), 2, '0', no_pad),
        'G' => pad(out, t.iso_week().0, 4, '0', no_pad),
        'H' => pad(out, i64::from(t.hour), 2, '0', no_pad),
        'I' => pad(out, i64::from(hour12), 2, '0', no_pad),
        'j' => pad(out, i64::from(t.yday), 3, '0', no_pad),
        'm' => pad(out, i64::from(t.month), 2, '0', no_pad),
        'M' => pad(out, i64::from(t.minute), 2, '0', no_pad),
        'n' => out.push('\n'),
        'p' => out.push_str(if t.hour < 12 { "AM" } else { "PM" }),
        'r' => {
            directive(out, 'I', false, t);
            out.push(':');
            directive(out, 'M', false, t);
            out.push(':');
            directive(out, 'S', false, t);
            out.push(' ');
            directive(out, 'p', false, t);
        }
        'R' => {
            directive(out, 'H', false, t);
            out.push(':');
            directive(out, 'M', false, t);
        }
        'S' => pad(out, i64::from(t.second), 2, '0', no_pad),
        't' => out.push('\t'),
        'T' | 'X' => {
            directive(out, 'H', false, t);
            out.push(':');
            directive(out, 'M', false, t);
            out.push(':');
            directive(out, 'S', false, t);
        }
        'u' => pad(out, i64::from((t.weekday + 6) % 7 + 1), 1, '0', no_pad),
        'V' => pad(out, i64::from(t.iso_week().1), 2, '0', no_pad),
        'w' => pad(out, i64::from(t.weekday), 1, '0', no_pad),
        'y' => pad(out, t.year.rem_euclid(100), 2, '0', no_pad),
        'Y' => pad(out, t.year, 1, '0', no_pad),
        'z' => out.push_str("+0000"),
        'Z' => out.push_str("UTC"),
        '%' => out.push('%'),
        other => {
            out.push('%');
            if no_pad {
                out.push('-');
            }
            out.push(other);
        }
    }
}
