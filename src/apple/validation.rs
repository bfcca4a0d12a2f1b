//! Validation of Music-User-Tokens (`apple-music` connections, SPEC §7): one check against
//! the Apple Music API through `user`, recorded as the connection's status with the next
//! check's time. The refresh engine calls `AppleMusic::check` (its "refresh" of such a
//! connection); `tokenvault test` calls `AppleMusic::validate_connection`.
//!
//! Must not: hold a transaction open across the HTTP request (the connection is read, the
//! request made, then the result written in a new transaction that first checks the token
//! was not replaced meanwhile).

use super::AppleMusic;
use super::{PROVIDER, user};
use crate::contract::{Caller, ConnectionView, Response, StatusEvent};
use crate::error::{Error, Result};
use crate::names::ConnectionId;
use crate::vault::records::{ConnectionRecord, Status};

impl AppleMusic {
    /// Validates an `apple-music` connection now: `GET {api_base}/v1/me/storefront` with
    /// the tenant's developer token and the connection's Music-User-Token, then records the
    /// result as the connection's status (emitting a `StatusEvent` on a change) and sets
    /// its next validation time (`due_at`):
    ///
    /// - 2xx → `connected` (reason "validated"), next check after `validate_interval_secs`;
    /// - 401/403 → `needs_reauth`, not scheduled again; returns `Error::NeedsReauth`;
    /// - 429/5xx/network → `retrying` with a growing, jittered delay (or `Retry-After`);
    ///   returns `Error::ProviderUnavailable`;
    /// - other answers, or no active signing key → `error` (configuration); returns
    ///   `Error::Config`.
    ///
    /// `refresh CONNECTION` and the scheduler call this for `apple-music` connections. If
    /// the token is replaced (`put`) while the request is in flight, the result is dropped.
    pub async fn validate_connection(&self, caller: &Caller, connection: &str) -> Result<Response> {
        let id = ConnectionId::parse(connection)?;
        caller.require_tenant(&id.tenant)?;
        if id.provider != PROVIDER {
            return Err(Error::invalid(
                "connection",
                format!("{id} is not an {PROVIDER} connection"),
            ));
        }
        let key = id.key();
        let policy = self.policy()?;
        let (nonce, user_token) = {
            let rx = self.ctx.vault().read()?;
            let rec = rx
                .connection(&key)?
                .ok_or_else(|| Error::not_found("connection", id.to_string()))?;
            let secrets = rx.secrets(&key, &rec)?;
            (rec.secrets.nonce.clone(), secrets.access_token)
        };
        let dev = match self.developer_token(&id.tenant, 0) {
            Ok(t) => t.token,
            Err(e @ (Error::NotFound { .. } | Error::Config(_))) => {
                let reason = format!("cannot validate: {e}");
                self.record_validation(&id, &nonce, Status::Error, &reason, None)?;
                return Err(Error::Config(reason));
            }
            Err(e) => return Err(e),
        };
        let outcome = user::validate(self.state.http()?, &policy.api_base, &dev, &user_token).await;
        drop((dev, user_token));
        let now = self.ctx.now();
        match outcome {
            user::Outcome::Valid => {
                let jitter = rand::random_range(0..=policy.validate_interval_secs / 10) as i64;
                let due = now + policy.validate_interval_secs as i64 + jitter;
                let rec =
                    self.record_validation(&id, &nonce, Status::Connected, "validated", Some(due))?;
                match rec {
                    Some(rec) => Ok(Response::Connection(ConnectionView::new(&id, &rec))),
                    None => Err(Error::not_found("connection", id.to_string())),
                }
            }
            user::Outcome::NeedsReauth { status } => {
                let reason = format!(
                    "the Apple Music API answered {status} to /v1/me/storefront: the Music-User-Token is no longer accepted"
                );
                self.record_validation(&id, &nonce, Status::NeedsReauth, &reason, None)?;
                Err(Error::NeedsReauth {
                    connection: key,
                    reason,
                })
            }
            user::Outcome::RetryLater {
                reason,
                retry_after,
            } => {
                let attempts = {
                    let rx = self.ctx.vault().read()?;
                    rx.connection(&key)?.map(|r| r.attempts).unwrap_or(0) + 1
                };
                let cap = policy.validate_interval_secs;
                let delay = match retry_after {
                    Some(s) => s.clamp(1, cap),
                    None => {
                        let base = 60u64.saturating_mul(1 << attempts.min(16).saturating_sub(1));
                        let d = base.min(cap).max(1);
                        rand::random_range(d / 2..=d)
                    }
                };
                self.record_validation(
                    &id,
                    &nonce,
                    Status::Retrying,
                    &reason,
                    Some(now + delay as i64),
                )?;
                Err(Error::ProviderUnavailable {
                    connection: key,
                    reason,
                })
            }
            user::Outcome::Rejected { status } => {
                let reason = format!(
                    "the Apple Music API answered {status} to /v1/me/storefront; check [apple_music] api_base and the signing key"
                );
                self.record_validation(&id, &nonce, Status::Error, &reason, None)?;
                Err(Error::Config(reason))
            }
        }
    }

