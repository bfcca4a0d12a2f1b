//! Connections: `put` (import a token), `get` (hand one out, refreshing on demand),
//! `show`, `list` (paged), `remove`, and `store_token`, the one way a newly received token
//! is written (by `put` and by every `connect` flow).
//!
//! `get`'s fast path is the vault's hand-out cache (see `vault::CachedToken` for why it
//! cannot be stale); a refresh that cannot happen never takes a still-valid OAuth access
//! token away (it is served until it expires, while status and reason say what is wrong).

use super::{Engine, done};
use crate::contract::{Caller, ConnectionView, Response, StatusEvent};
use crate::error::{Error, Result};
use crate::names::{self, ConnectionId};
use crate::refresh::connection::GRANT_MARKER;
use crate::token::TokenResponse;
use crate::vault::records::{ConnectionHead, ConnectionRecord, Status};

/// Which part of the list a `list` request wants.
#[derive(Debug, Default)]
pub(super) struct Page {
    pub limit: Option<usize>,
    pub after: Option<String>,
    pub contains: Option<String>,
}

/// How a new token came in, for its record, audit and event.
#[derive(Debug)]
pub(super) struct Arrival<'a> {
    /// The audit action: `put` or `connect`.
    pub action: &'a str,
    /// The status reason: `imported`, `connected (code flow)`, …
    pub reason: &'a str,
    /// A client-credentials grant: stored as a marker so the refresh engine renews it
    /// with a new grant instead of a refresh token.
    pub grant: Option<&'a str>,
}

impl Engine {
    pub(super) fn put(
        &self,
        caller: &Caller,
        connection: &str,
        token: serde_json::Value,
    ) -> Result<Response> {
        let id = ConnectionId::parse(connection)?;
        caller.require_tenant(&id.tenant)?;
        self.ctx.known_provider(&id.provider)?;
        let parsed = TokenResponse::from_value(token, self.ctx.now())?;
        self.store_token(
            caller,
            &id,
            parsed,
            Arrival {
                action: "put",
                reason: "imported",
                grant: None,
            },
        )?;
        Ok(done(format!("connection {id} stored")))
    }

    /// Writes a newly received token as a `connected` connection, with its audit record
    /// in the same transaction; then wakes the scheduler (the new due time may be the
    /// earliest) and publishes the status change.
    pub(super) fn store_token(
        &self,
        caller: &Caller,
        id: &ConnectionId,
        mut resp: TokenResponse,
        how: Arrival<'_>,
    ) -> Result<ConnectionRecord> {
        let key = id.key();
        let now = self.ctx.now();
        if let Some(g) = how.grant {
            resp.secrets
                .extra
                .insert(GRANT_MARKER.into(), serde_json::Value::String(g.into()));
        }
        let renewable = resp.secrets.refresh_token.is_some() || how.grant.is_some();
        // due time and default lifetime of SPEC §5.1
        let (expires_at, due_at) = self.refresh.plan_for(id, resp.expires_at, renewable)?;
        let refresh_expires_at = self.refresh.refresh_expiry_for(
            id,
            resp.refresh_expires_at,
            resp.secrets.refresh_token.is_some(),
        )?;
        let tx = self.ctx.vault().write()?;
        self.ctx.require_tenant_exists(&tx, &id.tenant)?;
        let old = tx.connection(&key)?;
        let rec = ConnectionRecord {
            status: Status::Connected,
            reason: Some(how.reason.to_owned()),
            status_at: now,
            attempts: 0,
            expires_at,
            refresh_expires_at,
            due_at,
            scope: resp.scope.clone(),
            token_type: resp.token_type.clone(),
            has_refresh_token: resp.secrets.refresh_token.is_some(),
            has_id_token: resp.secrets.id_token.is_some(),
            metadata_keys: resp.secrets.extra.keys().cloned().collect(),
            created_at: old.as_ref().map(|o| o.created_at).unwrap_or(now),
            updated_at: now,
            last_refresh_at: old.as_ref().and_then(|o| o.last_refresh_at),
            refresh_count: old.as_ref().map(|o| o.refresh_count).unwrap_or(0),
            secrets: tx.seal_new(&key, &resp.secrets),
        };
        tx.put_connection(&key, &rec)?;
        self.ctx
            .audit_in(&tx, caller, how.action, Some(&id.tenant), &key, "ok")?;
        tx.commit()?;
        self.refresh.wake();
        if old.as_ref().map(|o| o.status) != Some(Status::Connected) {
            self.ctx.emit(StatusEvent {
                connection: key,
                from: old.map(|o| o.status),
                to: Some(Status::Connected),
                reason: Some(how.reason.to_owned()),
                at: now,
            });
        }
        Ok(rec)
    }

