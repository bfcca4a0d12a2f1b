//! A damaged vault file: no panic reaches the user, no wrong token is
//! ever handed out, a command that only reads (or refuses) changes no byte, a file that
//! fails the integrity check is never written by an ordinary command, and `doctor`
//! reports the damage and salvages every record that still opens into a backup that
//! `backup restore` reads.

use crate::support::backup::{Fill, fill, identity};
use crate::support::*;
use redb::{ReadableDatabase, ReadableTable};
use std::collections::BTreeMap;
use std::path::Path;
use tokenvault::secret::Secret;
use tokenvault::vault::Vault;
use tokenvault::vault::records::ConnectionRecord;
use tokenvault::vault::schema::CONNECTIONS;

/// The panics the vault's guard catches print nothing (as in the binary); any other panic
/// still prints, so a failing test says where.
fn quiet_caught_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !tokenvault::vault::panic_is_caught() {
            default(info);
        }
    }));
}

/// A vault of every kind of record (`fill`), closed cleanly, and its access tokens.
fn build(tv: &TestVault, per_tenant: usize) -> BTreeMap<String, String> {
    let v = Vault::open(&tv.path, &Secret::new(PASSPHRASE)).unwrap();
    fill(
        &v,
        &Fill {
            connections: per_tenant,
            ..Fill::default()
        },
    );
    let tokens = tokens_of(&v).unwrap();
    drop(v);
    tokens
}

/// Every access token that opens, by connection key.
fn tokens_of(v: &Vault) -> tokenvault::Result<BTreeMap<String, String>> {
    let rx = v.read()?;
    let mut out = BTreeMap::new();
    for (k, rec) in rx.connections("")? {
        out.insert(
            k.clone(),
            rx.secrets(&k, &rec)?.access_token.expose().to_owned(),
        );
    }
    Ok(out)
}

/// Deterministic pseudo-random numbers (xorshift64*), so every run flips the same bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Offsets where `needle` occurs in `hay`.
fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

/// Where the sealed tokens of connection `key` lie in the file (every copy).
fn ciphertext_offsets(path: &Path, key: &str) -> Vec<usize> {
    let raw = {
        let db = redb::ReadOnlyDatabase::open(path).unwrap();
        let r = db.begin_read().unwrap();
        let t = r.open_table(CONNECTIONS).unwrap();
        t.get(key).unwrap().unwrap().value().to_vec()
    };
    let rec: ConnectionRecord = rmp_serde::from_slice(&raw).unwrap();
    let at = find_all(&std::fs::read(path).unwrap(), &rec.secrets.ct[..16]);
    assert!(!at.is_empty(), "the ciphertext of {key} is in the file");
    at
}

/// Flips one bit inside the sealed tokens of `key`, in every copy in the file: redb's page
/// checksum no longer matches, and the token no longer opens.
fn damage_token(path: &Path, key: &str) {
    let mut bytes = std::fs::read(path).unwrap();
    for at in ciphertext_offsets(path, key) {
        bytes[at + 5] ^= 0x10;
    }
    std::fs::write(path, bytes).unwrap();
}

/// Offsets inside the pages that hold a sealed token (live or stale copies) and the file
/// header: where a flip is most likely to hit something that matters.
fn hot_offsets(path: &Path, keys: &[String]) -> Vec<usize> {
    let mut pages = std::collections::BTreeSet::from([0usize]);
    for k in keys {
        for at in ciphertext_offsets(path, k) {
            pages.insert(at / 4096);
        }
    }
    pages
        .iter()
        .flat_map(|p| p * 4096..(p + 1) * 4096)
        .collect()
}

fn code(out: &std::process::Output) -> Option<i32> {
    out.status.code()
}

fn doctor_json(tv: &TestVault, extra: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let out = tv
        .cmd()
        .args(["doctor", "--json"])
        .args(extra)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json: {e}: {}{}", stdout(&out), stderr(&out)));
    (code(&out), v, stderr(&out))
}

fn table<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == name)
        .unwrap_or_else(|| panic!("no table {name} in {report}"))
}

