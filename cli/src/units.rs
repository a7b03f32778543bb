//! Sizes, durations and times as the docker CLI prints and parses them (the rules
//! of Go's `docker/go-units`), so tables read the same as docker's.

use std::time::{SystemTime, UNIX_EPOCH};

const DECIMAL: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
const BINARY: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];

/// Go's `%.{precision}g`: shortest of fixed and exponent form, trailing zeros cut.
pub fn format_g(v: f64, precision: usize) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if !v.is_finite() {
        return v.to_string();
    }
    let precision = precision.max(1);
    // The exponent after rounding to `precision` significant digits.
    let sci = format!("{:.*e}", precision - 1, v);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= precision as i32 {
        let m = trim_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{m}e{sign}{:02}", exp.abs())
    } else {
        let decimals = (precision as i32 - 1 - exp).max(0) as usize;
        trim_zeros(&format!("{v:.decimals$}")).to_string()
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

fn scaled(size: f64, base: f64, units: &[&'static str]) -> (f64, &'static str) {
    let mut size = size;
    let mut i = 0;
    while size >= base && i < units.len() - 1 {
        size /= base;
        i += 1;
    }
    (size, units[i])
}

/// `units.HumanSizeWithPrecision(size, 3)`: decimal units, `4.27MB`.
pub fn human_size(size: f64) -> String {
    let (v, unit) = scaled(size, 1000.0, &DECIMAL);
    format!("{}{unit}", format_g(v, 3))
}

/// `units.HumanSize` (precision 4): what docker prints for `system df`, prune
/// reports, `cp` and progress bars, `2.136MB`.
pub fn human_size4(size: f64) -> String {
    let (v, unit) = scaled(size, 1000.0, &DECIMAL);
    format!("{}{unit}", format_g(v, 4))
}

/// `units.BytesSize`: binary units with 4 significant digits, `1.953MiB`.
pub fn bytes_size(size: f64) -> String {
    let (v, unit) = scaled(size, 1024.0, &BINARY);
    format!("{}{unit}", format_g(v, 4))
}

/// `units.HumanDuration`: "Less than a second", "About a minute", "3 hours", ...
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let minutes = s / 60;
    // Go rounds hours to the nearest (d.Hours() + 0.5).
    let hours = (s as f64 / 3600.0 + 0.5) as i64;
    match () {
        _ if s < 1 => "Less than a second".into(),
        _ if s == 1 => "1 second".into(),
        _ if s < 60 => format!("{s} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", s / 3600 / 24 / 365),
    }
}

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// "3 minutes ago" for a unix time.
pub fn ago(unix: i64) -> String {
    format!("{} ago", human_duration(now_unix() - unix))
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = (z - era * 146_097) as u64;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe as i64 + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = (y - era * 400) as u64;
    let m = m as u64;
    let doy = (153 * if m > 2 { m - 3 } else { m + 9 } + 2) / 5 + d as u64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe as i64 - 719_468
}

fn split_unix(unix: i64) -> (i64, u32, u32, i64, i64, i64) {
    let days = unix.div_euclid(86_400);
    let rem = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Go's `time.Unix(t).String()` in UTC: `2026-11-23 18:45:36 +0000 UTC`.
pub fn go_time_string(unix: i64) -> String {
    let (y, m, d, hh, mm, ss) = split_unix(unix);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02} +0000 UTC")
}

/// RFC 3339 with nanoseconds, UTC, as the daemon's event stream times print.
pub fn rfc3339_nanos(nanos: i128) -> String {
    let secs = nanos.div_euclid(1_000_000_000) as i64;
    let frac = nanos.rem_euclid(1_000_000_000);
    let (y, m, d, hh, mm, ss) = split_unix(secs);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{frac:09}Z")
}

/// Seconds since the epoch of an RFC 3339 time (`2026-11-23T18:45:36.468Z`,
/// offsets allowed), as engined writes `Created` and `StartedAt`.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    if let Some(r) = rest.strip_prefix('.') {
        rest = r.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match rest {
        "Z" | "z" | "" => 0,
        o if o.len() == 6 => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o.get(1..3)?.parse::<i64>().ok()? * 3600
                + o.get(4..6)?.parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    Some(days * 86_400 + h * 3600 + mi * 60 + se - offset)
}

/// `units.RAMInBytes`: `64m`, `1.5g`, `512k`, `100` (bytes), case-insensitive, an
/// optional trailing `b`/`ib`.
pub fn parse_ram(s: &str) -> Option<i64> {
    let t = s.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num.parse().ok()?;
    let unit = unit.trim();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(unit);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return None,
    };
    if v < 0.0 {
        return None;
    }
    Some((v * mult) as i64)
}

