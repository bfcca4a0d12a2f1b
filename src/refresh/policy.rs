//! Pure refresh policy (SPEC §5.1, §5.4): when a connection is due, how long to back off,
//! how `Retry-After` reads, which status a failure leads to, and how often one connection
//! may call its provider at all (`Pace`). No I/O, no clock, no randomness of its own:
//! callers pass `now` and a uniform `unit` in [0, 1), so every rule is a table-driven or
//! property test.
//!
//! # How many provider calls one connection can cost (issue 14)
//!
//! Whatever a provider answers (429 with any `Retry-After`, 5xx, timeouts, garbage,
//! success with a zero lifetime), every provider call of a connection is admitted by its
//! `Pace` first, in whichever path it starts (`get`, `refresh`, the scheduler, a
//! `--due`/`--tenant` pass):
//!
//! - **Floor.** Two calls of one connection are at least `MIN_WAIT_SECS` (1 s) apart, and
//!   every wait the policy computes is at least that: a `Retry-After` of 0, negative or in
//!   the past, and a full-jitter backoff that drew 0, all count as 1 s.
//! - **Budget.** A generic cell-rate (token bucket) limit: `CALL_BURST` (3) calls back to
//!   back, then one per `CALL_INTERVAL_SECS` (20 s). In any window of `W` seconds a
//!   connection makes at most `1 + (W + (CALL_BURST − 1) · CALL_INTERVAL_SECS) /
//!   CALL_INTERVAL_SECS` calls: for a minute, 1 + (60 + 40) / 20 = **6**
//!   (`MAX_CALLS_PER_MINUTE`). Proof: call k is admitted only at or after `tat − 40`
//!   where `tat` (the theoretical arrival time) grows by 20 s per call, so n calls span
//!   at least (n − 1) · 20 − 40 s.
//! - **On demand.** `get` and `refresh CONNECTION` make at most `ON_DEMAND_CALLS` (3)
//!   calls and stop at `ON_DEMAND_DEADLINE` (30 s) however the provider answers; a
//!   `Retry-After` (or a wait of the budget) reaching past the deadline ends the attempt
//!   at once with `provider_unavailable` (exit 7) naming the time of the next attempt,
//!   which the scheduler then makes (not before the deadline has passed).
//! - **Forced refreshes** (`--force-refresh`, `refresh CONNECTION`) are admitted at most
//!   once per `FORCE_INTERVAL_SECS` (10 s) per connection before any call is made, so the
//!   limit holds whatever the answer was; and they spend the same budget.
//!
//! The budget lives in the memory of the process that calls (the daemon, or one CLI run
//! without a daemon). A process that has not called for a connection yet seeds it from
//! the vault (`Pace::seeded`: the last refresh, the stored retry time of a failing
//! connection, assuming the budget was spent then), so a chain of separate CLI runs
//! waits for the stored retry time too; it cannot know calls the vault never recorded.
//! Times are whole seconds of the engine's clock.

use crate::provider::oauth::CallError;
use crate::vault::records::{ConnectionRecord, Status};
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
pub const MAX_RETRY_AFTER: u64 = crate::provider::retry_after::MAX_SECS;
/// A forced refresh of one connection at most this often.
pub const FORCE_INTERVAL_SECS: i64 = 10;
/// Warn this long before a refresh token expires.
pub const REFRESH_EXPIRY_WARNING_SECS: i64 = 7 * 86_400;

/// Floor of every wait between two provider calls of one connection (a `Retry-After` of
/// 0, negative or in the past; a backoff that drew 0).
pub const MIN_WAIT_SECS: i64 = 1;
// a provider's Retry-After is read with the same floor
const _: () = assert!(crate::provider::retry_after::MIN_SECS as i64 == MIN_WAIT_SECS);
/// An on-demand refresh (`get`, `refresh CONNECTION`) gives up after this long in all,
/// waits and calls included.
pub const ON_DEMAND_DEADLINE: Duration = Duration::from_secs(30);
/// Most provider calls one on-demand refresh makes, whatever the answers (429s included).
pub const ON_DEMAND_CALLS: u32 = 3;
/// Sustained rate of provider calls for one connection: one per this many seconds.
pub const CALL_INTERVAL_SECS: i64 = 20;
/// Calls one connection may make back to back before the sustained rate applies.
pub const CALL_BURST: i64 = 3;
/// How far ahead of the sustained rate a burst may run (GCRA's tolerance).
const CALL_TOLERANCE_SECS: i64 = (CALL_BURST - 1) * CALL_INTERVAL_SECS;
/// The window of the bound below.
pub const WINDOW_SECS: i64 = 60;
/// The bound: at most this many provider calls for one connection in any `WINDOW_SECS`
/// window, whatever the provider answers (see the module header for the derivation).
pub const MAX_CALLS_PER_MINUTE: i64 = 1 + (WINDOW_SECS + CALL_TOLERANCE_SECS) / CALL_INTERVAL_SECS;
const _: () = assert!(MAX_CALLS_PER_MINUTE == 6);

