//! `Engine`: every operation of tokenvault as a `Request` answered with a `Response`, on
//! behalf of a `Caller`. The in-process CLI, the socket server and the terminal UI all
//! call `Engine::handle`; none of them touches the vault directly.
//!
//! The engine is a facade: `dispatch` is one match that sends each request to the file of
//! its noun, each an `impl Engine` block holding that noun's operations:
//!
//! | file | requests |
//! |---|---|
//! | `tenants` | `tenant_add`, `tenant_list`, `tenant_remove` |
//! | `clients` | `client_set`, `client_list`, `client_remove` |
//! | `connections` | `put`, `get`, `show`, `list`, `remove` (and storing a new token) |
//! | `tenant_keys` | tenant keys and uid grants |
//! | `connect` | the engine halves of `connect` (code, device, client credentials) |
//! | `refresh` | `refresh CONNECTION / --due / --tenant` |
//! | `providers` | `provider list / show` |
//! | `token_test` | `test` |
//! | `apple` | Apple Music keys and developer tokens |
//! | `backup` | `backup export / verify / restore` |
//! | `vault_admin` | `hello`, `status`, `audit`, `passwd`, `rekey`, `metrics`, `daemon_info` |
//!
//! Owns: authorisation (each operation starts with the caller's scope check), the events
//! of admin changes. Must not: parse command lines, speak the socket framing, touch
//! ciphers (the vault seals and opens), or hold state of its own beyond the handles of the
//! subsystems (`refresh::Refresher`, `apple::AppleMusic`, `backup::Backups`), which are
//! built on the shared `context::Context`.
//!
//! A new operation: a `Request` variant (and maybe a `Response`) in `contract`, one arm in
//! `dispatch`, the method in its noun's file.

use crate::apple::AppleMusic;
use crate::backup::Backups;
use crate::config::Config;
use crate::contract::progress::ProgressSink;
use crate::contract::*;
use crate::error::{Error, Result};
use crate::refresh::Refresher;
use crate::vault::Vault;
use std::sync::Arc;
use tokio::sync::broadcast;

mod apple;
mod backup;
mod clients;
mod connect;
mod connections;
mod providers;
mod refresh;
mod tenant_keys;
mod tenants;
mod token_test;
mod vault_admin;

pub use crate::context::{Clock, Context, SystemClock};

/// The one place operations happen. Cheap to share: wrap in an `Arc`.
#[derive(Debug)]
pub struct Engine {
    ctx: Context,
    refresh: Refresher,
    apple: AppleMusic,
    backups: Backups,
    /// Whether this engine serves inside `serve`, and (when known) its socket and start
    /// time: `status` shows them.
    daemon: bool,
    daemon_socket: Option<(String, i64)>,
}

impl Engine {
    pub fn new(vault: Vault) -> Self {
        Self::with_clock(vault, Arc::new(SystemClock))
    }

    pub fn with_clock(vault: Vault, clock: Arc<dyn Clock>) -> Self {
        let ctx = Context::new(vault, clock);
        let apple = AppleMusic::new(ctx.clone());
        Engine {
            refresh: Refresher::new(ctx.clone(), apple.clone()),
            backups: Backups::new(ctx.clone()),
            apple,
            ctx,
            daemon: false,
            daemon_socket: None,
        }
    }

    /// Marks this engine as running inside `serve` (reported by `status`).
    pub fn set_daemon(&mut self, daemon: bool) {
        self.daemon = daemon;
    }

    /// Records the socket the daemon serves on, and now as its start time (for `status`).
    pub fn set_daemon_socket(&mut self, socket: &std::path::Path) {
        self.daemon_socket = Some((socket.display().to_string(), self.ctx.now()));
    }

    /// The shared handle the subsystems are built on (vault, clock, config, metrics,
    /// events, audit).
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// The refresh engine (the scheduler runs on it: `refresh::run_scheduler`).
    pub fn refresher(&self) -> &Refresher {
        &self.refresh
    }

    pub fn apple(&self) -> &AppleMusic {
        &self.apple
    }

    /// The backup handle (the backup schedule runs on it: `backup::run_scheduled_backups`).
    pub fn backups(&self) -> &Backups {
        &self.backups
    }

    pub fn vault(&self) -> &Vault {
        self.ctx.vault()
    }

    pub fn now(&self) -> i64 {
        self.ctx.now()
    }

    /// The current configuration (cheap: an `Arc`).
    pub fn config(&self) -> Arc<Config> {
        self.ctx.config()
    }

    /// Replaces the configuration (start-up and SIGHUP) and wakes the scheduler, whose
    /// due times may depend on it.
    pub fn set_config(&self, config: Config) {
        self.ctx.set_config(config);
        self.refresh.wake();
    }

