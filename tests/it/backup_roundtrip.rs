//! Backups that work: export → restore reproduces every record (property test), into a
//! vault with another passphrase; `--tenant` on export and restore; `--replace`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::backup::*;
use crate::support::*;
use proptest::prelude::*;
use tokenvault::Request;
use tokenvault::secret::Secret;

fn export_req(path: &std::path::Path, recipient: &str) -> Request {
    Request::BackupExport {
        path: path.display().to_string(),
        tenant: None,
        recipients: vec![recipient.to_owned()],
        passphrase: None,
        include_audit: true,
    }
}

fn restore_req(
    path: &std::path::Path,
    identity: &str,
    tenant: Option<&str>,
    replace: bool,
) -> Request {
    Request::BackupRestore {
        path: path.display().to_string(),
        identity: Some(Secret::new(identity)),
        passphrase: None,
        tenant: tenant.map(str::to_owned),
        replace,
    }
}

proptest! {
    // Each case initialises two vaults (two Argon2 runs at the cheapest parameters).
    #![proptest_config(ProptestConfig { cases: 6, .. ProptestConfig::default() })]

    #[test]
    fn export_then_restore_into_another_vault_gives_identical_records(
        tenants in proptest::collection::btree_set("[a-z][a-z0-9_-]{0,8}", 1..4),
        connections in 0usize..25,
        token_len in 0usize..300,
        clients in any::<bool>(),
        keys in any::<bool>(),
        apple in any::<bool>(),
        audit in 0usize..4,
        passphrase in any::<bool>(),
    ) {
        let tv = TestVault::new();
        let src = tv.engine();
        let f = Fill { tenants: tenants.into_iter().collect(), connections, token_len, clients, keys, apple, audit };
        fill(src.vault(), &f);
        let before = snapshot(src.vault(), true);
        let file = tv.dir.path().join("backup.age");
        let (_id, id_text, recipient) = identity();
        let req = if passphrase {
            src.set_backup_work_factor(Some(TEST_WORK_FACTOR));
            Request::BackupExport {
                path: file.display().to_string(),
                tenant: None,
                recipients: vec![],
                passphrase: Some(Secret::new("backup pass")),
                include_audit: true,
            }
        } else {
            export_req(&file, &recipient)
        };
        let exported = report(run(&src, req));
        prop_assert_eq!(exported.counts["connections"], (f.tenants.len() * connections) as u64);

        let (_d, _p, dst) = other_vault();
        let restore = if passphrase {
            Request::BackupRestore {
                path: file.display().to_string(),
                identity: None,
                passphrase: Some(Secret::new("backup pass")),
                tenant: None,
                replace: false,
            }
        } else {
            restore_req(&file, &id_text, None, false)
        };
        let restored = report(run(&dst, restore));
        prop_assert_eq!(restored.sha256, exported.sha256);
        prop_assert_eq!(snapshot(dst.vault(), true), before);
        // The target's sealed values are its own: they open only under its keys, and the
        // restore was audited there.
        let audit = dst.vault().read().unwrap().audit(None, i64::MIN).unwrap();
        prop_assert!(audit.iter().any(|a| a.action == "backup_restore"));
    }
}

