//! tokenvault: an encrypted, multi-tenant OAuth and API token vault that keeps tokens
//! valid and hands them out (see shared/SPEC.md for the contract).
//!
//! # Layout
//!
//! Data flows one way: front ends → `client::Backend` → `engine` → subsystems →
//! `vault` (docs/design.md, "Architecture"; `scripts/module-graph` checks it).
//!
//! Plain data, used by every layer:
//! - [`contract`]: `Request`, `Response`, the views answers carry, `Event`, `Caller`, the
//!   protocol version and the socket framing.
//! - [`names`]: tenant / provider / account / connection-address and endpoint-URL checks.
//! - [`secret`]: `Secret`, a string that never prints.
//! - [`error`]: the error type, with exit codes and protocol error codes.
//! - [`config`]: the optional TOML configuration file, one section per part.
//! - [`token`]: parsing OAuth token responses.
//! - [`sync`]: locks that survive a panicking holder.
//!
//! Front ends:
//! - [`cli`]: clap definitions, running a command, human and JSON output.
//! - [`server`]: the daemon (`serve`): Unix-socket listener, peer credentials, connection
//!   caps, socket-directory trust, signals, systemd readiness, metrics HTTP.
//! - [`client`]: the client side: check the daemon's uid, talk to it over the socket, or
//!   run the engine in-process; `get_token` / `get_token_as` for Rust programs.
//! - [`doctor`]: the `doctor` command: what is damaged in a vault file, and a salvage
//!   backup of every record that still opens (the checks are `vault::doctor`).
//!
//! The engine and what it is built on:
//! - [`engine`]: `Engine`, every operation as `Request` → `Response` for a `Caller`; a
//!   dispatcher over one file per noun (`src/engine/`).
//! - [`context`]: `Context`, the shared handle subsystems are built on (vault, clock,
//!   configuration and provider catalogue, metrics, event bus, audit writer).
//! - [`audit`]: audit records and the batched writer of hand-out records.
//! - [`refresh`]: `Refresher`: retry/due-time policy, single flight, group commit, the
//!   scheduler.
//! - [`apple`]: `AppleMusic`: signing keys, developer tokens, Music-User-Token checks.
//! - [`backup`]: `Backups`: age-encrypted export, verify, restore, the schedule (SPEC §8).
//! - [`webhook`]: signed POSTs on status changes.
//! - [`metrics`]: counters, gauges and the Prometheus text exposition.
//! - [`provider`]: the provider catalogue as data, token-endpoint calls and the
//!   classification of their answers, `Retry-After`, the OAuth flows' client halves.
//! - [`vault`]: the redb file, its schema (every table in `vault::schema`), the key
//!   hierarchy and sealing (`vault::crypto`, the only module touching ciphers), records.
//!
//! # A token for a Rust program
//!
//! A Rust service running next to `tokenvault serve` asks it for a valid access token in a
//! few lines, with the same scoping and errors as `tokenvault get` (see [`client`] and
//! `examples/get_token.rs`):
//!
//! ```no_run
//! # async fn demo() -> tokenvault::Result<()> {
//! let socket = tokenvault::client::default_socket();
//! let min_ttl = std::time::Duration::from_secs(60);
//! let token = tokenvault::client::get_token(&socket, "acme/spotify/alice", min_ttl).await?;
//! let header = format!("Bearer {}", token.expose());
//! # drop(header);
//! # Ok(())
//! # }
//! ```

pub mod apple;
pub mod audit;
pub mod backup;
pub mod cli;
pub mod client;
pub mod config;
pub mod context;
pub mod contract;
pub mod doctor;
pub mod engine;
pub mod error;
pub mod metrics;
pub mod names;
pub mod provider;
pub mod refresh;
pub mod secret;
pub mod server;
pub mod sync;
pub mod token;
pub mod vault;
pub mod webhook;

pub use contract::{Caller, Request, Response};
pub use engine::Engine;

/// The commit this binary was built from (`unknown` outside a git checkout; see build.rs).
pub const COMMIT: &str = env!("TOKENVAULT_COMMIT");
pub use error::{Error, Result};
