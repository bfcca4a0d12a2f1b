//! `test CONNECTION` (SPEC §3, §5.5; the socket op `test`): asks the provider whether it
//! still accepts a connection's access token, by a GET on the provider's
//! `validation_url` with the token as a Bearer credential. Tenant-scoped like `get`.
//!
//! What the answer does: 2xx → `Tested`, nothing recorded; a rejection (401/403, Google's
//! 400 `invalid_token`) → the connection becomes `needs_reauth` like any provider answer
//! that kills a grant, and the caller gets `needs_reauth` (exit 6); 429, 5xx and network
//! errors → `provider_unavailable` (exit 7), nothing recorded (one failed check says
//! nothing about the token); any other answer, or no validation URL → `config_error`.
//! An access token that has already expired is refreshed first, exactly as `get` would;
//! `apple-music` connections take Apple's own check (SPEC §7), which records its result.
//!
//! Must not: hand the token to the caller (it goes to the provider only), hold a
//! transaction across the HTTP call, or record a result for a token that was replaced
//! meanwhile (the sealed record's nonce is compared before writing).

use super::{Caller, Engine, Response, StatusEvent};
use crate::contract::TestView;
use crate::error::{Error, Result};
use crate::names::ConnectionId;
use crate::provider::ProviderKind;
use crate::provider::oauth::{self, CallError};
use crate::vault::records::Status;

/// `scheme://host[:port]/path` of `url`: what messages and answers may name.
fn endpoint_of(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => {
            format!(
                "{}://{}{}",
                u.scheme(),
                u.host_str().unwrap_or(""),
                u.port().map(|p| format!(":{p}")).unwrap_or_default()
            ) + u.path()
        }
        Err(_) => "the validation URL".into(),
    }
}

impl Engine {
    /// Answers `test` for `caller` (see the module docs).
    pub(crate) async fn test_connection(
        &self,
        caller: &Caller,
        connection: &str,
    ) -> Result<Response> {
        let id = ConnectionId::parse(connection)?;
        caller.require_tenant(&id.tenant)?;
        let key = id.key();
        let provider = self.ctx.provider(&id.provider)?;
        let outcome = if provider.kind == ProviderKind::AppleMusic {
            self.test_apple(caller, &id).await
        } else {
            self.test_bearer(&id, &provider).await
        };
        let verdict = match &outcome {
            Ok(_) => "valid",
            Err(Error::NeedsReauth { .. }) => "rejected",
            Err(Error::ProviderUnavailable { .. }) => "unavailable",
            Err(_) => "failed",
        };
        self.ctx
            .queue_audit(caller, "test", &id.tenant, &key, verdict);
        outcome.map(Response::Tested)
    }

    async fn test_apple(&self, caller: &Caller, id: &ConnectionId) -> Result<TestView> {
        match self.apple.validate_connection(caller, &id.key()).await? {
            Response::Connection(c) => Ok(TestView {
                connection: id.key(),
                valid: true,
                endpoint: "the Apple Music API (/v1/me/storefront)".into(),
                http_status: None,
                refreshed: false,
                status: c.status,
            }),
            _ => Err(Error::Internal(
                "unexpected answer of the Apple Music check".into(),
            )),
        }
    }

    async fn test_bearer(
        &self,
        id: &ConnectionId,
        provider: &crate::provider::Provider,
    ) -> Result<TestView> {
        let key = id.key();
        let expired = {
            let rx = self.ctx.vault().read()?;
            let rec = rx
                .connection(&key)?
                .ok_or_else(|| Error::not_found("connection", key.clone()))?;
            rec.expires_at.is_some_and(|e| e <= self.ctx.now())
        };
        // an expired token would be refused for that alone: renew it first, as `get` does
        // (with the same errors when that is impossible)
        let refreshed = if expired {
            self.refresh.on_demand(&key, 0, false).await?.refreshed
        } else {
            false
        };
        let (url, token, nonce) = {
            let rx = self.ctx.vault().read()?;
            let rec = rx
                .connection(&key)?
                .ok_or_else(|| Error::not_found("connection", key.clone()))?;
            let client = rx.client(&id.tenant, &id.provider)?;
            let url = provider
                .endpoints(client.as_ref())?
                .validation_url
                .ok_or_else(|| {
                    Error::Config(format!(
                        "provider {} has no validation endpoint, so {key} cannot be tested: set validation_url in a [providers.{}] table of the config file",
                        provider.name, provider.name
                    ))
                })?;
            let secrets = rx.secrets(&key, &rec)?;
            (url, secrets.access_token, rec.secrets.nonce.clone())
        };
        let endpoint = endpoint_of(&url);
        let http = self
            .refresh
            .state()
            .http()
            .map_err(|e| e.into_error(&key))?;
        let answer = oauth::validate_token(&http, &url, &token, self.ctx.now()).await;
        drop(token);
        match answer {
            Ok(status) => {
                let now_status = self
                    .vault()
                    .read()?
                    .connection(&key)?
                    .map(|r| r.status)
                    .unwrap_or(Status::Disconnected);
                Ok(TestView {
                    connection: key,
                    valid: true,
                    endpoint,
                    http_status: Some(status),
                    refreshed,
                    status: now_status,
                })
            }
            Err(CallError::InvalidGrant(why)) => {
                let reason = format!("{why} ({endpoint}, tokenvault test)");
                self.record_rejection(&key, &nonce, &reason)?;
                Err(Error::NeedsReauth {
                    connection: key,
                    reason,
                })
            }
            Err(CallError::Config(why)) => Err(Error::Config(format!("{key}: {why} ({endpoint})"))),
            Err(e) => Err(Error::ProviderUnavailable {
                connection: key,
                reason: format!("{} ({endpoint}); the token was not judged", e.reason()),
            }),
        }
    }

    /// Records a rejected token as `needs_reauth` (no retry: the grant is dead), unless
    /// the connection was removed or its token replaced since it was read.
    fn record_rejection(&self, key: &str, nonce: &[u8], reason: &str) -> Result<()> {
        let now = self.ctx.now();
        let tx = self.ctx.vault().write()?;
        let Some(mut rec) = tx.connection(key)? else {
            return Ok(());
        };
        if rec.secrets.nonce != nonce {
            return Ok(());
        }
        let from = rec.status;
        if from != Status::NeedsReauth {
            rec.status_at = now;
        }
        rec.status = Status::NeedsReauth;
        rec.reason = Some(reason.to_owned());
        // the provider refused this very token: it is not handed out as still valid
        rec.expires_at = Some(rec.expires_at.map_or(now, |e| e.min(now)));
        rec.attempts = rec.attempts.saturating_add(1);
        rec.due_at = None;
        rec.updated_at = now;
        tx.put_connection(key, &rec)?;
        tx.commit()?;
        if from != Status::NeedsReauth {
            self.ctx.emit(StatusEvent {
                connection: key.to_owned(),
                from: Some(from),
                to: Some(Status::NeedsReauth),
                reason: Some(reason.to_owned()),
                at: now,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_named_without_their_query() {
        assert_eq!(
            endpoint_of("https://api.example/v1/me?access_token=SECRET"),
            "https://api.example/v1/me"
        );
        assert_eq!(
            endpoint_of("http://127.0.0.1:8080/me"),
            "http://127.0.0.1:8080/me"
        );
        assert_eq!(endpoint_of("not a url SECRET"), "the validation URL");
    }
}
