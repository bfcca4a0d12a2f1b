//! Counters and histograms for `metrics` / `--metrics-listen` (SPEC §9), rendered as
//! Prometheus text exposition (format 0.0.4).
//!
//! Owns: the in-memory counters (`Metrics`, reachable from the engine as
//! `ctx.metrics()`) and the rendering, which adds gauges read from the vault
//! (connections by status, expiring within an hour). Must not: label anything with an
//! account name or a secret; labels are providers, outcomes, statuses and ops only.
//!
//! The refresh engine reports each provider call with `record_refresh`; the engine counts
//! token hand-outs; the socket server counts connections.
//! `tokenvault_build_info{version,commit}` (always 1) tells which build is running.

use crate::error::Result;
use crate::sync::LockExt;
use crate::vault::records::Status;
use crate::vault::{Rx, Vault};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds (seconds) of the refresh latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Process-wide counters. Cheap to bump from any thread.
#[derive(Debug, Default)]
pub struct Metrics {
    /// (provider, outcome) → count
    refreshes: Mutex<BTreeMap<(String, String), u64>>,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    tokens_served: AtomicU64,
    socket_accepted: AtomicU64,
    socket_rejected: AtomicU64,
    socket_requests: AtomicU64,
    socket_errors: AtomicU64,
}

impl Metrics {
    /// One provider call of a refresh finished. `outcome` is a short word such as `ok`,
    /// `needs_reauth`, `error`, `retrying`, `rate_limited`.
    pub fn record_refresh(&self, provider: &str, outcome: &str, latency: Duration) {
        *self
            .refreshes
            .lock_or_recover()
            .entry((provider.to_owned(), outcome.to_owned()))
            .or_default() += 1;
        let secs = latency.as_secs_f64();
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *le {
                self.latency_buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_micros
            .fetch_add(latency.as_micros().min(u64::MAX as u128) as u64, Relaxed);
    }

    /// A token was handed out (any front end).
    pub fn token_served(&self) {
        self.tokens_served.fetch_add(1, Relaxed);
    }

    pub fn tokens_served(&self) -> u64 {
        self.tokens_served.load(Relaxed)
    }

    pub fn socket_accepted(&self) {
        self.socket_accepted.fetch_add(1, Relaxed);
    }

    pub fn socket_rejected(&self) {
        self.socket_rejected.fetch_add(1, Relaxed);
    }

    pub fn socket_request(&self, ok: bool) {
        self.socket_requests.fetch_add(1, Relaxed);
        if !ok {
            self.socket_errors.fetch_add(1, Relaxed);
        }
    }

    /// The counters as Prometheus text (without the vault gauges).
    pub fn render_counters(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP tokenvault_build_info The running tokenvault's version and commit (always 1)."
        );
        let _ = writeln!(out, "# TYPE tokenvault_build_info gauge");
        let _ = writeln!(
            out,
            "tokenvault_build_info{{version=\"{}\",commit=\"{}\"}} 1",
            label(env!("CARGO_PKG_VERSION")),
            label(crate::COMMIT)
        );
        let _ = writeln!(
            out,
            "# HELP tokenvault_refreshes_total Provider calls made to refresh or validate a token, by provider and outcome."
        );
        let _ = writeln!(out, "# TYPE tokenvault_refreshes_total counter");
        for ((p, o), n) in self.refreshes.lock_or_recover().iter() {
            let _ = writeln!(
                out,
                "tokenvault_refreshes_total{{provider=\"{}\",outcome=\"{}\"}} {n}",
                label(p),
                label(o)
            );
        }
        let _ = writeln!(
            out,
            "# HELP tokenvault_refresh_duration_seconds Latency of provider refresh calls."
        );
        let _ = writeln!(out, "# TYPE tokenvault_refresh_duration_seconds histogram");
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "tokenvault_refresh_duration_seconds_bucket{{le=\"{le}\"}} {}",
                self.latency_buckets[i].load(Relaxed)
            );
        }
        let count = self.latency_count.load(Relaxed);
        let _ = writeln!(
            out,
            "tokenvault_refresh_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "tokenvault_refresh_duration_seconds_sum {}",
            self.latency_sum_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "tokenvault_refresh_duration_seconds_count {count}");
        counter(
            out,
            "tokenvault_tokens_served_total",
            "Access tokens handed out.",
            self.tokens_served.load(Relaxed),
        );
        counter(
            out,
            "tokenvault_socket_connections_accepted_total",
            "Socket connections accepted.",
            self.socket_accepted.load(Relaxed),
        );
        counter(
            out,
            "tokenvault_socket_connections_rejected_total",
            "Socket connections refused because the connection cap was reached.",
            self.socket_rejected.load(Relaxed),
        );
        counter(
            out,
            "tokenvault_socket_requests_total",
            "Requests answered on the socket.",
            self.socket_requests.load(Relaxed),
        );
        counter(
            out,
            "tokenvault_socket_request_errors_total",
            "Requests answered on the socket with an error.",
            self.socket_errors.load(Relaxed),
        );
    }
}

fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    let _ = writeln!(out, "{name} {v}");
}

/// Escapes a label value (Prometheus text format).
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// What the vault's connections add up to now, in one scan: the gauges of `metrics` and
/// the counts of `status` (one definition for both).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Gauges {
    pub connections: u64,
    /// By stored status (the `tokenvault_connections` gauge).
    pub by_status: BTreeMap<&'static str, u64>,
    /// By status as `show` and `list` display it: an expired `connected` token counts as
    /// `token_expired` (what `status` reports).
    pub by_shown_status: BTreeMap<&'static str, u64>,
    /// Access tokens expiring within the next hour (not yet expired).
    pub expiring_within_hour: u64,
    /// Refresh tokens whose known expiry is within 7 days (SPEC §5.3).
    pub refresh_tokens_expiring_within_week: u64,
    /// Connections not `connected` whose status changed within the last hour.
    pub failures_last_hour: u64,
}

impl Gauges {
    /// Scans the connections under `prefix` (`""`: all).
    pub fn scan(rx: &Rx, prefix: &str, now: i64) -> Result<Gauges> {
        let zero = || -> BTreeMap<&'static str, u64> {
            Status::ALL.iter().map(|s| (s.as_str(), 0)).collect()
        };
        let mut g = Gauges {
            by_status: zero(),
            by_shown_status: zero(),
            ..Gauges::default()
        };
        rx.for_each_connection(prefix, |_, r| {
            g.connections += 1;
            *g.by_status.entry(r.status.as_str()).or_default() += 1;
            let shown = match (r.status, r.expires_at) {
                (Status::Connected, Some(exp)) if exp <= now => Status::TokenExpired,
                (s, _) => s,
            };
            *g.by_shown_status.entry(shown.as_str()).or_default() += 1;
            if r.expires_at.is_some_and(|e| e > now && e <= now + 3600) {
                g.expiring_within_hour += 1;
            }
            if r.refresh_expires_at.is_some_and(|e| e <= now + 7 * 86_400) {
                g.refresh_tokens_expiring_within_week += 1;
            }
            if r.status != Status::Connected && r.status_at >= now - 3600 {
                g.failures_last_hour += 1;
            }
            Ok(true)
        })?;
        Ok(g)
    }
}

/// The whole exposition: counters plus gauges read from the vault now.
pub fn render(metrics: &Metrics, vault: &Vault, now: i64) -> Result<String> {
    let g = Gauges::scan(&vault.read()?, "", now)?;
    let mut out = String::with_capacity(4096);
    metrics.render_counters(&mut out);
    let _ = writeln!(out, "# HELP tokenvault_connections Connections by status.");
    let _ = writeln!(out, "# TYPE tokenvault_connections gauge");
    for (s, n) in &g.by_status {
        let _ = writeln!(out, "tokenvault_connections{{status=\"{s}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP tokenvault_connections_expiring_within_hour Connections whose access token expires within the next hour."
    );
    let _ = writeln!(
        out,
        "# TYPE tokenvault_connections_expiring_within_hour gauge"
    );
    let _ = writeln!(
        out,
        "tokenvault_connections_expiring_within_hour {}",
        g.expiring_within_hour
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.record_refresh("spotify", "ok", Duration::from_millis(30));
        m.record_refresh("spotify", "ok", Duration::from_millis(3));
        m.record_refresh("google", "needs_reauth", Duration::from_secs(60));
        let mut s = String::new();
        m.render_counters(&mut s);
        assert!(s.contains("tokenvault_refreshes_total{provider=\"spotify\",outcome=\"ok\"} 2"));
        assert!(s.contains(
            "tokenvault_refreshes_total{provider=\"google\",outcome=\"needs_reauth\"} 1"
        ));
        assert!(s.contains("tokenvault_refresh_duration_seconds_bucket{le=\"0.005\"} 1"));
        assert!(s.contains("tokenvault_refresh_duration_seconds_bucket{le=\"0.05\"} 2"));
        assert!(s.contains("tokenvault_refresh_duration_seconds_bucket{le=\"30\"} 2"));
        assert!(s.contains("tokenvault_refresh_duration_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(s.contains("tokenvault_refresh_duration_seconds_count 3"));
        assert!(s.contains(&format!(
            "tokenvault_build_info{{version=\"{}\",commit=",
            env!("CARGO_PKG_VERSION")
        )));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
