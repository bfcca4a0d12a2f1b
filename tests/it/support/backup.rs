//! Backup test helpers: filling a vault with every kind of record, a comparable snapshot
//! of everything a vault holds (secrets opened), file hashes, age identities.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::manual_is_multiple_of
)]

use super::*;
use std::collections::BTreeMap;
use tokenvault::Request;
use tokenvault::backup::Unlock;
use tokenvault::contract::BackupReport;
use tokenvault::contract::Response;
use tokenvault::vault::crypto::Sealed;
use tokenvault::vault::records::*;

pub const OTHER_PASSPHRASE: &str = "a completely different passphrase";

/// A small scrypt work factor so passphrase backups take milliseconds in tests.
pub const TEST_WORK_FACTOR: u8 = 10;

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub fn run(engine: &Engine, req: Request) -> tokenvault::Result<Response> {
    rt().block_on(engine.handle(&admin(), req))
}

pub fn report(r: tokenvault::Result<Response>) -> BackupReport {
    match r {
        Ok(Response::Backup(b)) => b,
        other => panic!("expected a backup report, got {other:?}"),
    }
}

pub fn sha256_file(p: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(p).unwrap()))
}

pub fn identity() -> (age::x25519::Identity, String, String) {
    use age::secrecy::ExposeSecret;
    let id = age::x25519::Identity::generate();
    let text = format!("{}\n", id.to_string().expose_secret());
    let recipient = id.to_public().to_string();
    (id, text, recipient)
}

pub fn unlock_identity(text: &str) -> Unlock {
    Unlock::Identity(Secret::new(text))
}

/// A second vault (another temp dir) with another passphrase.
pub fn other_vault() -> (TempDir, PathBuf, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other/vault.redb");
    let v = Vault::init(&path, &Secret::new(OTHER_PASSPHRASE), fast_kdf()).unwrap();
    (dir, path, Engine::new(v))
}

pub fn sealed_placeholder() -> Sealed {
    Sealed {
        term: 0,
        nonce: vec![],
        ct: vec![],
    }
}

/// One connection with every metadata field set from `n`.
pub fn connection(tx: &tokenvault::vault::Tx, key: &str, n: u64, token_len: usize) {
    let secrets = TokenSecrets {
        access_token: Secret::new(format!("AT-{n}-{}", "x".repeat(token_len))),
        refresh_token: (n % 2 == 0).then(|| Secret::new(format!("RT-{n}"))),
        id_token: (n % 3 == 0).then(|| Secret::new(format!("ID-{n}"))),
        extra: [("note".to_owned(), serde_json::json!({"n": n, "s": "extra"}))]
            .into_iter()
            .collect(),
    };
    let rec = ConnectionRecord {
        status: Status::ALL[(n % 6) as usize],
        reason: (n % 4 == 0).then(|| format!("reason {n}")),
        status_at: 1_700_000_000 + n as i64,
        attempts: (n % 5) as u32,
        expires_at: (n % 7 != 0).then_some(1_800_000_000 + n as i64),
        refresh_expires_at: (n % 3 == 1).then_some(1_900_000_000 + n as i64),
        due_at: (n % 2 == 1).then_some(1_750_000_000 + n as i64),
        scope: Some(format!("scope-{n}")),
        token_type: Some("Bearer".into()),
        has_refresh_token: n % 2 == 0,
        has_id_token: n % 3 == 0,
        metadata_keys: vec!["note".into()],
        created_at: 1_600_000_000,
        updated_at: 1_650_000_000 + n as i64,
        last_refresh_at: (n % 2 == 0).then_some(1_690_000_000),
        refresh_count: n,
        secrets: sealed_placeholder(),
    };
    let mut rec = rec;
    tx.seal_secrets(key, &mut rec, &secrets);
    tx.put_connection(key, &rec).unwrap();
}

/// What to put into a vault.
#[derive(Debug, Clone)]
pub struct Fill {
    pub tenants: Vec<String>,
    /// connections per tenant
    pub connections: usize,
    pub token_len: usize,
    pub clients: bool,
    pub keys: bool,
    pub apple: bool,
    pub audit: usize,
}

impl Default for Fill {
    fn default() -> Self {
        Fill {
            tenants: vec!["acme".into(), "beta".into()],
            connections: 3,
            token_len: 16,
            clients: true,
            keys: true,
            apple: true,
            audit: 2,
        }
    }
}

