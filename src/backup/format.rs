//! The plaintext inside a backup: a versioned stream of MessagePack records.
//!
//! Owns: the record types, their order, and the streaming writer / reader that hash what
//! they pass. Must not: encrypt (that is `age`, in `export`/`restore`), or touch the vault.
//!
//! The stream is a plain concatenation of MessagePack values (maps with field names, so a
//! reader in any language — `age -d backup.age | python3 -c 'import msgpack…'` — can read
//! it). Each value is a one-key map `{"<kind>": {...}}`:
//!
//! ```text
//! header      magic, format, creation time, source, tenant filter, counts per table
//! providers   the custom providers of the config file (a JSON-like map)
//! tenant*     tenant_key*  grant*  client*  apple_key*  connection*  audit*
//! trailer     counts per table, number of records, SHA-256 of every record before it
//! ```
//!
//! Secrets are in clear *inside* the age file: client secrets, token secrets and Apple
//! private keys are opened from the source vault so the backup restores into a vault with
//! any other passphrase. Records reuse the vault's own record types with the sealed field
//! emptied (`Sealed::default`-like placeholder) and the plaintext beside it, so metadata
//! fields added to a record later travel without a format bump.
//!
//! Completeness: the trailer's SHA-256 covers the exact bytes of every record before it,
//! and its counts must match both the header's and what was read; nothing may follow it.

use crate::secret::Secret;
use crate::vault::crypto::Sealed;
use crate::vault::records::{
    AppleKeyRecord, AuditRecord, ClientRecord, ConnectionRecord, TenantKeyRecord, TenantRecord,
    TokenSecrets,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};

/// Version of the record stream. Readers refuse larger numbers.
pub const BACKUP_FORMAT: u32 = 1;
/// First field of the header: tells a tokenvault backup from any other age file.
pub const MAGIC: &str = "tokenvault-backup";

/// Table names used in counts, in stream order.
pub const TABLES: [&str; 8] = [
    "tenants",
    "tenant_keys",
    "grants",
    "clients",
    "apple_keys",
    "connections",
    "audit",
    "providers",
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Header {
    pub magic: String,
    pub format: u32,
    /// `tokenvault` version that wrote it.
    pub tool_version: String,
    /// Vault file format of the source.
    pub vault_format: u32,
    /// Unix seconds.
    pub created_at: i64,
    /// Path of the source vault file.
    pub source_path: String,
    /// Identifies the source vault: its creation time and a keyed pseudonym.
    pub source_id: String,
    /// `Some(T)` when only tenant T was exported.
    pub tenant: Option<String>,
    pub include_audit: bool,
    /// Records per table that follow (see `TABLES`).
    pub counts: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Trailer {
    pub counts: BTreeMap<String, u64>,
    /// Records before the trailer, the header included.
    pub records: u64,
    /// SHA-256 of the bytes of every record before the trailer.
    #[serde(with = "serde_bytes")]
    pub sha256: Vec<u8>,
}

/// One value of the stream. Its `Debug` names the record, never its contents (secrets).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Record {
    Header(Header),
    /// `[providers.NAME]` tables of the source's config file, as JSON values (so a backup
    /// of a newer version with more provider keys still parses).
    Providers(BTreeMap<String, serde_json::Value>),
    Tenant {
        name: String,
        record: TenantRecord,
    },
    TenantKey {
        id: String,
        record: TenantKeyRecord,
    },
    Grant {
        uid: u32,
        tenant: String,
    },
    Client {
        tenant: String,
        provider: String,
        /// `secret` is `None` here; the plaintext is `secret` below.
        record: ClientRecord,
        secret: Option<Secret>,
    },
    AppleKey {
        tenant: String,
        /// `private_key` is an empty placeholder; the PKCS#8 DER is below.
        record: AppleKeyRecord,
        #[serde(with = "serde_bytes")]
        private_key: Vec<u8>,
    },
    Connection {
        key: String,
        /// `secrets` is an empty placeholder; the opened tokens are below.
        record: ConnectionRecord,
        secrets: TokenSecrets,
    },
    Audit(AuditRecord),
    Trailer(Trailer),
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Record::Tenant { name, .. } => write!(f, "Record::Tenant({name})"),
            Record::Connection { key, .. } => write!(f, "Record::Connection({key})"),
            Record::Client {
                tenant, provider, ..
            } => write!(f, "Record::Client({tenant}/{provider})"),
            other => write!(f, "Record::{}", other.table().unwrap_or("header/trailer")),
        }
    }
}

