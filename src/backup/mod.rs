//! Encrypted backups (SPEC §8): `export` writes an age file holding a MessagePack stream
//! of every record of the vault (or of one tenant), secrets opened; `verify` decrypts and
//! checks a whole file without writing; `restore` applies one in a single write
//! transaction; `schedule` takes backups from `serve` with a retention count.
//!
//! Owns: the backup file format (`format`), age encryption of it, the temp-file-and-rename
//! dance, and turning a backup back into vault records. Must not: touch ciphers of the
//! vault (records are opened and sealed through `Rx`/`Tx`), decide who may do it (the
//! `Engine` checks for an admin caller), or print (the CLI prints the `BackupReport`).
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

pub use backups::Backups;
pub use export::{EncryptTo, ExportOptions, export};
pub use restore::{RestoreOptions, Unlock, restore, verify};
pub use schedule::{run_scheduled_backups, take_scheduled_backup};

/// Progress bars appear only on a terminal and for more records than this.
pub const PROGRESS_THRESHOLD: u64 = 5_000;

/// An indicatif bar on stderr, or nothing.
pub(crate) struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    pub(crate) fn new(enabled: bool, total: u64, what: &str) -> Progress {
        if !enabled || total < PROGRESS_THRESHOLD {
            return Progress(None);
        }
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(total),
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg:>10} [{bar:40}] {pos}/{len} records ({per_sec}, {eta})",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_owned());
        Progress(Some(bar))
    }

    pub(crate) fn inc(&self) {
        if let Some(b) = &self.0 {
            b.inc(1);
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

/// Whether a progress bar may draw: stderr is a terminal.
pub fn stderr_is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}