/// Fills `vault` with records of every table, in one transaction.
pub fn fill(vault: &Vault, f: &Fill) {
    let tx = vault.write().unwrap();
    let mut n = 0u64;
    for (ti, t) in f.tenants.iter().enumerate() {
        tx.put_tenant(
            t,
            &TenantRecord {
                created_at: 1_600_000_000 + ti as i64,
            },
        )
        .unwrap();
        if f.clients {
            for (pi, p) in ["spotify", "google"].iter().enumerate() {
                let rec = ClientRecord {
                    client_id: format!("cid-{t}-{p}"),
                    secret: None,
                    token_url: (pi == 0).then(|| "https://example.test/token".to_owned()),
                    params: [("tenant_id".to_owned(), format!("tid-{t}"))]
                        .into_iter()
                        .collect(),
                    updated_at: 1_650_000_000,
                    ..Default::default()
                };
                let secret = (pi == 0).then(|| Secret::new(format!("CS-{t}-{p}")));
                tx.put_client(t, p, rec, secret.as_ref()).unwrap();
            }
        }
        if f.keys {
            tx.put_tenant_key(
                &format!("k_{t}_1"),
                &TenantKeyRecord {
                    tenant: t.clone(),
                    hash: vec![ti as u8; 32],
                    label: Some(format!("label {t}")),
                    created_at: 1_650_000_000,
                    revoked_at: (ti % 2 == 1).then_some(1_660_000_000),
                },
            )
            .unwrap();
            tx.put_grant(10_000 + ti as u32, t).unwrap();
        }
        if f.apple {
            let rec = AppleKeyRecord {
                team_id: "TEAM123456".into(),
                key_id: format!("KEY{ti}"),
                private_key: sealed_placeholder(),
                state: "active".into(),
                added_at: 1_650_000_000,
                activated_at: Some(1_650_000_001),
                retired_at: None,
                last_token_exp: Some(1_700_000_000),
                cached_token: None,
            };
            let der: Vec<u8> = (0..138u8).map(|b| b ^ ti as u8).collect();
            tx.put_apple_key(t, rec, Some(&der)).unwrap();
        }
        for c in 0..f.connections {
            connection(&tx, &format!("{t}/spotify/user-{c:06}"), n, f.token_len);
            n += 1;
        }
        for a in 0..f.audit {
            tx.append_audit(&AuditRecord {
                at: 1_700_000_000 + a as i64,
                actor: "test".into(),
                action: "put".into(),
                tenant: Some(t.clone()),
                target: format!("{t}/spotify/user-{a}"),
                outcome: "ok".into(),
                count: 1,
            })
            .unwrap();
        }
    }
    tx.commit().unwrap();
}

/// Everything a vault holds, secrets opened, as comparable JSON.
pub fn snapshot(vault: &Vault, with_audit: bool) -> BTreeMap<String, serde_json::Value> {
    use serde_json::{Value, json, to_value};
    let rx = vault.read().unwrap();
    let strip = |v: Value, field: &str| -> Value {
        let mut v = v;
        if let Some(o) = v.as_object_mut() {
            o.remove(field);
        }
        v
    };
    let mut out = BTreeMap::new();
    for (name, rec) in rx.tenants().unwrap() {
        out.insert(format!("tenant {name}"), to_value(&rec).unwrap());
        for k in rx.apple_keys(&name).unwrap() {
            let der = rx.apple_private_key(&name, &k).unwrap();
            out.insert(
                format!("apple {name}/{}", k.key_id),
                json!({"rec": strip(to_value(&k).unwrap(), "private_key"), "der": hex::encode(&*der)}),
            );
        }
    }
    for (id, rec) in rx.tenant_keys(None).unwrap() {
        out.insert(format!("tenant_key {id}"), to_value(&rec).unwrap());
    }
    for (uid, t) in rx.grants().unwrap() {
        out.insert(format!("grant {uid}"), json!(t));
    }
    for (t, p, rec) in rx.clients(None).unwrap() {
        let secret = rx.client_secret(&t, &p, &rec).unwrap();
        out.insert(
            format!("client {t}/{p}"),
            json!({"rec": strip(to_value(&rec).unwrap(), "secret"), "secret": secret.map(|s| s.expose().to_owned())}),
        );
    }
    rx.for_each_connection("", |k, rec| {
        let s = rx.secrets(k, &rec)?;
        out.insert(
            format!("connection {k}"),
            json!({"rec": strip(to_value(&rec).unwrap(), "secrets"), "secrets": to_value(&s).unwrap()}),
        );
        Ok(true)
    })
    .unwrap();
    out.insert(
        "due index".into(),
        to_value(rx.due(i64::MAX, usize::MAX).unwrap()).unwrap(),
    );
    if with_audit {
        let audit: Vec<_> = rx
            .audit(None, i64::MIN)
            .unwrap()
            .into_iter()
            .filter(|a| !a.action.starts_with("backup_"))
            .collect();
        out.insert("audit".into(), to_value(audit).unwrap());
    }
    out
}
