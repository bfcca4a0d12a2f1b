//! `tokenvault tui`, the operator's console (SPEC §10): pure state plus drawing generic
//! over ratatui's `Backend` (the gitui / ratatui-template model).
//!
//! - [`app`]: `App`, `Action`, `Effect`: every key of §10, pure and unit-tested.
//! - [`view`]: drawing each part of the screen from the `App` (any ratatui backend).
//! - [`input`]: crossterm key events → the App's keys.
//! - [`link`]: the `Link` trait, the TUI's only way to the product (Requests, events).
//! - [`run`]: the event loop, terminal set-up and restore.
//!
//! Must not: reach the vault, the engine's internals or another tenant except through a
//! `Request` on the link, as the caller; import `crate::cli`; draw a secret.

pub mod app;
pub mod input;
pub mod link;
pub mod run;
pub mod view;

#[cfg(test)]
mod tests;

pub use app::{Action, App, Effect, Key, LinkInfo, Tab};
pub use link::{EngineLink, Link};
pub use run::{Options, run_terminal};