/// Docker's `--since`/`--until` values: a unix time (`1700000000[.5]`), an
/// RFC 3339 time, or a duration before now (`10m`, `1h30m`, `45s`); returns the
/// query value the API takes (`seconds[.nanos]`).
pub fn parse_timestamp(s: &str) -> Option<String> {
    if s.is_empty() {
        return None;
    }
    if s.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Some(s.to_string());
    }
    if let Some(t) = parse_rfc3339(s) {
        return Some(t.to_string());
    }
    let d = parse_duration(s)?;
    Some((now_unix() - d).to_string())
}

/// A Go duration such as `1h30m`, `10s`, `2m` in whole seconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            unit.push('s');
            chars.next();
        }
        let v: f64 = num.parse().ok()?;
        num.clear();
        total += v * match unit.as_str() {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
        any = true;
    }
    if !num.is_empty() {
        return None;
    }
    any.then_some(total as i64)
}

/// The first 12 hex digits of an id, without its `sha256:` prefix.
pub fn short_id(id: &str) -> String {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    id.chars().take(12).collect()
}

/// docker's `Ellipsis`: at most `max` characters, the last one `…` when cut.
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_go_units() {
        assert_eq!(human_size(0.0), "0B");
        assert_eq!(human_size(216.0), "216B");
        assert_eq!(human_size(4_264_960.0), "4.26MB");
        assert_eq!(human_size4(2_136_064.0), "2.136MB");
        assert_eq!(human_size4(2048.0), "2.048kB");
        assert_eq!(human_size(1_500_000.0), "1.5MB");
        assert_eq!(human_size(999_900.0), "1e+03kB");
        assert_eq!(human_size(1000.0), "1kB");
        assert_eq!(bytes_size(2_048_000.0), "1.953MiB");
        assert_eq!(bytes_size(67_108_864.0), "64MiB");
        assert_eq!(format_g(0.000012345, 3), "1.23e-05");
    }

    #[test]
    fn durations_match_go_units() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(59), "59 seconds");
        assert_eq!(human_duration(60), "About a minute");
        assert_eq!(human_duration(150), "2 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(5 * 3600), "5 hours");
        assert_eq!(human_duration(3 * 86_400), "3 days");
        assert_eq!(human_duration(20 * 86_400), "2 weeks");
        assert_eq!(human_duration(90 * 86_400), "3 months");
        assert_eq!(human_duration(3 * 365 * 86_400), "3 years");
    }

    #[test]
    fn times_round_trip() {
        let t = parse_rfc3339("2026-11-23T18:45:36.468073951Z").unwrap();
        assert_eq!(go_time_string(t), "2026-11-23 18:45:36 +0000 UTC");
        assert_eq!(parse_rfc3339("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(
            rfc3339_nanos(1_500_000_000),
            "1970-01-01T00:00:01.500000000Z"
        );
        assert_eq!(parse_rfc3339("0001-01-01T00:00:00Z"), Some(-62_135_596_800));
    }

    #[test]
    fn ram_and_durations_parse() {
        assert_eq!(parse_ram("64m"), Some(64 << 20));
        assert_eq!(parse_ram("1.5G"), Some(3 << 29));
        assert_eq!(parse_ram("512kb"), Some(512 << 10));
        assert_eq!(parse_ram("100"), Some(100));
        assert_eq!(parse_ram("12x"), None);
        assert_eq!(parse_duration("1h30m"), Some(5400));
        assert_eq!(parse_duration("10s"), Some(10));
        assert_eq!(parse_duration("10"), None);
    }

    #[test]
    fn ids_and_ellipsis() {
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(
            ellipsis("sh -c 'while true; do date; done'", 20),
            "sh -c 'while true; …"
        );
        assert_eq!(ellipsis("echo hi", 20), "echo hi");
    }
}
