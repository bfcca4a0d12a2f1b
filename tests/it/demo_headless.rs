//! `tokenvault demo --headless` through the real binary (SPEC §11): the story of the world
//! is seen within the run (a refresh with rotation, a revoked grant turning
//! `needs_reauth`, a flaky provider's connection going `retrying` then `connected`), the
//! command exits 0, nothing is left in the temp dir, `--keep DIR` keeps a vault that
//! `list` opens, no kept secret appears in the output, and SIGINT stops it cleanly.

use crate::support::*;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

/// The binary with an environment that points nowhere real: HOME, XDG dirs and TMPDIR
/// inside `dir`, no vault/socket/passphrase variables.
fn demo_cmd(dir: &Path) -> StdCommand {
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut c = StdCommand::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("TMPDIR", &tmp)
        .env("XDG_DATA_HOME", dir.join("xdg-data"))
        .env("XDG_CONFIG_HOME", dir.join("xdg-config"))
        .env("XDG_RUNTIME_DIR", dir.join("run"))
        .stdin(Stdio::null());
    c
}

/// Runs `cmd` to its end with a hang guard; (exit code, stdout, stderr).
fn run_to_end(mut cmd: StdCommand, guard: Duration) -> (Option<i32>, String, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || std::io::read_to_string(out).unwrap_or_default());
    let err_t = std::thread::spawn(move || std::io::read_to_string(err).unwrap_or_default());
    let deadline = Instant::now() + guard;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "demo did not finish within {guard:?}; stderr: {}",
                err_t.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status.code(), out_t.join().unwrap(), err_t.join().unwrap())
}

fn event_lines(stdout: &str) -> Vec<&str> {
    // event lines start with the time, HH:MM:SSZ
    stdout
        .lines()
        .filter(|l| l.len() > 9 && l.as_bytes()[2] == b':' && &l[8..9] == "Z")
        .collect()
}

/// The story of SPEC §11, as a watcher sees it.
fn assert_story(stdout: &str) {
    let events = event_lines(stdout);
    let has = |f: &dyn Fn(&str) -> bool| events.iter().any(|l| f(l));
    assert!(
        has(&|l| l.contains(" refreshed ") && l.contains("refresh token rotated")),
        "no refresh with rotation among the events:\n{stdout}"
    );
    assert!(
        has(&|l| l.contains("acme/demo-chat/old-laptop") && l.contains("→ needs_reauth")),
        "the revoked grant never turned needs_reauth:\n{stdout}"
    );
    // one connection went retrying and later connected
    let recovered = events.iter().enumerate().any(|(i, l)| {
        l.contains("→ retrying")
            && l.split_whitespace().nth(1).is_some_and(|conn| {
                events[i + 1..]
                    .iter()
                    .any(|m| m.contains(conn) && m.contains("retrying → connected"))
            })
    });
    assert!(
        recovered,
        "no connection went retrying → connected:\n{stdout}"
    );
}

#[test]
fn headless_demo_shows_the_story_exits_0_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = demo_cmd(dir.path());
    cmd.args(["demo", "--headless", "--seconds", "30"]);
    let (code, stdout, stderr) = run_to_end(cmd, Duration::from_secs(120));
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let socket_line = stdout
        .lines()
        .find(|l| l.starts_with("TOKENVAULT_SOCKET="))
        .unwrap_or_else(|| panic!("no TOKENVAULT_SOCKET= line:\n{stdout}"));
    assert!(
        socket_line.ends_with("/run/tokenvault.sock"),
        "{socket_line}"
    );
    assert_story(&stdout);
    // everything was inside TMPDIR, and TMPDIR is empty again
    let tmp = dir.path().join("tmp");
    assert!(
        socket_line.contains(&tmp.display().to_string()),
        "{socket_line}"
    );
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    for d in ["xdg-data", "xdg-config", "run"] {
        assert!(!dir.path().join(d).exists(), "{d} was created");
    }
}

