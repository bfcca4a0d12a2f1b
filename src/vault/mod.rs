//! The vault file: one redb database holding every table of `schema`, unlocked by a
//! passphrase (SPEC §4).
//!
//! Owns: opening, creating, unlocking, the format version and migrations, the keyring in
//! memory, typed access to records (`Tx`), and the guard that keeps a damaged file from
//! panicking the process or being written. Must not: know about providers, HTTP, the
//! socket, or callers; decide who may do what (that is the `Engine`).
//!
//! # Opening, and what reaches the file
//!
//! Every session reads the file through `overlay`, a backend that decides when redb's
//! writes reach it, and every open runs redb's integrity check (the checksum of every
//! page of the committed trees, the allocator state rebuilt rather than trusted) before
//! anything is read:
//!
//! - `Vault::open_read_only` (the CLI's `list`, `show`, `status`, `audit`, … and `doctor`):
//!   a memory view. redb's own open and close bookkeeping, the repair of a file left by a
//!   crash and the integrity check's repair commit land in memory and are thrown away;
//!   `write` is refused. The file is not written, not even its header, whatever happens.
//! - `Vault::open` (commands that change the vault, and the daemon): a deferred view. The
//!   same bookkeeping is buffered until the session commits a change of its own
//!   (`Tx::commit` arms the view: what it buffered goes to the file with that commit,
//!   under the commit's own sync, and then everything goes straight to the file). A
//!   command that refuses before it commits, or whose write transaction is dropped, leaves
//!   the file byte-for-byte as it was.
//!
//! A file that fails the integrity check is refused with `Error::Corrupt` (exit 1, "run
//! `tokenvault doctor`") before the passphrase is even tried, so it is never written by an
//! ordinary command: the view was never armed. A wrong passphrase, a garbage, truncated or
//! crashed file likewise change no byte.
//!
//! redb may panic on damaged data instead of returning an error (an integrity-checked file
//! can still be damaged while a session holds it open). Every call into redb — opens, read
//! and write transactions, every `Rx`/`Tx` method, iteration, commits — runs under
//! `catch_unwind` (`Guard::run`). A caught panic poisons the session: its view is frozen
//! (no write, resize or sync reaches the file any more, not even at close), every later
//! call fails with `Error::Corrupt`, and the process goes on to print that message and exit
//! 1. `panic_is_caught` tells the binary's panic hook to stay quiet meanwhile.
//!
//! Every write transaction commits with `Durability::Immediate` (redb's default): when
//! `commit` returns, the change is on disk, fully or not at all.

pub mod backup_files;
pub mod claims;
pub mod crypto;
pub mod doctor;
mod mirror;
mod overlay;
pub mod pg;
pub mod records;
pub mod schema;

use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::sync::{LockExt, RwLockExt};
use crypto::{KdfParams, Kek, Keyring, Sealed};
use records::*;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use schema::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

pub use crypto::{DEFAULT_ITERATIONS, DEFAULT_MEMORY_MIB, DEFAULT_PARALLELISM};

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Serialising our own record structs into a Vec cannot fail.
    rmp_serde::to_vec_named(v).unwrap_or_default()
}

fn decode<T: DeserializeOwned>(table: &'static str, key: &str, bytes: &[u8]) -> Result<T> {
    rmp_serde::from_slice(bytes).map_err(|_| Error::Integrity {
        table,
        key: key.to_owned(),
    })
}

thread_local! {
    /// How many `catch_unwind` guards of this module the current thread is inside.
    static CATCHING: Cell<u32> = const { Cell::new(0) };
}

/// True while the current thread runs inside a vault guard: a panic now is caught and
/// reported as a damaged vault, so a panic hook should print nothing.
pub fn panic_is_caught() -> bool {
    CATCHING.with(|c| c.get() > 0)
}

/// Runs `f`, turning a panic into `Err(())`.
fn catching<T>(f: impl FnOnce() -> T) -> std::result::Result<T, ()> {
    CATCHING.with(|c| c.set(c.get() + 1));
    let r = catch_unwind(AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(c.get().saturating_sub(1)));
    r.map_err(|_| ())
}

/// What redb's panic on this file means to a user.
const PANICKED: &str = "the storage engine failed on damaged data";

fn corrupt(path: &Path, reason: impl Into<String>) -> Error {
    Error::Corrupt {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Runs an open of `path` under `catch_unwind`; what it built is dropped by the unwind
/// (a memory or unarmed view: nothing reaches the file).
fn guard_open<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    catching(f).unwrap_or_else(|()| Err(corrupt(path, PANICKED)))
}

/// The session's guard, shared by the vault and its transactions: catches redb's panics
/// and, after one, keeps the session from reading or writing anything more.
#[derive(Debug)]
struct Guard {
    path: PathBuf,
    control: overlay::Control,
    poisoned: AtomicBool,
}

impl Guard {
    fn new(path: &Path, control: overlay::Control) -> Arc<Guard> {
        Arc::new(Guard {
            path: path.to_owned(),
            control,
            poisoned: AtomicBool::new(false),
        })
    }

    fn damaged(&self) -> Error {
        corrupt(
            &self.path,
            format!("{PANICKED}; this session stopped and wrote nothing more"),
        )
    }

    fn run<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(self.damaged());
        }
        match catching(f) {
            Ok(r) => r,
            Err(()) => {
                self.poisoned.store(true, Ordering::Release);
                self.control.freeze();
                tracing::error!(
                    "the storage engine panicked on damaged data; the vault session is stopped and writes nothing more"
                );
                Err(self.damaged())
            }
        }
    }
}

/// How a session may use the file; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads only: redb's bookkeeping stays in memory and `write` is refused.
    ReadOnly,
    /// Writes reach the file from the first commit on.
    ReadWrite,
}

/// An unlocked vault.
pub struct Vault {
    /// The file, or (on the shared store) the in-memory mirror of PostgreSQL; see `mirror`.
    db: Arc<Database>,
    path: PathBuf,
    access: Access,
    guard: Arc<Guard>,
    keyring: Arc<RwLock<Arc<Keyring>>>,
    /// Kept while unlocked so `rekey` can wrap a new keyring without asking again. It can
    /// do nothing the keyring in memory cannot already do.
    kek: Arc<RwLock<Kek>>,
    header: Arc<RwLock<Header>>,
    /// Opened access tokens for the hand-out path; see `TokenCache`.
    cache: Arc<Mutex<TokenCache>>,
    /// The shared PostgreSQL store this vault mirrors, if it is not a file.
    store: Option<Attached>,
    /// Connections this node holds a lease on (shared store only), with the lease token
    /// that fences their writes; see `claims`.
    leases: Leases,
}

/// Connection key → lease token.
type Leases = Arc<Mutex<std::collections::HashMap<String, Vec<u8>>>>;

/// The store of a vault on PostgreSQL; dropping the vault stops its runtime and listener
/// (and with them the applier thread).
struct Attached(Arc<pg::Store>);

impl Drop for Attached {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}

/// An opened access token with the metadata `get` decides on.
#[derive(Clone, Debug)]
pub struct CachedToken {
    pub status: Status,
    pub expires_at: Option<i64>,
    pub token_type: Option<String>,
    pub access_token: Secret,
}

/// Opened access tokens, so a hand-out needs no read transaction, decode or AEAD open.
///
/// Correctness rests on two rules: every write of a connection goes through `Tx`
/// (`put_connection` / `remove_connection`), whose `commit` drops the keys it touched and
/// bumps `generation`; and a reader only inserts what it read if `generation` has not moved
/// since before its read transaction began (`Vault::cache_insert`). A value read from an
/// older snapshot can therefore never outlive the commit that replaced it. The daemon holds
/// the file exclusively, so no other process writes behind it.
#[derive(Debug, Default)]
struct TokenCache {
    generation: u64,
    map: std::collections::HashMap<String, CachedToken>,
}

