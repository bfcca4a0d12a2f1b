//! How the terminal UI reaches the product: the [`Link`] trait (send a `Request`, follow
//! the live events, say where it is connected), and [`EngineLink`], a link over an
//! in-process [`Engine`] for tests, benchmarks and the local mode.
//!
//! Must not: decide anything a `Request` does not say; every call goes through
//! `Engine::handle` (or the daemon) with the link's caller, so the TUI can do exactly what
//! that caller can do from the CLI, and no more.

use super::app::LinkInfo;
use crate::contract::{Caller, Event, EventKind, Request, Response};
use crate::engine::Engine;
use crate::error::Result;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use std::sync::Arc;

/// Live events, in order; a lagging reader gets one `Lagged` event, not an error.
pub type Events = BoxStream<'static, Result<Event>>;

/// Where a long operation reports `(done, total)`.
pub type ProgressSink = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// The TUI's way to the product. Implemented over the client `Backend` (daemon or
/// in-process engine) and over a bare `Engine`.
pub trait Link: Send + Sync + 'static {
    fn call(&self, req: Request) -> BoxFuture<'static, Result<Response>>;
    /// `call`, reporting progress (the backup export's gauge).
    fn call_with_progress(
        &self,
        req: Request,
        progress: ProgressSink,
    ) -> BoxFuture<'static, Result<Response>>;
    /// Starts following live events.
    fn watch(&self) -> BoxFuture<'static, Result<Events>>;
    /// Where this link goes and as whom, for the header.
    fn info(&self) -> LinkInfo;
}

/// A link straight to an in-process engine, as `caller`.
#[derive(Debug, Clone)]
pub struct EngineLink {
    pub engine: Arc<Engine>,
    pub caller: Caller,
    pub info: LinkInfo,
}

impl EngineLink {
    pub fn new(engine: Arc<Engine>, caller: Caller, place: String) -> EngineLink {
        let (who, tenant) = match &caller {
            Caller::Admin { .. } => ("admin".to_owned(), None),
            Caller::Tenant { tenant, .. } => (format!("tenant {tenant}"), Some(tenant.clone())),
        };
        let recipients = engine
            .config()
            .backup
            .as_ref()
            .map(|b| b.recipients.clone())
            .unwrap_or_default();
        EngineLink {
            engine,
            caller,
            info: LinkInfo {
                place,
                caller: who,
                tenant,
                recipients,
            },
        }
    }
}

impl Link for EngineLink {
    fn call(&self, req: Request) -> BoxFuture<'static, Result<Response>> {
        let engine = self.engine.clone();
        let caller = self.caller.clone();
        Box::pin(async move { engine.handle(&caller, req).await })
    }

    fn call_with_progress(
        &self,
        req: Request,
        _progress: ProgressSink,
    ) -> BoxFuture<'static, Result<Response>> {
        self.call(req)
    }

    fn watch(&self) -> BoxFuture<'static, Result<Events>> {
        let rx = self.engine.subscribe();
        let tenant = self.info.tenant.clone();
        Box::pin(async move { Ok(bus_events(rx, tenant)) })
    }

    fn info(&self) -> LinkInfo {
        self.info.clone()
    }
}

/// The engine's bus as [`Events`]: a lag becomes one `Lagged` event; a tenant caller sees
/// only its own tenant's events (as `watch` over the socket would give it).
pub fn bus_events(rx: tokio::sync::broadcast::Receiver<Event>, tenant: Option<String>) -> Events {
    use tokio::sync::broadcast::error::RecvError;
    Box::pin(futures::stream::unfold(rx, move |mut rx| {
        let tenant = tenant.clone();
        async move {
            loop {
                match rx.recv().await {
                    Ok(ev) => {
                        if let Some(t) = &tenant
                            && ev.tenant() != Some(t.as_str())
                        {
                            continue;
                        }
                        return Some((Ok(ev), rx));
                    }
                    Err(RecvError::Lagged(missed)) => {
                        let ev = Event::new(
                            chrono::Utc::now().timestamp(),
                            EventKind::Lagged { missed },
                        );
                        return Some((Ok(ev), rx));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    }))
}

/// Turns the TUI's `(done, total)` callback into a contract progress sink.
fn sink_of(progress: ProgressSink) -> crate::contract::progress::ProgressSink {
    use crate::contract::progress::ProgressEvent;
    let total = Arc::new(std::sync::atomic::AtomicU64::new(0));
    crate::contract::progress::ProgressSink::new(move |e| match e {
        ProgressEvent::Start { total: t, .. } => {
            total.store(t, std::sync::atomic::Ordering::Relaxed);
            progress(0, t);
        }
        ProgressEvent::Advance { done } => {
            progress(done, total.load(std::sync::atomic::Ordering::Relaxed))
        }
        ProgressEvent::Finish => {}
    })
}

/// The client `Backend` (the daemon over its socket, or an engine in this process) as a
/// link: what `tokenvault tui` uses. Live events come from `Backend::watch`.
pub struct BackendLink {
    backend: Arc<crate::client::Backend>,
    info: LinkInfo,
}

impl std::fmt::Debug for BackendLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendLink")
            .field("info", &self.info)
            .finish()
    }
}

impl BackendLink {
    pub fn new(backend: crate::client::Backend, info: LinkInfo) -> BackendLink {
        BackendLink {
            backend: Arc::new(backend),
            info,
        }
    }
}

impl Link for BackendLink {
    fn call(&self, req: Request) -> BoxFuture<'static, Result<Response>> {
        let b = self.backend.clone();
        Box::pin(async move { b.call(req).await })
    }

    fn call_with_progress(
        &self,
        req: Request,
        progress: ProgressSink,
    ) -> BoxFuture<'static, Result<Response>> {
        let b = self.backend.clone();
        Box::pin(async move { b.call_with_progress(req, sink_of(progress)).await })
    }

    fn watch(&self) -> BoxFuture<'static, Result<Events>> {
        let b = self.backend.clone();
        Box::pin(async move {
            let stream = b.watch(None).await?;
            let events: Events = Box::pin(futures::stream::unfold(stream, |mut s| async move {
                s.next().await.map(|e| (e, s))
            }));
            Ok(events)
        })
    }

    fn info(&self) -> LinkInfo {
        self.info.clone()
    }
}
