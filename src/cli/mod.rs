//! The command line (SPEC §3): clap definitions (`args`), turning a command into an engine
//! `Request` and running it (`run`), and printing responses for people or as JSON
//! (`output`), `exec` (a command run with tokens in its environment) and `man` (man pages
//! from the clap definitions). Must not: hold business rules; everything goes through the
//! `Engine`.

pub mod apple;
pub mod args;
pub mod connect;
pub mod exec;
pub mod man;
pub mod output;
pub mod passphrase;
pub mod paths;
pub mod run;
pub mod store;

pub use args::Cli;
pub use run::run;
