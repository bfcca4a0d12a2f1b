//! Test helpers: throw-away vaults in temp dirs, the real binary with a clean environment,
//! in-process engines.
#![allow(dead_code)]

pub mod apple;
pub mod browser;
pub mod fake_provider;
pub mod other_uid;
pub mod postgres;
pub mod webhook;

use assert_cmd::Command;
use std::path::{Path, PathBuf};
use tempfile::TempDir;
use tokenvault::contract::Caller;
use tokenvault::engine::Engine;
use tokenvault::secret::Secret;
use tokenvault::vault::{Vault, crypto::KdfParams};

pub mod daemon;
pub use daemon::*;

pub const PASSPHRASE: &str = "correct horse battery staple";

/// The cheapest KDF parameters `init` accepts, so tests stay fast.
pub fn fast_kdf() -> KdfParams {
    KdfParams::new(19, 2, 1).unwrap()
}

pub fn admin() -> Caller {
    Caller::Admin {
        actor: "test".into(),
    }
}

/// A temp dir with a vault (not yet created unless `new_init` is used), a passphrase file,
/// and environment pointing every default path inside the temp dir.
pub struct TestVault {
    pub dir: TempDir,
    pub path: PathBuf,
    pub pass_file: PathBuf,
}

impl TestVault {
    /// A temp dir and passphrase file; no vault yet.
    pub fn empty() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pass_file = dir.path().join("pass");
        write_private(&pass_file, PASSPHRASE.as_bytes());
        let path = dir.path().join("data/vault.redb");
        TestVault {
            dir,
            path,
            pass_file,
        }
    }

    /// A temp dir with an initialised vault (fast KDF).
    pub fn new() -> Self {
        let tv = Self::empty();
        Vault::init(&tv.path, &Secret::new(PASSPHRASE), fast_kdf()).unwrap();
        tv
    }

    /// The real binary with a clean environment aimed at this vault.
    pub fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("tokenvault").unwrap();
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("XDG_DATA_HOME", self.dir.path().join("xdg-data"))
            .env("XDG_CONFIG_HOME", self.dir.path().join("xdg-config"))
            .env("XDG_RUNTIME_DIR", self.dir.path().join("run"))
            .env("TOKENVAULT_VAULT", &self.path)
            .env(
                "TOKENVAULT_SOCKET",
                self.dir.path().join("run/tokenvault.sock"),
            )
            .env("TOKENVAULT_PASSPHRASE_FILE", &self.pass_file)
            .timeout(std::time::Duration::from_secs(60));
        c
    }

    /// An engine on this vault, in this process.
    pub fn engine(&self) -> Engine {
        Engine::new(Vault::open(&self.path, &Secret::new(PASSPHRASE)).unwrap())
    }

    pub fn file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let p = self.dir.path().join(name);
        write_private(&p, contents);
        p
    }
}

pub fn write_private(p: &Path, contents: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(p, contents).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
}

pub fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub mod backup;

/// The next status change on an event receiver, skipping the other kinds of event
/// (refresh results, admin changes, …); panics if none is queued.
#[allow(dead_code)]
pub fn next_status(
    events: &mut tokio::sync::broadcast::Receiver<tokenvault::contract::Event>,
) -> tokenvault::contract::StatusEvent {
    loop {
        let e = events.try_recv().expect("a queued status event");
        if let Some(s) = e.as_status() {
            return s;
        }
    }
}
