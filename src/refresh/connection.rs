//! Refreshing one connection: load what the call needs, ask the call budget, call the
//! provider, apply the policy, commit the result through the group commit, emit the
//! status change. How many calls one refresh may make and when it stops, whatever the
//! provider answers, is `attempts` (the bound itself is derived in `policy`).
//!
//! The order matters (SPEC §5.3): the new access token and a rotated refresh token are
//! committed in one durable transaction before the `Fresh` value (the only way a caller
//! gets the access token) is returned. A response without `refresh_token` keeps the old
//! one.

use super::Refresher;
use super::commit::JobOut;
use super::policy::{self, Transition};
use crate::contract::{Event, EventKind, StatusEvent};
use crate::error::{Error, Result};
use crate::names::ConnectionId;
use crate::provider::catalogue::{Endpoints, Provider, ProviderKind};
use crate::provider::oauth::{self, CallError, ClientCreds};
use crate::secret::Secret;
use crate::sync::LockExt;
use crate::token::TokenResponse;
use crate::vault::records::{ConnectionRecord, Status, TokenSecrets};
use std::time::Duration;

/// Marker kept in a connection's sealed extra fields: how to renew it without a refresh
/// token (`client_credentials` connections are re-requested, SPEC §5.6).
pub const GRANT_MARKER: &str = "tokenvault_grant";

/// A valid access token, returned only after its refresh was committed.
#[derive(Debug, Clone)]
pub struct Fresh {
    pub access_token: Secret,
    pub expires_at: Option<i64>,
    pub token_type: Option<String>,
    /// Whether this call refreshed (false: the stored token was good enough).
    pub refreshed: bool,
    /// When the scheduler takes the connection up next.
    pub due_at: Option<i64>,
}

/// Who asked for the refresh; decides retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `get`: refresh if fewer than `min_ttl` seconds remain (or always, if forced);
    /// retries inline with a short cap, within the on-demand deadline, while the stored
    /// token has expired (a still-valid one is handed out after a failed call).
    OnDemand { min_ttl: u64, force: bool },
    /// `refresh CONNECTION`: always calls the provider (budget permitting), retrying
    /// within the on-demand deadline.
    Manual,
    /// The scheduler: one attempt; failures are rescheduled with a long cap.
    Scheduler,
}

/// Everything one provider call needs, read in one snapshot.
struct Loaded {
    id: ConnectionId,
    rec: ConnectionRecord,
    secrets: TokenSecrets,
    provider: Provider,
    endpoints: std::result::Result<Endpoints, String>,
    creds: std::result::Result<ClientCreds, String>,
}

fn load(rf: &Refresher, key: &str) -> Result<Loaded> {
    let id = ConnectionId::parse(key)?;
    let rx = rf.ctx.vault().read()?;
    let rec = rx
        .connection(key)?
        .ok_or_else(|| Error::not_found("connection", key))?;
    let secrets = rx.secrets(key, &rec)?;
    let provider = rf.ctx.provider(&id.provider)?;
    let client = rx.client(&id.tenant, &id.provider)?;
    let endpoints = provider
        .endpoints(client.as_ref())
        .map_err(|e| e.to_string());
    let creds = match &client {
        None => Err(format!(
            "no client registered for {}/{}: run `tokenvault client set {} {} --client-id …`",
            id.tenant, id.provider, id.tenant, id.provider
        )),
        Some(c) => Ok(ClientCreds {
            client_id: c.client_id.clone(),
            secret: rx.client_secret(&id.tenant, &id.provider, c)?,
            auth: provider.client_auth,
        }),
    };
    Ok(Loaded {
        id,
        rec,
        secrets,
        provider,
        endpoints,
        creds,
    })
}

fn current(conn: &Loaded) -> Fresh {
    Fresh {
        access_token: conn.secrets.access_token.clone(),
        expires_at: conn.rec.expires_at,
        token_type: conn.rec.token_type.clone(),
        refreshed: false,
        due_at: conn.rec.due_at,
    }
}