#[test]
fn tenant_export_holds_one_tenant_and_tenant_restore_picks_one() {
    let tv = TestVault::new();
    let src = tv.engine();
    fill(src.vault(), &Fill::default());
    let (_id, id_text, recipient) = identity();

    // export --tenant acme
    let one = tv.dir.path().join("acme.age");
    let r = report(run(
        &src,
        Request::BackupExport {
            path: one.display().to_string(),
            tenant: Some("acme".into()),
            recipients: vec![recipient.clone()],
            passphrase: None,
            include_audit: true,
        },
    ));
    assert_eq!(r.tenant.as_deref(), Some("acme"));
    assert_eq!(r.counts["tenants"], 1);
    assert_eq!(r.counts["connections"], 3);
    let (_d, _p, dst) = other_vault();
    report(run(&dst, restore_req(&one, &id_text, None, false)));
    let only_acme = |s: &std::collections::BTreeMap<String, serde_json::Value>| {
        s.iter()
            .filter(|(k, v)| !k.contains("beta") && **v != serde_json::json!("beta"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let src_snap = snapshot(src.vault(), false);
    let dst_snap = snapshot(dst.vault(), false);
    assert!(
        dst_snap.keys().all(|k| !k.contains("beta")),
        "{dst_snap:#?}"
    );
    let mut want = only_acme(&src_snap);
    // the due index is one entry: compare the connections themselves
    want.remove("due index");
    let mut got = dst_snap.clone();
    got.remove("due index");
    assert_eq!(got, want);

    // a whole-vault export, restoring only beta
    let all = tv.dir.path().join("all.age");
    report(run(&src, export_req(&all, &recipient)));
    let (_d2, _p2, dst2) = other_vault();
    let r = report(run(&dst2, restore_req(&all, &id_text, Some("beta"), false)));
    assert_eq!(r.counts["tenants"], 1);
    let names: Vec<String> = dst2
        .vault()
        .read()
        .unwrap()
        .tenants()
        .unwrap()
        .into_iter()
        .map(|t| t.0)
        .collect();
    assert_eq!(names, vec!["beta".to_owned()]);
    let conns = dst2.vault().read().unwrap().connections("").unwrap();
    assert!(conns.iter().all(|(k, _)| k.starts_with("beta/")) && conns.len() == 3);

    // a tenant the file does not carry
    let err = run(&dst2, restore_req(&one, &id_text, Some("beta"), false)).unwrap_err();
    assert_eq!(err.exit_code(), 4, "{err}");
}

#[test]
fn existing_tenants_are_refused_unless_replace_which_restores_the_backup_state() {
    let tv = TestVault::new();
    let eng = tv.engine();
    fill(
        eng.vault(),
        &Fill {
            tenants: vec!["acme".into(), "gamma".into()],
            ..Fill::default()
        },
    );
    let (_id, id_text, recipient) = identity();
    let file = tv.dir.path().join("b.age");
    report(run(
        &eng,
        Request::BackupExport {
            path: file.display().to_string(),
            tenant: Some("acme".into()),
            recipients: vec![recipient],
            passphrase: None,
            include_audit: false,
        },
    ));
    let at_backup = snapshot(eng.vault(), false);

    // change acme after the backup: a new connection and a new token on an old one
    let tx = eng.vault().write().unwrap();
    connection(&tx, "acme/spotify/added-later", 999, 5);
    connection(&tx, "acme/spotify/user-000000", 1000, 5);
    connection(&tx, "gamma/spotify/added-later", 1001, 5);
    tx.commit().unwrap();
    let changed = snapshot(eng.vault(), false);

    let hash = sha256_file(&tv.path);
    let err = run(&eng, restore_req(&file, &id_text, None, false)).unwrap_err();
    assert!(
        err.to_string().contains("tenant acme") && err.to_string().contains("--replace"),
        "{err}"
    );
    assert_eq!(
        sha256_file(&tv.path),
        hash,
        "a refused restore changed the file"
    );
    assert_eq!(snapshot(eng.vault(), false), changed);

    let r = report(run(&eng, restore_req(&file, &id_text, None, true)));
    assert!(
        r.notes.iter().any(|n| n.contains("tenant acme replaced")),
        "{r:?}"
    );
    let after = snapshot(eng.vault(), false);
    // acme is back to the backup's state; gamma keeps its later change
    for (k, v) in &after {
        if k.contains("acme") {
            assert_eq!(Some(v), at_backup.get(k), "{k}");
        }
    }
    assert!(!after.contains_key("connection acme/spotify/added-later"));
    assert!(after.contains_key("connection gamma/spotify/added-later"));
    assert_eq!(
        after.keys().filter(|k| k.contains("acme")).count(),
        at_backup.keys().filter(|k| k.contains("acme")).count()
    );
}

#[test]
fn tenant_callers_cannot_back_up_or_restore() {
    let tv = TestVault::new();
    let eng = tv.engine();
    fill(eng.vault(), &Fill::default());
    let tenant = tokenvault::Caller::Tenant {
        tenant: "acme".into(),
        actor: "t".into(),
    };
    let (_id, id_text, recipient) = identity();
    let file = tv.dir.path().join("b.age");
    for req in [
        export_req(&file, &recipient),
        restore_req(&file, &id_text, None, false),
        Request::BackupVerify {
            path: file.display().to_string(),
            identity: Some(Secret::new(id_text.clone())),
            passphrase: None,
        },
    ] {
        let err = rt().block_on(eng.handle(&tenant, req)).unwrap_err();
        assert_eq!(err.exit_code(), 5, "{err}");
    }
    assert!(!file.exists());
}

#[test]
fn restore_into_the_same_vault_does_not_duplicate_audit_records() {
    let tv = TestVault::new();
    let eng = tv.engine();
    fill(eng.vault(), &Fill::default());
    let (_id, id_text, recipient) = identity();
    let file = tv.dir.path().join("b.age");
    report(run(&eng, export_req(&file, &recipient)));
    let before = snapshot(eng.vault(), true);
    let r = report(run(&eng, restore_req(&file, &id_text, None, true)));
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("audit records were already")),
        "{r:?}"
    );
    assert_eq!(snapshot(eng.vault(), true), before);
}
