//! The CLI side of the socket (SPEC §3 "every command works the same two ways"): when a
//! daemon answers on the socket the request goes there; when none does (no socket file,
//! or nobody listening on it) the command opens the vault file itself. A tenant key only
//! ever goes to the daemon.
//!
//! Before a single byte is written, the daemon's uid is read from the kernel (SO_PEERCRED
//! of the connected socket): it must be this process's euid, root, or a uid listed in
//! `[client] trusted_daemon_uids`. Anything else is refused (exit 5, naming the uid) — a
//! program of another user listening where the daemon should be must not receive a
//! client secret, a refresh token or a key, and a refusal is not "no daemon": the command
//! does not fall back to the file either.
//!
//! Must not: fall back to the file after the daemon answered (an error from the daemon is
//! the answer) or after refusing the daemon, send anything to an untrusted daemon, or send
//! a tenant key anywhere but the socket.
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
//! with [`Request::Get`] reuses one connection for many requests.

use crate::cli::args::Global;
use crate::contract::framing as protocol;
use crate::contract::{Request, Response};
use crate::error::{Error, Result};
use crate::secret::Secret;
use std::path::Path;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

/// A connection to a daemon.
#[derive(Debug)]
pub struct Client {
    rd: BufReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
    next_id: u64,
}

/// May the CLI, running as `own_euid`, talk to a daemon whose socket peer is `peer_uid`?
/// Its own uid and root always; other uids only when the operator listed them.
pub fn daemon_trusted(peer_uid: u32, own_euid: u32, also_trusted: &[u32]) -> bool {
    peer_uid == own_euid || peer_uid == 0 || also_trusted.contains(&peer_uid)
}

impl Client {
    /// Connects to the daemon at `socket`; `Ok(None)` when no daemon is there. The daemon
    /// must run as this process's euid or root (see [`Client::connect_trusting`]).
    pub async fn connect(socket: &Path) -> Result<Option<Client>> {
        Self::connect_trusting(socket, || Ok(Vec::new())).await
    }