/// Entries kept at most; past it the cache starts over (it is only a shortcut).
const TOKEN_CACHE_MAX: usize = 200_000;

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("path", &self.path)
            .field("access", &self.access)
            .finish()
    }
}

/// Creates `dir` (and parents) with mode 0700 where they do not exist yet.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.as_os_str().is_empty() || dir.exists() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(format!("cannot create directory {}", dir.display()), e))
}

fn map_db_error(path: &Path, e: redb::DatabaseError) -> Error {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen | redb::DatabaseError::LockProtocolMismatch => {
            Error::VaultInUse {
                path: path.to_owned(),
            }
        }
        redb::DatabaseError::UpgradeRequired(v) => {
            corrupt(path, format!("redb file format {v} needs an upgrade"))
        }
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(why)) => corrupt(
            path,
            format!("it failed the storage engine's integrity check: {why}"),
        ),
        other => corrupt(path, other.to_string()),
    }
}

/// The file under `path` as a redb backend, for `access`.
///
/// A read-only session still opens the file for writing when it may, only so that redb's
/// locks (which need a writable descriptor) keep a daemon out while it reads; the view
/// never writes through it. A file this user may only read is read without locks.
fn file_backend(path: &Path, access: Access) -> Result<(redb::backends::FileBackend, bool)> {
    let rw = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path);
    let (file, locks) = match (rw, access) {
        (Ok(f), _) => (f, true),
        (Err(e), Access::ReadOnly)
            if matches!(
                e.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
            ) =>
        {
            let f = std::fs::File::open(path)
                .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
            (f, false)
        }
        (Err(e), _) => return Err(Error::io(format!("cannot open {}", path.display()), e)),
    };
    let backend = redb::backends::FileBackend::new(file).map_err(|e| map_db_error(path, e))?;
    Ok((backend, locks))
}

/// Opens `path` as a database whose every committed page passed redb's integrity check,
/// through a view of `mode`. Nothing reaches the file unless the view is later armed.
fn open_checked(path: &Path, access: Access) -> Result<(Database, overlay::Control)> {
    guard_open(path, || {
        let (file, locks) = file_backend(path, access)?;
        let mode = match access {
            Access::ReadOnly => overlay::Mode::Memory,
            Access::ReadWrite => overlay::Mode::Deferred,
        };
        let (view, control) = overlay::Overlay::new(Some(file), mode, locks)
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        if redb::StorageBackend::len(&view).unwrap_or(0) == 0 {
            return Err(corrupt(path, "the file is empty"));
        }
        let db = redb::Builder::new()
            .set_check_integrity_on_open(true)
            .create_with_backend(view)
            .map_err(|e| map_db_error(path, e))?;
        Ok((db, control))
    })
}

