//! The one integration-test binary (as ripgrep does): every module is a area of behaviour,
//! run against the real binary, a real vault file, real sockets and real HTTP servers on
//! 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

mod apple_hygiene;
mod apple_keys;
mod apple_rotation;
mod apple_tokens;
mod apple_user;
mod backup_cli;
mod backup_failures;
mod backup_roundtrip;
mod backup_schedule;
mod cli;
mod daemon_cli;
mod daemon_hostile;
mod daemon_hygiene;
mod daemon_isolation;
mod daemon_lifecycle;
mod daemon_load;
mod daemon_webhooks;
mod failures;
mod hygiene;
mod refresh_cli;
mod refresh_crash;
mod refresh_engine;
mod refresh_hostile_provider;
mod refresh_pacing;
mod token_cache;
