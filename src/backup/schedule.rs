//! Scheduled backups from `serve` (SPEC §8, config `[backup]`): every `interval_secs`
//! (default one day) an export of the whole vault to the configured age recipients, as
//! `DIRECTORY/tokenvault-YYYYMMDDTHHMMSSZ.age` (0600, in a 0700 directory, written via a
//! temp file and rename), keeping the `retention` newest (default 7).
//!
//! Owns: timing, file naming, pruning, the checks of the backup directory, and the last
//! outcome `status` shows. Must not: hold a passphrase (recipients only), stop the daemon
//! when a backup fails (the failure is logged, shown in `status`, and retried after at most
//! five minutes), or trust what it finds in the directory.
//!
//! What the schedule trusts is the vault's record of the files it wrote
//! (`vault::backup_files`: path, time, SHA-256, size), never the names in the directory:
//! "last backup" and "next due" come from the newest recorded file that is still there as
//! written, so a planted `tokenvault-20990102T000000Z.age` cannot silence backups or show
//! in `status`. Files the vault did not record are ignored for scheduling, reported (log
//! and `status`), and never deleted: retention deletes only recorded files whose content
//! still has the recorded SHA-256. A recorded file that was changed loses its record and
//! is then reported like any foreign file.
//!
//! The directory itself must be a real directory (not a symbolic link) owned by the
//! daemon's uid and not writable by group or others. `serve` refuses to start otherwise
//! (`check_config`), and every scheduled round checks again (a failed round is loud in the
//! log and in `status`), since SIGHUP or `chmod` can change it later.
//!
//! What a failure leaves behind: a backup that fails leaves no file (see `export`). A crash
//! between the rename and the vault record leaves a complete backup file the vault does
//! not know: reported as foreign, never deleted by retention.

use super::Backups;
use super::export::{EncryptTo, ExportOptions, export_file};
use crate::config::{BackupConfig, Config};
use crate::contract::{BackupOutcome, BackupReport, Event, EventKind};
use crate::error::{Error, Result};
use crate::vault::backup_files::BackupFileRecord;
use std::future::Future;
use std::path::{Path, PathBuf};

pub const DEFAULT_INTERVAL_SECS: u64 = 86_400;
pub const DEFAULT_RETENTION: usize = 7;
/// After a failed scheduled backup, the next try comes after at most this long.
pub const RETRY_SECS: u64 = 300;
const PREFIX: &str = "tokenvault-";
const SUFFIX: &str = ".age";
const STAMP: &str = "%Y%m%dT%H%M%SZ";
/// Foreign file names listed in one warning; the rest are counted.
const LISTED: usize = 3;
/// How long a stop waits for a scheduled backup in progress.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Files in `dir` named like scheduled backups, sorted by name. Names only: the schedule
/// does not trust them (see the module docs); this is for tools and tests.
pub fn scheduled_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

/// Checks the backup directory: a real directory (not a symbolic link), owned by this
/// process's uid, not writable by group or others. A directory that does not exist yet
/// passes (the first backup creates it 0700). Errors are `Error::Config` with the fix.
pub fn check_directory(dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let shown = dir.display();
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(Error::Config(format!(
                "[backup] directory {shown} cannot be examined ({e}): fix its permissions or choose another directory"
            )));
        }
    };
    if meta.file_type().is_symlink() {
        return Err(Error::Config(format!(
            "[backup] directory {shown} is a symbolic link: name the real directory in the config (backups are not written through links)"
        )));
    }
    if !meta.is_dir() {
        return Err(Error::Config(format!(
            "[backup] directory {shown} is not a directory: remove what is there or choose another directory"
        )));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(Error::Config(format!(
            "[backup] directory {shown} is owned by uid {}, not by uid {me} that runs the daemon: `chown {me} {shown}` or choose a directory of this user (another user's directory lets them plant, replace or remove backups)",
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(Error::Config(format!(
            "[backup] directory {shown} is writable by group or others (mode {mode:04o}): `chmod 700 {shown}`"
        )));
    }
    Ok(())
}

/// The start-up check of `serve`: the `[backup]` directory, when backups are configured.
pub fn check_config(config: &Config) -> Result<()> {
    match &config.backup {
        Some(b) => check_directory(Path::new(&b.directory)),
        None => Ok(()),
    }
}

/// The recorded backup files in `dir`, oldest first.
fn recorded_in(backups: &Backups, dir: &Path) -> Result<Vec<(PathBuf, BackupFileRecord)>> {
    let mut out: Vec<(PathBuf, BackupFileRecord)> = backups
        .ctx
        .vault()
        .read()?
        .backup_files()?
        .into_iter()
        .map(|(p, r)| (PathBuf::from(p), r))
        .filter(|(p, _)| p.parent() == Some(dir))
        .collect();
    out.sort_by(|a, b| (a.1.at, &a.0).cmp(&(b.1.at, &b.0)));
    Ok(out)
}

/// A recorded file as it is on disk now, by `lstat` (cheap: no reading).
enum OnDisk {
    AsWritten,
    Missing,
    Changed(&'static str),
}

fn on_disk(path: &Path, rec: &BackupFileRecord) -> OnDisk {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => OnDisk::Missing,
        Err(_) => OnDisk::Changed("it cannot be examined"),
        Ok(m) if !m.file_type().is_file() => OnDisk::Changed("it is no longer a regular file"),
        Ok(m) if m.len() != rec.bytes => OnDisk::Changed("its size changed"),
        Ok(_) => OnDisk::AsWritten,
    }
}

/// Whether the file at `path` has the recorded SHA-256 (read without following a link).
fn same_content(path: &Path, rec: &BackupFileRecord) -> std::io::Result<bool> {
    use sha2::Digest;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits() | nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Ok(false);
    }
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()) == rec.sha256)
}

