//! The in-memory mirror of a vault on the shared PostgreSQL store.
//!
//! A vault on PostgreSQL keeps every record (not the audit log) in an in-memory redb
//! database with the same tables as the file, so `Rx` reads exactly as fast as on the file
//! and every caller is unchanged. Writes go to PostgreSQL first (`Tx::commit`), then to the
//! mirror; other nodes' commits arrive as notices (`pg::listen`) and are re-read here.
//!
//! Owns: turning a row of the store into mirror tables and back (`put_raw`, `row_of`), and
//! the thread that applies other nodes' changes (`run_applier`). Must not: open or seal a
//! value (rows move as the same sealed bytes), or talk SQL (that is `pg`).
//!
//! Ordering: the applier takes the mirror's write transaction *before* it reads the rows
//! from PostgreSQL. A local commit holds that transaction across its PostgreSQL commit,
//! so a row the applier reads is never older than a local commit it then overwrites.

use super::crypto::Keyring;
use super::pg::{Row, Store, Table, listen::Notice};
use super::records::{ConnectionRecord, Header, TenantKeyRecord};
use super::schema::*;
use super::{Kek, TokenCache};
use crate::error::Result;
use crate::sync::{LockExt, RwLockExt};
use redb::{Database, ReadableTable};
use std::sync::{Arc, Mutex, RwLock};

/// Writes (`Some`) or deletes (`None`) one row of `table` in a mirror transaction, keeping
/// the due index in step for connections.
pub(super) fn put_raw(
    txn: &redb::WriteTransaction,
    table: Table,
    key: &str,
    value: Option<&[u8]>,
) -> Result<()> {
    fn kv(
        txn: &redb::WriteTransaction,
        def: redb::TableDefinition<&str, &[u8]>,
        key: &str,
        value: Option<&[u8]>,
    ) -> Result<()> {
        let mut t = txn.open_table(def)?;
        match value {
            Some(v) => {
                t.insert(key, v)?;
            }
            None => {
                t.remove(key)?;
            }
        }
        Ok(())
    }
    match table {
        Table::Meta => kv(txn, META, key, value),
        Table::Tenants => kv(txn, TENANTS, key, value),
        Table::Clients => kv(txn, CLIENTS, key, value),
        Table::TenantKeys => kv(txn, TENANT_KEYS, key, value),
        Table::AppleKeys => kv(txn, APPLE_KEYS, key, value),
        Table::BackupFiles => kv(txn, BACKUP_FILES, key, value),
        Table::Grants => {
            let Ok(uid) = key.parse::<u32>() else {
                return Ok(());
            };
            let mut t = txn.open_table(GRANTS)?;
            match value.and_then(|v| std::str::from_utf8(v).ok()) {
                Some(tenant) => {
                    t.insert(uid, tenant)?;
                }
                None => {
                    t.remove(uid)?;
                }
            }
            Ok(())
        }
        Table::Connections => {
            let mut t = txn.open_table(CONNECTIONS)?;
            let due_of = |b: &[u8]| {
                rmp_serde::from_slice::<ConnectionRecord>(b)
                    .ok()
                    .and_then(|r| r.due_at)
            };
            let old_due = match value {
                Some(v) => t.insert(key, v)?.and_then(|o| due_of(o.value())),
                None => t.remove(key)?.and_then(|o| due_of(o.value())),
            };
            let new_due = value.and_then(due_of);
            if old_due != new_due {
                let mut due = txn.open_table(DUE)?;
                if let Some(at) = old_due {
                    due.remove((at, key))?;
                }
                if let Some(at) = new_due {
                    due.insert((at, key), ())?;
                }
            }
            Ok(())
        }
    }
}

/// The row a commit sends to the store for (table, key), read from the mirror
/// transaction that wrote it: its current value, or a delete.
pub(super) fn row_of(txn: &redb::WriteTransaction, table: Table, key: &str) -> Result<Row> {
    let tenant_of_key = || key.split_once('/').map(|(t, _)| t.to_owned());
    let get = |def: redb::TableDefinition<&str, &[u8]>| -> Result<Option<Vec<u8>>> {
        Ok(txn.open_table(def)?.get(key)?.map(|g| g.value().to_vec()))
    };
    let (value, tenant, status, due_at) = match table {
        Table::Meta => (get(META)?, None, None, None),
        Table::Tenants => (get(TENANTS)?, Some(key.to_owned()), None, None),
        Table::Clients => (get(CLIENTS)?, tenant_of_key(), None, None),
        Table::AppleKeys => (get(APPLE_KEYS)?, tenant_of_key(), None, None),
        Table::BackupFiles => (get(BACKUP_FILES)?, None, None, None),
        Table::TenantKeys => {
            let v = get(TENANT_KEYS)?;
            let tenant = v.as_deref().and_then(|b| {
                rmp_serde::from_slice::<TenantKeyRecord>(b)
                    .ok()
                    .map(|r| r.tenant)
            });
            (v, tenant, None, None)
        }
        Table::Grants => {
            let v = match key.parse::<u32>() {
                Ok(uid) => txn
                    .open_table(GRANTS)?
                    .get(uid)?
                    .map(|g| g.value().as_bytes().to_vec()),
                Err(_) => None,
            };
            let tenant = v
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned());
            (v, tenant, None, None)
        }
        Table::Connections => {
            let v = get(CONNECTIONS)?;
            let rec = v
                .as_deref()
                .and_then(|b| rmp_serde::from_slice::<ConnectionRecord>(b).ok());
            (
                v,
                tenant_of_key(),
                rec.as_ref().map(|r| r.status.as_str().to_owned()),
                rec.and_then(|r| r.due_at),
            )
        }
    };
    Ok(match value {
        Some(value) => Row::Put {
            table,
            key: key.to_owned(),
            value,
            tenant,
            status,
            due_at,
        },
        None => Row::Delete {
            table,
            key: key.to_owned(),
        },
    })
}

