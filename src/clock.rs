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
