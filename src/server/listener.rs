//! The socket's accept loop and per-connection tasks (SPEC §6 limits).
//!
//! Every connection is its own task reading one request line at a time and answering in
//! order. Limits, each leaving the daemon and other clients untouched: a line over
//! `MAX_LINE` gets a `bad_request` answer and the connection is closed (the stream cannot
//! be resynchronised safely); a malformed line or unknown op gets a `bad_request` answer
//! and the connection goes on; a connection over its caps (`admission`: per uid, in all,
//! kept slots for admins) gets one error line and is closed; a connection whose uid has
//! neither admin rights nor a grant must `auth` within `auth_timeout` (until then and
//! after a refused key only `hello` and `auth` are answered, anything else gets
//! `unauthorized`), else it gets one `unauthorized` line and is closed; a connection
//! silent for `idle_timeout` gets one error line and is closed; a client gone mid-request
//! is simply dropped.
//!
//! Shutdown: when the `shutdown` future resolves the listener stops accepting, idle
//! connections close at once, a request being answered is finished, and whatever is still
//! running after `GRACE` is abandoned.
//!
//! A client that hangs up while its request is being answered (issue 14) is noticed
//! (`answer_watching`) and told to the refresh engine through `refresh::caller`: an
//! on-demand refresh for it stops before its next provider call. A half-closed client
//! (it shut down its writing side and still reads) is not gone.

use super::admission::{Admission, Limits, Slot, Standing};
use super::peer::{self, Identity};
use crate::contract::framing::{self as protocol, MAX_LINE};
use crate::contract::{Request, Response};
use crate::engine::Engine;
use crate::error::{Error, Result};
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How long connections may take to finish after shutdown begins.
pub const GRACE: Duration = Duration::from_secs(10);
pub use super::admission::{DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS};
/// A client that does not read its answers for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `listener` until `shutdown` resolves, then drains connections (at most `GRACE`).
pub async fn run(
    engine: Arc<Engine>,
    listener: UnixListener,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let daemon_uid = nix::unistd::geteuid().as_raw();
    let (stop_tx, stop_rx) = watch::channel(false);
    let admission = Admission::default();
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let limits = Limits::from_config(&engine.config().daemon);
                    // Admission needs the peer's grant (a vault read), so it happens in
                    // the connection's own task, off the accept loop.
                    tasks.spawn(admit_and_serve(engine.clone(), stream, limits, daemon_uid, stop_rx.clone(), admission.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained =
        tokio::time::timeout(GRACE, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            left = tasks.len(),
            "connections still busy after the grace period; abandoning them"
        );
        tasks.abort_all();
    }
    Ok(())
}

/// The standing of a peer uid at accept time (`admission`).
fn standing(engine: &Engine, uid: Option<u32>, daemon_uid: u32) -> Standing {
    match uid {
        Some(u) if u == daemon_uid || u == 0 => Standing::Admin,
        Some(u) => match engine.tenant_for_uid(u) {
            Ok(Some(_)) => Standing::Authorised,
            _ => Standing::Pending,
        },
        None => Standing::Pending,
    }
}

/// Counts the connection in and serves it, or refuses it with one error line.
async fn admit_and_serve(
    engine: Arc<Engine>,
    stream: UnixStream,
    limits: Limits,
    daemon_uid: u32,
    stop: watch::Receiver<bool>,
    admission: Admission,
) {
    let uid = stream.peer_cred().ok().map(|c| c.uid());
    let standing = standing(&engine, uid, daemon_uid);
    match admission.take(uid, standing, &limits) {
        Ok(slot) => {
            engine.context().metrics().socket_accepted();
            connection(engine, stream, uid, limits, daemon_uid, stop, slot).await;
        }
        Err(refusal) => {
            engine.context().metrics().socket_rejected();
            tracing::warn!(peer_uid = ?uid, reason = %refusal, "refusing a client");
            reject(stream, &refusal.to_string()).await;
        }
    }
}

async fn reject(mut stream: UnixStream, message: &str) {
    let line = protocol::encode_err_code(&Value::Null, "internal", message);
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&line)).await;
    let _ = stream.shutdown().await;
}

enum LineRead {
    Line,
    Eof,
    TooLong,
}

