//! The daemon (SPEC §6): `serve` unlocks the vault, runs the refresh scheduler, and
//! answers newline-delimited JSON requests on a Unix socket.
//!
//! - [`protocol`]: framing and decoding (never panics, property-tested).
//! - [`peer`]: who is asking: SO_PEERCRED uid → admin / granted tenant / nobody.
//! - [`listener`]: the accept loop, connection cap, idle timeout, line limit, graceful
//!   shutdown.
//! - [`daemon`]: the `serve` command: socket directory and permissions, lock file, stale
//!   socket, signals, audit flushing, metrics HTTP, systemd readiness.
//!
//! Must not: decide what a caller may do (the `Engine` does), or touch the vault directly.

pub mod daemon;
pub mod listener;
pub mod metrics_http;
pub mod peer;
pub mod protocol;

pub use daemon::{ServeOptions, serve};
