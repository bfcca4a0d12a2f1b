//! A throw-away PostgreSQL cluster for the store tests: `initdb` + `pg_ctl` from Debian's
//! `postgresql` package (`/usr/lib/postgresql/*/bin`), in a temp dir, on a free port of
//! 127.0.0.1, its unix socket inside the temp dir, password authentication over TCP (so the
//! password handling of `[store]` is exercised), stopped with `pg_ctl stop -m immediate`
//! when the last handle drops (also on a panic: the handle unwinds).
//!
//! When the tests run as root the cluster runs as the `postgres` user (`runuser`), since
//! PostgreSQL refuses to run as root; the temp dir is handed to that user.
//!
//! One cluster per test process is shared through a `Weak`: nextest runs every test in
//! its own process, so in practice each test starts one (about a second), and `cargo test`
//! threads share it. Each test takes its own database (`Pg::database`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, Weak};

pub const SUPERUSER: &str = "postgres";
pub const PASSWORD: &str = "pg-test-password-not-a-secret";

/// A running cluster.
pub struct Pg {
    pub dir: tempfile::TempDir,
    pub port: u16,
    bin: PathBuf,
    as_postgres: bool,
    next_db: Mutex<u32>,
}

static SHARED: Mutex<Weak<Pg>> = Mutex::new(Weak::new());

/// The directory of `initdb`/`pg_ctl`, the newest installed major version first.
pub fn bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists() && p.join("pg_ctl").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Pg {
    /// The shared cluster of this process, started on first use. Panics with what to
    /// install when PostgreSQL is missing (the README's test command installs it).
    pub fn shared() -> Arc<Pg> {
        let mut slot = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pg) = slot.upgrade() {
            return pg;
        }
        let pg = Arc::new(Pg::start());
        *slot = Arc::downgrade(&pg);
        pg
    }

    fn run(&self, prog: &str, args: &[&str]) -> std::process::Output {
        let exe = self.bin.join(prog);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args).current_dir(self.dir.path());
        cmd.output()
            .unwrap_or_else(|e| panic!("cannot run {prog}: {e}"))
    }

    fn start() -> Pg {
        let bin = bin_dir().expect(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run scripts/test, or apt-get install postgresql",
        );
        let dir = tempfile::Builder::new().prefix("tv-pg").tempdir().unwrap();
        let as_postgres = nix::unistd::geteuid().is_root();
        if as_postgres {
            let st = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(
                st.success(),
                "cannot hand the temp dir to the postgres user"
            );
        }
        let pg = Pg {
            dir,
            port: 0,
            bin,
            as_postgres,
            next_db: Mutex::new(0),
        };
        let pwfile = pg.dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        if as_postgres {
            Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&pwfile)
                .status()
                .unwrap();
        }
        let data = pg.dir.path().join("data");
        let out = pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                SUPERUSER,
                "--pwfile",
                pwfile.to_str().unwrap(),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = pg;
        // A port taken between probing and binding makes pg_ctl fail: try a few.
        for _ in 0..5 {
            pg.port = free_port();
            if pg.ctl_start() {
                return pg;
            }
        }
        panic!("the test PostgreSQL did not start: {}", pg.log());
    }

    fn ctl_start(&self) -> bool {
        let data = self.dir.path().join("data");
        // fsync=off is safe for these tests (a stop never loses what reached the kernel);
        // synchronous_commit=off is not: an immediate stop is a crash, and asynchronous
        // commits still in the server's WAL buffers are lost with it (the restart test then
        // finds the schema gone).
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-o",
                &opts,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        out.status.success()
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// Stops the server at once (as a crash would), for restart tests.
    pub fn stop_immediate(&self) {
        let data = self.dir.path().join("data");
        let _ = self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    /// Starts it again on the same port.
    pub fn restart(&self) {
        assert!(
            self.ctl_start(),
            "the test PostgreSQL did not restart: {}",
            self.log()
        );
    }

    /// Runs SQL as the superuser over the unix socket; returns stdout (unaligned, tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let port = self.port.to_string();
        let host = self.dir.path().to_str().unwrap().to_owned();
        let out = self.run(
            "psql",
            &[
                "-h",
                &host,
                "-p",
                &port,
                "-U",
                SUPERUSER,
                "-d",
                db,
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
        );
        assert!(
            out.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A new empty database; returns its name.
    pub fn database(&self) -> String {
        let n = {
            let mut g = self.next_db.lock().unwrap_or_else(|p| p.into_inner());
            *g += 1;
            *g
        };
        let name = format!("tv{}_{n}", std::process::id());
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        name
    }

    /// The URL of `db` with the password in it.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{PASSWORD}@127.0.0.1:{}/{db}",
            self.port
        )
    }

    /// The URL of `db` without a password (for `[store] password_file`).
    pub fn url_without_password(&self, db: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{db}", self.port)
    }

    /// A new database and its URL.
    pub fn fresh(&self) -> String {
        let db = self.database();
        self.url(&db)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        self.stop_immediate();
    }
}

/// Where the cluster's binaries are, for messages.
pub fn describe(p: &Path) -> String {
    p.display().to_string()
}

/// A vault on one backend, for the storage tests that must hold on both.
pub enum Backend {
    File(super::TestVault),
    Pg { pg: Arc<Pg>, db: String },
}

impl Backend {
    /// A fresh redb vault and a fresh PostgreSQL vault (a database of its own).
    pub fn both() -> Vec<Backend> {
        vec![Backend::file(), Backend::pg()]
    }

    pub fn file() -> Backend {
        Backend::File(super::TestVault::new())
    }

    pub fn pg() -> Backend {
        let pg = Pg::shared();
        let db = pg.database();
        tokenvault::vault::Vault::init_store(
            &store_config(&pg.url(&db)),
            &tokenvault::secret::Secret::new(super::PASSPHRASE),
            super::fast_kdf(),
        )
        .unwrap();
        Backend::Pg { pg, db }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::File(_) => "redb",
            Backend::Pg { .. } => "postgres",
        }
    }

    pub fn open_with(&self, pass: &str) -> tokenvault::Result<tokenvault::vault::Vault> {
        let pass = tokenvault::secret::Secret::new(pass);
        match self {
            Backend::File(tv) => tokenvault::vault::Vault::open(&tv.path, &pass),
            Backend::Pg { pg, db } => tokenvault::vault::Vault::open_store(
                &store_config(&pg.url(db)),
                &pass,
                tokenvault::vault::Access::ReadWrite,
            ),
        }
    }

    /// Another session on the same vault (for PostgreSQL: another node).
    pub fn open(&self) -> tokenvault::vault::Vault {
        self.open_with(super::PASSPHRASE).unwrap()
    }

    pub fn engine(&self) -> tokenvault::Engine {
        tokenvault::Engine::new(self.open())
    }
}

pub fn store_config(url: &str) -> tokenvault::vault::pg::StoreConfig {
    tokenvault::vault::pg::StoreConfig::parse(url, None).unwrap()
}

/// Polls `f` until it is true (a hang guard of 20 s, not a speed assertion).
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !f() {
        assert!(
            std::time::Instant::now() < until,
            "timed out waiting: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