impl Record {
    /// The count it adds to, or `None` for header and trailer.
    pub fn table(&self) -> Option<&'static str> {
        Some(match self {
            Record::Header(_) | Record::Trailer(_) => return None,
            Record::Providers(_) => "providers",
            Record::Tenant { .. } => "tenants",
            Record::TenantKey { .. } => "tenant_keys",
            Record::Grant { .. } => "grants",
            Record::Client { .. } => "clients",
            Record::AppleKey { .. } => "apple_keys",
            Record::Connection { .. } => "connections",
            Record::Audit(_) => "audit",
        })
    }

    /// Position of its table in the stream order, so a reader can check the order.
    pub fn rank(&self) -> usize {
        match self {
            Record::Header(_) => 0,
            Record::Providers(_) => 1,
            Record::Tenant { .. } => 2,
            Record::TenantKey { .. } => 3,
            Record::Grant { .. } => 4,
            Record::Client { .. } => 5,
            Record::AppleKey { .. } => 6,
            Record::Connection { .. } => 7,
            Record::Audit(_) => 8,
            Record::Trailer(_) => 9,
        }
    }
}

/// The placeholder put where a sealed value was: it opens under no key.
pub fn empty_sealed() -> Sealed {
    Sealed {
        term: 0,
        nonce: Vec::new(),
        ct: Vec::new(),
    }
}

pub fn empty_counts() -> BTreeMap<String, u64> {
    TABLES.iter().map(|t| ((*t).to_owned(), 0)).collect()
}

/// Writes records, hashing and counting them; `finish` appends the trailer.
pub struct RecordWriter<W: Write> {
    out: W,
    hash: Sha256,
    counts: BTreeMap<String, u64>,
    records: u64,
    buf: zeroize::Zeroizing<Vec<u8>>,
}

impl<W: Write> std::fmt::Debug for RecordWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordWriter")
            .field("records", &self.records)
            .finish()
    }
}

impl<W: Write> RecordWriter<W> {
    pub fn new(out: W) -> Self {
        RecordWriter {
            out,
            hash: Sha256::new(),
            counts: empty_counts(),
            records: 0,
            buf: zeroize::Zeroizing::new(Vec::with_capacity(4096)),
        }
    }

    pub fn write(&mut self, rec: &Record) -> std::io::Result<()> {
        self.buf.clear();
        // The buffer may hold secrets: it is reused (no stray copies) and zeroized on drop.
        rmp_serde::encode::write_named(&mut *self.buf, rec).map_err(std::io::Error::other)?;
        self.out.write_all(&self.buf)?;
        self.hash.update(&*self.buf);
        self.records += 1;
        if let Some(t) = rec.table() {
            *self.counts.entry(t.to_owned()).or_default() += 1;
        }
        Ok(())
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    /// Writes the trailer and returns the inner writer and the trailer.
    pub fn finish(mut self) -> std::io::Result<(W, Trailer)> {
        let trailer = Trailer {
            counts: std::mem::take(&mut self.counts),
            records: self.records,
            sha256: self.hash.clone().finalize().to_vec(),
        };
        let bytes = rmp_serde::to_vec_named(&Record::Trailer(trailer.clone()))
            .map_err(std::io::Error::other)?;
        self.out.write_all(&bytes)?;
        Ok((self.out, trailer))
    }
}

/// Why a stream could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The byte source failed (for an age stream: a chunk failed authentication, or the
    /// file ended early).
    Io(std::io::Error),
    /// The bytes decrypted but are not a valid backup stream.
    Format(String),
}

/// A reader that hashes every byte handed out and keeps the first I/O error, so a
/// decoding error caused by the age layer is reported as what it is.
struct HashingReader<R: Read> {
    inner: R,
    hash: Sha256,
    io_error: Option<std::io::Error>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.hash.update(&buf[..n]);
                Ok(n)
            }
            Err(e) => {
                let copy = std::io::Error::new(e.kind(), e.to_string());
                self.io_error.get_or_insert(e);
                Err(copy)
            }
        }
    }
}

