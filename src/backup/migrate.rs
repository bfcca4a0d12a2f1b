//! `store migrate --to URL_OR_PATH` (SPEC §12): copies a vault to a new PostgreSQL store
//! or a new redb file through the backup format, so moving between the two loses nothing
//! the backup carries (every tenant, client, connection, tenant key, grant, Apple key and
//! the audit log, secrets re-sealed under the target's keys).
//!
//! Owns: the copy and its check. The target is created here with the source's passphrase
//! and KDF parameters (a fresh salt and keyring); the backup is written to a private temp
//! directory, encrypted to a one-time age identity that lives only in memory, and removed
//! whatever happens. Must not: touch the source (it is only read), or write into a target
//! that already exists.
//!
//! What a failure leaves behind: the source is untouched. A target that was created but
//! did not receive a complete, count-checked copy is reported as such (its location is in
//! the error); a redb file target is removed, a PostgreSQL target is left for the operator
//! to drop (tokenvault never drops tables it did not just create empty).

use crate::config::ProviderConfig;
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::vault::records::AuditRecord;
use crate::vault::{Vault, crypto::KdfParams, pg};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where a vault goes.
#[derive(Debug, Clone)]
pub enum Target {
    File(PathBuf),
    Store(Box<pg::StoreConfig>),
}

impl Target {
    pub fn describe(&self) -> String {
        match self {
            Target::File(p) => p.display().to_string(),
            Target::Store(c) => c.display().to_owned(),
        }
    }
}

/// What was copied: per table, (source, target) counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateReport {
    pub from: String,
    pub to: String,
    pub counts: Vec<(&'static str, u64, u64)>,
}

/// Tables compared after the copy. The audit log of the target also holds the record of
/// the restore itself, one more than the source.
const COMPARED: &[&str] = &[
    "tenants",
    "clients",
    "connections",
    "tenant_keys",
    "grants",
    "apple_keys",
    "audit",
];

/// Copies `source` into a new vault at `target`, unlocked by `passphrase` (the source's).
pub fn migrate(
    source: &Vault,
    passphrase: &Secret,
    target: &Target,
    providers: &BTreeMap<String, ProviderConfig>,
    actor: &str,
    now: i64,
) -> Result<MigrateReport> {
    let h = source.header();
    let mut kdf = KdfParams::new(19, 2, 1)?;
    kdf.memory_kib = h.kdf.memory_kib;
    kdf.iterations = h.kdf.iterations;
    kdf.parallelism = h.kdf.parallelism;
    if let Target::File(p) = target
        && p.exists()
    {
        return Err(Error::VaultExists { path: p.clone() });
    }
    let dest = match target {
        Target::File(p) => Vault::init(p, passphrase, kdf)?,
        Target::Store(c) => Vault::init_store(c, passphrase, kdf)?,
    };
    let r = copy(source, &dest, target, providers, actor, now);
    if r.is_err()
        && let Target::File(p) = target
    {
        drop(dest);
        let _ = std::fs::remove_file(p);
    }
    r
}

fn copy(
    source: &Vault,
    dest: &Vault,
    target: &Target,
    providers: &BTreeMap<String, ProviderConfig>,
    actor: &str,
    now: i64,
) -> Result<MigrateReport> {
    use age::secrecy::ExposeSecret;
    let dir = TempDir::new()?;
    let file = dir.0.join("copy.age");
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let unlock = super::Unlock::Identity(Secret::new(identity.to_string().expose_secret()));
    super::export(
        source,
        providers,
        &file,
        &super::EncryptTo::Recipients(vec![recipient]),
        &super::ExportOptions {
            tenant: None,
            include_audit: true,
            progress: None,
        },
        now,
    )?;
    let audit = AuditRecord {
        at: now,
        actor: actor.to_owned(),
        action: "store_migrate".into(),
        tenant: None,
        target: source.path().display().to_string(),
        outcome: "ok".into(),
        count: 1,
    };
    super::restore(
        dest,
        &file,
        &unlock,
        &super::RestoreOptions::default(),
        audit,
    )?;
    let before: BTreeMap<&str, u64> = source.table_counts()?.into_iter().collect();
    let after: BTreeMap<&str, u64> = dest.table_counts()?.into_iter().collect();
    let mut counts = Vec::new();
    let mut wrong = Vec::new();
    for t in COMPARED {
        let (a, b) = (
            before.get(t).copied().unwrap_or(0),
            after.get(t).copied().unwrap_or(0),
        );
        let want = if *t == "audit" { a + 1 } else { a };
        if b != want {
            wrong.push(format!("{t}: {a} in the source, {b} in the copy"));
        }
        counts.push((*t, a, b));
    }
    if !wrong.is_empty() {
        return Err(Error::Storage(format!(
            "the copy at {} does not match the source ({}); do not use it: remove it and run `store migrate` again",
            target.describe(),
            wrong.join(", ")
        )));
    }
    Ok(MigrateReport {
        from: source.path().display().to_string(),
        to: target.describe(),
        counts,
    })
}

/// A private (0700) directory under the system temp dir, removed with what it holds.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir> {
        let p = std::env::temp_dir().join(format!(
            "tokenvault-migrate-{}",
            hex::encode(crate::vault::crypto::random_bytes(8))
        ));
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&p)
            .map_err(|e| Error::io("cannot create a private temp directory for the copy", e))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
