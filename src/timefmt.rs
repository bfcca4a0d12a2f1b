//! Times and durations for people: `2026-01-02 03:04:05Z`, `in 2h5m`, `4m10s ago`. Used
//! by the CLI's output, the daemon's start-up line and Apple Music's messages, so it lives
//! below all of them. Pure functions; no clock.

/// A time in UTC, to the second: `2026-01-02 03:04:05Z`.
pub fn fmt_time(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_else(|| t.to_string())
}

/// A duration for people: `3d4h`, `2h5m`, `4m10s`, `9s`.
pub fn fmt_duration(secs: i64) -> String {
    fmt_in(secs.max(0), 0).trim_start_matches("in ").to_owned()
}

/// `t` relative to `now`: `in 2h5m`, `4m10s ago`.
pub fn fmt_in(t: i64, now: i64) -> String {
    let d = t - now;
    let abs = d.unsigned_abs();
    let s = if abs >= 86400 {
        format!("{}d{}h", abs / 86400, (abs % 86400) / 3600)
    } else if abs >= 3600 {
        format!("{}h{}m", abs / 3600, (abs % 3600) / 60)
    } else if abs >= 60 {
        format!("{}m{}s", abs / 60, abs % 60)
    } else {
        format!("{abs}s")
    };
    if d >= 0 {
        format!("in {s}")
    } else {
        format!("{s} ago")
    }
}
