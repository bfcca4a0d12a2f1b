//! The checks of `tokenvault doctor`: is the file whole (redb's integrity check), does every
//! record decode, does every sealed value open under the passphrase; and the salvage of
//! whatever still opens into a vault in memory, for a backup.
//!
//! Owns: reading a vault file that may be damaged without ever writing it, and deciding
//! which records are whole. Must not: write the vault file (every view here is a memory
//! view, see `overlay`), write the backup (the caller exports the salvaged vault with the
//! ordinary backup writer), or print.
//!
//! How a damaged file is read. The integrity check runs first; when it passes, the records
//! are read from that checked view. When it fails, the file is opened again (in memory)
//! without the check, trusting the allocator state redb recorded at its last clean close
//! (also when a process died with the file open and left it flagged for recovery). Every
//! table is then walked forwards until the first failure and backwards from its end to the
//! same point, each walk under `catch_unwind` on a view that is reopened after a panic:
//! one bad page costs the records on it, not the table, and a damaged table costs only
//! that table. Keys the due index names but the walk could not read are reported as
//! unreadable connections. A file whose recorded state is gone (a crash after its last
//! commit) and whose checksums fail cannot be read by redb at all: doctor says so.
//!
//! What can be trusted: a sealed value only opens under its table, record key and term, so
//! a token that opens is the token that was stored. Clear metadata (status, times, names)
//! is not authenticated; read from a file that failed the integrity check it is reported as
//! read.

use super::crypto::{Kek, Keyring};
use super::records::*;
use super::schema::*;
use super::{Access, Vault, catching, corrupt, header_of, open_checked, overlay};
use crate::error::{Error, Result};
use crate::secret::Secret;
use redb::{Database, ReadableDatabase};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What `doctor` found. Holds names of records and tables, never a secret.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub vault: String,
    /// redb's integrity check of every committed page.
    pub storage_check: Check,
    /// How the records were read: `checked` (the file passed the check), `unchecked`
    /// (it did not; read as redb recorded it), `unchecked, crash flag ignored`, or `none`.
    pub read_as: String,
    /// The header (format version, KDF parameters, wrapped keyring) read and opened.
    pub header: Check,
    /// Per table: records that are whole, records that are damaged, and whether the walk
    /// reached every page.
    pub tables: Vec<TableReport>,
    /// Every damaged record found (table, key where known, what is wrong).
    pub damaged: Vec<Damaged>,
    /// What else an operator should know.
    pub notes: Vec<String>,
    /// Nothing damaged.
    pub healthy: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Check {
    fn ok() -> Check {
        Check {
            ok: true,
            detail: None,
        }
    }

    fn failed(detail: impl Into<String>) -> Check {
        Check {
            ok: false,
            detail: Some(detail.into()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    pub table: String,
    pub whole: u64,
    pub damaged: u64,
    /// False when part of the table could not be walked (a damaged page).
    pub complete: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Damaged {
    pub table: String,
    /// The record's key; `None` when the damage hides it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub problem: String,
}

/// The outcome of `check`: the report, and with `salvage` a vault in memory holding every
/// record that is whole (under the same keyring, so the backup it exports restores like
/// one of the original).
#[derive(Debug)]
pub struct Outcome {
    pub report: Report,
    pub salvaged: Option<Vault>,
}

/// How a view of the file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// redb's integrity check passed.
    Checked,
    /// Without the check: redb's recorded state trusted.
    Unchecked,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Checked => "checked",
            Kind::Unchecked => "unchecked",
        }
    }
}

/// A memory view of the file, reopened after a panic left it unusable.
struct View<'a> {
    path: &'a Path,
    kind: Kind,
    db: Option<Database>,
}