/// Format version and header from the META table of an open database.
fn header_of(path: &Path, db: &impl ReadableDatabase) -> Result<(u32, Header)> {
    let bad = |reason: &str| corrupt(path, reason);
    let txn = db.begin_read().map_err(|e| bad(&e.to_string()))?;
    let meta = txn
        .open_table(META)
        .map_err(|_| bad("it has no tokenvault header"))?;
    let format = meta
        .get("format_version")
        .map_err(|e| bad(&e.to_string()))?
        .and_then(|g| <[u8; 4]>::try_from(g.value()).ok())
        .map(u32::from_be_bytes)
        .ok_or_else(|| bad("format version missing"))?;
    if format > FORMAT_VERSION {
        return Err(Error::TooNew {
            path: path.to_owned(),
            found: format,
            supported: FORMAT_VERSION,
        });
    }
    let header: Header = meta
        .get("header")
        .map_err(|e| bad(&e.to_string()))?
        .and_then(|g| rmp_serde::from_slice(g.value()).ok())
        .ok_or_else(|| bad("header missing or unreadable"))?;
    Ok((format, header))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Vault {
    /// Creates a new vault at `path`. Refuses to touch an existing file. The directory is
    /// created 0700 and the file 0600.
    pub fn init(path: &Path, passphrase: &Secret, kdf: KdfParams) -> Result<Vault> {
        use std::os::unix::fs::OpenOptionsExt;
        if passphrase.is_empty() {
            return Err(Error::invalid("passphrase", "must not be empty"));
        }
        if let Some(dir) = path.parent() {
            create_private_dir(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => Error::VaultExists {
                    path: path.to_owned(),
                },
                _ => Error::io(format!("cannot create {}", path.display()), e),
            })?;
        let result = guard_open(path, || {
            let backend =
                redb::backends::FileBackend::new(file).map_err(|e| map_db_error(path, e))?;
            let (view, control) =
                overlay::Overlay::new(Some(backend), overlay::Mode::Passthrough, true)
                    .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
            let db = redb::Builder::new()
                .create_with_backend(view)
                .map_err(|e| map_db_error(path, e))?;
            let kek = kdf.derive(passphrase.expose().as_bytes())?;
            let ring = Keyring::generate(FORMAT_VERSION);
            let header = Header {
                kdf,
                keyring: ring.wrap(&kek),
                created_at: now(),
                passphrase_changed_at: None,
                rekeyed_at: None,
            };
            Self::create_tables(&db, &header)?;
            Ok(Vault {
                db: Arc::new(db),
                path: path.to_owned(),
                access: Access::ReadWrite,
                guard: Guard::new(path, control),
                keyring: Arc::new(RwLock::new(Arc::new(ring))),
                kek: Arc::new(RwLock::new(kek)),
                header: Arc::new(RwLock::new(header)),
                cache: Arc::default(),
                store: None,
                leases: Leases::default(),
            })
        });
        if result.is_err() {
            // Leave nothing half-made behind: the file is ours, created above.
            let _ = std::fs::remove_file(path);
        }
        result
    }

    /// Writes the META records and creates every table, so read transactions never meet a
    /// missing one.
    fn create_tables(db: &Database, header: &Header) -> Result<()> {
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            meta.insert("format_version", FORMAT_VERSION.to_be_bytes().as_slice())?;
            meta.insert("header", encode(header).as_slice())?;
            txn.open_table(TENANTS)?;
            txn.open_table(CLIENTS)?;
            txn.open_table(CONNECTIONS)?;
            txn.open_table(DUE)?;
            txn.open_table(AUDIT)?;
            txn.open_table(TENANT_KEYS)?;
            txn.open_table(GRANTS)?;
            txn.open_table(APPLE_KEYS)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// A vault that lives only in memory, with the keyring and header given: `doctor`
    /// copies what still opens into one to write a salvage backup. `path` is only the name
    /// it reports (the vault it was salvaged from).
    pub(crate) fn in_memory(path: &Path, ring: Keyring, kek: Kek, header: Header) -> Result<Vault> {
        guard_open(path, || {
            let (view, control) = overlay::Overlay::new(None, overlay::Mode::Memory, false)
                .map_err(|e| Error::io("cannot make a vault in memory", e))?;
            let db = redb::Builder::new()
                .create_with_backend(view)
                .map_err(|e| map_db_error(path, e))?;
            Self::create_tables(&db, &header)?;
            Ok(Vault {
                db: Arc::new(db),
                path: path.to_owned(),
                access: Access::ReadWrite,
                guard: Guard::new(path, control),
                keyring: Arc::new(RwLock::new(Arc::new(ring))),
                kek: Arc::new(RwLock::new(kek)),
                header: Arc::new(RwLock::new(header)),
                cache: Arc::default(),
                store: None,
                leases: Leases::default(),
            })
        })
    }

    /// Opens and unlocks the vault at `path` for a session that may change it. Nothing
    /// reaches the file before the first commit; see the module documentation.
    pub fn open(path: &Path, passphrase: &Secret) -> Result<Vault> {
        Self::open_as(path, passphrase, Access::ReadWrite)
    }

    /// Opens and unlocks the vault at `path` for reading only: no byte of the file is
    /// written, whatever the session does or meets.
    pub fn open_read_only(path: &Path, passphrase: &Secret) -> Result<Vault> {
        Self::open_as(path, passphrase, Access::ReadOnly)
    }

    /// Opens and unlocks the vault at `path` with `access`.
    pub fn open_as(path: &Path, passphrase: &Secret, access: Access) -> Result<Vault> {
        if !path.exists() {
            return Err(Error::NoVault {
                path: path.to_owned(),
            });
        }
        let (db, control) = open_checked(path, access)?;
        let guard = Guard::new(path, control);
        let (format, header) = guard.run(|| header_of(path, &db))?;
        let kek = header.kdf.derive(passphrase.expose().as_bytes())?;
        let ring = Keyring::unwrap(&kek, &header.keyring, format).ok_or_else(|| {
            Error::WrongPassphrase {
                path: path.to_owned(),
            }
        })?;
        let vault = Vault {
            db: Arc::new(db),
            path: path.to_owned(),
            access,
            guard,
            keyring: Arc::new(RwLock::new(Arc::new(ring))),
            kek: Arc::new(RwLock::new(kek)),
            header: Arc::new(RwLock::new(header)),
            cache: Arc::default(),
            store: None,
            leases: Leases::default(),
        };
        if format < FORMAT_VERSION {
            // A read-only session migrates its memory view only.
            vault.migrate(format)?;
        }
        Ok(vault)
    }

    /// Creates a new vault in the shared PostgreSQL store of `cfg` (SPEC §12): applies
    /// the schema migrations, then writes the header. Refuses a database that already
    /// holds a vault (nothing is written then).
    pub fn init_store(cfg: &pg::StoreConfig, passphrase: &Secret, kdf: KdfParams) -> Result<Vault> {
        if passphrase.is_empty() {
            return Err(Error::invalid("passphrase", "must not be empty"));
        }
        let store = pg::Store::connect(cfg)?;
        store.migrate()?;
        let kek = kdf.derive(passphrase.expose().as_bytes())?;
        let ring = Keyring::generate(FORMAT_VERSION);
        let header = Header {
            kdf,
            keyring: ring.wrap(&kek),
            created_at: now(),
            passphrase_changed_at: None,
            rekeyed_at: None,
        };
        if !store.init_meta(FORMAT_VERSION.to_be_bytes().to_vec(), encode(&header))? {
            return Err(Error::StoreExists {
                url: cfg.display().to_owned(),
            });
        }
        Self::attach(store, ring, kek, header, Access::ReadWrite)
    }

    /// Opens and unlocks the vault in the shared store of `cfg`. A session that may write
    /// applies pending schema migrations first; a read-only one refuses an older schema.
    pub fn open_store(cfg: &pg::StoreConfig, passphrase: &Secret, access: Access) -> Result<Vault> {
        let store = pg::Store::connect(cfg)?;
        let no_vault = || Error::NoStoreVault {
            url: cfg.display().to_owned(),
        };
        match access {
            Access::ReadWrite => {
                store.migrate()?;
            }
            Access::ReadOnly => {
                let v = store.schema_version()?;
                if v == 0 {
                    return Err(no_vault());
                }
                if v < pg::schema::latest() {
                    return Err(Error::StoreUnavailable {
                        reason: format!(
                            "the database has schema version {v}, older than this tokenvault's {}; run a command that changes the vault (or start `tokenvault serve`) once to migrate it",
                            pg::schema::latest()
                        ),
                    });
                }
            }
        }
        let meta = store.read_rows(vec![
            (pg::Table::Meta, "format_version".into()),
            (pg::Table::Meta, "header".into()),
        ])?;
        let value = |k: &str| {
            meta.iter()
                .find(|(_, key, _)| key == k)
                .and_then(|(_, _, v)| v.clone())
        };
        let path = PathBuf::from(cfg.display());
        let (Some(format), Some(header)) = (value("format_version"), value("header")) else {
            return Err(no_vault());
        };
        let format = <[u8; 4]>::try_from(format.as_slice())
            .map(u32::from_be_bytes)
            .map_err(|_| corrupt(&path, "format version unreadable"))?;
        if format > FORMAT_VERSION {
            return Err(Error::TooNew {
                path,
                found: format,
                supported: FORMAT_VERSION,
            });
        }
        let header: Header =
            rmp_serde::from_slice(&header).map_err(|_| corrupt(&path, "header unreadable"))?;
        let kek = header.kdf.derive(passphrase.expose().as_bytes())?;
        let ring = Keyring::unwrap(&kek, &header.keyring, format)
            .ok_or(Error::WrongPassphrase { path })?;
        let mut vault = Self::attach(store, ring, kek, header, access)?;
        if format < FORMAT_VERSION {
            let access = vault.access;
            vault.access = Access::ReadWrite;
            let r = vault.migrate(format);
            vault.access = access;
            r?;
        }
        Ok(vault)
    }

    /// A vault mirroring `store` in memory: the listener first (so nothing committed after
    /// the load is missed), then the full load, then the applier thread.
    fn attach(
        store: Arc<pg::Store>,
        ring: Keyring,
        kek: Kek,
        header: Header,
        access: Access,
    ) -> Result<Vault> {
        let path = PathBuf::from(store.config().display());
        let (db, control) = guard_open(&path, || {
            let (view, control) = overlay::Overlay::new(None, overlay::Mode::Memory, false)
                .map_err(|e| Error::io("cannot make the vault's mirror in memory", e))?;
            let db = redb::Builder::new()
                .create_with_backend(view)
                .map_err(|e| map_db_error(&path, e))?;
            Self::create_tables(&db, &header)?;
            Ok((db, control))
        })?;
        let vault = Vault {
            db: Arc::new(db),
            path: path.clone(),
            access,
            guard: Guard::new(&path, control),
            keyring: Arc::new(RwLock::new(Arc::new(ring))),
            kek: Arc::new(RwLock::new(kek)),
            header: Arc::new(RwLock::new(header)),
            cache: Arc::default(),
            store: Some(Attached(store.clone())),
            leases: Leases::default(),
        };
        let (notices, inbox) = std::sync::mpsc::channel();
        store.set_resync(notices.clone());
        pg::listen::start(&store, notices)?;
        let shared = mirror::Shared {
            db: vault.db.clone(),
            cache: vault.cache.clone(),
            keyring: vault.keyring.clone(),
            kek: vault.kek.clone(),
            header: vault.header.clone(),
            store,
        };
        vault.guard.run(|| mirror::reload_all(&shared))?;
        std::thread::Builder::new()
            .name("tokenvault-store-apply".into())
            .spawn(move || mirror::run_applier(shared, inbox))
            .map_err(|e| Error::io("cannot start the store's applier thread", e))?;
        Ok(vault)
    }

    /// The shared store's URL (without password), if this vault lives in PostgreSQL.
    pub fn store_url(&self) -> Option<&str> {
        self.store.as_ref().map(|a| a.0.config().display())
    }

    /// The shared store, for claims and status (`None` for a vault file).
    pub fn store(&self) -> Option<&Arc<pg::Store>> {
        self.store.as_ref().map(|a| &a.0)
    }

    /// Reads format version and header without writing the file (no integrity check, no
    /// passphrase). A file left by a crash is read through a memory view, since redb
    /// refuses to open one read-only.
    pub fn read_header(path: &Path) -> Result<(u32, Header)> {
        guard_open(path, || match redb::ReadOnlyDatabase::open(path) {
            Ok(db) => header_of(path, &db),
            Err(redb::DatabaseError::RepairAborted) => {
                let (file, locks) = file_backend(path, Access::ReadOnly)?;
                let (view, _control) =
                    overlay::Overlay::new(Some(file), overlay::Mode::Memory, locks)
                        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
                let db = redb::Builder::new()
                    .create_with_backend(view)
                    .map_err(|e| map_db_error(path, e))?;
                header_of(path, &db)
            }
            Err(e) => Err(map_db_error(path, e)),
        })
    }

    /// Upgrades an older file layout in one transaction. Format 1 is the first; each
    /// future bump adds a step `n → n+1` here, and a fixture of the old file in `fixtures/`.
    fn migrate(&self, from: u32) -> Result<()> {
        let tx = self.begin_write(redb::Durability::Immediate)?;
        #[allow(clippy::match_single_binding)]
        match from {
            // no older formats exist yet
            _ => {}
        }
        tx.wrote(pg::Table::Meta, "format_version");
        tx.guard.clone().run(|| {
            let mut meta = tx.txn.open_table(META)?;
            meta.insert("format_version", FORMAT_VERSION.to_be_bytes().as_slice())?;
            Ok(())
        })?;
        tx.commit()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How this session may use the file.
    pub fn access(&self) -> Access {
        self.access
    }

    pub fn header(&self) -> Header {
        // A poisoned lock means a panic mid-update of plain data; the value is still whole.
        self.header.read_or_recover().clone()
    }

    fn ring(&self) -> Arc<Keyring> {
        self.keyring.read_or_recover().clone()
    }

    pub fn current_term(&self) -> u32 {
        self.ring().current_term()
    }

    /// A short keyed pseudonym of a name, for logs (SPEC §9).
    pub fn pseudonym(&self, name: &str) -> String {
        self.ring().pseudonym(name)
    }

    /// The cache generation; take it before the read transaction whose result you may
    /// `cache_insert`.
    pub fn cache_generation(&self) -> u64 {
        self.cache.lock_or_recover().generation
    }

    /// The opened token of connection `key`, if cached.
    pub fn cached_token(&self, key: &str) -> Option<CachedToken> {
        self.cache.lock_or_recover().map.get(key).cloned()
    }

    /// Caches what was read, unless a commit happened since `generation` was taken.
    pub fn cache_insert(&self, generation: u64, key: &str, entry: CachedToken) {
        let mut c = self.cache.lock_or_recover();
        if c.generation != generation {
            return;
        }
        if c.map.len() >= TOKEN_CACHE_MAX {
            c.map.clear();
        }
        c.map.insert(key.to_owned(), entry);
    }

    fn cache_clear(&self) {
        let mut c = self.cache.lock_or_recover();
        c.generation += 1;
        c.map.clear();
    }

    pub fn read(&self) -> Result<Rx> {
        self.guard.run(|| {
            Ok(Rx {
                txn: self.db.begin_read()?,
                ring: self.ring(),
                guard: self.guard.clone(),
                store: self.store.as_ref().map(|a| a.0.clone()),
            })
        })
    }

    fn refuse_read_only(&self) -> Result<()> {
        match self.access {
            Access::ReadWrite => Ok(()),
            Access::ReadOnly => Err(Error::Internal(
                "this command opened the vault read-only and cannot change it; please report it"
                    .into(),
            )),
        }
    }

    fn begin_write(&self, durability: redb::Durability) -> Result<Tx> {
        self.guard.run(|| {
            let mut txn = self.db.begin_write()?;
            txn.set_durability(durability)?;
            Ok(Tx {
                txn,
                ring: self.ring(),
                cache: self.cache.clone(),
                touched: RefCell::default(),
                guard: self.guard.clone(),
                store: self.store.as_ref().map(|a| a.0.clone()),
                leases: self.leases.clone(),
                writes: RefCell::default(),
                audit_rows: RefCell::default(),
            })
        })
    }

    /// A durable write transaction. Dropped without `commit`, it changes nothing (and
    /// writes nothing).
    pub fn write(&self) -> Result<Tx> {
        self.refuse_read_only()?;
        self.begin_write(redb::Durability::Immediate)
    }

    /// A write transaction that is not synced at commit; it becomes durable with the next
    /// durable commit. For audit records of token hand-outs (SPEC §9), never for tokens.
    pub fn write_lazy(&self) -> Result<Tx> {
        self.refuse_read_only()?;
        self.begin_write(redb::Durability::None)
    }

    /// Changes the passphrase: a new salt, a new KEK, the same keyring rewrapped. Writes
    /// the header only; no record is touched.
    pub fn change_passphrase(&self, new: &Secret, kdf: Option<KdfParams>) -> Result<()> {
        if new.is_empty() {
            return Err(Error::invalid("passphrase", "must not be empty"));
        }
        let mut header = self.header();
        let mut kdf = kdf.unwrap_or_else(|| header.kdf.clone());
        kdf.salt = crypto::random_bytes(16);
        let kek: Kek = kdf.derive(new.expose().as_bytes())?;
        header.kdf = kdf;
        header.keyring = self.ring().wrap(&kek);
        header.passphrase_changed_at = Some(now());
        let tx = self.write()?;
        tx.put_header(&header)?;
        tx.commit()?;
        *self.header.write_or_recover() = header;
        *self.kek.write_or_recover() = kek;
        Ok(())
    }

    /// Adds a new data-key term and re-seals every sealed value under it, in one
    /// transaction: on any failure the vault is as before. Returns (new term, records
    /// re-sealed). Older terms are dropped from the keyring once nothing uses them.
    pub fn rekey(&self) -> Result<(u32, usize)> {
        let mut header = self.header();
        let old = self.ring();
        let kek = self.kek.read_or_recover();
        let mut next = Keyring::unwrap(&kek, &header.keyring, FORMAT_VERSION).ok_or_else(|| {
            if self.store.is_some() {
                // on the shared store, the header is the one another node's `passwd` wrote
                Error::invalid(
                    "rekey",
                    "another node changed the passphrase since this node started, so this node cannot open the new keyring; restart it with the new passphrase, or run the rekey on the node that changed it",
                )
            } else {
                Error::Internal("the keyring in the header no longer opens".into())
            }
        })?;
        let term = next.add_term();
        next.retain_current();
        let next = Arc::new(next);
        let tx = self.write()?;
        let count = tx.guard.clone().run(|| {
            let txn = &tx.txn;
            let mut count = reseal_table(
                txn,
                CLIENTS,
                names::CLIENTS,
                &old,
                &next,
                |r: &mut ClientRecord| r.secret.as_mut().into_iter().collect(),
            )?;
            count += reseal_table(
                txn,
                CONNECTIONS,
                names::CONNECTIONS,
                &old,
                &next,
                |r: &mut ConnectionRecord| vec![&mut r.secrets],
            )?;
            count += reseal_table(
                txn,
                APPLE_KEYS,
                names::APPLE_KEYS,
                &old,
                &next,
                |r: &mut AppleKeyRecord| {
                    std::iter::once(&mut r.private_key)
                        .chain(r.cached_token.as_mut())
                        .collect()
                },
            )?;
            if tx.store.is_some() {
                let mut w = tx.writes.borrow_mut();
                for (def, t) in [
                    (CLIENTS, pg::Table::Clients),
                    (CONNECTIONS, pg::Table::Connections),
                    (APPLE_KEYS, pg::Table::AppleKeys),
                ] {
                    for e in txn.open_table(def)?.iter()? {
                        w.push((t, e?.0.value().to_owned()));
                    }
                }
                w.push((pg::Table::Meta, "header".to_owned()));
            }
            header.keyring = next.wrap(&kek);
            header.rekeyed_at = Some(now());
            let mut meta = txn.open_table(META)?;
            meta.insert("header", encode(&header).as_slice())?;
            Ok(count)
        })?;
        tx.commit()?;
        self.cache_clear();
        drop(kek);
        *self.keyring.write_or_recover() = next;
        *self.header.write_or_recover() = header;
        Ok((term, count))
    }

    /// Counts per table, for `status` and backups.
    pub fn table_counts(&self) -> Result<Vec<(&'static str, u64)>> {
        self.guard.run(|| {
            let r = self.db.begin_read()?;
            Ok(vec![
                ("tenants", r.open_table(TENANTS)?.len()?),
                ("clients", r.open_table(CLIENTS)?.len()?),
                ("connections", r.open_table(CONNECTIONS)?.len()?),
                (
                    "audit",
                    match &self.store {
                        Some(a) => a.0.audit_count()?,
                        None => r.open_table(AUDIT)?.len()?,
                    },
                ),
                ("tenant_keys", r.open_table(TENANT_KEYS)?.len()?),
                ("grants", r.open_table(GRANTS)?.len()?),
                ("apple_keys", r.open_table(APPLE_KEYS)?.len()?),
            ])
        })
    }

    /// The raw redb handle, for benchmarks. Writes through it bypass sealing, the guard,
    /// and (in a read-only session) reach only memory.
    pub fn database(&self) -> &Database {
        &self.db
    }
}

fn lease_lost(keys: &[String]) -> Error {
    Error::StoreUnavailable {
        reason: format!(
            "this node's lease on {} ran out and another node took the connection over, so this node's result was not saved (the other node's is kept)",
            keys.join(", ")
        ),
    }
}

fn reseal_table<R, F>(
    txn: &redb::WriteTransaction,
    def: redb::TableDefinition<&str, &[u8]>,
    name: &'static str,
    old: &Keyring,
    next: &Keyring,
    fields: F,
) -> Result<usize>
where
    R: Serialize + DeserializeOwned,
    F: Fn(&mut R) -> Vec<&mut Sealed>,
{
    let mut table = txn.open_table(def)?;
    let keys: Vec<String> = table
        .iter()?
        .map(|e| e.map(|(k, _)| k.value().to_owned()))
        .collect::<std::result::Result<_, _>>()?;
    let mut n = 0;
    for key in keys {
        let bytes = match table.get(key.as_str())? {
            Some(g) => g.value().to_vec(),
            None => continue,
        };
        let mut rec: R = decode(name, &key, &bytes)?;
        for sealed in fields(&mut rec) {
            let plain = old.open(name, &key, sealed)?;
            *sealed = next.seal(name, &key, &plain);
        }
        table.insert(key.as_str(), encode(&rec).as_slice())?;
        n += 1;
    }
    Ok(n)
}

/// Read access shared by `Rx` and `Tx`.
macro_rules! read_api {
    () => {
        pub fn tenant(&self, name: &str) -> Result<Option<TenantRecord>> {
            self.guard.run(|| {
                let t = self.txn.open_table(TENANTS)?;
                let v = t.get(name)?;
                v.map(|g| decode("tenants", name, g.value())).transpose()
            })
        }

        pub fn tenants(&self) -> Result<Vec<(String, TenantRecord)>> {
            self.guard.run(|| {
                let t = self.txn.open_table(TENANTS)?;
                let mut out = Vec::new();
                for e in t.iter()? {
                    let (k, v) = e?;
                    out.push((
                        k.value().to_owned(),
                        decode("tenants", k.value(), v.value())?,
                    ));
                }
                Ok(out)
            })
        }

        pub fn client(&self, tenant: &str, provider: &str) -> Result<Option<ClientRecord>> {
            self.guard.run(|| {
                let key = format!("{tenant}/{provider}");
                let t = self.txn.open_table(CLIENTS)?;
                let v = t.get(key.as_str())?;
                v.map(|g| decode("clients", &key, g.value())).transpose()
            })
        }

        /// Clients of one tenant (or all), as (tenant, provider, record).
        pub fn clients(&self, tenant: Option<&str>) -> Result<Vec<(String, String, ClientRecord)>> {
            self.guard.run(|| {
                let t = self.txn.open_table(CLIENTS)?;
                let mut out = Vec::new();
                let prefix = tenant.map(|t| format!("{t}/"));
                let iter = match &prefix {
                    Some(p) => t.range::<&str>(p.as_str()..)?,
                    None => t.iter()?,
                };
                for e in iter {
                    let (k, v) = e?;
                    let key = k.value();
                    if let Some(p) = &prefix {
                        if !key.starts_with(p.as_str()) {
                            break;
                        }
                    }
                    let (tn, pn) = key.split_once('/').unwrap_or((key, ""));
                    out.push((
                        tn.to_owned(),
                        pn.to_owned(),
                        decode("clients", key, v.value())?,
                    ));
                }
                Ok(out)
            })
        }

        /// Opens a client's secret.
        pub fn client_secret(
            &self,
            tenant: &str,
            provider: &str,
            rec: &ClientRecord,
        ) -> Result<Option<Secret>> {
            self.guard.run(|| {
                let key = format!("{tenant}/{provider}");
                match &rec.secret {
                    None => Ok(None),
                    Some(s) => {
                        let plain = self.ring.open(names::CLIENTS, &key, s)?;
                        let s = std::str::from_utf8(&plain).map_err(|_| Error::Integrity {
                            table: "clients",
                            key: key.clone(),
                        })?;
                        Ok(Some(Secret::new(s)))
                    }
                }
            })
        }

        pub fn connection(&self, key: &str) -> Result<Option<ConnectionRecord>> {
            self.guard.run(|| {
                let t = self.txn.open_table(CONNECTIONS)?;
                let v = t.get(key)?;
                v.map(|g| decode("connections", key, g.value())).transpose()
            })
        }

        /// Opens a connection's tokens.
        pub fn secrets(&self, key: &str, rec: &ConnectionRecord) -> Result<TokenSecrets> {
            self.guard.run(|| {
                let plain = self.ring.open(names::CONNECTIONS, key, &rec.secrets)?;
                decode("connections", key, &plain)
            })
        }

        /// Connections whose key starts with `prefix` (`""` for all), in key order.
        pub fn connections(&self, prefix: &str) -> Result<Vec<(String, ConnectionRecord)>> {
            self.guard.run(|| {
                let mut out = Vec::new();
                self.for_each_connection(prefix, |k, r| {
                    out.push((k.to_owned(), r));
                    Ok(true)
                })?;
                Ok(out)
            })
        }

        /// Streams connections under `prefix`; `f` returns false to stop.
        pub fn for_each_connection(
            &self,
            prefix: &str,
            f: impl FnMut(&str, ConnectionRecord) -> Result<bool>,
        ) -> Result<()> {
            self.for_each_connection_after(prefix, None, f)
        }

        /// Streams connections under `prefix` whose key sorts after `after` (exclusive), in
        /// key order; `f` returns false to stop. A page of `list` starts here.
        pub fn for_each_connection_after(
            &self,
            prefix: &str,
            after: Option<&str>,
            mut f: impl FnMut(&str, ConnectionRecord) -> Result<bool>,
        ) -> Result<()> {
            self.for_each_connection_raw_after(prefix, after, |key, _bytes, full| f(key, full()?))
        }

        /// `for_each_connection_after` for a filter: `f` gets each record's stored bytes
        /// (to rule it out unread, or to read its `ConnectionHead`) and a function that
        /// decodes the whole record, to call only for the ones it keeps.
        pub fn for_each_connection_raw_after(
            &self,
            prefix: &str,
            after: Option<&str>,
            mut f: impl FnMut(&str, &[u8], &dyn Fn() -> Result<ConnectionRecord>) -> Result<bool>,
        ) -> Result<()> {
            self.guard.run(|| {
                let t = self.txn.open_table(CONNECTIONS)?;
                let start = match after {
                    Some(a) if a > prefix => a,
                    _ => prefix,
                };
                for e in t.range::<&str>(start..)? {
                    let (k, v) = e?;
                    let key = k.value();
                    if after == Some(key) {
                        continue;
                    }
                    if !key.starts_with(prefix) {
                        break;
                    }
                    let bytes = v.value();
                    let full = || decode("connections", key, bytes);
                    if !f(key, bytes, &full)? {
                        break;
                    }
                }
                Ok(())
            })
        }

        /// The earliest entries of the due index, up to `limit`, with due time ≤ `until`.
        pub fn due(&self, until: i64, limit: usize) -> Result<Vec<(i64, String)>> {
            self.guard.run(|| {
                let t = self.txn.open_table(DUE)?;
                let mut out = Vec::new();
                for e in t.iter()? {
                    let (k, _) = e?;
                    let (at, key) = k.value();
                    if at > until || out.len() >= limit {
                        break;
                    }
                    out.push((at, key.to_owned()));
                }
                Ok(out)
            })
        }

        /// The earliest due time, if any connection is scheduled.
        pub fn next_due(&self) -> Result<Option<(i64, String)>> {
            self.guard.run(|| {
                let t = self.txn.open_table(DUE)?;
                let first = t.first()?;
                Ok(first.map(|(k, _)| {
                    let (at, key) = k.value();
                    (at, key.to_owned())
                }))
            })
        }

        /// Audit records after `since` (unix seconds), optionally of one tenant.
        pub fn audit(&self, tenant: Option<&str>, since: i64) -> Result<Vec<AuditRecord>> {
            if let Some(store) = &self.store {
                return store
                    .audit(tenant.map(str::to_owned), since)?
                    .into_iter()
                    .map(|(id, v)| decode("audit", &id.to_string(), &v))
                    .collect();
            }
            self.guard.run(|| {
                let t = self.txn.open_table(AUDIT)?;
                let mut out = Vec::new();
                for e in t.iter()?.rev() {
                    let (k, v) = e?;
                    let rec: AuditRecord = decode("audit", &k.value().to_string(), v.value())?;
                    if rec.at < since {
                        break;
                    }
                    if tenant.is_none() || rec.tenant.as_deref() == tenant {
                        out.push(rec);
                    }
                }
                out.reverse();
                Ok(out)
            })
        }

        /// Streams every audit record, oldest first; `f` returns false to stop. (Backups.)
        pub fn for_each_audit(
            &self,
            mut f: impl FnMut(u64, AuditRecord) -> Result<bool>,
        ) -> Result<()> {
            if let Some(store) = &self.store {
                for (id, v) in store.audit(None, i64::MIN)? {
                    let seq = id.max(0) as u64;
                    if !f(seq, decode("audit", &seq.to_string(), &v)?)? {
                        break;
                    }
                }
                return Ok(());
            }
            self.guard.run(|| {
                let t = self.txn.open_table(AUDIT)?;
                for e in t.iter()? {
                    let (k, v) = e?;
                    let seq = k.value();
                    if !f(seq, decode("audit", &seq.to_string(), v.value())?)? {
                        break;
                    }
                }
                Ok(())
            })
        }

        pub fn tenant_key(&self, id: &str) -> Result<Option<TenantKeyRecord>> {
            self.guard.run(|| {
                let t = self.txn.open_table(TENANT_KEYS)?;
                let v = t.get(id)?;
                v.map(|g| decode("tenant_keys", id, g.value())).transpose()
            })
        }

        pub fn tenant_keys(&self, tenant: Option<&str>) -> Result<Vec<(String, TenantKeyRecord)>> {
            self.guard.run(|| {
                let t = self.txn.open_table(TENANT_KEYS)?;
                let mut out = Vec::new();
                for e in t.iter()? {
                    let (k, v) = e?;
                    let rec: TenantKeyRecord = decode("tenant_keys", k.value(), v.value())?;
                    if tenant.is_none_or(|t| t == rec.tenant) {
                        out.push((k.value().to_owned(), rec));
                    }
                }
                Ok(out)
            })
        }

        pub fn grant(&self, uid: u32) -> Result<Option<String>> {
            self.guard.run(|| {
                let t = self.txn.open_table(GRANTS)?;
                let v = t.get(uid)?;
                Ok(v.map(|g| g.value().to_owned()))
            })
        }

        pub fn grants(&self) -> Result<Vec<(u32, String)>> {
            self.guard.run(|| {
                let t = self.txn.open_table(GRANTS)?;
                let mut out = Vec::new();
                for e in t.iter()? {
                    let (k, v) = e?;
                    out.push((k.value(), v.value().to_owned()));
                }
                Ok(out)
            })
        }

        pub fn apple_keys(&self, tenant: &str) -> Result<Vec<AppleKeyRecord>> {
            self.guard.run(|| {
                let t = self.txn.open_table(APPLE_KEYS)?;
                let prefix = format!("{tenant}/");
                let mut out = Vec::new();
                for e in t.range::<&str>(prefix.as_str()..)? {
                    let (k, v) = e?;
                    if !k.value().starts_with(&prefix) {
                        break;
                    }
                    out.push(decode("apple_keys", k.value(), v.value())?);
                }
                Ok(out)
            })
        }

        /// Opens any sealed value of record `key` in `table` (one of `schema::names`).
        pub fn open_sealed(
            &self,
            table: &'static str,
            key: &str,
            sealed: &Sealed,
        ) -> Result<zeroize::Zeroizing<Vec<u8>>> {
            self.guard.run(|| self.ring.open(table, key, sealed))
        }

        /// Seals `plain` for record `key` in `table` under the current term.
        pub fn seal(&self, table: &str, key: &str, plain: &[u8]) -> Sealed {
            self.ring.seal(table, key, plain)
        }

        /// Opens an Apple key's PKCS#8 DER.
        pub fn apple_private_key(
            &self,
            tenant: &str,
            rec: &AppleKeyRecord,
        ) -> Result<zeroize::Zeroizing<Vec<u8>>> {
            self.guard.run(|| {
                let key = format!("{tenant}/{}", rec.key_id);
                self.ring.open(names::APPLE_KEYS, &key, &rec.private_key)
            })
        }
    };
}

/// A read transaction: a consistent snapshot.
pub struct Rx {
    txn: redb::ReadTransaction,
    ring: Arc<Keyring>,
    guard: Arc<Guard>,
    /// On the shared store: the audit log is read from PostgreSQL (it is not mirrored).
    store: Option<Arc<pg::Store>>,
}

impl std::fmt::Debug for Rx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rx")
    }
}

impl Rx {
    read_api!();
}

/// A write transaction. Nothing it does is visible or durable until `commit`.
pub struct Tx {
    txn: redb::WriteTransaction,
    ring: Arc<Keyring>,
    cache: Arc<Mutex<TokenCache>>,
    /// Connection keys written by this transaction, dropped from the cache at commit.
    touched: RefCell<Vec<String>>,
    guard: Arc<Guard>,
    /// On the shared store: where `commit` sends the rows first.
    store: Option<Arc<pg::Store>>,
    /// Every (table, key) this transaction wrote, for the store.
    writes: RefCell<Vec<(pg::Table, String)>>,
    leases: Leases,
    /// Audit records to append (on the store they go to PostgreSQL only).
    audit_rows: RefCell<Vec<AuditRecord>>,
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tx")
    }
}