/// The newest recorded backup in `dir` that is still on disk as written and not dated
/// after `now` (a clock that went back must not postpone backups).
fn trusted_last(backups: &Backups, dir: &Path, now: i64) -> Option<(PathBuf, BackupFileRecord)> {
    let recorded = match recorded_in(backups, dir) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the record of scheduled backups");
            return None;
        }
    };
    recorded
        .into_iter()
        .rev()
        .find(|(p, r)| r.at <= now && matches!(on_disk(p, r), OnDisk::AsWritten))
}

/// Warnings about `dir`: entries the vault did not record writing, recorded files that
/// are missing or changed. File names are shown escaped (they come from the directory).
fn survey(backups: &Backups, dir: &Path) -> Vec<String> {
    let recorded = recorded_in(backups, dir).unwrap_or_default();
    let mut warnings = Vec::new();
    for (p, r) in &recorded {
        match on_disk(p, r) {
            OnDisk::AsWritten => {}
            OnDisk::Missing => warnings.push(format!(
                "the recorded backup {} is missing: it was removed by something other than tokenvault",
                p.display()
            )),
            OnDisk::Changed(why) => warnings.push(format!(
                "the recorded backup {} is not the file tokenvault wrote ({why}): check who changed it",
                p.display()
            )),
        }
    }
    let mut foreign: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| !recorded.iter().any(|(r, _)| r == p))
            .filter_map(|p| p.file_name().map(|n| format!("{:?}", n.to_string_lossy())))
            .collect(),
        Err(_) => Vec::new(),
    };
    if !foreign.is_empty() {
        foreign.sort();
        let n = foreign.len();
        let mut list = foreign[..n.min(LISTED)].join(", ");
        if n > LISTED {
            list.push_str(&format!(" and {} more", n - LISTED));
        }
        warnings.push(format!(
            "backup directory {} holds {n} file{} tokenvault did not write ({list}): ignored for scheduling and never deleted; remove {} if not yours",
            dir.display(),
            if n == 1 { "" } else { "s" },
            if n == 1 { "it" } else { "them" },
        ));
    }
    warnings
}

/// The scheduled-backup line of `status` when no scheduler of this process has run yet:
/// the newest recorded backup that is still as written, and the directory's warnings.
pub fn recorded_outcome(backups: &Backups, cfg: &BackupConfig) -> Option<BackupOutcome> {
    let dir = PathBuf::from(&cfg.directory);
    let now = backups.ctx.now();
    let interval = cfg.interval_secs.unwrap_or(DEFAULT_INTERVAL_SECS).max(1) as i64;
    let warnings = survey(backups, &dir);
    match trusted_last(backups, &dir, now) {
        Some((path, rec)) => Some(BackupOutcome {
            at: rec.at,
            ok: true,
            path: Some(path.display().to_string()),
            records: Some(rec.records),
            error: None,
            next_at: Some(rec.at + interval),
            warnings,
        }),
        None if warnings.is_empty() => None,
        None => Some(BackupOutcome {
            at: now,
            ok: false,
            path: None,
            records: None,
            error: Some(
                "no backup tokenvault recorded writing is in the directory (`tokenvault serve` takes them)"
                    .into(),
            ),
            next_at: None,
            warnings,
        }),
    }
}

