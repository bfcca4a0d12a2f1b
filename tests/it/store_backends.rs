//! The storage behaviours every backend must keep, run on the redb file and on the shared
//! PostgreSQL store alike (`support::postgres::Backend::both`): records survive a reopen,
//! secrets open only with the right passphrase and only under their own key, `passwd`
//! and `rekey` keep every record, removals remove, an uncommitted transaction changes
//! nothing, the audit log keeps what was done, and a backup of either restores into the
//! other. On PostgreSQL alone: `rekey` and `passwd` on one node while another runs.

use crate::support::postgres::{Backend, eventually};
use crate::support::*;
use tokenvault::contract::{Request, Response};
use tokenvault::secret::Secret;
use tokenvault::vault::records::TenantRecord;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn call(e: &tokenvault::Engine, req: Request) -> tokenvault::Result<Response> {
    e.handle(&admin(), req).await
}

async fn seed(e: &tokenvault::Engine, token: &str) {
    call(
        e,
        Request::TenantAdd {
            name: "acme".into(),
        },
    )
    .await
    .unwrap();
    call(
        e,
        Request::ClientSet {
            tenant: "acme".into(),
            provider: "spotify".into(),
            client_id: "cid-1".into(),
            client_secret: Some(Secret::new("client-secret-xyz")),
            token_url: None,
            authorization_url: None,
            device_authorization_url: None,
            revocation_url: None,
            params: Default::default(),
        },
    )
    .await
    .unwrap();
    put(e, "acme/spotify/alice", token).await;
}

async fn put(e: &tokenvault::Engine, c: &str, token: &str) {
    call(
        e,
        Request::Put {
            connection: c.into(),
            token: serde_json::json!({"access_token": token, "refresh_token": format!("{token}-refresh"), "expires_in": 3600}),
        },
    )
    .await
    .unwrap();
}

/// Whether `e`'s vault holds connection `c` (another node's commit arrives by `NOTIFY`).
fn has_connection(e: &tokenvault::Engine, c: &str) -> bool {
    e.vault().read().unwrap().connection(c).unwrap().is_some()
}

/// Two nodes on one fresh PostgreSQL store, node A seeded with `token`, node B having seen it.
async fn two_nodes(b: &Backend, token: &str) -> (tokenvault::Engine, tokenvault::Engine) {
    let a = b.engine();
    let other = b.engine();
    seed(&a, token).await;
    eventually("node B sees node A's connection", || {
        has_connection(&other, "acme/spotify/alice")
    });
    (a, other)
}

