//! Runs a demo: the directory (a fresh private temp dir, or `--keep DIR`), the simulated
//! providers, the world, then the real daemon (`server::serve_until`: the same start-up,
//! scheduler, socket and shutdown as `tokenvault serve`) on a socket in that directory,
//! while a front end (the CLI's headless printer, or the TUI) is attached.
//!
//! The run ends when the front end returns (the daemon is then stopped the clean way), or
//! when the daemon stops by itself (SIGINT/SIGTERM, or an error). Then the directory is
//! removed, unless it was `--keep DIR`; also after an error, and after Ctrl-C while the world
//! is still being built.
//!
//! Must not: print (the front end does, from the `Session`), or leave anything outside its
//! directory behind.

use super::sim_provider::SimProviders;
use super::world::{self, World};
use crate::contract::Event;
use crate::error::{Error, Result};
use std::future::Future;
use std::path::{Path, PathBuf};
use tokio::sync::{broadcast, oneshot};

/// What the command line asked for.
#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    /// Build the world in this directory and keep it after the run.
    pub keep: Option<PathBuf>,
}

/// What a front end gets while the demo's daemon runs.
#[derive(Debug)]
pub struct Session {
    pub world: World,
    /// Every event of the daemon's bus from before its scheduler started (nothing missed).
    pub events: broadcast::Receiver<Event>,
    /// True when the directory is removed at the end.
    pub removed_on_exit: bool,
    /// `http://127.0.0.1:PORT` of the simulated providers.
    pub providers: String,
}

/// Removes the demo directory when dropped, unless it is kept.
#[derive(Debug)]
struct DirGuard {
    dir: PathBuf,
    keep: bool,
}

impl Drop for DirGuard {
    fn drop(&mut self) {
        if !self.keep
            && let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, dir = %self.dir.display(), "cannot remove the demo directory");
        }
    }
}

/// A new private directory under the system's temp dir: `tokenvault-demo-RANDOM`, 0700,
/// created exclusively (never an existing path someone planted).
fn temp_dir() -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::temp_dir();
    let name = format!(
        "tokenvault-demo-{}",
        hex::encode(crate::vault::crypto::random_bytes(6))
    );
    let dir = base.join(name);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| {
            Error::io(
                format!(
                    "cannot create a demo directory in {} (set TMPDIR to a writable directory, or use --keep DIR)",
                    base.display()
                ),
                e,
            )
        })?;
    Ok(dir)
}

/// `--keep DIR` must be new or empty: the demo never mixes its files with others.
fn check_keep_dir(dir: &Path) -> Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::invalid(
                    "--keep",
                    "the directory is not empty; name a new or empty directory for the demo's files",
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(
            format!("cannot read the --keep directory {}", dir.display()),
            e,
        )),
    }
}

/// Resolves when SIGINT or SIGTERM arrives (before the daemon's own handlers take over).
async fn interrupted() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| Error::io("cannot handle SIGINT", e))?;
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| Error::io("cannot handle SIGTERM", e))?;
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    Ok(())
}

/// Runs the demo with `attach` as its front end; returns the exit code (0 after a clean
/// stop, whether the front end returned or a signal stopped the daemon).
pub async fn run<F, Fut>(opts: DemoOptions, attach: F) -> Result<i32>
where
    F: FnOnce(Session) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let (dir, keep) = match &opts.keep {
        Some(d) => {
            check_keep_dir(d)?;
            world::private_dir(d)?;
            let abs = std::path::absolute(d)
                .map_err(|e| Error::io(format!("cannot resolve {}", d.display()), e))?;
            (abs, true)
        }
        None => (temp_dir()?, false),
    };
    let _guard = DirGuard {
        dir: dir.clone(),
        keep,
    };

    let specs = world::provider_specs();
    let sim = SimProviders::start(specs.clone()).await?;
    let built = tokio::select! {
        w = world::build(&dir, &sim, &specs) => Some(w?),
        i = interrupted() => { i?; None }
    };
    let Some(world) = built else {
        return Ok(0);
    };

    let serve_opts = crate::server::ServeOptions {
        store: None,
        vault: world.vault.clone(),
        socket: world.socket.clone(),
        config: world.config.clone(),
        config_required: true,
        passphrase_file: Some(world.passphrase_file.clone()),
        metrics_listen: None,
        socket_mode: None,
        socket_group: None,
        socket_dir_is_default: false,
    };
    let pass_file = world.passphrase_file.clone();
    // the demo wrote this file itself a moment ago (0600, in its 0700 directory)
    let passphrase = move || {
        std::fs::read_to_string(&pass_file)
            .map(|t| crate::secret::Secret::new(zeroize::Zeroizing::new(t).trim()))
            .map_err(|e| Error::io(format!("cannot read {}", pass_file.display()), e))
    };
    let (ready_tx, ready_rx) = oneshot::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let serve = crate::server::serve_until(
        serve_opts,
        passphrase,
        async {
            let _ = stop_rx.await;
        },
        move |engine| {
            let _ = ready_tx.send(engine.subscribe());
        },
    );
    let providers = sim.base().to_owned();
    let front = async move {
        // the daemon failed before it was ready: its error is the answer
        let Ok(events) = ready_rx.await else {
            return Ok(());
        };
        let result = attach(Session {
            world,
            events,
            removed_on_exit: !keep,
            providers,
        })
        .await;
        let _ = stop_tx.send(());
        result
    };
    tokio::pin!(serve);
    tokio::pin!(front);
    let code = tokio::select! {
        // stopped by a signal (or failed): the front end goes with it
        code = &mut serve => code?,
        attached = &mut front => {
            let code = serve.await;
            attached?;
            code?
        }
    };
    drop(sim);
    Ok(code)
}