impl Tx {
    read_api!();

    /// Applies everything atomically; with `Durability::Immediate`, on disk when it returns.
    /// The first commit of a session is also the first write that reaches the file (it
    /// arms the session's view; see the module documentation).
    ///
    /// On the shared store the rows this transaction wrote go to PostgreSQL first, in one
    /// transaction that also notifies the other nodes; only then does the mirror commit.
    /// If PostgreSQL fails, nothing is written anywhere and the caller gets
    /// `Error::StoreUnavailable`.
    pub fn commit(self) -> Result<()> {
        let lost = self.commit_lost()?;
        if lost.is_empty() {
            Ok(())
        } else {
            Err(lease_lost(&lost))
        }
    }

    /// `commit`, for the refresh group commit: a connection this node holds a lease on is
    /// written only while the lease is still its own (fenced by the lease token). Returns
    /// those whose lease was lost to another node: their rows were not written (and the
    /// mirror re-reads them); every other row was committed.
    pub fn commit_lost(self) -> Result<Vec<String>> {
        let Tx {
            txn,
            cache,
            touched,
            guard,
            store,
            writes,
            audit_rows,
            leases,
            ..
        } = self;
        let mut lost = Vec::new();
        if let Some(store) = &store {
            let mut keys = writes.into_inner();
            keys.sort();
            keys.dedup();
            let batch = guard.run(|| {
                let mut b = pg::Batch::default();
                for (t, k) in &keys {
                    b.rows.push(mirror::row_of(&txn, *t, k)?);
                }
                {
                    let held = leases.lock_or_recover();
                    for (t, k) in &keys {
                        if *t == pg::Table::Connections
                            && let Some(token) = held.get(k)
                        {
                            b.fences.insert(k.clone(), token.clone());
                        }
                    }
                }
                for a in audit_rows.into_inner() {
                    b.audit.push(pg::AuditRow {
                        at: a.at,
                        tenant: a.tenant.clone(),
                        value: encode(&a),
                    });
                }
                Ok(b)
            })?;
            lost = store.commit(batch)?;
        }
        guard.run(|| {
            guard.control.arm().map_err(|e| {
                Error::io(
                    format!("cannot write the vault {}", guard.path.display()),
                    e,
                )
            })?;
            txn.commit()?;
            Ok(())
        })?;
        let touched = touched.into_inner();
        let mut c = cache.lock_or_recover();
        c.generation += 1;
        for k in &touched {
            c.map.remove(k);
        }
        drop(c);
        if !lost.is_empty() {
            if let Some(store) = &store {
                store.resync(&lost);
            }
            let mut held = leases.lock_or_recover();
            for k in &lost {
                held.remove(k);
            }
        }
        Ok(lost)
    }

