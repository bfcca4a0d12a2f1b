//! `apple key add / list / activate / retire`: keys sealed, one active, bad keys refused
//! with nothing stored.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::apple::*;
use crate::support::*;
use tokenvault::Request;

fn apple_key_count(tv: &TestVault) -> u64 {
    let v = Vault::open(&tv.path, &Secret::new(PASSPHRASE)).unwrap();
    v.table_counts()
        .unwrap()
        .into_iter()
        .find(|(n, _)| *n == "apple_keys")
        .map(|(_, c)| c)
        .unwrap()
}

fn audit_actions(tv: &TestVault) -> Vec<String> {
    let v = Vault::open(&tv.path, &Secret::new(PASSPHRASE)).unwrap();
    v.read()
        .unwrap()
        .audit(None, 0)
        .unwrap()
        .into_iter()
        .map(|r| format!("{} {} {}", r.action, r.target, r.outcome))
        .collect()
}

#[test]
fn bad_keys_are_refused_with_a_clear_error_and_nothing_stored() {
    let tv = TestVault::new();
    tv.cmd().args(["tenant", "add", "acme"]).assert().success();
    let unreadable = tv.dir.path().join("no-such-file.p8");
    let garbage = tv.file("garbage.p8", b"this is not a key\n");
    let truncated = {
        let t = p8(KEY1);
        tv.file("truncated.p8", &t.as_bytes()[..t.len() / 2])
    };
    let cases: Vec<(std::path::PathBuf, &str, &str, &str)> = vec![
        (fixture("rsa-2048.p8"), TEAM, KEY1, "RSA key"),
        (fixture("p384.p8"), TEAM, KEY1, "P-384"),
        (fixture("sec1-p256.pem"), TEAM, KEY1, "SEC1"),
        (fixture("encrypted-p256.p8"), TEAM, KEY1, "encrypted"),
        (fixture("ed25519.p8"), TEAM, KEY1, "Ed25519"),
        (garbage, TEAM, KEY1, "not a PEM document"),
        (truncated, TEAM, KEY1, "not a PEM document"),
        (unreadable, TEAM, KEY1, "cannot read"),
        (fixture("AuthKey_KEY1AAAAAA.p8"), "team", KEY1, "Team ID"),
        (fixture("AuthKey_KEY1AAAAAA.p8"), TEAM, "KEY1", "Key ID"),
        (
            fixture("AuthKey_KEY1AAAAAA.p8"),
            "TEAMAAAAA!",
            KEY1,
            "Team ID",
        ),
        (
            fixture("AuthKey_KEY1AAAAAA.p8"),
            TEAM,
            "key1aaaaaa",
            "Key ID",
        ),
    ];
    for (file, team, key, expect) in cases {
        let out = tv
            .cmd()
            .args([
                "apple",
                "key",
                "add",
                "acme",
                "--team-id",
                team,
                "--key-id",
                key,
            ])
            .arg("--p8")
            .arg(&file)
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(!out.status.success(), "{} was accepted", file.display());
        assert!(err.contains(expect), "{}: {err}", file.display());
        assert!(stdout(&out).is_empty());
        // no key material in the message
        for line in std::fs::read_to_string(&file).unwrap_or_default().lines() {
            if !line.starts_with("-----") && line.len() >= 16 {
                assert!(!err.contains(&line[..16]), "{err}");
            }
        }
        assert_eq!(
            apple_key_count(&tv),
            0,
            "{} stored something",
            file.display()
        );
    }
    assert!(
        !audit_actions(&tv)
            .iter()
            .any(|a| a.starts_with("apple_key")),
        "a refused key was audited as added"
    );
}

#[tokio::test]
async fn bad_keys_through_the_engine_store_nothing() {
    let (tv, e, _) = vault_with_key1().await;
    for f in ["rsa-2048.p8", "p384.p8", "sec1-p256.pem", "ed25519.p8"] {
        let r = e
            .handle(
                &admin(),
                Request::AppleKeyAdd {
                    tenant: "acme".into(),
                    team_id: TEAM.into(),
                    key_id: KEY2.into(),
                    p8: Secret::new(fixture_text(f)),
                },
            )
            .await;
        let err = r.expect_err(f);
        assert_eq!(err.code(), "bad_request", "{f}: {err}");
        assert_eq!(err.exit_code(), 2);
    }
    assert_eq!(keys(&e, "acme").await.len(), 1);
    drop(e);
    assert_eq!(apple_key_count(&tv), 1);
}

