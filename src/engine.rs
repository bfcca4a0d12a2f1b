//! `Engine`: every operation of tokenvault as a `Request` answered with a `Response`, on
//! behalf of a `Caller`. The in-process CLI, the socket server and the terminal UI all
//! call `Engine::handle`; none of them touches the vault directly.
//!
//! Owns: authorisation (admin vs tenant scope), audit records, status-change events for
//! live watchers (`subscribe`). Must not: parse command lines, speak the socket framing, or
//! touch ciphers (the vault seals and opens).
//!
//! `Request` and `Response` are serde types: the socket protocol is their JSON form
//! (`{"op":"get","connection":"acme/spotify/alice"}`), see docs/protocol.md.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::names::{self, ConnectionId};
use crate::token::TokenResponse;
use crate::vault::records::*;
use crate::vault::{Tx, Vault};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

mod tenant_keys;
mod token_test;

pub use crate::contract::*;

/// A clock in Unix seconds, so tests control time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> i64;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        chrono::Utc::now().timestamp()
    }
}

/// The one place operations happen. Cheap to share: wrap in an `Arc`.
#[derive(Debug)]
pub struct Engine {
    vault: Vault,
    clock: Arc<dyn Clock>,
    events: broadcast::Sender<Event>,
    /// Audit records of token hand-outs, written in batches off the `get` path.
    pending_audit: Mutex<Vec<AuditRecord>>,
    daemon: bool,
    /// The configuration file; replaced whole on SIGHUP (`set_config`).
    config: std::sync::RwLock<Arc<Config>>,
    /// The provider catalogue of `config`, built when the configuration is set rather than
    /// on every lookup (the refresh path looks a provider up on each attempt); a broken
    /// `[providers]` table is kept as its message and reported by each lookup.
    providers: std::sync::RwLock<Arc<std::result::Result<Vec<crate::provider::Provider>, String>>>,
    /// Scheduled-backup outcome and test settings (see `backup::ops`).
    pub(crate) backup: crate::backup::EngineBackupState,
    /// Apple Music developer-token cache and HTTP client.
    pub(crate) apple: crate::apple::AppleState,
    /// Counters for `metrics` (refreshes, latency, tokens served, socket connections).
    metrics: Arc<crate::metrics::Metrics>,
    /// The refresh engine: HTTP client, single flight, group commit, scheduler wake-up.
    refresh: crate::refresh::RefreshState,
    /// The socket and start time of the daemon this engine serves in (`status` shows them).
    daemon_socket: Option<(String, i64)>,
}

fn load_providers(
    config: &Config,
) -> Arc<std::result::Result<Vec<crate::provider::Provider>, String>> {
    Arc::new(
        crate::provider::catalogue::catalogue(config).map_err(|e| match e {
            Error::Config(m) => m,
            other => other.to_string(),
        }),
    )
}

impl Engine {
    pub fn new(vault: Vault) -> Self {
        Self::with_clock(vault, Arc::new(SystemClock))
    }

    pub fn with_clock(vault: Vault, clock: Arc<dyn Clock>) -> Self {
        let (events, _) = broadcast::channel(1024);
        Engine {
            vault,
            clock,
            events,
            pending_audit: Mutex::new(Vec::new()),
            daemon: false,
            config: std::sync::RwLock::new(Arc::new(Config::default())),
            providers: std::sync::RwLock::new(load_providers(&Config::default())),
            backup: Default::default(),
            apple: crate::apple::AppleState::default(),
            metrics: Arc::default(),
            refresh: crate::refresh::RefreshState::default(),
            daemon_socket: None,
        }
    }

    /// Marks this engine as running inside `serve` (reported by `status`).
    pub fn set_daemon(&mut self, daemon: bool) {
        self.daemon = daemon;
    }

    /// Records the socket the daemon serves on, and now as its start time (for `status`).
    pub fn set_daemon_socket(&mut self, socket: &std::path::Path) {
        self.daemon_socket = Some((socket.display().to_string(), self.now()));
    }