    pub(super) async fn get(
        &self,
        caller: &Caller,
        connection: &str,
        min_ttl: Option<u64>,
        force_refresh: bool,
    ) -> Result<Response> {
        // `TENANT/apple-music` (two parts): the tenant's developer token (SPEC §7).
        if let Some(tenant) = crate::apple::developer_token_tenant(connection) {
            return self.apple.hand_out(caller, tenant, min_ttl.unwrap_or(0));
        }
        let min_ttl = min_ttl.unwrap_or(30);
        let id = ConnectionId::parse(connection)?;
        caller.require_tenant(&id.tenant)?;
        let key = id.key();
        let now = self.ctx.now();
        // Fast path: an opened token cached by an earlier hand-out, still valid for
        // `min_ttl` (see `vault::TokenCache` for why it cannot be stale).
        if !force_refresh
            && let Some(c) = self.ctx.vault().cached_token(&key)
            // the same statuses the read below hands a token out for
            && !matches!(c.status, Status::NeedsReauth | Status::Disconnected)
            && c.expires_at.is_none_or(|exp| exp > now + min_ttl as i64)
        {
            self.ctx.queue_audit(caller, "get", &id.tenant, &key, "ok");
            return Ok(Response::Token {
                connection: key,
                token: c.access_token,
                expires_at: c.expires_at,
                token_type: c.token_type,
            });
        }
        let generation = self.ctx.vault().cache_generation();
        let rx = self.ctx.vault().read()?;
        let rec = rx
            .connection(&key)?
            .ok_or_else(|| Error::not_found("connection", id.to_string()))?;
        let needs_refresh = force_refresh
            || rec
                .expires_at
                .is_some_and(|exp| exp <= now + min_ttl as i64);
        // A refresh that cannot happen (no refresh token, a revoked grant, a client
        // misconfigured) never takes a still-valid OAuth access token away: it is served
        // until it expires, while the status and reason say what is wrong.
        let still_serves = rec.status == Status::NeedsReauth
            && rec.expires_at.is_some_and(|exp| exp > now)
            && self
                .ctx
                .provider(&id.provider)
                .is_ok_and(|p| p.kind == crate::provider::catalogue::ProviderKind::OAuth2);
        let outcome = match rec.status {
            Status::NeedsReauth if still_serves => rx
                .secrets(&key, &rec)
                .map(|s| (s.access_token, rec.expires_at, rec.token_type.clone())),
            Status::NeedsReauth | Status::Disconnected => Err(Error::NeedsReauth {
                connection: key.clone(),
                reason: rec.reason.clone().unwrap_or_else(|| rec.status.to_string()),
            }),
            _ if needs_refresh => {
                // on-demand refresh, shared with concurrent callers (refresh engine); no
                // read snapshot is held across the provider call
                drop(rx);
                self.refresh
                    .on_demand(&key, min_ttl, force_refresh)
                    .await
                    .map(|f| (f.access_token, f.expires_at, f.token_type))
            }
            _ => rx.secrets(&key, &rec).map(|s| {
                self.ctx.vault().cache_insert(
                    generation,
                    &key,
                    crate::vault::CachedToken {
                        status: rec.status,
                        expires_at: rec.expires_at,
                        token_type: rec.token_type.clone(),
                        access_token: s.access_token.clone(),
                    },
                );
                (s.access_token, rec.expires_at, rec.token_type.clone())
            }),
        };
        self.ctx.queue_audit(
            caller,
            "get",
            &id.tenant,
            &key,
            if outcome.is_ok() { "ok" } else { "refused" },
        );
        let (token, expires_at, token_type) = outcome?;
        Ok(Response::Token {
            connection: key,
            token,
            expires_at,
            token_type,
        })
    }

    pub(super) fn show(&self, caller: &Caller, connection: &str) -> Result<Response> {
        let id = ConnectionId::parse(connection)?;
        caller.require_tenant(&id.tenant)?;
        let rx = self.ctx.vault().read()?;
        let rec = rx
            .connection(&id.key())?
            .ok_or_else(|| Error::not_found("connection", id.to_string()))?;
        Ok(Response::Connection(
            ConnectionView::new(&id, &rec).at(self.ctx.now()),
        ))
    }

