//! The refresh engine through the real binary: `provider list/show`, `get --min-ttl`
//! refreshing on demand, `refresh CONNECTION | --due | --tenant`, exit codes of §5.4.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::fake_provider::{CLIENT_ID, CLIENT_SECRET, Canned, FakeProvider};
use crate::support::*;

fn setup(fp: &FakeProvider) -> TestVault {
    let tv = TestVault::new();
    tv.cmd().args(["tenant", "add", "acme"]).assert().success();
    let secret = tv.file("client-secret", CLIENT_SECRET.as_bytes());
    tv.cmd()
        .args(["client", "set", "acme", "spotify", "--client-id", CLIENT_ID])
        .arg("--client-secret-file")
        .arg(&secret)
        .args(["--token-url", &fp.token_url()])
        .assert()
        .success();
    tv
}

fn put(tv: &TestVault, conn: &str, mut token: serde_json::Value, expires_in: i64) {
    token["expires_in"] = expires_in.into();
    tv.cmd()
        .args(["put", conn])
        .write_stdin(token.to_string())
        .assert()
        .success();
}

#[test]
fn provider_list_and_show() {
    let tv = TestVault::new();
    let out = tv
        .cmd()
        .args(["provider", "list", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for n in [
        "spotify",
        "google",
        "discord",
        "microsoft",
        "github",
        "apple-music",
        "generic",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    let cfg = tv.file(
        "config.toml",
        b"[providers.acme]\ntoken_url = \"https://acme.example/token\"\nclient_auth = \"basic\"\n[providers.discord]\nrefresh_buffer_secs = 42\n",
    );
    let out = tv
        .cmd()
        .arg("--config")
        .arg(&cfg)
        .args(["provider", "show", "discord", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["refresh_buffer_secs"], 42);
    assert_eq!(v["client_auth"], "post");
    let out = tv
        .cmd()
        .arg("--config")
        .arg(&cfg)
        .args(["provider", "show", "acme", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["client_auth"], "basic");
    assert_eq!(v["builtin"], false);
    tv.cmd().args(["provider", "show", "nope"]).assert().code(4);
}

#[test]
fn get_min_ttl_refreshes_on_demand_and_refresh_commands_work() {
    let fp = FakeProvider::start_background();
    let tv = setup(&fp);
    put(&tv, "acme/spotify/alice", fp.new_family(), 20);
    // 20 s left: a plain get (min-ttl 30) refreshes
    let out = tv
        .cmd()
        .args(["get", "acme/spotify/alice"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "at-1-1\n");
    // plenty left: no provider call
    tv.cmd()
        .args(["get", "acme/spotify/alice", "--min-ttl", "60"])
        .assert()
        .success()
        .stdout("at-1-1\n");
    assert_eq!(fp.requests(), 1);
    // unless min-ttl asks for more than remains
    tv.cmd()
        .args(["get", "acme/spotify/alice", "--min-ttl", "7200"])
        .assert()
        .success()
        .stdout("at-1-2\n");
    tv.cmd()
        .args(["refresh", "acme/spotify/alice", "--json"])
        .assert()
        .success();
    assert_eq!(fp.requests(), 3);
    put(&tv, "acme/spotify/bob", fp.new_family(), 0);
    let out = tv
        .cmd()
        .args(["refresh", "--due", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = v.as_array().unwrap();
    assert_eq!(results.len(), 1, "{v}");
    assert_eq!(results[0]["connection"], "acme/spotify/bob");
    assert_eq!(results[0]["outcome"], "refreshed");
    let out = tv
        .cmd()
        .args(["refresh", "--tenant", "acme", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2, "{v}");
    tv.cmd().args(["refresh"]).assert().code(2);
}

#[test]
fn exit_codes_follow_the_error_mapping() {
    let fp = FakeProvider::start_background();
    let tv = setup(&fp);
    put(&tv, "acme/spotify/alice", fp.new_family(), 0);
    fp.script([Canned::InvalidGrant]);
    let out = tv
        .cmd()
        .args(["get", "acme/spotify/alice"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(stderr(&out).contains("connect"), "{}", stderr(&out));
    let out = tv
        .cmd()
        .args(["show", "acme/spotify/alice", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "needs_reauth");
    assert_eq!(v["attempts"], 1);
    put(&tv, "acme/spotify/carol", fp.new_family(), 0);
    fp.script([
        Canned::Status(503),
        Canned::Status(503),
        Canned::Status(503),
    ]);
    let out = tv
        .cmd()
        .args(["get", "acme/spotify/carol"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    // no token or secret in any message
    assert!(!stderr(&out).contains("rt-"));
}

/// `connect` while a daemon holds the vault goes through the daemon (the token exchange
/// happens there; no passphrase is available to this command).
#[test]
fn connect_goes_through_a_running_daemon() {
    use crate::support::daemon::Daemon;
    let fp = FakeProvider::start_background();
    let tv = setup(&fp);
    let mut d = Daemon::start(&tv, &[]);
    let out = tv
        .daemon_cmd()
        .args([
            "connect",
            "acme/spotify/svc",
            "--flow",
            "client-credentials",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", stderr(&out), d.log());
    assert!(fp.requests() >= 1);
    let out = tv
        .daemon_cmd()
        .args(["get", "acme/spotify/svc"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).trim().is_empty());
    let (status, _) = d.stop();
    assert!(status.success());
}

/// SPEC §5.4: a missing client secret is a configuration error: status `error`, no retry,
/// exit 6, and the provider is never asked.
#[test]
fn missing_client_secret_is_a_configuration_error_without_a_provider_call() {
    let fp = FakeProvider::start_background();
    let tv = TestVault::new();
    tv.cmd().args(["tenant", "add", "acme"]).assert().success();
    // spotify authenticates with client_secret_basic, so it needs a secret
    tv.cmd()
        .args(["client", "set", "acme", "spotify", "--client-id", CLIENT_ID])
        .args(["--token-url", &fp.token_url()])
        .assert()
        .success();
    put(&tv, "acme/spotify/alice", fp.new_family(), 0);
    let out = tv
        .cmd()
        .args(["refresh", "acme/spotify/alice"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("client-secret-file"),
        "{}",
        stderr(&out)
    );
    let show = |tv: &TestVault| -> serde_json::Value {
        let out = tv
            .cmd()
            .args(["show", "acme/spotify/alice", "--json"])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let v = show(&tv);
    assert_eq!(v["status"], "error", "{v}");
    assert!(v["reason"].as_str().unwrap().contains("secret"), "{v}");
    assert_eq!(v["attempts"], 1, "{v}");
    assert_eq!(v["due_at"], serde_json::Value::Null, "not retried: {v}");
    // an on-demand get fails the same way and does not retry either
    let out = tv
        .cmd()
        .args(["get", "acme/spotify/alice"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
    let out = tv
        .cmd()
        .args(["refresh", "--due", "--json"])
        .output()
        .unwrap();
    let due: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(due, serde_json::json!([]), "an error is not due again");
    assert_eq!(show(&tv)["status"], "error");
    assert_eq!(fp.requests(), 0, "the provider must receive no request");
}
