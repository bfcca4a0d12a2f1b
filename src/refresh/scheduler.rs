//! The scheduler (SPEC §5.1): sleeps until the earliest entry of the vault's `DUE` index,
//! refreshes what is due with bounded concurrency per provider host, and wakes early when
//! a connection changes (`RefreshState::wake`) or a refresh finishes. No periodic scans:
//! while nothing is due it sleeps on a single timer.
//!
//! Results are committed by the group commit of `commit`, so a storm of due connections
//! shares durable transactions.

use super::Refresher;
use super::Trigger;
use crate::error::Result;
use crate::sync::LockExt;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// Most refreshes in flight at once (all hosts).
pub const MAX_IN_FLIGHT: usize = 1024;
/// Refill below this many in flight.
const LOW_WATER: usize = MAX_IN_FLIGHT / 2;
/// Default concurrent refreshes per provider host (`[scheduler] per_host_concurrency`).
pub const DEFAULT_PER_HOST: usize = 16;
/// How long shutdown waits for in-flight refreshes.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The host a connection's refresh talks to, for the per-host limit.
fn host_of(rf: &Refresher, key: &str) -> String {
    let f = || -> Result<Option<String>> {
        let id = crate::names::ConnectionId::parse(key)?;
        let p = rf.ctx.provider(&id.provider)?;
        let client = rf.ctx.vault().read()?.client(&id.tenant, &id.provider)?;
        let ep = p.endpoints(client.as_ref())?;
        Ok(ep
            .token_url
            .or(ep.validation_url)
            .and_then(|u| url::Url::parse(&u).ok())
            .map(|u| {
                format!(
                    "{}:{}",
                    u.host_str().unwrap_or(""),
                    u.port_or_known_default().unwrap_or(0)
                )
            }))
    };
    f().ok().flatten().unwrap_or_else(|| "-".into())
}

/// The per-provider-host bound (`[scheduler] per_host_concurrency`), shared by the
/// scheduler and the `refresh --due` / `--tenant` passes, so a pass from the CLI does not
/// hit a provider harder than the operator allowed.
#[derive(Clone)]
pub(crate) struct HostLimits {
    per_host: usize,
    hosts: Arc<std::sync::Mutex<HashMap<String, Arc<Semaphore>>>>,
}

impl HostLimits {
    pub(crate) fn new(rf: &Refresher) -> Self {
        HostLimits {
            per_host: rf
                .ctx
                .config()
                .scheduler
                .per_host_concurrency
                .unwrap_or(DEFAULT_PER_HOST)
                .max(1),
            hosts: Default::default(),
        }
    }

    /// Waits for a slot on the host `key` refreshes against; the slot is held until the
    /// permit is dropped. `None` only if the semaphore was closed (never, in practice).
    pub(crate) async fn acquire(&self, rf: &Refresher, key: &str) -> Option<OwnedSemaphorePermit> {
        let host = host_of(rf, key);
        let sem = self
            .hosts
            .lock_or_recover()
            .entry(host)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_host)))
            .clone();
        sem.acquire_owned().await.ok()
    }
}

/// Runs the scheduler until `shutdown` resolves, then waits up to 10 s for refreshes in
/// flight (their results are committed or, if abandoned, the connection keeps its old,
/// still-committed tokens and is due again).
pub async fn run_scheduler(rf: Refresher, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
    let st = rf.state();
    if !st.claim_scheduler() {
        return Err(crate::error::Error::Internal(
            "a scheduler already runs on this engine".into(),
        ));
    }
    let hosts = HostLimits::new(&rf);
    let mut in_flight: HashSet<String> = HashSet::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    let mut scan = true;
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        if scan {
            scan = false;
            st.stats.scheduler_passes.fetch_add(1, Ordering::Relaxed);
            let now = rf.ctx.now();
            let (due, next) = {
                let rx = rf.ctx.vault().read()?;
                let room = MAX_IN_FLIGHT.saturating_sub(in_flight.len());
                let due = rx.due(now, in_flight.len() + room)?;
                // the earliest entry not already being refreshed
                let next = if due.len() < in_flight.len() + room {
                    rx.due(i64::MAX, in_flight.len() + due.len() + 1)?
                        .into_iter()
                        .find(|(at, k)| *at > now && !in_flight.contains(k))
                        .map(|(at, _)| at)
                } else {
                    None
                };
                (due, next)
            };
            for (_, key) in due {
                if in_flight.len() >= MAX_IN_FLIGHT {
                    break;
                }
                if !in_flight.insert(key.clone()) {
                    continue;
                }
                let rf = rf.clone();
                let hosts = hosts.clone();
                let done = done_tx.clone();
                tasks.spawn(async move {
                    if let Some(_permit) = hosts.acquire(&rf, &key).await
                        && let Err(e) = super::refresh(&rf, &key, Trigger::Scheduler).await
                    {
                        {
                            tracing::debug!(
                                connection = %rf.ctx.vault().pseudonym(&key),
                                code = e.code(),
                                "scheduled refresh failed"
                            );
                            let _ = super::connection::postpone_if_due(&rf, &key, 60).await;
                        }
                    }
                    let _ = done.send(key);
                });
            }
            deadline = next.map(|at| {
                let secs = (at - rf.ctx.now()).max(0) as u64;
                tokio::time::Instant::now() + Duration::from_secs(secs)
            });
        }
        tokio::select! {
            _ = &mut shutdown => break,
            _ = st.wake.notified() => scan = true,
            Some(key) = done_rx.recv() => {
                in_flight.remove(&key);
                while let Ok(k) = done_rx.try_recv() {
                    in_flight.remove(&k);
                }
                while tasks.try_join_next().is_some() {}
                if in_flight.len() <= LOW_WATER {
                    scan = true;
                }
            }
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => scan = true,
        }
    }
    // Finish or abandon in-flight refreshes within the grace period.
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    Ok(())
}
