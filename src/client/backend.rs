//! `Backend`: the one way a front end (the CLI today, the TUI next) reaches the product —
//! an engine in this process acting for a caller, or a daemon over its socket. Both answer
//! the same `Request`s with the same `Response`s and errors, so a front end is written
//! once; which one it gets is the front end's choice (the CLI's rules are in
//! `cli::backend`).
//!
//! - [`Backend::call`]: one request, one answer.
//! - [`Backend::call_with_progress`]: the same, with progress of a long operation (backup
//!   export, verify, restore) reported to a [`ProgressSink`]. In process the engine reports
//!   to it; over the socket no progress is sent (the daemon reports to no sink).
//! - [`Backend::watch`]: the live events of SPEC §10 as an [`EventStream`]. In process:
//!   the engine's bus, filtered by the caller's scope; through the daemon: a connection of
//!   its own sending `{"op":"watch",…}`. A watcher too slow for the bus gets one
//!   `EventKind::Lagged { missed }` event and goes on.
//!
//! In process, a successful call writes the hand-out audit records it queued before it
//! returns (as the in-process CLI always did); [`Backend::flush_audit`] writes whatever a
//! failed one left queued.
//!
//! Must not: choose between daemon and file (the front end does), read files or options,
//! print, or fall back to another backend after an error.

use super::socket::Client;
use crate::contract::progress::ProgressSink;
use crate::contract::watch::WatchScope;
use crate::contract::{Caller, Event, EventKind, Request, Response};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::secret::Secret;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::broadcast;

/// Which uids besides this process's own and root may serve the socket; asked only when
/// another uid does (so a config file is read only when it matters).
pub type TrustedUids = Arc<dyn Fn() -> Result<Vec<u32>> + Send + Sync>;

/// Where requests go.
#[derive(Debug)]
pub enum Backend {
    /// A daemon over its socket.
    Daemon(Daemon),
    /// An engine in this process, acting as `caller`.
    Local { engine: Arc<Engine>, caller: Caller },
}

/// A daemon reached over its socket: one connection for calls (requests are answered in
/// order, one at a time), and what it takes to open another one for `watch`.
pub struct Daemon {
    socket: PathBuf,
    conn: tokio::sync::Mutex<Client>,
    tenant_key: Option<Secret>,
    trusted: TrustedUids,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never the key
        f.debug_struct("Daemon")
            .field("socket", &self.socket)
            .field("tenant_key", &self.tenant_key.as_ref().map(|_| "…"))
            .finish_non_exhaustive()
    }
}

impl Daemon {
    /// Connects to the daemon at `socket` (`Ok(None)`: no daemon there), checking its uid
    /// first (`Client::connect_trusting`).
    pub async fn connect(socket: &Path, trusted: TrustedUids) -> Result<Option<Daemon>> {
        let Some(conn) = open(socket, None, &trusted).await? else {
            return Ok(None);
        };
        Ok(Some(Daemon {
            socket: socket.to_path_buf(),
            conn: tokio::sync::Mutex::new(conn),
            tenant_key: None,
            trusted,
        }))
    }

    /// Scopes this daemon's connections (this one, and each `watch` opens) to the tenant
    /// of `key`.
    pub async fn auth(&mut self, key: Secret) -> Result<()> {
        self.conn.get_mut().auth(key.clone()).await?;
        self.tenant_key = Some(key);
        Ok(())
    }

    /// The socket this daemon answers on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

async fn open(
    socket: &Path,
    tenant_key: Option<&Secret>,
    trusted: &TrustedUids,
) -> Result<Option<Client>> {
    let trusted = trusted.clone();
    let Some(mut c) = Client::connect_trusting(socket, move || trusted()).await? else {
        return Ok(None);
    };
    if let Some(k) = tenant_key {
        c.auth(k.clone()).await?;
    }
    Ok(Some(c))
}

impl Backend {
    /// An engine in this process answering as `caller`.
    pub fn local(engine: Arc<Engine>, caller: Caller) -> Backend {
        Backend::Local { engine, caller }
    }