/// Expiry and due time of a token of `provider` received at `now` (SPEC §5.1). Tokens
/// without a lifetime get the provider's default. PATs and Apple tokens are due for
/// validation after the default lifetime. A token nothing can renew is due at expiry,
/// when its status must change.
pub fn plan(
    provider: &Provider,
    now: i64,
    expires_at: Option<i64>,
    renewable: bool,
    unit: f64,
) -> (Option<i64>, Option<i64>) {
    match provider.kind {
        ProviderKind::OAuth2 => {
            let exp = expires_at.unwrap_or(now + provider.default_lifetime_secs as i64);
            let due = if renewable {
                policy::due_at(now, exp, provider.refresh_buffer_secs, unit)
            } else {
                exp.max(now)
            };
            (Some(exp), Some(due))
        }
        ProviderKind::Pat | ProviderKind::AppleMusic => (
            expires_at,
            Some(now + provider.default_lifetime_secs.max(60) as i64),
        ),
    }
}

fn unit() -> f64 {
    rand::random::<f64>()
}

/// What the provider gave.
enum Got {
    Tokens(TokenResponse),
    Validated,
}

async fn call(rf: &Refresher, conn: &Loaded) -> std::result::Result<Got, CallError> {
    let now = rf.ctx.now();
    match conn.provider.kind {
        ProviderKind::AppleMusic => {
            rf.apple.check(&conn.id.key()).await?;
            Ok(Got::Validated)
        }
        ProviderKind::Pat => {
            let ep = conn
                .endpoints
                .as_ref()
                .map_err(|e| CallError::Config(e.clone()))?;
            let url = ep.validation_url.as_deref().ok_or_else(|| {
                CallError::Config(format!(
                    "provider {} has no validation URL",
                    conn.provider.name
                ))
            })?;
            let http = rf.state().http()?;
            oauth::validate_bearer(&http, url, &conn.secrets.access_token, now).await?;
            Ok(Got::Validated)
        }
        ProviderKind::OAuth2 => {
            let ep = conn
                .endpoints
                .as_ref()
                .map_err(|e| CallError::Config(e.clone()))?;
            let url = ep.token_url.as_deref().ok_or_else(|| {
                CallError::Config(format!(
                    "provider {} has no token URL: set one with `client set … --token-url URL` or a [providers.{}] table",
                    conn.provider.name, conn.provider.name
                ))
            })?;
            let creds = conn
                .creds
                .as_ref()
                .map_err(|e| CallError::Config(e.clone()))?;
            let mut form: Vec<(String, String)> = Vec::new();
            let cc = conn
                .secrets
                .extra
                .get(GRANT_MARKER)
                .and_then(|v| v.as_str())
                == Some("client_credentials");
            match (&conn.secrets.refresh_token, cc) {
                (_, true) => {
                    form.push(("grant_type".into(), "client_credentials".into()));
                    if let Some(s) = &conn.rec.scope {
                        form.push(("scope".into(), s.clone()));
                    }
                }
                (Some(rt), false) => {
                    form.push(("grant_type".into(), "refresh_token".into()));
                    form.push(("refresh_token".into(), rt.expose().to_owned()));
                }
                (None, false) => {
                    let now = rf.ctx.now();
                    return Err(CallError::InvalidGrant(match conn.rec.expires_at {
                        Some(exp) if exp > now => format!(
                            "the connection has no refresh token, so it cannot be refreshed (its access token works until {})",
                            crate::vault::records::fmt_unix(exp)
                        ),
                        Some(exp) => format!(
                            "the connection has no refresh token and its access token expired at {}",
                            crate::vault::records::fmt_unix(exp)
                        ),
                        None => "the connection has no refresh token".into(),
                    }));
                }
            }
            for (k, v) in &conn.provider.token_params {
                form.push((k.clone(), v.clone()));
            }
            let http = rf.state().http()?;
            let r = oauth::token_request(&http, url, creds, form, now).await?;
            Ok(Got::Tokens(r))
        }
    }
}

