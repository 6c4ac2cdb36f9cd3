//! Time as the state machine sees it: integer Unix milliseconds, always an input.
//!
//! Nothing in the core reads a clock. Every command is applied with the time the server
//! journaled for it, so replay, a replica and the simulator apply it at the same instant.
//! Every time a client may send (shift bounds, pings) must lie in [`MIN_TIME_MS`,
//! [`MAX_TIME_MS`]): a value outside it is refused (or, for a ping, skipped) before anything
//! changes, so nothing is stored that a later read could not return as a
//! `google.protobuf.Timestamp`.

use crate::error::{CoreError, CoreResult};

/// 2000-01-01T00:00:00Z: no dispatch record predates it; an earlier time is a broken clock.
pub const MIN_TIME_MS: i64 = 946_684_800_000;
/// 2100-01-01T00:00:00Z (exclusive): far beyond any shift, and far inside what every
/// Timestamp and datetime library can represent.
pub const MAX_TIME_MS: i64 = 4_102_444_800_000;

/// How far into the future a ping may be dated, by default: AVL boxes synchronise by GPS,
/// but a few seconds of skew between the box, the feed and the server is normal.
pub const DEFAULT_MAX_FUTURE_SKEW_MS: i64 = 30_000;

/// Whether `time_ms` lies in the valid range.
#[inline]
pub fn in_range(time_ms: i64) -> bool {
    (MIN_TIME_MS..MAX_TIME_MS).contains(&time_ms)
}

/// Refuses a time outside the valid range, naming `field`.
pub fn check(field: &str, time_ms: i64) -> CoreResult<()> {
    if in_range(time_ms) {
        Ok(())
    } else {
        Err(CoreError::invalid(
            field,
            format!("{time_ms} ms is outside the valid range [2000-01-01T00:00:00Z, 2100-01-01T00:00:00Z)"),
        ))
    }
}

/// The (seconds, nanos) of a `google.protobuf.Timestamp` for `time_ms`, rounding down as
/// Python's `Timestamp.FromMilliseconds` does.
#[inline]
pub fn to_seconds_nanos(time_ms: i64) -> (i64, i32) {
    (time_ms.div_euclid(1000), (time_ms.rem_euclid(1000) * 1_000_000) as i32)
}

/// Unix ms of a `google.protobuf.Timestamp`, rounding down; `None` when it cannot be one.
pub fn from_seconds_nanos(seconds: i64, nanos: i32) -> Option<i64> {
    if !(0..1_000_000_000).contains(&nanos) {
        return None;
    }
    seconds.checked_mul(1000)?.checked_add(i64::from(nanos / 1_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_bounds() {
        assert!(in_range(MIN_TIME_MS));
        assert!(!in_range(MIN_TIME_MS - 1));
        assert!(!in_range(MAX_TIME_MS));
        assert!(check("t", i64::MAX).unwrap_err().to_string().starts_with("t:"));
    }

    #[test]
    fn timestamp_round_trip_rounds_down() {
        assert_eq!(to_seconds_nanos(-1), (-1, 999_000_000));
        assert_eq!(from_seconds_nanos(-1, 999_000_000), Some(-1));
        assert_eq!(from_seconds_nanos(1, 1_500_000), Some(1001));
        assert_eq!(from_seconds_nanos(i64::MAX, 0), None);
    }
}
