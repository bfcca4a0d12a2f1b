//! Pure refresh policy (SPEC §5.1, §5.4): when a connection is due, how long to back off,
//! how `Retry-After` reads, and which status a failure leads to. No I/O, no clock, no
//! randomness of its own: callers pass `now` and a uniform `unit` in [0, 1), so every
//! rule is a table-driven or property test.

use crate::provider::oauth::CallError;
use crate::vault::records::Status;
use std::time::Duration;

/// Base of exponential backoff.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Cap of one backoff step for on-demand refreshes (`get`).
pub const ON_DEMAND_CAP: Duration = Duration::from_secs(30);
/// Cap of one backoff step in the scheduler.
pub const SCHEDULER_CAP: Duration = Duration::from_secs(900);
/// Wait after a 429 without a usable `Retry-After`.
pub const DEFAULT_RETRY_AFTER: u64 = 60;
/// Longest `Retry-After` honoured; more is treated as this (a day).
pub const MAX_RETRY_AFTER: u64 = 86_400;
/// A forced refresh of one connection at most this often.
pub const FORCE_INTERVAL_SECS: i64 = 10;
/// Warn this long before a refresh token expires.
pub const REFRESH_EXPIRY_WARNING_SECS: i64 = 7 * 86_400;

/// The refresh buffer for a token of `lifetime` seconds: the provider's buffer, capped at
/// half the lifetime.
pub fn effective_buffer(buffer_secs: u64, lifetime: i64) -> i64 {
    (buffer_secs.min(i64::MAX as u64) as i64).min(lifetime.max(0) / 2)
}

/// When a token expiring at `expires_at` (issued at `now`) should be refreshed:
/// `expires_at − buffer − jitter`, jitter up to 10 % of the buffer, never before `now`.
pub fn due_at(now: i64, expires_at: i64, buffer_secs: u64, unit: f64) -> i64 {
    let b = effective_buffer(buffer_secs, expires_at - now);
    let jitter = (unit.clamp(0.0, 1.0) * 0.1 * b as f64).floor() as i64;
    (expires_at - b - jitter).max(now)
}

/// Full-jitter exponential backoff: uniform in [0, min(cap, base · 2^(attempt−1))].
/// `attempt` counts from 1.
pub fn backoff(attempt: u32, base: Duration, cap: Duration, unit: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let ceiling = base.saturating_mul(1u32 << exp).min(cap);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

/// `Retry-After`: delay-seconds or an HTTP date (RFC 9110 §10.2.3), as seconds from
/// `now`, at most a day. Unparseable → `None` (the caller uses 60 s).
pub fn parse_retry_after(value: &str, now: i64) -> Option<u64> {
    let v = value.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(s.min(MAX_RETRY_AFTER));
    }
    let t = httpdate::parse_http_date(v).ok()?;
    let at = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64;
    Some((at - now).clamp(0, MAX_RETRY_AFTER as i64) as u64)
}

/// What a failed refresh does to the connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub status: Status,
    pub reason: String,
    pub attempts: u32,
    /// When to try again; `None` = never by itself (needs a person).
    pub retry_at: Option<i64>,
    /// Whether another attempt is worthwhile at all.
    pub retryable: bool,
}

