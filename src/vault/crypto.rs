//! The only module that touches ciphers (SPEC §4).
//!
//! Key hierarchy: passphrase → Argon2id(salt, m, t, p) → key-encryption key (KEK) → seals
//! the *keyring*: random 256-bit data keys, each with a term number. Records are sealed
//! with the data key of the current term; older terms stay in the keyring until `rekey`
//! has re-encrypted everything they sealed.
//!
//! Every seal is XChaCha20-Poly1305 with a fresh random 24-byte nonce and associated data
//! binding `format version ‖ table ‖ record key ‖ term`, so a sealed value copied to
//! another record, table or tenant fails to open.
//!
//! Nothing outside this module sees a key; the rest of the crate handles `Sealed` bytes.

use crate::error::{Error, Result};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use zeroize::{Zeroize, Zeroizing};

/// Argon2id parameters, stored in the vault header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    #[serde(with = "serde_bytes")]
    pub salt: Vec<u8>,
}

/// RFC 9106 "second recommended option" and SPEC §4 defaults.
pub const DEFAULT_MEMORY_MIB: u32 = 64;
pub const DEFAULT_ITERATIONS: u32 = 3;
pub const DEFAULT_PARALLELISM: u32 = 4;
/// Floors below which `init` refuses (OWASP's minimum for Argon2id).
pub const MIN_MEMORY_MIB: u32 = 19;
pub const MIN_ITERATIONS: u32 = 2;

impl KdfParams {
    pub fn new(memory_mib: u32, iterations: u32, parallelism: u32) -> Result<Self> {
        if memory_mib < MIN_MEMORY_MIB {
            return Err(Error::invalid(
                "KDF parameters",
                format!("--kdf-memory-mib {memory_mib} is below the minimum of {MIN_MEMORY_MIB}"),
            ));
        }
        if iterations < MIN_ITERATIONS {
            return Err(Error::invalid(
                "KDF parameters",
                format!("--kdf-iterations {iterations} is below the minimum of {MIN_ITERATIONS}"),
            ));
        }
        if parallelism == 0 || parallelism > 64 {
            return Err(Error::invalid(
                "KDF parameters",
                "--kdf-parallelism must be between 1 and 64",
            ));
        }
        if memory_mib > 4 * 1024 {
            return Err(Error::invalid(
                "KDF parameters",
                "--kdf-memory-mib above 4096 would make every unlock take minutes",
            ));
        }
        Ok(KdfParams {
            memory_kib: memory_mib * 1024,
            iterations,
            parallelism,
            salt: random_bytes(16),
        })
    }

    /// Derives the key-encryption key. Takes hundreds of milliseconds at the defaults.
    pub fn derive(&self, passphrase: &[u8]) -> Result<Kek> {
        let params =
            argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
                .map_err(|e| Error::invalid("KDF parameters in vault header", e.to_string()))?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(passphrase, &self.salt, out.as_mut())
            .map_err(|e| Error::Internal(format!("argon2: {e}")))?;
        Ok(Kek(out))
    }
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    fill_random(&mut v);
    v
}

pub fn fill_random(buf: &mut [u8]) {
    // The OS RNG failing is not something any caller can recover from or cause.
    #[allow(clippy::expect_used)]
    getrandom::fill(buf).expect("the operating system's random number generator failed");
}

/// The key-encryption key. Opens and seals only the keyring.
pub struct Kek(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek([redacted])")
    }
}

/// A sealed value as stored: term, nonce, ciphertext with tag.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    pub term: u32,
    #[serde(with = "serde_bytes")]
    pub nonce: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub ct: Vec<u8>,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealed(term {}, {} bytes)", self.term, self.ct.len())
    }
}

const KEYRING_AD: &[u8] = b"tokenvault\0keyring";

fn aead_seal(key: &[u8; 32], aad: &[u8], msg: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let cipher = XChaCha20Poly1305::new(&(*key).into());
    let mut nonce = [0u8; 24];
    fill_random(&mut nonce);
    // Encryption into a Vec cannot fail for inputs below 256 GiB.
    #[allow(clippy::expect_used)]
    let ct = cipher
        .encrypt(&XNonce::from(nonce), Payload { msg, aad })
        .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
    (nonce.to_vec(), ct)
}

