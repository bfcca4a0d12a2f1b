//! Keeping tokens valid (SPEC §5): `Refresher`, the refresh engine's handle (a `Context`,
//! its own state, and the Apple Music handle for `apple-music` connections, whose
//! "refresh" is Apple's check), refreshing one connection (`connection`), the pure retry,
//! due-time and call-budget policy (`policy`), single flight per connection
//! (`single_flight`), whether a request's caller is still there (`caller`), group commit
//! of results (`commit`) and the scheduler (`scheduler`). The operations built on it
//! (`refresh`, `connect`) are the engine's (`engine::refresh`, `engine::connect`).
//!
//! `RefreshState` keeps, per connection, the last forced refresh (SPEC §5.2) and the
//! provider-call budget (`policy::Pace`) that bounds how often any path may call the
//! provider for it (issue 14; the bound is derived in `policy`).
//!
//! Must not: parse command lines, speak the socket protocol, decide who may refresh what
//! (the engine checks the caller first) or import the engine; it calls the `provider`
//! module for HTTP.

pub mod caller;
pub mod claim;
pub mod commit;
pub mod connection;
pub mod policy;
pub mod scheduler;
pub mod single_flight;

pub use connection::{Fresh, Trigger, refresh};
pub use scheduler::run_scheduler;

/// The runtime `serve` runs the scheduler on: one worker of its own, so that the
/// scheduler's refreshes (HTTP, JSON, sealing, group commits) never sit in the run queues
/// of the workers answering the socket; a hand-out arriving during a refresh storm waits
/// for the OS to schedule a socket worker, not for a burst of refresh completions.
/// On-demand refreshes (`get --min-ttl`) still run on the caller's runtime. Shut it down
/// with `shutdown_background` (dropping a runtime inside another panics).
pub fn scheduler_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("tv-refresh")
        .enable_all()
        .build()
}

use crate::apple::AppleMusic;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::names::ConnectionId;
use crate::provider::oauth::{CallError, Http};
use crate::sync::LockExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// A single flight's shared result.
pub type FlightResult = std::result::Result<Fresh, Arc<Error>>;

/// Rebuilds an error for each waiter of a shared flight (`Error` is not `Clone`).
pub fn clone_error(e: &Error) -> Error {
    match e {
        Error::NeedsReauth { connection, reason } => Error::NeedsReauth {
            connection: connection.clone(),
            reason: reason.clone(),
        },
        Error::Config(m) => Error::Config(m.clone()),
        Error::ProviderUnavailable { connection, reason } => Error::ProviderUnavailable {
            connection: connection.clone(),
            reason: reason.clone(),
        },
        Error::NotFound { what, name } => Error::NotFound {
            what,
            name: name.clone(),
        },
        Error::Storage(m) => Error::Storage(m.clone()),
        Error::Forbidden(m) => Error::Forbidden(m.clone()),
        Error::Invalid { what, reason } => Error::Invalid {
            what,
            reason: reason.clone(),
        },
        other => Error::Internal(other.to_string()),
    }
}

/// Counters of the refresh engine. Provider calls and their latency are counted once, by
/// `Metrics::record_refresh` (by provider and outcome).
#[derive(Debug, Default)]
pub struct Stats {
    /// Scheduler scans of the due index.
    pub scheduler_passes: AtomicU64,
}

/// The refresh engine's own state (one per `Refresher` and its clones).
pub struct RefreshState {
    http: Mutex<Option<Http>>,
    http_timeout: Mutex<Duration>,
    pub flights: single_flight::SingleFlight<FlightResult>,
    pub commits: commit::GroupCommit,
    /// Wakes the scheduler when a connection changed (`put`, `connect`, config reload).
    pub wake: tokio::sync::Notify,
    /// Last forced refresh per connection (SPEC §5.2: at most one per 10 s).
    forced: Mutex<std::collections::HashMap<String, i64>>,
    /// Provider-call budget per connection (issue 14), seeded from the vault on first use.
    pace: Mutex<std::collections::HashMap<String, policy::Pace>>,
    /// Off only for the crash test's refresh loop (`__refresh-loop`).
    paced: AtomicBool,
    pub stats: Stats,
    on_demand_attempts: AtomicU64,
    scheduler_running: OnceLock<()>,
}