    /// Live events (SPEC §10). A lagging receiver loses the oldest events, never blocks
    /// a sender.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.ctx.subscribe()
    }

    /// Writes queued hand-out audit records in one durable transaction. The daemon calls
    /// it every second and at shutdown; the CLI before it exits.
    pub fn flush_audit(&self) -> Result<usize> {
        self.ctx.flush_audit()
    }

    /// Records an admin change that happened outside `handle` (e.g. `init`), durably.
    pub fn audit_admin(
        &self,
        caller: &Caller,
        action: &str,
        target: &str,
        outcome: &str,
    ) -> Result<()> {
        self.ctx.audit_now(caller, action, None, target, outcome)
    }

    /// Answers one request for `caller`. Admin changes are audited in the same
    /// transaction as the change; token hand-outs are queued for `flush_audit`. No
    /// progress is reported (see `handle_with_progress`).
    pub async fn handle(&self, caller: &Caller, req: Request) -> Result<Response> {
        self.handle_with_progress(caller, req, None).await
    }

    /// `handle`, reporting the progress of a long operation (backup export, verify,
    /// restore) to `progress`: the caller decides how, or whether, it is shown (the CLI
    /// draws a bar on a terminal, the TUI a gauge, the daemon passes none).
    pub async fn handle_with_progress(
        &self,
        caller: &Caller,
        req: Request,
        progress: Option<ProgressSink>,
    ) -> Result<Response> {
        let change = admin_change(&req);
        // the op's name is read from the serde tag, which costs a walk of the request: only
        // for an admin event or the debug line, never on a plain `get`
        let op = if change.is_some() || tracing::enabled!(tracing::Level::DEBUG) {
            req.op()
        } else {
            ""
        };
        let result = self.dispatch(caller, req, progress).await;
        if let (Ok(_), Some((tenant, target))) = (&result, change) {
            self.admin_event(caller, op, tenant.as_deref(), target.as_deref());
        }
        if let Ok(Response::Token { .. }) = &result {
            self.ctx.metrics().token_served();
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
        progress: Option<ProgressSink>,
    ) -> Result<Response> {
        use Request as R;
        match req {
            R::Hello => Ok(self.hello(caller)),
            R::Status => self.status(caller),
            R::TenantAdd { name } => self.tenant_add(caller, &name),
            R::TenantList => self.tenant_list(caller),
            R::TenantRemove { name, force } => self.tenant_remove(caller, &name, force),
            R::ClientSet {
                tenant,
                provider,
                client_id,
                client_secret,
                token_url,
                authorization_url,
                device_authorization_url,
                revocation_url,
                params,
            } => self.client_set(
                caller,
                &tenant,
                &provider,
                clients::ClientFields {
                    client_id,
                    client_secret,
                    token_url,
                    authorization_url,
                    device_authorization_url,
                    revocation_url,
                    params,
                },
            ),
            R::ClientList { tenant } => self.client_list(caller, tenant.as_deref()),
            R::ClientRemove { tenant, provider } => self.client_remove(caller, &tenant, &provider),
            R::Put { connection, token } => self.put(caller, &connection, token),
            R::Get {
                connection,
                min_ttl,
                force_refresh,
            } => self.get(caller, &connection, min_ttl, force_refresh).await,
            R::Show { connection } => self.show(caller, &connection),
            R::List {
                filter,
                status,
                limit,
                after,
                contains,
            } => self.list(
                caller,
                filter.as_deref(),
                status,
                connections::Page {
                    limit,
                    after,
                    contains,
                },
            ),
            R::Remove { connection, revoke } => self.remove(caller, &connection, revoke),
            R::Audit { tenant, since } => self.audit(caller, tenant.as_deref(), since),
            R::Passwd { new_passphrase } => self.passwd(caller, &new_passphrase),
            R::Rekey => self.rekey(caller),
            R::BackupExport {
                path,
                tenant,
                recipients,
                passphrase,
                include_audit,
            } => self.backup_export(
                caller,
                &path,
                tenant,
                recipients,
                passphrase,
                include_audit,
                progress,
            ),
            R::BackupVerify {
                path,
                identity,
                passphrase,
            } => self.backup_verify(caller, &path, identity, passphrase, progress),
            R::BackupRestore {
                path,
                identity,
                passphrase,
                tenant,
                replace,
            } => self.backup_restore(
                caller, &path, identity, passphrase, tenant, replace, progress,
            ),
            R::AppleKeyAdd {
                tenant,
                team_id,
                key_id,
                p8,
            } => self.apple_key_add(caller, &tenant, &team_id, &key_id, &p8),
            R::AppleKeyList { tenant } => self.apple.list_keys(caller, &tenant),
            R::AppleKeyActivate { tenant, key_id } => {
                self.apple_key_activate(caller, &tenant, &key_id)
            }
            R::AppleKeyRetire {
                tenant,
                key_id,
                force,
            } => self.apple_key_retire(caller, &tenant, &key_id, force),
            R::AppleToken { tenant } => self.apple_token(caller, &tenant),
            R::Auth { .. } => Err(Error::invalid(
                "op",
                "auth is answered by the daemon's socket only: present the tenant key there",
            )),
            R::TenantKeyIssue { tenant, label } => self.tenant_key_issue(caller, &tenant, label),
            R::TenantKeyList { tenant } => self.tenant_key_list(caller, &tenant),
            R::TenantKeyRevoke { tenant, key_id } => {
                self.tenant_key_revoke(caller, &tenant, &key_id)
            }
            R::TenantGrant { tenant, uid } => self.tenant_grant(caller, &tenant, uid),
            R::TenantRevokeGrant { tenant, uid } => self.tenant_revoke_grant(caller, &tenant, uid),
            R::TenantGrantList { tenant } => self.tenant_grant_list(caller, tenant.as_deref()),
            R::DaemonInfo => self.daemon_info(caller),
            R::Metrics => self.metrics_text(caller),
            R::Refresh { connection } => self.refresh_connection(caller, &connection).await,
            R::RefreshDue => self.refresh_due(caller).await,
            R::RefreshTenant { tenant } => self.refresh_tenant(caller, &tenant).await,
            R::ProviderList => self.provider_list(),
            R::ProviderShow { name } => self.provider_show(&name),
            R::ConnectStart {
                connection,
                redirect_uri,
                state,
                code_challenge,
                scopes,
            } => self.connect_start(
                caller,
                &connection,
                &redirect_uri,
                &state,
                &code_challenge,
                &scopes,
            ),
            R::ConnectCode {
                connection,
                code,
                code_verifier,
                redirect_uri,
            } => {
                self.connect_code(caller, &connection, &code, &code_verifier, &redirect_uri)
                    .await
            }
            R::DeviceStart { connection, scopes } => {
                self.device_start(caller, &connection, &scopes).await
            }
            R::DevicePoll {
                connection,
                device_code,
            } => self.device_poll(caller, &connection, &device_code).await,
            R::ConnectClientCredentials { connection, scopes } => {
                self.connect_client_credentials(caller, &connection, &scopes)
                    .await
            }
            R::Watch { .. } => Err(Error::invalid(
                "op",
                "watch streams events and has no single answer; send it over the socket or use client::Backend::watch",
            )),
            R::Test { connection } => self.test_connection(caller, &connection).await,
        }
    }

    /// Publishes an admin change (validated names only, never a value).
    fn admin_event(&self, caller: &Caller, op: &str, tenant: Option<&str>, target: Option<&str>) {
        self.ctx.emit(Event::new(
            self.ctx.now(),
            EventKind::Admin {
                tenant: tenant.map(str::to_owned),
                op: op.to_owned(),
                target: target.map(str::to_owned),
                actor: caller.actor().to_owned(),
            },
        ));
    }
}