/// A fresh vault (another directory) with `file` restored into it through the binary.
fn restore_into_fresh(file: &Path, id_text: &str) -> TestVault {
    let fresh = TestVault::new();
    let id = fresh.file("id.txt", id_text.as_bytes());
    let out = fresh
        .cmd()
        .args(["backup", "restore"])
        .arg(file)
        .arg("--identity")
        .arg(&id)
        .output()
        .unwrap();
    assert!(out.status.success(), "restore: {}", stderr(&out));
    fresh
}

/// Hundreds of single-bit (and some whole-byte) changes across the file, each on a fresh
/// copy, through the library: nothing panics out of it (the trial itself runs under
/// `catch_unwind`, which must never fire), every token it hands out is the one stored, a
/// read-only session leaves the file byte-identical, and a writing session refuses a file
/// that fails the integrity check without writing it.
#[test]
fn random_flips_never_panic_never_give_a_wrong_token_and_reads_change_no_byte() {
    quiet_caught_panics();
    let tv = TestVault::new();
    let original = build(&tv, 3);
    let good = std::fs::read(&tv.path).unwrap();
    let nonzero: Vec<usize> = (0..good.len()).filter(|i| good[*i] != 0).collect();
    let keys: Vec<String> = original.keys().cloned().collect();
    let hot = hot_offsets(&tv.path, &keys);
    let trial = tv.dir.path().join("trial.redb");
    let pass = Secret::new(PASSPHRASE);
    let mut rng = Rng(0x5eed_0001);
    let (mut opened, mut refused, mut partial) = (0, 0, 0);
    for n in 0..300 {
        let mut bytes = good.clone();
        // a third anywhere (most of a small file is padding or stale pages), a third on a
        // byte that is not zero, a third in a page holding tokens or in the file header
        let at = match n % 3 {
            0 => rng.below(bytes.len()),
            1 => nonzero[rng.below(nonzero.len())],
            _ => hot[rng.below(hot.len())],
        };
        if n % 10 == 9 {
            bytes[at] = rng.next() as u8;
        } else {
            bytes[at] ^= 1 << rng.below(8);
        }
        std::fs::write(&trial, &bytes).unwrap();
        let writes = n % 5 == 4;
        let outcome = std::panic::catch_unwind(|| {
            if writes {
                match Vault::open(&trial, &pass) {
                    Err(e) => Err(e),
                    Ok(v) => {
                        let tx = v.write()?;
                        tx.put_tenant("fuzz", &Default::default())?;
                        tx.commit()?;
                        drop(v);
                        // what a write did to a file that passed the check: nothing bad
                        let v = Vault::open_read_only(&trial, &pass)?;
                        tokens_of(&v)
                    }
                }
            } else {
                let v = Vault::open_read_only(&trial, &pass)?;
                tokens_of(&v)
            }
        });
        let result = outcome.unwrap_or_else(|_| panic!("trial {n} (byte {at}): a panic escaped"));
        match result {
            Ok(tokens) => {
                opened += 1;
                if tokens.len() < original.len() {
                    partial += 1;
                }
                for (k, t) in &tokens {
                    assert_eq!(
                        original.get(k),
                        Some(t),
                        "trial {n} (byte {at}): a wrong token for {k}"
                    );
                }
            }
            Err(e) => {
                refused += 1;
                assert!(
                    matches!(e.exit_code(), 1 | 3),
                    "trial {n} (byte {at}): exit {} for {e}",
                    e.exit_code()
                );
                if e.exit_code() == 1 {
                    let msg = e.to_string();
                    assert!(msg.contains("tokenvault doctor"), "trial {n}: {msg}");
                }
                assert!(
                    std::fs::read(&trial).unwrap() == bytes,
                    "trial {n} (byte {at}): a refused open changed the file"
                );
            }
        }
        if !writes {
            assert!(
                std::fs::read(&trial).unwrap() == bytes,
                "trial {n} (byte {at}): a read-only session changed the file"
            );
        }
    }
    eprintln!("300 trials: {opened} opened ({partial} with fewer tokens), {refused} refused");
    // the flips must have hit something, and harmless ones must not be refused
    assert!(refused >= 40, "only {refused} of 300 flips were noticed");
    assert!(opened >= 40, "only {opened} of 300 flipped files opened");
}