/// Commits a successful refresh (or validation) of `key` and returns the token. The next
/// due time is never before `not_before` (the call budget), so a provider handing out
/// tokens that expire at once does not make the scheduler wake only to be refused.
async fn commit_success(rf: &Refresher, conn: &Loaded, got: Got, not_before: i64) -> Result<Fresh> {
    let key = conn.id.key();
    let now = rf.ctx.now();
    let provider = conn.provider.clone();
    let u = unit();
    let fresh_slot = std::sync::Arc::new(std::sync::Mutex::new(None::<Fresh>));
    let slot = fresh_slot.clone();
    let rotated = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rotated_in_job = rotated.clone();
    let job_key = key.clone();
    let job: super::commit::Job = Box::new(move |tx| {
        let mut cur = tx
            .connection(&job_key)?
            .ok_or_else(|| Error::not_found("connection", job_key.clone()))?;
        let from = cur.status;
        let mut reason = "refreshed".to_owned();
        match got {
            Got::Validated => {
                reason = "validated".into();
                let (_, due) = plan(&provider, now, cur.expires_at, true, u);
                cur.due_at = due.map(|d| d.max(not_before));
                let s = tx.secrets(&job_key, &cur)?;
                *slot.lock_or_recover() = Some(Fresh {
                    access_token: s.access_token,
                    expires_at: cur.expires_at,
                    token_type: cur.token_type.clone(),
                    refreshed: true,
                    due_at: cur.due_at,
                });
            }
            Got::Tokens(resp) => {
                let old = tx.secrets(&job_key, &cur)?;
                // a new refresh token, not the same one restated: its lifetime starts now
                let fresh_refresh_token = resp.secrets.refresh_token.as_ref().is_some_and(|n| {
                    old.refresh_token
                        .as_ref()
                        .is_none_or(|o| o.expose() != n.expose())
                });
                if fresh_refresh_token && old.refresh_token.is_some() {
                    rotated_in_job.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                let mut extra = resp.secrets.extra;
                if let Some(m) = old.extra.get(GRANT_MARKER) {
                    extra.insert(GRANT_MARKER.into(), m.clone());
                }
                let secrets = TokenSecrets {
                    access_token: resp.secrets.access_token,
                    refresh_token: resp.secrets.refresh_token.or(old.refresh_token),
                    id_token: resp.secrets.id_token.or(old.id_token),
                    extra,
                };
                let renewable =
                    secrets.refresh_token.is_some() || secrets.extra.contains_key(GRANT_MARKER);
                let (exp, due) = plan(&provider, now, resp.expires_at, renewable, u);
                cur.expires_at = exp;
                cur.due_at = due.map(|d| d.max(not_before));
                // a new refresh token's expiry is the response's, else the provider's
                // default lifetime (unknown = none); a kept or restated token keeps its
                // expiry unless the response states one
                if fresh_refresh_token {
                    cur.refresh_expires_at = provider.refresh_expiry(now, resp.refresh_expires_at);
                } else if resp.refresh_expires_at.is_some() {
                    cur.refresh_expires_at = resp.refresh_expires_at;
                }
                if let Some(rx) = cur.refresh_expires_at
                    && rx - now < policy::REFRESH_EXPIRY_WARNING_SECS
                {
                    {
                        let days = ((rx - now).max(0) + 86_399) / 86_400;
                        reason = format!(
                            "refreshed; the refresh token expires in {days} day(s): reconnect before then"
                        );
                    }
                }
                if resp.scope.is_some() {
                    cur.scope = resp.scope;
                }
                if resp.token_type.is_some() {
                    cur.token_type = resp.token_type;
                }
                cur.has_refresh_token = secrets.refresh_token.is_some();
                cur.has_id_token = secrets.id_token.is_some();
                cur.metadata_keys = secrets.extra.keys().cloned().collect();
                *slot.lock_or_recover() = Some(Fresh {
                    access_token: secrets.access_token.clone(),
                    expires_at: cur.expires_at,
                    token_type: cur.token_type.clone(),
                    refreshed: true,
                    due_at: cur.due_at,
                });
                tx.seal_secrets(&job_key, &mut cur, &secrets);
                cur.last_refresh_at = Some(now);
                cur.refresh_count += 1;
            }
        }
        cur.status = Status::Connected;
        if from != Status::Connected || cur.reason.as_deref() != Some(reason.as_str()) {
            cur.status_at = now;
        }
        cur.reason = Some(reason.clone());
        cur.attempts = 0;
        cur.updated_at = now;
        tx.put_connection(&job_key, &cur)?;
        Ok(JobOut {
            event: (from != Status::Connected).then(|| StatusEvent {
                connection: job_key.clone(),
                from: Some(from),
                to: Some(Status::Connected),
                reason: Some(reason),
                at: now,
            }),
            transition: None,
        })
    });
    let out = rf.state().commits.submit(rf.ctx.vault(), job).await?;
    if let Some(ev) = out.event {
        rf.ctx.emit(ev);
    }
    let fresh = fresh_slot
        .lock_or_recover()
        .take()
        .ok_or_else(|| Error::Internal("refresh result missing after commit".into()))?;
    rf.ctx.emit(Event::new(
        now,
        EventKind::Refreshed {
            connection: key,
            ok: true,
            rotated: rotated.load(std::sync::atomic::Ordering::Relaxed),
            status: Status::Connected,
            expires_at: fresh.expires_at,
            due_at: fresh.due_at,
        },
    ));
    Ok(fresh)
}

/// Commits a failed attempt: status, reason, attempt count (from `t`) and the retry time
/// `due` (`None`: never by itself).
async fn commit_failure(rf: &Refresher, key: &str, t: &Transition, due: Option<i64>) -> Result<()> {
    let now = rf.ctx.now();
    let t = t.clone();
    let left = t.status;
    let job_key = key.to_owned();
    let job: super::commit::Job = Box::new(move |tx| {
        let mut cur = tx
            .connection(&job_key)?
            .ok_or_else(|| Error::not_found("connection", job_key.clone()))?;
        let from = cur.status;
        if from != t.status {
            cur.status_at = now;
        }
        cur.status = t.status;
        cur.reason = Some(t.reason.clone());
        cur.attempts = t.attempts;
        cur.due_at = due;
        cur.updated_at = now;
        tx.put_connection(&job_key, &cur)?;
        Ok(JobOut {
            event: (from != t.status).then(|| StatusEvent {
                connection: job_key.clone(),
                from: Some(from),
                to: Some(t.status),
                reason: Some(t.reason.clone()),
                at: now,
            }),
            transition: None,
        })
    });
    let out = rf.state().commits.submit(rf.ctx.vault(), job).await?;
    if let Some(ev) = out.event {
        rf.ctx.emit(ev);
    }
    rf.ctx.emit(Event::new(
        now,
        EventKind::Refreshed {
            connection: key.to_owned(),
            ok: false,
            rotated: false,
            status: left,
            expires_at: None,
            due_at: due,
        },
    ));
    Ok(())
}

/// Refreshes `key` for `trigger`, sharing the work with every concurrent caller of the
/// same connection (single flight). A waiter whose caller goes away stops waiting; the
/// work itself stops at its next safe point once its own caller is gone and nobody waits.
pub async fn refresh(rf: &Refresher, key: &str, trigger: Trigger) -> Result<Fresh> {
    let st = rf.state();
    let r = st
        .flights
        .run(key, super::caller::gone(), || async {
            claimed(rf, key, trigger).await.map_err(std::sync::Arc::new)
        })
        .await;
    match r {
        Some(r) => r.map_err(|e| super::clone_error(&e)),
        None => Err(cancelled(key)),
    }
}

/// `attempts` under this node's claim on the shared store (`claim`): one node at a time
/// calls the provider for a connection; the others wait for its result.
async fn claimed(rf: &Refresher, key: &str, trigger: Trigger) -> Result<Fresh> {
    let wait = match trigger {
        // the scheduler waits out a dead holder's lease, then takes over
        Trigger::Scheduler => crate::vault::claims::lease() + Duration::from_secs(1),
        _ => rf.state().on_demand_deadline(),
    };
    let settled = || {
        let ctx = load(rf, key).ok()?;
        let now = rf.ctx.now();
        match trigger {
            Trigger::OnDemand {
                min_ttl,
                force: false,
            } => ctx
                .rec
                .expires_at
                .is_none_or(|e| e > now + min_ttl as i64)
                .then(|| current(&ctx)),
            Trigger::Scheduler => ctx
                .rec
                .due_at
                .is_none_or(|d| d > now)
                .then(|| current(&ctx)),
            _ => None,
        }
    };
    let still_valid = || {
        let ctx = load(rf, key).ok()?;
        let now = rf.ctx.now();
        ctx.rec
            .expires_at
            .is_some_and(|e| e > now)
            .then(|| current(&ctx))
    };
    super::claim::under_claim(rf.ctx.vault(), key, wait, settled, still_valid, || {
        attempts(rf, key, trigger)
    })
    .await
}

fn cancelled(key: &str) -> Error {
    Error::ProviderUnavailable {
        connection: key.to_owned(),
        reason: "the request was cancelled because its caller went away".into(),
    }
}

/// How a refresh ends without a new token.
enum Stop {
    /// Not retryable, or the scheduler's single attempt: the error the policy gives.
    Failed(CallError),
    /// A `get` whose stored token is still valid: it is handed out; the scheduler retries.
    ServeCurrent,
    /// The on-demand call budget (`ON_DEMAND_CALLS`) is spent.
    OutOfCalls(CallError, u32),
    /// The next call could start only after the on-demand deadline.
    MustWait(CallError),
    /// The call budget admitted no call before the deadline; the provider was not asked.
    Paced,
    /// The caller went away and nobody else waits for this flight.
    CallerGone,
}

/// "the scheduler will retry at …" (or, without a scheduler in this process, when to try
/// again), for messages.
fn next_attempt(rf: &Refresher, at: i64) -> String {
    let when = chrono::DateTime::from_timestamp(at, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| at.to_string());
    if rf.state().scheduler_runs() {
        format!("the scheduler will retry at {when}")
    } else {
        format!("try again after {when}")
    }
}

/// Ends a refresh: writes the failure not yet written (`pending`) with the time the
/// scheduler takes over (never before the budget allows, nor, for an on-demand refresh,
/// before its deadline `handover`), and turns `stop` into the caller's answer.
async fn finish(
    rf: &Refresher,
    conn: &Loaded,
    trigger: Trigger,
    pending: Option<Transition>,
    handover: i64,
    stop: Stop,
) -> Result<Fresh> {
    let key = conn.id.key();
    let now = rf.ctx.now();
    let next = rf.state().next_call_at(&key).unwrap_or(now).max(handover);
    let due = pending
        .as_ref()
        .and_then(|t| t.retry_at)
        .map(|r| r.max(next));
    if let Some(t) = &pending {
        commit_failure(rf, &key, t, due).await?;
        if trigger != Trigger::Scheduler && due.is_some() {
            // the scheduler sleeps until the earliest due time it knew: this one may be sooner
            rf.state().wake.notify_one();
        }
    }
    let at = due.unwrap_or(next);
    let unavailable = |reason: String| Error::ProviderUnavailable {
        connection: key.clone(),
        reason,
    };
    match stop {
        Stop::Failed(err) => Err(err.into_error(&key)),
        Stop::ServeCurrent => Ok(current(conn)),
        Stop::OutOfCalls(err, calls) => Err(unavailable(format!(
            "{}; gave up after {calls} provider calls; {}",
            err.reason(),
            next_attempt(rf, at)
        ))),
        Stop::MustWait(CallError::RateLimited { retry_after }) => Err(unavailable(format!(
            "rate limited (HTTP 429): the provider asked us to wait {} s; {}",
            retry_after.unwrap_or(policy::DEFAULT_RETRY_AFTER),
            next_attempt(rf, at)
        ))),
        Stop::MustWait(err) => Err(unavailable(format!(
            "{}; {}",
            err.reason(),
            next_attempt(rf, at)
        ))),
        Stop::Paced => {
            let still_valid = conn.rec.expires_at.is_none_or(|e| e > now);
            if matches!(trigger, Trigger::OnDemand { .. }) && still_valid {
                return Ok(current(conn));
            }
            Err(unavailable(format!(
                "calls to the provider for this connection are limited to {} a minute; {}",
                policy::MAX_CALLS_PER_MINUTE,
                next_attempt(rf, at)
            )))
        }
        Stop::CallerGone => Err(cancelled(&key)),
    }
}

/// Sleeps `d` before the next call. False if the caller went away meanwhile and nobody
/// else waits for this flight: then no further call is made.
async fn pause(rf: &Refresher, key: &str, d: Duration) -> bool {
    let sleep = tokio::time::sleep(d);
    tokio::pin!(sleep);
    tokio::select! {
        _ = &mut sleep => true,
        _ = super::caller::gone() => {
            if rf.state().flights.waiters(key) == 0 {
                return false;
            }
            // others wait for this flight: it goes on for them (the check before the next
            // call sees whether they still do)
            sleep.await;
            true
        }
    }
}

/// The provider calls of one refresh (issue 14: bounded however the provider answers).
///
/// Every call is admitted by the connection's budget first (`RefreshState::pace_call`).
/// The scheduler makes one call and reschedules. An on-demand refresh makes at most
/// `on_demand_attempts` calls within `on_demand_deadline`, waiting in between what the
/// answer asks (at least the floor), and stops as soon as the next call could only start
/// after the deadline, or its caller is gone and nobody else waits. A failure that
/// changes the status is written (and announced) at once; one that changes only retry
/// bookkeeping (attempts, retry time) is written when the refresh ends, so a retry costs
/// no durable write of its own.
async fn attempts(rf: &Refresher, key: &str, trigger: Trigger) -> Result<Fresh> {
    let st = rf.state();
    let scheduled = trigger == Trigger::Scheduler;
    let (max_calls, cap) = if scheduled {
        (1, policy::SCHEDULER_CAP)
    } else {
        (st.on_demand_attempts(), policy::ON_DEMAND_CAP)
    };
    let budget = st.on_demand_deadline();
    let deadline = tokio::time::Instant::now() + budget;
    // The same deadline on the rf's clock (which stamps retry times): the scheduler
    // takes an on-demand refresh's connection over only once it has passed.
    let handover = if scheduled {
        i64::MIN
    } else {
        rf.ctx.now() + budget.as_secs().max(1) as i64
    };
    let remaining = || {
        let real = deadline.saturating_duration_since(tokio::time::Instant::now());
        let clock = Duration::from_secs((handover - rf.ctx.now()).max(0) as u64);
        real.min(clock)
    };
    let mut calls = 0u32;
    let mut pending: Option<Transition> = None;
    loop {
        let conn = load(rf, key)?;
        let now = rf.ctx.now();
        match trigger {
            Trigger::OnDemand { min_ttl, force } => {
                let fresh_enough = conn.rec.expires_at.is_none_or(|e| e > now + min_ttl as i64);
                if !force && fresh_enough && calls == 0 {
                    // another flight refreshed it while we waited to become the runner
                    return Ok(current(&conn));
                }
            }
            Trigger::Scheduler => {
                // put or an on-demand refresh may have moved it since the scan
                if conn.rec.due_at.is_none_or(|d| d > now) {
                    return Ok(current(&conn));
                }
            }
            Trigger::Manual => {}
        }
        // an OAuth access token that still works is handed out even when no refresh can
        // happen (SPEC §5.4 statuses say what is wrong; the token is not taken away early)
        let serves_until_expiry = conn.provider.kind == ProviderKind::OAuth2
            && conn.rec.expires_at.is_some_and(|e| e > now);
        if conn.rec.status == Status::NeedsReauth
            && serves_until_expiry
            && matches!(trigger, Trigger::OnDemand { .. })
        {
            return Ok(current(&conn));
        }
        if matches!(conn.rec.status, Status::NeedsReauth | Status::Disconnected) {
            return Err(Error::NeedsReauth {
                connection: key.to_owned(),
                reason: conn
                    .rec
                    .reason
                    .clone()
                    .unwrap_or_else(|| conn.rec.status.to_string()),
            });
        }
        if !scheduled && super::caller::is_gone() && st.flights.waiters(key) == 0 {
            return finish(rf, &conn, trigger, pending, handover, Stop::CallerGone).await;
        }
        if let Err(at) = st.pace_call(key, now, || policy::Pace::seeded(&conn.rec)) {
            if scheduled {
                postpone_until(rf, key, at).await?;
                return Ok(current(&conn));
            }
            let still_valid = conn.rec.expires_at.is_none_or(|e| e > now);
            let wait = Duration::from_secs((at - now).max(0) as u64);
            // waiting for the budget is worth it for a token that has expired; a `get` of a
            // still-valid one waits out the floor at most, else is answered with it at once
            let get_of_valid = matches!(trigger, Trigger::OnDemand { .. })
                && still_valid
                && at - now > policy::MIN_WAIT_SECS;
            if !get_of_valid && wait < remaining() {
                if pause(rf, key, wait).await {
                    continue;
                }
                return finish(rf, &conn, trigger, pending, handover, Stop::CallerGone).await;
            }
            return finish(rf, &conn, trigger, pending, handover, Stop::Paced).await;
        }
        calls += 1;
        let started = std::time::Instant::now();
        let res = if scheduled {
            call(rf, &conn).await
        } else {
            // the provider's own timeout applies too; this only keeps the deadline
            match tokio::time::timeout(remaining(), call(rf, &conn)).await {
                Ok(r) => r,
                Err(_) => Err(CallError::Transient(
                    "the provider did not answer before the on-demand deadline".into(),
                )),
            }
        };
        rf.ctx.metrics().record_refresh(
            &conn.provider.name,
            match &res {
                Ok(_) => "ok",
                Err(CallError::InvalidGrant(_)) => "needs_reauth",
                Err(CallError::Config(_)) => "error",
                Err(CallError::RateLimited { .. }) => "rate_limited",
                Err(_) => "retrying",
            },
            started.elapsed(),
        );
        let end = rf.ctx.now();
        let err = match res {
            Ok(got) => {
                st.pace_answered(key, end, 0);
                let not_before = st.next_call_at(key).unwrap_or(end);
                return commit_success(rf, &conn, got, not_before).await;
            }
            Err(err) => err,
        };
        tracing::info!(
            connection = %rf.ctx.vault().pseudonym(key),
            reason = %err.reason(),
            "refresh failed"
        );
        let attempts_before = pending.as_ref().map_or(conn.rec.attempts, |t| t.attempts);
        let mut t =
            policy::after_failure(&err, end, conn.rec.expires_at, attempts_before, cap, unit());
        let serves_until_expiry = conn.provider.kind == ProviderKind::OAuth2
            && conn.rec.expires_at.is_some_and(|e| e > end);
        if !t.retryable
            && serves_until_expiry
            && let Some(exp) = conn.rec.expires_at
            && !t.reason.contains("works until")
        {
            t.reason = format!(
                "{}; the current access token still works until {}",
                t.reason,
                crate::vault::records::fmt_unix(exp)
            );
        }
        st.pace_answered(key, end, t.retry_at.map_or(0, |r| r - end));
        let next = st
            .next_call_at(key)
            .unwrap_or(end)
            .max(t.retry_at.unwrap_or(end));
        let still_valid = conn.rec.expires_at.is_none_or(|e| e > end);
        let stop = if !t.retryable
            && !scheduled
            && serves_until_expiry
            && matches!(trigger, Trigger::OnDemand { .. })
        {
            // the failure is recorded; the caller still gets the token that works
            Some(Stop::ServeCurrent)
        } else if !t.retryable || scheduled {
            Some(Stop::Failed(err))
        } else if matches!(trigger, Trigger::OnDemand { .. }) && still_valid {
            Some(Stop::ServeCurrent)
        } else if calls >= max_calls {
            Some(Stop::OutOfCalls(err, calls))
        } else if Duration::from_secs((next - end).max(0) as u64) >= remaining() {
            Some(Stop::MustWait(err))
        } else {
            None
        };
        if let Some(stop) = stop {
            return finish(rf, &conn, trigger, Some(t), handover, stop).await;
        }
        if t.status != conn.rec.status {
            let due = t.retry_at.map(|r| r.max(next).max(handover));
            commit_failure(rf, key, &t, due).await?;
            st.wake.notify_one();
            pending = None;
        } else {
            pending = Some(t);
        }
        let wait = Duration::from_secs((next - rf.ctx.now()).max(0) as u64);
        if !pause(rf, key, wait).await {
            return finish(rf, &conn, trigger, pending, handover, Stop::CallerGone).await;
        }
    }
}

/// Moves a due connection's next attempt to `at`: the call budget refused a scheduled
/// call now, so the scheduler comes back when it is allowed, not at once.
async fn postpone_until(rf: &Refresher, key: &str, at: i64) -> Result<()> {
    let job_key = key.to_owned();
    let job: super::commit::Job = Box::new(move |tx| {
        if let Some(mut cur) = tx.connection(&job_key)?
            && cur.due_at.is_some_and(|d| d < at)
        {
            cur.due_at = Some(at);
            tx.put_connection(&job_key, &cur)?;
        }
        Ok(JobOut::default())
    });
    rf.state()
        .commits
        .submit(rf.ctx.vault(), job)
        .await
        .map(|_| ())
}

/// Moves a connection that is still due after a failed scheduled refresh `secs` into the
/// future, so an error before any provider call (a broken record, a bad catalogue) cannot
/// make the scheduler spin. Failures the policy handled have already moved it.
pub async fn postpone_if_due(rf: &Refresher, key: &str, secs: i64) -> Result<()> {
    let now = rf.ctx.now();
    let job_key = key.to_owned();
    let job: super::commit::Job = Box::new(move |tx| {
        if let Some(mut cur) = tx.connection(&job_key)?
            && cur.due_at.is_some_and(|d| d <= now)
        {
            cur.due_at = Some(now + secs);
            tx.put_connection(&job_key, &cur)?;
        }
        Ok(JobOut::default())
    });
    rf.state()
        .commits
        .submit(rf.ctx.vault(), job)
        .await
        .map(|_| ())
}
