//! Keeping tokens valid (SPEC §5): the scheduler, single flight, retry policy.
//!
//! PLACEHOLDER: the refresh engine (issue 3) replaces this module. The interface the
//! daemon calls is fixed here so the daemon and the scheduler can be built in parallel.

use crate::engine::Engine;
use crate::error::Result;
use std::future::Future;
use std::sync::Arc;

/// Runs the scheduler until `shutdown` resolves. Placeholder: does nothing but wait.
pub async fn run_scheduler(
    engine: Arc<Engine>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let _ = engine;
    shutdown.await;
    Ok(())
}