fn aead_open(key: &[u8; 32], aad: &[u8], nonce: &[u8], ct: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let nonce: [u8; 24] = nonce.try_into().ok()?;
    let cipher = XChaCha20Poly1305::new(&(*key).into());
    cipher
        .decrypt(&XNonce::from(nonce), Payload { msg: ct, aad })
        .ok()
        .map(Zeroizing::new)
}

/// The data keys. Lives in memory only while the vault is unlocked.
pub struct Keyring {
    keys: BTreeMap<u32, Zeroizing<[u8; 32]>>,
    current: u32,
    format: u32,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Keyring(terms {:?}, current {})",
            self.keys.keys().collect::<Vec<_>>(),
            self.current
        )
    }
}

#[derive(Serialize, Deserialize)]
struct KeyringPlain {
    current: u32,
    keys: Vec<(u32, serde_bytes::ByteBuf)>,
}

impl Drop for KeyringPlain {
    fn drop(&mut self) {
        for (_, k) in &mut self.keys {
            k.as_mut_slice().zeroize();
        }
    }
}

impl Keyring {
    pub fn generate(format: u32) -> Self {
        let mut k = Keyring {
            keys: BTreeMap::new(),
            current: 0,
            format,
        };
        k.add_term();
        k
    }

    /// Adds a fresh data key under a new term and makes it current. Returns the term.
    pub fn add_term(&mut self) -> u32 {
        let term = self.current + 1;
        let mut key = Zeroizing::new([0u8; 32]);
        fill_random(key.as_mut());
        self.keys.insert(term, key);
        self.current = term;
        term
    }

    /// Forgets every term but the current one (after `rekey` has re-sealed everything).
    pub fn retain_current(&mut self) {
        let cur = self.current;
        self.keys.retain(|t, _| *t == cur);
    }

    pub fn current_term(&self) -> u32 {
        self.current
    }

    pub fn terms(&self) -> Vec<u32> {
        self.keys.keys().copied().collect()
    }

    /// The keyring sealed under the KEK, for the header.
    pub fn wrap(&self, kek: &Kek) -> Sealed {
        let plain = KeyringPlain {
            current: self.current,
            keys: self
                .keys
                .iter()
                .map(|(t, k)| (*t, serde_bytes::ByteBuf::from(k.to_vec())))
                .collect(),
        };
        let bytes = Zeroizing::new(rmp_serde::to_vec(&plain).unwrap_or_default());
        let (nonce, ct) = aead_seal(&kek.0, KEYRING_AD, &bytes);
        Sealed { term: 0, nonce, ct }
    }

    /// Opens the keyring. `None` means the passphrase (KEK) is wrong, or the header was
    /// tampered with: the two cannot be told apart, by design.
    pub fn unwrap(kek: &Kek, sealed: &Sealed, format: u32) -> Option<Self> {
        let bytes = aead_open(&kek.0, KEYRING_AD, &sealed.nonce, &sealed.ct)?;
        let plain: KeyringPlain = rmp_serde::from_slice(&bytes).ok()?;
        let mut keys = BTreeMap::new();
        for (t, k) in &plain.keys {
            let arr: [u8; 32] = k.as_slice().try_into().ok()?;
            keys.insert(*t, Zeroizing::new(arr));
        }
        if !keys.contains_key(&plain.current) {
            return None;
        }
        Some(Keyring {
            keys,
            current: plain.current,
            format,
        })
    }

    /// A short keyed pseudonym (8 hex digits) of a name, for logs. Stable until `rekey`.
    pub fn pseudonym(&self, name: &str) -> String {
        let k = self
            .keys
            .values()
            .next()
            .map(|k| k.as_slice())
            .unwrap_or(&[]);
        let h = keyed_hash(k, name.as_bytes());
        hex::encode(&h[..4])
    }

