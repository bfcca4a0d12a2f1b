//! SPEC §6 "who is asking": a tenant-scoped caller (tenant key or uid grant) reaches only
//! its own tenant's connections and no admin operation.

use crate::support::*;
use serde_json::{Value, json};

/// Every op a tenant-scoped caller might aim at another tenant's data.
fn cross_tenant_ops() -> Vec<Value> {
    let other = "globex/spotify/bob";
    vec![
        json!({"op":"get","connection":other}),
        json!({"op":"get","connection":other,"min_ttl":0,"force_refresh":true}),
        json!({"op":"show","connection":other}),
        json!({"op":"put","connection":other,"token":{"access_token":"AT-hijack"}}),
        json!({"op":"put","connection":"globex/github/new","token":{"access_token":"AT-hijack"}}),
        json!({"op":"remove","connection":other}),
        json!({"op":"list","filter":"globex"}),
        json!({"op":"list","filter":"globex/spotify"}),
        json!({"op":"audit","tenant":"globex"}),
        json!({"op":"get","connection":"globex/apple-music/x"}),
        json!({"op":"get","connection":"globex/apple-music"}),
        json!({"op":"apple_token","tenant":"globex"}),
        json!({"op":"apple_key_list","tenant":"globex"}),
        json!({"op":"apple_key_add","tenant":"globex","team_id":"ABCDE12345","key_id":"ABCDE12345","p8":"x"}),
        json!({"op":"apple_key_activate","tenant":"globex","key_id":"ABCDE12345"}),
        json!({"op":"apple_key_retire","tenant":"globex","key_id":"ABCDE12345","force":true}),
        json!({"op":"backup_export","path":"/tmp/tv-isolation-test.age","tenant":"globex","passphrase":"pw"}),
    ]
}

/// Ops only an admin may run, even aimed at the caller's own tenant.
fn admin_ops() -> Vec<Value> {
    vec![
        json!({"op":"tenant_add","name":"evil"}),
        json!({"op":"tenant_remove","name":"acme","force":true}),
        json!({"op":"tenant_remove","name":"globex","force":true}),
        json!({"op":"client_set","tenant":"acme","provider":"spotify","client_id":"x"}),
        json!({"op":"client_list"}),
        json!({"op":"client_list","tenant":"acme"}),
        json!({"op":"client_remove","tenant":"acme","provider":"spotify"}),
        json!({"op":"remove","connection":"acme/spotify/alice"}),
        json!({"op":"audit"}),
        json!({"op":"passwd","new_passphrase":"pwned-passphrase"}),
        json!({"op":"rekey"}),
        json!({"op":"tenant_key_issue","tenant":"acme"}),
        json!({"op":"tenant_key_issue","tenant":"globex"}),
        json!({"op":"tenant_key_list","tenant":"acme"}),
        json!({"op":"tenant_key_revoke","tenant":"globex","key_id":"0000000000000000"}),
        json!({"op":"tenant_grant","tenant":"acme","uid":4242}),
        json!({"op":"tenant_revoke_grant","tenant":"acme","uid":4242}),
        json!({"op":"tenant_grant_list"}),
        json!({"op":"metrics"}),
        json!({"op":"backup_export","path":"/tmp/tv-isolation-test.age","passphrase":"pw"}),
        json!({"op":"backup_verify","path":"/tmp/tv-isolation-test.age","passphrase":"pw"}),
        json!({"op":"backup_restore","path":"/tmp/tv-isolation-test.age","passphrase":"pw","replace":true}),
        json!({"op":"daemon_info"}),
    ]
}

