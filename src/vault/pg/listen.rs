//! The node's `LISTEN` connection (SPEC §12 cache coherence): every commit of any node
//! sends `pg_notify('tokenvault', 'NODE TAB TABLE TAB KEY')`; this task forwards the other
//! nodes' notices to the vault, which re-reads those rows into its mirror and drops their
//! hand-out cache entries.
//!
//! Owns: the dedicated connection (a pooled one could not keep `LISTEN` across checkouts)
//! and reconnecting it. A dropped connection (database restart, network) is retried with
//! backoff; every reconnect sends `Notice::Reload`, because notifications sent while it was
//! away are lost: the vault then reloads everything and drops its whole cache. Must not:
//! read rows itself or carry anything but names.

use super::{CHANNEL, Store, Table};
use crate::error::{Error, Result};
use futures::StreamExt;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Duration;
use tokio_postgres::{AsyncMessage, NoTls};

/// What the vault must re-read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// One row another node changed.
    Row(Table, String),
    /// Everything (a reconnect, or a commit too large to name row by row).
    Reload,
}

/// How often an idle listener checks its connection is still alive.
const PING_EVERY: Duration = Duration::from_secs(10);

/// Starts the listener and returns once `LISTEN` is in place (so nothing committed after
/// the caller's load can be missed). Notices go to `out` until it is dropped.
pub fn start(store: &Arc<Store>, out: Sender<Notice>) -> Result<()> {
    let cfg = store.config().config.clone();
    let node = store.node().to_owned();
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<std::result::Result<(), String>>(1);
    store.handle().spawn(async move {
        let mut ready = Some(ready_tx);
        let mut backoff = Duration::from_millis(100);
        loop {
            let r = listen_once(&cfg, &node, &out, &mut ready).await;
            match r {
                Ok(Gone::Vault) => return,
                Ok(Gone::Connection) => backoff = Duration::from_millis(100),
                Err(e) => {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(Err(e));
                        return;
                    }
                    tracing::warn!("the store's listener cannot reconnect yet: {e}");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
    match ready_rx.recv_timeout(super::OP_TIMEOUT) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Error::StoreUnavailable {
            reason: format!("cannot listen for other nodes' changes: {e}"),
        }),
        Err(_) => Err(Error::StoreUnavailable {
            reason: "the database did not accept LISTEN in time".into(),
        }),
    }
}

enum Gone {
    /// The vault closed: stop.
    Vault,
    /// The connection ended: reconnect.
    Connection,
}

async fn listen_once(
    cfg: &tokio_postgres::Config,
    node: &str,
    out: &Sender<Notice>,
    ready: &mut Option<std::sync::mpsc::SyncSender<std::result::Result<(), String>>>,
) -> std::result::Result<Gone, String> {
    let (client, mut conn) = cfg.connect(NoTls).await.map_err(|e| e.to_string())?;
    let (ntx, mut nrx) = tokio::sync::mpsc::unbounded_channel();
    let drive = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notification(n)) => {
                    if ntx.send(n.payload().to_owned()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    let r = async {
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(|e| e.to_string())?;
        tracing::debug!("store listener connected");
        match ready.take() {
            Some(tx) => {
                let _ = tx.send(Ok(()));
            }
            None => {
                tracing::info!(
                    "the store's listener reconnected: reloading every record and dropping the hand-out cache"
                );
                if out.send(Notice::Reload).is_err() {
                    return Ok(Gone::Vault);
                }
            }
        }
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            tokio::select! {
                n = nrx.recv() => match n {
                    Some(p) => {
                        if let Some(notice) = parse(&p, node)
                            && out.send(notice).is_err()
                        {
                            return Ok(Gone::Vault);
                        }
                    }
                    None => {
                        tracing::warn!("the store's listener lost its connection; reconnecting");
                        return Ok(Gone::Connection);
                    }
                },
                _ = ping.tick() => {
                    if client.simple_query("SELECT 1").await.is_err() {
                        tracing::warn!("the store's listener lost its connection; reconnecting");
                        return Ok(Gone::Connection);
                    }
                }
            }
        }
    }
    .await;
    drive.abort();
    r
}

/// A payload of another node as a notice; our own (already applied) and unknown ones
/// give `None`.
pub fn parse(payload: &str, own_node: &str) -> Option<Notice> {
    let (node, rest) = payload.split_once('\t')?;
    if node == own_node {
        return None;
    }
    let (table, key) = rest.split_once('\t')?;
    if table == "*" {
        return Some(Notice::Reload);
    }
    Some(Notice::Row(Table::from_name(table)?, key.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_and_own_notices_are_skipped() {
        let p = super::super::payload("n1", "connections", "acme/spotify/a\tb");
        assert_eq!(
            parse(&p, "n2"),
            Some(Notice::Row(Table::Connections, "acme/spotify/a\tb".into()))
        );
        assert_eq!(parse(&p, "n1"), None);
        assert_eq!(parse("n1\t*\t", "n2"), Some(Notice::Reload));
        assert_eq!(parse("n1\tnope\tk", "n2"), None);
        assert_eq!(parse("garbage", "n2"), None);
    }
}
