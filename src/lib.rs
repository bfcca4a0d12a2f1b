//! tokenvault: an encrypted, multi-tenant OAuth and API token vault that keeps tokens
//! valid and hands them out (see shared/SPEC.md for the contract).
//!
//! # Layout
//!
//! - [`engine`]: `Engine`, every operation as `Request` → `Response` for a `Caller`; the
//!   one entry point of the CLI, the daemon and the TUI.
//! - [`vault`]: the redb file, its schema (every table in `vault::schema`), the key
//!   hierarchy and sealing (`vault::crypto`, the only module touching ciphers), records.
//! - [`token`]: parsing OAuth token responses.
//! - [`names`]: tenant / provider / account / connection-address validation.
//! - [`secret`]: `Secret`, a string that never prints.
//! - [`cli`]: clap definitions, running a command in-process, human and JSON output.
//! - [`config`]: the optional TOML configuration file, one section per part.
//! - [`provider`]: the provider catalogue as data, token-endpoint calls and the
//!   classification of their answers, the CLI halves of the OAuth flows.
//! - [`refresh`]: keeping tokens valid: retry/due-time policy, single flight, group
//!   commit, the scheduler, and the refresh / connect / provider operations.
//! - [`error`]: the error type, with exit codes and protocol error codes.
//! - [`backup`]: age-encrypted backups: export, verify, restore, scheduled (SPEC §8).
//! - [`apple`]: Apple Music signing keys, developer tokens, Music-User-Token validation.
//! - [`server`]: the daemon (`serve`): Unix-socket listener, peer credentials, connection
//!   caps, socket-directory trust, the newline-delimited JSON protocol, signals, systemd
//!   readiness.
//! - [`client`]: the CLI side of the socket: check the daemon's uid, send to a live
//!   daemon, else run in-process; `get_token` / `get_token_as` for Rust programs.
//! - [`metrics`]: counters and the Prometheus text exposition.
//! - [`webhook`]: signed POSTs on status changes.
//! - [`demo`]: `tokenvault demo`: simulated providers on 127.0.0.1, a throw-away world,
//!   the real daemon on it for a front end to attach to (SPEC §11).
//! - [`doctor`]: the `doctor` command: what is damaged in a vault file, and a salvage
//!   backup of every record that still opens (the checks are `vault::doctor`).
//!
//! Data flows one way: front end → `Engine` → `vault` (and later `refresh`, `provider`).
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
pub mod backup;
pub mod cli;
pub mod client;
pub mod config;
pub mod contract;
pub mod demo;
pub mod doctor;
pub mod engine;
pub mod error;
pub mod metrics;
pub mod names;
pub mod provider;
pub mod refresh;
pub mod secret;
pub mod server;
pub mod token;
pub mod vault;
pub mod webhook;

pub use engine::{Caller, Engine, Request, Response};
pub use error::{Error, Result};
