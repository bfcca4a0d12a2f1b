//! Issue 2, point 5: every failure of the vault file gives a clear error, the right exit
//! code, and loses nothing.

use crate::support::*;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use tokenvault::contract::{Request, Response};
use tokenvault::secret::Secret;
use tokenvault::vault::Vault;
use tokenvault::vault::records::{AppleKeyRecord, ClientRecord, ConnectionRecord};
use tokenvault::vault::schema::{APPLE_KEYS, CLIENTS, CONNECTIONS, META, TENANT_KEYS};

fn seed(tv: &TestVault) {
    tv.cmd().args(["tenant", "add", "acme"]).assert().success();
    tv.cmd().args(["tenant", "add", "other"]).assert().success();
    for (c, t) in [
        ("acme/spotify/alice", "AT-alice"),
        ("acme/spotify/bob", "AT-bob"),
        ("other/spotify/alice", "AT-other"),
    ] {
        tv.cmd()
            .args(["put", c])
            .write_stdin(format!(
                r#"{{"access_token":"{t}","refresh_token":"RT-{t}","expires_in":3600}}"#
            ))
            .assert()
            .success();
    }
}

fn read_raw(tv: &TestVault, key: &str) -> Vec<u8> {
    let db = redb::ReadOnlyDatabase::open(&tv.path).unwrap();
    let r = db.begin_read().unwrap();
    let t = r.open_table(CONNECTIONS).unwrap();
    t.get(key).unwrap().unwrap().value().to_vec()
}

fn write_raw(tv: &TestVault, key: &str, bytes: &[u8]) {
    let db = redb::Database::open(&tv.path).unwrap();
    let w = db.begin_write().unwrap();
    w.open_table(CONNECTIONS)
        .unwrap()
        .insert(key, bytes)
        .unwrap();
    w.commit().unwrap();
}

fn get(tv: &TestVault, c: &str) -> std::process::Output {
    tv.cmd().args(["get", c]).output().unwrap()
}

/// Runs each command with a wrong passphrase: exit 3, "wrong passphrase", and the vault
/// file byte-for-byte as it was.
fn wrong_passphrase_changes_no_byte(tv: &TestVault, commands: &[&[&str]]) {
    let bad = tv.file("bad", b"not the passphrase\n");
    refused_with_exit_3_and_no_byte_changed(tv, commands, Some(&bad), "wrong passphrase");
}

/// Runs each command (with `passphrase_file` when given): exit 3, `message` on stderr,
/// and the vault file byte-for-byte as it was.
fn refused_with_exit_3_and_no_byte_changed(
    tv: &TestVault,
    commands: &[&[&str]],
    passphrase_file: Option<&std::path::Path>,
    message: &str,
) {
    let before = std::fs::read(&tv.path).unwrap();
    for args in commands {
        let mut cmd = tv.cmd();
        if let Some(f) = passphrase_file {
            cmd.env("TOKENVAULT_PASSPHRASE_FILE", f);
        }
        let out = cmd.args(*args).output().unwrap();
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{}", stderr(&out));
    }
    assert_eq!(
        before,
        std::fs::read(&tv.path).unwrap(),
        "a refused command changed the vault file"
    );
}

#[test]
fn wrong_passphrase_exits_3_and_changes_no_byte() {
    let tv = TestVault::new();
    seed(&tv);
    wrong_passphrase_changes_no_byte(
        &tv,
        &[
            &["list"],
            &["get", "acme/spotify/alice"],
            &["tenant", "add", "x"],
            &["rekey"],
        ],
    );
}

/// A vault left open by a crash needs redb's repair, which writes; a wrong passphrase must
/// still leave every byte as it was, and the right one then opens it with nothing lost.
#[test]
fn wrong_passphrase_on_a_crashed_vault_changes_no_byte() {
    let tv = TestVault::new();
    seed(&tv);
    let mut d = crate::support::daemon::Daemon::start(&tv, &[]);
    // A daemon writes nothing until it commits a change; one commit, then the kill.
    tv.cmd().args(["tenant", "add", "late"]).assert().success();
    d.signal(nix::sys::signal::Signal::SIGKILL);
    d.child.wait().unwrap();
    assert!(
        matches!(
            redb::ReadOnlyDatabase::open(&tv.path),
            Err(redb::DatabaseError::RepairAborted)
        ),
        "the killed daemon should leave a file that needs repair"
    );
    wrong_passphrase_changes_no_byte(&tv, &[&["list"], &["status"], &["tenant", "add", "x"]]);
    let out = get(&tv, "acme/spotify/alice");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "AT-alice");
    assert!(
        redb::ReadOnlyDatabase::open(&tv.path).is_ok(),
        "repaired on the real open"
    );
}

