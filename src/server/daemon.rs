//! `tokenvault serve` (SPEC §6): everything around the listener.
//!
//! Start-up, in order: refuse a non-loopback `--metrics-listen`; check the socket's
//! directory and its parents, or create it 0700 (`runtime_dir`: an untrustworthy one is
//! refused, exit 1); take an exclusive lock on `SOCKET.lock`, never through a link (a
//! second daemon stops here, exit 3); unlock the vault; replace a stale socket left by a
//! crashed daemon (only a socket of our own uid, never another kind of file); bind with
//! mode 0600 (or `--socket-mode`, group
//! `--socket-group`); start the scheduler, the listener, the audit flusher, webhooks and
//! the metrics HTTP endpoint; log one start-up line (version, vault, socket, connections,
//! next due); tell systemd READY=1, then WATCHDOG=1 at half of `WatchdogSec=` while the
//! vault answers.
//!
//! The config file is checked before start-up goes further, and again on each SIGHUP
//! (`daemon_config::load_for_daemon`: a named file must exist, webhooks need a `secret_file`,
//! `[backup]` needs recipients; exit 6 at start, the old config kept on a reload).
//!
//! Signals: SIGHUP reloads the config file (a broken file is reported and the old config
//! kept); SIGTERM/SIGINT stop accepting, give connections and the scheduler up to
//! `listener::GRACE` to finish, flush queued audit records, remove the socket, exit 0.
//!
//! Audit records of token hand-outs are queued by the engine and written here once a
//! second (off the request path), so `get` never waits for a disk sync.

use super::{listener, runtime_dir};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::vault::Vault;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Everything `serve` needs, resolved by the CLI.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub vault: PathBuf,
    /// The shared PostgreSQL store (SPEC §12), used instead of `vault` when set.
    pub store: Option<crate::vault::pg::StoreConfig>,
    pub socket: PathBuf,
    pub config: PathBuf,
    /// The config file was named (`--config` / `TOKENVAULT_CONFIG`), so it must exist;
    /// the default path is optional.
    pub config_required: bool,
    pub passphrase_file: Option<PathBuf>,
    pub metrics_listen: Option<SocketAddr>,
    /// Octal permission bits for the socket (default 0600).
    pub socket_mode: Option<u32>,
    pub socket_group: Option<String>,
    /// True when `socket` is the default of SPEC §3: its directory then belongs to
    /// tokenvault alone and is held to the private rule (`runtime_dir`).
    pub socket_dir_is_default: bool,
}

/// Parses `--socket-mode` (octal, e.g. `660` or `0660`). Execute bits and anything
/// beyond rw for user/group/other are refused; the owner always keeps rw.
pub fn parse_socket_mode(s: &str) -> Result<u32> {
    let m = u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .map_err(|_| Error::invalid("--socket-mode", "must be an octal mode like 0660"))?;
    if m & !0o666 != 0 || m & 0o600 != 0o600 {
        return Err(Error::invalid(
            "--socket-mode",
            "only read/write bits are allowed, and the owner must keep rw (e.g. 0600, 0660, 0666)",
        ));
    }
    Ok(m)
}

/// Holds the daemon lock for as long as it lives.
#[derive(Debug)]
struct DaemonLock {
    _flock: nix::fcntl::Flock<std::fs::File>,
}

fn take_lock(path: &Path) -> Result<DaemonLock> {
    let file = runtime_dir::open_lock_file(path, nix::unistd::geteuid().as_raw())?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(flock) => Ok(DaemonLock { _flock: flock }),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(Error::VaultInUse {
            path: path.to_owned(),
        }),
        Err((_, e)) => Err(Error::io(
            format!("cannot lock {}", path.display()),
            std::io::Error::from(e),
        )),
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(format!("cannot chmod {}", path.display()), e))
}

fn resolve_group(group: &str) -> Result<nix::unistd::Gid> {
    Ok(match group.parse::<u32>() {
        Ok(n) => nix::unistd::Gid::from_raw(n),
        Err(_) => {
            nix::unistd::Group::from_name(group)
                .map_err(|e| Error::io("cannot look up the group", std::io::Error::from(e)))?
                .ok_or_else(|| {
                    Error::invalid(
                        "--socket-group",
                        "no such group on this system; check the name with `getent group`",
                    )
                })?
                .gid
        }
    })
}

