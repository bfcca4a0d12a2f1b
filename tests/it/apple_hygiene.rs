//! Apple Music secrets stay secret: no key material or developer token in stderr, logs,
//! the audit log, `Debug` output or `list`; and the socket protocol's JSON requests reach
//! the Apple operations (`get TENANT/apple-music` included).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::apple::*;
use crate::support::*;
use tokenvault::{Request, Response};

/// Distinctive 16-character pieces of the test key's base64 body.
fn key_pieces(key_id: &str) -> Vec<String> {
    p8(key_id)
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .map(|l| l[..16].to_owned())
        .collect()
}

#[test]
fn no_key_or_token_in_stderr_logs_audit_or_listings() {
    let tv = TestVault::new();
    tv.cmd().args(["tenant", "add", "acme"]).assert().success();
    let mut outputs = Vec::new();
    let run = |args: &[&str], extra: Option<&std::path::Path>| {
        let mut c = tv.cmd();
        c.args(["-vv", "--log-format", "json"]).args(args);
        if let Some(p) = extra {
            c.arg("--p8").arg(p);
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        (args.join(" "), stdout(&out), stderr(&out))
    };
    let add = [
        "apple",
        "key",
        "add",
        "acme",
        "--team-id",
        TEAM,
        "--key-id",
        KEY1,
    ];
    outputs.push(run(&add, Some(&fixture("AuthKey_KEY1AAAAAA.p8"))));
    outputs.push(run(&["apple", "token", "acme"], None));
    let token = outputs[1].1.trim().to_owned();
    verify(&token, KEY1);
    let add2 = [
        "apple",
        "key",
        "add",
        "acme",
        "--team-id",
        TEAM,
        "--key-id",
        KEY2,
    ];
    outputs.push(run(&add2, Some(&fixture("AuthKey_KEY2BBBBBB.p8"))));
    outputs.push(run(&["apple", "key", "activate", "acme", KEY2], None));
    outputs.push(run(&["apple", "key", "list", "acme", "--json"], None));
    outputs.push(run(&["apple", "key", "list", "acme"], None));
    outputs.push(run(&["apple", "key", "retire", "acme", KEY1], None));
    outputs.push(run(&["audit", "--json"], None));
    outputs.push(run(&["status", "--json"], None));
    let mut pieces = key_pieces(KEY1);
    pieces.extend(key_pieces(KEY2));
    // the token's signature part is unique to it
    pieces.push(token.rsplit('.').next().unwrap().to_owned());
    for (cmd, out, err) in &outputs {
        for p in &pieces {
            assert!(!err.contains(p.as_str()), "{cmd}: secret in stderr");
            if !cmd.starts_with("apple token") {
                assert!(!out.contains(p.as_str()), "{cmd}: secret in stdout");
            }
        }
    }
}

#[tokio::test]
async fn debug_output_is_redacted() {
    let req = Request::AppleKeyAdd {
        tenant: "acme".into(),
        team_id: TEAM.into(),
        key_id: KEY1.into(),
        p8: Secret::new(p8(KEY1)),
    };
    let dbg = format!("{req:?}");
    for p in key_pieces(KEY1) {
        assert!(!dbg.contains(&p), "{dbg}");
    }
    let (_tv, e, _) = vault_with_key1().await;
    let resp = e
        .handle(
            &admin(),
            Request::AppleToken {
                tenant: "acme".into(),
            },
        )
        .await
        .unwrap();
    let Response::AppleToken(t) = &resp else {
        panic!()
    };
    let sig = t.token.expose().rsplit('.').next().unwrap().to_owned();
    assert!(!format!("{resp:?}").contains(&sig));
    let parsed = tokenvault::apple::key::parse_p8(&p8(KEY1)).unwrap();
    assert_eq!(format!("{parsed:?}"), "ParsedKey([redacted])");
}

#[tokio::test]
async fn protocol_json_requests_reach_the_apple_operations() {
    let tv = TestVault::new();
    let e = engine_with(&tv, TestClock::new(), "");
    let send = |json: serde_json::Value| {
        let req: Request = serde_json::from_value(json).unwrap();
        let e = &e;
        async move { e.handle(&admin(), req).await }
    };
    send(serde_json::json!({"op":"tenant_add","name":"acme"}))
        .await
        .unwrap();
    send(serde_json::json!({
        "op": "apple_key_add", "tenant": "acme", "team_id": TEAM, "key_id": KEY1,
        "p8": p8(KEY1),
    }))
    .await
    .unwrap();
    let r = send(serde_json::json!({"op":"get","connection":"acme/apple-music"}))
        .await
        .unwrap();
    let j = serde_json::to_value(&r).unwrap();
    assert_eq!(j["kind"], "token");
    assert_eq!(j["connection"], "acme/apple-music");
    assert_eq!(j["token_type"], "Bearer");
    verify(j["token"].as_str().unwrap(), KEY1);
    let r = send(serde_json::json!({"op":"apple_token","tenant":"acme"}))
        .await
        .unwrap();
    let j = serde_json::to_value(&r).unwrap();
    assert_eq!(j["kind"], "apple_token");
    assert_eq!(j["key_id"], KEY1);
    let r = send(serde_json::json!({"op":"apple_key_list","tenant":"acme"}))
        .await
        .unwrap();
    let j = serde_json::to_value(&r).unwrap();
    assert_eq!(j["kind"], "apple_keys");
    assert_eq!(j["keys"][0]["state"], "active");
    assert!(
        send(serde_json::json!({"op":"apple_key_retire","tenant":"acme","key_id":KEY1}))
            .await
            .is_err(),
        "retiring the only active key without force"
    );
    // unknown fields are refused like every other op
    assert!(
        serde_json::from_value::<Request>(
            serde_json::json!({"op":"apple_token","tenant":"acme","extra":1})
        )
        .is_err()
    );
}
