//! `connect` (SPEC §5.6): the OAuth flows driven from the front end's side. The token
//! exchange always happens in the engine (in process or in the daemon, whichever the
//! `Backend` reaches), so a client secret never reaches a front end; what runs here is the
//! loopback redirect listener, the device-flow polling, and the state/PKCE checks of a
//! pasted redirect.
//!
//! What the user must do is handed back as [`ConnectStep`]s to a [`ConnectUi`]: the CLI
//! prints them (and opens a browser), the TUI will draw them. Nothing here prints, reads
//! stdin or opens a browser.
//!
//! Headless (`no_listen`, rclone's `authorize` model): no listener; the user opens the URL
//! in a browser on any machine and pastes the address that browser was redirected to
//! (`http://127.0.0.1:PORT/callback?code=…&state=…`, which does not load there); the
//! front end supplies that line through [`ConnectUi::paste`]. The port is `port`, default
//! [`HEADLESS_PORT`]; the redirect URI must be registered with the provider either way.

use super::backend::Backend;
use crate::contract::{Request, Response};
use crate::error::{Error, Result};
use crate::provider::flows::{self, Loopback, Pkce, Poll};
use crate::secret::Secret;
use std::future::Future;
use std::time::Duration;

/// The redirect port of a headless code flow when no port is given: fixed, so the
/// redirect URI `http://127.0.0.1:8765/callback` can be registered with the provider once.
pub const HEADLESS_PORT: u16 = 8765;

/// Which OAuth flow to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Authorisation code with PKCE: a browser and a loopback redirect.
    Code,
    /// Device authorisation: a code to enter on another device.
    Device,
    /// Client credentials: the app's own token, no user.
    ClientCredentials,
}

#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `TENANT/PROVIDER/ACCOUNT`.
    pub connection: String,
    pub flow: Flow,
    pub scopes: Vec<String>,
    /// The loopback listener's port (0: any free one); headless: the redirect's port
    /// (0: [`HEADLESS_PORT`]).
    pub port: u16,
    /// How long to wait for the redirect, the pasted line, or the device approval.
    pub timeout: Duration,
    /// Code flow without the loopback listener: the front end supplies the redirected URL.
    pub no_listen: bool,
}