/// "Long ago": far enough in the past to admit a call, far enough from `i64::MIN` that
/// adding the constants above cannot overflow.
const LONG_AGO: i64 = i64::MIN / 4;

/// One connection's provider-call budget: a generic cell-rate algorithm (a token bucket
/// kept as one time, `tat`) plus the earliest time the last answer allows (`not_before`:
/// `Retry-After`, backoff, the floor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// Theoretical arrival time: when the bucket would be full again.
    tat: i64,
    not_before: i64,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            tat: LONG_AGO,
            not_before: LONG_AGO,
        }
    }
}

impl Pace {
    /// What a process that has not called for this connection yet assumes, from the vault:
    /// a call at the last refresh (or at the last recorded failure) and, for a failing
    /// connection, that the budget is spent at its stored retry time, so a new process
    /// cannot call more often than the one before it would have.
    pub fn seeded(rec: &ConnectionRecord) -> Pace {
        Pace::seeded_from(rec.status, rec.due_at, rec.last_refresh_at, rec.updated_at)
    }

    /// `seeded` from the record's fields.
    pub fn seeded_from(
        status: Status,
        due_at: Option<i64>,
        last_refresh_at: Option<i64>,
        updated_at: i64,
    ) -> Pace {
        let mut p = Pace::default();
        let last_call = match status {
            Status::Connected => last_refresh_at,
            Status::Retrying | Status::TokenExpired | Status::Error => Some(updated_at),
            Status::NeedsReauth | Status::Disconnected => None,
        };
        if let Some(at) = last_call {
            let at = at.max(LONG_AGO);
            p.tat = at.saturating_add(CALL_INTERVAL_SECS);
            p.not_before = at.saturating_add(MIN_WAIT_SECS);
        }
        if matches!(status, Status::Retrying | Status::TokenExpired)
            && let Some(due) = due_at
        {
            let due = due.clamp(LONG_AGO, i64::MAX / 4);
            p.not_before = p.not_before.max(due);
            p.tat = p.tat.max(due + CALL_TOLERANCE_SECS);
        }
        p
    }

    /// The earliest time a call may start.
    pub fn next_allowed(&self) -> i64 {
        self.not_before.max(self.tat - CALL_TOLERANCE_SECS)
    }

    /// Admits a call starting at `now` and spends its share of the budget, or says when
    /// the next call may start.
    pub fn try_call(&mut self, now: i64) -> std::result::Result<(), i64> {
        let next = self.next_allowed();
        if now < next {
            return Err(next);
        }
        self.tat = self.tat.max(now) + CALL_INTERVAL_SECS;
        self.not_before = now + MIN_WAIT_SECS;
        Ok(())
    }

    /// Records an answer received at `now` that asks for `wait_secs` before the next call
    /// (0 for a success); the floor applies.
    pub fn answered(&mut self, now: i64, wait_secs: i64) {
        let wait = wait_secs.clamp(MIN_WAIT_SECS, MAX_RETRY_AFTER as i64);
        self.not_before = self.not_before.max(now.saturating_add(wait));
    }

    /// Nothing left to remember at `now`: the bucket is full and no wait is pending.
    pub fn is_idle(&self, now: i64) -> bool {
        self.tat <= now && self.not_before <= now
    }
}

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