/// The status after `err`, for a connection whose token expires at `expires_at` and which
/// had failed `attempts` times before. `cap` is the backoff cap of the caller.
pub fn after_failure(
    err: &CallError,
    now: i64,
    expires_at: Option<i64>,
    attempts: u32,
    cap: Duration,
    unit: f64,
) -> Transition {
    let still_valid = expires_at.is_none_or(|e| e > now);
    let waiting = if still_valid {
        Status::Retrying
    } else {
        Status::TokenExpired
    };
    match err {
        CallError::InvalidGrant(_) | CallError::ExpiredToken | CallError::AccessDenied => {
            Transition {
                status: Status::NeedsReauth,
                reason: err.reason(),
                attempts: attempts + 1,
                retry_at: None,
                retryable: false,
            }
        }
        CallError::Config(_) => Transition {
            status: Status::Error,
            reason: err.reason(),
            attempts: attempts + 1,
            retry_at: None,
            retryable: false,
        },
        CallError::RateLimited { retry_after } => Transition {
            status: waiting,
            reason: err.reason(),
            // a 429 is the provider pacing us, not a failure of ours
            attempts,
            retry_at: Some(now + retry_after.unwrap_or(DEFAULT_RETRY_AFTER) as i64),
            retryable: true,
        },
        CallError::Transient(_) | CallError::AuthorizationPending | CallError::SlowDown => {
            let n = attempts + 1;
            let wait = backoff(n, BACKOFF_BASE, cap, unit);
            Transition {
                status: waiting,
                reason: err.reason(),
                attempts: n,
                // whole seconds, at least one, so a zero jitter does not spin
                retry_at: Some(now + (wait.as_secs() as i64).max(1)),
                retryable: true,
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn due_time_table() {
        // (now, expires_at, buffer, unit) -> due
        let cases = [
            (0, 3600, 300, 0.0, 3300),   // 1 h token, 5 min buffer
            (0, 3600, 300, 0.999, 3271), // + up to 10 % jitter
            (0, 300, 300, 0.0, 150),     // buffer capped at half the lifetime
            (0, 60, 300, 0.0, 30),       // short token
            (100, 50, 300, 0.5, 100),    // already expired: due now
            (0, 86_400, 0, 0.7, 86_400), // zero buffer
        ];
        for (now, exp, buf, unit, want) in cases {
            assert_eq!(
                due_at(now, exp, buf, unit),
                want,
                "{now} {exp} {buf} {unit}"
            );
        }
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("120", 0), Some(120));
        assert_eq!(parse_retry_after(" 0 ", 0), Some(0));
        assert_eq!(parse_retry_after("999999999", 0), Some(MAX_RETRY_AFTER));
        // Sun, 06 Nov 1994 08:49:37 GMT = 784111777
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_777 - 30),
            Some(30)
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_777 + 30),
            Some(0)
        );
        assert_eq!(parse_retry_after("soon", 0), None);
        assert_eq!(parse_retry_after("-5", 0), None);
    }

    #[test]
    fn failures_map_to_statuses() {
        let cap = SCHEDULER_CAP;
        let t = after_failure(
            &CallError::InvalidGrant("x".into()),
            10,
            Some(100),
            0,
            cap,
            0.5,
        );
        assert_eq!(
            (t.status, t.attempts, t.retry_at),
            (Status::NeedsReauth, 1, None)
        );
        let t = after_failure(&CallError::Config("x".into()), 10, Some(100), 2, cap, 0.5);
        assert_eq!((t.status, t.attempts, t.retry_at), (Status::Error, 3, None));
        let t = after_failure(
            &CallError::RateLimited {
                retry_after: Some(20),
            },
            10,
            Some(100),
            2,
            cap,
            0.5,
        );
        assert_eq!(
            (t.status, t.attempts, t.retry_at),
            (Status::Retrying, 2, Some(30))
        );
        let t = after_failure(
            &CallError::RateLimited { retry_after: None },
            10,
            None,
            0,
            cap,
            0.5,
        );
        assert_eq!(t.retry_at, Some(70));
        let t = after_failure(
            &CallError::Transient("x".into()),
            10,
            Some(100),
            0,
            cap,
            0.0,
        );
        assert_eq!(
            (t.status, t.attempts, t.retry_at),
            (Status::Retrying, 1, Some(11))
        );
        let t = after_failure(
            &CallError::Transient("x".into()),
            200,
            Some(100),
            4,
            cap,
            0.99,
        );
        assert_eq!((t.status, t.attempts), (Status::TokenExpired, 5));
        assert!(t.retry_at.unwrap() <= 200 + 16);
    }

    proptest! {
        #[test]
        fn due_is_within_buffer_and_jitter(now in 0i64..1_000_000, life in 0i64..10_000_000,
                                           buf in 0u64..100_000, unit in 0.0f64..1.0) {
            let exp = now + life;
            let d = due_at(now, exp, buf, unit);
            let b = effective_buffer(buf, life);
            prop_assert!(d >= now && d <= exp);
            prop_assert!(d <= exp - b);
            prop_assert!(d >= exp - b - (b / 10) - 1);
            // at least half the lifetime is used
            prop_assert!(d - now >= life / 2 - b / 10 - 1);
        }

        #[test]
        fn backoff_is_bounded(attempt in 1u32..100, unit in 0.0f64..1.0) {
            let d = backoff(attempt, BACKOFF_BASE, ON_DEMAND_CAP, unit);
            prop_assert!(d <= ON_DEMAND_CAP);
            let ceiling = BACKOFF_BASE.saturating_mul(1u32 << (attempt - 1).min(30));
            prop_assert!(d <= ceiling);
        }

        #[test]
        fn retry_after_never_exceeds_a_day(v in "\\PC{0,40}", now in 0i64..2_000_000_000) {
            if let Some(s) = parse_retry_after(&v, now) {
                prop_assert!(s <= MAX_RETRY_AFTER);
            }
        }
    }
}
