//! Group commit: many refresh results per durable transaction (SPEC §4: writes that change
//! tokens are durable when acknowledged).
//!
//! Each result is a job queued with a one-shot reply. Whoever holds the commit turn drains
//! the whole queue into one `Durability::Immediate` transaction and answers every job only
//! after `commit` returned, so no waiter is released (and no access token handed out)
//! before its rotated refresh token is on disk. A failed commit fails every job of the
//! batch and changes nothing (redb commits fully or not at all).

use crate::contract::StatusEvent;
use crate::error::{Error, Result};
use crate::refresh::policy::Transition;
use crate::sync::LockExt;
use crate::vault::{Tx, Vault};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::oneshot;

/// What a job reports back once committed.
#[derive(Debug, Default)]
pub struct JobOut {
    pub event: Option<StatusEvent>,
    pub transition: Option<Transition>,
}

pub type Job = Box<dyn FnOnce(&Tx) -> Result<JobOut> + Send>;

type Reply = oneshot::Sender<Result<JobOut>>;

#[derive(Default)]
pub struct GroupCommit {
    queue: Mutex<Vec<(Job, Reply)>>,
    turn: tokio::sync::Mutex<()>,
    /// Off: one transaction per job (the baseline of the benchmark).
    single: AtomicBool,
    batches: AtomicU64,
    jobs: AtomicU64,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("batches", &self.batches.load(Ordering::Relaxed))
            .field("jobs", &self.jobs.load(Ordering::Relaxed))
            .finish()
    }
}

impl GroupCommit {
    /// Benchmarks switch grouping off to measure one commit per refresh.
    pub fn set_single(&self, single: bool) {
        self.single.store(single, Ordering::Relaxed);
    }

    /// (transactions, jobs) committed so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.batches.load(Ordering::Relaxed),
            self.jobs.load(Ordering::Relaxed),
        )
    }

    /// Queues `job` and returns once a durable transaction holding it has committed.
    pub async fn submit(&self, vault: &Vault, job: Job) -> Result<JobOut> {
        let (tx, mut rx) = oneshot::channel();
        self.queue.lock_or_recover().push((job, tx));
        loop {
            let turn = self.turn.lock().await;
            // A previous holder may already have committed our job.
            match rx.try_recv() {
                Ok(r) => return r,
                Err(oneshot::error::TryRecvError::Closed) => {
                    return Err(Error::Internal("a commit job was lost".into()));
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let batch: Vec<(Job, Reply)> = {
                let mut q = self.queue.lock_or_recover();
                if self.single.load(Ordering::Relaxed) {
                    if q.is_empty() {
                        Vec::new()
                    } else {
                        vec![q.remove(0)]
                    }
                } else {
                    std::mem::take(&mut *q)
                }
            };
            // The commit syncs the disk: on a multi-threaded runtime let other tasks move
            // off this worker meanwhile.
            let multi = tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
            if multi {
                tokio::task::block_in_place(|| self.run_batch(vault, batch));
            } else {
                self.run_batch(vault, batch);
            }
            drop(turn);
        }
    }

    fn run_batch(&self, vault: &Vault, batch: Vec<(Job, Reply)>) {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        let tx = match vault.write() {
            Ok(tx) => tx,
            Err(e) => {
                let msg = e.to_string();
                for (_, reply) in batch {
                    let _ = reply.send(Err(Error::Storage(msg.clone())));
                }
                return;
            }
        };
        let mut outs = Vec::with_capacity(batch.len());
        for (job, reply) in batch {
            let from = tx.touched_count();
            let out = job(&tx);
            outs.push((out, reply, tx.touched_since(from)));
        }
        // On the shared store a job whose lease ran out (another node took the connection
        // over) is not written; it alone fails, the rest of the batch commits.
        match tx.commit_lost() {
            Ok(lost) => {
                self.batches.fetch_add(1, Ordering::Relaxed);
                self.jobs.fetch_add(n, Ordering::Relaxed);
                for (out, reply, keys) in outs {
                    let out = if keys.iter().any(|k| lost.contains(k)) {
                        Err(Error::StoreUnavailable {
                            reason: "this node's lease on the connection ran out and another node took it over; its result is kept, this one was not saved".into(),
                        })
                    } else {
                        out
                    };
                    let _ = reply.send(out);
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for (_, reply, _) in outs {
                    let _ = reply.send(Err(Error::Storage(format!(
                        "the refresh result was not saved: {msg}"
                    ))));
                }
            }
        }
    }
}
