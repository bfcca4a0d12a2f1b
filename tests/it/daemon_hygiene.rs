//! SPEC §9: no token, key or passphrase in any log line, even at -vv, across every path
//! the daemon takes (hand-outs, imports, tenant keys good and bad, malformed requests,
//! client secrets, shutdown).

use crate::support::*;
use serde_json::json;

#[test]
fn no_secret_reaches_the_daemon_log_at_debug_level() {
    let tv = TestVault::new();
    let at = "AT-HYGIENE-d41d8cd98f00";
    let rt = "RT-HYGIENE-0cc175b9c0f1";
    let idt = "IDT-HYGIENE-92eb5ffee6ae";
    let cs = "CS-HYGIENE-4a8a08f09d37";
    let np = "NEWPASS-HYGIENE-8277e091";
    tv.setup(vec![tokenvault::Request::TenantAdd {
        name: "acme".into(),
    }]);
    let cs_file = tv.file("cs", cs.as_bytes());
    let mut d = Daemon::start(&tv, &["-vv"]);
    let mut c = d.conn();
    assert_eq!(
        c.code(
            json!({"op":"put","connection":"acme/spotify/alice","token":{
            "access_token":at,"refresh_token":rt,"id_token":idt,"expires_in":3600,"custom":"x"}})
        ),
        "ok"
    );
    assert_eq!(
        c.call(json!({"op":"get","connection":"acme/spotify/alice"}))["token"],
        at
    );
    tv.daemon_cmd()
        .args([
            "client",
            "set",
            "acme",
            "spotify",
            "--client-id",
            "cid",
            "--client-secret-file",
        ])
        .arg(&cs_file)
        .assert()
        .success();
    let key = c.call(json!({"op":"tenant_key_issue","tenant":"acme"}))["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut k = d.conn();
    assert_eq!(k.auth(&key)["ok"], true);
    assert_eq!(
        k.code(json!({"op":"get","connection":"acme/spotify/alice"})),
        "ok"
    );
    let mut wrong = d.conn();
    let wrong_key = format!("{}Z", &key[..key.len() - 1]);
    assert_eq!(wrong.auth(&wrong_key)["error"]["code"], "unauthorized");
    // malformed requests quoting secrets
    c.send_raw(
        format!("{{\"op\":\"tenant_grant\",\"tenant\":\"acme\",\"uid\":\"{at}\"}}\n").as_bytes(),
    )
    .unwrap();
    let v = c.recv().unwrap();
    assert!(!v.to_string().contains(at), "error echoes the value: {v}");
    c.send_raw(format!("{{\"op\":\"put\",\"connection\":\"acme/spotify/bob\",\"token\":{{\"refresh_token\":\"{rt}\"}}}}\n").as_bytes())
        .unwrap();
    assert_eq!(c.recv().unwrap()["ok"], false);
    c.send_raw(format!("{{not json {rt}\n").as_bytes()).unwrap();
    assert_eq!(c.recv().unwrap()["ok"], false);
    // the CLI path and a passphrase change through the daemon
    tv.daemon_cmd()
        .args(["get", "acme/spotify/alice"])
        .assert()
        .success();
    let np_file = tv.file("np", np.as_bytes());
    tv.daemon_cmd()
        .arg("passwd")
        .arg("--new-passphrase-file")
        .arg(&np_file)
        .assert()
        .success();
    let (status, _) = d.stop();
    assert_eq!(status.code(), Some(0));
    let log = d.log();
    assert!(log.contains("DEBUG"), "ran at debug level: {log}");
    for secret in [
        at,
        rt,
        idt,
        cs,
        np,
        PASSPHRASE,
        key.as_str(),
        &key[21..],
        &wrong_key[21..],
    ] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
    // nor in the audit table
    let out = tv
        .cmd()
        .env("TOKENVAULT_PASSPHRASE_FILE", &np_file)
        .args(["audit", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let audit = stdout(&out);
    for secret in [at, rt, idt, cs, np, key.as_str()] {
        assert!(!audit.contains(secret));
    }
}

/// The refresh paths of the daemon at debug level: a rotating refresh, a 503 and an
/// `invalid_grant` whose bodies quote the refresh token, a webhook delivery signed with a
/// configured secret. No token the provider issued, client secret, webhook secret or
/// passphrase reaches the log.
#[test]
fn refreshes_and_provider_errors_leave_no_secret_in_the_daemon_log() {
    use crate::support::fake_provider::{Canned, FakeProvider};
    use crate::support::webhook::Receiver;
    use std::time::Duration;
    use tokenvault::Request;
    // every token the provider issues starts with this
    let tok = "HYGRT-3e9d71-";
    let cs = "CS-HYGREF-81f0c2b7";
    let whsec = "WHSEC-HYGIENE-55aa01";
    let fp = FakeProvider::start_background();
    fp.with(|s| {
        s.token_prefix = tok.into();
        s.client_secret = cs.into();
    });
    let hook = Receiver::start();
    let tv = TestVault::new();
    let key_file = tv.file("hook.key", whsec.as_bytes());
    tv.write_config(&format!(
        "[[webhooks]]\nurl = \"{}\"\nsecret_file = \"{}\"\nretry_base_ms = 100\n",
        hook.url,
        key_file.display()
    ));
    let mut reqs = vec![
        Request::TenantAdd {
            name: "acme".into(),
        },
        crate::support::fake_provider::spotify_client_request(&fp, cs),
    ];
    for a in ["alice", "bob", "carol"] {
        reqs.push(Request::Put {
            connection: format!("acme/spotify/{a}"),
            token: fp.new_family(),
        });
    }
    tv.setup(reqs);
    let mut d = Daemon::start(&tv, &["-vv"]);
    let mut c = d.conn();

    // a rotating refresh through the socket and one through the CLI
    let v = c.call(json!({"op":"refresh","connection":"acme/spotify/alice"}));
    assert_eq!(v["ok"], true, "{v}");
    let v = c.call(json!({"op":"get","connection":"acme/spotify/alice"}));
    assert_eq!(v["token"], format!("{tok}at-1-1"), "{v}");
    tv.daemon_cmd()
        .args(["get", "acme/spotify/alice", "--min-ttl", "7200"])
        .assert()
        .success()
        .stdout(format!("{tok}at-1-2\n"));
    // a 503 whose body quotes the refresh token, then success on the retry
    fp.script([Canned::EchoStatus(503)]);
    let v = c.call(json!({"op":"refresh","connection":"acme/spotify/carol"}));
    assert_eq!(v["ok"], true, "{v}");
    // an invalid_grant whose description quotes it: needs_reauth and a webhook
    fp.script([Canned::EchoInvalidGrant]);
    let v = c.call(json!({"op":"refresh","connection":"acme/spotify/bob"}));
    assert_eq!(v["error"]["code"], "needs_reauth", "{v}");
    assert!(
        !v.to_string().contains(tok),
        "the answer quotes the token: {v}"
    );
    assert_eq!(hook.wait_for(1, Duration::from_secs(15)).len(), 1);
    assert_eq!(fp.requests(), 5);

    let (status, _) = d.stop();
    assert_eq!(status.code(), Some(0));
    let log = d.log();
    assert!(log.contains("DEBUG"), "ran at debug level: {log}");
    assert!(
        log.contains("refresh failed"),
        "the failures were logged: {log}"
    );
    assert!(log.contains("webhook delivered"), "{log}");
    for secret in [tok, cs, whsec, PASSPHRASE] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}
