//! `refresh CONNECTION` (at most once per 10 s per connection), `refresh --due` (one
//! scheduler pass from the command line) and `refresh --tenant T`, with one result per
//! connection. The refreshing itself is the refresh engine's (`refresh::Refresher`).

use super::Engine;
use crate::contract::{Caller, RefreshResult, Response};
use crate::error::{Error, Result};
use crate::names::ConnectionId;
use crate::refresh::Trigger;
use crate::refresh::scheduler::HostLimits;
use crate::vault::records::Status;
use futures::StreamExt;

/// Concurrent refreshes of one `refresh --due` / `--tenant` pass (all hosts); each host
/// is further held to `[scheduler] per_host_concurrency`.
const PASS_CONCURRENCY: usize = 16;

impl Engine {
    /// `refresh CONNECTION`: calls the provider now (at most once per 10 s per connection).
    pub(super) async fn refresh_connection(
        &self,
        caller: &Caller,
        connection: &str,
    ) -> Result<Response> {
        let id = ConnectionId::parse(connection)?;
        caller.require_tenant(&id.tenant)?;
        let key = id.key();
        if self.ctx.vault().read()?.connection(&key)?.is_none() {
            return Err(Error::not_found("connection", key));
        }
        if !self.refresh.state().allow_forced(&key, self.ctx.now()) {
            return Ok(Response::Refreshed {
                results: vec![RefreshResult {
                    connection: key,
                    outcome: "skipped".into(),
                    status: None,
                    expires_at: None,
                    reason: Some("refreshed less than 10 s ago".into()),
                    error_code: None,
                }],
            });
        }
        let f = crate::refresh::refresh(&self.refresh, &key, Trigger::Manual).await?;
        let rec = self.ctx.vault().read()?.connection(&key)?;
        Ok(Response::Refreshed {
            results: vec![RefreshResult {
                connection: key,
                outcome: "refreshed".into(),
                status: rec.map(|r| r.status),
                expires_at: f.expires_at,
                reason: None,
                error_code: None,
            }],
        })
    }

    /// `refresh --due`: one scheduler pass from the CLI.
    pub(super) async fn refresh_due(&self, caller: &Caller) -> Result<Response> {
        caller.require_admin()?;
        let keys: Vec<String> = self
            .ctx
            .vault()
            .read()?
            .due(self.ctx.now(), usize::MAX)?
            .into_iter()
            .map(|(_, k)| k)
            .collect();
        let results = self.refresh_pass(keys, Trigger::Scheduler, false).await;
        Ok(Response::Refreshed { results })
    }

    /// `refresh --tenant T`: every connection of a tenant, now.
    pub(super) async fn refresh_tenant(&self, caller: &Caller, tenant: &str) -> Result<Response> {
        crate::names::validate_tenant(tenant)?;
        caller.require_tenant(tenant)?;
        let keys: Vec<String> = self
            .ctx
            .vault()
            .read()?
            .connections(&format!("{tenant}/"))?
            .into_iter()
            .filter(|(_, r)| !matches!(r.status, Status::NeedsReauth | Status::Disconnected))
            .map(|(k, _)| k)
            .collect();
        let mut results = self.refresh_pass(keys, Trigger::Manual, true).await;
        results.sort_by(|a, b| a.connection.cmp(&b.connection));
        Ok(Response::Refreshed { results })
    }

    /// Refreshes `keys`, at most `PASS_CONCURRENCY` at once and within the scheduler's
    /// per-host bound (`[scheduler] per_host_concurrency`).
    async fn refresh_pass(
        &self,
        keys: Vec<String>,
        trigger: Trigger,
        rate_limit: bool,
    ) -> Vec<RefreshResult> {
        let limits = HostLimits::new(&self.refresh);
        futures::stream::iter(keys)
            .map(|k| {
                let limits = limits.clone();
                async move {
                    let _slot = limits.acquire(&self.refresh, &k).await;
                    self.refresh_one(&k, trigger, rate_limit).await
                }
            })
            .buffer_unordered(PASS_CONCURRENCY)
            .collect()
            .await
    }

    async fn refresh_one(&self, key: &str, trigger: Trigger, rate_limit: bool) -> RefreshResult {
        if rate_limit && !self.refresh.state().allow_forced(key, self.ctx.now()) {
            return RefreshResult {
                connection: key.to_owned(),
                outcome: "skipped".into(),
                status: None,
                expires_at: None,
                reason: Some("refreshed less than 10 s ago".into()),
                error_code: None,
            };
        }
        let r = crate::refresh::refresh(&self.refresh, key, trigger).await;
        let rec = self
            .ctx
            .vault()
            .read()
            .ok()
            .and_then(|rx| rx.connection(key).ok().flatten());
        match r {
            Ok(f) => RefreshResult {
                connection: key.to_owned(),
                outcome: if f.refreshed { "refreshed" } else { "skipped" }.into(),
                status: rec.as_ref().map(|r| r.status),
                expires_at: f.expires_at,
                reason: if f.refreshed {
                    None
                } else {
                    Some("not due".into())
                },
                error_code: None,
            },
            Err(e) => RefreshResult {
                connection: key.to_owned(),
                outcome: "failed".into(),
                status: rec.as_ref().map(|r| r.status),
                expires_at: rec.as_ref().and_then(|r| r.expires_at),
                reason: Some(e.to_string()),
                error_code: Some(e.code().into()),
            },
        }
    }
}
