//! Whether the caller of the request being answered is still there (issue 14): the socket
//! server runs each request inside `scope` with a flag it raises when the client hangs up;
//! an on-demand refresh checks it before each provider call and while it waits, and stops
//! once its caller is gone and nobody else waits for the same flight.
//!
//! Outside a `scope` (the CLI opening the vault itself, the scheduler, tests) the caller is
//! never gone: a CLI that is interrupted simply ends with its process.
//!
//! Must not: cancel anything itself. It only answers "is the caller gone?"; the refresh
//! code decides where stopping is safe (never between a provider's answer and its commit).

use std::future::Future;
use tokio::sync::watch;

tokio::task_local! {
    static GONE: watch::Receiver<bool>;
}

/// A flag for one client connection: raise it with `send(true)` when the client is gone.
pub fn flag() -> (watch::Sender<bool>, watch::Receiver<bool>) {
    watch::channel(false)
}

/// Runs `f` as a request of the caller whose departure `gone` reports.
pub async fn scope<F: Future>(gone: watch::Receiver<bool>, f: F) -> F::Output {
    GONE.scope(gone, f).await
}

/// Whether the current request's caller has gone away.
pub fn is_gone() -> bool {
    GONE.try_with(|g| *g.borrow()).unwrap_or(false)
}

/// Resolves when the current request's caller goes away; never outside a `scope`.
pub async fn gone() {
    if let Ok(mut rx) = GONE.try_with(|g| g.clone())
        && rx.wait_for(|g| *g).await.is_ok()
    {
        return;
    }
    std::future::pending::<()>().await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_flag_is_seen_inside_its_scope_only() {
        assert!(!is_gone());
        let (tx, rx) = flag();
        scope(rx, async move {
            assert!(!is_gone());
            let waited = tokio::time::timeout(Duration::from_millis(20), gone()).await;
            assert!(waited.is_err(), "not gone yet");
            tx.send(true).unwrap();
            assert!(is_gone());
            tokio::time::timeout(Duration::from_secs(5), gone())
                .await
                .unwrap();
        })
        .await;
        assert!(!is_gone());
        let outside = tokio::time::timeout(Duration::from_millis(20), gone()).await;
        assert!(outside.is_err(), "outside a scope the caller never leaves");
    }
}
