//! Refreshing one connection: load what the call needs, call the provider, apply the
//! policy, commit the result through the group commit, emit the status change.
//!
//! The order matters (SPEC §5.3): the new access token and a rotated refresh token are
//! committed in one durable transaction before the `Fresh` value (the only way a caller
//! gets the access token) is returned. A response without `refresh_token` keeps the old
//! one.

use super::commit::JobOut;
use super::policy::{self, Transition};
use crate::engine::{Engine, StatusEvent};
use crate::error::{Error, Result};
use crate::names::ConnectionId;
use crate::provider::catalogue::{Endpoints, Provider, ProviderKind};
use crate::provider::oauth::{self, CallError, ClientCreds};
use crate::secret::Secret;
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
}

/// Who asked for the refresh; decides retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `get`: refresh if fewer than `min_ttl` seconds remain (or always, if forced);
    /// retries inline with a short cap.
    OnDemand { min_ttl: u64, force: bool },
    /// `refresh CONNECTION`: always calls the provider once (plus short retries).
    Manual,
    /// The scheduler: one attempt; failures are rescheduled with a long cap.
    Scheduler,
}

/// Everything one provider call needs, read in one snapshot.
struct Ctx {
    id: ConnectionId,
    rec: ConnectionRecord,
    secrets: TokenSecrets,
    provider: Provider,
    endpoints: std::result::Result<Endpoints, String>,
    creds: std::result::Result<ClientCreds, String>,
}

fn load(engine: &Engine, key: &str) -> Result<Ctx> {
    let id = ConnectionId::parse(key)?;
    let rx = engine.vault().read()?;
    let rec = rx
        .connection(key)?
        .ok_or_else(|| Error::not_found("connection", key))?;
    let secrets = rx.secrets(key, &rec)?;
    let provider = engine.provider(&id.provider)?;
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
    Ok(Ctx {
        id,
        rec,
        secrets,
        provider,
        endpoints,
        creds,
    })
}

