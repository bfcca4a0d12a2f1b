//! `connect`: the user-facing side of the OAuth flows (SPEC §5.6). The CLI runs the
//! loopback redirect listener or the device-flow polling and hands codes to the engine,
//! which performs every token exchange (client secrets never leave the vault).
//!
//! Headless (`--flow code --no-listen`, rclone's `authorize` model): no listener; the
//! user opens the printed URL in a browser on any machine, and pastes the address that
//! browser was redirected to (`http://127.0.0.1:PORT/callback?code=…&state=…`, which does
//! not load there) on stdin. The port is `--port`, default `HEADLESS_PORT`; the redirect
//! URI must be registered with the provider either way.

use super::args::Flow;
use super::output::note;
use crate::contract::{Caller, Request, Response};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::provider::flows::{self, Loopback, Pkce, Poll};
use crate::secret::Secret;
use std::time::Duration;

/// The redirect port of `--no-listen` when `--port` is not given: fixed, so the redirect
/// URI `http://127.0.0.1:8765/callback` can be registered with the provider once.
pub const HEADLESS_PORT: u16 = 8765;

/// Longest pasted line read (a redirect URL with its code is far shorter).
const MAX_PASTE: u64 = 16 * 1024;

#[derive(Debug)]
pub struct ConnectArgs {
    pub connection: String,
    pub flow: Flow,
    pub scopes: Vec<String>,
    pub port: u16,
    pub open: bool,
    pub timeout: Duration,
    /// Code flow without the loopback listener: read the redirected URL from stdin.
    pub no_listen: bool,
}

/// One line from stdin, read on a thread of its own so the timeout can give up on it (a
/// blocked read cannot be cancelled; the thread ends with the process). End of input
/// gives what was read, possibly nothing.
async fn read_pasted_line(timeout: Duration) -> Result<Secret> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        use std::io::{BufRead, Read};
        let mut line = zeroize::Zeroizing::new(String::new());
        let r = std::io::stdin()
            .lock()
            .take(MAX_PASTE)
            .read_line(&mut line)
            .map(|_| Secret::new(line.as_str()));
        let _ = tx.send(r);
    });
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(Ok(line))) => Ok(line),
        Ok(Ok(Err(e))) => Err(Error::io("cannot read the pasted URL from stdin", e)),
        Ok(Err(_)) => Err(Error::Internal("the stdin reader went away".into())),
        Err(_) => Err(Error::TimedOut(format!(
            "no URL was pasted within {} s, so nothing was stored: run `connect` again (--timeout SECONDS waits longer)",
            timeout.as_secs()
        ))),
    }
}

/// A browser is worth trying only with a display.
fn open_browser(url: &str) {
    let has_display =
        std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    if has_display || cfg!(target_os = "macos") {
        let _ = std::process::Command::new(opener)
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
}

/// Where the flow's engine requests go: an engine in this process, or the daemon.
#[derive(Debug)]
pub enum Via<'a> {
    Engine(&'a Engine, &'a Caller),
    Daemon(tokio::sync::Mutex<crate::client::Client>),
}

impl Via<'_> {
    async fn handle(&self, req: Request) -> Result<Response> {
        match self {
            Via::Engine(e, c) => e.handle(c, req).await,
            Via::Daemon(client) => client.lock().await.call(&req).await,
        }
    }
}

/// Runs the flow against `engine` and returns the stored connection.
pub async fn run(engine: &Engine, caller: &Caller, a: ConnectArgs) -> Result<Response> {
    run_via(&Via::Engine(engine, caller), a).await
}

/// Runs the flow through `via` (the daemon when one answers) and returns the stored
/// connection. The token exchange always happens in the engine: the client secret never
/// reaches this process.
pub async fn run_via(via: &Via<'_>, a: ConnectArgs) -> Result<Response> {
    let connection = crate::names::ConnectionId::parse(&a.connection)?.to_string();
    if a.no_listen && a.flow != Flow::Code {
        return Err(Error::invalid(
            "--no-listen",
            "only the code flow has a redirect to paste; the device flow never needs a listener",
        ));
    }
    match a.flow {
        Flow::ClientCredentials => {
            via.handle(Request::ConnectClientCredentials {
                connection,
                scopes: a.scopes,
            })
            .await
        }
        Flow::Code => {
            let pkce = Pkce::generate();
            let state = flows::random_state();
            let listener = if a.no_listen {
                None
            } else {
                Some(Loopback::bind(a.port).await?)
            };
            let redirect_uri = match &listener {
                Some(l) => l.redirect_uri(),
                None => format!(
                    "http://127.0.0.1:{}/callback",
                    if a.port == 0 { HEADLESS_PORT } else { a.port }
                ),
            };
            let url = match via
                .handle(Request::ConnectStart {
                    connection: connection.clone(),
                    redirect_uri: redirect_uri.clone(),
                    state: state.clone(),
                    code_challenge: pkce.challenge.clone(),
                    scopes: a.scopes,
                })
                .await?
            {
                Response::AuthorizationUrl { url } => url,
                _ => return Err(Error::Internal("unexpected answer to connect_start".into())),
            };
            let exchange = |code: Secret| {
                via.handle(Request::ConnectCode {
                    connection: connection.clone(),
                    code,
                    code_verifier: pkce.verifier.clone(),
                    redirect_uri: redirect_uri.clone(),
                })
            };
            let Some(listener) = listener else {
                note(format_args!(
                    "Open this URL in a browser, on any machine, to authorise {connection}:"
                ));
                note(format_args!("{url}"));
                note(format_args!(
                    "After you approve, the browser is sent to {redirect_uri}?code=… — nothing listens there, so that page does not load. Copy the whole address from the browser's address bar, paste it here and press Enter:"
                ));
                let pasted = read_pasted_line(a.timeout).await?;
                let code = flows::check_pasted(pasted.expose(), &state)?;
                drop(pasted);
                return exchange(code).await;
            };
            note(format_args!(
                "Open this URL in a browser to authorise {connection}:"
            ));
            note(format_args!("{url}"));
            note(format_args!("Waiting for the redirect to {redirect_uri} …"));
            if a.open {
                open_browser(&url);
            }
            let callback = listener.wait_for_code(&state, a.timeout).await?;
            let outcome = exchange(callback.code.clone()).await;
            // the browser's page tells what really happened to the exchange
            callback.finish(&outcome).await;
            outcome
        }
        Flow::Device => {
            let d = match via
                .handle(Request::DeviceStart {
                    connection: connection.clone(),
                    scopes: a.scopes,
                })
                .await?
            {
                Response::DeviceAuthorization(d) => d,
                _ => return Err(Error::Internal("unexpected answer to device_start".into())),
            };
            note(format_args!(
                "To authorise {connection}, visit {} and enter the code {}",
                d.verification_uri, d.user_code
            ));
            if let Some(c) = &d.verification_uri_complete {
                note(format_args!("(or open {c})"));
            }
            let device_code = d.device_code.clone();
            flows::poll_device(d.interval, d.expires_in, || {
                let req = Request::DevicePoll {
                    connection: connection.clone(),
                    device_code: device_code.clone(),
                };
                async move {
                    match via.handle(req).await? {
                        Response::DevicePending { slow_down: true } => Ok(Poll::SlowDown),
                        Response::DevicePending { slow_down: false } => Ok(Poll::Pending),
                        other => Ok(Poll::Done(other)),
                    }
                }
            })
            .await
        }
    }
}
