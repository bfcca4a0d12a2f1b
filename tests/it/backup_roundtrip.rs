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
            src.backups().set_backup_work_factor(Some(TEST_WORK_FACTOR));
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

/// SPEC §8 / issue 6: a backup to two recipients opens with either identity alone (and
/// with no other); its header says what it holds (format, creation time, source, counts);
/// the custom providers of the config travel in it in full.
#[test]
fn two_recipients_each_open_it_and_the_header_and_providers_are_right() {
    use std::collections::BTreeMap;
    use tokenvault::backup::format::{self, Record};
    let tv = TestVault::new();
    two_tenants(&tv);
    let src = tv.engine();
    let config = tokenvault::config::Config::parse(
        "[providers.corpauth]\ntoken_url = \"https://auth.corp.example/oauth/token\"\nclient_auth = \"post\"\ndefault_scopes = [\"read\", \"write\"]\ndefault_lifetime_secs = 1800\n[providers.corpauth.token_params]\naudience = \"api\"\n",
    )
    .unwrap();
    src.set_config(config.clone());
    let (id_a, text_a, rcpt_a) = identity();
    let (_id_b, text_b, rcpt_b) = identity();
    let (_id_c, text_c, _) = identity();
    let file = tv.dir.path().join("two.age");
    let before = chrono::Utc::now().timestamp();
    let r = report(run(
        &src,
        Request::BackupExport {
            path: file.display().to_string(),
            tenant: None,
            recipients: vec![rcpt_a, rcpt_b],
            passphrase: None,
            include_audit: false,
        },
    ));
    let after = chrono::Utc::now().timestamp();
    assert_eq!(r.providers, ["corpauth"]);

    // the header and the providers record, read with the age crate and identity A alone
    let dec = age::Decryptor::new(std::fs::File::open(&file).unwrap()).unwrap();
    let plain = dec
        .decrypt(std::iter::once(&id_a as &dyn age::Identity))
        .unwrap();
    let mut providers = None;
    let (h, t) = format::read_stream::<_, std::convert::Infallible>(plain, |_, rec| {
        if let Record::Providers(p) = rec {
            providers = Some(p);
        }
        Ok(())
    })
    .unwrap_or_else(|_| panic!("the backup does not read back"));
    assert_eq!(h.magic, format::MAGIC);
    assert_eq!(h.format, format::BACKUP_FORMAT);
    assert_eq!(h.tool_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(h.vault_format, tokenvault::vault::schema::FORMAT_VERSION);
    assert!((before..=after).contains(&h.created_at), "{}", h.created_at);
    assert_eq!(r.created_at, h.created_at);
    let canonical = std::fs::canonicalize(&tv.path).unwrap();
    assert!(
        h.source_path == tv.path.display().to_string()
            || h.source_path == canonical.display().to_string(),
        "{}",
        h.source_path
    );
    assert!(!h.source_id.is_empty());
    assert_eq!(h.tenant, None);
    assert!(!h.include_audit);
    let want: BTreeMap<String, u64> = [
        ("tenants", 2),
        ("tenant_keys", 1),
        ("grants", 0),
        ("clients", 0),
        ("apple_keys", 0),
        ("connections", 2),
        ("audit", 0),
        ("providers", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(h.counts, want);
    assert_eq!(t.counts, want);
    let providers = providers.expect("no providers record");
    let corp: tokenvault::config::ProviderConfig =
        serde_json::from_value(providers["corpauth"].clone()).unwrap();
    assert_eq!(corp, config.providers["corpauth"]);

    // verify with each identity alone; a third one is refused (exit 3)
    for text in [&text_a, &text_b] {
        let v = report(run(
            &src,
            Request::BackupVerify {
                path: file.display().to_string(),
                identity: Some(Secret::new(text.as_str())),
                passphrase: None,
            },
        ));
        assert_eq!(v.counts["connections"], 2);
    }
    let err = run(
        &src,
        Request::BackupVerify {
            path: file.display().to_string(),
            identity: Some(Secret::new(text_c)),
            passphrase: None,
        },
    )
    .unwrap_err();
    assert_eq!(err.exit_code(), 3, "{err}");

    // restore with each identity alone into its own fresh vault: identical records; a
    // target whose config lacks the custom provider is told so
    let want_records = snapshot(src.vault(), false);
    for (text, with_config) in [(&text_a, false), (&text_b, true)] {
        let (_dir, _path, dst) = other_vault();
        if with_config {
            dst.set_config(config.clone());
        }
        let r = report(run(
            &dst,
            Request::BackupRestore {
                path: file.display().to_string(),
                identity: Some(Secret::new(text.as_str())),
                passphrase: None,
                tenant: None,
                replace: false,
            },
        ));
        assert_eq!(r.providers, ["corpauth"]);
        let noted = r.notes.iter().any(|n| n.contains("corpauth"));
        assert_eq!(noted, !with_config, "{:?}", r.notes);
        assert_eq!(snapshot(dst.vault(), false), want_records);
    }
}
