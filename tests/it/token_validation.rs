//! `tokenvault test CONNECTION` and the socket op `test`: the access
//! token goes to the provider's validation endpoint (here the fake provider's `/me`, set
//! as `validation_url` in the config), and only there. 2xx → valid, exit 0; 401/403 (or
//! Google's 400 `invalid_token`) → rejected: the connection becomes `needs_reauth`, exit
//! 6; 5xx → exit 7, nothing recorded; no validation endpoint → exit 6 without a call.
//! Over the socket a tenant may test its own connections only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::fake_provider::{FakeProvider, cli_vault_with_spotify_client};
use crate::support::*;
use serde_json::json;

const PREFIX: &str = "TVTEST-7c1e-";

fn setup(fp: &FakeProvider) -> TestVault {
    fp.with(|s| s.token_prefix = PREFIX.into());
    let tv = cli_vault_with_spotify_client(fp, &[]);
    tv.write_config(&format!(
        "[providers.spotify]\nvalidation_url = \"{}\"\n",
        fp.url("/me")
    ));
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

fn show(tv: &TestVault, conn: &str) -> serde_json::Value {
    let out = tv.cmd().args(["show", conn, "--json"]).output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)))
}

fn seen(fp: &FakeProvider) -> Vec<String> {
    fp.with(|s| s.validation_seen.clone())
}

