//! `Retry-After` (RFC 9110 §10.2.3) as a provider sends it with a 429 or 503: read into
//! a bounded number of seconds. Pure; the refresh policy decides what to do with it.

/// The shortest wait a `Retry-After` is read as (the refresh policy's floor).
pub const MIN_SECS: u64 = 1;
/// The longest: a day, however far away the provider's answer says.
pub const MAX_SECS: u64 = 86_400;

/// `Retry-After`: delay-seconds or an HTTP date (RFC 9110 §10.2.3), as seconds from
/// `now`, between `MIN_SECS` and a day (`MAX_SECS`): 0, a negative number or a date in the past
/// count as the floor, a huge number as a day. Unparseable → `None` (the caller waits
/// `refresh::policy::DEFAULT_RETRY_AFTER`).
pub fn parse_retry_after(value: &str, now: i64) -> Option<u64> {
    let v = value.trim();
    let min = MIN_SECS;
    let digits = v.strip_prefix(['-', '+']).unwrap_or(v);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if v.starts_with('-') {
            return Some(min);
        }
        // more digits than a u64 holds is still "a very long time"
        let s = digits.parse::<u64>().unwrap_or(MAX_SECS);
        return Some(s.clamp(min, MAX_SECS));
    }
    let t = httpdate::parse_http_date(v).ok()?;
    let at = match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_secs().min(i64::MAX as u64 / 2) as i64,
        Err(_) => return Some(min),
    };
    Some(at.saturating_sub(now).clamp(min as i64, MAX_SECS as i64) as u64)
}