/// Reads a whole stream, checking it as it goes, and hands each record (header and trailer
/// excluded) to `f` in order. Returns header and trailer when everything checked out:
/// magic and version, table order, counts against header and trailer, the SHA-256, and
/// that the stream ends right after the trailer.
pub fn read_stream<R: Read, E>(
    input: R,
    mut f: impl FnMut(&Header, Record) -> Result<(), E>,
) -> Result<(Header, Trailer), ReadOrApply<E>> {
    let mut r = HashingReader {
        inner: std::io::BufReader::with_capacity(64 * 1024, input),
        hash: Sha256::new(),
        io_error: None,
    };
    let fmt = |m: String| ReadOrApply::Read(ReadError::Format(m));
    let next = |r: &mut HashingReader<_>, what: &str| -> Result<Record, ReadOrApply<E>> {
        let mut de = rmp_serde::Deserializer::new(&mut *r);
        match Record::deserialize(&mut de) {
            Ok(rec) => Ok(rec),
            Err(_) => Err(match r.io_error.take() {
                Some(io) => ReadOrApply::Read(ReadError::Io(io)),
                // The decoder's message can quote the value it met (serde's "invalid
                // type: string …"), which may be a secret: it is not passed on.
                None => ReadOrApply::Read(ReadError::Format(format!(
                    "cannot decode the {what} (not the shape this tokenvault writes: made by another tool or a newer version?)"
                ))),
            }),
        }
    };
    let header = match next(&mut r, "header")? {
        Record::Header(h) => h,
        _ => {
            return Err(fmt(
                "it does not start with a tokenvault backup header".into()
            ));
        }
    };
    if header.magic != MAGIC {
        return Err(fmt("it is not a tokenvault backup".into()));
    }
    if header.format > BACKUP_FORMAT {
        return Err(fmt(format!(
            "backup format {} is newer than this tokenvault reads ({BACKUP_FORMAT}); upgrade tokenvault",
            header.format
        )));
    }
    let mut counts = empty_counts();
    let mut records = 1u64;
    let mut rank = 0usize;
    let trailer = loop {
        let before = r.hash.clone();
        let rec = next(&mut r, "next record")?;
        if rec.rank() < rank {
            return Err(fmt(format!(
                "records out of order (a {} record after later tables)",
                rec.table().unwrap_or("header")
            )));
        }
        rank = rec.rank();
        match rec {
            Record::Trailer(t) => {
                if before.finalize().as_slice() != t.sha256.as_slice() {
                    return Err(fmt(
                        "the checksum in the trailer does not match the records".into(),
                    ));
                }
                break t;
            }
            Record::Header(_) => return Err(fmt("a second header".into())),
            rec => {
                if let Some(t) = rec.table() {
                    *counts.entry(t.to_owned()).or_default() += 1;
                }
                records += 1;
                f(&header, rec).map_err(ReadOrApply::Apply)?;
            }
        }
    };
    // Anything after the trailer, or an age stream that does not end cleanly, fails here.
    let mut rest = [0u8; 1];
    match r.inner.read(&mut rest) {
        Ok(0) => {}
        Ok(_) => return Err(fmt("data after the trailer".into())),
        Err(e) => return Err(ReadOrApply::Read(ReadError::Io(e))),
    }
    let norm = |c: &BTreeMap<String, u64>| -> BTreeMap<String, u64> {
        c.iter()
            .filter(|(_, v)| **v > 0)
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    };
    if norm(&trailer.counts) != norm(&counts) || trailer.records != records {
        return Err(fmt(format!(
            "the trailer counts {} records, {} were read",
            trailer.records, records
        )));
    }
    if norm(&header.counts) != norm(&counts) {
        return Err(fmt(
            "the header's counts do not match the records (an incomplete export?)".into(),
        ));
    }
    Ok((header, trailer))
}

/// A failure of `read_stream`: the stream itself, or the caller's `f`.
#[derive(Debug)]
pub enum ReadOrApply<E> {
    Read(ReadError),
    Apply(E),
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn header(counts: BTreeMap<String, u64>) -> Header {
        Header {
            magic: MAGIC.into(),
            format: BACKUP_FORMAT,
            tool_version: "test".into(),
            vault_format: 1,
            created_at: 1,
            source_path: "/x".into(),
            source_id: "id".into(),
            tenant: None,
            include_audit: false,
            counts,
        }
    }

    fn stream(grants: u32) -> Vec<u8> {
        let mut counts = empty_counts();
        counts.insert("grants".into(), grants as u64);
        let mut w = RecordWriter::new(Vec::new());
        w.write(&Record::Header(header(counts))).unwrap();
        for uid in 0..grants {
            w.write(&Record::Grant {
                uid,
                tenant: "acme".into(),
            })
            .unwrap();
        }
        w.finish().unwrap().0
    }

    fn read(bytes: &[u8]) -> Result<u64, String> {
        let mut n = 0;
        read_stream(bytes, |_, _| {
            n += 1;
            Ok::<(), ()>(())
        })
        .map(|_| n)
        .map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn round_trip_and_every_truncation_fails() {
        let bytes = stream(5);
        assert_eq!(read(&bytes), Ok(5));
        for cut in 0..bytes.len() {
            assert!(read(&bytes[..cut]).is_err(), "cut at {cut} accepted");
        }
        let mut extra = bytes.clone();
        extra.push(0xc0);
        assert!(read(&extra).unwrap_err().contains("after the trailer"));
    }

    #[test]
    fn a_changed_record_fails_the_checksum() {
        let bytes = stream(3);
        // uid 1 → uid 2 in the second grant: still valid MessagePack.
        let needle = [0xa3, b'u', b'i', b'd', 0x01];
        let at = bytes.windows(5).position(|w| w == needle).unwrap();
        let mut bad = bytes.clone();
        bad[at + 4] = 2;
        let err = read(&bad).unwrap_err();
        assert!(err.contains("checksum"), "{err}");
    }
}
