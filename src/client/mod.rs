//! The client side of tokenvault: how a front end or a Rust program reaches the product.
//!
//! - [`Backend`] (`backend`): one way in for front ends (the CLI, the TUI): an engine in
//!   this process acting for a caller, or the daemon over its socket, each with
//!   `call`, `call_with_progress` and `watch`.
//! - [`Client`] (`socket`): one socket connection, its peer check and the line framing.
//! - `connect`: the OAuth flows driven from the front end's side, handing their steps
//!   (URL to open, code to enter, waiting, done) back to the front end.
//! - [`get_token`] / [`get_token_as`]: a valid access token from the daemon in one call.
//!
//! Must not: read command-line options, config or key files, or print (the front end
//! does: `cli::backend` chooses the backend from the options); import `crate::cli`.
//!
//! # For Rust programs
//!
//! A Rust service asks the daemon for a valid access token with [`get_token`] (as the
//! daemon's user, a uid granted to a tenant, or root), or [`get_token_as`] with a tenant
//! key. The daemon refreshes the token first when fewer than `min_ttl` seconds remain,
//! exactly as `tokenvault get --min-ttl` does, with the same scoping (a tenant caller
//! reaches only its tenant) and the same errors ([`Error::exit_code`] gives the CLI's exit
//! code: 4 not found, 5 forbidden, 6 needs re-authorisation, 7 provider unavailable).
//!
//! ```no_run
//! # async fn demo() -> tokenvault::Result<()> {
//! use std::time::Duration;
//! let socket = tokenvault::client::default_socket(); // or TOKENVAULT_SOCKET
//! let token = tokenvault::client::get_token(&socket, "acme/spotify/alice", Duration::from_secs(60)).await?;
//! let auth = format!("Bearer {}", token.expose()); // a `Secret`: Debug never prints it
//! # drop(auth);
//! # Ok(())
//! # }
//! ```
//!
//! A full program is `examples/get_token.rs`. Connecting once and calling [`Client::call`]
//! with [`Request::Get`] reuses one connection for many requests; a [`Backend::Daemon`]
//! does the same and also watches events.

pub mod backend;
pub mod connect;
pub mod socket;

pub use backend::{Backend, Daemon, EventStream, TrustedUids};
pub use socket::{Client, daemon_trusted};

use crate::contract::{Request, Response};
use crate::error::{Error, Result};
use crate::secret::Secret;
use std::path::Path;

/// The socket a daemon listens on by default: `$TOKENVAULT_SOCKET`, else
/// `$XDG_RUNTIME_DIR/tokenvault/tokenvault.sock`, else `/tmp/tokenvault-$UID/tokenvault.sock`
/// (SPEC §3).
pub fn default_socket() -> std::path::PathBuf {
    match std::env::var_os("TOKENVAULT_SOCKET") {
        Some(s) if !s.is_empty() => s.into(),
        _ => crate::paths::default_socket(),
    }
}

/// A valid access token of `connection` (`TENANT/PROVIDER/ACCOUNT`) from the daemon at
/// `socket`, refreshed first when it has less than `min_ttl` left. The caller is who the
/// daemon sees (SO_PEERCRED): its own uid or root is admin, a granted uid its tenant.
///
/// Errors: [`Error::NoDaemon`] when nothing listens there; otherwise what the daemon
/// answered (`not_found`, `forbidden`, `needs_reauth`, `provider_unavailable`, …) as
/// [`Error::Remote`], whose [`Error::exit_code`] is the CLI's.
pub async fn get_token(
    socket: &Path,
    connection: &str,
    min_ttl: std::time::Duration,
) -> Result<Secret> {
    fetch_token(socket, None, connection, min_ttl).await
}

/// [`get_token`] scoped to the tenant of `tenant_key` (a `tvk_…` key from
/// `tokenvault tenant key issue`): only that tenant's connections can be reached.
pub async fn get_token_as(
    socket: &Path,
    tenant_key: Secret,
    connection: &str,
    min_ttl: std::time::Duration,
) -> Result<Secret> {
    fetch_token(socket, Some(tenant_key), connection, min_ttl).await
}

async fn fetch_token(
    socket: &Path,
    tenant_key: Option<Secret>,
    connection: &str,
    min_ttl: std::time::Duration,
) -> Result<Secret> {
    let mut c = Client::connect(socket)
        .await?
        .ok_or_else(|| Error::NoDaemon {
            socket: socket.to_path_buf(),
        })?;
    if let Some(k) = tenant_key {
        c.auth(k).await?;
    }
    let resp = c
        .call(&Request::Get {
            connection: connection.to_owned(),
            min_ttl: Some(min_ttl.as_secs()),
            force_refresh: false,
        })
        .await?;
    match resp {
        Response::Token { token, .. } => Ok(token),
        Response::AppleToken(t) => Ok(t.token),
        _ => Err(Error::Internal(
            "the daemon's answer to `get` carried no token".into(),
        )),
    }
}
