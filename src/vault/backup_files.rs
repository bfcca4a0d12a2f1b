//! The vault's record of the backup files the daemon's schedule wrote (table
//! `BACKUP_FILES`): path, when, SHA-256 and size of the age file as written.
//!
//! Owns: reading and writing those records. Scheduled backups trust only this record —
//! not the names of the files in the backup directory — for "last backup", "next due" and
//! which old files retention may delete (`backup::schedule`). Must not: decide any of
//! that, or touch the files themselves.
//!
//! Vault files made before this table existed do not have it: readers treat a missing
//! table as empty, the first write creates it (no format bump: nothing else changes).

use super::schema::BACKUP_FILES;
use super::{Rx, Tx, decode, encode};
use crate::error::Result;
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

/// One backup file as the scheduler wrote it. Never holds a secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupFileRecord {
    /// When it was taken (Unix seconds, the engine's clock).
    pub at: i64,
    /// SHA-256 of the age file's bytes, hex.
    pub sha256: String,
    /// Size of the age file.
    pub bytes: u64,
    /// Records in the backup.
    #[serde(default)]
    pub records: u64,
}

fn list(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Vec<(String, BackupFileRecord)>> {
    let mut out = Vec::new();
    for e in t.iter()? {
        let (k, v) = e?;
        out.push((
            k.value().to_owned(),
            decode("backup_files", k.value(), v.value())?,
        ));
    }
    Ok(out)
}

impl Rx {
    /// Every recorded backup file, by path.
    pub fn backup_files(&self) -> Result<Vec<(String, BackupFileRecord)>> {
        match self.txn.open_table(BACKUP_FILES) {
            Ok(t) => list(&t),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }
}

impl Tx {
    /// Every recorded backup file, by path.
    pub fn backup_files(&self) -> Result<Vec<(String, BackupFileRecord)>> {
        list(&self.txn.open_table(BACKUP_FILES)?)
    }

    pub fn put_backup_file(&self, path: &str, rec: &BackupFileRecord) -> Result<()> {
        self.wrote(super::pg::Table::BackupFiles, path);
        self.txn
            .open_table(BACKUP_FILES)?
            .insert(path, encode(rec).as_slice())?;
        Ok(())
    }

    /// Forgets a file (it was deleted, or it is no longer the file that was written).
    pub fn remove_backup_file(&self, path: &str) -> Result<bool> {
        self.wrote(super::pg::Table::BackupFiles, path);
        Ok(self.txn.open_table(BACKUP_FILES)?.remove(path)?.is_some())
    }
}