#[test]
fn no_passphrase_and_no_terminal_is_exit_3_with_advice() {
    let tv = TestVault::new();
    let out = tv
        .cmd()
        .env_remove("TOKENVAULT_PASSPHRASE_FILE")
        .arg("list")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("--passphrase-file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn flipped_byte_in_a_sealed_record_fails_only_that_record() {
    let tv = TestVault::new();
    seed(&tv);
    let mut rec: ConnectionRecord =
        rmp_serde::from_slice(&read_raw(&tv, "acme/spotify/alice")).unwrap();
    rec.secrets.ct[3] ^= 0x40;
    write_raw(
        &tv,
        "acme/spotify/alice",
        &rmp_serde::to_vec_named(&rec).unwrap(),
    );

    let out = get(&tv, "acme/spotify/alice");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("integrity"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
    // the others still open, and metadata of the damaged one is still listed
    assert_eq!(stdout(&get(&tv, "acme/spotify/bob")), "AT-bob\n");
    assert_eq!(stdout(&get(&tv, "other/spotify/alice")), "AT-other\n");
    tv.cmd().arg("list").assert().success();
}

#[test]
fn garbage_in_a_record_value_is_an_integrity_error_not_a_panic() {
    let tv = TestVault::new();
    seed(&tv);
    write_raw(&tv, "acme/spotify/alice", b"\xc1\xff garbage");
    let out = get(&tv, "acme/spotify/alice");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("integrity"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"));
    assert_eq!(stdout(&get(&tv, "acme/spotify/bob")), "AT-bob\n");
}

#[test]
fn sealed_value_moved_to_another_record_or_tenant_is_refused() {
    let tv = TestVault::new();
    seed(&tv);
    let alice = read_raw(&tv, "acme/spotify/alice");
    // to another account of the same tenant
    write_raw(&tv, "acme/spotify/bob", &alice);
    let out = get(&tv, "acme/spotify/bob");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("integrity"));
    assert!(!stdout(&out).contains("AT-alice"));
    // to another tenant
    write_raw(&tv, "other/spotify/alice", &alice);
    let out = get(&tv, "other/spotify/alice");
    assert_eq!(out.status.code(), Some(1));
    assert!(!stdout(&out).contains("AT-alice"));
    // the original still opens
    assert_eq!(stdout(&get(&tv, "acme/spotify/alice")), "AT-alice\n");
}

#[test]
fn garbage_empty_and_truncated_files_give_a_clear_error() {
    let tv = TestVault::new();
    seed(&tv);
    let good = std::fs::read(&tv.path).unwrap();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        (
            "garbage",
            (0..100_000u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect(),
        ),
        ("text", b"{\"access_token\":\"x\"}\n".to_vec()),
    ];
    for cut in [16, 512, 4096, good.len() / 2, good.len() - 1] {
        cases.push(("truncated", good[..cut].to_vec()));
    }
    for (name, bytes) in cases {
        std::fs::write(&tv.path, &bytes).unwrap();
        let out = tv.cmd().arg("list").output().unwrap();
        let err = stderr(&out);
        assert!(!out.status.success(), "{name} {}: opened", bytes.len());
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert!(
            err.contains("not a readable tokenvault file") || err.contains("wrong passphrase"),
            "{name} {}: {err}",
            bytes.len()
        );
        assert_eq!(
            std::fs::read(&tv.path).unwrap(),
            bytes,
            "{name}: the file was changed"
        );
    }
}

#[test]
fn a_vault_held_open_by_another_process_is_exit_3_naming_the_cause() {
    let tv = TestVault::new();
    seed(&tv);
    let engine = tv.engine(); // holds the file open, as a daemon would
    refused_with_exit_3_and_no_byte_changed(
        &tv,
        &[&["list"], &["tenant", "add", "x"], &["rekey"]],
        None,
        "in use by another process",
    );
    drop(engine);
    tv.cmd().arg("list").assert().success();
}

#[test]
fn init_refuses_an_existing_file() {
    let tv = TestVault::new();
    seed(&tv);
    let before = std::fs::read(&tv.path).unwrap();
    let out = tv
        .cmd()
        .args(["init", "--kdf-memory-mib", "19", "--kdf-iterations", "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("never overwrites"),
        "{}",
        stderr(&out)
    );
    assert_eq!(before, std::fs::read(&tv.path).unwrap());
    // also a non-vault file
    let other = tv.file("notes.txt", b"hello");
    let out = tv
        .cmd()
        .env("TOKENVAULT_VAULT", &other)
        .args(["init", "--kdf-memory-mib", "19", "--kdf-iterations", "2"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(std::fs::read(&other).unwrap(), b"hello");
}

#[test]
fn init_refuses_weak_kdf_parameters() {
    let tv = TestVault::empty();
    for args in [["--kdf-memory-mib", "18"], ["--kdf-iterations", "1"]] {
        let out = tv.cmd().arg("init").args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("below the minimum"));
        assert!(!tv.path.exists());
    }
}

#[test]
fn files_are_0600_in_0700_directories() {
    use std::os::unix::fs::PermissionsExt;
    let tv = TestVault::empty();
    let path = tv.dir.path().join("deep/er/vault.redb");
    tv.cmd()
        .env("TOKENVAULT_VAULT", &path)
        .args([
            "init",
            "--kdf-memory-mib",
            "19",
            "--kdf-iterations",
            "2",
            "--kdf-parallelism",
            "1",
        ])
        .assert()
        .success();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    assert_eq!(mode(&tv.dir.path().join("deep")), 0o700);
}

#[test]
fn newer_format_is_refused_with_advice() {
    let tv = TestVault::new();
    {
        let db = redb::Database::open(&tv.path).unwrap();
        let w = db.begin_write().unwrap();
        w.open_table(META)
            .unwrap()
            .insert("format_version", 99u32.to_be_bytes().as_slice())
            .unwrap();
        w.commit().unwrap();
    }
    let before = std::fs::read(&tv.path).unwrap();
    let out = tv.cmd().arg("list").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("upgrade tokenvault"),
        "{}",
        stderr(&out)
    );
    assert_eq!(before, std::fs::read(&tv.path).unwrap());
}

/// A table's rows as raw (key, value bytes).
type Rows = Vec<(String, Vec<u8>)>;

fn table_bytes(tv: &TestVault, table: TableDefinition<&str, &[u8]>) -> Rows {
    let db = redb::ReadOnlyDatabase::open(&tv.path).unwrap();
    let r = db.begin_read().unwrap();
    let t = r.open_table(table).unwrap();
    t.iter()
        .unwrap()
        .map(|e| {
            let (k, v) = e.unwrap();
            (k.value().to_owned(), v.value().to_vec())
        })
        .collect()
}

fn all_connection_bytes(tv: &TestVault) -> Rows {
    table_bytes(tv, CONNECTIONS)
}

/// Every table holding sealed values or key hashes, as raw bytes.
fn sealed_tables(tv: &TestVault) -> Vec<(&'static str, Rows)> {
    vec![
        ("connections", table_bytes(tv, CONNECTIONS)),
        ("clients", table_bytes(tv, CLIENTS)),
        ("tenant_keys", table_bytes(tv, TENANT_KEYS)),
        ("apple_keys", table_bytes(tv, APPLE_KEYS)),
    ]
}

/// A client with a sealed secret, a tenant key and an Apple signing key (fixture) in
/// tenant `acme`, through the binary.
fn seed_secrets(tv: &TestVault) {
    let secret = tv.file("cs", b"client-secret-value");
    tv.cmd()
        .args([
            "client",
            "set",
            "acme",
            "spotify",
            "--client-id",
            "cid",
            "--client-secret-file",
        ])
        .arg(&secret)
        .assert()
        .success();
    tv.cmd()
        .args(["tenant", "key", "issue", "acme", "--label", "ci"])
        .assert()
        .success();
    tv.cmd()
        .args(["apple", "key", "add", "acme", "--team-id", apple::TEAM])
        .args(["--key-id", apple::KEY1, "--p8"])
        .arg(apple::fixture("AuthKey_KEY1AAAAAA.p8"))
        .assert()
        .success();
}

#[test]
fn passwd_rewrites_no_record_and_the_old_passphrase_stops_working() {
    let tv = TestVault::new();
    seed(&tv);
    seed_secrets(&tv);
    let records = sealed_tables(&tv);
    for (table, rows) in &records {
        assert!(!rows.is_empty(), "nothing seeded in {table}");
    }
    let newp = tv.file("newpass", b"a much better passphrase\n");
    tv.cmd()
        .args(["passwd", "--new-passphrase-file"])
        .arg(&newp)
        .assert()
        .success();
    for ((table, before), (_, after)) in records.iter().zip(sealed_tables(&tv)) {
        assert_eq!(before, &after, "passwd rewrote records of {table}");
    }
    let out = get(&tv, "acme/spotify/alice");
    assert_eq!(out.status.code(), Some(3));
    let out = tv
        .cmd()
        .env("TOKENVAULT_PASSPHRASE_FILE", &newp)
        .args(["get", "acme/spotify/alice"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "AT-alice\n", "{}", stderr(&out));
    // the untouched sealed client secret and Apple key still open under the new passphrase
    let v = Vault::open(&tv.path, &Secret::new("a much better passphrase")).unwrap();
    let rx = v.read().unwrap();
    let client = rx.client("acme", "spotify").unwrap().unwrap();
    assert_eq!(
        rx.client_secret("acme", "spotify", &client)
            .unwrap()
            .unwrap()
            .expose(),
        "client-secret-value"
    );
    drop(rx);
    drop(v);
    let out = tv
        .cmd()
        .env("TOKENVAULT_PASSPHRASE_FILE", &newp)
        .args(["apple", "token", "acme"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    apple::verify(stdout(&out).trim(), apple::KEY1);
}

#[tokio::test]
async fn rekey_reseals_everything_under_a_new_term() {
    let tv = TestVault::new();
    seed(&tv);
    seed_secrets(&tv);
    let before = all_connection_bytes(&tv);
    let clients_before = table_bytes(&tv, CLIENTS);
    tv.cmd()
        .arg("rekey")
        .assert()
        .success()
        .stdout(predicates::str::contains("term 2"));
    let after = all_connection_bytes(&tv);
    assert_ne!(before, after);
    for (_, bytes) in &after {
        let rec: ConnectionRecord = rmp_serde::from_slice(bytes).unwrap();
        assert_eq!(rec.secrets.term, 2);
    }
    // the client record's sealed secret and the Apple key are re-sealed under term 2 too
    let clients_after = table_bytes(&tv, CLIENTS);
    assert_ne!(clients_before, clients_after);
    for (key, bytes) in &clients_after {
        let rec: ClientRecord = rmp_serde::from_slice(bytes).unwrap();
        assert_eq!(rec.secret.map(|s| s.term), Some(2), "client {key}");
    }
    let apple_after = table_bytes(&tv, APPLE_KEYS);
    assert!(!apple_after.is_empty());
    for (key, bytes) in &apple_after {
        let rec: AppleKeyRecord = rmp_serde::from_slice(bytes).unwrap();
        assert_eq!(rec.private_key.term, 2, "apple key {key}");
    }
    let out = tv.cmd().args(["apple", "token", "acme"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    apple::verify(stdout(&out).trim(), apple::KEY1);
    for (c, t) in [
        ("acme/spotify/alice", "AT-alice"),
        ("other/spotify/alice", "AT-other"),
    ] {
        assert_eq!(stdout(&get(&tv, c)), format!("{t}\n"));
    }
    // new writes carry the new term; the client secret still opens
    tv.cmd()
        .args(["put", "acme/google/carol"])
        .write_stdin(r#"{"access_token":"AT-carol"}"#)
        .assert()
        .success();
    let engine = tv.engine();
    let rx = engine.vault().read().unwrap();
    let rec = rx.connection("acme/google/carol").unwrap().unwrap();
    assert_eq!(rec.secrets.term, 2);
    let client = rx.client("acme", "spotify").unwrap().unwrap();
    assert_eq!(
        rx.client_secret("acme", "spotify", &client)
            .unwrap()
            .unwrap()
            .expose(),
        "client-secret-value"
    );
    assert_eq!(engine.vault().current_term(), 2);
    let r = engine
        .handle(
            &admin(),
            Request::Get {
                connection: "acme/spotify/bob".into(),
                min_ttl: Some(0),
                force_refresh: false,
            },
        )
        .await
        .unwrap();
    assert!(matches!(r, Response::Token { token, .. } if token.expose() == "AT-bob"));
}

#[test]
fn the_format1_fixture_still_opens() {
    let tv = TestVault::empty();
    std::fs::create_dir_all(tv.path.parent().unwrap()).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/vaults/format1.redb"),
        &tv.path,
    )
    .unwrap();
    let pass = tv.file("fixture-pass", b"fixture passphrase\n");
    let out = tv
        .cmd()
        .env("TOKENVAULT_PASSPHRASE_FILE", &pass)
        .args(["get", "acme/spotify/alice"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "AT-fixture-format1\n", "{}", stderr(&out));
    let out = tv
        .cmd()
        .env("TOKENVAULT_PASSPHRASE_FILE", &pass)
        .args(["client", "list", "--json"])
        .output()
        .unwrap();
    assert!(stdout(&out).contains("fixture-client"), "{}", stderr(&out));
}
