//! Sizes and durations as Docker prints them (`github.com/docker/go-units`): decimal units with
//! a few significant digits (`4.26MB`), and coarse relative times (`About an hour`).

use std::time::Duration;

const DECIMAL_UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];

/// go-units `HumanSize`: four significant digits (`system df`).
pub fn size(bytes: u64) -> String {
    size_with_precision(bytes, 4)
}

/// go-units `HumanSizeWithPrecision`: `images` and `history` use three digits.
pub fn size_with_precision(bytes: u64, precision: usize) -> String {
    // Sizes are shown to a few digits, so the f64 rounding of huge values is irrelevant.
    #[allow(clippy::cast_precision_loss)]
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < DECIMAL_UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    let suffix = DECIMAL_UNITS.get(unit).copied().unwrap_or("B");
    format!("{}{suffix}", format_g(value, precision))
}

/// Go's `%.<precision>g` for a non-negative finite value: shortest of fixed and exponent
/// notation for that many significant digits, trailing zeros removed.
pub fn format_g(value: f64, precision: usize) -> String {
    let precision = precision.max(1);
    if value == 0.0 {
        return "0".to_string();
    }
    // Rounds to `precision` significant digits and tells the decimal exponent after rounding.
    let sci = format!("{:.*e}", precision - 1, value);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let precision_i = i64::try_from(precision).unwrap_or(i64::MAX);
    if exp < -4 || exp >= precision_i {
        let mantissa = trim_fraction(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.unsigned_abs());
    }
    let decimals = usize::try_from(precision_i - 1 - exp).unwrap_or(0);
    trim_fraction(&format!("{value:.decimals$}")).to_string()
}

fn trim_fraction(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// go-units `HumanDuration`.
pub fn duration(d: Duration) -> String {
    let seconds = d.as_secs();
    if seconds < 1 {
        return "Less than a second".to_string();
    }
    if seconds == 1 {
        return "1 second".to_string();
    }
    if seconds < 60 {
        return format!("{seconds} seconds");
    }
    let minutes = seconds / 60;
    if minutes == 1 {
        return "About a minute".to_string();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    // Go rounds hours to the nearest (`int(d.Hours() + 0.5)`), but years from whole hours.
    let hours = (seconds + 1800) / 3600;
    if hours == 1 {
        return "About an hour".to_string();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", seconds / 3600 / 24 / 365)
}

/// `CreatedSince`: how long before `now` a thing was made, `N/A` when unknown.
pub fn since(then: Option<jiff::Timestamp>, now: jiff::Timestamp) -> String {
    match then {
        None => "N/A".to_string(),
        Some(t) => {
            let secs = now.as_second().saturating_sub(t.as_second());
            let d = Duration::from_secs(u64::try_from(secs).unwrap_or(0));
            format!("{} ago", duration(d))
        }
    }
}

/// `CreatedAt` as Docker shows it in listings (Go's `time.Time.String()` in UTC).
pub fn created_at(t: Option<jiff::Timestamp>) -> String {
    match t {
        None => "N/A".to_string(),
        Some(t) => t.strftime("%Y-%m-%d %H:%M:%S +0000 UTC").to_string(),
    }
}

/// RFC 3339 in UTC, seconds precision (`history -H=false`).
pub fn rfc3339(t: Option<jiff::Timestamp>) -> String {
    match t {
        None => "N/A".to_string(),
        Some(t) => t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    }
}

/// Docker's `stringid.TruncateID`: the hex of a digest cut to 12 characters.
pub fn short_id(id: &str) -> String {
    let hex = id.split_once(':').map_or(id, |(_, h)| h);
    hex.chars().take(12).collect()
}

/// Docker's `stringutils.Ellipsis`: at most `max` characters, the last one `…` when cut.
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_go_units() {
        let cases: &[(u64, usize, &str)] = &[
            (0, 4, "0B"),
            (1, 4, "1B"),
            (999, 4, "999B"),
            (1000, 4, "1kB"),
            (1024, 4, "1.024kB"),
            (745_000, 3, "745kB"),
            (4_261_456, 3, "4.26MB"),
            (4_261_456, 4, "4.261MB"),
            (1_200_000_000, 3, "1.2GB"),
            (77_800_000, 3, "77.8MB"),
            (999_999, 3, "1e+03kB"),
            (999_999, 4, "1000kB"),
            (123_456_789, 4, "123.5MB"),
            (16_430_000, 4, "16.43MB"),
            (u64::MAX, 4, "18.45EB"),
        ];
        for &(bytes, precision, want) in cases {
            assert_eq!(
                size_with_precision(bytes, precision),
                want,
                "{bytes} bytes at precision {precision}"
            );
        }
        assert_eq!(size(2_000_000), "2MB");
    }

    #[test]
    fn percent_g_formatting() {
        assert_eq!(format_g(0.00001234, 3), "1.23e-05");
        assert_eq!(format_g(12345.0, 3), "1.23e+04");
        assert_eq!(format_g(100.0, 3), "100");
        assert_eq!(format_g(0.5, 3), "0.5");
    }

    #[test]
    fn durations_match_go_units() {
        let cases: &[(u64, &str)] = &[
            (0, "Less than a second"),
            (1, "1 second"),
            (59, "59 seconds"),
            (60, "About a minute"),
            (119, "About a minute"),
            (120, "2 minutes"),
            (59 * 60, "59 minutes"),
            (60 * 60, "About an hour"),
            (89 * 60, "About an hour"),
            (90 * 60, "2 hours"),
            (47 * 3600, "47 hours"),
            (48 * 3600, "2 days"),
            (13 * 86400, "13 days"),
            (14 * 86400, "2 weeks"),
            (59 * 86400, "8 weeks"),
            (60 * 86400, "2 months"),
            (729 * 86400, "24 months"),
            (730 * 86400, "2 years"),
            (3 * 365 * 86400 + 5, "3 years"),
        ];
        for &(secs, want) in cases {
            assert_eq!(duration(Duration::from_secs(secs)), want, "{secs}s");
        }
    }

    #[test]
    fn since_and_timestamps() {
        let now: jiff::Timestamp = "2024-06-15T12:00:00Z".parse().unwrap();
        let then: jiff::Timestamp = "2024-06-01T12:00:00Z".parse().unwrap();
        assert_eq!(since(Some(then), now), "2 weeks ago");
        assert_eq!(since(None, now), "N/A");
        // A clock skewed into the future is not a negative age.
        assert_eq!(since(Some(now), then), "Less than a second ago");
        assert_eq!(created_at(Some(then)), "2024-06-01 12:00:00 +0000 UTC");
        assert_eq!(rfc3339(Some(then)), "2024-06-01T12:00:00Z");
    }

    #[test]
    fn ids_and_ellipsis() {
        let id = format!("sha256:{}", "0123456789abcdef".repeat(4));
        assert_eq!(short_id(&id), "0123456789ab");
        assert_eq!(short_id("abc"), "abc");
        assert_eq!(ellipsis("short", 45), "short");
        let long = "x".repeat(50);
        let cut = ellipsis(&long, 45);
        assert_eq!(cut.chars().count(), 45);
        assert!(cut.ends_with('…'));
    }
}
