//! `backup export`: one read snapshot of the vault, streamed record by record through age
//! into a temp file next to the target, fsynced and renamed over it.
//!
//! Memory stays flat in the number of connections and audit records: those two tables are
//! walked twice in the same snapshot (once to count for the header, once to write), the
//! others are small. Must not: build the whole vault in memory, or leave a partial file
//! under the target name.

use super::format::{self, Header, Record, RecordWriter};
use super::{BackupReport, Progress};
use crate::config::ProviderConfig;
use crate::error::{Error, Result};
use crate::names;
use crate::secret::Secret;
use crate::vault::Vault;
use crate::vault::schema::FORMAT_VERSION;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Whom the file is encrypted to.
#[derive(Debug, Clone)]
pub enum EncryptTo {
    /// age X25519 recipients (`age1…`): no secret needed to take the backup.
    Recipients(Vec<String>),
    /// A passphrase (age's scrypt recipient). `work_factor` (log2 N) overrides age's
    /// default of about one second of work; only tests should lower it.
    Passphrase {
        passphrase: Secret,
        work_factor: Option<u8>,
    },
}

#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Only this tenant's records.
    pub tenant: Option<String>,
    /// Include the audit log (of that tenant, with `tenant`).
    pub include_audit: bool,
    /// Draw a progress bar on stderr (only on a terminal and for large vaults).
    pub progress: bool,
}

