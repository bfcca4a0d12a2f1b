//! Scheduled backups from `serve` (SPEC §8, config `[backup]`): every `interval_secs`
//! (default one day) an export of the whole vault to the configured age recipients, as
//! `DIRECTORY/tokenvault-YYYYMMDDTHHMMSSZ.age` (0600, in a 0700 directory, written via a
//! temp file and rename), keeping the `retention` newest (default 7).
//!
//! Owns: timing, file naming, pruning, and the last outcome `status` shows. Must not: hold
//! a passphrase (recipients only), or stop the daemon when a backup fails (the failure is
//! logged, shown in `status`, and retried after at most five minutes).

use super::BackupReport;
use super::export::{EncryptTo, ExportOptions, export};
use crate::config::BackupConfig;
use crate::engine::Engine;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const DEFAULT_INTERVAL_SECS: u64 = 86_400;
pub const DEFAULT_RETENTION: usize = 7;
/// After a failed scheduled backup, the next try comes after at most this long.
pub const RETRY_SECS: u64 = 300;
const PREFIX: &str = "tokenvault-";
const SUFFIX: &str = ".age";
const STAMP: &str = "%Y%m%dT%H%M%SZ";

/// The last scheduled backup, for `status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupOutcome {
    /// When it ran (Unix seconds).
    pub at: i64,
    pub ok: bool,
    pub path: Option<String>,
    /// Records written, when known.
    pub records: Option<u64>,
    /// What went wrong (never a secret).
    pub error: Option<String>,
    /// When the next one is due, when a scheduler runs.
    pub next_at: Option<i64>,
}

/// Backup files in `dir` made by the scheduler, oldest first (names sort by time).
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

fn file_time(p: &Path) -> Option<i64> {
    let name = p.file_name()?.to_str()?;
    let stamp = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    let stamp = stamp.get(..16)?;
    chrono::NaiveDateTime::parse_from_str(stamp, STAMP)
        .ok()
        .map(|d| d.and_utc().timestamp())
}

/// The newest scheduled backup in the configured directory, as an outcome (for `status`
/// when no scheduler runs in this process).
pub fn newest_on_disk(cfg: &BackupConfig) -> Option<BackupOutcome> {
    let newest = scheduled_files(Path::new(&cfg.directory)).pop()?;
    Some(BackupOutcome {
        at: file_time(&newest)?,
        ok: true,
        path: Some(newest.display().to_string()),
        records: None,
        error: None,
        next_at: None,
    })
}

/// Takes one scheduled backup now and prunes old ones. Blocking.
pub fn take_scheduled_backup(engine: &Engine, cfg: &BackupConfig) -> Result<BackupReport> {
    if cfg.recipients.is_empty() {
        return Err(Error::Config(
            "[backup] recipients is empty: scheduled backups are encrypted to age recipients (age1…, from `age-keygen`)".into(),
        ));
    }
    let dir = PathBuf::from(&cfg.directory);
    crate::vault::create_private_dir(&dir)?;
    let now = engine.now();
    let stamp = chrono::DateTime::from_timestamp(now, 0)
        .map(|d| d.format(STAMP).to_string())
        .unwrap_or_else(|| now.to_string());
    let mut path = dir.join(format!("{PREFIX}{stamp}{SUFFIX}"));
    let mut n = 1;
    while path.exists() {
        path = dir.join(format!("{PREFIX}{stamp}-{n}{SUFFIX}"));
        n += 1;
    }
    let report = export(
        engine.vault(),
        &engine.config().providers,
        &path,
        &EncryptTo::Recipients(cfg.recipients.clone()),
        &ExportOptions {
            tenant: None,
            include_audit: cfg.include_audit.unwrap_or(false),
            progress: false,
        },
        now,
    )?;
    prune(&dir, cfg.retention.unwrap_or(DEFAULT_RETENTION).max(1));
    Ok(report)
}

fn prune(dir: &Path, keep: usize) {
    let files = scheduled_files(dir);
    if files.len() <= keep {
        return;
    }
    for old in &files[..files.len() - keep] {
        if let Err(e) = std::fs::remove_file(old) {
            tracing::warn!(file = %old.display(), error = %e, "cannot remove an old backup");
        }
    }
}

/// Runs scheduled backups until `shutdown` completes. Reads `engine.config().backup` on
/// every round, so a SIGHUP reload takes effect within a minute; does nothing while the
/// section is absent. Call it from `serve` as
/// `tokio::spawn(tokenvault::backup::run_scheduled_backups(engine.clone(), shutdown))`.
pub async fn run_scheduled_backups(engine: Arc<Engine>, shutdown: impl Future<Output = ()> + Send) {
    tokio::pin!(shutdown);
    let mut last_ok: Option<i64> = None;
    let mut failed_at: Option<i64> = None;
    loop {
        let cfg = engine.config().backup.clone();
        let now = engine.now();
        let due = cfg.as_ref().map(|c| {
            let interval = c.interval_secs.unwrap_or(DEFAULT_INTERVAL_SECS).max(1) as i64;
            let last = last_ok.or_else(|| newest_on_disk(c).map(|o| o.at));
            let regular = last.map(|l| l + interval).unwrap_or(now);
            match failed_at {
                Some(f) => regular.min(f + interval.min(RETRY_SECS as i64)).max(f + 1),
                None => regular,
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
        let e2 = engine.clone();
        let c2 = cfg.clone();
        let run = tokio::task::spawn_blocking(move || take_scheduled_backup(&e2, &c2));
        let result = tokio::select! {
            // Shutdown does not wait for a backup in progress: it finishes on its blocking
            // thread if the process lives on long enough, else its temp file is left
            // behind (`.tokenvault-….age.*.tmp`); the last complete backup is intact.
            _ = &mut shutdown => return,
            r = run => r,
        };
        let at = engine.now();
        let interval = cfg.interval_secs.unwrap_or(DEFAULT_INTERVAL_SECS).max(1) as i64;
        let outcome = match result {
            Ok(Ok(report)) => {
                last_ok = Some(at);
                failed_at = None;
                tracing::info!(file = %report.path, records = report.records, "scheduled backup written");
                BackupOutcome {
                    at,
                    ok: true,
                    path: Some(report.path),
                    records: Some(report.records),
                    error: None,
                    next_at: Some(at + interval),
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
                }
            }
        };
        engine.set_last_backup(outcome);
    }
}
