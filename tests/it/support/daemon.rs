//! A real `tokenvault serve` on a temp socket, and a line-protocol client for it.
#![allow(dead_code)]

use super::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command as StdCommand, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokenvault::contract::Request;

pub const BIN: &str = env!("CARGO_BIN_EXE_tokenvault");

impl TestVault {
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("run/tokenvault.sock")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("xdg-config/tokenvault/config.toml")
    }

    pub fn write_config(&self, text: &str) {
        let p = self.config_path();
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
    }

    /// The binary with this vault's environment, as a plain std command (for spawn).
    pub fn std_cmd(&self) -> StdCommand {
        let mut c = StdCommand::new(BIN);
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("XDG_DATA_HOME", self.dir.path().join("xdg-data"))
            .env("XDG_CONFIG_HOME", self.dir.path().join("xdg-config"))
            .env("XDG_RUNTIME_DIR", self.dir.path().join("run"))
            .env("TOKENVAULT_VAULT", &self.path)
            .env("TOKENVAULT_SOCKET", self.socket())
            .env("TOKENVAULT_PASSPHRASE_FILE", &self.pass_file);
        c
    }

    /// The binary aimed at the daemon only: no passphrase anywhere, so a command that
    /// succeeds cannot have opened the vault file itself.
    pub fn daemon_cmd(&self) -> assert_cmd::Command {
        let mut c = self.cmd();
        c.env_remove("TOKENVAULT_PASSPHRASE_FILE");
        c
    }

    /// Runs requests as admin on an in-process engine (before a daemon holds the file).
    pub fn setup(&self, reqs: Vec<Request>) -> Vec<tokenvault::Response> {
        let engine = self.engine();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let out = reqs
            .into_iter()
            .map(|r| rt.block_on(engine.handle(&admin(), r)).unwrap())
            .collect();
        engine.flush_audit().unwrap();
        out
    }
}

/// A running daemon; SIGTERMed (then killed) on drop.
pub struct Daemon {
    pub child: Child,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(tv: &TestVault, args: &[&str]) -> Daemon {
        Self::try_start(tv, args).unwrap_or_else(|log| panic!("daemon did not start:\n{log}"))
    }

    /// Starts `serve` and waits until it answers `hello`; Err(log) if it exits first.
    pub fn try_start(tv: &TestVault, args: &[&str]) -> Result<Daemon, String> {
        let log = tv.dir.path().join(format!(
            "serve-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let mut cmd = tv.std_cmd();
        cmd.arg("serve").args(args);
        Self::try_spawn(cmd, tv.socket(), log)
    }

    /// Spawns `cmd` (a prepared `serve`) and waits until `socket` answers `hello`;
    /// Err(log) if it exits first. For daemons with another environment or uid.
    pub fn try_spawn(mut cmd: StdCommand, socket: PathBuf, log: PathBuf) -> Result<Daemon, String> {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut d = Daemon { child, socket, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = d.child.try_wait().unwrap() {
                return Err(format!("exited {status}: {}", d.log()));
            }
            if let Ok(mut c) = Conn::try_open(&d.socket)
                && c.call(serde_json::json!({"op":"hello"}))["ok"] == true
            {
                return Ok(d);
            }
            if Instant::now() > deadline {
                return Err(d.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn conn(&self) -> Conn {
        Conn::open(&self.socket)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// SIGTERM and wait; returns the exit status and how long the exit took.
    pub fn stop(&mut self) -> (ExitStatus, Duration) {
        let t = Instant::now();
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let deadline = t + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return (s, t.elapsed());
            }
            assert!(Instant::now() < deadline, "daemon ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One socket connection speaking the line protocol.
pub struct Conn {
    pub stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Conn {
    pub fn try_open(path: &Path) -> std::io::Result<Conn> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let reader = BufReader::new(stream.try_clone()?);
        Ok(Conn { stream, reader })
    }

    pub fn open(path: &Path) -> Conn {
        Self::try_open(path).unwrap()
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// The next answer line, or None at EOF (or on a read error such as a reset).
    pub fn recv(&mut self) -> Option<Value> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))),
        }
    }

    pub fn call(&mut self, req: Value) -> Value {
        let mut line = serde_json::to_vec(&req).unwrap();
        line.push(b'\n');
        self.send_raw(&line).unwrap();
        self.recv().expect("daemon closed the connection")
    }

    /// Calls and returns the error code, or "ok".
    pub fn code(&mut self, req: Value) -> String {
        let v = self.call(req);
        if v["ok"] == true {
            "ok".into()
        } else {
            v["error"]["code"].as_str().unwrap_or("?").to_owned()
        }
    }

    pub fn auth(&mut self, key: &str) -> Value {
        self.call(serde_json::json!({"op":"auth","tenant_key":key}))
    }
}

/// Standard fixture: tenants acme and globex, each with one connection (valid 1 h), and
/// a tenant key for acme. Returns acme's key.
pub fn two_tenants(tv: &TestVault) -> String {
    use tokenvault::Response;
    let put = |c: &str, t: &str| Request::Put {
        connection: c.into(),
        token: serde_json::json!({"access_token": t, "expires_in": 3600}),
    };
    let out = tv.setup(vec![
        Request::TenantAdd {
            name: "acme".into(),
        },
        Request::TenantAdd {
            name: "globex".into(),
        },
        put("acme/spotify/alice", "AT-acme-alice"),
        put("globex/spotify/bob", "AT-globex-bob"),
        Request::TenantKeyIssue {
            tenant: "acme".into(),
            label: Some("ci".into()),
        },
    ]);
    match out.last() {
        Some(Response::TenantKey { key, .. }) => key.expose().to_owned(),
        other => panic!("{other:?}"),
    }
}
