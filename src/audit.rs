//! Audit records (SPEC §9): how one is built, and the writer that batches the records of
//! token hand-outs off the `get` path. Admin changes are audited in the transaction that
//! makes them (`Context::audit_in`); hand-outs are queued here and written once a second
//! by the daemon (and before the CLI exits) in one transaction.
//!
//! Owns: the record's shape and the hand-out queue. Must not: hold a secret (targets are
//! validated addresses, outcomes short words).

use crate::contract::{Event, EventKind};
use crate::error::Result;
use crate::sync::LockExt;
use crate::vault::Vault;
use crate::vault::records::AuditRecord;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// One audit record, `count` 1.
pub fn record(
    at: i64,
    actor: &str,
    action: &str,
    tenant: Option<&str>,
    target: &str,
    outcome: &str,
) -> AuditRecord {
    AuditRecord {
        at,
        actor: actor.to_owned(),
        action: action.to_owned(),
        tenant: tenant.map(str::to_owned),
        target: target.to_owned(),
        outcome: outcome.to_owned(),
        count: 1,
    }
}

/// Hand-out records waiting for the next flush.
#[derive(Debug, Default)]
pub struct AuditWriter {
    pending: Mutex<Vec<AuditRecord>>,
}

impl AuditWriter {
    pub fn queue(
        &self,
        at: i64,
        actor: &str,
        action: &str,
        tenant: &str,
        target: &str,
        outcome: &str,
    ) {
        let mut pending = self.pending.lock_or_recover();
        // A burst of identical hand-outs in one second becomes one record with a count:
        // every hand-out is still accounted for, without one row (and its write) each.
        if let Some(r) = pending.iter_mut().rev().take(64).find(|r| {
            r.at == at
                && r.target == target
                && r.action == action
                && r.outcome == outcome
                && r.actor == actor
        }) {
            r.count += 1;
            return;
        }
        pending.push(record(at, actor, action, Some(tenant), target, outcome));
    }

    /// Writes the queue in one durable transaction (on failure the records are lost and
    /// the error returned: the daemon logs it). Returns how many were written and one
    /// `handouts` summary event per tenant, stamped `at`, for the caller to publish.
    pub fn flush(&self, vault: &Vault, at: i64) -> Result<(usize, Vec<Event>)> {
        let batch = std::mem::take(&mut *self.pending.lock_or_recover());
        if batch.is_empty() {
            return Ok((0, Vec::new()));
        }
        let tx = vault.write()?;
        for rec in &batch {
            tx.append_audit(rec)?;
        }
        tx.commit()?;
        let mut per_tenant: BTreeMap<&str, (u64, BTreeSet<&str>)> = BTreeMap::new();
        for r in batch.iter().filter(|r| r.outcome == "ok") {
            let e = per_tenant
                .entry(r.tenant.as_deref().unwrap_or_default())
                .or_default();
            e.0 += r.count;
            e.1.insert(&r.target);
        }
        let events = per_tenant
            .into_iter()
            .map(|(tenant, (count, conns))| {
                Event::new(
                    at,
                    EventKind::Handouts {
                        tenant: tenant.to_owned(),
                        count,
                        connections: conns.len() as u64,
                    },
                )
            })
            .collect();
        Ok((batch.len(), events))
    }
}