fn current(ctx: &Ctx) -> Fresh {
    Fresh {
        access_token: ctx.secrets.access_token.clone(),
        expires_at: ctx.rec.expires_at,
        token_type: ctx.rec.token_type.clone(),
        refreshed: false,
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

async fn call(engine: &Engine, ctx: &Ctx) -> std::result::Result<Got, CallError> {
    let now = engine.now();
    match ctx.provider.kind {
        ProviderKind::AppleMusic => {
            crate::provider::apple_validate(engine, &ctx.id.key()).await?;
            Ok(Got::Validated)
        }
        ProviderKind::Pat => {
            let ep = ctx
                .endpoints
                .as_ref()
                .map_err(|e| CallError::Config(e.clone()))?;
            let url = ep.validation_url.as_deref().ok_or_else(|| {
                CallError::Config(format!(
                    "provider {} has no validation URL",
                    ctx.provider.name
                ))
            })?;
            let http = engine.refresh_state().http()?;
            oauth::validate_bearer(&http, url, &ctx.secrets.access_token, now).await?;
            Ok(Got::Validated)
        }
        ProviderKind::OAuth2 => {
            let ep = ctx
                .endpoints
                .as_ref()
                .map_err(|e| CallError::Config(e.clone()))?;
            let url = ep.token_url.as_deref().ok_or_else(|| {
                CallError::Config(format!(
                    "provider {} has no token URL: set one with `client set … --token-url URL` or a [providers.{}] table",
                    ctx.provider.name, ctx.provider.name
                ))
            })?;
            let creds = ctx
                .creds
                .as_ref()
                .map_err(|e| CallError::Config(e.clone()))?;
            let mut form: Vec<(String, String)> = Vec::new();
            let cc = ctx.secrets.extra.get(GRANT_MARKER).and_then(|v| v.as_str())
                == Some("client_credentials");
            match (&ctx.secrets.refresh_token, cc) {
                (_, true) => {
                    form.push(("grant_type".into(), "client_credentials".into()));
                    if let Some(s) = &ctx.rec.scope {
                        form.push(("scope".into(), s.clone()));
                    }
                }
                (Some(rt), false) => {
                    form.push(("grant_type".into(), "refresh_token".into()));
                    form.push(("refresh_token".into(), rt.expose().to_owned()));
                }
                (None, false) => {
                    return Err(CallError::InvalidGrant(
                        "the connection has no refresh token and its access token expired".into(),
                    ));
                }
            }
            for (k, v) in &ctx.provider.token_params {
                form.push((k.clone(), v.clone()));
            }
            let http = engine.refresh_state().http()?;
            let r = oauth::token_request(&http, url, creds, form, now).await?;
            Ok(Got::Tokens(r))
        }
    }
}

/// Commits a successful refresh (or validation) of `key` and returns the token.
async fn commit_success(engine: &Engine, ctx: &Ctx, got: Got) -> Result<Fresh> {
    let key = ctx.id.key();
    let now = engine.now();
    let provider = ctx.provider.clone();
    let u = unit();
    let fresh_slot = std::sync::Arc::new(std::sync::Mutex::new(None::<Fresh>));
    let slot = fresh_slot.clone();
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
                cur.due_at = due;
                let s = tx.secrets(&job_key, &cur)?;
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(Fresh {
                    access_token: s.access_token,
                    expires_at: cur.expires_at,
                    token_type: cur.token_type.clone(),
                    refreshed: true,
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
                cur.due_at = due;
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
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(Fresh {
                    access_token: secrets.access_token.clone(),
                    expires_at: cur.expires_at,
                    token_type: cur.token_type.clone(),
                    refreshed: true,
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
    let out = engine
        .refresh_state()
        .commits
        .submit(engine.vault(), job)
        .await?;
    if let Some(ev) = out.event {
        engine.emit(ev);
    }
    let fresh = fresh_slot
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .ok_or_else(|| Error::Internal("refresh result missing after commit".into()))?;
    Ok(fresh)
}

/// Commits a failed attempt: status, reason, attempt count and retry time.
async fn commit_failure(
    engine: &Engine,
    key: &str,
    err: &CallError,
    cap: Duration,
) -> Result<Transition> {
    let now = engine.now();
    let u = unit();
    let err = err.clone();
    let job_key = key.to_owned();
    let job: super::commit::Job = Box::new(move |tx| {
        let mut cur = tx
            .connection(&job_key)?
            .ok_or_else(|| Error::not_found("connection", job_key.clone()))?;
        let from = cur.status;
        let t = policy::after_failure(&err, now, cur.expires_at, cur.attempts, cap, u);
        if from != t.status {
            cur.status_at = now;
        }
        cur.status = t.status;
        cur.reason = Some(t.reason.clone());
        cur.attempts = t.attempts;
        cur.due_at = t.retry_at;
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
            transition: Some(t),
        })
    });
    let out = engine
        .refresh_state()
        .commits
        .submit(engine.vault(), job)
        .await?;
    if let Some(ev) = out.event {
        engine.emit(ev);
    }
    out.transition
        .ok_or_else(|| Error::Internal("failure transition missing after commit".into()))
}

/// Refreshes `key` for `trigger`, sharing the work with every concurrent caller of the
/// same connection (single flight).
pub async fn refresh(engine: &Engine, key: &str, trigger: Trigger) -> Result<Fresh> {
    let st = engine.refresh_state();
    let r = st
        .flights
        .run(key, || async {
            attempts(engine, key, trigger)
                .await
                .map_err(std::sync::Arc::new)
        })
        .await;
    r.map_err(|e| super::clone_error(&e))
}

async fn attempts(engine: &Engine, key: &str, trigger: Trigger) -> Result<Fresh> {
    let st = engine.refresh_state();
    let (max_failures, cap) = match trigger {
        Trigger::Scheduler => (1, policy::SCHEDULER_CAP),
        _ => (st.on_demand_attempts(), policy::ON_DEMAND_CAP),
    };
    let mut failures = 0u32;
    loop {
        let ctx = load(engine, key)?;
        let now = engine.now();
        match trigger {
            Trigger::OnDemand { min_ttl, force } => {
                let fresh_enough = ctx.rec.expires_at.is_none_or(|e| e > now + min_ttl as i64);
                if !force && fresh_enough && failures == 0 {
                    // another flight refreshed it while we waited to become the runner
                    return Ok(current(&ctx));
                }
            }
            Trigger::Scheduler => {
                // put or an on-demand refresh may have moved it since the scan
                if ctx.rec.due_at.is_none_or(|d| d > now) {
                    return Ok(current(&ctx));
                }
            }
            Trigger::Manual => {}
        }
        if matches!(ctx.rec.status, Status::NeedsReauth | Status::Disconnected) {
            return Err(Error::NeedsReauth {
                connection: key.to_owned(),
                reason: ctx
                    .rec
                    .reason
                    .clone()
                    .unwrap_or_else(|| ctx.rec.status.to_string()),
            });
        }
        let started = std::time::Instant::now();
        let res = call(engine, &ctx).await;
        engine.metrics().record_refresh(
            &ctx.provider.name,
            match &res {
                Ok(_) => "ok",
                Err(CallError::InvalidGrant(_)) => "needs_reauth",
                Err(CallError::Config(_)) => "error",
                Err(CallError::RateLimited { .. }) => "rate_limited",
                Err(_) => "retrying",
            },
            started.elapsed(),
        );
        match res {
            Ok(got) => return commit_success(engine, &ctx, got).await,
            Err(err) => {
                tracing::info!(
                    connection = %engine.vault().pseudonym(key),
                    reason = %err.reason(),
                    "refresh failed"
                );
                let t = commit_failure(engine, key, &err, cap).await?;
                let give_up = |err: CallError| -> Result<Fresh> {
                    // A transient failure while the stored token is still valid serves it.
                    if matches!(trigger, Trigger::OnDemand { .. })
                        && t.retryable
                        && ctx.rec.expires_at.is_none_or(|e| e > engine.now())
                    {
                        return Ok(current(&ctx));
                    }
                    Err(err.into_error(key))
                };
                if !t.retryable || trigger == Trigger::Scheduler {
                    return give_up(err);
                }
                let wait = match &err {
                    CallError::RateLimited { .. } => {
                        let w = t.retry_at.unwrap_or(now) - engine.now();
                        if w > st.max_inline_wait_secs() {
                            return give_up(err);
                        }
                        Duration::from_secs(w.max(0) as u64)
                    }
                    _ => {
                        failures += 1;
                        if failures >= max_failures {
                            return give_up(err);
                        }
                        policy::backoff(failures, policy::BACKOFF_BASE, cap, unit())
                    }
                };
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Moves a connection that is still due after a failed scheduled refresh `secs` into the
/// future, so an error before any provider call (a broken record, a bad catalogue) cannot
/// make the scheduler spin. Failures the policy handled have already moved it.
pub async fn postpone_if_due(engine: &Engine, key: &str, secs: i64) -> Result<()> {
    let now = engine.now();
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
    engine
        .refresh_state()
        .commits
        .submit(engine.vault(), job)
        .await
        .map(|_| ())
}
