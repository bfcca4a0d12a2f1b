//! SPEC §3: every command goes to a live daemon when one answers, and opens the file
//! itself only when none does; a tenant key only works through the daemon.

use crate::support::*;
use predicates::str::contains;

#[test]
fn commands_go_to_the_daemon_while_it_holds_the_vault() {
    let tv = TestVault::new();
    tv.cmd().args(["tenant", "add", "acme"]).assert().success();
    let d = Daemon::start(&tv, &[]);
    // no passphrase is available to these commands: success means the daemon answered
    tv.daemon_cmd()
        .args(["put", "acme/spotify/alice"])
        .write_stdin(
            r#"{"access_token":"AT-via-daemon","refresh_token":"RT-via-daemon","expires_in":3600}"#,
        )
        .assert()
        .success();
    tv.daemon_cmd()
        .args(["get", "acme/spotify/alice"])
        .assert()
        .success()
        .stdout("AT-via-daemon\n");
    tv.daemon_cmd()
        .args(["list", "--json"])
        .assert()
        .success()
        .stdout(contains("acme/spotify/alice"));
    tv.daemon_cmd()
        .args(["show", "acme/spotify/alice"])
        .assert()
        .success()
        .stdout(contains("refresh token:    yes"))
        .stdout(contains("RT-via-daemon").not());
    tv.daemon_cmd()
        .args(["status"])
        .assert()
        .success()
        .stdout(contains("daemon:       running"));
    tv.daemon_cmd()
        .args(["status", "--json"])
        .assert()
        .success()
        .stdout(contains("\"daemon\": true"));
    tv.daemon_cmd()
        .args(["metrics"])
        .assert()
        .success()
        .stdout(contains("tokenvault_tokens_served_total 1"))
        .stdout(contains("tokenvault_connections{status=\"connected\"} 1"));
    // errors carry their exit codes across the socket
    tv.daemon_cmd()
        .args(["get", "acme/spotify/nobody"])
        .assert()
        .code(4);
    tv.daemon_cmd()
        .args(["tenant", "add", "BAD NAME"])
        .assert()
        .code(2);

    // tenant keys: issued once on stdout, used through the daemon only
    let out = tv
        .daemon_cmd()
        .args(["tenant", "key", "issue", "acme", "--label", "ci"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let key = stdout(&out).trim().to_owned();
    assert!(key.starts_with("tvk_") && key.len() > 50, "{key}");
    tv.daemon_cmd()
        .args(["tenant", "key", "list", "acme"])
        .assert()
        .success()
        .stdout(contains("ci"))
        .stdout(contains(&key[21..]).not());
    tv.daemon_cmd()
        .env("TOKENVAULT_TENANT_KEY", &key)
        .args(["get", "acme/spotify/alice"])
        .assert()
        .success()
        .stdout("AT-via-daemon\n");
    let kf = tv.file("tenant.key", format!("{key}\n").as_bytes());
    tv.daemon_cmd()
        .arg("--tenant-key-file")
        .arg(&kf)
        .args(["tenant", "add", "evil"])
        .assert()
        .code(5)
        .stderr(contains("forbidden"));

    // the audit log has the hand-outs (flushed by the daemon)
    tv.daemon_cmd()
        .args(["audit", "acme", "--json"])
        .assert()
        .success()
        .stdout(contains("\"get\""));
    drop(d);

    // no daemon: a tenant key is refused, with a hint; without one the file is opened
    tv.cmd()
        .env("TOKENVAULT_TENANT_KEY", &key)
        .args(["get", "acme/spotify/alice"])
        .assert()
        .code(5)
        .stderr(contains("tokenvault serve"));
    tv.cmd()
        .args(["get", "acme/spotify/alice"])
        .assert()
        .success()
        .stdout("AT-via-daemon\n");
    tv.cmd()
        .args(["status"])
        .assert()
        .success()
        .stdout(contains("not running"));
}

use predicates::prelude::PredicateBooleanExt;

#[test]
fn a_command_aimed_at_another_vault_does_not_go_to_the_daemon() {
    let tv = TestVault::new();
    two_tenants(&tv);
    let _d = Daemon::start(&tv, &[]);
    let other = TestVault::new();
    // same socket, another vault file: opened locally (it has no tenants)
    tv.cmd()
        .env("TOKENVAULT_VAULT", &other.path)
        .args(["tenant", "list"])
        .assert()
        .success()
        .stdout("no tenants\n");
    // the daemon's own vault, named explicitly (through a symlink too): the daemon answers
    let link = tv.dir.path().join("link.redb");
    std::os::unix::fs::symlink(&tv.path, &link).unwrap();
    for v in [&tv.path, &link] {
        tv.daemon_cmd()
            .env("TOKENVAULT_VAULT", v)
            .args(["get", "acme/spotify/alice"])
            .assert()
            .success()
            .stdout("AT-acme-alice\n");
    }
}

/// SPEC §3: `health` is `status` that exits 1 when unhealthy; a connection in
/// `needs_reauth` (here: the provider answered `invalid_grant`) makes the vault unhealthy,
/// both when the CLI opens the file itself and through a live daemon.
#[test]
fn health_exits_1_while_a_connection_needs_reauth() {
    use crate::support::fake_provider::{Canned, FakeProvider};
    let fp = FakeProvider::start_background();
    let tv = crate::support::fake_provider::cli_vault_with_spotify_client(&fp, &[]);
    for conn in ["acme/spotify/alice", "acme/spotify/bob"] {
        tv.cmd()
            .args(["put", conn])
            .write_stdin(fp.new_family().to_string())
            .assert()
            .success();
    }
    let health = |cmd: &mut assert_cmd::Command, json: bool| {
        let mut args = vec!["health"];
        if json {
            args.push("--json");
        }
        let out = cmd.args(&args).output().unwrap();
        let v = json.then(|| serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap());
        (out.status.code(), v, stderr(&out))
    };
    // healthy to begin with
    let (code, v, err) = health(&mut tv.cmd(), true);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(v.unwrap()["healthy"], true);

    fp.script([Canned::InvalidGrant]);
    tv.cmd()
        .args(["refresh", "acme/spotify/alice"])
        .assert()
        .code(6);
    tv.cmd()
        .args(["show", "acme/spotify/alice", "--json"])
        .assert()
        .stdout(contains("needs_reauth"));

    // no daemon: the CLI opens the file
    let (code, _, err) = health(&mut tv.cmd(), false);
    assert_eq!(code, Some(1), "{err}");
    let (code, v, err) = health(&mut tv.cmd(), true);
    assert_eq!(code, Some(1), "{err}");
    let v = v.unwrap();
    assert_eq!(v["healthy"], false, "{v}");
    assert_eq!(v["daemon"], false, "{v}");
    assert_eq!(v["by_status"]["needs_reauth"], 1, "{v}");
    // `status` reports it but is not a health check
    tv.cmd()
        .args(["status"])
        .assert()
        .success()
        .stdout(contains("UNHEALTHY"));

    // through a live daemon (no passphrase: only the daemon can answer)
    let d = Daemon::start(&tv, &[]);
    let (code, _, err) = health(&mut tv.daemon_cmd(), false);
    assert_eq!(code, Some(1), "{err}");
    let (code, v, err) = health(&mut tv.daemon_cmd(), true);
    assert_eq!(code, Some(1), "{err}");
    let v = v.unwrap();
    assert_eq!(v["healthy"], false, "{v}");
    assert_eq!(v["daemon"], true, "{v}");

    // re-authorised (a new token imported): healthy again
    tv.daemon_cmd()
        .args(["put", "acme/spotify/alice"])
        .write_stdin(fp.new_family().to_string())
        .assert()
        .success();
    let (code, v, err) = health(&mut tv.daemon_cmd(), true);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(v.unwrap()["healthy"], true);
    drop(d);
}