/// The same kind of flips through the real binary: no exit 101 (a panic), `list` and
/// `doctor` never change a byte, `get` prints the stored token or nothing, and when the
/// library refuses a file as damaged, `doctor` says so and exits 1.
#[test]
fn random_flips_through_the_binary_never_exit_101() {
    let tv = TestVault::new();
    let original = build(&tv, 2);
    let all: Vec<String> = original.keys().cloned().collect();
    let hot = hot_offsets(&tv.path, &all);
    // the connections `get` hands out (the others have statuses it refuses)
    let keys: Vec<String> = all
        .into_iter()
        .filter(|k| tv.cmd().args(["get", k]).output().unwrap().status.success())
        .collect();
    assert!(keys.len() >= 2);
    let good = std::fs::read(&tv.path).unwrap();
    let pass = Secret::new(PASSPHRASE);
    let mut rng = Rng(0x5eed_0002);
    let mut damaged = 0;
    for n in 0..16 {
        let mut bytes = good.clone();
        let at = hot[rng.below(hot.len())];
        bytes[at] ^= 1 << rng.below(8);
        std::fs::write(&tv.path, &bytes).unwrap();
        let library = Vault::open_read_only(&tv.path, &pass).map(drop);
        for args in [vec!["list"], vec!["doctor"]] {
            let out = tv.cmd().args(&args).output().unwrap();
            assert_ne!(
                code(&out),
                Some(101),
                "trial {n} {args:?}: {}",
                stderr(&out)
            );
            assert!(code(&out).is_some(), "trial {n} {args:?}: killed");
            assert!(!stderr(&out).contains("internal error"), "{}", stderr(&out));
            assert!(
                std::fs::read(&tv.path).unwrap() == bytes,
                "trial {n} {args:?} changed the file"
            );
            if args[0] == "doctor" && library.is_err() {
                damaged += 1;
                assert_eq!(code(&out), Some(1), "trial {n}: {}", stdout(&out));
                assert!(stdout(&out).contains("DAMAGED"), "{}", stdout(&out));
            }
        }
        let key = &keys[rng.below(keys.len())];
        let out = tv.cmd().args(["get", key]).output().unwrap();
        assert_ne!(code(&out), Some(101), "trial {n} get: {}", stderr(&out));
        if out.status.success() {
            assert_eq!(stdout(&out), format!("{}\n", original[key]), "trial {n}");
        } else {
            assert!(stdout(&out).is_empty(), "trial {n}: {}", stdout(&out));
            assert!(
                std::fs::read(&tv.path).unwrap() == bytes,
                "trial {n}: a refused get changed the file"
            );
        }
    }
    assert!(damaged >= 4, "only {damaged} of 16 flips damaged the file");
}