    /// Connection keys this transaction has written so far (the group commit maps them
    /// back to its jobs).
    pub fn touched_count(&self) -> usize {
        self.touched.borrow().len()
    }

    /// The connection keys written since `touched_count` returned `from`.
    pub fn touched_since(&self, from: usize) -> Vec<String> {
        self.touched
            .borrow()
            .get(from..)
            .unwrap_or_default()
            .to_vec()
    }

    /// Notes a write of (table, key) for the shared store.
    fn wrote(&self, table: pg::Table, key: &str) {
        if self.store.is_some() {
            self.writes.borrow_mut().push((table, key.to_owned()));
        }
    }

    fn put_header(&self, header: &Header) -> Result<()> {
        self.wrote(pg::Table::Meta, "header");
        self.guard.run(|| {
            let mut meta = self.txn.open_table(META)?;
            meta.insert("header", encode(header).as_slice())?;
            Ok(())
        })
    }

    pub fn put_tenant(&self, name: &str, rec: &TenantRecord) -> Result<()> {
        self.wrote(pg::Table::Tenants, name);
        self.guard.run(|| {
            self.txn
                .open_table(TENANTS)?
                .insert(name, encode(rec).as_slice())?;
            Ok(())
        })
    }

    /// Removes a tenant and everything it owns. Returns the number of connections removed.
    pub fn remove_tenant(&self, name: &str) -> Result<usize> {
        self.guard.run(|| {
            let prefix = format!("{name}/");
            let conns = self.connections(&prefix)?;
            for (k, _) in &conns {
                self.remove_connection(k)?;
            }
            for (_, p, _) in self.clients(Some(name))? {
                self.remove_client(name, &p)?;
            }
            if self.store.is_some() {
                // The store needs the keys the `retain`s below remove.
                for (id, _) in self.tenant_keys(Some(name))? {
                    self.wrote(pg::Table::TenantKeys, &id);
                }
                for (uid, t) in self.grants()? {
                    if t == name {
                        self.wrote(pg::Table::Grants, &uid.to_string());
                    }
                }
                for rec in self.apple_keys(name)? {
                    self.wrote(pg::Table::AppleKeys, &format!("{name}/{}", rec.key_id));
                }
            }
            {
                let mut keys = self.txn.open_table(TENANT_KEYS)?;
                keys.retain(|_, v| {
                    rmp_serde::from_slice::<TenantKeyRecord>(v)
                        .map(|r| r.tenant != name)
                        .unwrap_or(true)
                })?;
                let mut grants = self.txn.open_table(GRANTS)?;
                grants.retain(|_, t| t != name)?;
                let mut apple = self.txn.open_table(APPLE_KEYS)?;
                apple.retain(|k, _| !k.starts_with(&prefix))?;
            }
            self.wrote(pg::Table::Tenants, name);
            self.txn.open_table(TENANTS)?.remove(name)?;
            Ok(conns.len())
        })
    }