fn open_view(path: &Path, kind: Kind) -> Result<Database> {
    match kind {
        Kind::Checked => open_checked(path, Access::ReadOnly).map(|(db, _)| db),
        Kind::Unchecked => super::guard_open(path, || {
            let (file, locks) = super::file_backend(path, Access::ReadOnly)?;
            let (view, _control) = overlay::Overlay::new(Some(file), overlay::Mode::Memory, locks)
                .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
            redb::Builder::new()
                .create_with_backend(view)
                .map_err(|e| super::map_db_error(path, e))
        }),
    }
}

impl View<'_> {
    /// Runs `f` on the view under `catch_unwind`. A panic drops the view (reopened on the
    /// next call) and is reported like an error.
    fn attempt<T>(&mut self, f: impl FnOnce(&Database) -> Result<T>) -> Result<T> {
        if self.db.is_none() {
            self.db = Some(open_view(self.path, self.kind)?);
        }
        let Some(db) = self.db.as_ref() else {
            return Err(corrupt(self.path, "no view"));
        };
        match catching(|| f(db)) {
            Ok(r) => r,
            Err(()) => {
                if let Some(db) = self.db.take() {
                    // Dropping a view redb panicked in may panic again; it writes nothing.
                    let _ = catching(move || drop(db));
                }
                Err(corrupt(self.path, super::PANICKED))
            }
        }
    }
}

/// Rows of one table, read as far as they can be.
struct Scan<T> {
    rows: Vec<(String, T)>,
    complete: bool,
    failure: Option<String>,
}