/// A file that fails the integrity check: every ordinary command, reading or writing,
/// and `serve` refuse it with exit 1 and the way out, and none of them writes a byte.
#[test]
fn a_damaged_file_is_refused_by_every_command_and_never_written() {
    let tv = TestVault::new();
    build(&tv, 3);
    damage_token(&tv.path, "acme/spotify/user-000001");
    let before = std::fs::read(&tv.path).unwrap();
    let put = tv.file("tok.json", br#"{"access_token":"AT-new"}"#);
    let (_, _, recipient) = identity();
    let backup = tv.dir.path().join("b.age");
    let commands: Vec<Vec<&str>> = vec![
        vec!["list"],
        vec!["status"],
        vec!["get", "acme/spotify/user-000000"],
        vec!["tenant", "add", "newcomer"],
        vec!["put", "acme/spotify/new", "--from", put.to_str().unwrap()],
        vec!["remove", "acme/spotify/user-000000"],
        vec!["rekey"],
        vec![
            "backup",
            "export",
            backup.to_str().unwrap(),
            "--recipient",
            &recipient,
        ],
        vec!["serve"],
    ];
    for args in &commands {
        let out = tv.cmd().args(args).output().unwrap();
        assert_eq!(code(&out), Some(1), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("integrity check") && err.contains("tokenvault doctor"),
            "{args:?}: {err}"
        );
        assert!(
            std::fs::read(&tv.path).unwrap() == before,
            "{args:?} wrote to a damaged file"
        );
    }
    assert!(!backup.exists());
}

/// On a healthy vault: commands that only read change no byte, nor do commands that refuse
/// (an existing tenant, a missing connection, a record failing its own integrity check, a
/// conflicting restore). Before, each of these rewrote some 4–7 KB of redb bookkeeping.
#[test]
fn reads_and_refusals_change_no_byte() {
    let tv = TestVault::new();
    build(&tv, 2);
    let (_, id_text, recipient) = identity();
    let backup = tv.dir.path().join("full.age");
    tv.cmd()
        .args(["backup", "export"])
        .arg(&backup)
        .args(["--recipient", &recipient])
        .assert()
        .success();
    let id = tv.file("id.txt", id_text.as_bytes());
    // a record whose sealed value fails to open, though the file itself is whole
    {
        let db = redb::Database::open(&tv.path).unwrap();
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table(CONNECTIONS).unwrap();
            let raw = t
                .get("acme/spotify/user-000001")
                .unwrap()
                .unwrap()
                .value()
                .to_vec();
            let mut rec: ConnectionRecord = rmp_serde::from_slice(&raw).unwrap();
            rec.secrets.ct[0] ^= 1;
            t.insert(
                "acme/spotify/user-000001",
                rmp_serde::to_vec_named(&rec).unwrap().as_slice(),
            )
            .unwrap();
        }
        w.commit().unwrap();
    }
    let before = std::fs::read(&tv.path).unwrap();
    let cases: Vec<(Vec<&str>, i32)> = vec![
        (vec!["list"], 0),
        (vec!["list", "acme", "--json"], 0),
        (vec!["status"], 0),
        (vec!["show", "acme/spotify/user-000000"], 0),
        (vec!["audit"], 0),
        (vec!["tenant", "list"], 0),
        (vec!["client", "list"], 0),
        (vec!["tenant", "key", "list", "acme"], 0),
        (vec!["apple", "key", "list", "acme"], 0),
        (vec!["doctor"], 1),
        (vec!["tenant", "add", "acme"], 1),
        (vec!["get", "acme/spotify/nobody"], 4),
        (vec!["get", "acme/spotify/user-000001"], 1),
        (vec!["remove", "acme/spotify/nobody"], 4),
        (
            vec![
                "backup",
                "restore",
                backup.to_str().unwrap(),
                "--identity",
                id.to_str().unwrap(),
            ],
            1,
        ),
    ];
    for (args, want) in &cases {
        let out = tv.cmd().args(args).output().unwrap();
        assert_eq!(code(&out), Some(*want), "{args:?}: {}", stderr(&out));
        assert!(
            std::fs::read(&tv.path).unwrap() == before,
            "{args:?} changed the vault file"
        );
    }
    // and a command that does change something still does
    tv.cmd().args(["tenant", "add", "gamma"]).assert().success();
    assert!(std::fs::read(&tv.path).unwrap() != before);
}

#[test]
fn doctor_on_a_healthy_vault_exits_0_and_changes_no_byte() {
    let tv = TestVault::new();
    build(&tv, 3);
    let before = std::fs::read(&tv.path).unwrap();
    let (c, v, err) = doctor_json(&tv, &[]);
    assert_eq!(c, Some(0), "{v} {err}");
    assert_eq!(v["healthy"], true);
    assert_eq!(v["storage_check"]["ok"], true);
    assert_eq!(v["read_as"], "checked");
    assert_eq!(table(&v, "connections")["whole"], 6);
    assert_eq!(table(&v, "clients")["whole"], 4);
    assert_eq!(table(&v, "apple_keys")["whole"], 2);
    assert!(v["damaged"].as_array().unwrap().is_empty());
    let out = tv.cmd().arg("doctor").output().unwrap();
    assert!(stdout(&out).contains("result: healthy"), "{}", stdout(&out));
    assert!(std::fs::read(&tv.path).unwrap() == before);
    // a wrong passphrase is a wrong passphrase (exit 3), not damage
    let bad = tv.file("bad", b"nope\n");
    let out = tv
        .cmd()
        .env("TOKENVAULT_PASSPHRASE_FILE", &bad)
        .arg("doctor")
        .output()
        .unwrap();
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));
}

