//! `Backups`, the backup handle: what `Request::Backup*` do (the engine has checked for an
//! admin caller), with their audit records and events, and the state the schedule keeps
//! (its last outcome).
//!
//! Paths are taken as given and must be absolute: through the daemon they are opened by
//! the daemon's process, whose working directory is not the caller's (the CLI makes them
//! absolute before sending).

use super::export::{EncryptTo, ExportOptions, export};
use super::restore::{RestoreOptions, Unlock, restore, verify};
use super::schedule;
use crate::context::Context;
use crate::contract::{BackupOutcome, BackupReport, Caller};
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::sync::LockExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Runs blocking work (file I/O, redb, age) without stalling other tasks of a
/// multi-threaded runtime; plainly otherwise.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

fn absolute(path: &str) -> Result<PathBuf> {
    let p = Path::new(path);
    if !p.is_absolute() {
        // Not quoted back: answers never repeat a request's free-form values.
        return Err(Error::invalid(
            "backup path",
            "it must be an absolute path (the daemon opens it, from its own working directory)",
        ));
    }
    Ok(p.to_owned())
}

/// Decrypts and checks a whole backup file without writing anything (what `backup verify`
/// does, also without a vault).
pub fn verify_file(
    path: &str,
    identity: Option<Secret>,
    passphrase: Option<Secret>,
    progress: bool,
) -> Result<BackupReport> {
    let path = absolute(path)?;
    let unlock = unlock(identity, passphrase)?;
    blocking(|| verify(&path, &unlock, progress))
}

fn unlock(identity: Option<Secret>, passphrase: Option<Secret>) -> Result<Unlock> {
    match (identity, passphrase) {
        (Some(i), None) => Ok(Unlock::Identity(i)),
        (None, Some(p)) => Ok(Unlock::Passphrase(p)),
        _ => Err(Error::invalid(
            "backup key",
            "give exactly one of --identity FILE or --backup-passphrase-file FILE",
        )),
    }
}

/// The backup handle: a `Context`, the scheduler's last outcome and a test-only scrypt
/// work factor. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Backups {
    pub(crate) ctx: Context,
    state: Arc<BackupState>,
}

#[derive(Debug, Default)]
struct BackupState {
    last: std::sync::Mutex<Option<BackupOutcome>>,
    work_factor: std::sync::Mutex<Option<u8>>,
}

impl Backups {
    pub fn new(ctx: Context) -> Backups {
        Backups {
            ctx,
            state: Arc::default(),
        }
    }

    /// The last scheduled backup taken by this process, if any.
    pub fn last_backup(&self) -> Option<BackupOutcome> {
        self.state.last.lock_or_recover().clone()
    }

    pub fn set_last_backup(&self, outcome: BackupOutcome) {
        *self.state.last.lock_or_recover() = Some(outcome);
    }

    /// Overrides age's scrypt work factor (log2 N) for passphrase backups. Tests only:
    /// the default targets about a second of work and is what real backups should use.
    pub fn set_backup_work_factor(&self, log_n: Option<u8>) {
        *self.state.work_factor.lock_or_recover() = log_n;
    }

    pub(crate) fn backup_work_factor(&self) -> Option<u8> {
        *self.state.work_factor.lock_or_recover()
    }
}

impl Backups {
    /// `Request::BackupExport`.
    #[allow(clippy::too_many_arguments)]
    pub fn export(
        &self,
        caller: &Caller,
        path: &str,
        tenant: Option<String>,
        recipients: Vec<String>,
        passphrase: Option<Secret>,
        include_audit: bool,
        progress: bool,
    ) -> Result<BackupReport> {
        let path = absolute(path)?;
        let to = match (recipients.is_empty(), passphrase) {
            (false, None) => EncryptTo::Recipients(recipients),
            (true, Some(p)) => EncryptTo::Passphrase {
                passphrase: p,
                work_factor: self.backup_work_factor(),
            },
            _ => {
                return Err(Error::invalid(
                    "backup key",
                    "give one or more --recipient age1… or a --backup-passphrase-file, not both",
                ));
            }
        };
        let opts = ExportOptions {
            tenant: tenant.clone(),
            include_audit,
            progress,
        };
        let config = self.ctx.config();
        let report = blocking(|| {
            export(
                self.ctx.vault(),
                &config.providers,
                &path,
                &to,
                &opts,
                self.ctx.now(),
            )
        })?;
        let tx = self.ctx.vault().write()?;
        tx.append_audit(&crate::audit::record(
            self.ctx.now(),
            caller.actor(),
            "backup_export",
            tenant.as_deref(),
            &report.path,
            &format!("{} records", report.records),
        ))?;
        tx.commit()?;
        Ok(report)
    }

    /// `Request::BackupVerify` (needs no vault: see `verify_file`).
    pub fn verify(
        &self,
        path: &str,
        identity: Option<Secret>,
        passphrase: Option<Secret>,
        progress: bool,
    ) -> Result<BackupReport> {
        verify_file(path, identity, passphrase, progress)
    }

    /// `Request::BackupRestore`.
    #[allow(clippy::too_many_arguments)]
    pub fn restore(
        &self,
        caller: &Caller,
        path: &str,
        identity: Option<Secret>,
        passphrase: Option<Secret>,
        tenant: Option<String>,
        replace: bool,
        progress: bool,
    ) -> Result<BackupReport> {
        let path = absolute(path)?;
        let unlock = unlock(identity, passphrase)?;
        let opts = RestoreOptions {
            tenant: tenant.clone(),
            replace,
            progress,
        };
        let audit = crate::audit::record(
            self.ctx.now(),
            caller.actor(),
            "backup_restore",
            tenant.as_deref(),
            &path.display().to_string(),
            if replace { "ok (replace)" } else { "ok" },
        );
        let mut report = blocking(|| restore(self.ctx.vault(), &path, &unlock, &opts, audit))?;
        // Custom providers live in the config file, which a restore does not write.
        let config = self.ctx.config();
        let missing: Vec<&String> = report
            .providers
            .iter()
            .filter(|p| !config.providers.contains_key(*p))
            .collect();
        if !missing.is_empty() {
            report.notes.push(format!(
            "custom providers in the backup but not in this config file: {} (add their [providers.NAME] tables; `age -d` the backup to read them)",
            missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        ));
        }
        Ok(report)
    }

    /// The scheduled-backup line of `status`: the scheduler's last outcome in this process,
    /// else the newest backup the vault recorded writing (never a file name found on disk).
    pub fn status_line(&self) -> Option<BackupOutcome> {
        self.last_backup().or_else(|| {
            let config = self.ctx.config();
            let cfg = config.backup.as_ref()?;
            blocking(|| schedule::recorded_outcome(self, cfg))
        })
    }
}
