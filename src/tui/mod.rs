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
//!
//! # Design notes for the next engineer
//!
//! - State changes only in `App::update(Action) -> Vec<Effect>`; the loop performs the
//!   effects (`run::perform`) and feeds the answers back as `Action::Answer { tag, .. }`.
//!   Tests do the same synchronously (`run::settle`, or the fake in `tests/mod.rs`), so
//!   every key is testable without a terminal, and the snapshots are exact frames.
//! - The connections list is pages of `list` (`limit`/`after`, `contains` for `/`,
//!   `status` for `s`), each reload a new `round` so late answers of an old filter are
//!   dropped; rows are a compact `app::Row`, not the whole view. Forward paging only (the
//!   contract has `after`, no `before`): `G` loads page after page to the end.
//! - Live events update rows in place; anything that needs the server again (header
//!   counts, a created connection, the audit tail) is marked and asked for on the next
//!   one-second tick, so a burst of events costs one request, not one each.
//! - Prompts are text entry: `q` types a `q` there; Esc cancels (for `/`: clears the
//!   filter). A confirmation takes `y`/`n` (Esc and `q` say no).
//! - Files named at prompts (`.p8`, age identity) are read by the loop, never by the App,
//!   and their text goes straight into the request as a `Secret`.
//! - `r` on the Apple keys tab asks `apple token` and shows only its expiry; the engine
//!   renews the cached token when less than a day remains or after a rotation (the
//!   contract has no "force"). A key becomes `retiring` (not `retired`) on activation only
//!   if a token signed with it is still valid.
//! - Crate quirks: ratatui 0.30 is split into ratatui-core/-widgets/-crossterm (we take
//!   only the crossterm backend, no default widgets features); `TestBackend`'s `Display`
//!   quotes each line (that is the snapshot format); terminals send Esc followed quickly by
//!   a key as Alt-key, so the tmux test sends keys one by one; `gen` is a reserved word in
//!   edition 2024 (hence `round`).

pub mod app;
pub mod input;
pub mod link;
pub mod run;
pub mod view;

#[cfg(test)]
mod tests;

pub use app::{Action, App, Effect, Key, LinkInfo, Tab};
pub use link::{BackendLink, EngineLink, Link};
pub use run::{Options, run_terminal};