#[test]
fn add_list_activate_retire_through_the_binary() {
    let tv = TestVault::new();
    tv.cmd().args(["tenant", "add", "acme"]).assert().success();
    for k in [KEY1, KEY2] {
        let out = tv
            .cmd()
            .args([
                "apple",
                "key",
                "add",
                "acme",
                "--team-id",
                TEAM,
                "--key-id",
                k,
            ])
            .arg("--p8")
            .arg(fixture(&format!("AuthKey_{k}.p8")))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // adding the same key id twice is refused
    tv.cmd()
        .args([
            "apple",
            "key",
            "add",
            "acme",
            "--team-id",
            TEAM,
            "--key-id",
            KEY1,
        ])
        .arg("--p8")
        .arg(fixture("AuthKey_KEY1AAAAAA.p8"))
        .assert()
        .failure();
    let list = |tv: &TestVault| -> serde_json::Value {
        let out = tv
            .cmd()
            .args(["apple", "key", "list", "acme", "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let l = list(&tv);
    let states: Vec<(&str, &str)> = l
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["key_id"].as_str().unwrap(), k["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, vec![(KEY1, "active"), (KEY2, "inactive")]);
    // the list never shows key material
    let text = serde_json::to_string(&l).unwrap();
    assert!(
        !text.contains("private_key") && !text.contains("MIG"),
        "{text}"
    );

    // a token from KEY1, so KEY1 has a last token when it is replaced
    let out = tv.cmd().args(["apple", "token", "acme"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    verify(stdout(&out).trim(), KEY1);

    tv.cmd()
        .args(["apple", "key", "activate", "acme", KEY2])
        .assert()
        .success();
    let l = list(&tv);
    assert_eq!(l[0]["state"], "retiring");
    assert!(l[0]["last_token_exp"].as_i64().unwrap() > chrono::Utc::now().timestamp());
    assert_eq!(l[1]["state"], "active");
    // human output names the states
    let out = tv
        .cmd()
        .args(["apple", "key", "list", "acme"])
        .output()
        .unwrap();
    let human = stdout(&out);
    assert!(
        human.contains("retiring") && human.contains("active"),
        "{human}"
    );

    // the active key cannot be retired without --force
    let out = tv
        .cmd()
        .args(["apple", "key", "retire", "acme", KEY2])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("active key"));
    tv.cmd()
        .args(["apple", "key", "retire", "acme", KEY1])
        .assert()
        .success();
    assert_eq!(list(&tv)[0]["state"], "retired");

    // unknown key / tenant
    let out = tv
        .cmd()
        .args(["apple", "key", "activate", "acme", "NOSUCHKEY0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let out = tv
        .cmd()
        .args(["apple", "key", "list", "nobody"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));

    // every admin change is audited, without secrets
    let actions = audit_actions(&tv);
    for want in [
        "apple_key_add acme/KEY1AAAAAA",
        "apple_key_add acme/KEY2BBBBBB",
        "apple_key_activate acme/KEY2BBBBBB",
        "apple_key_retire acme/KEY1AAAAAA",
        "apple_token acme/apple-music ok",
    ] {
        assert!(
            actions.iter().any(|a| a.starts_with(want)),
            "{want} not in {actions:?}"
        );
    }
}

#[tokio::test]
async fn key_admin_needs_an_admin_and_list_is_tenant_scoped() {
    let (_tv, e, _) = vault_with_key1().await;
    e.handle(
        &admin(),
        Request::TenantAdd {
            name: "other".into(),
        },
    )
    .await
    .unwrap();
    let acme = Caller::Tenant {
        tenant: "acme".into(),
        actor: "t".into(),
    };
    let denied = [
        Request::AppleKeyAdd {
            tenant: "acme".into(),
            team_id: TEAM.into(),
            key_id: KEY2.into(),
            p8: Secret::new(p8(KEY2)),
        },
        Request::AppleKeyActivate {
            tenant: "acme".into(),
            key_id: KEY1.into(),
        },
        Request::AppleKeyRetire {
            tenant: "acme".into(),
            key_id: KEY1.into(),
            force: true,
        },
        Request::AppleKeyList {
            tenant: "other".into(),
        },
        Request::AppleToken {
            tenant: "other".into(),
        },
    ];
    for req in denied {
        let op = req.op();
        let err = e.handle(&acme, req).await.expect_err(op);
        assert_eq!(err.code(), "forbidden", "{op}");
    }
    // its own tenant's list is fine
    e.handle(
        &acme,
        Request::AppleKeyList {
            tenant: "acme".into(),
        },
    )
    .await
    .unwrap();
}
