//! Which `client::Backend` a command uses, from the global options (SPEC §3 "every command
//! works the same two ways"): the daemon when one answers on the socket, else the vault
//! file opened in this process. A tenant key only ever goes to the daemon.
//!
//! Here because it reads what only the command line knows: `--socket`, `--vault`, the
//! tenant-key file or `TOKENVAULT_TENANT_KEY`, the config file's `[client]
//! trusted_daemon_uids`, the passphrase. Must not: fall back to the file after the daemon
//! answered (an error from the daemon is the answer) or after refusing the daemon (a
//! daemon of an untrusted uid is not "no daemon").

use super::args::Global;
use super::passphrase;
use crate::client::{Backend, Daemon};
use crate::contract::{Caller, Request, Response};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::paths;
use crate::secret::Secret;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub fn vault_path(g: &Global) -> PathBuf {
    g.vault.clone().unwrap_or_else(paths::default_vault)
}

/// The configuration file of `--config` (or the default path); absent means empty.
pub fn load_config(g: &Global) -> Result<crate::config::Config> {
    crate::config::Config::load(&g.config.clone().unwrap_or_else(paths::default_config))
}

/// The caller the in-process CLI acts as: the local user, with full access to a vault file
/// it could unlock.
pub fn local_caller() -> Caller {
    Caller::Admin {
        actor: format!("cli:uid={}", nix::unistd::getuid()),
    }
}

/// The tenant key of `--tenant-key-file` or `TOKENVAULT_TENANT_KEY`, if any.
pub fn tenant_key(g: &Global) -> Result<Option<Secret>> {
    if let Some(f) = &g.tenant_key_file {
        return crate::secret::read_secret_file(f, "tenant key").map(Some);
    }
    match std::env::var("TOKENVAULT_TENANT_KEY") {
        Ok(k) if !k.is_empty() => {
            let k = zeroize::Zeroizing::new(k);
            Ok(Some(Secret::new(k.trim())))
        }
        _ => Ok(None),
    }
}

fn has_tenant_key(g: &Global) -> bool {
    g.tenant_key_file.is_some() || std::env::var_os("TOKENVAULT_TENANT_KEY").is_some()
}

/// The daemon to send commands to, ready (authenticated with the tenant key, if any), or
/// `None` when the command must open the vault file itself: no daemon answers, or the
/// CLI was pointed at another vault than the one the daemon serves.
pub async fn daemon(g: &Global) -> Result<Option<Backend>> {
    let socket = g.socket.clone().unwrap_or_else(paths::default_socket);
    let config_of = g.clone();
    let trusted: crate::client::TrustedUids =
        Arc::new(move || load_config(&config_of).map(|c| c.client.trusted_daemon_uids));
    let Some(mut d) = Daemon::connect(&socket, trusted).await? else {
        return Ok(None);
    };
    let with_key = match tenant_key(g)? {
        Some(key) => {
            d.auth(key).await?;
            true
        }
        None => false,
    };
    let backend = Backend::Daemon(d);
    if !with_key
        && let Some(wanted) = &g.vault
        && serves_another_vault(&backend, wanted).await?
    {
        tracing::debug!(socket = %socket.display(), "the daemon serves another vault; opening the file");
        return Ok(None);
    }
    tracing::debug!(socket = %socket.display(), "sending the command to the daemon");
    Ok(Some(backend))
}

