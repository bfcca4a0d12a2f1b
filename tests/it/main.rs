//! The one integration-test binary (as ripgrep does): every module is a area of behaviour,
//! run against the real binary, a real vault file, real sockets and real HTTP servers on
//! 127.0.0.1.

mod support;

mod cli;
mod failures;
mod hygiene;
mod refresh_cli;
mod refresh_crash;
mod refresh_engine;