/// For a request that changes the vault's configuration of tenants, clients, keys or
/// connections: the (tenant, target) its `admin` event names once it succeeded. Only
/// names the request validated on success; never a value (a token, a secret, a URL).
fn admin_change(req: &Request) -> Option<(Option<String>, Option<String>)> {
    use Request as R;
    let t = |t: &str| Some(t.to_owned());
    Some(match req {
        R::TenantAdd { name } | R::TenantRemove { name, .. } => (t(name), t(name)),
        R::ClientSet {
            tenant, provider, ..
        }
        | R::ClientRemove { tenant, provider } => (t(tenant), Some(format!("{tenant}/{provider}"))),
        R::Put { connection, .. }
        | R::Remove { connection, .. }
        | R::ConnectCode { connection, .. }
        | R::ConnectClientCredentials { connection, .. } => {
            (connection.split('/').next().and_then(t), t(connection))
        }
        R::TenantKeyIssue { tenant, .. }
        | R::TenantKeyRevoke { tenant, .. }
        | R::TenantGrant { tenant, .. }
        | R::TenantRevokeGrant { tenant, .. } => (t(tenant), t(tenant)),
        R::Passwd { .. } | R::Rekey => (None, t("vault")),
        _ => return None,
    })
}

fn done(message: String) -> Response {
    Response::Done { message }
}
