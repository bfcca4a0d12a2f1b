//! The contract: every request, answer, view and event as plain data, the caller's
//! identity, the protocol version, and the socket framing the client and the server share
//! (rbw's `protocol.rs` is the model). Everything here is serde data with no behaviour
//! beyond checks on itself: no vault access, no I/O, no engine.
//!
//! - [`request`]: `Request`, one variant per operation; `Request::op` is its serde tag.
//! - [`response`]: `Response`, one variant per kind of answer.
//! - [`views`]: what answers carry (`ConnectionView`, `StatusView`, `BackupReport`, …).
//! - [`event`]: `Event`, the bus's and `watch`'s unit (SPEC §10).
//! - [`caller`]: `Caller`, admin or tenant-scoped, decided by the front end.
//! - [`framing`]: one JSON object per line each way (SPEC §6, docs/protocol.md).
//! - [`progress`]: `ProgressEvent`/`ProgressSink`, how a long operation reports to its
//!   caller (who decides how to show it).
//! - [`watch`]: `WatchScope`, which events a `watch` shows a caller.

pub mod caller;
pub mod event;
pub mod framing;
pub mod progress;
pub mod request;
pub mod response;
mod tag;
pub mod views;
pub mod watch;

pub use caller::Caller;
pub use event::{Event, EventKind, StatusEvent};
pub use request::Request;
pub use response::Response;
pub use views::*;

/// The protocol version `hello` reports. Adding ops or optional fields keeps it; changing
/// the meaning of an existing one bumps it.
pub const PROTOCOL_VERSION: u32 = 1;
