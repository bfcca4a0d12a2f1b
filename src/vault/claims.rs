//! Claims: which node refreshes a connection (SPEC §12).
//!
//! On the shared store a node claims a connection before it calls the provider: one short
//! PostgreSQL transaction (`SELECT … FOR UPDATE SKIP LOCKED`, then `lease_until = now() +
//! lease` by the database's clock, a random `lease_token`, `lease_node`), never held open
//! across the call. While the claim is held, every write of that connection by this node is
//! fenced by the token (`Tx::commit_lost`): if the lease ran out and another node took
//! over, this node's result is not written. The lease is given back when the refresh ends
//! (`release`), or simply runs out if the node dies.
//!
//! On the redb file the daemon holds the file exclusively, so a claim is always granted
//! and costs nothing.
//!
//! Owns: the lease length and the node's table of held leases. Must not: decide when to
//! refresh or wait (that is `refresh`), or hold a lock across an await on the provider.

use super::Vault;
use crate::error::Result;
use crate::sync::LockExt;
use std::time::Duration;

/// Default lease: twice the on-demand deadline (30 s), four times the provider timeout
/// (15 s), so a live node's refresh always ends well inside its lease.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// What a claim gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This node may refresh the connection now.
    Granted,
    /// Another node holds it for about this long (its result arrives before, normally).
    Held(Duration),
}

static LEASE_MS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(DEFAULT_LEASE.as_millis() as u64);

/// The lease length of this process (`[store] lease_secs`; tests shorten it).
pub fn lease() -> Duration {
    Duration::from_millis(LEASE_MS.load(std::sync::atomic::Ordering::Relaxed))
}

pub fn set_lease(d: Duration) {
    LEASE_MS.store(
        d.as_millis().max(1000) as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
}

impl Vault {
    /// True when claims mean something (the vault is on the shared store).
    pub fn shared(&self) -> bool {
        self.store.is_some()
    }

    /// Claims connection `key` for this node; see the module documentation.
    pub async fn claim(&self, key: &str) -> Result<Claim> {
        let Some(store) = self.store() else {
            return Ok(Claim::Granted);
        };
        let token = super::crypto::random_bytes(16);
        match store.claim(key.to_owned(), token.clone(), lease()).await? {
            Ok(value) => {
                self.leases.lock_or_recover().insert(key.to_owned(), token);
                // The previous holder's commit may not have reached the mirror yet: the
                // refresh must start from the row as it is now.
                let multi = tokio::runtime::Handle::try_current().is_ok_and(|h| {
                    h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
                });
                let r = if multi {
                    tokio::task::block_in_place(|| self.take_row(key, &value))
                } else {
                    self.take_row(key, &value)
                };
                if let Err(e) = r {
                    self.release(key).await;
                    return Err(e);
                }
                Ok(Claim::Granted)
            }
            Err(left) => Ok(Claim::Held(left)),
        }
    }

    /// Writes the store's current value of connection `key` into the mirror (if it
    /// differs) and drops its hand-out cache entry.
    fn take_row(&self, key: &str, value: &[u8]) -> Result<()> {
        use redb::ReadableTable;
        self.guard.run(|| {
            let txn = self.db.begin_write()?;
            let same = txn
                .open_table(super::schema::CONNECTIONS)?
                .get(key)?
                .is_some_and(|g| g.value() == value);
            if same {
                return Ok(());
            }
            super::mirror::put_raw(&txn, super::pg::Table::Connections, key, Some(value))?;
            txn.commit()?;
            let mut c = self.cache.lock_or_recover();
            c.generation += 1;
            c.map.remove(key);
            Ok(())
        })
    }

    /// Gives the claim on `key` back (if this node still holds it). Failures only log:
    /// the lease runs out by itself.
    pub async fn release(&self, key: &str) {
        let Some(store) = self.store() else {
            return;
        };
        let token = self.leases.lock_or_recover().remove(key);
        if let Some(token) = token
            && let Err(e) = store.release(key.to_owned(), token).await
        {
            tracing::debug!("a lease was not released (it runs out by itself): {e}");
        }
    }

    /// True while this node holds a claim on `key`.
    pub fn holds(&self, key: &str) -> bool {
        self.leases.lock_or_recover().contains_key(key)
    }
}