fn set_group(path: &Path, group: &str) -> Result<()> {
    let gid = resolve_group(group)?;
    nix::unistd::chown(path, None, Some(gid)).map_err(|e| {
        Error::io(
            format!("cannot give {} to group {group}", path.display()),
            std::io::Error::from(e),
        )
    })
}

/// Binds the socket with the right permissions. The umask is tightened around `bind` so
/// the socket never exists with wider permissions than asked, even for an instant.
fn bind_socket(opts: &ServeOptions) -> Result<tokio::net::UnixListener> {
    let mode = opts.socket_mode.unwrap_or(0o600);
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = std::os::unix::net::UnixListener::bind(&opts.socket);
    nix::sys::stat::umask(old);
    let std_listener =
        bound.map_err(|e| Error::io(format!("cannot listen on {}", opts.socket.display()), e))?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| Error::io("cannot configure the socket", e))?;
    set_mode(&opts.socket, mode)?;
    if let Some(g) = &opts.socket_group {
        set_group(&opts.socket, g)?;
    }
    tokio::net::UnixListener::from_std(std_listener)
        .map_err(|e| Error::io("cannot register the socket with the runtime", e))
}

/// The socket's directory, checked and prepared by `runtime_dir::prepare` (the trust
/// rules live there): created 0700; when the socket mode lets the group or others in, they
/// also get search (x) permission on the directory, nothing more.
fn prepare_dir(opts: &ServeOptions) -> Result<PathBuf> {
    let dir = opts
        .socket
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let mode = opts.socket_mode.unwrap_or(0o600);
    let mut dir_mode = 0o700;
    if mode & 0o060 != 0 {
        dir_mode |= 0o010;
    }
    if mode & 0o006 != 0 {
        dir_mode |= 0o001;
    }
    let gid = opts
        .socket_group
        .as_deref()
        .map(resolve_group)
        .transpose()?
        .map(|g| g.as_raw());
    runtime_dir::prepare(
        &dir,
        opts.socket_dir_is_default,
        nix::unistd::geteuid().as_raw(),
        dir_mode,
        gid,
    )?;
    Ok(dir)
}