impl std::fmt::Debug for RefreshState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshState")
            .field("stats", &self.stats)
            .finish()
    }
}

impl Default for RefreshState {
    fn default() -> Self {
        RefreshState {
            http: Mutex::new(None),
            http_timeout: Mutex::new(crate::provider::oauth::DEFAULT_TIMEOUT),
            flights: Default::default(),
            commits: Default::default(),
            wake: tokio::sync::Notify::new(),
            forced: Mutex::new(Default::default()),
            pace: Mutex::new(Default::default()),
            paced: AtomicBool::new(true),
            stats: Stats::default(),
            on_demand_attempts: AtomicU64::new(policy::ON_DEMAND_CALLS as u64),
            scheduler_running: OnceLock::new(),
        }
    }
}

impl RefreshState {
    /// The HTTP client, built on first use.
    pub fn http(&self) -> std::result::Result<Http, CallError> {
        let mut g = self.http.lock_or_recover();
        if let Some(h) = g.as_ref() {
            return Ok(h.clone());
        }
        let timeout = *self.http_timeout.lock_or_recover();
        let h = Http::new(timeout).map_err(|e| CallError::Config(e.to_string()))?;
        *g = Some(h.clone());
        Ok(h)
    }

    /// Timeout of one provider call (tests shorten it). Rebuilds the client.
    pub fn set_http_timeout(&self, t: Duration) {
        *self.http_timeout.lock_or_recover() = t;
        *self.http.lock_or_recover() = None;
    }

    /// How many provider calls an on-demand refresh makes before giving up (default
    /// `policy::ON_DEMAND_CALLS`; at most that many, so the budget's bound stays true).
    pub fn set_on_demand_attempts(&self, n: u32) {
        self.on_demand_attempts.store(
            n.clamp(1, policy::ON_DEMAND_CALLS) as u64,
            Ordering::Relaxed,
        );
    }

    pub fn on_demand_attempts(&self) -> u32 {
        self.on_demand_attempts.load(Ordering::Relaxed) as u32
    }

    /// How long an on-demand refresh may take in all (`policy::ON_DEMAND_DEADLINE`).
    pub fn on_demand_deadline(&self) -> Duration {
        policy::ON_DEMAND_DEADLINE
    }

    /// Turns the provider-call budget off. Only for the crash test's hidden
    /// `__refresh-loop`, which must refresh as fast as it can; never on real tokens.
    pub fn disable_pacing_for_crash_test(&self) {
        self.paced.store(false, Ordering::Relaxed);
    }

    /// Admits a provider call for `key` starting at `now`, or says when the next one may
    /// start. `seed` gives the budget of a connection this process has not called for.
    pub(crate) fn pace_call(
        &self,
        key: &str,
        now: i64,
        seed: impl FnOnce() -> policy::Pace,
    ) -> std::result::Result<(), i64> {
        if !self.paced.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut m = self.pace.lock_or_recover();
        if m.len() > 100_000 {
            m.retain(|_, p| !p.is_idle(now));
        }
        m.entry(key.to_owned()).or_insert_with(seed).try_call(now)
    }

    /// Records the answer to a call of `key` received at `now`, asking for `wait_secs`
    /// before the next one (0 after a success).
    pub(crate) fn pace_answered(&self, key: &str, now: i64, wait_secs: i64) {
        if let Some(p) = self.pace.lock_or_recover().get_mut(key) {
            p.answered(now, wait_secs);
        }
    }

    /// The earliest time `key` may call its provider again, if this process knows.
    pub(crate) fn next_call_at(&self, key: &str) -> Option<i64> {
        if !self.paced.load(Ordering::Relaxed) {
            return None;
        }
        self.pace
            .lock_or_recover()
            .get(key)
            .map(policy::Pace::next_allowed)
    }