async fn get(e: &tokenvault::Engine, c: &str) -> tokenvault::Result<String> {
    match call(
        e,
        Request::Get {
            connection: c.into(),
            min_ttl: Some(0),
            force_refresh: false,
        },
    )
    .await?
    {
        Response::Token { token, .. } => Ok(token.expose().to_owned()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn records_survive_a_reopen_and_open_only_with_the_passphrase() {
    let rt = rt();
    for b in Backend::both() {
        rt.block_on(async {
            let e = b.engine();
            seed(&e, "access-one").await;
            drop(e);
            let e = b.engine();
            assert_eq!(
                get(&e, "acme/spotify/alice").await.unwrap(),
                "access-one",
                "{}",
                b.name()
            );
            let v = e.vault();
            let rx = v.read().unwrap();
            let client = rx.client("acme", "spotify").unwrap().expect("client kept");
            let secret = rx
                .client_secret("acme", "spotify", &client)
                .unwrap()
                .unwrap();
            assert_eq!(secret.expose(), "client-secret-xyz", "{}", b.name());
            let rec = rx.connection("acme/spotify/alice").unwrap().unwrap();
            let s = rx.secrets("acme/spotify/alice", &rec).unwrap();
            assert_eq!(s.refresh_token.unwrap().expose(), "access-one-refresh");
            assert!(
                rx.next_due().unwrap().is_some(),
                "{}: the due index follows",
                b.name()
            );
        });
        let e = b.open_with("not the passphrase").unwrap_err();
        assert_eq!(e.exit_code(), 3, "{}: {e}", b.name());
    }
}

#[test]
fn passwd_and_rekey_keep_every_record() {
    let rt = rt();
    for b in Backend::both() {
        rt.block_on(async {
            let e = b.engine();
            seed(&e, "tok-a").await;
            let (term, n) = e.vault().rekey().unwrap();
            assert!(
                term >= 2 && n >= 2,
                "{}: term {term}, {n} resealed",
                b.name()
            );
            e.vault()
                .change_passphrase(&Secret::new("new passphrase 2"), None)
                .unwrap();
            drop(e);
            assert_eq!(
                b.open_with(PASSPHRASE).unwrap_err().exit_code(),
                3,
                "{}",
                b.name()
            );
            let v = b.open_with("new passphrase 2").unwrap();
            assert_eq!(v.current_term(), term);
            let e = tokenvault::Engine::new(v);
            assert_eq!(
                get(&e, "acme/spotify/alice").await.unwrap(),
                "tok-a",
                "{}",
                b.name()
            );
        });
    }
}

#[test]
fn removals_remove_and_uncommitted_writes_change_nothing() {
    let rt = rt();
    for b in Backend::both() {
        rt.block_on(async {
            let e = b.engine();
            seed(&e, "tok-r").await;
            put(&e, "acme/spotify/bob", "tok-b").await;
            let tx = e.vault().write().unwrap();
            tx.put_tenant("ghost", &TenantRecord { created_at: 1 })
                .unwrap();
            drop(tx);
            call(
                &e,
                Request::Remove {
                    connection: "acme/spotify/bob".into(),
                    revoke: false,
                },
            )
            .await
            .unwrap();
            drop(e);
            let e = b.engine();
            let rx = e.vault().read().unwrap();
            assert!(
                rx.tenant("ghost").unwrap().is_none(),
                "{}: a dropped Tx wrote",
                b.name()
            );
            assert!(
                rx.connection("acme/spotify/bob").unwrap().is_none(),
                "{}",
                b.name()
            );
            assert!(rx.connection("acme/spotify/alice").unwrap().is_some());
            drop(rx);
            call(
                &e,
                Request::TenantRemove {
                    name: "acme".into(),
                    force: true,
                },
            )
            .await
            .unwrap();
            drop(e);
            let v = b.open();
            let rx = v.read().unwrap();
            assert!(rx.tenants().unwrap().is_empty(), "{}", b.name());
            assert!(rx.clients(None).unwrap().is_empty(), "{}", b.name());
            assert!(rx.connections("").unwrap().is_empty(), "{}", b.name());
            assert!(
                rx.next_due().unwrap().is_none(),
                "{}: due index emptied",
                b.name()
            );
        });
    }
}

#[test]
fn the_audit_log_keeps_what_was_done() {
    let rt = rt();
    for b in Backend::both() {
        rt.block_on(async {
            let e = b.engine();
            seed(&e, "tok-au").await;
            get(&e, "acme/spotify/alice").await.unwrap();
            e.flush_audit().unwrap();
            drop(e);
            let v = b.open();
            let recs = v.read().unwrap().audit(Some("acme"), 0).unwrap();
            let actions: Vec<&str> = recs.iter().map(|r| r.action.as_str()).collect();
            assert!(actions.contains(&"put"), "{}: {actions:?}", b.name());
            assert!(
                actions.iter().any(|a| a.starts_with("get")),
                "{}: {actions:?}",
                b.name()
            );
            let counts: std::collections::BTreeMap<_, _> =
                v.table_counts().unwrap().into_iter().collect();
            assert!(counts["audit"] >= recs.len() as u64, "{}", b.name());
            assert_eq!(counts["connections"], 1);
        });
    }
}

/// A sealed value copied to another connection's row fails to open there (the associated
/// data binds it to its key): on the file through the raw redb handle, on PostgreSQL as a
/// database administrator would, with SQL.
#[test]
fn a_record_moved_to_another_key_fails_to_open() {
    let rt = rt();
    for b in Backend::both() {
        rt.block_on(async {
            let e = b.engine();
            seed(&e, "tok-m").await;
            put(&e, "acme/spotify/mallory", "tok-mallory").await;
        });
        match &b {
            Backend::File(tv) => {
                let db = redb::Database::open(&tv.path).unwrap();
                use redb::ReadableTable;
                let w = db.begin_write().unwrap();
                {
                    let mut t = w
                        .open_table(tokenvault::vault::schema::CONNECTIONS)
                        .unwrap();
                    let alice = t
                        .get("acme/spotify/alice")
                        .unwrap()
                        .unwrap()
                        .value()
                        .to_vec();
                    t.insert("acme/spotify/mallory", alice.as_slice()).unwrap();
                }
                w.commit().unwrap();
            }
            Backend::Pg { pg, db } => {
                pg.psql(
                    db,
                    "UPDATE connections SET value = (SELECT value FROM connections WHERE key = 'acme/spotify/alice') WHERE key = 'acme/spotify/mallory'",
                );
            }
        }
        let v = b.open();
        let rx = v.read().unwrap();
        let rec = rx.connection("acme/spotify/mallory").unwrap().unwrap();
        let err = rx.secrets("acme/spotify/mallory", &rec).unwrap_err();
        assert!(
            matches!(err, tokenvault::Error::Integrity { .. }),
            "{}: {err}",
            b.name()
        );
    }
}

/// Two nodes on one database: what one commits, the other sees without reopening, and a
/// token the other had cached is dropped from its hand-out cache at once.
#[test]
fn another_node_sees_a_commit_and_drops_its_cached_token() {
    let rt = rt();
    let b = Backend::pg();
    rt.block_on(async {
        let (a, other) = two_nodes(&b, "first").await;
        assert_eq!(get(&other, "acme/spotify/alice").await.unwrap(), "first");
        assert!(
            other.vault().cached_token("acme/spotify/alice").is_some(),
            "B cached it"
        );
        put(&a, "acme/spotify/alice", "second").await;
        eventually("node B drops its cached token", || {
            other.vault().cached_token("acme/spotify/alice").is_none()
        });
        assert_eq!(get(&other, "acme/spotify/alice").await.unwrap(), "second");
        call(
            &a,
            Request::TenantAdd {
                name: "beta".into(),
            },
        )
        .await
        .unwrap();
        eventually("node B sees the new tenant", || {
            other
                .vault()
                .read()
                .unwrap()
                .tenant("beta")
                .unwrap()
                .is_some()
        });
    });
}

#[test]
fn a_backup_of_either_store_restores_into_the_other_and_verifies() {
    use crate::support::backup::identity;
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let (_id, id_text, recipient) = identity();
    for (from, to) in [
        (Backend::file(), Backend::pg()),
        (Backend::pg(), Backend::file()),
    ] {
        let what = format!("{} → {}", from.name(), to.name());
        rt.block_on(async {
            let src = from.engine();
            seed(&src, "tok-backed-up").await;
            let path = dir.path().join(format!("{}.age", from.name()));
            let r = call(
                &src,
                Request::BackupExport {
                    path: path.display().to_string(),
                    tenant: None,
                    recipients: vec![recipient.clone()],
                    passphrase: None,
                    include_audit: false,
                },
            )
            .await
            .unwrap();
            let Response::Backup(report) = r else {
                panic!("{what}: {r:?}")
            };
            assert_eq!(
                report.counts.get("connections"),
                Some(&1),
                "{what}: {report:?}"
            );
            let unlock = || Some(Secret::new(id_text.clone()));
            call(
                &src,
                Request::BackupVerify {
                    path: path.display().to_string(),
                    identity: unlock(),
                    passphrase: None,
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{what}: verify: {e}"));
            let dst = to.engine();
            call(
                &dst,
                Request::BackupRestore {
                    path: path.display().to_string(),
                    identity: unlock(),
                    passphrase: None,
                    tenant: None,
                    replace: false,
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{what}: restore: {e}"));
            assert_eq!(
                get(&dst, "acme/spotify/alice").await.unwrap(),
                "tok-backed-up",
                "{what}"
            );
            // a second restore without `replace` refuses the existing tenant, changing nothing
            let again = call(
                &dst,
                Request::BackupRestore {
                    path: path.display().to_string(),
                    identity: unlock(),
                    passphrase: None,
                    tenant: None,
                    replace: false,
                },
            )
            .await;
            assert!(again.is_err(), "{what}: {again:?}");
            // on PostgreSQL, another node sees what the restore wrote
            if to.name() == "postgres" {
                let other = to.engine();
                assert_eq!(
                    get(&other, "acme/spotify/alice").await.unwrap(),
                    "tok-backed-up",
                    "{what}: another node"
                );
            }
        });
    }
}

#[test]
fn a_rekey_on_one_node_is_taken_online_by_the_other() {
    let rt = rt();
    let b = Backend::pg();
    rt.block_on(async {
        let (a, other) = two_nodes(&b, "before-rekey").await;
        assert_eq!(
            get(&other, "acme/spotify/alice").await.unwrap(),
            "before-rekey"
        );
        let (term, _) = a.vault().rekey().unwrap();
        eventually("the other node takes the new key term", || {
            other.vault().current_term() == term
        });
        // the other node reads what the rekey resealed, and seals under the new term
        assert_eq!(
            get(&other, "acme/spotify/alice").await.unwrap(),
            "before-rekey"
        );
        put(&other, "acme/spotify/bob", "sealed-by-b").await;
        eventually("A sees B's new connection", || {
            has_connection(&a, "acme/spotify/bob")
        });
        assert_eq!(get(&a, "acme/spotify/bob").await.unwrap(), "sealed-by-b");
        // a node started later opens everything with the passphrase alone
        let late = b.engine();
        assert_eq!(late.vault().current_term(), term);
        assert_eq!(get(&late, "acme/spotify/bob").await.unwrap(), "sealed-by-b");
        assert_eq!(
            get(&late, "acme/spotify/alice").await.unwrap(),
            "before-rekey"
        );
    });
}

#[test]
fn a_passwd_on_one_node_leaves_the_other_serving_and_writing() {
    let rt = rt();
    let b = Backend::pg();
    rt.block_on(async {
        let (a, other) = two_nodes(&b, "before-passwd").await;
        a.vault()
            .change_passphrase(&Secret::new("the new passphrase 3"), None)
            .unwrap();
        // the other node keeps its keys (the data keys did not change) and goes on
        put(&other, "acme/spotify/carol", "after-passwd").await;
        eventually("A sees B's write", || {
            has_connection(&a, "acme/spotify/carol")
        });
        assert_eq!(get(&a, "acme/spotify/carol").await.unwrap(), "after-passwd");
        // a rekey needs the keyring under the new passphrase: refused with what to do
        let err = other.vault().rekey().unwrap_err().to_string();
        assert!(err.contains("restart it with the new passphrase"), "{err}");
        assert_eq!(
            b.open_with(PASSPHRASE).unwrap_err().exit_code(),
            3,
            "the old passphrase no longer opens the store"
        );
        let e = tokenvault::Engine::new(b.open_with("the new passphrase 3").unwrap());
        assert_eq!(get(&e, "acme/spotify/carol").await.unwrap(), "after-passwd");
        assert_eq!(
            get(&e, "acme/spotify/alice").await.unwrap(),
            "before-passwd"
        );
    });
}
