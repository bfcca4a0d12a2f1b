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