#[test]
fn tenant_key_isolation_matrix() {
    let tv = TestVault::new();
    let key = two_tenants(&tv);
    let d = Daemon::start(&tv, &[]);
    let mut c = d.conn();
    let hello = c.auth(&key);
    assert_eq!(hello["ok"], true, "{hello}");
    assert_eq!(hello["caller"], "tenant:acme");

    for req in cross_tenant_ops().into_iter().chain(admin_ops()) {
        let v = c.call(req.clone());
        assert_eq!(v["ok"], false, "{req} was allowed: {v}");
        assert_eq!(v["error"]["code"], "forbidden", "{req}: {v}");
        assert!(!v.to_string().contains("AT-globex-bob"), "{req} leaked");
    }

    // its own tenant works
    let v = c.call(json!({"op":"get","connection":"acme/spotify/alice"}));
    assert_eq!(v["token"], "AT-acme-alice", "{v}");
    assert_eq!(
        c.code(json!({"op":"show","connection":"acme/spotify/alice"})),
        "ok"
    );
    assert_eq!(
        c.code(
            json!({"op":"put","connection":"acme/github/ci","token":{"access_token":"AT-acme-ci"}})
        ),
        "ok"
    );
    // list shows only its own, with or without a filter
    for req in [json!({"op":"list"}), json!({"op":"list","filter":"acme"})] {
        let v = c.call(req);
        let names: Vec<&str> = v["connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["connection"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["acme/github/ci", "acme/spotify/alice"]);
    }
    // status and tenant_list are scoped too
    let s = c.call(json!({"op":"status"}));
    assert_eq!(s["connections"], 2, "{s}");
    let t = c.call(json!({"op":"tenant_list"}));
    assert_eq!(t["tenants"].as_array().unwrap().len(), 1, "{t}");
    assert_eq!(t["tenants"][0]["name"], "acme");

    // nothing of globex changed
    let mut admin = d.conn();
    let v = admin.call(json!({"op":"get","connection":"globex/spotify/bob"}));
    assert_eq!(v["token"], "AT-globex-bob");
    assert_eq!(
        admin.code(json!({"op":"show","connection":"globex/github/new"})),
        "not_found"
    );
}

#[test]
fn keys_are_checked_on_every_request_and_revocable() {
    let tv = TestVault::new();
    let key = two_tenants(&tv);
    let d = Daemon::start(&tv, &[]);

    // a wrong key: unauthorized, and the connection stays unauthorized (no fallback to uid)
    let mut bad = d.conn();
    let mut forged = key.clone();
    forged.pop();
    forged.push(if key.ends_with('A') { 'B' } else { 'A' });
    for k in [
        forged.as_str(),
        "",
        "tvk_",
        "garbage",
        "tvk_0123456789abcdef_x",
    ] {
        assert_eq!(bad.auth(k)["error"]["code"], "unauthorized", "{k}");
    }
    assert_eq!(bad.code(json!({"op":"list"})), "unauthorized");
    assert_eq!(bad.call(json!({"op":"hello"}))["caller"], "unauthorized");

    // a good key, then revoked by the admin: the next request on the same connection fails
    let mut c = d.conn();
    assert_eq!(c.auth(&key)["ok"], true);
    let mut admin = d.conn();
    let keys = admin.call(json!({"op":"tenant_key_list","tenant":"acme"}));
    let key_id = keys["keys"][0]["key_id"].as_str().unwrap().to_owned();
    assert!(key.contains(&key_id));
    assert!(
        !keys.to_string().contains(&key[key_id.len() + 5..]),
        "list shows the secret part"
    );
    assert_eq!(
        admin.code(json!({"op":"tenant_key_revoke","tenant":"acme","key_id":key_id})),
        "ok"
    );
    assert_eq!(
        c.code(json!({"op":"get","connection":"acme/spotify/alice"})),
        "unauthorized"
    );
    assert_eq!(d.conn().auth(&key)["error"]["code"], "unauthorized");
}

/// uid grants need a second uid: run the client as `nobody` (needs root; skipped otherwise).
#[test]
fn uid_grant_scopes_another_uid_and_ungranted_uids_are_unauthorized() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to act as a second uid");
        return;
    }
    let nobody = 65534u32;
    let tv = TestVault::new();
    two_tenants(&tv);
    // let `nobody` reach the socket (not the vault, whose directory stays 0700)
    std::fs::set_permissions(tv.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let d = Daemon::start(&tv, &["--socket-mode", "0666"]);
    let as_nobody = |args: &[&str]| {
        let mut c = tv.std_cmd();
        c.env_remove("TOKENVAULT_PASSPHRASE_FILE")
            .env("HOME", "/nonexistent")
            .args(args)
            .uid(nobody)
            .gid(nobody);
        c.output().unwrap()
    };
    let out = as_nobody(&["list", "--json"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).contains("tenant grant"), "{}", stderr(&out));

    tv.daemon_cmd()
        .args(["tenant", "grant", "acme", "--uid", &nobody.to_string()])
        .assert()
        .success();
    let out = as_nobody(&["list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["connection"], "acme/spotify/alice");
    let out = as_nobody(&["get", "acme/spotify/alice"]);
    assert_eq!(stdout(&out), "AT-acme-alice\n");
    let out = as_nobody(&["get", "globex/spotify/bob"]);
    assert_eq!(out.status.code(), Some(5));
    let out = as_nobody(&["tenant", "add", "evil"]);
    assert_eq!(out.status.code(), Some(5));

    tv.daemon_cmd()
        .args([
            "tenant",
            "revoke-grant",
            "acme",
            "--uid",
            &nobody.to_string(),
        ])
        .assert()
        .success();
    let out = as_nobody(&["get", "acme/spotify/alice"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    drop(d);
}

/// `refresh`, `refresh_tenant` and every `connect` step aimed at `tenant`'s connections.
fn flow_ops(tenant: &str) -> Vec<Value> {
    let existing = format!("{tenant}/spotify/carol");
    let fresh = format!("{tenant}/spotify/new");
    let redirect = "http://127.0.0.1:9/callback";
    vec![
        json!({"op":"refresh","connection":existing}),
        json!({"op":"refresh_tenant","tenant":tenant}),
        json!({"op":"connect_start","connection":fresh,"redirect_uri":redirect,"state":"st-1",
               "code_challenge":"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}),
        json!({"op":"connect_code","connection":fresh,"code":"code-x","code_verifier":"v-x",
               "redirect_uri":redirect}),
        json!({"op":"device_start","connection":fresh}),
        json!({"op":"device_poll","connection":fresh,"device_code":"dev-code-1"}),
        json!({"op":"connect_client_credentials","connection":fresh}),
    ]
}

/// The refresh and connect ops a tenant may run on its own connections are refused for
/// another tenant's, before any provider call; `refresh_due` and the backup ops are admin
/// only even when aimed at the caller's own tenant.
#[test]
fn tenant_key_cannot_refresh_connect_or_back_up_another_tenant() {
    use crate::support::fake_provider::{CLIENT_ID, CLIENT_SECRET, FakeProvider};
    use tokenvault::Request;
    use tokenvault::secret::Secret;
    let fp = FakeProvider::start_background();
    let tv = TestVault::new();
    let key = two_tenants(&tv);
    let backup = tv.dir.path().join("globex.age");
    let backup = backup.to_str().unwrap();
    let mut reqs = Vec::new();
    for t in ["acme", "globex"] {
        reqs.push(Request::ClientSet {
            tenant: t.into(),
            provider: "spotify".into(),
            client_id: CLIENT_ID.into(),
            client_secret: Some(Secret::new(CLIENT_SECRET)),
            token_url: Some(fp.token_url()),
            authorization_url: Some(fp.url("/authorize")),
            device_authorization_url: Some(fp.url("/device")),
            revocation_url: None,
            params: Default::default(),
        });
        reqs.push(Request::Put {
            connection: format!("{t}/spotify/carol"),
            token: fp.new_family(),
        });
    }
    // a real backup of globex, so a restore that slipped through would succeed
    reqs.push(Request::BackupExport {
        path: backup.into(),
        tenant: Some("globex".into()),
        recipients: vec![],
        passphrase: Some(Secret::new("backup-pass")),
        include_audit: false,
    });
    tv.setup(reqs);
    let d = Daemon::start(&tv, &[]);
    let mut c = d.conn();
    assert_eq!(c.auth(&key)["ok"], true);

    let admin_only = [
        json!({"op":"refresh_due"}),
        json!({"op":"backup_export","path":tv.dir.path().join("acme.age"),"tenant":"acme","passphrase":"pw"}),
        json!({"op":"backup_verify","path":backup,"passphrase":"backup-pass"}),
        json!({"op":"backup_restore","path":backup,"passphrase":"backup-pass","tenant":"globex","replace":true}),
        json!({"op":"backup_restore","path":backup,"passphrase":"backup-pass","tenant":"acme"}),
        json!({"op":"tenant_key_revoke","tenant":"acme","key_id":"0000000000000000"}),
        json!({"op":"tenant_grant_list","tenant":"acme"}),
        json!({"op":"tenant_grant_list","tenant":"globex"}),
        json!({"op":"apple_key_activate","tenant":"acme","key_id":"ABCDE12345"}),
    ];
    for req in flow_ops("globex").into_iter().chain(admin_only) {
        let v = c.call(req.clone());
        assert_eq!(v["ok"], false, "{req} was allowed: {v}");
        assert_eq!(v["error"]["code"], "forbidden", "{req}: {v}");
    }
    assert_eq!(fp.requests(), 0, "a refused op still called the provider");
    assert!(!tv.dir.path().join("acme.age").exists());

    // the same ops on its own tenant are not refused: the refusal above is the scope check
    for req in flow_ops("acme") {
        let code = c.code(req.clone());
        assert_ne!(code, "forbidden", "{req}");
    }
    assert!(fp.requests() > 0, "own-tenant ops reached the provider");

    // globex is untouched
    let mut admin = d.conn();
    let v = admin.call(json!({"op":"show","connection":"globex/spotify/carol"}));
    assert_eq!(v["status"], "connected", "{v}");
    assert_eq!(
        admin.code(json!({"op":"show","connection":"globex/spotify/new"})),
        "not_found"
    );
    let v = admin.call(json!({"op":"get","connection":"globex/spotify/carol","min_ttl":0}));
    assert_eq!(v["token"], "at-2-0", "{v}");
}