    /// True when requests go to a daemon.
    pub fn is_daemon(&self) -> bool {
        matches!(self, Backend::Daemon(_))
    }

    /// Answers one request.
    pub async fn call(&self, req: Request) -> Result<Response> {
        self.call_inner(req, None).await
    }

    /// Answers one request, reporting the progress of a long one (backups) to `progress`
    /// when it runs in this process. Through a daemon no progress arrives.
    pub async fn call_with_progress(
        &self,
        req: Request,
        progress: ProgressSink,
    ) -> Result<Response> {
        self.call_inner(req, Some(progress)).await
    }

    async fn call_inner(&self, req: Request, progress: Option<ProgressSink>) -> Result<Response> {
        match self {
            Backend::Daemon(d) => d.conn.lock().await.call(&req).await,
            Backend::Local { engine, caller } => {
                let result = engine.handle_with_progress(caller, req, progress).await;
                // Hand-outs are audited only when the request succeeded: a refused one
                // (a record failing its integrity check, say) writes nothing.
                if result.is_ok() {
                    engine.flush_audit()?;
                }
                result
            }
        }
    }

    /// Writes hand-out audit records still queued in this process (none through a
    /// daemon, which writes its own).
    pub fn flush_audit(&self) -> Result<()> {
        match self {
            Backend::Daemon(_) => Ok(()),
            Backend::Local { engine, .. } => engine.flush_audit().map(|_| ()),
        }
    }

    /// Live events (SPEC §10) within the caller's scope and `filter` (`TENANT` or
    /// `TENANT/PROVIDER`, as for `list`), until the stream is dropped or the source ends
    /// (the daemon shut down, or the engine is gone). A filter the caller may not use is
    /// refused here, before any event.
    pub async fn watch(&self, filter: Option<String>) -> Result<EventStream> {
        match self {
            Backend::Local { engine, caller } => {
                let scope = WatchScope::new(caller, filter.as_deref())?;
                Ok(EventStream(Source::Local {
                    rx: engine.subscribe(),
                    scope,
                    engine: engine.clone(),
                }))
            }
            Backend::Daemon(d) => {
                let mut c = open(&d.socket, d.tenant_key.as_ref(), &d.trusted)
                    .await?
                    .ok_or_else(|| Error::NoDaemon {
                        socket: d.socket.clone(),
                    })?;
                match c.call(&Request::Watch { filter }).await? {
                    Response::Watching => Ok(EventStream(Source::Daemon(c))),
                    _ => Err(Error::Internal(
                        "the daemon did not accept `watch` (is it an older version?); upgrade it"
                            .into(),
                    )),
                }
            }
        }
    }
}

/// The events of one `watch`, in order. Dropping it ends the watch (through a daemon: the
/// connection is closed).
#[derive(Debug)]
pub struct EventStream(Source);

enum Source {
    Local {
        rx: broadcast::Receiver<Event>,
        scope: WatchScope,
        engine: Arc<Engine>,
    },
    Daemon(Client),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Local { .. } => "Local",
            Source::Daemon(_) => "Daemon",
        })
    }
}

impl EventStream {
    /// The next event; `None` when the watch ended (the daemon shut down or closed the
    /// connection, or the engine's bus closed). An error is the daemon's (a revoked key,
    /// say) or a broken connection; the stream ends after it.
    pub async fn next(&mut self) -> Option<Result<Event>> {
        match &mut self.0 {
            Source::Local { rx, scope, engine } => loop {
                match rx.recv().await {
                    Ok(e) if scope.admits(&e) => return Some(Ok(e)),
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        return Some(Ok(Event::new(engine.now(), EventKind::Lagged { missed })));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            },
            // `None` from the socket: the daemon closed the connection (it shut down)
            Source::Daemon(c) => match c.read_answer().await? {
                Ok(Response::Event { event }) => Some(Ok(event)),
                Ok(_) => Some(Err(Error::Internal(
                    "the daemon sent something other than an event on a watch; are the client and the daemon the same version?".into(),
                ))),
                Err(e) => Some(Err(e)),
            },
        }
    }
}
