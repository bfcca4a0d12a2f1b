//! The `doctor` command (SPEC §3): checks the vault file (`vault::doctor`: redb's integrity
//! check, every record decoded, every sealed value opened), prints what is damaged, and with
//! `--salvage FILE --recipient R…` exports every record that still opens into an ordinary
//! age backup (`backup::export`), which `backup restore` reads into a new vault.
//!
//! Owns: the salvage step and the doctor's report for people and as JSON. Must not: write
//! the vault file (every view of it is a memory view), go through the daemon (it needs the
//! file itself: a running daemon holds it, so doctor asks to stop it), or print a secret.
//!
//! Exit: 0 when nothing is damaged, 1 when something is (with or without a salvage).

use crate::backup::{EncryptTo, ExportOptions};
use crate::config::Config;
use crate::contract::BackupReport;
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::vault::doctor::{self, Report};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What `doctor` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Output {
    #[serde(flatten)]
    pub report: Report,
    /// The salvage backup written, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub salvage: Option<BackupReport>,
}

/// Where a salvage goes.
#[derive(Debug, Clone)]
pub struct Salvage {
    pub file: PathBuf,
    pub recipients: Vec<String>,
}

fn same_file(a: &Path, b: &Path) -> bool {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    canon(a) == canon(b)
}

/// Checks the vault at `path` and, with `salvage`, writes every record that still opens to
/// an age backup. Never writes the vault file.
pub fn run(
    path: &Path,
    passphrase: &Secret,
    config: &Config,
    salvage: Option<&Salvage>,
    progress: bool,
    now: i64,
) -> Result<Output> {
    if let Some(s) = salvage {
        if s.recipients.is_empty() {
            return Err(Error::invalid(
                "--salvage",
                "needs at least one --recipient age1… to encrypt the backup to",
            ));
        }
        if same_file(&s.file, path) {
            return Err(Error::invalid(
                "--salvage",
                "names the vault file itself; write the salvage to another file",
            ));
        }
    }
    let outcome = crate::backup::backups::blocking(|| {
        doctor::check(path, passphrase, salvage.is_some(), now)
    })?;
    let mut out = Output {
        report: outcome.report,
        salvage: None,
    };
    if let Some(s) = salvage {
        let Some(vault) = outcome.salvaged else {
            // Nothing opens: the report says why, and no backup is written.
            return Ok(out);
        };
        let file = std::path::absolute(&s.file)
            .map_err(|e| Error::io(format!("cannot resolve {}", s.file.display()), e))?;
        let opts = ExportOptions {
            tenant: None,
            include_audit: true,
            progress,
        };
        let to = EncryptTo::Recipients(s.recipients.clone());
        let report = crate::backup::backups::blocking(|| {
            crate::backup::export(&vault, &config.providers, &file, &to, &opts, now)
        })?;
        out.salvage = Some(report);
    }
    Ok(out)
}

/// The process exit code for `out` (SPEC §3: 0 ok, 1 other).
pub fn exit_code(out: &Output) -> i32 {
    if out.report.healthy { 0 } else { 1 }
}

/// Prints `out` for people, or as one JSON document.
pub fn print(w: &mut impl Write, out: &Output, json: bool) -> std::io::Result<()> {
    if json {
        serde_json::to_writer_pretty(&mut *w, out).map_err(std::io::Error::other)?;
        return writeln!(w);
    }
    let r = &out.report;
    let check = |c: &doctor::Check| match (&c.ok, &c.detail) {
        (true, _) => "ok".to_owned(),
        (false, Some(d)) => format!("FAILED: {d}"),
        (false, None) => "FAILED".to_owned(),
    };
    writeln!(w, "vault:         {}", r.vault)?;
    writeln!(w, "storage check: {}", check(&r.storage_check))?;
    writeln!(w, "read as:       {}", r.read_as)?;
    writeln!(w, "header:        {}", check(&r.header))?;
    if !r.tables.is_empty() {
        writeln!(w, "{:<14} {:>8} {:>8}  walked", "table", "whole", "damaged")?;
        for t in &r.tables {
            writeln!(
                w,
                "{:<14} {:>8} {:>8}  {}",
                t.table,
                t.whole,
                t.damaged,
                if t.complete { "all" } else { "partly" }
            )?;
        }
    }
    if !r.damaged.is_empty() {
        writeln!(w, "damaged:")?;
        for d in &r.damaged {
            match &d.key {
                Some(k) => writeln!(w, "  {}/{k}: {}", d.table, d.problem)?,
                None => writeln!(w, "  {}: {}", d.table, d.problem)?,
            }
        }
    }
    for n in &r.notes {
        writeln!(w, "note: {n}")?;
    }
    if let Some(s) = &out.salvage {
        writeln!(
            w,
            "salvage: wrote {} ({} records, {} bytes, sha256 {})",
            s.path, s.records, s.bytes, s.sha256
        )?;
        let counts: Vec<String> = s
            .counts
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(t, n)| format!("{t} {n}"))
            .collect();
        writeln!(w, "salvaged: {}", counts.join(", "))?;
        writeln!(
            w,
            "to use it: `tokenvault init` a new vault (another --vault path), then `tokenvault backup restore {} --identity KEYFILE` into it",
            s.path
        )?;
    }
    if r.healthy {
        writeln!(w, "result: healthy, nothing is damaged")
    } else if !r.header.ok {
        writeln!(
            w,
            "result: DAMAGED; no record can be opened without the header: restore the vault from a backup"
        )
    } else if out.salvage.is_some() {
        writeln!(
            w,
            "result: DAMAGED; every record that still opens is in the salvage backup"
        )
    } else {
        writeln!(
            w,
            "result: DAMAGED; save every record that still opens with `tokenvault doctor --salvage FILE --recipient AGE_RECIPIENT`, or restore the vault from a backup"
        )
    }
}