pub use crate::provider::retry_after::parse_retry_after;

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
            retry_at: Some(
                now + (retry_after.unwrap_or(DEFAULT_RETRY_AFTER) as i64)
                    .clamp(MIN_WAIT_SECS, MAX_RETRY_AFTER as i64),
            ),
            retryable: true,
        },
        CallError::Transient(_) | CallError::AuthorizationPending | CallError::SlowDown => {
            let n = attempts + 1;
            let wait = backoff(n, BACKOFF_BASE, cap, unit);
            Transition {
                status: waiting,
                reason: err.reason(),
                attempts: n,
                // whole seconds, at least the floor, so a zero jitter does not spin
                retry_at: Some(now + (wait.as_secs() as i64).max(MIN_WAIT_SECS)),
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
        // 0, negative, a date in the past: the floor, never "now"
        assert_eq!(parse_retry_after(" 0 ", 0), Some(1));
        assert_eq!(parse_retry_after("-5", 0), Some(1));
        assert_eq!(parse_retry_after("-0", 0), Some(1));
        assert_eq!(parse_retry_after("+7", 0), Some(7));
        assert_eq!(parse_retry_after("999999999", 0), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after("184467440737095516160000", 0),
            Some(MAX_RETRY_AFTER)
        );
        // Sun, 06 Nov 1994 08:49:37 GMT = 784111777
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_777 - 30),
            Some(30)
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_777 + 30),
            Some(1)
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", 2_000_000_000),
            Some(1)
        );
        // garbage is "absent": the caller waits the default
        assert_eq!(parse_retry_after("soon", 0), None);
        assert_eq!(parse_retry_after("1.5", 0), None);
        assert_eq!(parse_retry_after("-", 0), None);
        assert_eq!(parse_retry_after("", 0), None);
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

    #[test]
    fn pace_admits_a_burst_then_one_call_per_interval() {
        let mut p = Pace::default();
        // three back to back, each at least the floor apart
        assert_eq!(p.try_call(100), Ok(()));
        assert_eq!(p.try_call(100), Err(101));
        assert_eq!(p.try_call(101), Ok(()));
        assert_eq!(p.try_call(102), Ok(()));
        // then the budget is spent: one per CALL_INTERVAL_SECS
        assert_eq!(p.try_call(103), Err(120));
        assert_eq!(p.try_call(120), Ok(()));
        assert_eq!(p.try_call(121), Err(140));
        // an answer asking for more postpones; one asking for 0 still waits the floor
        p.answered(121, 300);
        assert_eq!(p.try_call(140), Err(421));
        let mut q = Pace::default();
        assert_eq!(q.try_call(0), Ok(()));
        q.answered(0, 0);
        assert_eq!(q.next_allowed(), 1);
        q.answered(0, -50);
        assert_eq!(q.next_allowed(), 1);
        // a long quiet spell refills the bucket, no more
        assert_eq!(q.try_call(10_000), Ok(()));
        assert_eq!(q.try_call(10_001), Ok(()));
        assert_eq!(q.try_call(10_002), Ok(()));
        assert!(q.try_call(10_003).is_err());
        assert!(!q.is_idle(10_003));
        assert!(q.is_idle(10_100));
    }

    #[test]
    fn a_new_process_seeds_the_budget_from_the_vault() {
        // never refreshed: anything goes
        let p = Pace::seeded_from(Status::Connected, Some(5_000), None, 100);
        assert!(p.next_allowed() <= 100);
        // refreshed at 100: the floor, one call of the budget spent
        let mut p = Pace::seeded_from(Status::Connected, Some(5_000), Some(100), 100);
        assert_eq!(p.next_allowed(), 101);
        assert_eq!(p.try_call(101), Ok(()));
        // failing, retry stored for 130: nothing before it, and the budget spent then
        let mut p = Pace::seeded_from(Status::Retrying, Some(130), Some(50), 100);
        assert_eq!(p.try_call(129), Err(130));
        assert_eq!(p.try_call(130), Ok(()));
        assert_eq!(p.try_call(131), Err(150));
        let p = Pace::seeded_from(Status::TokenExpired, Some(130), None, 100);
        assert_eq!(p.next_allowed(), 130);
        // a configuration error: the floor after the last failure
        let p = Pace::seeded_from(Status::Error, None, Some(10), 100);
        assert_eq!(p.next_allowed(), 101);
        // extreme stored times do not overflow
        let p = Pace::seeded_from(Status::Retrying, Some(i64::MAX), Some(i64::MIN), i64::MIN);
        assert!(p.next_allowed() > 0);
        let p = Pace::seeded_from(Status::Retrying, Some(i64::MIN), None, i64::MAX);
        let _ = p.next_allowed();
    }

    #[test]
    fn the_per_minute_bound_follows_from_the_constants() {
        assert_eq!(
            MAX_CALLS_PER_MINUTE,
            1 + (WINDOW_SECS + (CALL_BURST - 1) * CALL_INTERVAL_SECS) / CALL_INTERVAL_SECS
        );
        // callers knocking every second for ten minutes: the bound is reached, not passed
        let mut p = Pace::default();
        let calls: Vec<i64> = (0..600).filter(|t| p.try_call(*t).is_ok()).collect();
        assert_eq!(most_in_any_window(&calls), MAX_CALLS_PER_MINUTE as usize);
    }

    /// The most entries of sorted `times` within any closed window of `WINDOW_SECS`.
    fn most_in_any_window(times: &[i64]) -> usize {
        (0..times.len())
            .map(|i| {
                times[i..]
                    .iter()
                    .take_while(|t| **t <= times[i] + WINDOW_SECS)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    /// What a provider may answer, for the property below.
    #[derive(Debug, Clone)]
    enum Answer {
        RateLimited(String),
        Unavailable,
        Timeout,
        InvalidGrant,
        Success,
    }

    fn answers() -> impl Strategy<Value = (Answer, i64)> {
        let retry_after = prop_oneof![
            Just("0".to_owned()),
            Just("-3".to_owned()),
            Just("Thu, 01 Jan 1970 00:00:00 GMT".to_owned()),
            Just("99999999999999999999999".to_owned()),
            (0u64..120).prop_map(|n| n.to_string()),
            "\\PC{0,12}",
        ];
        let answer = prop_oneof![
            retry_after.prop_map(Answer::RateLimited),
            Just(Answer::Unavailable),
            Just(Answer::Timeout),
            Just(Answer::InvalidGrant),
            Just(Answer::Success),
        ];
        // the answer and how long it took (a timeout takes the HTTP timeout)
        (answer, 0i64..20)
    }

    proptest! {
        /// Issue 14: whatever a provider answers and however often callers knock, one
        /// connection's calls in any minute stay within `MAX_CALLS_PER_MINUTE`. Callers
        /// (get, refresh, the scheduler) knock at arbitrary times; each admitted call gets
        /// an arbitrary answer after an arbitrary latency, and the policy's wait for it is
        /// recorded, as `connection::attempts` does.
        #[test]
        fn no_answer_sequence_buys_more_than_a_handful_of_calls_a_minute(
            knocks in proptest::collection::vec(0i64..4, 1..400),
            script in proptest::collection::vec(answers(), 1..60),
            unit in 0.0f64..1.0,
        ) {
            let mut pace = Pace::default();
            let mut now = 0i64;
            let mut calls = Vec::new();
            let mut attempts = 0u32;
            let mut next_answer = script.iter().cycle();
            for gap in knocks {
                now += gap;
                if pace.try_call(now).is_err() {
                    continue;
                }
                calls.push(now);
                let Some((answer, latency)) = next_answer.next() else { break };
                let (err, took) = match answer {
                    Answer::Success => (None, *latency),
                    Answer::RateLimited(v) => (
                        Some(CallError::RateLimited { retry_after: parse_retry_after(v, now) }),
                        *latency,
                    ),
                    Answer::Unavailable => (Some(CallError::Transient("503".into())), *latency),
                    Answer::Timeout => (Some(CallError::Transient("timeout".into())), 15),
                    Answer::InvalidGrant => (Some(CallError::InvalidGrant("x".into())), *latency),
                };
                let end = now + took;
                match err {
                    None => {
                        attempts = 0;
                        pace.answered(end, 0);
                    }
                    Some(e) => {
                        let t = after_failure(&e, end, None, attempts, ON_DEMAND_CAP, unit);
                        attempts = t.attempts;
                        prop_assert!(t.retry_at.is_none_or(|r| r >= end + MIN_WAIT_SECS));
                        pace.answered(end, t.retry_at.map_or(0, |r| r - end));
                    }
                }
            }
            prop_assert!(most_in_any_window(&calls) <= MAX_CALLS_PER_MINUTE as usize,
                "calls at {calls:?}");
            for w in calls.windows(2) {
                prop_assert!(w[1] - w[0] >= MIN_WAIT_SECS, "calls at {calls:?}");
            }
        }

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
                prop_assert!(s >= MIN_WAIT_SECS as u64);
            }
        }
    }
}
