//! `status` and `health` say what their JSON says, `health` says why it
//! is unhealthy, and `--metrics-listen` answers `/healthz` (200 / 503 with the reasons) and
//! carries `tokenvault_build_info`.

use crate::support::fake_provider::{Canned, FakeProvider, cli_vault_with_spotify_client};
use crate::support::*;
use std::io::{Read, Write};

fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, body.to_owned())
}

fn free_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

/// A vault with one good connection and one the provider refused (needs_reauth).
fn one_needs_reauth(fp: &FakeProvider) -> TestVault {
    let tv = cli_vault_with_spotify_client(fp, &[]);
    for acct in ["good", "gone-5e1d"] {
        let mut t = fp.new_family();
        t["expires_in"] = 3600.into();
        tv.cmd()
            .args(["put", &format!("acme/spotify/{acct}")])
            .write_stdin(t.to_string())
            .assert()
            .success();
    }
    fp.script([Canned::InvalidGrant]);
    tv.cmd()
        .args(["refresh", "acme/spotify/gone-5e1d"])
        .assert()
        .code(6);
    tv
}

#[test]
fn health_says_why_it_is_unhealthy() {
    let fp = FakeProvider::start_background();
    let tv = cli_vault_with_spotify_client(&fp, &[]);
    let mut t = fp.new_family();
    t["expires_in"] = 3600.into();
    tv.cmd()
        .args(["put", "acme/spotify/good"])
        .write_stdin(t.to_string())
        .assert()
        .success();
    let out = tv.cmd().arg("health").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(!stdout(&out).contains("re-authorisation"));

    let tv = one_needs_reauth(&fp);
    let out = tv.cmd().arg("health").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("UNHEALTHY"), "{text}");
    assert!(
        text.contains("1 connection needs re-authorisation"),
        "health does not say why:\n{text}"
    );
    assert!(
        text.contains("tokenvault list --status needs_reauth"),
        "{text}"
    );
    let out = tv.cmd().args(["health", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["healthy"], false);
    let problems = v["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{v}");
    assert!(problems[0].as_str().unwrap().contains("re-authorisation"));
}

#[test]
fn healthz_is_200_when_healthy_and_503_with_the_reason_otherwise() {
    let fp = FakeProvider::start_background();
    let tv = TestVault::new();
    two_tenants(&tv);
    let addr = free_addr();
    let d = Daemon::start(&tv, &["--metrics-listen", &addr]);
    let (code, body) = http_get(&addr, "/healthz");
    assert_eq!((code, body.as_str()), (200, "healthy\n"));
    drop(d);

    let tv = one_needs_reauth(&fp);
    let addr = free_addr();
    let _d = Daemon::start(&tv, &["--metrics-listen", &addr]);
    let (code, body) = http_get(&addr, "/healthz");
    assert_eq!(code, 503, "{body}");
    assert!(body.starts_with("unhealthy\n"), "{body}");
    assert!(
        body.contains("1 connection needs re-authorisation"),
        "{body}"
    );
    // anyone on loopback can ask: no connection is named
    assert!(
        !body.contains("gone-5e1d") && !body.contains("acme/"),
        "{body}"
    );
    let (code, _) = http_get(&addr, "/nope");
    assert_eq!(code, 404);
}

#[test]
fn metrics_carry_build_info_with_version_and_commit() {
    let tv = TestVault::new();
    two_tenants(&tv);
    let version = stdout(&tv.cmd().arg("--version").output().unwrap());
    let commit = version
        .split("(commit ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap()
        .to_owned();
    let want = format!(
        "tokenvault_build_info{{version=\"{}\",commit=\"{commit}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    // in-process `metrics`
    let text = stdout(&tv.cmd().arg("metrics").output().unwrap());
    assert!(text.contains(&want), "{want} not in:\n{text}");
    // and over HTTP
    let addr = free_addr();
    let _d = Daemon::start(&tv, &["--metrics-listen", &addr]);
    let (code, body) = http_get(&addr, "/metrics");
    assert_eq!(code, 200);
    assert!(body.contains(&want), "{body}");
    assert!(
        body.contains("# TYPE tokenvault_build_info gauge"),
        "{body}"
    );
}

/// Everything the JSON of `status` carries is in its text: daemon pid, version, socket
/// and uptime, refresh tokens ending within a week, the last backup.
#[test]
fn status_text_shows_what_its_json_has() {
    let tv = TestVault::new();
    two_tenants(&tv);
    let d = Daemon::start(&tv, &[]);
    let out = tv.daemon_cmd().args(["status", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = stdout(&tv.daemon_cmd().arg("status").output().unwrap());
    let dp = &v["daemon_process"];
    assert_eq!(dp["pid"], d.child.id());
    assert_eq!(dp["socket"], tv.socket().display().to_string());
    assert_eq!(dp["version"], env!("CARGO_PKG_VERSION"));
    assert!(dp["uptime_secs"].as_i64().unwrap() >= 0);
    for want in [
        format!("pid {}", d.child.id()),
        format!("tokenvault {}", env!("CARGO_PKG_VERSION")),
        format!("socket {}", tv.socket().display()),
        "up ".to_string(),
        format!(
            "refresh tokens ending within 7 days: {}",
            v["refresh_tokens_expiring_within_week"]
        ),
        "last backup:".to_string(),
        format!("tenants:      {}", v["tenants"]),
        format!("failures <1h: {}", v["failures_last_hour"]),
    ] {
        assert!(text.contains(&want), "{want:?} missing from:\n{text}");
    }
    // without a daemon there is none to show
    drop(d);
    let v: serde_json::Value =
        serde_json::from_slice(&tv.cmd().args(["status", "--json"]).output().unwrap().stdout)
            .unwrap();
    assert!(v["daemon_process"].is_null(), "{v}");
}