    /// Stores a client; `secret` (if given) is sealed to this record. `keep_secret` keeps
    /// the sealed secret already stored when none is given.
    pub fn put_client(
        &self,
        tenant: &str,
        provider: &str,
        mut rec: ClientRecord,
        secret: Option<&Secret>,
    ) -> Result<()> {
        self.guard.run(|| {
            let key = format!("{tenant}/{provider}");
            self.wrote(pg::Table::Clients, &key);
            if let Some(s) = secret {
                rec.secret = Some(self.ring.seal(names::CLIENTS, &key, s.expose().as_bytes()));
            }
            self.txn
                .open_table(CLIENTS)?
                .insert(key.as_str(), encode(&rec).as_slice())?;
            Ok(())
        })
    }

    pub fn remove_client(&self, tenant: &str, provider: &str) -> Result<bool> {
        self.guard.run(|| {
            let key = format!("{tenant}/{provider}");
            self.wrote(pg::Table::Clients, &key);
            Ok(self
                .txn
                .open_table(CLIENTS)?
                .remove(key.as_str())?
                .is_some())
        })
    }

    /// Seals `secrets` into `rec` for record `key`.
    pub fn seal_secrets(&self, key: &str, rec: &mut ConnectionRecord, secrets: &TokenSecrets) {
        let plain = zeroize::Zeroizing::new(encode(secrets));
        rec.secrets = self.ring.seal(names::CONNECTIONS, key, &plain);
    }

