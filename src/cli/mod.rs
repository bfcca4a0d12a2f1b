//! The command line (SPEC §3): clap definitions (`args`), turning a command into an engine
//! `Request` and running it (`run`) through the `client::Backend` that `backend` chooses
//! from the options (the daemon when one answers, else the vault file), printing responses
//! for people or as JSON (`output`), Apple Music's tables (`apple`), the `connect` flow's
//! steps on a terminal (`connect`), a progress bar for long backups (`progress`), `exec` (a
//! command run with tokens in its environment), `man` (man pages from the clap
//! definitions) and where passphrases come from (`passphrase`). Must not: hold business
//! rules; everything goes through a `client::Backend`. Nothing outside `cli` and
//! `main.rs` imports this module.

pub mod apple;
pub mod args;
pub mod backend;
pub mod connect;
pub mod demo;
pub mod exec;
pub mod man;
pub mod output;
pub mod passphrase;
pub mod progress;
pub mod run;
pub mod store;
pub mod tui;
pub mod watch;

pub use args::Cli;
pub use run::run;