#[test]
fn test_reports_valid_rejected_and_unavailable_through_the_binary() {
    let fp = FakeProvider::start_background();
    let tv = setup(&fp);
    let alice = fp.new_family();
    let token = alice["access_token"].as_str().unwrap().to_owned();
    put(&tv, "acme/spotify/alice", alice, 3600);

    let out = tv
        .cmd()
        .args(["test", "acme/spotify/alice"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("acme/spotify/alice: valid"), "{text}");
    assert!(
        text.contains(&format!("{} answered HTTP 200", fp.url("/me"))),
        "{text}"
    );
    assert_eq!(
        seen(&fp),
        std::slice::from_ref(&token),
        "the token goes to the endpoint, as a Bearer"
    );
    let out = tv
        .cmd()
        .args(["test", "acme/spotify/alice", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["http_status"], 200, "{v}");
    assert_eq!(v["refreshed"], false, "{v}");

    // a provider that is down says nothing about the token: exit 7, status unchanged
    fp.with(|s| s.validation_script.push_back(503));
    let out = tv
        .cmd()
        .args(["test", "acme/spotify/alice"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("answered HTTP 503"),
        "{}",
        stderr(&out)
    );
    assert_eq!(show(&tv, "acme/spotify/alice")["status"], "connected");

    // a rejection is recorded like any provider answer that kills a grant
    fp.with(|s| s.validation_script.push_back(401));
    let out = tv
        .cmd()
        .args(["test", "acme/spotify/alice"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("needs re-authorisation"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("answered HTTP 401"),
        "{}",
        stderr(&out)
    );
    let v = show(&tv, "acme/spotify/alice");
    assert_eq!(v["status"], "needs_reauth", "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("validation endpoint answered HTTP 401"),
        "{v}"
    );
    assert_eq!(v["due_at"], serde_json::Value::Null, "{v}");

    // Google's tokeninfo answers 400 invalid_token for a dead token
    put(&tv, "acme/spotify/bob", fp.new_family(), 3600);
    fp.with(|s| s.validation_script.push_back(400));
    let out = tv
        .cmd()
        .args(["test", "acme/spotify/bob"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert_eq!(show(&tv, "acme/spotify/bob")["status"], "needs_reauth");

    // an expired token is refreshed first, and the new one is what gets tested
    put(&tv, "acme/spotify/carol", fp.new_family(), 0);
    let before = fp.requests();
    let out = tv
        .cmd()
        .args(["test", "acme/spotify/carol", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["refreshed"], true, "{v}");
    assert_eq!(fp.requests(), before + 1);
    let last = seen(&fp).last().unwrap().clone();
    let got = tv
        .cmd()
        .args(["get", "acme/spotify/carol"])
        .output()
        .unwrap();
    assert_eq!(stdout(&got).trim(), last);

    // no validation endpoint: a configuration error, and no call
    tv.cmd()
        .args(["put", "acme/generic/svc"])
        .write_stdin(r#"{"access_token":"TVTEST-7c1e-generic"}"#)
        .assert()
        .success();
    let n = seen(&fp).len();
    let out = tv
        .cmd()
        .args(["test", "acme/generic/svc"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(stderr(&out).contains("validation_url"), "{}", stderr(&out));
    assert_eq!(seen(&fp).len(), n);
    tv.cmd()
        .args(["test", "acme/spotify/nobody"])
        .assert()
        .code(4);

    // every run's output and messages are free of the token
    for args in [
        &["test", "acme/spotify/alice"][..],
        &["test", "acme/spotify/carol", "-vv"],
        &["audit", "--json"],
    ] {
        let out = tv.cmd().args(args).output().unwrap();
        assert!(
            !stdout(&out).contains(PREFIX) && !stderr(&out).contains(PREFIX),
            "{args:?} printed a token: {}{}",
            stdout(&out),
            stderr(&out)
        );
    }
}

#[test]
fn test_over_the_socket_is_tenant_scoped() {
    let fp = FakeProvider::start_background();
    let tv = setup(&fp);
    tv.cmd()
        .args(["tenant", "add", "globex"])
        .assert()
        .success();
    put(&tv, "acme/spotify/alice", fp.new_family(), 3600);
    put(&tv, "globex/spotify/bob", fp.new_family(), 3600);
    let out = tv
        .cmd()
        .args(["tenant", "key", "issue", "acme"])
        .output()
        .unwrap();
    let key = stdout(&out).trim().to_owned();
    let d = Daemon::start(&tv, &["-vv"]);
    let mut c = d.conn();
    assert_eq!(c.auth(&key)["ok"], true);

    let v = c.call(json!({"op":"test","connection":"acme/spotify/alice","id":1}));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["kind"], "tested", "{v}");
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["http_status"], 200, "{v}");
    assert!(
        !v.to_string().contains(PREFIX),
        "the answer holds the token: {v}"
    );

    // another tenant's connection: forbidden, and the provider is not asked
    let n = seen(&fp).len();
    let v = c.call(json!({"op":"test","connection":"globex/spotify/bob"}));
    assert_eq!(v["error"]["code"], "forbidden", "{v}");
    assert_eq!(seen(&fp).len(), n);

    // a rejection over the socket: needs_reauth, recorded
    fp.with(|s| s.validation_script.push_back(403));
    let v = c.call(json!({"op":"test","connection":"acme/spotify/alice"}));
    assert_eq!(v["error"]["code"], "needs_reauth", "{v}");
    let v = c.call(json!({"op":"show","connection":"acme/spotify/alice"}));
    assert_eq!(v["status"], "needs_reauth", "{v}");

    // the CLI with the tenant key goes through the daemon (no passphrase available)
    put_via(&mut c, "acme/spotify/dave", fp.new_family());
    let out = tv
        .daemon_cmd()
        .env("TOKENVAULT_TENANT_KEY", &key)
        .args(["test", "acme/spotify/dave"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("valid"), "{}", stdout(&out));
    let out = tv
        .daemon_cmd()
        .env("TOKENVAULT_TENANT_KEY", &key)
        .args(["test", "globex/spotify/bob"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));

    // audited without the token; the daemon's log (at -vv) never shows it
    let v = c.call(json!({"op":"audit","tenant":"acme"}));
    let tests = v["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "test")
        .count();
    assert!(tests >= 2, "{v}");
    assert!(!v.to_string().contains(PREFIX), "{v}");
    assert!(!d.log().contains(PREFIX), "{}", d.log());
}

fn put_via(c: &mut Conn, conn: &str, mut token: serde_json::Value) {
    token["expires_in"] = 3600.into();
    let v = c.call(json!({"op":"put","connection":conn,"token":token}));
    assert_eq!(v["ok"], true, "{v}");
}