    /// A sealed value for a new record, before it exists.
    pub fn seal_new(&self, key: &str, secrets: &TokenSecrets) -> Sealed {
        let plain = zeroize::Zeroizing::new(encode(secrets));
        self.ring.seal(names::CONNECTIONS, key, &plain)
    }

    /// Stores a connection record and keeps the due index in step with `rec.due_at`.
    pub fn put_connection(&self, key: &str, rec: &ConnectionRecord) -> Result<()> {
        self.guard.run(|| {
            self.touched.borrow_mut().push(key.to_owned());
            self.wrote(pg::Table::Connections, key);
            let mut t = self.txn.open_table(CONNECTIONS)?;
            let old_due = match t.insert(key, encode(rec).as_slice())? {
                Some(old) => rmp_serde::from_slice::<ConnectionRecord>(old.value())
                    .ok()
                    .and_then(|o| o.due_at),
                None => None,
            };
            if old_due != rec.due_at {
                let mut due = self.txn.open_table(DUE)?;
                if let Some(at) = old_due {
                    due.remove((at, key))?;
                }
                if let Some(at) = rec.due_at {
                    due.insert((at, key), ())?;
                }
            }
            Ok(())
        })
    }

    pub fn remove_connection(&self, key: &str) -> Result<Option<ConnectionRecord>> {
        self.guard.run(|| {
            self.touched.borrow_mut().push(key.to_owned());
            self.wrote(pg::Table::Connections, key);
            let mut t = self.txn.open_table(CONNECTIONS)?;
            let old: Option<ConnectionRecord> = match t.remove(key)? {
                Some(g) => rmp_serde::from_slice(g.value()).ok(),
                None => None,
            };
            if let Some(at) = old.as_ref().and_then(|o| o.due_at) {
                self.txn.open_table(DUE)?.remove((at, key))?;
            }
            Ok(old)
        })
    }