/// One token and one client secret damaged: doctor names both, exits 1, and its salvage
/// is an ordinary backup that restores every other record into a new vault.
#[test]
fn doctor_names_damaged_records_and_its_salvage_restores_the_rest() {
    let tv = TestVault::new();
    let original = build(&tv, 3);
    damage_token(&tv.path, "acme/spotify/user-000002");
    let before = std::fs::read(&tv.path).unwrap();
    let (c, v, err) = doctor_json(&tv, &[]);
    assert_eq!(c, Some(1), "{v} {err}");
    assert_eq!(v["healthy"], false);
    assert_eq!(v["storage_check"]["ok"], false);
    assert_eq!(v["read_as"], "unchecked");
    let damaged = v["damaged"].as_array().unwrap();
    assert_eq!(damaged.len(), 1, "{v}");
    assert_eq!(damaged[0]["table"], "connections");
    assert_eq!(damaged[0]["key"], "acme/spotify/user-000002");
    assert_eq!(table(&v, "connections")["whole"], 5);
    assert_eq!(table(&v, "connections")["damaged"], 1);
    let human = stdout(&tv.cmd().arg("doctor").output().unwrap());
    assert!(
        human.contains("connections/acme/spotify/user-000002") && human.contains("DAMAGED"),
        "{human}"
    );

    let (_, id_text, recipient) = identity();
    let salvage = tv.dir.path().join("salvage.age");
    let (c, v, err) = doctor_json(
        &tv,
        &[
            "--salvage",
            salvage.to_str().unwrap(),
            "--recipient",
            &recipient,
        ],
    );
    assert_eq!(c, Some(1), "{v} {err}");
    assert_eq!(v["salvage"]["counts"]["connections"], 5, "{v}");
    assert_eq!(v["salvage"]["counts"]["clients"], 4, "{v}");
    assert!(
        std::fs::read(&tv.path).unwrap() == before,
        "doctor wrote the vault"
    );
    // the salvage names the damaged vault as its source, as an export of it would
    assert_eq!(v["salvage"]["source_path"], tv.path.display().to_string());

    let fresh = restore_into_fresh(&salvage, &id_text);
    let restored =
        tokens_of(&Vault::open_read_only(&fresh.path, &Secret::new(PASSPHRASE)).unwrap()).unwrap();
    let mut expected = original.clone();
    expected.remove("acme/spotify/user-000002");
    assert_eq!(restored, expected);
    let out = fresh
        .cmd()
        .args(["get", "acme/spotify/user-000000"])
        .output()
        .unwrap();
    assert_eq!(
        stdout(&out),
        format!("{}\n", original["acme/spotify/user-000000"])
    );
    let (c, v, _) = doctor_json(&fresh, &[]);
    assert_eq!(c, Some(0), "the restored vault is healthy: {v}");
    // the salvage never overwrites the vault it reads
    let out = tv
        .cmd()
        .args(["doctor", "--salvage"])
        .arg(&tv.path)
        .args(["--recipient", &recipient])
        .output()
        .unwrap();
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));
    assert!(std::fs::read(&tv.path).unwrap() == before);
}

