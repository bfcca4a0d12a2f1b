//! `serve` start-up and shutdown (SPEC §6): permissions, the lock against a second
//! daemon, stale sockets, SIGTERM/SIGINT, SIGHUP reloads, metrics on loopback, systemd
//! readiness.

use crate::support::*;
use nix::sys::signal::Signal;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn socket_0600_in_a_0700_dir_and_sigterm_exits_0_removing_it() {
    let tv = TestVault::new();
    two_tenants(&tv);
    let mut d = Daemon::start(&tv, &["-v"]);
    assert_eq!(mode(&d.socket), 0o600);
    assert_eq!(mode(d.socket.parent().unwrap()), 0o700);
    // a client connected and idle, one mid-line: neither holds up the exit
    let _idle = d.conn();
    let mut half = d.conn();
    half.send_raw(b"{\"op\":").unwrap();
    let (status, took) = d.stop();
    assert_eq!(status.code(), Some(0), "{}", d.log());
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(!d.socket.exists(), "socket removed");
    assert!(d.log().contains("SIGTERM"), "{}", d.log());
}

#[test]
fn sigint_also_stops_cleanly_and_flushes_audit() {
    let tv = TestVault::new();
    two_tenants(&tv);
    let mut d = Daemon::start(&tv, &[]);
    let mut c = d.conn();
    for _ in 0..5 {
        assert_eq!(
            c.code(json!({"op":"get","connection":"acme/spotify/alice"})),
            "ok"
        );
    }
    d.signal(Signal::SIGINT);
    let t = Instant::now();
    let status = loop {
        if let Some(s) = d.child.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(0));
    assert!(!d.socket.exists());
    // every hand-out reached the audit table
    let out = tv.cmd().args(["audit", "acme", "--json"]).output().unwrap();
    let recs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let gets = recs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "get")
        .map(|r| r["count"].as_u64().unwrap_or(1))
        .sum::<u64>();
    assert_eq!(gets, 5, "{recs}");
}

#[test]
fn a_second_daemon_is_refused_and_the_first_keeps_serving() {
    let tv = TestVault::new();
    two_tenants(&tv);
    let d = Daemon::start(&tv, &[]);
    let out = tv.std_cmd().arg("serve").output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("in use"), "{}", stderr(&out));
    assert!(d.socket.exists());
    assert_eq!(d.conn().code(json!({"op":"hello"})), "ok");
}