fn encryptor(to: &EncryptTo) -> Result<age::Encryptor> {
    match to {
        EncryptTo::Recipients(list) => {
            if list.is_empty() {
                return Err(Error::invalid(
                    "backup recipients",
                    "give at least one --recipient age1… or --backup-passphrase-file",
                ));
            }
            let parsed = list
                .iter()
                .map(|r| {
                    r.trim().parse::<age::x25519::Recipient>().map_err(|_| {
                        Error::invalid(
                            "age recipient",
                            format!(
                                "{r:?} is not an age X25519 recipient (age1…; `age-keygen -y KEYFILE` prints it)"
                            ),
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            age::Encryptor::with_recipients(parsed.iter().map(|r| r as &dyn age::Recipient))
                .map_err(|e| Error::invalid("age recipients", e.to_string()))
        }
        EncryptTo::Passphrase {
            passphrase,
            work_factor,
        } => {
            if passphrase.is_empty() {
                return Err(Error::invalid("backup passphrase", "must not be empty"));
            }
            let mut r = age::scrypt::Recipient::new(age::secrecy::SecretString::from(
                passphrase.expose().to_owned(),
            ));
            if let Some(n) = work_factor {
                if !(1..64).contains(n) {
                    return Err(Error::invalid("scrypt work factor", "must be 1-63"));
                }
                r.set_work_factor(*n);
            }
            age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient))
                .map_err(|e| Error::invalid("backup passphrase", e.to_string()))
        }
    }
}

/// A file created 0600 next to `target`, renamed over it by `commit`, removed on drop
/// otherwise.
pub(crate) struct TempFile {
    path: PathBuf,
    target: PathBuf,
    file: Option<std::fs::File>,
}

impl TempFile {
    pub(crate) fn create(target: &Path) -> Result<TempFile> {
        use std::os::unix::fs::OpenOptionsExt;
        let name = target
            .file_name()
            .ok_or_else(|| {
                Error::invalid(
                    "backup file",
                    format!("{} is not a file name", target.display()),
                )
            })?
            .to_string_lossy()
            .into_owned();
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let suffix = hex::encode(crate::vault::crypto::random_bytes(6));
        let path = dir.join(format!(".{name}.{suffix}.tmp"));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| {
                Error::io(
                    format!("cannot create a file in {} for the backup", dir.display()),
                    e,
                )
            })?;
        Ok(TempFile {
            path,
            target: target.to_owned(),
            file: Some(file),
        })
    }

    pub(crate) fn file(&mut self) -> Result<std::fs::File> {
        self.file
            .take()
            .ok_or_else(|| Error::Internal("temp file taken twice".into()))
    }

    /// fsync the file, rename it over the target, fsync the directory.
    pub(crate) fn commit(mut self, file: std::fs::File) -> Result<u64> {
        let ctx = |what: &str| format!("cannot {what} the backup {}", self.target.display());
        file.sync_all().map_err(|e| Error::io(ctx("sync"), e))?;
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        drop(file);
        std::fs::rename(&self.path, &self.target).map_err(|e| Error::io(ctx("rename"), e))?;
        if let Some(dir) = self.target.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(d) = std::fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        self.path = PathBuf::new();
        Ok(bytes)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::io(format!("cannot write the backup {}", path.display()), e)
}

/// Exports the vault (or one tenant) to an age file at `path`. `providers` are the custom
/// providers of the config file, carried along. Returns what was written.
pub fn export(
    vault: &Vault,
    providers: &BTreeMap<String, ProviderConfig>,
    path: &Path,
    to: &EncryptTo,
    opts: &ExportOptions,
    now: i64,
) -> Result<BackupReport> {
    let enc = encryptor(to)?;
    let rx = vault.read()?;
    let tenant = opts.tenant.as_deref();
    if let Some(t) = tenant {
        names::validate_tenant(t)?;
        if rx.tenant(t)?.is_none() {
            return Err(Error::not_found("tenant", t));
        }
    }
    let in_scope = |t: &str| tenant.is_none_or(|f| f == t);

    // The small tables, read whole; the large ones counted now and streamed below.
    let tenants: Vec<_> = rx
        .tenants()?
        .into_iter()
        .filter(|(n, _)| in_scope(n))
        .collect();
    let tenant_keys = rx.tenant_keys(tenant)?;
    let grants: Vec<_> = rx
        .grants()?
        .into_iter()
        .filter(|(_, t)| in_scope(t))
        .collect();
    let clients = rx.clients(tenant)?;
    let mut apple = Vec::new();
    for (t, _) in &tenants {
        for k in rx.apple_keys(t)? {
            apple.push((t.clone(), k));
        }
    }
    let prefix = tenant.map(|t| format!("{t}/")).unwrap_or_default();
    let mut n_conn = 0u64;
    rx.for_each_connection(&prefix, |_, _| {
        n_conn += 1;
        Ok(true)
    })?;
    let audit_in_scope =
        |r: &crate::vault::records::AuditRecord| tenant.is_none() || r.tenant.as_deref() == tenant;
    let mut n_audit = 0u64;
    if opts.include_audit {
        rx.for_each_audit(|_, r| {
            if audit_in_scope(&r) {
                n_audit += 1;
            }
            Ok(true)
        })?;
    }
    let provider_values: BTreeMap<String, serde_json::Value> = providers
        .iter()
        .map(|(k, v)| {
            serde_json::to_value(v)
                .map(|v| (k.clone(), v))
                .map_err(|e| Error::Internal(format!("provider {k}: {e}")))
        })
        .collect::<Result<_>>()?;

    let mut counts = format::empty_counts();
    counts.insert("providers".into(), 1);
    counts.insert("tenants".into(), tenants.len() as u64);
    counts.insert("tenant_keys".into(), tenant_keys.len() as u64);
    counts.insert("grants".into(), grants.len() as u64);
    counts.insert("clients".into(), clients.len() as u64);
    counts.insert("apple_keys".into(), apple.len() as u64);
    counts.insert("connections".into(), n_conn);
    counts.insert("audit".into(), n_audit);
    let total: u64 = counts.values().sum();
    let vh = vault.header();
    let header = Header {
        magic: format::MAGIC.into(),
        format: format::BACKUP_FORMAT,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        vault_format: FORMAT_VERSION,
        created_at: now,
        source_path: vault.path().display().to_string(),
        source_id: format!("{}-{}", vh.created_at, vault.pseudonym("vault-id")),
        tenant: opts.tenant.clone(),
        include_audit: opts.include_audit,
        counts: counts.clone(),
    };

    let mut tmp = TempFile::create(path)?;
    let file = tmp.file()?;
    let ioe = io_err(path);
    let age_out = enc
        .wrap_output(std::io::BufWriter::with_capacity(256 * 1024, file))
        .map_err(&ioe)?;
    let mut w = RecordWriter::new(age_out);
    let bar = Progress::new(opts.progress, total, "export");
    let put = |w: &mut RecordWriter<_>, rec: Record| -> Result<()> {
        w.write(&rec).map_err(&ioe)?;
        bar.inc();
        Ok(())
    };
    put(&mut w, Record::Header(header.clone()))?;
    put(&mut w, Record::Providers(provider_values))?;
    for (name, record) in tenants {
        put(&mut w, Record::Tenant { name, record })?;
    }
    for (id, record) in tenant_keys {
        put(&mut w, Record::TenantKey { id, record })?;
    }
    for (uid, tenant) in grants {
        put(&mut w, Record::Grant { uid, tenant })?;
    }
    for (t, p, mut record) in clients {
        let secret = rx.client_secret(&t, &p, &record)?;
        record.secret = None;
        put(
            &mut w,
            Record::Client {
                tenant: t,
                provider: p,
                record,
                secret,
            },
        )?;
    }
    for (t, mut record) in apple {
        let der = rx.apple_private_key(&t, &record)?;
        record.private_key = format::empty_sealed();
        // The cached developer token is sealed to this vault's keyring and can be re-signed
        // at any time: it is not backed up.
        record.cached_token = None;
        put(
            &mut w,
            Record::AppleKey {
                tenant: t,
                record,
                private_key: der.to_vec(),
            },
        )?;
    }
    let mut written_conn = 0u64;
    rx.for_each_connection(&prefix, |key, mut record| {
        let secrets = rx.secrets(key, &record)?;
        record.secrets = format::empty_sealed();
        put(
            &mut w,
            Record::Connection {
                key: key.to_owned(),
                record,
                secrets,
            },
        )?;
        written_conn += 1;
        Ok(true)
    })?;
    if opts.include_audit {
        rx.for_each_audit(|_, r| {
            if audit_in_scope(&r) {
                put(&mut w, Record::Audit(r))?;
            }
            Ok(true)
        })?;
    }
    // One snapshot: the counts cannot have moved, but a mismatch must never pass silently.
    if written_conn != n_conn {
        return Err(Error::Internal(
            "connection count changed inside one read snapshot".into(),
        ));
    }
    let (age_out, trailer) = w.finish().map_err(&ioe)?;
    let buffered = age_out.finish().map_err(&ioe)?;
    let file = buffered.into_inner().map_err(|e| {
        Error::io(
            format!("cannot write the backup {}", path.display()),
            e.into_error(),
        )
    })?;
    let bytes = tmp.commit(file)?;
    bar.finish();
    drop(rx);
    Ok(BackupReport {
        action: "export".into(),
        path: path.display().to_string(),
        created_at: now,
        source_path: header.source_path,
        source_id: header.source_id,
        tenant: opts.tenant.clone(),
        counts: trailer.counts,
        records: trailer.records,
        bytes,
        sha256: hex::encode(&trailer.sha256),
        providers: providers.keys().cloned().collect(),
        notes: Vec::new(),
    })
}