/// Empties every mirrored table and writes `rows` (a full load).
pub(super) fn replace_all(
    txn: &redb::WriteTransaction,
    rows: &[(Table, String, Vec<u8>)],
) -> Result<()> {
    fn clear_str(
        txn: &redb::WriteTransaction,
        def: redb::TableDefinition<&str, &[u8]>,
    ) -> Result<()> {
        txn.open_table(def)?.retain(|_, _| false)?;
        Ok(())
    }
    for def in [
        TENANTS,
        CLIENTS,
        CONNECTIONS,
        TENANT_KEYS,
        APPLE_KEYS,
        BACKUP_FILES,
    ] {
        clear_str(txn, def)?;
    }
    txn.open_table(DUE)?.retain(|_, _| false)?;
    txn.open_table(GRANTS)?.retain(|_, _| false)?;
    for (t, k, v) in rows {
        if *t == Table::Meta && k != "header" && k != "format_version" {
            continue;
        }
        put_raw(txn, *t, k, Some(v))?;
    }
    Ok(())
}

/// What the applier needs of the vault: shared with it, not the vault itself.
pub(super) struct Shared {
    pub db: Arc<Database>,
    pub cache: Arc<Mutex<TokenCache>>,
    pub keyring: Arc<RwLock<Arc<Keyring>>>,
    pub kek: Arc<RwLock<Kek>>,
    pub header: Arc<RwLock<Header>>,
    pub store: Arc<Store>,
}

/// Applies other nodes' changes until the listener is gone (the vault closed).
pub(super) fn run_applier(shared: Shared, notices: std::sync::mpsc::Receiver<Notice>) {
    while let Ok(first) = notices.recv() {
        let mut reload = false;
        let mut rows: Vec<(Table, String)> = Vec::new();
        let mut next = Some(first);
        // A burst (a storm committed elsewhere) is applied in one mirror transaction.
        while let Some(n) = next.take() {
            match n {
                Notice::Reload => reload = true,
                Notice::Row(t, k) => rows.push((t, k)),
            }
            if rows.len() < 4096 {
                next = notices.try_recv().ok();
            }
        }
        rows.sort();
        rows.dedup();
        let r = if reload {
            reload_all(&shared)
        } else {
            apply_rows(&shared, rows)
        };
        if let Err(e) = r {
            // The listener reconnects (and reloads) when the database comes back.
            tracing::warn!("could not apply another node's change: {e}");
        }
    }
}

fn apply_rows(s: &Shared, keys: Vec<(Table, String)>) -> Result<()> {
    let txn = s.db.begin_write()?;
    let rows = s.store.read_rows(keys)?;
    let mut touched = Vec::new();
    let mut header = None;
    for (t, k, v) in &rows {
        put_raw(&txn, *t, k, v.as_deref())?;
        if *t == Table::Connections {
            touched.push(k.clone());
        }
        if *t == Table::Meta && k == "header" {
            header = v.clone();
        }
    }
    txn.commit()?;
    if let Some(h) = header {
        take_header(s, &h);
    }
    let mut c = s.cache.lock_or_recover();
    c.generation += 1;
    if header_changed(&rows) {
        c.map.clear();
    } else {
        for k in &touched {
            c.map.remove(k);
        }
    }
    Ok(())
}

fn header_changed(rows: &[(Table, String, Option<Vec<u8>>)]) -> bool {
    rows.iter()
        .any(|(t, k, _)| *t == Table::Meta && k == "header")
}

/// Re-reads every record into the mirror and drops the whole hand-out cache.
pub(super) fn reload_all(s: &Shared) -> Result<()> {
    let txn = s.db.begin_write()?;
    let rows = s.store.load_all()?;
    replace_all(&txn, &rows)?;
    txn.commit()?;
    if let Some((_, _, h)) = rows
        .iter()
        .find(|(t, k, _)| *t == Table::Meta && k == "header")
    {
        take_header(s, h);
    }
    let mut c = s.cache.lock_or_recover();
    c.generation += 1;
    c.map.clear();
    Ok(())
}

/// Another node changed the header: a `rekey` (a new keyring under the same passphrase:
/// taken at once) or a `passwd` (the keyring no longer opens with this node's key: the data
/// keys are unchanged, so the node goes on with the keyring it has, and says so).
fn take_header(s: &Shared, bytes: &[u8]) {
    let Ok(h) = rmp_serde::from_slice::<Header>(bytes) else {
        tracing::warn!("the shared store's header is unreadable; keeping the one in memory");
        return;
    };
    let kek = s.kek.read_or_recover();
    match Keyring::unwrap(&kek, &h.keyring, FORMAT_VERSION) {
        Some(ring) => {
            let changed = ring.current_term() != s.keyring.read_or_recover().current_term();
            *s.keyring.write_or_recover() = Arc::new(ring);
            if changed {
                tracing::info!("another node rekeyed the vault: now on the new key term");
            }
        }
        None => tracing::warn!(
            "another node changed the passphrase; this node keeps its keys until it restarts (give it the new passphrase then)"
        ),
    }
    *s.header.write_or_recover() = h;
}