/// True when the CLI was pointed at a vault file (`--vault`/`TOKENVAULT_VAULT`) and the
/// daemon on the socket serves a different one: the command must not go to it. A daemon
/// that refused the connection (caps) or dropped it is an error, not "another vault".
async fn serves_another_vault(b: &Backend, wanted: &Path) -> Result<bool> {
    match b.call(Request::DaemonInfo).await {
        Ok(Response::DaemonInfo { vault, .. }) => {
            let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
            Ok(canon(Path::new(&vault)) != canon(wanted))
        }
        // an older daemon, or a non-admin caller: trust the socket
        Ok(_) => Ok(false),
        Err(Error::Remote { code, .. })
            if matches!(code.as_str(), "bad_request" | "forbidden" | "unauthorized") =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// The daemon when one answers, else the vault file opened in this process (read-write)
/// as the local admin: for commands of several requests (`connect`, `exec`).
pub async fn backend(g: &Global) -> Result<Backend> {
    match daemon(g).await? {
        Some(b) => Ok(b),
        None => Ok(Backend::local(
            Arc::new(open_local(g, crate::vault::Access::ReadWrite)?),
            local_caller(),
        )),
    }
}

/// Runs `req` on the daemon when one answers, else in this process (with a progress bar
/// on a terminal for long backups).
pub async fn execute(g: &Global, req: Request) -> Result<Response> {
    match daemon(g).await? {
        Some(b) => b.call(req).await,
        None => execute_local(g, req).await,
    }
}

/// Opens the vault file in this process and answers `req` as the local admin.
async fn execute_local(g: &Global, req: Request) -> Result<Response> {
    refuse_tenant_key(g)?;
    let progress = super::progress::terminal_sink();
    if let Request::BackupVerify {
        path,
        identity,
        passphrase,
    } = req
    {
        // Verifying a backup needs no vault (nor its passphrase): any machine can check one.
        return crate::backup::backups::verify_file(&path, identity, passphrase, progress)
            .map(Response::Backup);
    }
    let path = vault_path(g);
    if super::store::no_vault_file(g, &path)? {
        return Err(Error::NoVault { path });
    }
    if let Request::BackupRestore {
        path: file,
        identity,
        passphrase,
        ..
    } = &req
    {
        // Check the whole backup before opening the vault: even a read-only session
        // rewrites redb's bookkeeping when the file is closed, and a wrong key or a bad
        // file must leave the vault byte-for-byte unchanged.
        crate::backup::backups::verify_file(
            file,
            identity.clone(),
            passphrase.clone(),
            progress.clone(),
        )?;
    }
    // A command that only reads opens the file read-only: nothing it does reaches the file.
    let access = if reads_only(&req) {
        crate::vault::Access::ReadOnly
    } else {
        crate::vault::Access::ReadWrite
    };
    let engine = open_local(g, access)?;
    let backend = Backend::local(Arc::new(engine), local_caller());
    match progress {
        Some(p) => backend.call_with_progress(req, p).await,
        None => backend.call(req).await,
    }
}

fn refuse_tenant_key(g: &Global) -> Result<()> {
    if has_tenant_key(g) {
        return Err(Error::Unauthorized(
            "a tenant key only works through the daemon, and no daemon answers on the socket; start `tokenvault serve`".into(),
        ));
    }
    Ok(())
}

/// Requests that never change the vault (and record no audit): opened read-only. `get`
/// and `backup export` are not among them: they record who took what (SPEC §9), and `get`
/// may refresh.
fn reads_only(req: &Request) -> bool {
    matches!(
        req,
        Request::Hello
            | Request::Status
            | Request::TenantList
            | Request::TenantKeyList { .. }
            | Request::TenantGrantList { .. }
            | Request::ClientList { .. }
            | Request::List { .. }
            | Request::Show { .. }
            | Request::Audit { .. }
            | Request::ProviderList
            | Request::ProviderShow { .. }
            | Request::AppleKeyList { .. }
            | Request::Metrics
            | Request::DaemonInfo
    )
}

/// Opens the vault in this process as an engine (configuration loaded), refusing a tenant
/// key (it only works through the daemon).
pub fn open_local(g: &Global, access: crate::vault::Access) -> Result<Engine> {
    refuse_tenant_key(g)?;
    let path = vault_path(g);
    if super::store::no_vault_file(g, &path)? {
        return Err(Error::NoVault { path });
    }
    let config = load_config(g)?;
    let pass = passphrase::passphrase(g.passphrase_file.as_deref(), false)?;
    let vault = super::store::open(g, &path, &pass, access)?;
    drop(pass);
    let engine = Engine::new(vault);
    engine.set_config(config);
    Ok(engine)
}