/// What the user has to do next, or how far the flow is. `connection` is the validated
/// address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectStep<'a> {
    /// Open `url` in a browser on this machine; the provider sends the browser back to
    /// `redirect_uri`, where this process listens.
    OpenUrl {
        connection: &'a str,
        url: &'a str,
        redirect_uri: &'a str,
    },
    /// Open `url` in a browser on any machine, then hand the address it was redirected to
    /// (`redirect_uri?code=…`, a page that does not load) to [`ConnectUi::paste`], which is
    /// called right after this step.
    PasteRedirect {
        connection: &'a str,
        url: &'a str,
        redirect_uri: &'a str,
    },
    /// Device flow: visit `verification_uri` (or `complete`, which carries the code) and
    /// enter `user_code`.
    UserCode {
        connection: &'a str,
        verification_uri: &'a str,
        user_code: &'a str,
        complete: Option<&'a str>,
    },
    /// Waiting for the user: for the redirect to reach `redirect_uri` (code flow), or for
    /// the device approval (`redirect_uri: None`).
    Waiting { redirect_uri: Option<&'a str> },
    /// The connection is stored.
    Done { connection: &'a str },
}

/// The front end's side of a flow.
pub trait ConnectUi {
    /// Shows one step. Called in order; never blocks the flow for long.
    fn step(&mut self, step: ConnectStep<'_>);

    /// The line the user pasted after [`ConnectStep::PasteRedirect`]. The flow gives up
    /// with a time-out error after `ConnectOptions::timeout`, dropping this future.
    fn paste(&mut self) -> impl Future<Output = Result<Secret>> + Send;
}

/// Runs the flow through `backend` and returns the engine's answer to the last step (the
/// stored connection).
pub async fn run(
    backend: &Backend,
    opts: ConnectOptions,
    ui: &mut impl ConnectUi,
) -> Result<Response> {
    let connection = crate::names::ConnectionId::parse(&opts.connection)?.to_string();
    if opts.no_listen && opts.flow != Flow::Code {
        return Err(Error::invalid(
            "--no-listen",
            "only the code flow has a redirect to paste; the device flow never needs a listener",
        ));
    }
    let resp = match opts.flow {
        Flow::ClientCredentials => {
            backend
                .call(Request::ConnectClientCredentials {
                    connection: connection.clone(),
                    scopes: opts.scopes,
                })
                .await?
        }
        Flow::Code => code_flow(backend, &connection, opts, &mut *ui).await?,
        Flow::Device => device_flow(backend, &connection, opts, &mut *ui).await?,
    };
    ui.step(ConnectStep::Done {
        connection: &connection,
    });
    Ok(resp)
}

async fn code_flow(
    backend: &Backend,
    connection: &str,
    opts: ConnectOptions,
    ui: &mut impl ConnectUi,
) -> Result<Response> {
    let pkce = Pkce::generate();
    let state = flows::random_state();
    let listener = if opts.no_listen {
        None
    } else {
        Some(Loopback::bind(opts.port).await?)
    };
    let redirect_uri = match &listener {
        Some(l) => l.redirect_uri(),
        None => format!(
            "http://127.0.0.1:{}/callback",
            if opts.port == 0 {
                HEADLESS_PORT
            } else {
                opts.port
            }
        ),
    };
    let url = match backend
        .call(Request::ConnectStart {
            connection: connection.to_owned(),
            redirect_uri: redirect_uri.clone(),
            state: state.clone(),
            code_challenge: pkce.challenge.clone(),
            scopes: opts.scopes,
        })
        .await?
    {
        Response::AuthorizationUrl { url } => url,
        _ => return Err(Error::Internal("unexpected answer to connect_start".into())),
    };
    let exchange = |code: Secret| {
        backend.call(Request::ConnectCode {
            connection: connection.to_owned(),
            code,
            code_verifier: pkce.verifier.clone(),
            redirect_uri: redirect_uri.clone(),
        })
    };
    let Some(listener) = listener else {
        ui.step(ConnectStep::PasteRedirect {
            connection,
            url: &url,
            redirect_uri: &redirect_uri,
        });
        let pasted = match tokio::time::timeout(opts.timeout, ui.paste()).await {
            Ok(line) => line?,
            Err(_) => {
                return Err(Error::TimedOut(format!(
                    "no URL was pasted within {} s, so nothing was stored: run `connect` again (--timeout SECONDS waits longer)",
                    opts.timeout.as_secs()
                )));
            }
        };
        let code = flows::check_pasted(pasted.expose(), &state)?;
        drop(pasted);
        return exchange(code).await;
    };
    ui.step(ConnectStep::OpenUrl {
        connection,
        url: &url,
        redirect_uri: &redirect_uri,
    });
    ui.step(ConnectStep::Waiting {
        redirect_uri: Some(&redirect_uri),
    });
    let callback = listener.wait_for_code(&state, opts.timeout).await?;
    let outcome = exchange(callback.code.clone()).await;
    // the browser's page tells what really happened to the exchange
    callback.finish(&outcome).await;
    outcome
}

async fn device_flow(
    backend: &Backend,
    connection: &str,
    opts: ConnectOptions,
    ui: &mut impl ConnectUi,
) -> Result<Response> {
    let d = match backend
        .call(Request::DeviceStart {
            connection: connection.to_owned(),
            scopes: opts.scopes,
        })
        .await?
    {
        Response::DeviceAuthorization(d) => d,
        _ => return Err(Error::Internal("unexpected answer to device_start".into())),
    };
    ui.step(ConnectStep::UserCode {
        connection,
        verification_uri: &d.verification_uri,
        user_code: &d.user_code,
        complete: d.verification_uri_complete.as_deref(),
    });
    ui.step(ConnectStep::Waiting { redirect_uri: None });
    let device_code = d.device_code.clone();
    flows::poll_device(d.interval, d.expires_in, || {
        let req = Request::DevicePoll {
            connection: connection.to_owned(),
            device_code: device_code.clone(),
        };
        async move {
            match backend.call(req).await? {
                Response::DevicePending { slow_down: true } => Ok(Poll::SlowDown),
                Response::DevicePending { slow_down: false } => Ok(Poll::Pending),
                other => Ok(Poll::Done(other)),
            }
        }
    })
    .await
}
