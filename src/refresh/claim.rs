//! Single flight across nodes (SPEC §12): on the shared store a refresh runs only under
//! this node's claim on the connection (`vault::claims`); a node that finds the connection
//! claimed elsewhere waits for the holder's result (its commit reaches this node's mirror
//! through `LISTEN`/`NOTIFY`) or for the lease to run out (the holder died: this node
//! takes over). On the redb file this is a plain call of the work.
//!
//! Owns: that waiting loop. Must not: hold the claim's transaction open (there is none:
//! a claim is one short statement), or call the provider itself.

use crate::error::{Error, Result};
use crate::vault::Vault;
use crate::vault::claims::Claim;
use std::future::Future;
use std::time::Duration;

/// How often a waiting node looks at its mirror for the holder's result.
const POLL: Duration = Duration::from_millis(20);

/// What changes in a connection's record when anyone commits it.
fn stamp(vault: &Vault, key: &str) -> Option<(i64, u64, Option<i64>, String)> {
    let rec = vault.read().ok()?.connection(key).ok()??;
    Some((
        rec.updated_at,
        rec.refresh_count,
        rec.due_at,
        rec.status.to_string(),
    ))
}

/// Runs `work` under this node's claim on `key`.
///
/// - `settled()`: the work is no longer needed (another node's result is good enough):
///   its answer is returned without a claim. Checked before every claim.
/// - `still_valid()`: what to answer when the store cannot be reached for the claim (a
///   still-valid token; `None`: the store's error is returned).
/// - `wait`: the longest this call waits for another node's result in all.
pub async fn under_claim<T, F, Fut>(
    vault: &Vault,
    key: &str,
    wait: Duration,
    settled: impl Fn() -> Option<T>,
    still_valid: impl Fn() -> Option<T>,
    work: F,
) -> Result<T>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    if !vault.shared() {
        return work().await;
    }
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(t) = settled() {
            return Ok(t);
        }
        let claim = match vault.claim(key).await {
            Ok(c) => c,
            Err(e) => {
                return match still_valid() {
                    Some(t) => {
                        tracing::warn!(
                            "the shared store is unreachable; handing out the stored token, which is still valid: {e}"
                        );
                        Ok(t)
                    }
                    None => Err(e),
                };
            }
        };
        match claim {
            Claim::Granted => {
                let r = work().await;
                vault.release(key).await;
                return r;
            }
            Claim::Held(left) => {
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    return match still_valid() {
                        Some(t) => Ok(t),
                        None => Err(Error::ProviderUnavailable {
                            connection: key.to_owned(),
                            reason: "another node is refreshing this connection and has not finished yet".into(),
                        }),
                    };
                }
                // Wait for the holder's commit, or for its lease to run out.
                let until = (now + left + POLL).min(deadline);
                let before = stamp(vault, key);
                while tokio::time::Instant::now() < until {
                    tokio::time::sleep(POLL).await;
                    if stamp(vault, key) != before {
                        break;
                    }
                }
            }
        }
    }
}
