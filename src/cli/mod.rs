//! The command line (SPEC §3): clap definitions (`args`), turning a command into an engine
//! `Request` and running it (`run`), and printing responses for people or as JSON
//! (`output`). Must not: hold business rules; everything goes through the `Engine`.

pub mod apple;
pub mod args;
pub mod output;
pub mod passphrase;
pub mod paths;
pub mod run;

pub use args::Cli;
pub use run::run;
