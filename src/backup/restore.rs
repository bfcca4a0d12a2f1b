//! `backup verify` and `backup restore`.
//!
//! Restore reads the file twice, streaming both times: pass 1 decrypts and checks the whole
//! stream (age authentication of every chunk, header, order, counts, trailer checksum,
//! names) and learns which tenants it brings; only then is one write transaction opened,
//! conflicts checked, and pass 2 applies the records, re-sealing every secret under the
//! target vault's keys. The transaction commits only if pass 2 saw the same checksum.
//!
//! What a failure leaves behind: every failure of pass 1 (wrong identity or passphrase,
//! truncated or tampered file) and every conflict happens before the write transaction
//! writes anything, so the vault file is byte-for-byte unchanged; a failure in pass 2
//! drops the uncommitted transaction, so no record changes.

use super::Progress;
use super::format::{self, ReadError, ReadOrApply, Record};
use crate::contract::BackupReport;
use crate::contract::progress::ProgressSink;
use crate::error::{Error, Result};
use crate::names::{self, ConnectionId};
use crate::secret::Secret;
use crate::vault::Vault;
use crate::vault::records::AuditRecord;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What opens a backup.
#[derive(Debug, Clone)]
pub enum Unlock {
    /// The text of an age identity file (`AGE-SECRET-KEY-1…` lines).
    Identity(Secret),
    /// The backup passphrase.
    Passphrase(Secret),
}

#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Restore only this tenant from the file.
    pub tenant: Option<String>,
    /// Replace tenants that already exist (all their records) instead of refusing.
    pub replace: bool,
    /// Where to report progress (records checked, then applied).
    pub progress: Option<crate::contract::progress::ProgressSink>,
}

