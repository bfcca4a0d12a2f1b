//! SPEC §6 webhooks through a real `serve`: the `[[webhooks]]` of the config file, a real
//! status change caused by the provider, a receiving server on 127.0.0.1.

use crate::support::fake_provider::{CLIENT_SECRET, Canned, FakeProvider};
use crate::support::webhook::{Receiver, signature};
use crate::support::*;
use serde_json::json;
use std::time::Duration;
use tokenvault::Request;

#[test]
fn a_status_change_in_the_daemon_posts_one_signed_event_without_secrets() {
    let fp = FakeProvider::start_background();
    fp.with(|s| s.token_prefix = "WHTOK-5b0e-".into());
    let hook = Receiver::start();
    let tv = TestVault::new();
    let hook_key = "whsec-SERVE-7c2f19a4";
    // one trailing newline is not part of the key (src/webhook.rs)
    let key_file = tv.file("hook.key", format!("{hook_key}\n").as_bytes());
    tv.write_config(&format!(
        "[[webhooks]]\nurl = \"{}\"\nsecret_file = \"{}\"\nretry_base_ms = 100\n",
        hook.url,
        key_file.display()
    ));
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
    let d = Daemon::start(&tv, &[]);
    let mut c = d.conn();
    // a successful refresh is no status change: nothing is posted
    assert_eq!(
        c.code(json!({"op":"refresh","connection":"acme/spotify/alice"})),
        "ok"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(hook.deliveries().len(), 0);

    // the provider revokes the grant: connected → needs_reauth (through a get that needs
    // a fresh token; a second forced refresh would wait out the 10 s limit)
    fp.script([Canned::InvalidGrant]);
    // the token still works for an hour, so it is still handed out (status says why)
    let v = c.call(json!({"op":"get","connection":"acme/spotify/alice","min_ttl":7200}));
    assert_eq!(v["ok"], true, "{v}");
    let got = hook.wait_for(1, Duration::from_secs(15));
    assert_eq!(got.len(), 1, "{}", d.log());
    // the same status again is not repeated
    let v = c.call(json!({"op":"get","connection":"acme/spotify/alice","min_ttl":7200}));
    assert_eq!(v["ok"], true, "{v}");

    let alert = &got[0];
    assert_eq!(
        alert.header("x-tokenvault-signature"),
        Some(signature(hook_key.as_bytes(), &alert.body).as_str()),
        "signature over the exact body with the key from secret_file"
    );
    assert_eq!(alert.header("x-tokenvault-event"), Some("status_alert"));
    assert_eq!(alert.header("content-type"), Some("application/json"));
    let ev = alert.json();
    assert_eq!(ev["event"], "status_alert", "{ev}");
    assert_eq!(ev["connection"], "acme/spotify/alice", "{ev}");
    assert_eq!(ev["tenant"], "acme");
    assert_eq!(ev["provider"], "spotify");
    assert_eq!(ev["from"], "connected", "{ev}");
    assert_eq!(ev["to"], "needs_reauth", "{ev}");

    // re-authorised by importing a new token: one `recovered` event
    let fresh = fp.new_family();
    assert_eq!(
        c.code(json!({"op":"put","connection":"acme/spotify/alice","token":fresh})),
        "ok"
    );
    let got = hook.wait_for(2, Duration::from_secs(15));
    assert_eq!(got.len(), 2);
    let rec = &got[1];
    assert_eq!(
        rec.header("x-tokenvault-signature"),
        Some(signature(hook_key.as_bytes(), &rec.body).as_str())
    );
    assert_eq!(rec.json()["event"], "recovered");
    assert_eq!(rec.json()["to"], "connected");
    assert!(rec.json()["seq"].as_u64() > ev["seq"].as_u64());

    // give a duplicate time to show up, then check nothing more came and nothing secret
    std::thread::sleep(Duration::from_secs(1));
    let all = hook.deliveries();
    assert_eq!(all.len(), 2, "no duplicates");
    for dlv in &all {
        let text = String::from_utf8_lossy(&dlv.body).into_owned() + &format!("{:?}", dlv.headers);
        for secret in ["WHTOK-5b0e", CLIENT_SECRET, hook_key] {
            assert!(!text.contains(secret), "{secret} in a webhook: {text}");
        }
    }
    drop(d);
}
