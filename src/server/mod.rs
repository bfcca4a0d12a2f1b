//! The daemon (SPEC §6): `serve` unlocks the vault, runs the refresh scheduler, and
//! answers newline-delimited JSON requests on a Unix socket.
//!
//! The framing (one JSON object per line) is `contract::framing`, shared with the client.
//!
//! - [`peer`]: who is asking: SO_PEERCRED uid → admin / granted tenant / nobody.
//! - [`admission`]: connection caps: per uid, in all, a reserve for admins, and a share
//!   for connections not yet authorised (pure rule + counts).
//! - [`listener`]: the accept loop, the auth deadline, idle timeout, line limit, graceful
//!   shutdown.
//! - [`runtime_dir`]: whether the socket's directory can be trusted (owner, mode, links,
//!   parents), the lock file and the stale-socket rule, all without following links.
//! - [`daemon_config`]: the configuration as `serve` loads and checks it.
//! - [`daemon`]: the `serve` command: socket directory and permissions, lock file, stale
//!   socket, signals, audit flushing, metrics HTTP, systemd readiness.
//!
//! Must not: decide what a caller may do (the `Engine` does), or touch the vault directly.

pub mod admission;
pub mod daemon;
pub mod daemon_config;
pub mod listener;
pub mod metrics_http;
pub mod peer;
pub mod runtime_dir;

pub use daemon::{ServeOptions, serve};
