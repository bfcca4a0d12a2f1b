//! Encrypted backups (SPEC §8): `export` writes an age file holding a MessagePack stream
//! of every record of the vault (or of one tenant), secrets opened; `verify` decrypts and
//! checks a whole file without writing; `restore` applies one in a single write
//! transaction; `schedule` takes backups from `serve` with a retention count.
//!
//! Owns: the backup file format (`format`), age encryption of it, the temp-file-and-rename
//! dance, and turning a backup back into vault records. Must not: touch ciphers of the
//! vault (records are opened and sealed through `Rx`/`Tx`), decide who may do it (the
//! `Engine` checks for an admin caller), or print (the CLI prints the `BackupReport`) or
//! draw progress (it is reported to the caller's `ProgressSink`, if any).
//!
//! What a failure leaves behind: an export that fails removes its temp file and never
//! replaces an existing file at the target path; a restore reads and checks the whole
//! file before it opens a write transaction, so a wrong key, a truncated or tampered file,
//! or a conflict changes no byte of the vault.

pub mod backups;
pub mod export;
pub mod format;
pub mod migrate;
pub mod restore;
pub mod schedule;

use crate::contract::progress::{ProgressEvent, ProgressSink};
pub use backups::Backups;

pub use export::{EncryptTo, ExportOptions, export};
pub use restore::{RestoreOptions, Unlock, restore, verify};
pub use schedule::{run_scheduled_backups, take_scheduled_backup};

/// Counts the records of one pass into the caller's progress sink, if any: `Start` when
/// made, `Advance` on each record, `Finish` once (on `finish`, or when dropped by a pass
/// that failed). Deciding whether and how to show it is the caller's (the CLI draws a bar
/// on a terminal for large vaults, the daemon passes no sink).
pub(crate) struct Progress {
    sink: Option<ProgressSink>,
    done: std::cell::Cell<u64>,
    finished: std::cell::Cell<bool>,
}

impl Progress {
    pub(crate) fn new(sink: Option<&ProgressSink>, total: u64, what: &str) -> Progress {
        if let Some(s) = sink {
            s.report(ProgressEvent::Start {
                what: what.to_owned(),
                total,
            });
        }
        Progress {
            sink: sink.cloned(),
            done: std::cell::Cell::new(0),
            finished: std::cell::Cell::new(false),
        }
    }

    pub(crate) fn inc(&self) {
        if let Some(s) = &self.sink {
            self.done.set(self.done.get() + 1);
            s.report(ProgressEvent::Advance {
                done: self.done.get(),
            });
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(s) = &self.sink
            && !self.finished.replace(true)
        {
            s.report(ProgressEvent::Finish);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