fn invalid(path: &Path, reason: impl Into<String>) -> Error {
    Error::BackupInvalid {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn key_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::BackupKey {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn read_error(path: &Path, e: ReadError) -> Error {
    match e {
        ReadError::Io(io) => invalid(
            path,
            match io.kind() {
                std::io::ErrorKind::UnexpectedEof => "the file ends early (truncated)".to_owned(),
                std::io::ErrorKind::InvalidData => {
                    "the encrypted data failed authentication (truncated, tampered with or corrupted)"
                        .to_owned()
                }
                _ => format!("reading failed: {io}"),
            },
        ),
        ReadError::Format(m) => invalid(path, m),
    }
}

/// Opens `path` and returns the decrypting reader.
fn open(
    path: &Path,
    unlock: &Unlock,
) -> Result<age::stream::StreamReader<std::io::BufReader<std::fs::File>>> {
    let file = std::fs::File::open(path)
        .map_err(|e| Error::io("cannot open the backup file (check the path)", e))?;
    let dec = age::Decryptor::new_buffered(std::io::BufReader::with_capacity(64 * 1024, file))
        .map_err(|e| match e {
            age::DecryptError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
                invalid(path, "the file ends inside the age header (truncated)")
            }
            other => invalid(
                path,
                format!("it is not a readable age file ({other}); is this the right file?"),
            ),
        })?;
    let map = |e: age::DecryptError| match e {
        age::DecryptError::NoMatchingKeys => key_error(
            path,
            "none of the identities given matches its recipients: use the identity file (AGE-SECRET-KEY-1…) whose age1… recipient took the backup",
        ),
        age::DecryptError::DecryptionFailed | age::DecryptError::KeyDecryptionFailed => key_error(
            path,
            "wrong backup passphrase (or a damaged file header): check --backup-passphrase-file",
        ),
        age::DecryptError::InvalidMac | age::DecryptError::InvalidHeader => invalid(
            path,
            "the age header failed its integrity check (tampered or corrupted)",
        ),
        age::DecryptError::ExcessiveWork { required, .. } => invalid(
            path,
            format!(
                "its passphrase work factor (2^{required}) is larger than this machine accepts"
            ),
        ),
        other => invalid(path, other.to_string()),
    };
    match unlock {
        Unlock::Passphrase(p) => {
            if !dec.is_scrypt() {
                return Err(key_error(
                    path,
                    "it is encrypted to age recipients, not a passphrase: use --identity FILE",
                ));
            }
            let id =
                age::scrypt::Identity::new(age::secrecy::SecretString::from(p.expose().to_owned()));
            dec.decrypt(std::iter::once(&id as &dyn age::Identity))
                .map_err(map)
        }
        Unlock::Identity(text) => {
            if dec.is_scrypt() {
                return Err(key_error(
                    path,
                    "it is encrypted with a passphrase: use --backup-passphrase-file FILE",
                ));
            }
            let ids = age::IdentityFile::from_buffer(text.expose().as_bytes())
                .and_then(|f| f.into_identities().map_err(std::io::Error::other))
                .map_err(|_| {
                    Error::invalid(
                        "age identity",
                        "the identity file holds no readable age identity (AGE-SECRET-KEY-1… lines)",
                    )
                })?;
            if ids.is_empty() {
                return Err(Error::invalid(
                    "age identity",
                    "the identity file holds no identity",
                ));
            }
            dec.decrypt(ids.iter().map(|i| i.as_ref() as &dyn age::Identity))
                .map_err(map)
        }
    }
}

/// What pass 1 learns.
#[derive(Debug, Default)]
struct Plan {
    header: Option<format::Header>,
    tenants: BTreeSet<String>,
    grants: Vec<(u32, String)>,
    tenant_keys: Vec<(String, String)>,
    providers: Vec<String>,
    counts: BTreeMap<String, u64>,
    /// Earliest audit record to restore, to skip ones the target already has.
    audit_from: Option<i64>,
}

/// Checks one record for sense beyond its shape: names valid, every record belongs to a
/// tenant the file carries (and to the header's tenant filter).
///
/// Messages name a tenant only once it passed validation; anything else from the file is
/// described, not quoted (a damaged or hostile file must not put its bytes into errors).
fn check(h: &format::Header, tenants: &BTreeSet<String>, rec: &Record) -> Result<(), String> {
    let owner = |t: &str| -> Result<(), String> {
        if tenants.contains(t) {
            Ok(())
        } else if names::validate_tenant(t).is_ok() {
            Err(format!(
                "a record of tenant {t}, which the file does not carry"
            ))
        } else {
            Err("a record of a tenant with an invalid name".into())
        }
    };
    match rec {
        Record::Tenant { name, .. } => {
            names::validate_tenant(name)
                .map_err(|_| "a tenant record with an invalid name".to_owned())?;
            if let Some(t) = h.tenant.as_deref().filter(|t| t != name) {
                return Err(match names::validate_tenant(t) {
                    Ok(()) => format!("tenant {name} in a backup of tenant {t}"),
                    Err(_) => format!("tenant {name} in a backup of another tenant"),
                });
            }
            Ok(())
        }
        Record::TenantKey { record, .. } => owner(&record.tenant),
        Record::Grant { tenant, .. } => owner(tenant),
        Record::Client {
            tenant, provider, ..
        } => {
            names::validate_provider(provider)
                .map_err(|_| "a client record with an invalid provider name".to_owned())?;
            owner(tenant)
        }
        Record::AppleKey { tenant, .. } => owner(tenant),
        Record::Connection { key, .. } => {
            let id = ConnectionId::parse(key)
                .map_err(|_| "a connection record with an invalid name".to_owned())?;
            if id.key() != *key {
                return Err("a connection record whose name is not in canonical form".into());
            }
            owner(&id.tenant)
        }
        Record::Providers(_) | Record::Audit(_) | Record::Header(_) | Record::Trailer(_) => Ok(()),
    }
}

/// The tenant a record belongs to (for `--tenant`), `None` for records of no tenant.
fn record_tenant(rec: &Record) -> Option<&str> {
    match rec {
        Record::Tenant { name, .. } => Some(name),
        Record::TenantKey { record, .. } => Some(&record.tenant),
        Record::Grant { tenant, .. }
        | Record::Client { tenant, .. }
        | Record::AppleKey { tenant, .. } => Some(tenant),
        Record::Connection { key, .. } => key.split('/').next(),
        Record::Audit(a) => a.tenant.as_deref(),
        Record::Providers(_) | Record::Header(_) | Record::Trailer(_) => None,
    }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Pass 1: reads and checks everything. `only` limits what the plan collects.
fn plan(
    path: &Path,
    unlock: &Unlock,
    only: Option<&str>,
    progress: Option<&ProgressSink>,
) -> Result<(Plan, format::Trailer)> {
    let reader = open(path, unlock)?;
    let mut p = Plan::default();
    let mut bar: Option<Progress> = None;
    let result = format::read_stream(reader, |h, rec| {
        let bar =
            bar.get_or_insert_with(|| Progress::new(progress, h.counts.values().sum(), "verify"));
        bar.inc();
        if p.header.is_none() {
            p.header = Some(h.clone());
        }
        check(h, &p.tenants, &rec)?;
        if let Some(t) = rec.table() {
            *p.counts.entry(t.to_owned()).or_default() += 1;
        }
        if let Record::Providers(map) = &rec {
            p.providers = map.keys().cloned().collect();
        }
        let wanted = only.is_none() || record_tenant(&rec) == only;
        match rec {
            Record::Tenant { name, .. } => {
                p.tenants.insert(name);
            }
            Record::Grant { uid, tenant } if wanted => p.grants.push((uid, tenant)),
            Record::TenantKey { id, record } if wanted => p.tenant_keys.push((id, record.tenant)),
            Record::Audit(a) if wanted => {
                p.audit_from = Some(p.audit_from.map_or(a.at, |f| f.min(a.at)));
            }
            _ => {}
        }
        Ok::<(), String>(())
    });
    if let Some(b) = &bar {
        b.finish();
    }
    match result {
        Ok((h, t)) => {
            p.header = Some(h);
            Ok((p, t))
        }
        Err(ReadOrApply::Read(e)) => Err(read_error(path, e)),
        Err(ReadOrApply::Apply(m)) => Err(invalid(path, m)),
    }
}

fn report(action: &str, path: &Path, h: &format::Header, t: &format::Trailer) -> BackupReport {
    BackupReport {
        action: action.into(),
        path: path.display().to_string(),
        created_at: h.created_at,
        source_path: h.source_path.clone(),
        source_id: h.source_id.clone(),
        tenant: h.tenant.clone(),
        counts: t.counts.clone(),
        records: t.records,
        bytes: file_len(path),
        sha256: hex::encode(&t.sha256),
        providers: Vec::new(),
        notes: Vec::new(),
    }
}

/// Decrypts and checks the whole file; writes nothing.
pub fn verify(
    path: &Path,
    unlock: &Unlock,
    progress: Option<&ProgressSink>,
) -> Result<BackupReport> {
    let (p, t) = plan(path, unlock, None, progress)?;
    let h = p
        .header
        .ok_or_else(|| Error::Internal("verified backup without a header".into()))?;
    let mut r = report("verify", path, &h, &t);
    r.providers = p.providers;
    Ok(r)
}

/// Restores `path` into `vault` in one transaction, appending `audit` to it.
pub fn restore(
    vault: &Vault,
    path: &Path,
    unlock: &Unlock,
    opts: &RestoreOptions,
    audit: AuditRecord,
) -> Result<BackupReport> {
    let only = opts.tenant.as_deref();
    if let Some(t) = only {
        names::validate_tenant(t)?;
    }
    let (p, t1) = plan(path, unlock, only, opts.progress.as_ref())?;
    let h = p
        .header
        .clone()
        .ok_or_else(|| Error::Internal("verified backup without a header".into()))?;
    let restoring: BTreeSet<String> = match only {
        Some(t) if !p.tenants.contains(t) => {
            return Err(Error::not_found(
                "tenant in the backup",
                format!(
                    "{t} (the file carries: {})",
                    p.tenants.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        Some(t) => std::iter::once(t.to_owned()).collect(),
        None => p.tenants.clone(),
    };

    let tx = vault.write()?;
    let mut conflicts = Vec::new();
    let mut existing = Vec::new();
    for t in &restoring {
        if tx.tenant(t)?.is_some() {
            existing.push(t.clone());
            conflicts.push(format!("tenant {t}"));
        }
    }
    for (uid, t) in &p.grants {
        if let Some(other) = tx.grant(*uid)?
            && &other != t
            && !restoring.contains(&other)
        {
            conflicts.push(format!("uid {uid} (granted to tenant {other})"));
        }
    }
    for (id, t) in &p.tenant_keys {
        if let Some(k) = tx.tenant_key(id)?
            && &k.tenant != t
            && !restoring.contains(&k.tenant)
        {
            conflicts.push(format!("tenant key {id} (of tenant {})", k.tenant));
        }
    }
    if !conflicts.is_empty() && !opts.replace {
        // `tx` is dropped unwritten: the vault file is untouched.
        return Err(Error::BackupConflict(conflicts.join(", ")));
    }
    let mut notes = Vec::new();
    for t in &existing {
        let n = tx.remove_tenant(t)?;
        notes.push(format!(
            "tenant {t} replaced ({n} connections it had were dropped first)"
        ));
    }

    // Audit records the target already holds (restoring into the vault the backup came
    // from) are not appended twice. Only the time window the backup covers is loaded.
    let mut have_audit = std::collections::HashSet::new();
    if let Some(from) = p.audit_from {
        for a in tx.audit(None, from)? {
            have_audit.insert(audit_digest(&a));
        }
    }

    let reader = open(path, unlock)?;
    let mut counts = format::empty_counts();
    let mut skipped_audit = 0u64;
    let bar = Progress::new(
        opts.progress.as_ref(),
        h.counts.values().sum::<u64>(),
        "restore",
    );
    let applied = format::read_stream(reader, |_, rec| -> Result<()> {
        bar.inc();
        if only.is_some() && record_tenant(&rec) != only {
            return Ok(());
        }
        if let Some(t) = rec.table() {
            *counts.entry(t.to_owned()).or_default() += 1;
        }
        match rec {
            Record::Tenant { name, record } => tx.put_tenant(&name, &record),
            Record::TenantKey { id, record } => tx.put_tenant_key(&id, &record),
            Record::Grant { uid, tenant } => tx.put_grant(uid, &tenant),
            Record::Client {
                tenant,
                provider,
                mut record,
                secret,
            } => {
                record.secret = None;
                tx.put_client(&tenant, &provider, record, secret.as_ref())
            }
            Record::AppleKey {
                tenant,
                mut record,
                private_key,
            } => {
                record.cached_token = None;
                let der = zeroize::Zeroizing::new(private_key);
                tx.put_apple_key(&tenant, record, Some(&der))
            }
            Record::Connection {
                key,
                mut record,
                secrets,
            } => {
                record.secrets = tx.seal_new(&key, &secrets);
                tx.put_connection(&key, &record)
            }
            Record::Audit(a) => {
                if have_audit.contains(&audit_digest(&a)) {
                    skipped_audit += 1;
                    return Ok(());
                }
                tx.append_audit(&a)
            }
            Record::Providers(_) | Record::Header(_) | Record::Trailer(_) => Ok(()),
        }
    });
    bar.finish();
    let t2 = match applied {
        Ok((_, t)) => t,
        Err(ReadOrApply::Read(e)) => return Err(read_error(path, e)),
        Err(ReadOrApply::Apply(e)) => return Err(e),
    };
    if t2.sha256 != t1.sha256 {
        return Err(invalid(
            path,
            "the file changed between verifying and restoring; nothing was restored",
        ));
    }
    tx.append_audit(&audit)?;
    tx.commit()?;

    let mut r = report("restore", path, &h, &t1);
    r.tenant = opts.tenant.clone().or(h.tenant.clone());
    counts.remove("providers");
    if skipped_audit > 0 {
        if let Some(n) = counts.get_mut("audit") {
            *n -= skipped_audit.min(*n);
        }
        notes.push(format!(
            "{skipped_audit} audit records were already in the vault and were not added again"
        ));
    }
    r.counts = counts.into_iter().filter(|(_, v)| *v > 0).collect();
    r.providers = p.providers;
    r.notes = notes;
    Ok(r)
}

fn audit_digest(a: &AuditRecord) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(rmp_serde::to_vec(a).unwrap_or_default()).into()
}

/// The identity file's text, read for `Unlock::Identity`.
pub fn read_identity_file(path: &PathBuf) -> Result<Secret> {
    let bytes = zeroize::Zeroizing::new(
        std::fs::read(path)
            .map_err(|e| Error::io("cannot read the identity file given with --identity", e))?,
    );
    let s = std::str::from_utf8(&bytes).map_err(|_| {
        Error::invalid(
            "age identity",
            "the file given with --identity is not a text age identity file (AGE-SECRET-KEY-1… lines, from `age-keygen`)",
        )
    })?;
    Ok(Secret::new(s))
}