    /// Writes a validation result, unless the connection was removed or its token replaced
    /// meanwhile (then returns the current record unchanged, or `None`).
    fn record_validation(
        &self,
        id: &ConnectionId,
        secrets_nonce: &[u8],
        status: Status,
        reason: &str,
        due_at: Option<i64>,
    ) -> Result<Option<ConnectionRecord>> {
        let key = id.key();
        let now = self.ctx.now();
        let tx = self.ctx.vault().write()?;
        let Some(mut rec) = tx.connection(&key)? else {
            return Ok(None);
        };
        if rec.secrets.nonce != secrets_nonce {
            return Ok(Some(rec));
        }
        let from = rec.status;
        if from != status {
            rec.status_at = now;
        }
        rec.status = status;
        rec.reason = Some(reason.to_owned());
        rec.attempts = if status == Status::Retrying {
            rec.attempts.saturating_add(1)
        } else {
            0
        };
        if status == Status::Connected {
            rec.last_refresh_at = Some(now);
        }
        rec.due_at = due_at;
        rec.updated_at = now;
        tx.put_connection(&key, &rec)?;
        tx.commit()?;
        if from != status {
            self.ctx.emit(StatusEvent {
                connection: key,
                from: Some(from),
                to: Some(status),
                reason: Some(reason.to_owned()),
                at: now,
            });
        }
        Ok(Some(rec))
    }
}

impl AppleMusic {
    /// The check alone, for the refresh engine (which records statuses, backoff and the
    /// next due time the same way for every provider): asks Apple whether the connection's
    /// Music-User-Token is still accepted (`GET {api_base}/v1/me/storefront`, SPEC §7) and
    /// classifies the answer: `Ok(())` keeps it `connected`; `InvalidGrant` (401/403) →
    /// `needs_reauth`; `Transient`/`RateLimited` → retried; `Config` → `error`.
    pub(crate) async fn check(
        &self,
        connection: &str,
    ) -> std::result::Result<(), crate::provider::oauth::CallError> {
        use crate::provider::oauth::CallError;
        let config = |e: Error| CallError::Config(e.to_string());
        let id = ConnectionId::parse(connection).map_err(config)?;
        let policy = self.policy().map_err(config)?;
        let user_token = {
            let rx = self
                .ctx
                .vault()
                .read()
                .map_err(|e| CallError::Transient(e.to_string()))?;
            let rec = rx
                .connection(&id.key())
                .map_err(|e| CallError::Transient(e.to_string()))?
                .ok_or_else(|| CallError::Config(format!("connection {id} not found")))?;
            rx.secrets(&id.key(), &rec).map_err(config)?.access_token
        };
        let dev = self
            .developer_token(&id.tenant, 0)
            .map_err(|e| {
                CallError::Config(format!("cannot validate without a developer token: {e}"))
            })?
            .token;
        let http = self.state.http().map_err(config)?;
        match user::validate(http, &policy.api_base, &dev, &user_token).await {
            user::Outcome::Valid => Ok(()),
            user::Outcome::NeedsReauth { status } => Err(CallError::InvalidGrant(format!(
                "the Apple Music API answered {status} to /v1/me/storefront: the Music-User-Token is no longer accepted"
            ))),
            user::Outcome::RetryLater {
                retry_after: Some(s),
                ..
            } => Err(CallError::RateLimited {
                retry_after: Some(s),
            }),
            user::Outcome::RetryLater { reason, .. } => Err(CallError::Transient(reason)),
            user::Outcome::Rejected { status } => Err(CallError::Config(format!(
                "the Apple Music API answered {status} to /v1/me/storefront; check [apple_music] api_base and the signing key"
            ))),
        }
    }
}
