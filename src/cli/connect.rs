//! `connect`: the user-facing side of the OAuth flows (SPEC §5.6). The CLI runs the
//! loopback redirect listener or the device-flow polling and hands codes to the engine,
//! which performs every token exchange (client secrets never leave the vault).

use super::args::Flow;
use crate::engine::{Caller, Engine, Request, Response};
use crate::error::{Error, Result};
use crate::provider::flows::{self, Loopback, Pkce, Poll};
use std::time::Duration;

#[derive(Debug)]
pub struct ConnectArgs {
    pub connection: String,
    pub flow: Flow,
    pub scopes: Vec<String>,
    pub port: u16,
    pub open: bool,
    pub timeout: Duration,
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
    match a.flow {
        Flow::ClientCredentials => {
            via.handle(Request::ConnectClientCredentials {
                connection,
                scopes: a.scopes,
            })
            .await
        }
        Flow::Code => {
            let listener = Loopback::bind(a.port).await?;
            let pkce = Pkce::generate();
            let state = flows::random_state();
            let redirect_uri = listener.redirect_uri();
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
            eprintln!("Open this URL in a browser to authorise {connection}:");
            eprintln!("{url}");
            eprintln!("Waiting for the redirect to {redirect_uri} …");
            if a.open {
                open_browser(&url);
            }
            let code = listener.wait_for_code(&state, a.timeout).await?;
            via.handle(Request::ConnectCode {
                connection,
                code,
                code_verifier: pkce.verifier,
                redirect_uri,
            })
            .await
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
            eprintln!(
                "To authorise {connection}, visit {} and enter the code {}",
                d.verification_uri, d.user_code
            );
            if let Some(c) = &d.verification_uri_complete {
                eprintln!("(or open {c})");
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
