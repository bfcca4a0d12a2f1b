//! Exit codes that tell the truth: `refresh --due` / `--tenant` exit
//! non-zero when any refresh failed — 6 when a connection needs re-authorisation, 7 when
//! only providers were unavailable — on the vault file and through the daemon, with
//! every result still printed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::fake_provider::{Canned, FakeProvider, cli_vault_with_spotify_client};
use crate::support::*;

fn put(tv: &TestVault, conn: &str, mut token: serde_json::Value, expires_in: i64) {
    token["expires_in"] = expires_in.into();
    tv.cmd()
        .args(["put", conn])
        .write_stdin(token.to_string())
        .assert()
        .success();
}

fn results(out: &std::process::Output) -> Vec<serde_json::Value> {
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
        .as_array()
        .unwrap()
        .clone()
}

fn outcomes(rs: &[serde_json::Value]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = rs
        .iter()
        .map(|r| {
            (
                r["outcome"].as_str().unwrap().to_owned(),
                r["error_code"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn refresh_due_and_tenant_exit_non_zero_when_a_refresh_failed() {
    let fp = FakeProvider::start_background();
    let tv = cli_vault_with_spotify_client(&fp, &[]);
    put(&tv, "acme/spotify/alice", fp.new_family(), 0);
    put(&tv, "acme/spotify/bob", fp.new_family(), 0);

    // one of the two due connections meets a dead grant: 6, both results printed
    fp.script([Canned::InvalidGrant]);
    let out = tv
        .cmd()
        .args(["refresh", "--due", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let rs = results(&out);
    assert_eq!(
        outcomes(&rs),
        [
            ("failed".to_owned(), "needs_reauth".to_owned()),
            ("refreshed".to_owned(), "-".to_owned())
        ],
        "{rs:?}"
    );

    // a provider that is down: 7 (the human form also prints every result)
    put(&tv, "acme/spotify/carol", fp.new_family(), 0);
    fp.script([Canned::Status(503)]);
    let out = tv.cmd().args(["refresh", "--due"]).output().unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("acme/spotify/carol"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("failed"), "{}", stdout(&out));

    // nothing due and nothing failing: 0
    let out = tv
        .cmd()
        .args(["refresh", "--due", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // --tenant: carol's provider still down (every retry) → 7; the others refresh
    fp.script((0..6).map(|_| Canned::Status(503)));
    let out = tv
        .cmd()
        .args(["refresh", "--tenant", "acme", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(
        outcomes(&results(&out))
            .contains(&("failed".to_owned(), "provider_unavailable".to_owned())),
        "{}",
        stdout(&out)
    );
}

#[test]
fn the_exit_code_of_a_refresh_pass_survives_the_daemon() {
    let fp = FakeProvider::start_background();
    let tv = cli_vault_with_spotify_client(&fp, &[]);
    put(&tv, "acme/spotify/alice", fp.new_family(), 3600);
    let d = Daemon::start(&tv, &[]);
    let mut c = d.conn();
    // a refresh token the provider does not know: its refresh fails with invalid_grant
    // (not due, so the daemon's scheduler leaves it to the pass below)
    let v = c.call(
        serde_json::json!({"op":"put","connection":"acme/spotify/dave",
        "token": {"access_token":"AT-dave","refresh_token":"rt-999-0","expires_in":3600}}),
    );
    assert_eq!(v["ok"], true, "{v}");
    let out = tv
        .daemon_cmd()
        .args(["refresh", "--tenant", "acme", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6), "{}\n{}", stderr(&out), d.log());
    assert!(
        outcomes(&results(&out)).contains(&("failed".to_owned(), "needs_reauth".to_owned())),
        "{}",
        stdout(&out)
    );
}