/// Sends a state line to systemd's notification socket, when run as `Type=notify`.
pub fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
    } else {
        sock.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

fn loopback_only(addr: &SocketAddr) -> Result<()> {
    if !addr.ip().is_loopback() {
        return Err(Error::invalid(
            "--metrics-listen",
            format!(
                "{addr} is not a loopback address; metrics are served on 127.0.0.1 or [::1] only (put a proxy in front to publish them)"
            ),
        ));
    }
    Ok(())
}

/// Runs the daemon until SIGTERM or SIGINT. Returns the exit code (0 after a clean stop).
pub async fn serve(opts: ServeOptions, passphrase: impl FnOnce() -> Result<Secret>) -> Result<i32> {
    serve_until(opts, passphrase, std::future::pending(), |_| {}).await
}

/// `serve` that also stops (the same clean way as on SIGTERM) when `stop` resolves, and
/// calls `on_ready` with the engine once the socket is bound, before the scheduler starts
/// (so a subscriber misses no event). `tokenvault demo` runs its daemon this way.
pub async fn serve_until(
    opts: ServeOptions,
    passphrase: impl FnOnce() -> Result<Secret>,
    stop: impl std::future::Future<Output = ()>,
    on_ready: impl FnOnce(&Arc<Engine>),
) -> Result<i32> {
    use tokio::signal::unix::{SignalKind, signal};
    if let Some(a) = &opts.metrics_listen {
        loopback_only(a)?;
    }
    // a broken or incomplete config stops the start (exit 6) before anything is created
    let config = super::daemon_config::load_for_daemon(&opts.config, opts.config_required)?;
    // A backup directory another user controls is refused before anything starts.
    crate::backup::schedule::check_config(&config)?;
    prepare_dir(&opts)?;
    let lock_path = PathBuf::from(format!("{}.lock", opts.socket.display()));
    let _lock = take_lock(&lock_path).map_err(|e| match e {
        Error::VaultInUse { .. } => Error::DaemonRunning {
            socket: opts.socket.clone(),
        },
        other => other,
    })?;
    if opts.store.is_none() && !opts.vault.exists() {
        return Err(Error::NoVault {
            path: opts.vault.clone(),
        });
    }
    let pass = passphrase()?;
    let vault = match &opts.store {
        Some(store) => {
            if let Some(s) = config.store.lease_secs {
                crate::vault::claims::set_lease(Duration::from_secs(s.max(5)));
            }
            Vault::open_store(store, &pass, crate::vault::Access::ReadWrite)?
        }
        None => Vault::open(&opts.vault, &pass)?,
    };
    drop(pass);
    let mut engine = Engine::new(vault);
    engine.set_daemon(true);
    engine.set_daemon_socket(&opts.socket);
    engine.set_config(config);
    let engine = Arc::new(engine);

    // Signals are hooked before the socket exists so an early SIGTERM is not fatal.
    let mut sigterm =
        signal(SignalKind::terminate()).map_err(|e| Error::io("cannot handle SIGTERM", e))?;
    let mut sigint =
        signal(SignalKind::interrupt()).map_err(|e| Error::io("cannot handle SIGINT", e))?;
    let mut sighup =
        signal(SignalKind::hangup()).map_err(|e| Error::io("cannot handle SIGHUP", e))?;

    runtime_dir::remove_stale_socket(&opts.socket, nix::unistd::geteuid().as_raw())?;
    let listener = bind_socket(&opts)?;
    let metrics_listener = match &opts.metrics_listen {
        Some(a) => Some(
            tokio::net::TcpListener::bind(a)
                .await
                .map_err(|e| Error::io(format!("cannot listen on {a} for metrics"), e))?,
        ),
        None => None,
    };

    on_ready(&engine);
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |rx: &watch::Receiver<bool>| {
        let mut rx = rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let refresh_rt = crate::refresh::scheduler_runtime()
        .map_err(|e| Error::io("cannot start the refresh runtime", e))?;
    let server = tokio::spawn(listener::run(engine.clone(), listener, stopped(&stop_rx)));
    let scheduler = refresh_rt.spawn(crate::refresh::run_scheduler(
        engine.refresher().clone(),
        stopped(&stop_rx),
    ));
    let hooks = tokio::spawn(crate::webhook::run(
        engine.context().clone(),
        stopped(&stop_rx),
    ));
    let flusher = tokio::spawn(flush_audit_every_second(engine.clone(), stopped(&stop_rx)));
    let heartbeat = tokio::spawn(heartbeat(engine.clone(), stopped(&stop_rx)));
    let backups = tokio::spawn(crate::backup::run_scheduled_backups(
        engine.backups().clone(),
        stopped(&stop_rx),
    ));
    let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
    let metrics_http = metrics_listener.map(|l| {
        tokio::spawn(super::metrics_http::run(
            engine.clone(),
            l,
            stopped(&stop_rx),
        ))
    });

    log_startup(&engine, &opts, metrics_addr);
    sd_notify("READY=1\nSTATUS=serving");
    let watchdog = watchdog_interval()
        .map(|every| tokio::spawn(ping_watchdog(engine.clone(), every, stopped(&stop_rx))));

    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => { tracing::info!("stop requested: shutting down"); break; }
            _ = sigterm.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = sigint.recv() => { tracing::info!("SIGINT: shutting down"); break; }
            _ = sighup.recv() => {
                // the same checks as at start; a bad file leaves the running config whole
                match super::daemon_config::load_for_daemon(&opts.config, opts.config_required) {
                    Ok(c) => {
                        engine.set_config(c);
                        tracing::info!(config = %opts.config.display(), "SIGHUP: configuration reloaded");
                        sd_notify("READY=1\nSTATUS=serving");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "SIGHUP: configuration NOT reloaded, keeping the previous one: the daemon runs on it until the file is fixed and SIGHUP is sent again");
                        sd_notify("READY=1\nSTATUS=serving; last reload failed: the configuration file is broken (see the log)");
                    }
                }
            }
        }
    }
    sd_notify("STOPPING=1");
    let deadline = tokio::time::Instant::now() + listener::GRACE + Duration::from_millis(500);
    let _ = stop_tx.send(true);
    if tokio::time::timeout_at(deadline, server).await.is_err() {
        tracing::warn!("the listener did not stop in time");
    }
    match tokio::time::timeout_at(deadline, scheduler).await {
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "the scheduler stopped with an error"),
        Err(_) => tracing::warn!("refreshes still in flight at the deadline were abandoned"),
        _ => {}
    }
    refresh_rt.shutdown_background();
    let _ = tokio::time::timeout_at(deadline, hooks).await;
    let _ = tokio::time::timeout_at(deadline, flusher).await;
    let _ = tokio::time::timeout_at(deadline, backups).await;
    heartbeat.abort();
    if let Some(h) = metrics_http {
        let _ = tokio::time::timeout_at(deadline, h).await;
    }
    if let Some(h) = watchdog {
        let _ = tokio::time::timeout_at(deadline, h).await;
    }
    match engine.flush_audit() {
        Ok(n) if n > 0 => tracing::debug!(records = n, "audit records flushed"),
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "cannot write the last audit records"),
    }
    if let Err(e) = std::fs::remove_file(&opts.socket) {
        tracing::warn!(error = %e, "cannot remove the socket");
    }
    tracing::info!("stopped");
    Ok(0)
}