    /// Connects to the daemon at `socket`; `Ok(None)` when no daemon is there. Before
    /// anything is sent the peer's uid must be this process's euid, root, or one of the
    /// uids `also_trusted` returns (asked only for another uid, so a config file is read
    /// only when it matters); otherwise `Error::Forbidden` naming the uid, with nothing
    /// written to the socket.
    pub async fn connect_trusting(
        socket: &Path,
        also_trusted: impl FnOnce() -> Result<Vec<u32>>,
    ) -> Result<Option<Client>> {
        match UnixStream::connect(socket).await {
            Ok(s) => {
                check_peer(&s, socket, also_trusted)?;
                let (rd, wr) = s.into_split();
                Ok(Some(Client {
                    rd: BufReader::new(rd),
                    wr,
                    next_id: 1,
                }))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(Error::io(
                format!(
                    "cannot connect to the daemon at {} (check its --socket-mode/--socket-group, or your group membership)",
                    socket.display()
                ),
                e,
            )),
        }
    }

    /// Sends one request and waits for its answer.
    pub async fn call(&mut self, req: &Request) -> Result<Response> {
        let lost = |e: std::io::Error| Error::io("lost the connection to the daemon", e);
        let id = self.next_id;
        self.next_id += 1;
        let mut v = serde_json::to_value(req)
            .map_err(|e| Error::Internal(format!("cannot encode the request: {e}")))?;
        if let serde_json::Value::Object(o) = &mut v {
            o.insert("id".into(), id.into());
        }
        let mut line = zeroize::Zeroizing::new(serde_json::to_vec(&v).unwrap_or_default());
        drop(v);
        line.push(b'\n');
        if line.len() > protocol::MAX_LINE + 1 {
            return Err(Error::invalid(
                "request",
                "larger than the daemon's 64 KiB line limit",
            ));
        }
        let sent = self.wr.write_all(&line).await;
        let mut answer = zeroize::Zeroizing::new(Vec::new());
        // A daemon that refuses a connection (caps, auth deadline) says why in one line
        // and closes, so our write may fail while its line is still there to read.
        let n = match sent {
            Ok(()) => self.rd.read_until(b'\n', &mut answer).await.map_err(lost)?,
            Err(e) => {
                let why = tokio::time::timeout(
                    std::time::Duration::from_secs(1),
                    self.rd.read_until(b'\n', &mut answer),
                )
                .await;
                match why {
                    Ok(Ok(n)) if n > 0 => n,
                    _ => return Err(lost(e)),
                }
            }
        };
        if n == 0 {
            return Err(Error::Internal(
                "the daemon closed the connection without answering (it may be shutting down); retry".into(),
            ));
        }
        protocol::decode_answer(&answer)
    }

    /// Scopes this connection to the tenant of `key`.
    pub async fn auth(&mut self, key: Secret) -> Result<()> {
        self.call(&Request::Auth { tenant_key: key })
            .await
            .map(|_| ())
    }
}

/// Refuses a socket whose peer is not a daemon this process may trust; writes nothing.
fn check_peer(
    s: &UnixStream,
    socket: &Path,
    also_trusted: impl FnOnce() -> Result<Vec<u32>>,
) -> Result<()> {
    let own = nix::unistd::geteuid().as_raw();
    let peer = s.peer_cred().map_err(|e| {
        Error::Forbidden(format!(
            "cannot tell which uid serves the socket {} ({e}); nothing was sent to it. Check what is listening there",
            socket.display()
        ))
    })?;
    let uid = peer.uid();
    // The config file is read only for a foreign uid, so a broken one never gets in the
    // way of reaching one's own daemon.
    if daemon_trusted(uid, own, &[]) || daemon_trusted(uid, own, &also_trusted()?) {
        return Ok(());
    }
    tracing::warn!(socket = %socket.display(), peer_uid = uid, "refusing a daemon of another uid");
    Err(Error::Forbidden(format!(
        "the socket {} is served by uid {uid}, which is neither you (uid {own}) nor root; nothing was sent to it. If that daemon is one you trust, add {uid} to `trusted_daemon_uids` in the [client] section of the config file; otherwise find out who created the socket (it may be impersonating tokenvault) and use --socket to reach the real daemon",
        socket.display()
    )))
}

/// The socket a daemon listens on by default: `$TOKENVAULT_SOCKET`, else
/// `$XDG_RUNTIME_DIR/tokenvault/tokenvault.sock`, else `/tmp/tokenvault-$UID/tokenvault.sock`
/// (SPEC §3).
pub fn default_socket() -> std::path::PathBuf {
    match std::env::var_os("TOKENVAULT_SOCKET") {
        Some(s) if !s.is_empty() => s.into(),
        _ => crate::cli::paths::default_socket(),
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

/// The tenant key of `--tenant-key-file` or `TOKENVAULT_TENANT_KEY`, if any.
pub fn tenant_key(g: &Global) -> Result<Option<Secret>> {
    if let Some(f) = &g.tenant_key_file {
        return crate::cli::passphrase::read_secret_file(f, "tenant key").map(Some);
    }
    match std::env::var("TOKENVAULT_TENANT_KEY") {
        Ok(k) if !k.is_empty() => {
            let k = zeroize::Zeroizing::new(k);
            Ok(Some(Secret::new(k.trim())))
        }
        _ => Ok(None),
    }
}

/// The daemon to send commands to, ready (authenticated with the tenant key, if any), or
/// `None` when the command must open the vault file itself: no daemon answers, or the
/// CLI was pointed at another vault than the one the daemon serves.
pub async fn daemon(g: &Global) -> Result<Option<Client>> {
    let socket = g
        .socket
        .clone()
        .unwrap_or_else(crate::cli::paths::default_socket);
    let also_trusted = || crate::cli::run::load_config(g).map(|c| c.client.trusted_daemon_uids);
    let Some(mut c) = Client::connect_trusting(&socket, also_trusted).await? else {
        return Ok(None);
    };
    match tenant_key(g)? {
        Some(key) => c.auth(key).await?,
        None => {
            if let Some(wanted) = &g.vault
                && serves_another_vault(&mut c, wanted).await?
            {
                tracing::debug!(socket = %socket.display(), "the daemon serves another vault; opening the file");
                return Ok(None);
            }
        }
    }
    tracing::debug!(socket = %socket.display(), "sending the command to the daemon");
    Ok(Some(c))
}

/// Runs `req` on the daemon when one answers, else in this process.
pub async fn execute(g: &Global, req: Request) -> Result<Response> {
    match daemon(g).await? {
        Some(mut c) => c.call(&req).await,
        None => crate::cli::run::execute_local(g, req).await,
    }
}

/// True when the CLI was pointed at a vault file (`--vault`/`TOKENVAULT_VAULT`) and the
/// daemon on the socket serves a different one: the command must not go to it. A daemon
/// that refused the connection (caps) or dropped it is an error, not "another vault".
async fn serves_another_vault(c: &mut Client, wanted: &Path) -> Result<bool> {
    match c.call(&Request::DaemonInfo).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_own_root_and_listed_daemons_are_trusted() {
        assert!(daemon_trusted(1000, 1000, &[]));
        assert!(daemon_trusted(0, 1000, &[]));
        assert!(!daemon_trusted(65534, 1000, &[]));
        assert!(!daemon_trusted(65534, 0, &[]));
        assert!(daemon_trusted(65534, 0, &[998, 65534]));
        assert!(!daemon_trusted(1001, 1000, &[998]));
    }
}
