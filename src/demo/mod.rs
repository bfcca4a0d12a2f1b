//! `tokenvault demo` (SPEC §11): a throw-away world to try tokenvault in, with nothing to
//! set up and nothing left behind.
//!
//! - [`sim_provider`]: simulated OAuth providers, real HTTP on 127.0.0.1: rotating refresh
//!   tokens with reuse detection, a revoked grant, a provider answering 429 once, one
//!   failing with 503 a few times.
//! - [`world`]: the world of §11 in one directory: vault (fast, demo-only KDF), config,
//!   tenants, clients, a dozen connections, Apple Music keys, an age identity.
//! - [`run`]: runs the real daemon (`server::serve_until`) on the world while a front end
//!   (the CLI's headless printer or the TUI, both in `cli`) is attached; cleans up.
//!
//! Must not: reach the network, print (the front end does), or import `crate::cli`.

pub mod run;
pub mod sim_provider;
pub mod world;

pub use run::{DemoOptions, Session, run};