    /// The current configuration (cheap: an `Arc`).
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the configuration (at start-up and on SIGHUP).
    pub fn set_config(&self, config: Config) {
        *self.providers.write().unwrap_or_else(|p| p.into_inner()) = load_providers(&config);
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        self.refresh.wake.notify_one();
    }

    /// The whole provider catalogue of the current configuration.
    pub fn providers(&self) -> Result<Vec<crate::provider::Provider>> {
        let all = self
            .providers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        all.as_ref().clone().map_err(Error::Config)
    }

    /// The provider named `name` (see `catalogue::lookup`).
    pub fn provider(&self, name: &str) -> Result<crate::provider::Provider> {
        let all = self
            .providers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match all.as_ref() {
            Ok(all) => Ok(crate::provider::catalogue::find(all, name)),
            Err(m) => Err(Error::Config(m.clone())),
        }
    }

    /// The provider named `name` if the catalogue knows it; otherwise a not-found error
    /// listing the known ones with a "did you mean" (`catalogue::known`). `put`,
    /// `client set` and `connect` refuse unknown providers with it.
    pub fn known_provider(&self, name: &str) -> Result<crate::provider::Provider> {
        crate::provider::catalogue::known(&self.providers()?, name)
    }

    /// The refresh engine's state (HTTP client, single flight, counters, scheduler wake).
    pub fn refresh_state(&self) -> &crate::refresh::RefreshState {
        &self.refresh
    }

