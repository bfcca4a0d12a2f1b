//! One connection to a daemon's socket (SPEC §6): connect, check who serves it, send a
//! request line and read its answer line (the framing of `contract::framing`).
//!
//! Before a single byte is written, the daemon's uid is read from the kernel (SO_PEERCRED
//! of the connected socket): it must be this process's euid, root, or a uid the caller
//! trusts (the CLI: `[client] trusted_daemon_uids`). Anything else is refused (exit 5,
//! naming the uid) — a program of another user listening where the daemon should be must
//! not receive a client secret, a refresh token or a key, and a refusal is not "no
//! daemon": a front end must not fall back to the file either.
//!
//! Must not: send anything to an untrusted daemon.

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

    /// The next answer line of a connection that streams (`watch`); `None` when the
    /// daemon closed the connection.
    pub(crate) async fn read_answer(&mut self) -> Option<Result<Response>> {
        let mut answer = zeroize::Zeroizing::new(Vec::new());
        match self.rd.read_until(b'\n', &mut answer).await {
            Ok(0) => None,
            Ok(_) => Some(protocol::decode_answer(&answer)),
            Err(e) => Some(Err(Error::io("lost the connection to the daemon", e))),
        }
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
