//! Wall-clock time as the acceptance rule sees it: fractional unix seconds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, in unix seconds with sub-second precision (NumericDates are compared exactly).
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// RFC 3339 UTC with milliseconds, as responses and audit records show times.
pub fn rfc3339(unix: f64) -> String {
    let at = UNIX_EPOCH + Duration::from_secs_f64(unix.max(0.0));
    humantime::format_rfc3339_millis(at).to_string()
}

/// `rfc3339` of a time held to the millisecond (a parsed one): rounded to the nearest
/// where `rfc3339` truncates, since `…:58.370Z` is held as 58.36999….
pub fn rfc3339_exact_millis(unix: f64) -> String {
    rfc3339(((unix * 1000.0).round() + 0.5) / 1000.0)
}

/// Unix seconds of an RFC 3339 time (`2026-12-24T18:00:00Z`, fractions and numeric
/// offsets such as `+01:00` allowed, `t` and `z` in either case); `None` for anything
/// else.
pub fn parse_rfc3339(text: &str) -> Option<f64> {
    let text = text.to_ascii_uppercase();
    let (utc, offset_secs) = match text.strip_suffix('Z') {
        Some(local) => (local, 0),
        None => split_offset(&text)?,
    };
    if utc.len() < 19 || utc.as_bytes()[10] != b'T' {
        return None;
    }
    let at = humantime::parse_rfc3339(&format!("{utc}Z")).ok()?;
    let unix = at.duration_since(UNIX_EPOCH).ok()?.as_secs_f64();
    Some(unix - f64::from(offset_secs))
}

/// `("...", seconds east of UTC)` of a time ending in `+HH:MM` or `-HH:MM`.
fn split_offset(text: &str) -> Option<(&str, i32)> {
    let split = text.len().checked_sub(6)?;
    let (local, offset) = (text.get(..split)?, text.get(split..)?.as_bytes());
    let sign = match offset[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digit = |i: usize| {
        offset[i]
            .is_ascii_digit()
            .then(|| i32::from(offset[i] - b'0'))
    };
    let (hours, minutes) = (digit(1)? * 10 + digit(2)?, digit(4)? * 10 + digit(5)?);
    if offset[3] != b':' || hours > 23 || minutes > 59 {
        return None;
    }
    Some((local, sign * (hours * 3600 + minutes * 60)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_parse_with_fractions_and_offsets() {
        let noon = 1_796_212_800.0; // 2026-12-02T12:00:00Z
        assert_eq!(parse_rfc3339("2026-12-02T12:00:00Z"), Some(noon));
        assert_eq!(parse_rfc3339("2026-12-02t12:00:00.250z"), Some(noon + 0.25));
        assert_eq!(parse_rfc3339("2026-12-02T13:30:00+01:30"), Some(noon));
        assert_eq!(parse_rfc3339("2026-12-02T07:00:00-05:00"), Some(noon));
        for bad in [
            "",
            "2026-12-02",
            "2026-12-02 12:00:00Z",
            "2026-12-02T12:00:00",
            "2026-12-02T12:00:00+1:00",
            "2026-12-02T12:00:00+24:00",
            "2026-13-02T12:00:00Z",
            "2026-12-02T12:00:00Z trailing",
            "1796212800",
            "2026-12-02T12:00:00+01:0é",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }
}