    /// The counters behind `metrics`; the refresh engine reports provider calls here.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Live status changes. Lagging receivers lose the oldest events, never block writers.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    pub(crate) fn emit(&self, ev: impl Into<Event>) {
        let _ = self.events.send(ev.into());
    }

    /// Answers one request for `caller`. Admin changes are audited in the same
    /// transaction as the change; token hand-outs are queued for `flush_audit`. No
    /// progress is reported (see `handle_with_progress`).
    pub async fn handle(&self, caller: &Caller, req: Request) -> Result<Response> {
        self.handle_with_progress(caller, req, None).await
    }

    /// `handle`, reporting the progress of a long operation (backup export, verify,
    /// restore) to `progress`: the caller decides how (or whether) it is shown.
    pub async fn handle_with_progress(
        &self,
        caller: &Caller,
        req: Request,
        progress: Option<crate::contract::progress::ProgressSink>,
    ) -> Result<Response> {
        let op = req.op();
        let result = self.dispatch(caller, req, progress).await;
        if let Ok(Response::Token { .. }) = &result {
            self.metrics.token_served();
        }
        // one line per request, at debug (`-vv`): the default log stays one line per event
        match &result {
            Ok(_) => tracing::debug!(op, actor = caller.actor(), "request answered"),
            Err(e) => tracing::debug!(
                op,
                actor = caller.actor(),
                code = e.code(),
                "request failed"
            ),
        }
        result
    }

    async fn dispatch(
        &self,
        caller: &Caller,
        req: Request,
        progress: Option<crate::contract::progress::ProgressSink>,
    ) -> Result<Response> {
        match req {
            Request::Hello => Ok(Response::Hello {
                server: "tokenvault".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                protocol: PROTOCOL_VERSION,
                format_version: crate::vault::schema::FORMAT_VERSION,
                caller: match caller {
                    Caller::Admin { .. } => "admin".into(),
                    Caller::Tenant { tenant, .. } => format!("tenant:{tenant}"),
                },
            }),
            Request::Status => self.status(caller),
            Request::TenantAdd { name } => self.tenant_add(caller, &name),
            Request::TenantList => self.tenant_list(caller),
            Request::TenantRemove { name, force } => self.tenant_remove(caller, &name, force),
            Request::ClientSet {
                tenant,
                provider,
                client_id,
                client_secret,
                token_url,
                authorization_url,
                device_authorization_url,
                revocation_url,
                params,
            } => {
                caller.require_admin()?;
                names::validate_tenant(&tenant)?;
                self.known_provider(&provider)?;
                if client_id.is_empty() || client_id.len() > 1024 {
                    return Err(Error::invalid("client id", "must be 1-1024 bytes"));
                }
                for url in [
                    &token_url,
                    &authorization_url,
                    &device_authorization_url,
                    &revocation_url,
                ]
                .into_iter()
                .flatten()
                {
                    validate_url(url)?;
                }
                let tx = self.vault.write()?;
                self.require_tenant_exists(&tx, &tenant)?;
                let old = tx.client(&tenant, &provider)?;
                let rec = ClientRecord {
                    client_id,
                    // keep the stored secret unless a new one is given
                    secret: old.and_then(|o| o.secret),
                    token_url,
                    authorization_url,
                    device_authorization_url,
                    revocation_url,
                    params,
                    updated_at: self.now(),
                };
                tx.put_client(&tenant, &provider, rec, client_secret.as_ref())?;
                self.audit_in(
                    &tx,
                    caller,
                    "client_set",
                    Some(&tenant),
                    &format!("{tenant}/{provider}"),
                    "ok",
                )?;
                tx.commit()?;
                Ok(done(format!("client {tenant}/{provider} saved")))
            }
            Request::ClientList { tenant } => {
                caller.require_admin()?;
                let rx = self.vault.read()?;
                let clients = rx
                    .clients(tenant.as_deref())?
                    .into_iter()
                    .map(|(t, p, c)| ClientView {
                        tenant: t,
                        provider: p,
                        client_id: c.client_id,
                        has_secret: c.secret.is_some(),
                        token_url: c.token_url,
                        authorization_url: c.authorization_url,
                        device_authorization_url: c.device_authorization_url,
                        revocation_url: c.revocation_url,
                        params: c.params,
                        updated_at: c.updated_at,
                    })
                    .collect();
                Ok(Response::Clients { clients })
            }
            Request::ClientRemove { tenant, provider } => {
                caller.require_admin()?;
                let tx = self.vault.write()?;
                if !tx.remove_client(&tenant, &provider)? {
                    return Err(Error::not_found("client", format!("{tenant}/{provider}")));
                }
                self.audit_in(
                    &tx,
                    caller,
                    "client_remove",
                    Some(&tenant),
                    &format!("{tenant}/{provider}"),
                    "ok",
                )?;
                tx.commit()?;
                Ok(done(format!("client {tenant}/{provider} removed")))
            }
            Request::Put { connection, token } => self.put(caller, &connection, token),
            Request::Get {
                connection,
                min_ttl,
                force_refresh,
            } => match crate::apple::developer_token_tenant(&connection) {
                // `TENANT/apple-music` (two parts): the tenant's developer token (SPEC §7).
                Some(tenant) => self.apple_get(caller, tenant, min_ttl.unwrap_or(0)),
                None => {
                    self.get(caller, &connection, min_ttl.unwrap_or(30), force_refresh)
                        .await
                }
            },
            Request::Show { connection } => {
                let id = ConnectionId::parse(&connection)?;
                caller.require_tenant(&id.tenant)?;
                let rx = self.vault.read()?;
                let rec = rx
                    .connection(&id.key())?
                    .ok_or_else(|| Error::not_found("connection", id.to_string()))?;
                Ok(Response::Connection(
                    ConnectionView::new(&id, &rec).at(self.now()),
                ))
            }
            Request::List {
                filter,
                status,
                limit,
                after,
                contains,
            } => self.list(
                caller,
                filter.as_deref(),
                status,
                Page {
                    limit,
                    after,
                    contains,
                },
            ),
            Request::Remove { connection, revoke } => {
                let id = ConnectionId::parse(&connection)?;
                caller.require_admin()?;
                if revoke {
                    tracing::warn!(
                        "revocation at the provider is not implemented yet; removing locally only"
                    );
                }
                let tx = self.vault.write()?;
                let old = tx
                    .remove_connection(&id.key())?
                    .ok_or_else(|| Error::not_found("connection", id.to_string()))?;
                self.audit_in(
                    &tx,
                    caller,
                    "remove",
                    Some(&id.tenant),
                    &id.to_string(),
                    "ok",
                )?;
                tx.commit()?;
                self.emit(StatusEvent {
                    connection: id.to_string(),
                    from: Some(old.status),
                    to: None,
                    reason: Some("removed".into()),
                    at: self.now(),
                });
                Ok(done(format!("connection {id} removed")))
            }
            Request::Audit { tenant, since } => {
                match &tenant {
                    Some(t) => caller.require_tenant(t)?,
                    None => caller.require_admin()?,
                }
                self.flush_audit()?;
                let rx = self.vault.read()?;
                Ok(Response::Audit {
                    records: rx.audit(tenant.as_deref(), since.unwrap_or(0))?,
                })
            }
            Request::Passwd { new_passphrase } => {
                caller.require_admin()?;
                self.vault.change_passphrase(&new_passphrase, None)?;
                self.audit_now(caller, "passwd", None, "vault", "ok")?;
                Ok(done("passphrase changed; no record was rewritten".into()))
            }
            Request::Rekey => {
                caller.require_admin()?;
                let (term, n) = self.vault.rekey()?;
                self.audit_now(caller, "rekey", None, "vault", &format!("term {term}"))?;
                Ok(done(format!(
                    "new data key term {term}; {n} records re-encrypted"
                )))
            }
            Request::BackupExport {
                path,
                tenant,
                recipients,
                passphrase,
                include_audit,
            } => {
                caller.require_admin()?;
                crate::backup::ops::export_op(
                    self,
                    caller,
                    &path,
                    tenant,
                    recipients,
                    passphrase,
                    include_audit,
                    progress,
                )
                .map(Response::Backup)
            }
            Request::BackupVerify {
                path,
                identity,
                passphrase,
            } => {
                caller.require_admin()?;
                crate::backup::ops::verify_op(&path, identity, passphrase, progress)
                    .map(Response::Backup)
            }
            Request::BackupRestore {
                path,
                identity,
                passphrase,
                tenant,
                replace,
            } => {
                caller.require_admin()?;
                crate::backup::ops::restore_op(
                    self, caller, &path, identity, passphrase, tenant, replace, progress,
                )
                .map(Response::Backup)
            }
            Request::AppleKeyAdd {
                tenant,
                team_id,
                key_id,
                p8,
            } => self.apple_key_add(caller, &tenant, &team_id, &key_id, &p8),
            Request::AppleKeyList { tenant } => self.apple_key_list(caller, &tenant),
            Request::AppleKeyActivate { tenant, key_id } => {
                self.apple_key_activate(caller, &tenant, &key_id)
            }
            Request::AppleKeyRetire {
                tenant,
                key_id,
                force,
            } => self.apple_key_retire(caller, &tenant, &key_id, force),
            Request::AppleToken { tenant } => self
                .apple_developer_token(caller, &tenant)
                .map(Response::AppleToken),
            Request::Auth { .. } => Err(Error::invalid(
                "op",
                "auth is answered by the daemon's socket only: present the tenant key there",
            )),
            Request::TenantKeyIssue { tenant, label } => {
                self.tenant_key_issue(caller, &tenant, label)
            }
            Request::TenantKeyList { tenant } => self.tenant_key_list(caller, &tenant),
            Request::TenantKeyRevoke { tenant, key_id } => {
                self.tenant_key_revoke(caller, &tenant, &key_id)
            }
            Request::TenantGrant { tenant, uid } => self.tenant_grant(caller, &tenant, uid),
            Request::TenantRevokeGrant { tenant, uid } => {
                self.tenant_revoke_grant(caller, &tenant, uid)
            }
            Request::TenantGrantList { tenant } => {
                self.tenant_grant_list(caller, tenant.as_deref())
            }
            Request::DaemonInfo => {
                caller.require_admin()?;
                Ok(Response::DaemonInfo {
                    vault: self.vault.path().display().to_string(),
                    daemon: self.daemon,
                    pid: std::process::id(),
                })
            }
            Request::Metrics => {
                caller.require_admin()?;
                Ok(Response::Metrics {
                    text: crate::metrics::render(self)?,
                })
            }
            Request::Refresh { connection } => {
                crate::refresh::ops::refresh_connection(self, caller, &connection).await
            }
            Request::RefreshDue => crate::refresh::ops::refresh_due(self, caller).await,
            Request::RefreshTenant { tenant } => {
                crate::refresh::ops::refresh_tenant(self, caller, &tenant).await
            }
            Request::ProviderList => crate::refresh::ops::provider_list(self),
            Request::ProviderShow { name } => crate::refresh::ops::provider_show(self, &name),
            Request::ConnectStart {
                connection,
                redirect_uri,
                state,
                code_challenge,
                scopes,
            } => crate::refresh::ops::connect_start(
                self,
                caller,
                &connection,
                &redirect_uri,
                &state,
                &code_challenge,
                &scopes,
            ),
            Request::ConnectCode {
                connection,
                code,
                code_verifier,
                redirect_uri,
            } => {
                crate::refresh::ops::connect_code(
                    self,
                    caller,
                    &connection,
                    &code,
                    &code_verifier,
                    &redirect_uri,
                )
                .await
            }
            Request::DeviceStart { connection, scopes } => {
                crate::refresh::ops::device_start(self, caller, &connection, &scopes).await
            }
            Request::DevicePoll {
                connection,
                device_code,
            } => crate::refresh::ops::device_poll(self, caller, &connection, &device_code).await,
            Request::ConnectClientCredentials { connection, scopes } => {
                crate::refresh::ops::connect_client_credentials(self, caller, &connection, &scopes)
                    .await
            }
            Request::Watch { .. } => Err(Error::invalid(
                "op",
                "watch streams events and has no single answer; send it over the socket or use client::Backend::watch",
            )),
            Request::Test { connection } => self.test_connection(caller, &connection).await,
        }
    }

    pub(crate) fn require_tenant_exists(&self, tx: &Tx, tenant: &str) -> Result<()> {
        if tx.tenant(tenant)?.is_none() {
            return Err(Error::NotFound {
                what: "tenant",
                name: format!("{tenant} (create it with `tokenvault tenant add {tenant}`)"),
            });
        }
        Ok(())
    }

    fn tenant_add(&self, caller: &Caller, name: &str) -> Result<Response> {
        caller.require_admin()?;
        names::validate_tenant(name)?;
        let tx = self.vault.write()?;
        if tx.tenant(name)?.is_some() {
            return Err(Error::AlreadyExists {
                what: "tenant",
                name: name.into(),
            });
        }
        tx.put_tenant(
            name,
            &TenantRecord {
                created_at: self.now(),
            },
        )?;
        self.audit_in(&tx, caller, "tenant_add", Some(name), name, "ok")?;
        tx.commit()?;
        Ok(done(format!("tenant {name} added")))
    }

    fn tenant_list(&self, caller: &Caller) -> Result<Response> {
        let rx = self.vault.read()?;
        let mut tenants = Vec::new();
        for (name, rec) in rx.tenants()? {
            if caller.require_tenant(&name).is_err() {
                continue;
            }
            let mut connections = 0;
            rx.for_each_connection(&format!("{name}/"), |_, _| {
                connections += 1;
                Ok(true)
            })?;
            tenants.push(TenantView {
                clients: rx.clients(Some(&name))?.len() as u64,
                name,
                created_at: rec.created_at,
                connections,
            });
        }
        Ok(Response::Tenants { tenants })
    }

    fn tenant_remove(&self, caller: &Caller, name: &str, force: bool) -> Result<Response> {
        caller.require_admin()?;
        let tx = self.vault.write()?;
        if tx.tenant(name)?.is_none() {
            return Err(Error::not_found("tenant", name));
        }
        let n = tx.connections(&format!("{name}/"))?.len();
        let c = tx.clients(Some(name))?.len();
        if (n > 0 || c > 0) && !force {
            return Err(Error::invalid(
                "tenant remove",
                format!(
                    "tenant {name} still has {n} connections and {c} clients; pass --force to remove them all"
                ),
            ));
        }
        tx.remove_tenant(name)?;
        self.audit_in(
            &tx,
            caller,
            "tenant_remove",
            Some(name),
            name,
            &format!("{n} connections removed"),
        )?;
        tx.commit()?;
        Ok(done(format!(
            "tenant {name} removed ({n} connections, {c} clients)"
        )))
    }

    fn put(&self, caller: &Caller, connection: &str, token: serde_json::Value) -> Result<Response> {
        let id = ConnectionId::parse(connection)?;
        caller.require_tenant(&id.tenant)?;
        self.known_provider(&id.provider)?;
        let now = self.now();
        let parsed = TokenResponse::from_value(token, now)?;
        let key = id.key();
        let refresh_expires_at = crate::refresh::ops::refresh_expiry_for(
            self,
            &id,
            parsed.refresh_expires_at,
            parsed.secrets.refresh_token.is_some(),
        )?;
        let tx = self.vault.write()?;
        self.require_tenant_exists(&tx, &id.tenant)?;
        let old = tx.connection(&key)?;
        // due time and default lifetime of SPEC §5.1 (refresh engine)
        let (expires_at, due_at) = crate::refresh::ops::plan_for(
            self,
            &id,
            parsed.expires_at,
            parsed.secrets.refresh_token.is_some(),
        )?;
        let rec = ConnectionRecord {
            status: Status::Connected,
            reason: Some("imported".into()),
            status_at: now,
            attempts: 0,
            expires_at,
            refresh_expires_at,
            due_at,
            scope: parsed.scope.clone(),
            token_type: parsed.token_type.clone(),
            has_refresh_token: parsed.secrets.refresh_token.is_some(),
            has_id_token: parsed.secrets.id_token.is_some(),
            metadata_keys: parsed.secrets.extra.keys().cloned().collect(),
            created_at: old.as_ref().map(|o| o.created_at).unwrap_or(now),
            updated_at: now,
            last_refresh_at: old.as_ref().and_then(|o| o.last_refresh_at),
            refresh_count: old.as_ref().map(|o| o.refresh_count).unwrap_or(0),
            secrets: tx.seal_new(&key, &parsed.secrets),
        };
        tx.put_connection(&key, &rec)?;
        self.audit_in(&tx, caller, "put", Some(&id.tenant), &key, "ok")?;
        tx.commit()?;
        self.refresh.wake.notify_one();
        if old.as_ref().map(|o| o.status) != Some(Status::Connected) {
            self.emit(StatusEvent {
                connection: key,
                from: old.map(|o| o.status),
                to: Some(Status::Connected),
                reason: Some("imported".into()),
                at: now,
            });
        }
        Ok(done(format!("connection {id} stored")))
    }

    async fn get(
        &self,
        caller: &Caller,
        connection: &str,
        min_ttl: u64,
        force_refresh: bool,
    ) -> Result<Response> {
        let id = ConnectionId::parse(connection)?;
        caller.require_tenant(&id.tenant)?;
        let key = id.key();
        let now = self.now();
        // Fast path: an opened token cached by an earlier hand-out, still valid for
        // `min_ttl` (see `vault::TokenCache` for why it cannot be stale).
        if !force_refresh
            && let Some(c) = self.vault.cached_token(&key)
            // the same statuses the read below hands a token out for
            && !matches!(c.status, Status::NeedsReauth | Status::Disconnected)
            && c.expires_at.is_none_or(|exp| exp > now + min_ttl as i64)
        {
            self.queue_audit(caller, "get", &id.tenant, &key, "ok");
            return Ok(Response::Token {
                connection: key,
                token: c.access_token,
                expires_at: c.expires_at,
                token_type: c.token_type,
            });
        }
        let generation = self.vault.cache_generation();
        let rx = self.vault.read()?;
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
                crate::refresh::on_demand(self, &key, min_ttl, force_refresh)
                    .await
                    .map(|f| (f.access_token, f.expires_at, f.token_type))
            }
            _ => rx.secrets(&key, &rec).map(|s| {
                self.vault.cache_insert(
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
        self.queue_audit(
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

    fn list(
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
        let rx = self.vault.read()?;
        let mut connections = Vec::new();
        let mut next = None;
        let now = self.now();
        let limit = page.limit.unwrap_or(usize::MAX).max(1);
        let contains = page.contains.filter(|c| !c.is_empty());
        rx.for_each_connection_after(&prefix, page.after.as_deref(), |k, rec| {
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

    fn status(&self, caller: &Caller) -> Result<Response> {
        let now = self.now();
        let rx = self.vault.read()?;
        let scope = match caller {
            Caller::Admin { .. } => String::new(),
            Caller::Tenant { tenant, .. } => format!("{tenant}/"),
        };
        let mut by_status: BTreeMap<String, u64> =
            Status::ALL.iter().map(|s| (s.to_string(), 0)).collect();
        let mut connections = 0;
        let mut expiring = 0;
        let mut refresh_expiring = 0;
        let mut failures = 0;
        rx.for_each_connection(&scope, |_, r| {
            connections += 1;
            if r.refresh_expires_at.is_some_and(|e| e <= now + 7 * 86_400) {
                refresh_expiring += 1;
            }
            // counted as `show` and `list` show it: an expired `connected` token is not
            let shown = match (r.status, r.expires_at) {
                (Status::Connected, Some(exp)) if exp <= now => Status::TokenExpired,
                (s, _) => s,
            };
            *by_status.entry(shown.to_string()).or_default() += 1;
            if r.expires_at.is_some_and(|e| e > now && e <= now + 3600) {
                expiring += 1;
            }
            if r.status != Status::Connected && r.status_at >= now - 3600 {
                failures += 1;
            }
            Ok(true)
        })?;
        let next = if scope.is_empty() {
            rx.next_due()?
        } else {
            None
        };
        let tenants = match caller {
            Caller::Admin { .. } => rx.tenants()?.len() as u64,
            Caller::Tenant { .. } => 1,
        };
        let unhealthy = by_status.get("error").copied().unwrap_or(0)
            + by_status.get("needs_reauth").copied().unwrap_or(0)
            + by_status.get("token_expired").copied().unwrap_or(0);
        let problems = health_problems(&by_status);
        Ok(Response::Status(StatusView {
            vault: self.vault.path().display().to_string(),
            format_version: crate::vault::schema::FORMAT_VERSION,
            key_term: self.vault.current_term(),
            daemon: self.daemon,
            tenants,
            connections,
            by_status,
            next_due: next.as_ref().map(|n| n.0),
            next_due_connection: next.map(|n| n.1),
            expiring_within_hour: expiring,
            refresh_tokens_expiring_within_week: refresh_expiring,
            failures_last_hour: failures,
            healthy: unhealthy == 0,
            last_backup: match caller {
                Caller::Admin { .. } => crate::backup::ops::status_line(self),
                Caller::Tenant { .. } => None,
            },
            problems,
            daemon_process: self.daemon_socket.as_ref().map(|(socket, started)| {
                DaemonProcessView {
                    pid: std::process::id(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    commit: crate::version::COMMIT.into(),
                    socket: socket.clone(),
                    started_at: *started,
                    uptime_secs: (now - started).max(0),
                }
            }),
        }))
    }

    fn record(
        &self,
        caller: &Caller,
        action: &str,
        tenant: Option<&str>,
        target: &str,
        outcome: &str,
    ) -> AuditRecord {
        AuditRecord {
            at: self.now(),
            actor: caller.actor().to_owned(),
            action: action.to_owned(),
            tenant: tenant.map(str::to_owned),
            target: target.to_owned(),
            outcome: outcome.to_owned(),
            count: 1,
        }
    }

    /// Audits inside the transaction that makes the change: both or neither.
    pub(crate) fn audit_in(
        &self,
        tx: &Tx,
        caller: &Caller,
        action: &str,
        tenant: Option<&str>,
        target: &str,
        outcome: &str,
    ) -> Result<()> {
        tx.append_audit(&self.record(caller, action, tenant, target, outcome))
    }

    /// Records an admin change that happened outside `handle` (e.g. `init`), durably.
    pub fn audit_admin(
        &self,
        caller: &Caller,
        action: &str,
        target: &str,
        outcome: &str,
    ) -> Result<()> {
        self.audit_now(caller, action, None, target, outcome)
    }

    fn audit_now(
        &self,
        caller: &Caller,
        action: &str,
        tenant: Option<&str>,
        target: &str,
        outcome: &str,
    ) -> Result<()> {
        let tx = self.vault.write()?;
        self.audit_in(&tx, caller, action, tenant, target, outcome)?;
        tx.commit()
    }

    /// Queues an audit record of a hand-out; no disk write on the caller's path.
    pub(crate) fn queue_audit(
        &self,
        caller: &Caller,
        action: &str,
        tenant: &str,
        target: &str,
        outcome: &str,
    ) {
        let at = self.now();
        let mut pending = self.pending_audit.lock().unwrap_or_else(|p| p.into_inner());
        // A burst of identical hand-outs in one second becomes one record with a count:
        // every hand-out is still accounted for, without one row (and its write) each.
        if let Some(r) = pending.iter_mut().rev().take(64).find(|r| {
            r.at == at
                && r.target == target
                && r.action == action
                && r.outcome == outcome
                && r.actor == caller.actor()
        }) {
            r.count += 1;
            return;
        }
        let mut rec = self.record(caller, action, Some(tenant), target, outcome);
        // the time compared above, not a second reading that may fall in the next second
        rec.at = at;
        pending.push(rec);
    }

    /// Writes queued audit records in one durable transaction. The daemon calls it every
    /// second and at shutdown; the CLI before it exits.
    pub fn flush_audit(&self) -> Result<usize> {
        let batch =
            std::mem::take(&mut *self.pending_audit.lock().unwrap_or_else(|p| p.into_inner()));
        if batch.is_empty() {
            return Ok(0);
        }
        let tx = self.vault.write()?;
        for rec in &batch {
            tx.append_audit(rec)?;
        }
        tx.commit()?;
        Ok(batch.len())
    }
}

/// Which part of the list a `list` request wants.
#[derive(Debug, Default)]
struct Page {
    limit: Option<usize>,
    after: Option<String>,
    contains: Option<String>,
}

fn done(message: String) -> Response {
    Response::Done { message }
}

/// Endpoint overrides must be absolute http(s) URLs. Plain http is allowed only for
/// loopback (tests, local development).
pub fn validate_url(url: &str) -> Result<()> {
    let ok = url.starts_with("https://")
        || url.starts_with("http://127.0.0.1")
        || url.starts_with("http://localhost")
        || url.starts_with("http://[::1]");
    if !ok || url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        // the URL itself is not quoted back: a mistyped argument may hold a secret
        return Err(Error::invalid(
            "URL",
            "an endpoint URL must be https:// (or http:// on loopback), at most 2048 bytes, without spaces",
        ));
    }
    Ok(())
}
