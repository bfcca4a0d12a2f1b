//! The library's one error type at the engine boundary, with the exit code (§3) and the
//! socket error code (§6) each variant maps to.
//!
//! Messages say what happened and what to do next. They never carry a secret: variants
//! hold names, paths and reasons, never token or key material.

use std::path::PathBuf;

/// Exit codes of SPEC §3.
pub mod exit {
    pub const OK: i32 = 0;
    pub const OTHER: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const LOCKED: i32 = 3;
    pub const NOT_FOUND: i32 = 4;
    pub const FORBIDDEN: i32 = 5;
    pub const NEEDS_REAUTH: i32 = 6;
    pub const UNAVAILABLE: i32 = 7;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "wrong passphrase for vault {path}: check the passphrase file or TOKENVAULT_PASSPHRASE and try again"
    )]
    WrongPassphrase { path: PathBuf },

    #[error(
        "vault {path} is in use by another process (a running `tokenvault serve`?): stop it, or let the command reach the daemon through its socket"
    )]
    VaultInUse { path: PathBuf },

    #[error(
        "no passphrase given and no terminal to ask on: use --passphrase-file, TOKENVAULT_PASSPHRASE_FILE or TOKENVAULT_PASSPHRASE"
    )]
    NoPassphrase,

    #[error("no vault at {path}: create one with `tokenvault init` or pass --vault")]
    NoVault { path: PathBuf },

    #[error(
        "a file already exists at {path}: `init` never overwrites; choose another --vault path or remove the file yourself"
    )]
    VaultExists { path: PathBuf },

    #[error(
        "vault {path} is not a readable tokenvault file ({reason}); nothing was written to it: run `tokenvault doctor` to see what is damaged and `tokenvault doctor --salvage FILE --recipient AGE_RECIPIENT` to save every record that still opens, or restore it from a backup"
    )]
    Corrupt { path: PathBuf, reason: String },

    #[error(
        "vault {path} has format version {found}, newer than this tokenvault understands ({supported}): upgrade tokenvault"
    )]
    TooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    #[error(
        "the record {table}/{key} failed its integrity check (tampered, corrupted, or moved from another record): restore it from a backup or remove and re-import it (`tokenvault doctor` lists every damaged record)"
    )]
    Integrity { table: &'static str, key: String },

    #[error("{what} not found: {name}")]
    NotFound { what: &'static str, name: String },

    #[error("{what} already exists: {name}")]
    AlreadyExists { what: &'static str, name: String },

    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },

    #[error("forbidden: {0}")]
    Forbidden(String),

    #[error("unauthorized: {0}")]
    Unauthorized(String),

    #[error(
        "{connection} needs re-authorisation ({reason}): run `tokenvault connect {connection}` or `put` a new token"
    )]
    NeedsReauth { connection: String, reason: String },

    #[error("configuration error: {0}")]
    Config(String),

    #[error("provider unavailable for {connection} ({reason}): retry later")]
    ProviderUnavailable { connection: String, reason: String },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "storage error ({0}): the vault file may be damaged or the disk full; check free space and `tokenvault status`"
    )]
    Storage(String),

    #[error("internal error: {0}")]
    Internal(String),

    // The backup's path came in a request: kept in the variant, not in the message (answers
    // never quote a request's free-form values back).
    #[error("cannot decrypt the backup file: {reason}")]
    BackupKey { path: PathBuf, reason: String },

    #[error(
        "the backup file is damaged or incomplete: {reason}. It cannot be restored as is; use another copy of the backup"
    )]
    BackupInvalid { path: PathBuf, reason: String },

    #[error(
        "the backup conflicts with the target vault ({0}); nothing was restored: pass --replace to replace them with the backup's copy"
    )]
    BackupConflict(String),
    /// A directory or file `serve` would rely on (the socket's directory, the lock file, a
    /// socket in the way) that someone else could control. Exit 1.
    #[error("unsafe {what} {path}: {reason}")]
    Unsafe {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },

    /// A wrong passphrase, with advice that fits where it came from (a file, the
    /// environment, or the prompt): see `cli::passphrase::explain`.
    #[error("wrong passphrase for vault {path}: {advice}")]
    WrongPassphraseFrom { path: PathBuf, advice: String },

    /// A second `serve` on a socket whose daemon lock is held.
    #[error(
        "another `tokenvault serve` is already running on the socket {socket} (its lock {socket}.lock is in use): stop that daemon first, or give this one another --socket"
    )]
    DaemonRunning { socket: PathBuf },

    /// A client library call found no daemon on the socket.
    #[error(
        "no tokenvault daemon answers on {socket}: start `tokenvault serve`, or point TOKENVAULT_SOCKET at its socket"
    )]
    NoDaemon { socket: PathBuf },

    /// An error the daemon answered with, carried back to the CLI by its protocol code.
    #[error("{message}")]
    Remote { code: String, message: String },

    /// Waiting for something outside tokenvault (the browser's redirect to the loopback
    /// listener, a pasted URL) ran out of time. Exit 1: not a usage error, nothing to retry
    /// at the provider.
    #[error("{0}")]
    TimedOut(String),

    /// The shared PostgreSQL store (SPEC §12) did not answer or refused a write. Exit 7:
    /// retry when the database is back; nothing was changed.
    #[error(
        "the shared PostgreSQL store is unavailable ({reason}); nothing was changed: check the database and the `[store]` settings, then retry"
    )]
    StoreUnavailable { reason: String },

    #[error(
        "the database {url} already holds a tokenvault vault: `init --store` never overwrites; use another database, or drop its tables yourself"
    )]
    StoreExists { url: String },

    #[error(
        "no vault in the database {url}: create one with `tokenvault init --store {url}` (or `tokenvault store migrate --to {url}` from a vault file)"
    )]
    NoStoreVault { url: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Error::Invalid {
            what,
            reason: reason.into(),
        }
    }

    pub fn not_found(what: &'static str, name: impl Into<String>) -> Self {
        Error::NotFound {
            what,
            name: name.into(),
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Exit code of SPEC §3.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::WrongPassphrase { .. } | Error::VaultInUse { .. } | Error::NoPassphrase => {
                exit::LOCKED
            }
            Error::WrongPassphraseFrom { .. } | Error::DaemonRunning { .. } => exit::LOCKED,
            Error::BackupKey { .. } => exit::LOCKED,
            Error::NotFound { .. } | Error::NoVault { .. } => exit::NOT_FOUND,
            Error::NoStoreVault { .. } => exit::NOT_FOUND,
            Error::StoreUnavailable { .. } => exit::UNAVAILABLE,
            Error::Forbidden(_) | Error::Unauthorized(_) => exit::FORBIDDEN,
            Error::NeedsReauth { .. } | Error::Config(_) => exit::NEEDS_REAUTH,
            Error::ProviderUnavailable { .. } => exit::UNAVAILABLE,
            Error::Invalid { .. } => exit::USAGE,
            Error::Remote { code, .. } => match code.as_str() {
                "locked" => exit::LOCKED,
                "not_found" => exit::NOT_FOUND,
                "forbidden" | "unauthorized" => exit::FORBIDDEN,
                "needs_reauth" | "config_error" => exit::NEEDS_REAUTH,
                "provider_unavailable" => exit::UNAVAILABLE,
                "bad_request" => exit::USAGE,
                _ => exit::OTHER,
            },
            _ => exit::OTHER,
        }
    }

    /// Error code of the socket protocol (SPEC §6).
    pub fn code(&self) -> &'static str {
        match self {
            Error::WrongPassphrase { .. } | Error::VaultInUse { .. } | Error::NoPassphrase => {
                "locked"
            }
            Error::WrongPassphraseFrom { .. } | Error::DaemonRunning { .. } => "locked",
            Error::NotFound { .. } | Error::NoVault { .. } => "not_found",
            Error::NoStoreVault { .. } => "not_found",
            Error::StoreUnavailable { .. } => "provider_unavailable",
            Error::Forbidden(_) => "forbidden",
            Error::Unauthorized(_) => "unauthorized",
            Error::NeedsReauth { .. } => "needs_reauth",
            Error::Config(_) => "config_error",
            Error::ProviderUnavailable { .. } => "provider_unavailable",
            Error::Invalid { .. } | Error::AlreadyExists { .. } => "bad_request",
            Error::BackupKey { .. } | Error::BackupInvalid { .. } | Error::BackupConflict(_) => {
                "bad_request"
            }
            Error::Remote { code, .. } => match code.as_str() {
                "locked" => "locked",
                "not_found" => "not_found",
                "forbidden" => "forbidden",
                "unauthorized" => "unauthorized",
                "needs_reauth" => "needs_reauth",
                "config_error" => "config_error",
                "provider_unavailable" => "provider_unavailable",
                "bad_request" => "bad_request",
                _ => "internal",
            },
            _ => "internal",
        }
    }
}

impl From<redb::Error> for Error {
    fn from(e: redb::Error) -> Self {
        Error::Storage(e.to_string())
    }
}

macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self { Error::Storage(e.to_string()) }
        }
    )*};
}
storage_from!(
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::SetDurabilityError
);