fn reason(e: &Error) -> String {
    match e {
        Error::Corrupt { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// Walks `def` forwards, and when that stops early, backwards from the end to where the
/// forward walk stopped. `row` turns a raw entry into (key as text, value).
fn scan<K, V, T>(
    view: &mut View<'_>,
    def: redb::TableDefinition<K, V>,
    row: impl Fn(&redb::AccessGuard<'_, K>, &redb::AccessGuard<'_, V>) -> (String, T),
) -> Scan<T>
where
    K: redb::Key + 'static,
    V: redb::Value + 'static,
{
    use redb::ReadableTable;
    let mut forward = Vec::new();
    let first = view.attempt(|db| {
        let txn = db.begin_read()?;
        let t = txn.open_table(def)?;
        for e in t.iter()? {
            let (k, v) = e?;
            forward.push(row(&k, &v));
        }
        Ok(())
    });
    let Err(first) = first else {
        return Scan {
            rows: forward,
            complete: true,
            failure: None,
        };
    };
    let seen: BTreeSet<String> = forward.iter().map(|(k, _)| k.clone()).collect();
    let mut backward = Vec::new();
    let _ = view.attempt(|db| {
        let txn = db.begin_read()?;
        let t = txn.open_table(def)?;
        for e in t.iter()?.rev() {
            let (k, v) = e?;
            let r = row(&k, &v);
            if seen.contains(&r.0) {
                break;
            }
            backward.push(r);
        }
        Ok(())
    });
    backward.reverse();
    forward.extend(backward);
    Scan {
        rows: forward,
        complete: false,
        failure: Some(reason(&first)),
    }
}

fn str_rows(
    view: &mut View<'_>,
    def: redb::TableDefinition<&'static str, &'static [u8]>,
) -> Scan<Vec<u8>> {
    scan(view, def, |k, v| (k.value().to_owned(), v.value().to_vec()))
}

/// Collects the report while the tables are walked.
struct Findings {
    tables: Vec<TableReport>,
    damaged: Vec<Damaged>,
    notes: Vec<String>,
}

impl Findings {
    fn table<T>(&mut self, name: &str, scan: &Scan<T>, whole: u64, damaged: u64) {
        if let Some(f) = &scan.failure {
            self.damaged.push(Damaged {
                table: name.to_owned(),
                key: None,
                problem: format!(
                    "part of the table could not be read ({f}); its records on the damaged page are lost"
                ),
            });
        }
        self.tables.push(TableReport {
            table: name.to_owned(),
            whole,
            damaged,
            complete: scan.complete,
        });
    }

    fn record(&mut self, table: &str, key: &str, problem: &str) {
        self.damaged.push(Damaged {
            table: table.to_owned(),
            key: Some(key.to_owned()),
            problem: problem.to_owned(),
        });
    }
}

const UNDECODABLE: &str = "its stored bytes do not decode (corrupted)";
const UNSEALED: &str =
    "its sealed value does not open (tampered, corrupted, or moved from another record)";

/// The records that are whole, ready to be copied into the salvage vault.
#[derive(Default)]
struct Whole {
    tenants: Vec<(String, TenantRecord)>,
    tenant_keys: Vec<(String, TenantKeyRecord)>,
    grants: Vec<(u32, String)>,
    clients: Vec<(String, String, ClientRecord)>,
    apple_keys: Vec<(String, AppleKeyRecord)>,
    connections: Vec<(String, ConnectionRecord)>,
    audit: Vec<AuditRecord>,
}

/// Checks the vault at `path` with `passphrase` and, with `salvage`, copies every whole
/// record into a vault in memory. Writes nothing anywhere.
///
/// Errors (rather than a report) for what is not damage: no file, a daemon holding it,
/// a wrong passphrase on a file that passed the integrity check.
pub fn check(path: &Path, passphrase: &Secret, salvage: bool, now: i64) -> Result<Outcome> {
    if !path.exists() {
        return Err(Error::NoVault {
            path: path.to_owned(),
        });
    }
    let mut report = Report {
        vault: path.display().to_string(),
        storage_check: Check::ok(),
        read_as: "none".into(),
        header: Check::ok(),
        tables: Vec::new(),
        damaged: Vec::new(),
        notes: Vec::new(),
        healthy: false,
    };
    let mut view = match open_checked(path, Access::ReadOnly) {
        Ok((db, _)) => View {
            path,
            kind: Kind::Checked,
            db: Some(db),
        },
        Err(Error::Corrupt { reason: why, .. }) => {
            report.storage_check = Check::failed(why);
            match open_view(path, Kind::Unchecked) {
                Ok(db) => View {
                    path,
                    kind: Kind::Unchecked,
                    db: Some(db),
                },
                Err(e @ Error::VaultInUse { .. }) => return Err(e),
                Err(e) => {
                    report.header =
                        Check::failed("not read: the storage engine cannot open the file at all");
                    report.notes.push(format!(
                        "no record can be read ({}); restore the vault from a backup",
                        reason(&e)
                    ));
                    return Ok(Outcome {
                        report,
                        salvaged: None,
                    });
                }
            }
        }
        Err(e) => return Err(e),
    };
    report.read_as = view.kind.label().into();
    if view.kind != Kind::Checked {
        report.notes.push(
            "the file failed the storage engine's integrity check: records were read without it; every token reported whole opened under its own record key, but clear metadata (status, times) is as read".into(),
        );
    }

    // The header and the keyring.
    let (format, header) = match view.attempt(|db| header_of(path, db)) {
        Ok(h) => h,
        Err(e @ Error::TooNew { .. }) => return Err(e),
        Err(e) => {
            report.header = Check::failed(reason(&e));
            report
                .notes
                .push("without the header no sealed record can be opened; restore the vault from a backup".into());
            return Ok(Outcome {
                report,
                salvaged: None,
            });
        }
    };
    let kek: Kek = header.kdf.derive(passphrase.expose().as_bytes())?;
    let Some(ring) = Keyring::unwrap(&kek, &header.keyring, format) else {
        if view.kind == Kind::Checked {
            return Err(Error::WrongPassphrase {
                path: path.to_owned(),
            });
        }
        report.header = Check::failed(
            "the keyring does not open: a wrong passphrase, or the header is damaged",
        );
        return Ok(Outcome {
            report,
            salvaged: None,
        });
    };

    let mut f = Findings {
        tables: Vec::new(),
        damaged: Vec::new(),
        notes: Vec::new(),
    };
    let mut whole = Whole::default();

    // tenants
    let s = str_rows(&mut view, TENANTS);
    let mut bad = 0;
    for (k, v) in &s.rows {
        match rmp_serde::from_slice::<TenantRecord>(v) {
            Ok(r) => whole.tenants.push((k.clone(), r)),
            Err(_) => {
                bad += 1;
                f.record("tenants", k, UNDECODABLE);
            }
        }
    }
    f.table("tenants", &s, whole.tenants.len() as u64, bad);

    // tenant keys (hashes, not secrets)
    let s = str_rows(&mut view, TENANT_KEYS);
    let mut bad = 0;
    for (k, v) in &s.rows {
        match rmp_serde::from_slice::<TenantKeyRecord>(v) {
            Ok(r) => whole.tenant_keys.push((k.clone(), r)),
            Err(_) => {
                bad += 1;
                f.record("tenant_keys", k, UNDECODABLE);
            }
        }
    }
    f.table("tenant_keys", &s, whole.tenant_keys.len() as u64, bad);

    // grants
    let s = scan(&mut view, GRANTS, |k, v| {
        (k.value().to_string(), v.value().to_owned())
    });
    for (k, t) in &s.rows {
        if let Ok(uid) = k.parse::<u32>() {
            whole.grants.push((uid, t.clone()));
        }
    }
    f.table("grants", &s, whole.grants.len() as u64, 0);

    // clients (client secrets sealed)
    let s = str_rows(&mut view, CLIENTS);
    let mut bad = 0;
    for (k, v) in &s.rows {
        let Ok(rec) = rmp_serde::from_slice::<ClientRecord>(v) else {
            bad += 1;
            f.record("clients", k, UNDECODABLE);
            continue;
        };
        if let Some(sealed) = &rec.secret
            && ring.open(names::CLIENTS, k, sealed).is_err()
        {
            bad += 1;
            f.record("clients", k, UNSEALED);
            continue;
        }
        let (t, p) = k.split_once('/').unwrap_or((k.as_str(), ""));
        whole.clients.push((t.to_owned(), p.to_owned(), rec));
    }
    f.table("clients", &s, whole.clients.len() as u64, bad);

    // Apple signing keys (private keys sealed)
    let s = str_rows(&mut view, APPLE_KEYS);
    let mut bad = 0;
    for (k, v) in &s.rows {
        let Ok(mut rec) = rmp_serde::from_slice::<AppleKeyRecord>(v) else {
            bad += 1;
            f.record("apple_keys", k, UNDECODABLE);
            continue;
        };
        if ring.open(names::APPLE_KEYS, k, &rec.private_key).is_err() {
            bad += 1;
            f.record("apple_keys", k, UNSEALED);
            continue;
        }
        if let Some(cached) = &rec.cached_token
            && ring.open(names::APPLE_KEYS, k, cached).is_err()
        {
            // Only a cache: the key is whole, the next `apple token` signs a new one.
            f.notes.push(format!(
                "apple_keys/{k}: its cached developer token does not open; it is dropped (a new one is signed on demand)"
            ));
            rec.cached_token = None;
        }
        let tenant = k.split_once('/').map_or(k.as_str(), |(t, _)| t);
        whole.apple_keys.push((tenant.to_owned(), rec));
    }
    f.table("apple_keys", &s, whole.apple_keys.len() as u64, bad);

    // connections (tokens sealed)
    let s = str_rows(&mut view, CONNECTIONS);
    let mut bad = 0;
    let mut read_keys = BTreeSet::new();
    for (k, v) in &s.rows {
        read_keys.insert(k.clone());
        let Ok(rec) = rmp_serde::from_slice::<ConnectionRecord>(v) else {
            bad += 1;
            f.record("connections", k, UNDECODABLE);
            continue;
        };
        let opened = ring
            .open(names::CONNECTIONS, k, &rec.secrets)
            .ok()
            .and_then(|plain| rmp_serde::from_slice::<TokenSecrets>(&plain).ok());
        if opened.is_none() {
            bad += 1;
            f.record("connections", k, UNSEALED);
            continue;
        }
        whole.connections.push((k.clone(), rec));
    }
    // Connections the due index names but the walk could not read.
    let due = scan(&mut view, DUE, |k, _| (k.value().1.to_owned(), ()));
    let mut unreadable = BTreeSet::new();
    for (k, ()) in &due.rows {
        if !read_keys.contains(k) && !s.complete {
            unreadable.insert(k.clone());
        }
    }
    for k in &unreadable {
        bad += 1;
        f.record(
            "connections",
            k,
            "on a damaged page: named by the due index but unreadable",
        );
    }
    f.table("connections", &s, whole.connections.len() as u64, bad);
    f.table("due", &due, due.rows.len() as u64, 0);

    // audit
    let s = scan(&mut view, AUDIT, |k, v| {
        (k.value().to_string(), v.value().to_vec())
    });
    let mut bad = 0;
    for (k, v) in &s.rows {
        match rmp_serde::from_slice::<AuditRecord>(v) {
            Ok(r) => whole.audit.push(r),
            Err(_) => {
                bad += 1;
                f.record("audit", k, UNDECODABLE);
            }
        }
    }
    f.table("audit", &s, whole.audit.len() as u64, bad);
    drop(view);

    report.healthy = report.storage_check.ok && f.damaged.is_empty();
    report.tables = f.tables;
    report.damaged = f.damaged;
    report.notes.extend(f.notes);

    let salvaged = if salvage {
        let dest_ring = Keyring::unwrap(&kek, &header.keyring, format)
            .ok_or_else(|| Error::Internal("the keyring opened once and not twice".into()))?;
        let dest = Vault::in_memory(path, dest_ring, kek, header)?;
        copy_into(&dest, whole, now, &mut report.notes)?;
        Some(dest)
    } else {
        None
    };
    Ok(Outcome { report, salvaged })
}

/// Writes every whole record into `dest` in one transaction. A record whose tenant record
/// was lost gets a new tenant record, so the backup restores.
fn copy_into(dest: &Vault, whole: Whole, now: i64, notes: &mut Vec<String>) -> Result<()> {
    let tx = dest.write()?;
    let mut tenants: BTreeMap<String, TenantRecord> = whole.tenants.into_iter().collect();
    let owners = whole
        .tenant_keys
        .iter()
        .map(|(_, r)| r.tenant.clone())
        .chain(whole.grants.iter().map(|(_, t)| t.clone()))
        .chain(whole.clients.iter().map(|(t, _, _)| t.clone()))
        .chain(whole.apple_keys.iter().map(|(t, _)| t.clone()))
        .chain(
            whole
                .connections
                .iter()
                .map(|(k, _)| k.split('/').next().unwrap_or_default().to_owned()),
        )
        .collect::<BTreeSet<_>>();
    for t in owners {
        if !tenants.contains_key(&t) && crate::names::validate_tenant(&t).is_ok() {
            notes.push(format!(
                "tenant {t}: its own record was lost; the salvage re-creates it for the records it owns"
            ));
            tenants.insert(t, TenantRecord { created_at: now });
        }
    }
    for (name, rec) in &tenants {
        tx.put_tenant(name, rec)?;
    }
    for (id, rec) in &whole.tenant_keys {
        tx.put_tenant_key(id, rec)?;
    }
    for (uid, t) in &whole.grants {
        tx.put_grant(*uid, t)?;
    }
    // Sealed values are copied as they are: the salvage vault has the same keyring.
    for (t, p, rec) in whole.clients {
        tx.put_client(&t, &p, rec, None)?;
    }
    for (t, rec) in whole.apple_keys {
        tx.put_apple_key(&t, rec, None)?;
    }
    for (k, rec) in &whole.connections {
        tx.put_connection(k, rec)?;
    }
    for rec in &whole.audit {
        tx.append_audit(rec)?;
    }
    tx.commit()
}