/// The one line an operator reads at start-up (SPEC §9: the next due connection is named
/// by its pseudonym, never its account).
fn log_startup(engine: &Engine, opts: &ServeOptions, metrics: Option<SocketAddr>) {
    let now = engine.now();
    let summary = engine.vault().read().and_then(|rx| {
        let mut connections = 0u64;
        rx.for_each_connection("", |_, _| {
            connections += 1;
            Ok(true)
        })?;
        Ok((connections, rx.tenants()?.len(), rx.next_due()?))
    });
    let (connections, tenants, next) = match summary {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the vault summary for the start-up line");
            (0, 0, None)
        }
    };
    let next_due = match next {
        Some((at, key)) => format!(
            "{} (connection {})",
            crate::timefmt::fmt_in(at, now),
            engine.vault().pseudonym(&key)
        ),
        None => "nothing scheduled".into(),
    };
    tracing::info!(
        version = crate::version::LONG_VERSION,
        vault = %opts.vault.display(),
        socket = %opts.socket.display(),
        tenants,
        connections,
        next_due = %next_due,
        metrics = %metrics
            .map(|a| format!("http://{a}/metrics"))
            .unwrap_or_else(|| "off".into()),
        "daemon ready"
    );
}

/// Half the watchdog timeout systemd asked for (`WatchdogSec=` sets `WATCHDOG_USEC`), if
/// the watchdog is meant for this process.
fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Some(pid) = std::env::var("WATCHDOG_PID").ok()
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Tells systemd the daemon is alive (`WATCHDOG=1`) as long as the runtime turns and the
/// vault answers a read; a daemon that hangs stops pinging and systemd restarts it.
async fn ping_watchdog(
    engine: Arc<Engine>,
    every: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {
                let e = engine.clone();
                match tokio::task::spawn_blocking(move || e.vault().read().map(drop)).await {
                    Ok(Ok(())) => sd_notify("WATCHDOG=1"),
                    _ => tracing::warn!("the vault did not answer; not pinging the systemd watchdog"),
                }
            }
        }
    }
}

/// On the shared store: records this node in the `nodes` table every few seconds, so
/// `status` on any node can list its peers. Nothing on a vault file.
async fn heartbeat(engine: Arc<Engine>, shutdown: impl std::future::Future<Output = ()>) {
    let Some(store) = engine.vault().store().cloned() else {
        return;
    };
    let mut tick = tokio::time::interval(crate::vault::pg::HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {
                if let Err(e) = store.heartbeat().await {
                    tracing::debug!("node heartbeat not recorded: {e}");
                }
            }
        }
    }
}

async fn flush_audit_every_second(
    engine: Arc<Engine>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {
                let e = engine.clone();
                match tokio::task::spawn_blocking(move || e.flush_audit()).await {
                    Ok(Err(e)) => tracing::error!(error = %e, "cannot write queued audit records; will retry"),
                    Err(e) => tracing::error!(error = %e, "audit flusher failed"),
                    Ok(Ok(_)) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_modes() {
        assert_eq!(parse_socket_mode("0660").unwrap(), 0o660);
        assert_eq!(parse_socket_mode("600").unwrap(), 0o600);
        assert_eq!(parse_socket_mode("0o666").unwrap(), 0o666);
        for bad in ["0700", "0460", "abc", "0", "1777"] {
            assert!(parse_socket_mode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn metrics_listen_is_loopback_only() {
        assert!(loopback_only(&"127.0.0.1:9100".parse().unwrap()).is_ok());
        assert!(loopback_only(&"[::1]:9100".parse().unwrap()).is_ok());
        assert!(loopback_only(&"0.0.0.0:9100".parse().unwrap()).is_err());
        assert!(loopback_only(&"192.168.1.2:9100".parse().unwrap()).is_err());
    }
}
