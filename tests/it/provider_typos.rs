//! Typos caught where they are made: an unknown provider is refused at
//! `put`, `client set` and `connect` — through the binary on the vault file and through
//! the daemon's socket ops — with the known providers listed and the nearest one
//! suggested; nothing is stored. A name that is not a provider name at all is not quoted
//! back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::*;
use serde_json::json;

const KNOWN: &str =
    "known providers: spotify, google, discord, microsoft, github, apple-music, generic";

fn assert_refused(out: &std::process::Output, typo: &str, suggestion: Option<&str>) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains(&format!("provider not found: {typo}")),
        "{err}"
    );
    assert!(err.contains(KNOWN), "{err}");
    assert!(err.contains(&format!("[providers.{typo}]")), "{err}");
    match suggestion {
        Some(s) => assert!(err.contains(&format!("did you mean {s}?")), "{err}"),
        None => assert!(!err.contains("did you mean"), "{err}"),
    }
    assert!(stdout(out).is_empty(), "{}", stdout(out));
}

#[test]
fn put_client_set_and_connect_refuse_an_unknown_provider_on_the_vault_file() {
    let tv = TestVault::new();
    tv.cmd().args(["tenant", "add", "acme"]).assert().success();
    let token = r#"{"access_token":"AT-typo","expires_in":3600}"#;

    let out = tv
        .cmd()
        .args(["put", "acme/spotfy/bob"])
        .write_stdin(token)
        .output()
        .unwrap();
    assert_refused(&out, "spotfy", Some("spotify"));

    let secret = tv.file("client-secret", b"CS-typo-secret");
    let out = tv
        .cmd()
        .args(["client", "set", "acme", "spotfy", "--client-id", "app-1"])
        .arg("--client-secret-file")
        .arg(&secret)
        .output()
        .unwrap();
    assert_refused(&out, "spotfy", Some("spotify"));
    assert!(!stderr(&out).contains("CS-typo-secret"));

    for flow in ["code", "device", "client-credentials"] {
        let out = tv
            .cmd()
            .args([
                "connect",
                "acme/gogle/bob",
                "--flow",
                flow,
                "--timeout",
                "5",
            ])
            .output()
            .unwrap();
        assert_refused(&out, "gogle", Some("google"));
    }
    // far from every known name: no suggestion, still the list
    let out = tv
        .cmd()
        .args(["put", "acme/zzqqxx/bob"])
        .write_stdin(token)
        .output()
        .unwrap();
    assert_refused(&out, "zzqqxx", None);

    // nothing was stored
    let out = tv.cmd().args(["list", "--json"]).output().unwrap();
    assert_eq!(stdout(&out).trim(), "[]", "{}", stderr(&out));
    let out = tv
        .cmd()
        .args(["client", "list", "--json"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out).trim(), "[]", "{}", stderr(&out));

    // the built-ins, and a custom provider of the config file, are accepted
    tv.cmd()
        .args(["put", "acme/spotify/bob"])
        .write_stdin(token)
        .assert()
        .success();
    let cfg = tv.file(
        "custom.toml",
        b"[providers.acme-sso]\ntoken_url = \"https://sso.acme.example/token\"\n",
    );
    tv.cmd()
        .arg("--config")
        .arg(&cfg)
        .args(["put", "acme/acme-sso/bob"])
        .write_stdin(token)
        .assert()
        .success();
    tv.cmd()
        .arg("--config")
        .arg(&cfg)
        .args(["client", "set", "acme", "acme-sso", "--client-id", "app-2"])
        .assert()
        .success();
    // the same name without that config is unknown
    let out = tv
        .cmd()
        .args(["put", "acme/acme-sso/carol"])
        .write_stdin(token)
        .output()
        .unwrap();
    assert_refused(&out, "acme-sso", None);

    // a provider part that is no provider name is refused without being quoted back
    let out = tv
        .cmd()
        .args(["put", "acme/Sp0t!fy-MARK-7f3e/bob"])
        .write_stdin(token)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("provider name"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("MARK-7f3e"), "{}", stderr(&out));
    // nor is a mistyped endpoint URL (a secret pasted into the wrong argument)
    let out = tv
        .cmd()
        .args(["client", "set", "acme", "spotify", "--client-id", "app-1"])
        .args(["--token-url", "htps://x.example/t CS-MARK-91ab"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("https://"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("CS-MARK-91ab"), "{}", stderr(&out));
    // and an address that is not TENANT/PROVIDER/ACCOUNT
    let out = tv.cmd().args(["get", "ADDR-MARK-55cd"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(!stderr(&out).contains("ADDR-MARK-55cd"), "{}", stderr(&out));
}

#[test]
fn the_daemons_ops_refuse_an_unknown_provider() {
    let tv = TestVault::new();
    let key = two_tenants(&tv);
    let d = Daemon::start(&tv, &[]);
    let mut admin = d.conn();
    let refused = |v: &serde_json::Value, typo: &str, suggestion: &str| {
        assert_eq!(v["ok"], false, "{v}");
        assert_eq!(v["error"]["code"], "not_found", "{v}");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains(&format!("provider not found: {typo}")), "{m}");
        assert!(m.contains(&format!("did you mean {suggestion}?")), "{m}");
        assert!(m.contains(KNOWN), "{m}");
    };
    let v = admin
        .call(json!({"op":"put","connection":"acme/spotfy/x","token":{"access_token":"AT-x"}}));
    refused(&v, "spotfy", "spotify");
    let v =
        admin.call(json!({"op":"client_set","tenant":"acme","provider":"discrod","client_id":"c"}));
    refused(&v, "discrod", "discord");
    let v = admin.call(json!({"op":"connect_start","connection":"acme/githb/x",
        "redirect_uri":"http://127.0.0.1:1/callback","state":"s","code_challenge":"c"}));
    refused(&v, "githb", "github");
    let v = admin.call(json!({"op":"device_start","connection":"acme/microsfot/x"}));
    refused(&v, "microsfot", "microsoft");
    let v = admin.call(json!({"op":"connect_client_credentials","connection":"acme/gogle/x"}));
    refused(&v, "gogle", "google");
    // a tenant caller gets the same answer for its own tenant
    let mut t = d.conn();
    assert_eq!(t.auth(&key)["ok"], true);
    let v =
        t.call(json!({"op":"put","connection":"acme/spotfy/y","token":{"access_token":"AT-y"}}));
    refused(&v, "spotfy", "spotify");
    // and the CLI through the daemon
    let out = tv
        .daemon_cmd()
        .args(["put", "acme/spotfy/z"])
        .write_stdin(r#"{"access_token":"AT-z"}"#)
        .output()
        .unwrap();
    assert_refused(&out, "spotfy", Some("spotify"));
    // nothing of it was stored
    let v = admin.call(json!({"op":"list","filter":"acme"}));
    let names: Vec<&str> = v["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["connection"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme/spotify/alice"], "{v}");
    let v = admin.call(json!({"op":"client_list"}));
    assert_eq!(v["clients"], json!([]), "{v}");
}
