//! `backup export`: one read snapshot of the vault, streamed record by record through age
//! into a temp file next to the target, fsynced and renamed over it.
//!
//! The target must be a new name or an existing regular file: a device (`/dev/null`), FIFO,
//! socket, directory or symbolic link at the path is refused before anything is written,
//! without opening it (`check_target`). The temp file is created exclusively
//! (`O_CREAT|O_EXCL|O_NOFOLLOW`, 0600) in the target's directory, so `rename` replaces the
//! old file in one step and never writes into an inode someone else made.
//!
//! Memory stays flat in the number of connections and audit records: those two tables are
//! walked twice in the same snapshot (once to count for the header, once to write), the
//! others are small. Must not: build the whole vault in memory, or leave a partial file
//! under the target name.

use super::Progress;
use super::format::{self, Header, Record, RecordWriter};
use crate::config::ProviderConfig;
use crate::contract::BackupReport;
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
    /// Where to report progress (records written); the caller decides how it shows.
    pub progress: Option<crate::contract::progress::ProgressSink>,
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
            // The message numbers the recipient instead of quoting it: a mistyped value
            // (possibly a pasted secret key) must not travel into logs or answers.
            let parsed = list
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    r.trim().parse::<age::x25519::Recipient>().map_err(|_| {
                        Error::invalid(
                            "age recipient",
                            format!(
                                "recipient {} of {} is not an age X25519 recipient (age1…): check it for a typo (`age-keygen -y KEYFILE` prints the right one)",
                                i + 1,
                                list.len()
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

/// Refuses a target that is not a new name or an existing regular file. Looks with
/// `lstat` and never opens the target, so a FIFO cannot block the export and a device
/// is never written to.
///
/// A symbolic link at the final name is refused rather than followed: a link's target
/// (in a directory someone else may control) is not where the caller asked to write, and
/// `rename` would replace the link itself anyway. Directories higher up the path are
/// followed as any tool does.
pub(crate) fn check_target(target: &Path) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let meta = match std::fs::symlink_metadata(target) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("cannot look at the backup path", e)),
    };
    let ft = meta.file_type();
    let kind = if ft.is_file() {
        return Ok(());
    } else if ft.is_symlink() {
        return Err(Error::invalid(
            "backup path",
            "it is a symbolic link, and backups are not written through links: give the real path of the file, or choose a new file name",
        ));
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_fifo() {
        "a FIFO (named pipe)"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "a special file"
    };
    Err(Error::invalid(
        "backup path",
        format!(
            "it is {kind}, not a regular file: a backup is written only to a new file or over an existing regular file, and nothing was written; choose a new file name"
        ),
    ))
}

/// A file created 0600 next to `target` (`O_CREAT|O_EXCL|O_NOFOLLOW`, so it is always a
/// new inode of ours), renamed over it by `commit`, removed on drop otherwise.
pub(crate) struct TempFile {
    path: PathBuf,
    target: PathBuf,
    file: Option<std::fs::File>,
}

impl TempFile {
    /// Checks the target (`check_target`), then creates the temp file.
    pub(crate) fn create(target: &Path) -> Result<TempFile> {
        use std::os::unix::fs::OpenOptionsExt;
        let name = target
            .file_name()
            .ok_or_else(|| {
                Error::invalid(
                    "backup path",
                    "it does not end in a file name: give the path of the backup file to write",
                )
            })?
            .to_string_lossy()
            .into_owned();
        check_target(target)?;
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let suffix = hex::encode(crate::vault::crypto::random_bytes(6));
        let path = dir.join(format!(".{name}.{suffix}.tmp"));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .mode(0o600)
            .open(&path)
            .map_err(|e| {
                Error::io(
                    "cannot create the backup's temp file in the directory of the backup path (does it exist, and may this user write to it?)",
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

    /// fsync the file, check the target again (it may have changed while the backup was
    /// written), rename the file over it, fsync the directory.
    pub(crate) fn commit(mut self, file: std::fs::File) -> Result<u64> {
        let ctx = |what: &str| format!("cannot {what} the backup file");
        file.sync_all().map_err(|e| Error::io(ctx("sync"), e))?;
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        drop(file);
        check_target(&self.target)?;
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

/// The age file's bytes pass through here on their way to disk, so the scheduler can
/// record the SHA-256 of exactly what was written.
struct HashingWriter {
    inner: std::fs::File,
    hash: sha2::Sha256,
}

impl std::io::Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn write_error(e: std::io::Error) -> Error {
    Error::io("cannot write the backup file (is the disk full?)", e)
}

/// Exports the vault (or one tenant) to an age file at `path`. `providers` are the custom
/// providers of the config file, carried along. Returns what was written.
///
/// `path` must be a new name or an existing regular file (`check_target`); anything else
/// is refused before a byte is written. What a failure leaves behind: nothing — the temp
/// file is removed and the target is untouched.
pub fn export(
    vault: &Vault,
    providers: &BTreeMap<String, ProviderConfig>,
    path: &Path,
    to: &EncryptTo,
    opts: &ExportOptions,
    now: i64,
) -> Result<BackupReport> {
    export_file(vault, providers, path, to, opts, now).map(|(report, _)| report)
}

/// `export`, also returning the SHA-256 of the age file as written.
pub(crate) fn export_file(
    vault: &Vault,
    providers: &BTreeMap<String, ProviderConfig>,
    path: &Path,
    to: &EncryptTo,
    opts: &ExportOptions,
    now: i64,
) -> Result<(BackupReport, [u8; 32])> {
    let enc = encryptor(to)?;
    // Refused before any work; `TempFile` checks again when it creates and renames.
    check_target(path)?;
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
    let file = HashingWriter {
        inner: tmp.file()?,
        hash: Default::default(),
    };
    let ioe = write_error;
    let age_out = enc
        .wrap_output(std::io::BufWriter::with_capacity(256 * 1024, file))
        .map_err(&ioe)?;
    let mut w = RecordWriter::new(age_out);
    let bar = Progress::new(opts.progress.as_ref(), total, "export");
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
    let hashing = buffered.into_inner().map_err(|e| ioe(e.into_error()))?;
    let file_sha256: [u8; 32] = {
        use sha2::Digest;
        hashing.hash.finalize().into()
    };
    let bytes = tmp.commit(hashing.inner)?;
    bar.finish();
    drop(rx);
    let report = BackupReport {
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
    };
    Ok((report, file_sha256))
}