/// A whole page of the connections table zeroed: the walk stops there going forwards and
/// resumes from the end going backwards, so only the records on that page are lost; the
/// due index names the lost ones it knows.
#[test]
fn one_bad_page_costs_only_the_records_on_it() {
    let tv = TestVault::new();
    let original = build(&tv, 100);
    let victim = "acme/spotify/user-000050";
    let mut bytes = std::fs::read(&tv.path).unwrap();
    for at in ciphertext_offsets(&tv.path, victim) {
        let page = at / 4096 * 4096;
        bytes[page..page + 4096].fill(0);
    }
    std::fs::write(&tv.path, &bytes).unwrap();
    let before = bytes;
    let out = tv
        .cmd()
        .args(["get", "acme/spotify/user-000000"])
        .output()
        .unwrap();
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));

    let (_, id_text, recipient) = identity();
    let salvage = tv.dir.path().join("salvage.age");
    let (c, v, err) = doctor_json(
        &tv,
        &[
            "--salvage",
            salvage.to_str().unwrap(),
            "--recipient",
            &recipient,
        ],
    );
    assert_eq!(c, Some(1), "{v} {err}");
    let conns = table(&v, "connections");
    assert_eq!(conns["complete"], false, "{v}");
    let whole = conns["whole"].as_u64().unwrap();
    assert!(
        (150..200).contains(&whole),
        "{whole} of 200 connections salvaged: {v}"
    );
    let named: Vec<&str> = v["damaged"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["key"].as_str())
        .collect();
    assert!(
        !named.is_empty(),
        "the due index names some lost records: {v}"
    );
    assert!(std::fs::read(&tv.path).unwrap() == before);

    let fresh = restore_into_fresh(&salvage, &id_text);
    let restored =
        tokens_of(&Vault::open_read_only(&fresh.path, &Secret::new(PASSPHRASE)).unwrap()).unwrap();
    assert_eq!(restored.len() as u64, whole);
    assert!(!restored.contains_key(victim));
    for (k, t) in &restored {
        assert_eq!(original.get(k), Some(t), "{k}");
        assert!(!named.contains(&k.as_str()), "{k} both lost and restored");
    }
}

/// The issue's sequence: a damaged file that a command left flagged "recovery required"
/// (it died with the file open). redb's repair refuses it, so every ordinary open fails;
/// the commands say so with exit 1 (not 101), and `doctor` still reads and salvages it
/// from the state redb recorded at its last clean close.
#[test]
fn a_damaged_file_left_needing_repair_is_still_salvaged() {
    let tv = TestVault::new();
    let original = build(&tv, 3);
    damage_token(&tv.path, "beta/spotify/user-000000");
    let mut bytes = std::fs::read(&tv.path).unwrap();
    bytes[9] |= 2; // redb's "recovery required" flag
    std::fs::write(&tv.path, &bytes).unwrap();
    assert!(matches!(
        redb::ReadOnlyDatabase::open(&tv.path),
        Err(redb::DatabaseError::RepairAborted)
    ));
    for args in [vec!["list"], vec!["tenant", "add", "x"]] {
        let out = tv.cmd().args(&args).output().unwrap();
        assert_eq!(code(&out), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("tokenvault doctor"),
            "{}",
            stderr(&out)
        );
        assert!(std::fs::read(&tv.path).unwrap() == bytes);
    }
    let (_, id_text, recipient) = identity();
    let salvage = tv.dir.path().join("salvage.age");
    let (c, v, err) = doctor_json(
        &tv,
        &[
            "--salvage",
            salvage.to_str().unwrap(),
            "--recipient",
            &recipient,
        ],
    );
    assert_eq!(c, Some(1), "{v} {err}");
    assert_eq!(v["read_as"], "unchecked", "{v}");
    assert_eq!(table(&v, "connections")["whole"], 5, "{v}");
    assert!(
        std::fs::read(&tv.path).unwrap() == bytes,
        "doctor wrote the vault"
    );
    let fresh = restore_into_fresh(&salvage, &id_text);
    let restored =
        tokens_of(&Vault::open_read_only(&fresh.path, &Secret::new(PASSPHRASE)).unwrap()).unwrap();
    assert_eq!(restored.len(), 5);
    for (k, t) in &restored {
        assert_eq!(original.get(k), Some(t), "{k}");
    }
}

#[test]
fn doctor_needs_the_file_and_a_daemon_holding_it_is_exit_3() {
    let tv = TestVault::new();
    build(&tv, 2);
    let engine = tv.engine(); // holds the file open, as a daemon would
    let before = std::fs::read(&tv.path).unwrap();
    let out = tv.cmd().arg("doctor").output().unwrap();
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("in use by another process"),
        "{}",
        stderr(&out)
    );
    assert!(std::fs::read(&tv.path).unwrap() == before);
    drop(engine);
    tv.cmd().arg("doctor").assert().success();
}
