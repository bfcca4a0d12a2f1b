//! Backups through the real binary, and interoperability with Debian's `age` tool.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::backup::*;
use crate::support::*;
use std::os::unix::fs::PermissionsExt;

fn age_cli() -> bool {
    std::process::Command::new("age")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn populated() -> TestVault {
    let tv = TestVault::new();
    tv.cmd().args(["tenant", "add", "acme"]).assert().success();
    tv.cmd()
        .args(["put", "acme/spotify/alice"])
        .write_stdin(
            r#"{"access_token":"AT-cli-backup","refresh_token":"RT-cli-backup","expires_in":3600}"#,
        )
        .assert()
        .success();
    let cs = tv.file("cs", b"CS-cli-backup");
    tv.cmd()
        .args(["client", "set", "acme", "spotify", "--client-id", "cid"])
        .arg("--client-secret-file")
        .arg(&cs)
        .assert()
        .success();
    tv
}

#[test]
fn export_decrypts_with_the_age_tool_and_restores_into_another_vault() {
    assert!(
        age_cli(),
        "Debian's `age` is needed (scripts/test installs it: apt-get install age)"
    );
    let tv = populated();
    let (_id, id_text, recipient) = identity();
    let id_file = tv.file("id.txt", id_text.as_bytes());
    let file = tv.dir.path().join("backups/b.age");
    std::fs::create_dir(tv.dir.path().join("backups")).unwrap();
    let out = tv
        .cmd()
        .args(["backup", "export"])
        .arg(&file)
        .args(["--recipient", &recipient, "--include-audit", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // quiet: no progress bar when stderr is not a terminal
    assert_eq!(stderr(&out), "");
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rep["counts"]["connections"], 1);
    assert!(!stdout(&out).contains("AT-cli-backup"));
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // no temp file left behind
    assert_eq!(
        std::fs::read_dir(tv.dir.path().join("backups"))
            .unwrap()
            .count(),
        1
    );

    // the standard tool decrypts it, and the payload is our stream
    let dec = std::process::Command::new("age")
        .args(["--decrypt", "-i"])
        .arg(&id_file)
        .arg(&file)
        .output()
        .unwrap();
    assert!(dec.status.success(), "{}", stderr(&dec));
    let mut conns = Vec::new();
    let (header, trailer) =
        tokenvault::backup::format::read_stream(dec.stdout.as_slice(), |_, rec| {
            if let tokenvault::backup::format::Record::Connection { key, secrets, .. } = rec {
                conns.push((key, secrets.access_token.expose().to_owned()));
            }
            Ok::<(), ()>(())
        })
        .unwrap();
    assert_eq!(header.magic, "tokenvault-backup");
    assert_eq!(
        conns,
        vec![("acme/spotify/alice".to_owned(), "AT-cli-backup".to_owned())]
    );
    assert_eq!(
        hex::encode(&trailer.sha256),
        rep["sha256"].as_str().unwrap()
    );

    let out = tv
        .cmd()
        .args(["backup", "verify"])
        .arg(&file)
        .arg("--identity")
        .arg(&id_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("verified"));
    // verifying needs no vault at all
    let nowhere = TestVault::empty();
    nowhere
        .cmd()
        .args(["backup", "verify"])
        .arg(&file)
        .arg("--identity")
        .arg(&id_file)
        .assert()
        .success();

    // restore into a fresh vault with another passphrase, then `get` from it
    let other = TestVault::empty();
    std::fs::write(&other.pass_file, OTHER_PASSPHRASE).unwrap();
    other
        .cmd()
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
    let out = other
        .cmd()
        .args(["backup", "restore"])
        .arg(&file)
        .arg("--identity")
        .arg(&id_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let got = other
        .cmd()
        .args(["get", "acme/spotify/alice"])
        .output()
        .unwrap();
    assert_eq!(stdout(&got), "AT-cli-backup\n", "{}", stderr(&got));

    // a second restore conflicts: exit 1, message names the tenant and --replace
    let out = other
        .cmd()
        .args(["backup", "restore"])
        .arg(&file)
        .arg("--identity")
        .arg(&id_file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("tenant acme") && stderr(&out).contains("--replace"));
    other
        .cmd()
        .args(["backup", "restore", "--replace"])
        .arg(&file)
        .arg("--identity")
        .arg(&id_file)
        .assert()
        .success();
}

#[test]
fn wrong_key_through_the_binary_exits_3_and_leaves_the_vault_file_unchanged() {
    let tv = populated();
    let (_id, _id_text, recipient) = identity();
    let (_o, other_text, _) = identity();
    let wrong = tv.file("wrong.txt", other_text.as_bytes());
    let file = tv.dir.path().join("b.age");
    tv.cmd()
        .args(["backup", "export"])
        .arg(&file)
        .args(["--recipient", &recipient])
        .assert()
        .success();
    let before = sha256_file(&tv.path);
    let out = tv
        .cmd()
        .args(["backup", "restore", "--replace"])
        .arg(&file)
        .arg("--identity")
        .arg(&wrong)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot decrypt the backup"));
    assert_eq!(sha256_file(&tv.path), before);

    // a truncated file: exit 1, file unchanged
    let bytes = std::fs::read(&file).unwrap();
    let cut = tv.file("cut.age", &bytes[..bytes.len() - 20]);
    let out = tv
        .cmd()
        .args(["backup", "restore", "--replace"])
        .arg(&cut)
        .arg("--identity")
        .arg(&wrong)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(sha256_file(&tv.path), before);
}

#[test]
fn passphrase_backup_through_the_binary() {
    // Uses age's default scrypt work factor (about a second per encryption/decryption).
    let tv = populated();
    let bp = tv.file("bp", b"backup passphrase\n");
    let wrong = tv.file("wrong", b"not it\n");
    let file = tv.dir.path().join("p.age");
    tv.cmd()
        .args(["backup", "export"])
        .arg(&file)
        .arg("--backup-passphrase-file")
        .arg(&bp)
        .assert()
        .success();
    let out = tv
        .cmd()
        .args(["backup", "verify"])
        .arg(&file)
        .arg("--backup-passphrase-file")
        .arg(&wrong)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("wrong backup passphrase"));
    tv.cmd()
        .args(["backup", "verify"])
        .arg(&file)
        .arg("--backup-passphrase-file")
        .arg(&bp)
        .assert()
        .success();
    // usage errors: no key, or both kinds
    tv.cmd()
        .args(["backup", "export"])
        .arg(&file)
        .assert()
        .code(2);
    tv.cmd()
        .args(["backup", "export"])
        .arg(&file)
        .args(["--recipient", "age1xyz", "--backup-passphrase-file"])
        .arg(&bp)
        .assert()
        .code(2);
    // a malformed recipient
    let out = tv
        .cmd()
        .args(["backup", "export"])
        .arg(&file)
        .args(["--recipient", "age1notarecipient"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("age-keygen -y"));
}

fn script_available() -> bool {
    std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A vault above the progress threshold (2 tenants × 3000 connections and more).
fn large() -> TestVault {
    let tv = TestVault::new();
    fill(
        &tokenvault::vault::Vault::open(&tv.path, &tokenvault::secret::Secret::new(PASSPHRASE))
            .unwrap(),
        &Fill {
            connections: 3000,
            ..Fill::default()
        },
    );
    tv
}

/// Runs the real binary on `tv` inside a pty (util-linux `script`), so its stderr is a
/// terminal; returns whether it succeeded and everything the terminal showed.
fn on_a_pty(tv: &TestVault, args: &[&std::ffi::OsStr]) -> (bool, String) {
    let bin = assert_cmd::cargo::cargo_bin("tokenvault");
    let mut line = bin.display().to_string();
    for a in args {
        line.push(' ');
        line.push_str(&a.to_string_lossy());
    }
    let out = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", tv.dir.path())
        .env("TERM", "xterm")
        .env("TOKENVAULT_VAULT", &tv.path)
        .env(
            "TOKENVAULT_SOCKET",
            tv.dir.path().join("run/tokenvault.sock"),
        )
        .env("TOKENVAULT_CONFIG", tv.dir.path().join("none.toml"))
        .env("TOKENVAULT_PASSPHRASE_FILE", &tv.pass_file)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The end of a terminal transcript, for failure messages (a bar redraws thousands of times).
fn tail(all: &str) -> &str {
    let mut from = all.len().saturating_sub(800);
    while !all.is_char_boundary(from) {
        from += 1;
    }
    &all[from..]
}

/// On a terminal (a pty from util-linux `script`), a large export draws a progress bar on
/// stderr; off a terminal the same export is quiet (`large_backups_are_quiet_off_a_terminal`).
#[test]
fn large_export_shows_progress_on_a_terminal() {
    if !script_available() {
        eprintln!("skipped: util-linux `script` is not installed");
        return;
    }
    let tv = large();
    let (_id, _text, recipient) = identity();
    let file = tv.dir.path().join("big.age");
    let (ok, all) = on_a_pty(
        &tv,
        &[
            "backup".as_ref(),
            "export".as_ref(),
            file.as_os_str(),
            "--recipient".as_ref(),
            recipient.as_ref(),
        ],
    );
    assert!(ok, "{}", tail(&all));
    assert!(file.exists());
    // the bar's template: "    export [====>   ] 1234/6019 records (…/s, …)"
    assert!(
        all.contains("export ["),
        "no export bar drawn: {:?}",
        tail(&all)
    );
    assert!(
        all.contains(" records ("),
        "no progress bar drawn: {:?}",
        tail(&all)
    );
}

/// Issue 6 point 4: restoring a large backup on a terminal draws the restore bar (after
/// the verify pass's), and the restore really lands.
#[test]
fn large_restore_shows_progress_on_a_terminal() {
    if !script_available() {
        eprintln!("skipped: util-linux `script` is not installed");
        return;
    }
    let src = large();
    let (_id, id_text, recipient) = identity();
    let file = src.dir.path().join("big.age");
    src.cmd()
        .args(["backup", "export"])
        .arg(&file)
        .args(["--recipient", &recipient])
        .assert()
        .success();
    let dst = TestVault::new();
    let id_file = dst.file("id.txt", id_text.as_bytes());
    let (ok, all) = on_a_pty(
        &dst,
        &[
            "backup".as_ref(),
            "restore".as_ref(),
            file.as_os_str(),
            "--identity".as_ref(),
            id_file.as_os_str(),
        ],
    );
    assert!(ok, "{}", tail(&all));
    // "   restore [====>   ] 1234/6019 records (…/s, …)"
    assert!(
        all.contains("restore ["),
        "no restore bar drawn: {:?}",
        tail(&all)
    );
    assert!(
        all.contains(" records ("),
        "no progress bar drawn: {:?}",
        tail(&all)
    );
    let out = dst.cmd().args(["list", "beta", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(3000));
}

/// Issue 6 point 4, "quiet otherwise": the same large export and restore with stderr piped
/// (not a terminal) print nothing on stderr — no bar, no carriage returns.
#[test]
fn large_backups_are_quiet_off_a_terminal() {
    let src = large();
    let (_id, id_text, recipient) = identity();
    let file = src.dir.path().join("big.age");
    let out = src
        .cmd()
        .args(["backup", "export"])
        .arg(&file)
        .args(["--recipient", &recipient])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "export drew on a pipe");
    let rep = stdout(&out);
    assert!(
        !rep.contains(" records (") && !rep.contains('\r'),
        "{rep:?}"
    );

    let dst = TestVault::new();
    let id_file = dst.file("id.txt", id_text.as_bytes());
    let out = dst
        .cmd()
        .args(["backup", "restore"])
        .arg(&file)
        .arg("--identity")
        .arg(&id_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "restore drew on a pipe");
    let rep = stdout(&out);
    assert!(
        !rep.contains(" records (") && !rep.contains('\r'),
        "{rep:?}"
    );
    // the restore landed (the filler's statuses vary, so `show`, not `get`)
    dst.cmd()
        .args(["show", "beta/spotify/user-002999"])
        .assert()
        .success();
}