/// A name in `dir` for a backup taken at `now` that nothing uses yet (looked at with
/// `lstat`, so a dangling link or a planted FIFO counts as used and is left alone).
fn new_name(dir: &Path, now: i64) -> PathBuf {
    let stamp = chrono::DateTime::from_timestamp(now, 0)
        .map(|d| d.format(STAMP).to_string())
        .unwrap_or_else(|| now.to_string());
    let taken = |p: &Path| std::fs::symlink_metadata(p).is_ok();
    let mut path = dir.join(format!("{PREFIX}{stamp}{SUFFIX}"));
    let mut n = 1;
    while taken(&path) {
        path = dir.join(format!("{PREFIX}{stamp}-{n}{SUFFIX}"));
        n += 1;
    }
    path
}

/// Takes one scheduled backup now, records it in the vault and prunes old recorded ones.
/// Blocking. `notes` of the report say what pruning met (missing or changed files).
pub fn take_scheduled_backup(backups: &Backups, cfg: &BackupConfig) -> Result<BackupReport> {
    if cfg.recipients.is_empty() {
        return Err(Error::Config(
            "[backup] recipients is empty: scheduled backups are encrypted to age recipients (age1…, from `age-keygen`)".into(),
        ));
    }
    let dir = PathBuf::from(&cfg.directory);
    // Checked before creating (a planted link is not followed) and after (the result).
    check_directory(&dir)?;
    crate::vault::create_private_dir(&dir)?;
    check_directory(&dir)?;
    let now = backups.ctx.now();
    let path = new_name(&dir, now);
    let (mut report, sha256) = export_file(
        backups.ctx.vault(),
        &backups.ctx.config().providers,
        &path,
        &EncryptTo::Recipients(cfg.recipients.clone()),
        &ExportOptions {
            tenant: None,
            include_audit: cfg.include_audit.unwrap_or(false),
            progress: false,
        },
        now,
    )?;
    let record = BackupFileRecord {
        at: report.created_at,
        sha256: hex::encode(sha256),
        bytes: report.bytes,
        records: report.records,
    };
    let recorded = backups.ctx.vault().write().and_then(|tx| {
        tx.put_backup_file(&path.display().to_string(), &record)?;
        tx.commit()
    });
    if let Err(e) = recorded {
        return Err(Error::Storage(format!(
            "the backup {} was written but could not be recorded in the vault ({e}); it will be reported as a file tokenvault did not write",
            path.display()
        )));
    }
    report.notes = prune(
        backups,
        &dir,
        cfg.retention.unwrap_or(DEFAULT_RETENTION).max(1),
    )?;
    Ok(report)
}

/// Keeps the `keep` newest recorded backups in `dir` that are still as written, deletes
/// older recorded ones whose content still has the recorded SHA-256, and forgets records
/// of files that went missing or changed (a changed file is left in place). Files the vault
/// did not record are never looked at. Returns notes for the operator.
fn prune(backups: &Backups, dir: &Path, keep: usize) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    let mut forget = Vec::new();
    let mut present = Vec::new();
    for (p, r) in recorded_in(backups, dir)? {
        match on_disk(&p, &r) {
            OnDisk::AsWritten => present.push((p, r)),
            OnDisk::Missing => {
                notes.push(format!(
                    "the recorded backup {} was missing (removed by something other than tokenvault); its record is dropped",
                    p.display()
                ));
                forget.push(p);
            }
            OnDisk::Changed(why) => {
                notes.push(format!(
                    "the recorded backup {} is not the file tokenvault wrote ({why}): left in place, no longer counted as a backup",
                    p.display()
                ));
                forget.push(p);
            }
        }
    }
    let excess = present.len().saturating_sub(keep);
    for (p, r) in present.into_iter().take(excess) {
        match same_content(&p, &r) {
            Ok(true) => match std::fs::remove_file(&p) {
                Ok(()) => forget.push(p),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => forget.push(p),
                Err(e) => {
                    tracing::warn!(file = %p.display(), error = %e, "cannot remove an old backup; will try again after the next backup");
                }
            },
            Ok(false) => {
                notes.push(format!(
                    "the recorded backup {} is not the file tokenvault wrote (its content changed): left in place, no longer counted as a backup",
                    p.display()
                ));
                forget.push(p);
            }
            Err(e) => {
                tracing::warn!(file = %p.display(), error = %e, "cannot read an old backup to check it before removing it; will try again after the next backup");
            }
        }
    }
    if !forget.is_empty() {
        let tx = backups.ctx.vault().write()?;
        for p in &forget {
            tx.remove_backup_file(&p.display().to_string())?;
        }
        tx.commit()?;
    }
    Ok(notes)
}