    /// Whether a scheduler runs on this engine (`serve`, the TUI on a local vault).
    pub fn scheduler_runs(&self) -> bool {
        self.scheduler_running.get().is_some()
    }

    pub fn scheduler_passes(&self) -> u64 {
        self.stats.scheduler_passes.load(Ordering::Relaxed)
    }

    /// Records a forced refresh of `key` at `now`, or refuses it if the last one was less
    /// than 10 s ago.
    pub(crate) fn allow_forced(&self, key: &str, now: i64) -> bool {
        let mut m = self.forced.lock_or_recover();
        if m.len() > 100_000 {
            m.retain(|_, t| now - *t < policy::FORCE_INTERVAL_SECS);
        }
        match m.get(key) {
            Some(t) if now - *t < policy::FORCE_INTERVAL_SECS => false,
            _ => {
                m.insert(key.to_owned(), now);
                true
            }
        }
    }

    /// Marks the scheduler as running; false if one already runs on this engine.
    pub(crate) fn claim_scheduler(&self) -> bool {
        self.scheduler_running.set(()).is_ok()
    }
}

/// A clock that follows tokio's (pausable) clock from a Unix-time origin, so scheduler
/// tests on a paused clock see consistent times.
#[derive(Debug)]
pub struct TokioClock {
    origin: i64,
    start: tokio::time::Instant,
}

impl TokioClock {
    pub fn new(origin_unix: i64) -> Self {
        TokioClock {
            origin: origin_unix,
            start: tokio::time::Instant::now(),
        }
    }
}

impl crate::context::Clock for TokioClock {
    fn now(&self) -> i64 {
        self.origin + self.start.elapsed().as_secs() as i64
    }
}

/// The refresh engine: cheap to clone, every clone shares one state.
#[derive(Clone, Debug)]
pub struct Refresher {
    pub(crate) ctx: Context,
    state: Arc<RefreshState>,
    pub(crate) apple: AppleMusic,
}

impl Refresher {
    pub fn new(ctx: Context, apple: AppleMusic) -> Refresher {
        Refresher {
            ctx,
            state: Arc::default(),
            apple,
        }
    }

    /// HTTP client, single flight, group commit, counters, scheduler wake.
    pub fn state(&self) -> &RefreshState {
        &self.state
    }

    /// Wakes the scheduler: a connection changed (`put`, `connect`, a restore, a new
    /// configuration), so its next due time may be earlier than the one it sleeps to.
    pub fn wake(&self) {
        self.state.wake.notify_one();
    }

    /// `get`: the stored token if more than `min_ttl` seconds remain, otherwise a
    /// refreshed one (shared with concurrent callers). A forced refresh within 10 s of the
    /// previous one is not repeated: the limit is taken before any provider call, so it
    /// holds whatever the provider answered the last time.
    pub async fn on_demand(&self, key: &str, min_ttl: u64, force: bool) -> Result<Fresh> {
        let force = force && self.state.allow_forced(key, self.ctx.now());
        refresh(self, key, Trigger::OnDemand { min_ttl, force }).await
    }

    /// Expiry and due time for a token of `id`'s provider received now.
    pub fn plan_for(
        &self,
        id: &ConnectionId,
        expires_at: Option<i64>,
        renewable: bool,
    ) -> Result<(Option<i64>, Option<i64>)> {
        let p = self.ctx.provider(&id.provider)?;
        Ok(connection::plan(
            &p,
            self.ctx.now(),
            expires_at,
            renewable,
            rand::random::<f64>(),
        ))
    }

    /// The refresh-token expiry to store for a token just received: the response's
    /// `refresh_token_expires_in`, else the provider's default lifetime when the response
    /// carried a refresh token (SPEC §5.3).
    pub fn refresh_expiry_for(
        &self,
        id: &ConnectionId,
        stated: Option<i64>,
        has_refresh_token: bool,
    ) -> Result<Option<i64>> {
        if stated.is_some() || !has_refresh_token {
            return Ok(stated);
        }
        let p = self.ctx.provider(&id.provider)?;
        Ok(p.refresh_expiry(self.ctx.now(), None))
    }
}