/// Reads one line (without its newline) into `buf`, refusing more than `max` bytes.
async fn read_line<R: AsyncBufRead + Unpin>(
    rd: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<LineRead> {
    loop {
        let avail = rd.fill_buf().await?;
        if avail.is_empty() {
            // EOF; a partial line means the client left mid-request: nothing to answer.
            return Ok(LineRead::Eof);
        }
        if let Some(i) = avail.iter().position(|b| *b == b'\n') {
            if buf.len() + i > max {
                return Ok(LineRead::TooLong);
            }
            buf.extend_from_slice(&avail[..i]);
            rd.consume(i + 1);
            return Ok(LineRead::Line);
        }
        let n = avail.len();
        if buf.len() + n > max {
            return Ok(LineRead::TooLong);
        }
        buf.extend_from_slice(avail);
        rd.consume(n);
    }
}

async fn connection(
    engine: Arc<Engine>,
    stream: UnixStream,
    uid: Option<u32>,
    limits: Limits,
    daemon_uid: u32,
    mut stop: watch::Receiver<bool>,
    mut slot: Slot,
) {
    let mut identity = Identity::Peer { uid };
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(16 * 1024, rd);
    let mut line = Vec::with_capacity(1024);
    // One idle timer per connection, not one per request: registering and cancelling a
    // tokio timer on every request costs the timer wheel's lock, which shows at tens of
    // thousands of requests per second. The timer fires at most once per `idle_timeout`;
    // when it does, it is pushed to `last_line + idle_timeout` unless that has passed.
    let mut last_line = tokio::time::Instant::now();
    let idle = tokio::time::sleep(limits.idle_timeout);
    tokio::pin!(idle);
    // Armed only for a connection accepted as pending; one timer, fired at most once.
    let auth_deadline = tokio::time::sleep(limits.auth_timeout);
    tokio::pin!(auth_deadline);
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::pin!(stopped);
    let (gone_tx, gone_rx) = crate::refresh::caller::flag();
    loop {
        // `read_line` appends to `line` and consumes only what it appended, so a read
        // interrupted by the idle timer loses nothing: the next call goes on from there.
        let read = tokio::select! {
            r = read_line(&mut rd, &mut line, MAX_LINE) => r,
            _ = &mut idle => {
                let deadline = last_line + limits.idle_timeout;
                if tokio::time::Instant::now() < deadline {
                    idle.as_mut().reset(deadline);
                    continue;
                }
                let msg = format!(
                    "idle for {} s; closing the connection (reconnect when needed)",
                    limits.idle_timeout.as_secs()
                );
                let _ = write(
                    &mut wr,
                    &protocol::encode_err_code(&Value::Null, "bad_request", &msg),
                )
                .await;
                break;
            }
            _ = &mut auth_deadline, if slot.is_pending() => {
                // A grant given since the connection opened counts as authorised too.
                if peer::caller(&engine, &identity, daemon_uid).is_ok() {
                    slot.authorised();
                    continue;
                }
                let msg = format!(
                    "not authorised within {} s of connecting: send {{\"op\":\"auth\",\"tenant_key\":...}} first, or ask the operator to grant your uid a tenant (`tokenvault tenant grant TENANT --uid UID`); closing the connection",
                    limits.auth_timeout.as_secs()
                );
                tracing::info!(peer_uid = ?uid, "closing a connection that did not authenticate in time");
                let _ = write(
                    &mut wr,
                    &protocol::encode_err_code(&Value::Null, "unauthorized", &msg),
                )
                .await;
                break;
            }
            _ = &mut stopped => break,
        };
        let answer = match read {
            Err(_) | Ok(LineRead::Eof) => break,
            Ok(LineRead::TooLong) => {
                let msg = format!(
                    "request line longer than {} KiB; closing the connection",
                    MAX_LINE / 1024
                );
                let _ = write(
                    &mut wr,
                    &protocol::encode_err_code(&Value::Null, "bad_request", &msg),
                )
                .await;
                break;
            }
            Ok(LineRead::Line) => {
                last_line = tokio::time::Instant::now();
                if line.iter().all(u8::is_ascii_whitespace) {
                    line.clear();
                    continue;
                }
                let request = crate::refresh::caller::scope(
                    gone_rx.clone(),
                    answer(&engine, &mut identity, daemon_uid, &line),
                );
                let a = answer_watching(request, &wr, &gone_tx).await;
                line.clear();
                if slot.is_pending() && matches!(identity, Identity::Key { .. }) {
                    slot.authorised();
                }
                a
            }
        };
        let (answer, ok) = answer;
        engine.context().metrics().socket_request(ok);
        let mut answer = zeroize::Zeroizing::new(answer);
        if write(&mut wr, &answer).await.is_err() {
            break;
        }
        answer.clear();
    }
    use zeroize::Zeroize;
    line.zeroize();
    let _ = wr.shutdown().await;
}

/// How often a request that is still running looks whether its client hung up.
const HANGUP_POLL: Duration = Duration::from_millis(250);

/// Awaits `request`; if the client hangs up meanwhile, raises `gone` (see
/// `refresh::caller`) and still awaits the request, which then ends at its next safe
/// point. A request that completes at once (nearly every `get`) costs no timer.
async fn answer_watching<F: Future>(
    request: F,
    wr: &tokio::net::unix::OwnedWriteHalf,
    gone: &watch::Sender<bool>,
) -> F::Output {
    tokio::pin!(request);
    if let std::task::Poll::Ready(v) = futures::poll!(&mut request) {
        return v;
    }
    tokio::select! {
        v = &mut request => v,
        _ = hung_up(wr) => {
            let _ = gone.send(true);
            request.await
        }
    }
}

/// Resolves once the peer has closed its end entirely (`EPOLLHUP`: both directions shut),
/// not when it only shut down writing.
async fn hung_up(wr: &tokio::net::unix::OwnedWriteHalf) {
    loop {
        match wr.ready(tokio::io::Interest::WRITABLE).await {
            Ok(r) if r.is_write_closed() => return,
            Err(_) => return,
            Ok(_) => {}
        }
        tokio::time::sleep(HANGUP_POLL).await;
    }
}

/// Writes `bytes`, giving up after `WRITE_TIMEOUT` if the client does not read. An answer
/// that fits the socket buffer (nearly all) goes out at once, without arming a timer.
async fn write(wr: &mut tokio::net::unix::OwnedWriteHalf, bytes: &[u8]) -> std::io::Result<()> {
    let done = match wr.try_write(bytes) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
        Err(e) => return Err(e),
    };
    if done == bytes.len() {
        return Ok(());
    }
    match tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&bytes[done..])).await {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// Decodes, authorises and answers one line.
async fn answer(
    engine: &Engine,
    identity: &mut Identity,
    daemon_uid: u32,
    line: &[u8],
) -> (Vec<u8>, bool) {
    let (id, req) = protocol::decode(line);
    let req = match req {
        Ok(r) => r,
        Err(e) => return (protocol::encode_err(&id, &e), false),
    };
    let result = match req {
        Request::Auth { tenant_key } => match engine.authenticate_tenant_key(&tenant_key) {
            Ok((tenant, key_id)) => {
                // per connection: debug, so the default log stays one line per event that matters
                tracing::debug!(tenant = %tenant, key_id = %key_id, "connection authenticated with a tenant key");
                *identity = Identity::Key { key_id };
                match peer::caller(engine, identity, daemon_uid) {
                    Ok(c) => engine.handle(&c, Request::Hello).await,
                    Err(e) => Err(e),
                }
            }
            Err(e) => {
                tracing::info!("a tenant key was refused");
                *identity = Identity::Refused;
                Err(e)
            }
        },
        req => match peer::caller(engine, identity, daemon_uid) {
            Ok(c) => engine.handle(&c, req).await,
            Err(e) => match req {
                Request::Hello => Ok(Response::hello("unauthorized")),
                _ => Err(e),
            },
        },
    };
    match result {
        Ok(resp) => (protocol::encode_ok(&id, &resp), true),
        Err(e) => {
            if matches!(e, Error::Internal(_) | Error::Storage(_) | Error::Io { .. }) {
                tracing::warn!(code = e.code(), error = %e, "request failed");
            }
            (protocol::encode_err(&id, &e), false)
        }
    }
}
