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

/// A daemon connection as a link: calls go one at a time over one connection (the daemon
/// answers in order). Live events need the socket's `watch` op; until a client `Backend`
/// provides it, `watch` fails and the UI polls on its tick.
pub struct SocketLink {
    client: Arc<tokio::sync::Mutex<crate::client::Client>>,
    info: LinkInfo,
}

impl std::fmt::Debug for SocketLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketLink")
            .field("info", &self.info)
            .finish()
    }
}

impl SocketLink {
    pub fn new(client: crate::client::Client, info: LinkInfo) -> SocketLink {
        SocketLink {
            client: Arc::new(tokio::sync::Mutex::new(client)),
            info,
        }
    }
}

impl Link for SocketLink {
    fn call(&self, req: Request) -> BoxFuture<'static, Result<Response>> {
        let client = self.client.clone();
        Box::pin(async move { client.lock().await.call(&req).await })
    }

    fn call_with_progress(
        &self,
        req: Request,
        _progress: ProgressSink,
    ) -> BoxFuture<'static, Result<Response>> {
        // the daemon sends no progress over the socket: the gauge waits for the answer
        self.call(req)
    }

    fn watch(&self) -> BoxFuture<'static, Result<Events>> {
        Box::pin(async {
            Err(crate::error::Error::Internal(
                "this build follows the daemon by polling".into(),
            ))
        })
    }

    fn info(&self) -> LinkInfo {
        self.info.clone()
    }
}