#[test]
fn kept_demo_vault_opens_with_list_and_no_kept_secret_was_printed() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("kept");
    let mut cmd = demo_cmd(dir.path());
    cmd.args(["demo", "--headless", "--seconds", "6", "--keep"])
        .arg(&keep);
    let (code, stdout, stderr) = run_to_end(cmd, Duration::from_secs(90));
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("kept after exit"), "{stdout}");
    let out = StdCommand::new(BIN)
        .env_clear()
        .env("HOME", dir.path())
        .arg("--vault")
        .arg(keep.join("vault.redb"))
        .arg("--passphrase-file")
        .arg(keep.join("passphrase"))
        .arg("--config")
        .arg(keep.join("config.toml"))
        .arg("--socket")
        .arg(keep.join("run/tokenvault.sock"))
        .args(["list", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let conns = list.as_array().unwrap();
    assert_eq!(conns.len(), 12, "{list}");
    for t in ["acme", "globex"] {
        assert!(conns.iter().any(|c| c["tenant"] == t), "{t}: {list}");
    }
    let keys = StdCommand::new(BIN)
        .env_clear()
        .env("HOME", dir.path())
        .arg("--vault")
        .arg(keep.join("vault.redb"))
        .arg("--passphrase-file")
        .arg(keep.join("passphrase"))
        .arg("--socket")
        .arg(keep.join("run/tokenvault.sock"))
        .args(["apple", "key", "list", "acme", "--json"])
        .output()
        .unwrap();
    assert!(
        keys.status.success(),
        "{}",
        String::from_utf8_lossy(&keys.stderr)
    );
    let keys: serde_json::Value = serde_json::from_slice(&keys.stdout).unwrap();
    let states: Vec<&str> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["state"].as_str().unwrap())
        .collect();
    assert_eq!(states.len(), 2, "{keys}");
    assert!(states.contains(&"active"), "{keys}");
    // the daemon took its scheduled backup to the configured recipient at start; the
    // demo's identity file opens it
    let backup = std::fs::read_dir(keep.join("backups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "age"))
        .expect("no scheduled backup in DIR/backups");
    let verify = StdCommand::new(BIN)
        .env_clear()
        .env("HOME", dir.path())
        .args(["backup", "verify"])
        .arg(&backup)
        .arg("--identity")
        .arg(keep.join("backup-identity.txt"))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    // the secrets the demo wrote to files never appear in what it printed
    let printed = format!("{stdout}{stderr}");
    let passphrase = std::fs::read_to_string(keep.join("passphrase")).unwrap();
    let tenant_key = std::fs::read_to_string(keep.join("globex.tenant-key")).unwrap();
    let identity = std::fs::read_to_string(keep.join("backup-identity.txt")).unwrap();
    let identity_key = identity
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap();
    for secret in [passphrase.trim(), tenant_key.trim(), identity_key] {
        assert!(secret.len() >= 16);
        assert!(!printed.contains(secret), "a kept secret was printed");
    }
    for p8 in std::fs::read_dir(keep.join("apple")).unwrap() {
        let pem = std::fs::read_to_string(p8.unwrap().path()).unwrap();
        let body = pem.lines().nth(1).unwrap();
        assert!(!printed.contains(body), "an Apple key was printed");
    }
    // the kept files are private
    use std::os::unix::fs::PermissionsExt;
    for f in [
        "passphrase",
        "globex.tenant-key",
        "backup-identity.txt",
        "config.toml",
    ] {
        let mode = std::fs::metadata(keep.join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{f} is {mode:o}");
    }
}

#[test]
fn keep_refuses_a_directory_that_is_not_empty() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("busy");
    std::fs::create_dir_all(&keep).unwrap();
    std::fs::write(keep.join("notes.txt"), "mine").unwrap();
    let mut cmd = demo_cmd(dir.path());
    cmd.args(["demo", "--headless", "--seconds", "1", "--keep"])
        .arg(&keep);
    let (code, _, stderr) = run_to_end(cmd, Duration::from_secs(30));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("not empty"), "{stderr}");
    let names: Vec<_> = std::fs::read_dir(&keep)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["notes.txt"]);
}

#[test]
fn sigint_stops_the_demo_with_exit_0_and_removes_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = demo_cmd(dir.path())
        .args(["demo", "--headless"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // wait for the first event line: the daemon runs and events are being printed
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("no event line within 60 s");
        if event_lines(&line).len() == 1 {
            break;
        }
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "demo ignored SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    // the output ended with the process (the reader sees EOF)
    reader.join().unwrap();
    let left: Vec<_> = std::fs::read_dir(dir.path().join("tmp")).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