    pub(super) fn list(
        &self,
        caller: &Caller,
        filter: Option<&str>,
        status: Option<Status>,
        page: Page,
    ) -> Result<Response> {
        let prefix = match (filter, caller) {
            (Some(f), _) => {
                let mut parts = f.splitn(2, '/');
                let t = parts.next().unwrap_or("");
                names::validate_tenant(t)?;
                caller.require_tenant(t)?;
                match parts.next() {
                    Some(p) if !p.is_empty() => {
                        names::validate_provider(p)?;
                        format!("{t}/{p}/")
                    }
                    _ => format!("{t}/"),
                }
            }
            (None, Caller::Tenant { tenant, .. }) => format!("{tenant}/"),
            (None, Caller::Admin { .. }) => String::new(),
        };
        let rx = self.ctx.vault().read()?;
        let mut connections = Vec::new();
        let mut next = None;
        let now = self.ctx.now();
        let limit = page.limit.unwrap_or(usize::MAX).max(1);
        let contains = page.contains.filter(|c| !c.is_empty());
        // The quickest skip of all, for a text filter alone: a record whose address and
        // stored bytes both lack the text can match only through a derived reason, and
        // most texts can never be part of one (a reason is stored as plain UTF-8, so a
        // stored reason with the text has it in the bytes).
        let bytes_decide = status.is_none()
            && contains
                .as_deref()
                .is_some_and(|c| !crate::contract::views::may_be_in_expired_reason(c));
        let finder = contains
            .as_deref()
            .map(|c| memchr::memmem::Finder::new(c.as_bytes()).into_owned());
        let filtering = status.is_some() || contains.is_some();
        rx.for_each_connection_raw_after(&prefix, page.after.as_deref(), |k, bytes, full| {
            if let (Some(f), Some(c)) = (&finder, contains.as_deref())
                && bytes_decide
                && !k.contains(c)
                && f.find(bytes).is_none()
            {
                return Ok(true);
            }
            // cheap checks on the record's head next (no allocation): the whole record and
            // its view (strings, the derived status) are built only for the rest
            if filtering && let Some(h) = ConnectionHead::read(bytes) {
                let derived =
                    h.status == Status::Connected && h.expires_at.is_some_and(|e| e <= now);
                if status.is_some_and(|s| s != h.status && !(derived && s == Status::TokenExpired))
                {
                    return Ok(true);
                }
                if let Some(c) = &contains
                    && !k.contains(c.as_str())
                    && !derived
                    && !h.reason.is_some_and(|r| r.contains(c.as_str()))
                {
                    return Ok(true);
                }
            }
            let rec = full()?;
            let id = ConnectionId::parse(k)?;
            let view = ConnectionView::new(&id, &rec).at(now);
            if status.is_some_and(|s| s != view.status) {
                return Ok(true);
            }
            if let Some(c) = &contains
                && !view.connection.contains(c.as_str())
                && !view
                    .reason
                    .as_deref()
                    .is_some_and(|r| r.contains(c.as_str()))
            {
                return Ok(true);
            }
            if connections.len() == limit {
                next = connections
                    .last()
                    .map(|v: &ConnectionView| v.connection.clone());
                return Ok(false);
            }
            connections.push(view);
            Ok(true)
        })?;
        Ok(Response::Connections { connections, next })
    }

    pub(super) fn remove(
        &self,
        caller: &Caller,
        connection: &str,
        revoke: bool,
    ) -> Result<Response> {
        let id = ConnectionId::parse(connection)?;
        caller.require_admin()?;
        if revoke {
            tracing::warn!(
                "revocation at the provider is not implemented yet; removing locally only"
            );
        }
        let tx = self.ctx.vault().write()?;
        let old = tx
            .remove_connection(&id.key())?
            .ok_or_else(|| Error::not_found("connection", id.to_string()))?;
        self.ctx.audit_in(
            &tx,
            caller,
            "remove",
            Some(&id.tenant),
            &id.to_string(),
            "ok",
        )?;
        tx.commit()?;
        self.ctx.emit(StatusEvent {
            connection: id.to_string(),
            from: Some(old.status),
            to: None,
            reason: Some("removed".into()),
            at: self.ctx.now(),
        });
        Ok(done(format!("connection {id} removed")))
    }
}