    fn aad(&self, table: &str, key: &str, term: u32) -> Vec<u8> {
        let mut ad = Vec::with_capacity(32 + table.len() + key.len());
        ad.extend_from_slice(b"tokenvault\0");
        ad.extend_from_slice(&self.format.to_be_bytes());
        ad.extend_from_slice(table.as_bytes());
        ad.push(0);
        ad.extend_from_slice(&(key.len() as u64).to_be_bytes());
        ad.extend_from_slice(key.as_bytes());
        ad.extend_from_slice(&term.to_be_bytes());
        ad
    }

    /// Seals `plain` for record `key` of `table` under the current term.
    pub fn seal(&self, table: &str, key: &str, plain: &[u8]) -> Sealed {
        let term = self.current;
        let ad = self.aad(table, key, term);
        // `current` is always present: `generate`, `unwrap` and `add_term` guarantee it.
        let k = &self.keys[&term];
        let (nonce, ct) = aead_seal(k, &ad, plain);
        Sealed { term, nonce, ct }
    }

    /// Opens a sealed value of record `key` in `table`. Fails with `Integrity` when the
    /// bytes were altered, belong to another record, or their term is unknown.
    pub fn open(
        &self,
        table: &'static str,
        key: &str,
        sealed: &Sealed,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let integrity = || Error::Integrity {
            table,
            key: key.to_owned(),
        };
        let k = self.keys.get(&sealed.term).ok_or_else(integrity)?;
        let ad = self.aad(table, key, sealed.term);
        aead_open(k, &ad, &sealed.nonce, &sealed.ct).ok_or_else(integrity)
    }
}

/// SHA-256 of a value under a domain label, for tenant-key hashes and log pseudonyms.
pub fn keyed_hash(key: &[u8], data: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    // HMAC accepts keys of any length.
    #[allow(clippy::expect_used)]
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_binds_table_key_and_term() {
        let ring = Keyring::generate(1);
        let s = ring.seal("connections", "acme/spotify/alice", b"tok");
        assert_eq!(
            ring.open("connections", "acme/spotify/alice", &s)
                .unwrap()
                .as_slice(),
            b"tok"
        );
        assert!(ring.open("connections", "acme/spotify/bob", &s).is_err());
        assert!(ring.open("clients", "acme/spotify/alice", &s).is_err());
        let mut moved = s.clone();
        moved.term = 2;
        assert!(
            ring.open("connections", "acme/spotify/alice", &moved)
                .is_err()
        );
        let mut flipped = s.clone();
        flipped.ct[0] ^= 1;
        assert!(
            ring.open("connections", "acme/spotify/alice", &flipped)
                .is_err()
        );
    }

    #[test]
    fn seal_binds_the_format_version() {
        let ring = Keyring::generate(1);
        let s = ring.seal("connections", "acme/spotify/alice", b"tok");
        let same_keys_other_format = Keyring {
            keys: ring.keys.clone(),
            current: ring.current,
            format: 2,
        };
        assert!(
            same_keys_other_format
                .open("connections", "acme/spotify/alice", &s)
                .is_err(),
            "a record sealed under format 1 must not open as format 2"
        );
        assert!(ring.open("connections", "acme/spotify/alice", &s).is_ok());
    }

    #[test]
    fn nonces_are_fresh() {
        let ring = Keyring::generate(1);
        let a = ring.seal("t", "k", b"same");
        let b = ring.seal("t", "k", b"same");
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ct, b.ct);
    }

    #[test]
    fn keyring_wrap_roundtrip_and_wrong_kek() {
        let p = KdfParams {
            memory_kib: 8,
            iterations: 1,
            parallelism: 1,
            salt: random_bytes(16),
        };
        let kek = p.derive(b"right").unwrap();
        let mut ring = Keyring::generate(1);
        ring.add_term();
        let w = ring.wrap(&kek);
        let back = Keyring::unwrap(&kek, &w, 1).unwrap();
        assert_eq!(back.terms(), vec![1, 2]);
        assert_eq!(back.current_term(), 2);
        let wrong = p.derive(b"wrong").unwrap();
        assert!(Keyring::unwrap(&wrong, &w, 1).is_none());
    }

    #[test]
    fn kdf_floors() {
        assert!(KdfParams::new(18, 3, 1).is_err());
        assert!(KdfParams::new(19, 1, 1).is_err());
        assert!(KdfParams::new(19, 2, 1).is_ok());
    }
}