/// Runs scheduled backups until `shutdown` completes. Reads `backups.ctx.config().backup` on
/// every round, so a SIGHUP reload takes effect within a minute; does nothing while the
/// section is absent. Call it from `serve` as
/// `tokio::spawn(tokenvault::backup::run_scheduled_backups(backups.clone(), shutdown))`.
pub async fn run_scheduled_backups(backups: Backups, shutdown: impl Future<Output = ()> + Send) {
    tokio::pin!(shutdown);
    let mut failed_at: Option<i64> = None;
    loop {
        let cfg = backups.ctx.config().backup.clone();
        let now = backups.ctx.now();
        let due = cfg.as_ref().map(|c| {
            let interval = c.interval_secs.unwrap_or(DEFAULT_INTERVAL_SECS).max(1) as i64;
            let last = trusted_last(&backups, Path::new(&c.directory), now).map(|(_, r)| r.at);
            match failed_at {
                // After a failure the backup was due already: try again after the retry
                // delay, not at once (a broken directory must not fail every second).
                Some(f) => f + interval.min(RETRY_SECS as i64),
                None => last.map(|l| l + interval).unwrap_or(now),
            }
        });
        let wait = match due {
            None => 60,
            Some(d) if d > now => (d - now).min(60) as u64,
            Some(_) => 0,
        };
        if wait > 0 {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(std::time::Duration::from_secs(wait)) => {}
            }
            continue;
        }
        let Some(cfg) = cfg else { continue };
        let e2 = backups.clone();
        let c2 = cfg.clone();
        let mut run = tokio::task::spawn_blocking(move || take_scheduled_backup(&e2, &c2));
        let result = tokio::select! {
            // Shutdown waits up to `SHUTDOWN_GRACE` for a backup in progress, so a stop
            // does not leave a half-written temp file behind; one that takes longer goes
            // on on its blocking thread while the process lives, else its temp file
            // (`.tokenvault-….age.*.tmp`) is left; the last complete backup is intact.
            _ = &mut shutdown => {
                let _ = tokio::time::timeout(SHUTDOWN_GRACE, &mut run).await;
                return;
            }
            r = &mut run => r,
        };
        let at = backups.ctx.now();
        let interval = cfg.interval_secs.unwrap_or(DEFAULT_INTERVAL_SECS).max(1) as i64;
        let mut outcome = match result {
            Ok(Ok(report)) => {
                failed_at = None;
                tracing::info!(file = %report.path, records = report.records, "scheduled backup written");
                BackupOutcome {
                    at: report.created_at,
                    ok: true,
                    path: Some(report.path),
                    records: Some(report.records),
                    error: None,
                    next_at: Some(report.created_at + interval),
                    warnings: report.notes,
                }
            }
            Ok(Err(e)) => {
                failed_at = Some(at);
                tracing::error!(error = %e, "scheduled backup failed");
                BackupOutcome {
                    at,
                    ok: false,
                    path: None,
                    records: None,
                    error: Some(e.to_string()),
                    next_at: Some(at + interval.min(RETRY_SECS as i64)),
                    warnings: Vec::new(),
                }
            }
            Err(join) => {
                failed_at = Some(at);
                tracing::error!("scheduled backup task failed: {join}");
                BackupOutcome {
                    at,
                    ok: false,
                    path: None,
                    records: None,
                    error: Some("the backup task failed unexpectedly".into()),
                    next_at: Some(at + interval.min(RETRY_SECS as i64)),
                    warnings: Vec::new(),
                }
            }
        };
        let e2 = backups.clone();
        let dir = PathBuf::from(&cfg.directory);
        if let Ok(more) = tokio::task::spawn_blocking(move || survey(&e2, &dir)).await {
            outcome.warnings.extend(more);
        }
        for w in &outcome.warnings {
            tracing::warn!("scheduled backups: {w}");
        }
        backups.ctx.emit(Event::new(
            at,
            EventKind::Backup {
                tenant: None,
                op: "scheduled".into(),
                ok: outcome.ok,
                path: outcome.path.clone(),
                message: match &outcome.records {
                    Some(n) => format!("{n} records"),
                    None => "failed: see `tokenvault status`".into(),
                },
            },
        ));
        backups.set_last_backup(outcome);
    }
}
