//! `tokenvault tui` end to end: the real binary in a real pseudo-terminal (tmux, 120×40)
//! against a real `serve` whose provider is the fake one on 127.0.0.1. Keys are typed with
//! `send-keys` and the screen read with `capture-pane`, as a person would: switch tabs,
//! filter, see another client's put and refresh appear by themselves (live events over
//! the daemon), refresh a connection and see its status change, activate an Apple key and see
//! the old one `retiring`, export a backup and decrypt it with the `age` command, quit with
//! `q` and find the shell's screen back.
//!
//! Needs `tmux` and `age` (scripts/test installs them); without them the test says so
//! and passes vacuously only when `TOKENVAULT_SKIP_TMUX=1` is set, otherwise it fails.

use crate::support::fake_provider::{Canned, FakeProvider, cli_vault_with_spotify_client};
use crate::support::{self, BIN, Daemon, TestVault};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmux server of its own (its own socket), killed on drop.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.socket);
        c
    }

    fn start(dir: &Path, shell_env: &[(String, String)]) -> Tmux {
        let t = Tmux {
            socket: dir.join("tmux.sock"),
        };
        let mut c = t.cmd();
        c.args([
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-x",
            "120",
            "-y",
            "40",
            "-s",
            "tv",
        ]);
        for (k, v) in shell_env {
            c.arg("-e").arg(format!("{k}={v}"));
        }
        c.args(["sh", "-c", "PS1='shell$ ' exec sh -i"]);
        assert!(c.status().unwrap().success(), "tmux did not start");
        t
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            let ok = self
                .cmd()
                .args(["send-keys", "-t", "tv", k])
                .status()
                .unwrap();
            assert!(ok.success());
            // one key at a time: an Esc followed at once by a key reads as Alt-key
            std::thread::sleep(Duration::from_millis(60));
        }
    }

    fn text(&self, s: &str) {
        let ok = self
            .cmd()
            .args(["send-keys", "-t", "tv", "-l", s])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "tv"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits (up to 20 s, a hang guard) until the screen satisfies `ok`.
    fn wait(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "waiting for {what}; the screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_for(&self, text: &str) -> String {
        self.wait(text, |s| s.contains(text))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

/// The first line below the header (which names the connection due next) with `needle`.
fn line<'a>(screen: &'a str, needle: &str) -> &'a str {
    screen
        .lines()
        .skip(2)
        .find(|l| l.contains(needle))
        .unwrap_or("")
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn env_of(tv: &TestVault) -> Vec<(String, String)> {
    let d = tv.dir.path();
    vec![
        ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
        ("HOME".into(), d.display().to_string()),
        ("TERM".into(), "xterm-256color".into()),
        (
            "XDG_DATA_HOME".into(),
            d.join("xdg-data").display().to_string(),
        ),
        (
            "XDG_CONFIG_HOME".into(),
            d.join("xdg-config").display().to_string(),
        ),
        (
            "XDG_RUNTIME_DIR".into(),
            d.join("run").display().to_string(),
        ),
        ("TOKENVAULT_VAULT".into(), tv.path.display().to_string()),
        (
            "TOKENVAULT_SOCKET".into(),
            tv.socket().display().to_string(),
        ),
    ]
}

#[test]
fn the_tui_in_a_terminal_against_a_daemon() {
    if !have("tmux") || !have("age") {
        assert!(
            std::env::var("TOKENVAULT_SKIP_TMUX").is_ok_and(|v| v == "1"),
            "this test needs tmux and age (apt-get install tmux age); set TOKENVAULT_SKIP_TMUX=1 to skip it"
        );
        return;
    }
    let fp = FakeProvider::start_background();
    let tv = cli_vault_with_spotify_client(&fp, &[]);
    for account in ["alice", "bob", "carol"] {
        let token = fp.new_family();
        tv.cmd()
            .args(["put", &format!("acme/spotify/{account}")])
            .write_stdin(token.to_string())
            .assert()
            .success();
    }
    for key in [support::apple::KEY1, support::apple::KEY2] {
        tv.cmd()
            .args([
                "apple",
                "key",
                "add",
                "acme",
                "--team-id",
                support::apple::TEAM,
            ])
            .args(["--key-id", key, "--p8"])
            .arg(support::apple::fixture(&format!("AuthKey_{key}.p8")))
            .assert()
            .success();
    }
    let (_, identity_text, recipient) = support::backup::identity();
    let identity = tv.file("identity.txt", identity_text.as_bytes());
    let backup = tv.dir.path().join("from-the-tui.age");
    let _daemon = Daemon::start(&tv, &[]);

    let tmux = Tmux::start(tv.dir.path(), &env_of(&tv));
    tmux.wait_for("shell$");
    // no passphrase anywhere: the UI can only be talking to the daemon
    tmux.text(&format!("{BIN} tui; echo TUI-EXITED-$?"));
    tmux.keys(&["Enter"]);
    let s = tmux.wait_for("acme/spotify/carol");
    assert!(s.contains("daemon "), "the header names the daemon:\n{s}");
    assert!(line(&s, "acme/spotify/alice").contains("connected"), "{s}");

    // tabs
    tmux.keys(&["4"]);
    tmux.wait_for("Audit · newest");
    tmux.keys(&["Tab"]);
    tmux.wait_for("REASON");
    tmux.keys(&["Tab"]);
    tmux.wait_for("STATE");
    tmux.keys(&["BTab"]);
    tmux.wait_for("CONNECTION");

    // filter
    tmux.keys(&["/", "b", "o", "b", "Enter"]);
    tmux.wait_for("filter \"bob\"");
    let rows = |s: &str| {
        s.lines()
            .skip(3)
            .filter(|l| l.contains("acme/spotify/"))
            .count()
    };
    let s = tmux.wait("one row", |s| s.contains("1 of 1") && rows(s) == 1);
    assert!(line(&s, "acme/spotify/").contains("bob"), "{s}");
    tmux.keys(&["Escape"]);
    tmux.wait("all rows again", |s| rows(s) == 3);

    // live events over the daemon: changes made by another client show with no key
    let token = fp.new_family();
    tv.cmd()
        .args(["put", "acme/spotify/dave"])
        .write_stdin(token.to_string())
        .assert()
        .success();
    tmux.wait("dave appears by itself", |s| {
        rows(s) == 4 && s.contains("acme/spotify/dave")
    });
    fp.script([Canned::InvalidGrant]);
    // (its exit status is the refresh's business, tested elsewhere)
    let _ = tv
        .cmd()
        .args(["refresh", "acme/spotify/bob"])
        .output()
        .unwrap();
    tmux.wait("bob needs_reauth by itself", |s| {
        line(s, "acme/spotify/bob").contains("needs_reauth")
    });

    // refresh alice against the fake provider, which now refuses her grant
    fp.script([Canned::InvalidGrant]);
    tmux.keys(&["g", "r"]);
    let s = tmux.wait("alice needs_reauth", |s| {
        line(s, "acme/spotify/alice").contains("needs_reauth")
    });
    assert!(fp.requests() >= 1, "the provider was asked:\n{s}");

    // Apple keys: a developer token signed with the first key (r), then the second
    // activated: the first stays retiring until that token expires
    tmux.keys(&["2"]);
    tmux.wait_for(support::apple::KEY2);
    tmux.keys(&["g", "r"]);
    tmux.wait_for("developer token of acme");
    tmux.keys(&["j", "A"]);
    tmux.wait_for("Activate key");
    tmux.keys(&["y"]);
    let s = tmux.wait("KEY1 retiring", |s| {
        line(s, support::apple::KEY1).contains("retiring")
            && line(s, support::apple::KEY2).contains("active")
    });
    assert!(!s.contains("BEGIN PRIVATE KEY"), "{s}");

    // a backup from the TUI, decrypted by the standard age tool
    tmux.keys(&["3", "e", "C-u"]);
    tmux.text(&backup.display().to_string());
    tmux.keys(&["Tab", "C-u"]);
    tmux.text(&recipient);
    tmux.keys(&["Enter", "Enter"]);
    let s = tmux.wait_for("Backup written");
    assert!(s.contains("sha256"), "{s}");
    let out = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&identity)
        .arg(&backup)
        .output()
        .unwrap();
    assert!(
        out.status.success() && !out.stdout.is_empty(),
        "age could not decrypt the TUI's backup: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // q closes the report, q again quits; the shell's screen is back
    tmux.keys(&["q"]);
    tmux.wait("report closed", |s| !s.contains("Backup written"));
    tmux.keys(&["q"]);
    let s = tmux.wait_for("TUI-EXITED-0");
    assert!(
        !s.contains("1 Connections"),
        "the TUI's screen is gone:\n{s}"
    );
    assert!(s.contains("shell$"), "{s}");
}

/// `tokenvault demo` without `--headless`: the TUI on the demo's own daemon, following the
/// story live (a revoked grant, a flaky provider) with no log line drawn over the screen,
/// and `q` ends the whole demo with exit 0, its directory removed.
#[test]
fn the_demo_opens_the_tui_on_its_daemon() {
    if !have("tmux") {
        assert!(
            std::env::var("TOKENVAULT_SKIP_TMUX").is_ok_and(|v| v == "1"),
            "this test needs tmux (apt-get install tmux); set TOKENVAULT_SKIP_TMUX=1 to skip it"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tmp = d.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let env = vec![
        ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
        ("HOME".into(), d.display().to_string()),
        ("TERM".into(), "xterm-256color".into()),
        ("TMPDIR".into(), tmp.display().to_string()),
        (
            "XDG_CONFIG_HOME".into(),
            d.join("xdg-config").display().to_string(),
        ),
        (
            "XDG_RUNTIME_DIR".into(),
            d.join("run").display().to_string(),
        ),
    ];
    let tmux = Tmux::start(d, &env);
    tmux.wait_for("shell$");
    tmux.text(&format!("{BIN} demo; echo DEMO-EXITED-$?"));
    tmux.keys(&["Enter"]);
    let s = tmux.wait_for("acme/demo-music/alice");
    assert!(
        s.lines().next().unwrap_or("").contains("tokenvault.sock"),
        "the header names the demo daemon's socket:\n{s}"
    );
    // the story happens by itself within seconds (SPEC §11)
    let seen_retrying = std::cell::Cell::new(false);
    tmux.wait("a row retrying, and later one needs_reauth", |s| {
        for noise in ["WARN", "INFO", "ERROR"] {
            assert!(!s.contains(noise), "a log line drew over the TUI:\n{s}");
        }
        seen_retrying.set(seen_retrying.get() || s.contains("retrying"));
        seen_retrying.get() && s.contains("needs_reauth")
    });
    tmux.keys(&["q"]);
    let s = tmux.wait_for("DEMO-EXITED-0");
    assert!(s.contains("TOKENVAULT_SOCKET="), "{s}");
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    assert!(left.is_empty(), "the demo left {left:?} behind");
}
