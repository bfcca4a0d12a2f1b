//! `tokenvault watch [FILTER] [--json]` through the real binary (SPEC §10): over a real
//! daemon as a tenant it sees only its tenant's events; `--json` lines parse as the
//! socket's event objects; human lines name the connection and the status; no line holds a
//! seeded secret; without a daemon it runs the scheduler itself and prints the status
//! changes it causes; SIGINT ends it with exit 0.

use crate::support::fake_provider::{CLIENT_ID, CLIENT_SECRET, Canned, FakeProvider};
use crate::support::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command as StdCommand, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokenvault::Request;
use tokenvault::secret::Secret;

const PREFIX: &str = "WATCHTOK-9d41-";
const SECRET: &str = "watch-client-secret-5e77";

/// A running `watch` whose stdout lines arrive on a channel.
struct Watcher {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Watcher {
    fn spawn(mut cmd: StdCommand) -> Watcher {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watcher {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (hang guard: 30 s) for a line matching `pred`; returns it.
    fn wait_for(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if pred(&l) {
                        return l;
                    }
                }
                Err(_) => panic!("no line {what} within 30 s; saw:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// SIGINT, then the exit code (hang guard: 20 s) and every line printed.
    fn interrupt(mut self) -> (Option<i32>, Vec<String>) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("watch ignored SIGINT");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // the reader ends at EOF: everything printed is in the channel
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(l);
        }
        (status.code(), std::mem::take(&mut self.seen))
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The binary aimed at the daemon only: no passphrase, so it cannot open the file itself.
fn daemon_only(tv: &TestVault) -> StdCommand {
    let mut c = tv.std_cmd();
    c.env_remove("TOKENVAULT_PASSPHRASE_FILE");
    c
}

fn client(fp: &FakeProvider, tenant: &str) -> Request {
    Request::ClientSet {
        tenant: tenant.into(),
        provider: "spotify".into(),
        client_id: CLIENT_ID.into(),
        client_secret: Some(Secret::new(SECRET)),
        token_url: Some(fp.token_url()),
        authorization_url: None,
        device_authorization_url: None,
        revocation_url: None,
        params: Default::default(),
    }
}

/// A token response of `fp` that is due for a refresh at once.
fn due_now(fp: &FakeProvider) -> serde_json::Value {
    let mut t = fp.new_family();
    t["expires_in"] = 2.into();
    t
}

/// A vault with tenants acme and globex and their spotify clients at `fp`.
fn two_tenants(fp: &FakeProvider) -> TestVault {
    fp.with(|s| {
        s.token_prefix = PREFIX.into();
        s.client_secret = SECRET.into();
    });
    let tv = TestVault::new();
    tv.setup(vec![
        Request::TenantAdd {
            name: "acme".into(),
        },
        Request::TenantAdd {
            name: "globex".into(),
        },
        client(fp, "acme"),
        client(fp, "globex"),
    ]);
    tv
}

fn assert_no_secret(lines: &[String], also: &[&str]) {
    for l in lines {
        assert!(!l.contains(PREFIX), "a token in: {l}");
        assert!(!l.contains(SECRET), "the client secret in: {l}");
        assert!(!l.contains(CLIENT_SECRET), "a client secret in: {l}");
        for s in also {
            assert!(!l.contains(s), "a secret in: {l}");
        }
    }
}

#[test]
fn a_tenant_watching_through_the_daemon_sees_only_its_tenant() {
    let fp = FakeProvider::start_background();
    let tv = two_tenants(&fp);
    let key = match &tv.setup(vec![Request::TenantKeyIssue {
        tenant: "globex".into(),
        label: None,
    }])[0]
    {
        tokenvault::Response::TenantKey { key, .. } => key.expose().to_owned(),
        other => panic!("{other:?}"),
    };
    let d = Daemon::start(&tv, &[]);
    let key_file = tv.file("globex.key", key.as_bytes());

    let mut json_cmd = daemon_only(&tv);
    json_cmd
        .arg("--tenant-key-file")
        .arg(&key_file)
        .args(["watch", "--json"]);
    let mut json_watch = Watcher::spawn(json_cmd);
    let mut human_cmd = daemon_only(&tv);
    human_cmd.env("TOKENVAULT_TENANT_KEY", &key).arg("watch");
    let mut human_watch = Watcher::spawn(human_cmd);
    // both watchers are attached once a first event reaches them: keep putting globex
    // connections until each has printed one (a watcher that attaches late misses some)
    let mut c = d.conn();
    let mut n = 0;
    let attached = Instant::now() + Duration::from_secs(30);
    loop {
        n += 1;
        let v = c.call(serde_json::json!({"op":"put","connection":format!("globex/spotify/warmup{n}"),"token":fp.new_family()}));
        assert_eq!(v["ok"], true, "{v}");
        let a = json_watch
            .lines
            .recv_timeout(Duration::from_millis(300))
            .ok();
        let b = human_watch
            .lines
            .recv_timeout(Duration::from_millis(300))
            .ok();
        json_watch.seen.extend(a.clone());
        human_watch.seen.extend(b.clone());
        if json_watch.seen.iter().any(|l| l.contains("warmup"))
            && human_watch.seen.iter().any(|l| l.contains("warmup"))
        {
            break;
        }
        assert!(Instant::now() < attached, "the watchers never saw an event");
    }
    // acme first, then globex: a watcher that saw acme's would print it before globex's
    for conn in ["acme/spotify/alice", "globex/spotify/bob"] {
        let v = c.call(serde_json::json!({"op":"put","connection":conn,"token":fp.new_family()}));
        assert_eq!(v["ok"], true, "{v}");
    }
    let line = json_watch.wait_for("about globex/spotify/bob", |l| {
        l.contains("globex/spotify/bob")
    });
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["type"], "status", "{v}");
    assert_eq!(v["connection"], "globex/spotify/bob", "{v}");
    assert_eq!(v["to"], "connected", "{v}");
    assert!(v["at"].as_i64().unwrap() > 1_700_000_000, "{v}");
    let human = human_watch.wait_for("about globex/spotify/bob", |l| {
        l.contains("globex/spotify/bob")
    });
    assert!(human.contains("connected"), "{human}");
    // a refresh of bob that fails: the status change reaches the tenant's watcher too
    fp.script([Canned::Status(503)]);
    let _ = c.call(serde_json::json!({"op":"refresh","connection":"globex/spotify/bob"}));
    let human = human_watch.wait_for("bob → retrying", |l| {
        l.contains("globex/spotify/bob") && l.contains("→ retrying")
    });
    assert!(human.contains("connected → retrying"), "{human}");
    for w in [json_watch, human_watch] {
        let (code, lines) = w.interrupt();
        assert_eq!(code, Some(0));
        for l in &lines {
            assert!(!l.contains("acme"), "a globex watcher saw acme: {l}");
        }
        assert_no_secret(&lines, &[key.as_str()]);
        // every JSON line parses (the human watcher's header is not JSON)
        if lines.iter().any(|l| l.starts_with('{')) {
            for l in &lines {
                serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            }
        }
    }
}

#[test]
fn without_a_daemon_watch_runs_the_scheduler_and_prints_what_it_does() {
    let fp = FakeProvider::start_background();
    let tv = two_tenants(&fp);
    tv.setup(vec![
        Request::Put {
            connection: "acme/spotify/alice".into(),
            token: due_now(&fp),
        },
        Request::Put {
            connection: "globex/spotify/bob".into(),
            token: due_now(&fp),
        },
    ]);
    // both refreshes fail at first: two status changes, of which the filter keeps acme's
    fp.script([Canned::Status(503), Canned::Status(503)]);
    let mut cmd = tv.std_cmd();
    cmd.args(["watch", "acme"]);
    let mut w = Watcher::spawn(cmd);
    let header = w.wait_for("header", |_| true);
    assert!(header.starts_with("TIME"), "{header}");
    let line = w.wait_for("acme/spotify/alice → retrying", |l| {
        l.contains("acme/spotify/alice") && l.contains("connected → retrying")
    });
    assert!(line.contains("503"), "the reason is shown: {line}");
    // globex's refresh happened as well (it is due too), and was not printed
    let deadline = Instant::now() + Duration::from_secs(30);
    while fp.requests() < 2 {
        assert!(Instant::now() < deadline, "globex was never refreshed");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let (code, lines) = w.interrupt();
    assert_eq!(code, Some(0), "{lines:?}");
    assert!(
        lines.iter().all(|l| !l.contains("globex")),
        "the filter let globex through: {lines:?}"
    );
    assert_no_secret(&lines, &[]);
    // the vault is free again: the watch process let go of it
    tv.cmd().args(["list", "--json"]).assert().success();
}