#[test]
fn a_stale_socket_is_replaced_but_other_files_are_not() {
    let tv = TestVault::new();
    two_tenants(&tv);
    let sock = tv.socket();
    std::fs::create_dir_all(sock.parent().unwrap()).unwrap();
    std::fs::set_permissions(
        sock.parent().unwrap(),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    // a socket nobody listens on: what a crashed (SIGKILLed) daemon leaves
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let mut d = Daemon::start(&tv, &[]);
    assert_eq!(d.conn().code(json!({"op":"hello"})), "ok");
    // a real crash: SIGKILL leaves the socket and lock file; the next start recovers
    d.signal(Signal::SIGKILL);
    let _ = d.child.wait();
    assert!(sock.exists());
    let d = Daemon::start(&tv, &[]);
    assert_eq!(d.conn().code(json!({"op":"hello"})), "ok");
    drop(d);
    // a regular file in the way is not deleted
    std::fs::write(&sock, b"precious").unwrap();
    let out = tv.std_cmd().arg("serve").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(std::fs::read(&sock).unwrap(), b"precious");
}

#[test]
fn socket_mode_widens_on_request() {
    let tv = TestVault::new();
    two_tenants(&tv);
    let d = Daemon::start(&tv, &["--socket-mode", "0660", "--socket-group", "0"]);
    assert_eq!(mode(&d.socket), 0o660);
    assert_eq!(mode(d.socket.parent().unwrap()), 0o710);
    drop(d);
    let out = tv
        .std_cmd()
        .args(["serve", "--socket-mode", "0777"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn sighup_reloads_the_config_and_a_broken_one_is_kept_out() {
    let tv = TestVault::new();
    two_tenants(&tv);
    tv.write_config("[daemon]\nidle_timeout_secs = 60\n");
    let d = Daemon::start(&tv, &["-v"]);
    tv.write_config("[daemon]\nidle_timeout_secs = 1\n");
    d.signal(Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.log().contains("configuration reloaded") {
        assert!(Instant::now() < deadline, "{}", d.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    // new connections get the new idle timeout
    let t = Instant::now();
    let mut c = d.conn();
    let v = c.recv().expect("idle notice");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("idle for 1 s"),
        "{v}"
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    // a broken file: reported, the daemon keeps running on the previous config
    tv.write_config("[daemon\nthis is not toml");
    d.signal(Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.log().contains("keeping the previous one") {
        assert!(Instant::now() < deadline, "{}", d.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut c = d.conn();
    assert_eq!(
        c.code(json!({"op":"get","connection":"acme/spotify/alice"})),
        "ok"
    );
}

#[test]
fn metrics_http_on_loopback_only() {
    use std::io::{Read, Write};
    let tv = TestVault::new();
    two_tenants(&tv);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let d = Daemon::start(&tv, &["--metrics-listen", &addr]);
    assert_eq!(
        d.conn()
            .code(json!({"op":"get","connection":"acme/spotify/alice"})),
        "ok"
    );
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    assert!(body.contains("tokenvault_tokens_served_total 1"), "{body}");
    assert!(
        body.contains("tokenvault_connections{status=\"connected\"} 2"),
        "{body}"
    );
    assert!(
        body.contains("tokenvault_connections_expiring_within_hour 2"),
        "{body}"
    );
    assert!(
        body.contains("tokenvault_refresh_duration_seconds_bucket"),
        "{body}"
    );
    assert!(!body.contains("AT-acme-alice"));
    drop(d);
    let out = tv
        .std_cmd()
        .args(["serve", "--metrics-listen", "0.0.0.0:9464"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("loopback"));
}

#[test]
fn tells_systemd_when_ready() {
    let tv = TestVault::new();
    two_tenants(&tv);
    let notify = tv.dir.path().join("notify.sock");
    let rx = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let log = tv.dir.path().join("notify-serve.log");
    let mut child = tv
        .std_cmd()
        .arg("serve")
        .env("NOTIFY_SOCKET", &notify)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = rx.recv(&mut buf).unwrap();
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.contains("READY=1"), "{msg}");
    // READY means ready: the socket answers right away
    assert_eq!(Conn::open(&tv.socket()).code(json!({"op":"hello"})), "ok");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGTERM,
    )
    .unwrap();
    let n = rx.recv(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// SPEC §6: SIGTERM while a refresh waits on a provider that takes a minute: the daemon
/// abandons it within the 10 s grace, exits 0, removes the socket, and the vault keeps the
/// token it had (the abandoned refresh committed nothing).
#[test]
fn sigterm_abandons_a_refresh_in_flight_within_the_grace_period() {
    use crate::support::fake_provider::{CLIENT_SECRET, Canned, FakeProvider};
    use tokenvault::Request;
    let fp = FakeProvider::start_background();
    let tv = TestVault::new();
    tv.setup(vec![
        Request::TenantAdd {
            name: "acme".into(),
        },
        crate::support::fake_provider::spotify_client_request(&fp, CLIENT_SECRET),
        Request::Put {
            connection: "acme/spotify/alice".into(),
            token: fp.new_family(),
        },
    ]);
    // longer than the grace period and than the daemon's own provider timeout (15 s)
    fp.script([Canned::Delay(Duration::from_secs(60))]);
    let mut d = Daemon::start(&tv, &["-v"]);
    let mut c = d.conn();
    c.send_raw(
        b"{\"op\":\"get\",\"connection\":\"acme/spotify/alice\",\"force_refresh\":true,\"id\":7}\n",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while fp.requests() == 0 {
        assert!(
            Instant::now() < deadline,
            "the refresh never reached the provider"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (status, took) = d.stop();
    assert_eq!(status.code(), Some(0), "{}", d.log());
    // 10 s of grace plus a little for the final flush; far below the provider's minute
    assert!(took < Duration::from_secs(12), "took {took:?}\n{}", d.log());
    assert!(!d.socket.exists(), "socket removed");
    // the client was answered or disconnected, not left hanging
    if let Some(v) = c.recv() {
        assert_eq!(v["ok"], false, "{v}");
    }
    assert_eq!(fp.requests(), 1);
    // nothing half-written: the old token is still there and the vault opens
    tv.cmd()
        .args(["get", "acme/spotify/alice"])
        .assert()
        .success()
        .stdout("at-1-0\n");
}

/// `--socket-group` gives the socket (and its directory) to that group, by number or by
/// name. Changing a file's group to one the daemon's user is not in needs root, so this
/// runs as root only. (Group 0 would prove nothing as root: files are already root's.)
#[test]
fn socket_group_sets_the_gid_of_the_socket_and_its_directory() {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to give the socket to another group");
        return;
    }
    let gid = 65534u32;
    let tv = TestVault::new();
    two_tenants(&tv);
    assert_ne!(std::fs::metadata(tv.dir.path()).unwrap().gid(), gid);
    let d = Daemon::start(&tv, &["--socket-mode", "0660", "--socket-group", "65534"]);
    let sock = std::fs::metadata(&d.socket).unwrap();
    assert_eq!(sock.gid(), gid);
    assert_eq!(sock.mode() & 0o777, 0o660);
    let dir = std::fs::metadata(d.socket.parent().unwrap()).unwrap();
    assert_eq!(dir.gid(), gid);
    assert_eq!(dir.mode() & 0o777, 0o710);
    assert_eq!(d.conn().code(json!({"op":"hello"})), "ok");
    drop(d);

    // by name, when the system has one for that gid
    let Ok(Some(group)) = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)) else {
        eprintln!("skipped the by-name half: no group has gid {gid}");
        return;
    };
    let tv = TestVault::new();
    two_tenants(&tv);
    let d = Daemon::start(
        &tv,
        &["--socket-mode", "0660", "--socket-group", &group.name],
    );
    assert_eq!(std::fs::metadata(&d.socket).unwrap().gid(), gid);
    drop(d);
    let out = tv
        .std_cmd()
        .args(["serve", "--socket-group", "no-such-group-xyz"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// SPEC §6: SIGHUP reloads the provider catalogue: a `[providers.NAME]` table added to the
/// config file while the daemon runs is listed (socket and CLI) only after the SIGHUP.
#[test]
fn sighup_reloads_the_provider_catalogue() {
    let tv = TestVault::new();
    two_tenants(&tv);
    tv.write_config("[daemon]\nidle_timeout_secs = 60\n");
    let d = Daemon::start(&tv, &["-v"]);
    let names = |c: &mut Conn| -> Vec<String> {
        let v = c.call(json!({"op":"provider_list"}));
        v["providers"]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut c = d.conn();
    let before = names(&mut c);
    assert!(before.contains(&"spotify".to_owned()), "{before:?}");
    assert!(!before.contains(&"corpauth".to_owned()));

    tv.write_config(
        "[daemon]\nidle_timeout_secs = 60\n\n[providers.corpauth]\ntoken_url = \"https://auth.corp.example/oauth/token\"\nclient_auth = \"post\"\ndefault_lifetime_secs = 1800\n",
    );
    // not before the signal
    assert!(!names(&mut c).contains(&"corpauth".to_owned()));
    d.signal(Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.log().contains("configuration reloaded") {
        assert!(Instant::now() < deadline, "{}", d.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(names(&mut c).contains(&"corpauth".to_owned()));
    let v = c.call(json!({"op":"provider_show","name":"corpauth"}));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(
        v["token_url"], "https://auth.corp.example/oauth/token",
        "{v}"
    );
    assert_eq!(v["builtin"], false, "{v}");

    // the CLI, pointed at an empty config of its own, shows the daemon's catalogue
    let empty = tv.file("empty.toml", b"");
    let out = tv
        .daemon_cmd()
        .arg("--config")
        .arg(&empty)
        .args(["provider", "list", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("\"corpauth\""), "{}", stdout(&out));
    // the daemon uses it: a token without expires_in gets the new default lifetime
    let now = chrono::Utc::now().timestamp();
    assert_eq!(
        c.code(
            json!({"op":"put","connection":"acme/corpauth/ci","token":{"access_token":"AT-corp"}})
        ),
        "ok"
    );
    let v = c.call(json!({"op":"show","connection":"acme/corpauth/ci"}));
    let exp = v["expires_at"].as_i64().unwrap_or_else(|| panic!("{v}"));
    assert!(
        (now + 1800..=now + 1805).contains(&exp),
        "{exp} vs {now}: {v}"
    );
}