    pub fn append_audit(&self, rec: &AuditRecord) -> Result<()> {
        if self.store.is_some() {
            // PostgreSQL numbers the records (a bigserial shared by every node).
            self.audit_rows.borrow_mut().push(rec.clone());
            return Ok(());
        }
        self.guard.run(|| {
            let mut t = self.txn.open_table(AUDIT)?;
            let next = t.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
            t.insert(next, encode(rec).as_slice())?;
            Ok(())
        })
    }

    pub fn put_tenant_key(&self, id: &str, rec: &TenantKeyRecord) -> Result<()> {
        self.wrote(pg::Table::TenantKeys, id);
        self.guard.run(|| {
            self.txn
                .open_table(TENANT_KEYS)?
                .insert(id, encode(rec).as_slice())?;
            Ok(())
        })
    }

    pub fn put_grant(&self, uid: u32, tenant: &str) -> Result<()> {
        self.wrote(pg::Table::Grants, &uid.to_string());
        self.guard.run(|| {
            self.txn.open_table(GRANTS)?.insert(uid, tenant)?;
            Ok(())
        })
    }

    pub fn remove_grant(&self, uid: u32) -> Result<bool> {
        self.wrote(pg::Table::Grants, &uid.to_string());
        self.guard
            .run(|| Ok(self.txn.open_table(GRANTS)?.remove(uid)?.is_some()))
    }

    /// Stores an Apple signing key; `der` (if given) is sealed to this record.
    pub fn put_apple_key(
        &self,
        tenant: &str,
        mut rec: AppleKeyRecord,
        der: Option<&[u8]>,
    ) -> Result<()> {
        self.guard.run(|| {
            let key = format!("{tenant}/{}", rec.key_id);
            self.wrote(pg::Table::AppleKeys, &key);
            if let Some(der) = der {
                rec.private_key = self.ring.seal(names::APPLE_KEYS, &key, der);
            }
            self.txn
                .open_table(APPLE_KEYS)?
                .insert(key.as_str(), encode(&rec).as_slice())?;
            Ok(())
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn vault(dir: &Path) -> (PathBuf, Secret) {
        let path = dir.join("v.redb");
        let pass = Secret::new("test passphrase");
        let v = Vault::init(&path, &pass, KdfParams::new(19, 2, 1).unwrap()).unwrap();
        let tx = v.write().unwrap();
        tx.put_tenant("acme", &TenantRecord { created_at: 1 })
            .unwrap();
        tx.commit().unwrap();
        (path, pass)
    }

    /// What happens when redb panics inside a session (here simulated inside the guard):
    /// the caller gets `Corrupt`, every later read and write is refused, and nothing more
    /// reaches the file, not even the close — though the session had already written.
    #[test]
    fn a_caught_panic_stops_the_session_and_writes_nothing_more() {
        let dir = tempfile::tempdir().unwrap();
        let (path, pass) = vault(dir.path());
        let v = Vault::open(&path, &pass).unwrap();
        let tx = v.write().unwrap();
        tx.put_tenant("beta", &TenantRecord { created_at: 2 })
            .unwrap();
        tx.commit().unwrap(); // armed: this session writes straight to the file now
        let after_commit = std::fs::read(&path).unwrap();
        let tx = v.write().unwrap();
        tx.put_tenant("gamma", &TenantRecord { created_at: 3 })
            .unwrap();
        let r: Result<()> = v.guard.run(|| panic!("simulated storage-engine panic"));
        let e = r.unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("tokenvault doctor"), "{e}");
        assert!(matches!(tx.commit(), Err(Error::Corrupt { .. })));
        assert!(matches!(v.read(), Err(Error::Corrupt { .. })));
        assert!(matches!(v.write(), Err(Error::Corrupt { .. })));
        drop(v);
        assert!(
            std::fs::read(&path).unwrap() == after_commit,
            "the poisoned session wrote (its close included)"
        );
        // the file is as the last good commit left it, and opens
        let v = Vault::open_read_only(&path, &pass).unwrap();
        let names: Vec<String> = v
            .read()
            .unwrap()
            .tenants()
            .unwrap()
            .into_iter()
            .map(|t| t.0)
            .collect();
        assert_eq!(names, ["acme", "beta"]);
    }

    #[test]
    fn a_read_only_session_refuses_to_write_and_leaves_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let (path, pass) = vault(dir.path());
        let before = std::fs::read(&path).unwrap();
        let v = Vault::open_read_only(&path, &pass).unwrap();
        assert_eq!(v.read().unwrap().tenants().unwrap().len(), 1);
        assert!(v.write().is_err());
        assert!(v.write_lazy().is_err());
        assert!(v.rekey().is_err());
        drop(v);
        assert!(std::fs::read(&path).unwrap() == before);
    }

    /// A writing session that never commits (a refused command) leaves the file as it was;
    /// the first commit writes, and the file then opens cleanly.
    #[test]
    fn a_writing_session_writes_nothing_until_it_commits() {
        let dir = tempfile::tempdir().unwrap();
        let (path, pass) = vault(dir.path());
        let before = std::fs::read(&path).unwrap();
        let v = Vault::open(&path, &pass).unwrap();
        let tx = v.write().unwrap();
        tx.put_tenant("beta", &TenantRecord { created_at: 2 })
            .unwrap();
        drop(tx);
        drop(v);
        assert!(
            std::fs::read(&path).unwrap() == before,
            "an uncommitted session wrote"
        );
        let v = Vault::open(&path, &pass).unwrap();
        let tx = v.write().unwrap();
        tx.put_tenant("beta", &TenantRecord { created_at: 2 })
            .unwrap();
        tx.commit().unwrap();
        drop(v);
        assert!(std::fs::read(&path).unwrap() != before);
        assert!(
            redb::ReadOnlyDatabase::open(&path).is_ok(),
            "closed cleanly"
        );
        let v = Vault::open_read_only(&path, &pass).unwrap();
        assert_eq!(v.read().unwrap().tenants().unwrap().len(), 2);
    }
}
