//! Issue 6 benchmark: backup export / verify / restore throughput (records/s) and peak
//! memory at 10 000 and 100 000 connections, each against a bare baseline measured in the
//! same run:
//!
//! - export  vs `read`: one read snapshot walking every connection and opening its sealed
//!   tokens (the floor any export pays), without MessagePack, age or the file;
//! - restore vs `write`: one write transaction sealing and putting the same number of
//!   connections from memory (the floor any restore pays), without reading a file.
//!
//! Every measurement runs in its own child process (this program re-executed) so its peak
//! resident memory is its own: the child resets the kernel's high-water mark
//! (`/proc/self/clear_refs` ← 5) after the vault is unlocked, then reports `VmHWM`.
//!
//! Run: `cargo run --release --example backup_bench` (figures in docs/performance-backup.md).
//! Optional arguments: connection counts (default `10000 100000`); `BENCH_REPS` (default 3).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Instant;
use tokenvault::backup::{EncryptTo, ExportOptions, RestoreOptions, Unlock};
use tokenvault::secret::Secret;
use tokenvault::vault::records::*;
use tokenvault::vault::{Vault, crypto::KdfParams};

const PASS: &str = "bench source passphrase";
const OTHER: &str = "bench target passphrase";

fn kdf() -> KdfParams {
    KdfParams::new(19, 2, 1).unwrap()
}

fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn reset_peak() {
    // Linux: writing 5 resets VmHWM to the current RSS.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn record(n: u64) -> (ConnectionRecord, TokenSecrets) {
    let secrets = TokenSecrets {
        access_token: Secret::new(format!("AT{n:08}{}", "a".repeat(190))),
        refresh_token: Some(Secret::new(format!("RT{n:08}{}", "r".repeat(90)))),
        id_token: None,
        extra: Default::default(),
    };
    let rec = ConnectionRecord {
        status: Status::Connected,
        reason: Some("imported".into()),
        status_at: 1_700_000_000,
        attempts: 0,
        expires_at: Some(1_800_000_000 + n as i64),
        refresh_expires_at: None,
        due_at: Some(1_799_999_700 + n as i64),
        scope: Some("user-read-private playlist-read".into()),
        token_type: Some("Bearer".into()),
        has_refresh_token: true,
        has_id_token: false,
        metadata_keys: vec![],
        created_at: 1_700_000_000,
        updated_at: 1_700_000_000,
        last_refresh_at: None,
        refresh_count: 0,
        secrets: tokenvault::backup::format::empty_sealed(),
    };
    (rec, secrets)
}

fn key(n: u64) -> String {
    format!("t{:02}/spotify/user-{n:08}", n % 20)
}

/// Writes `count` connections over 20 tenants, in batches.
fn populate(vault: &Vault, count: u64) {
    let tx = vault.write().unwrap();
    for t in 0..20 {
        tx.put_tenant(&format!("t{t:02}"), &TenantRecord { created_at: 1 })
            .unwrap();
    }
    tx.commit().unwrap();
    let mut n = 0;
    while n < count {
        let tx = vault.write().unwrap();
        for _ in 0..10_000.min(count - n) {
            let (mut rec, s) = record(n);
            let k = key(n);
            tx.seal_secrets(&k, &mut rec, &s);
            tx.put_connection(&k, &rec).unwrap();
            n += 1;
        }
        tx.commit().unwrap();
    }
}

fn identity() -> (String, String) {
    use age::secrecy::ExposeSecret;
    let id = age::x25519::Identity::generate();
    (
        id.to_string().expose_secret().to_owned(),
        id.to_public().to_string(),
    )
}

/// One measurement in this (child) process; prints `phase n secs records peak_kib`.
fn child(phase: &str, n: u64, dir: &Path) {
    let src = dir.join("src.redb");
    let file = dir.join("backup.age");
    let id_text = std::fs::read_to_string(dir.join("id.txt")).unwrap();
    let recipient = std::fs::read_to_string(dir.join("recipient.txt")).unwrap();
    let (secs, records) = match phase {
        "read" => {
            let v = Vault::open(&src, &Secret::new(PASS)).unwrap();
            reset_peak();
            let t = Instant::now();
            let rx = v.read().unwrap();
            let mut count = 0u64;
            let mut bytes = 0usize;
            rx.for_each_connection("", |k, rec| {
                let s = rx.secrets(k, &rec)?;
                bytes += s.access_token.expose().len();
                count += 1;
                Ok(true)
            })
            .unwrap();
            assert!(bytes > 0);
            (t.elapsed().as_secs_f64(), count)
        }
        "export" => {
            let v = Vault::open(&src, &Secret::new(PASS)).unwrap();
            reset_peak();
            let t = Instant::now();
            let r = tokenvault::backup::export(
                &v,
                &Default::default(),
                &file,
                &EncryptTo::Recipients(vec![recipient.trim().to_owned()]),
                &ExportOptions::default(),
                1,
            )
            .unwrap();
            (t.elapsed().as_secs_f64(), r.counts["connections"])
        }
        "verify" => {
            reset_peak();
            let t = Instant::now();
            let r =
                tokenvault::backup::verify(&file, &Unlock::Identity(Secret::new(id_text)), None)
                    .unwrap();
            (t.elapsed().as_secs_f64(), r.counts["connections"])
        }
        "write" => {
            let target = dir.join(format!("write-{}.redb", std::process::id()));
            let v = Vault::init(&target, &Secret::new(OTHER), kdf()).unwrap();
            reset_peak();
            let t = Instant::now();
            let tx = v.write().unwrap();
            for t in 0..20 {
                tx.put_tenant(&format!("t{t:02}"), &TenantRecord { created_at: 1 })
                    .unwrap();
            }
            for i in 0..n {
                let (mut rec, s) = record(i);
                let k = key(i);
                rec.secrets = tx.seal_new(&k, &s);
                tx.put_connection(&k, &rec).unwrap();
            }
            tx.commit().unwrap();
            let secs = t.elapsed().as_secs_f64();
            drop(v);
            let _ = std::fs::remove_file(&target);
            (secs, n)
        }
        "restore" => {
            let target = dir.join(format!("restore-{}.redb", std::process::id()));
            let v = Vault::init(&target, &Secret::new(OTHER), kdf()).unwrap();
            reset_peak();
            let t = Instant::now();
            let audit = AuditRecord {
                at: 1,
                actor: "bench".into(),
                action: "backup_restore".into(),
                tenant: None,
                target: "bench".into(),
                outcome: "ok".into(),
                count: 1,
            };
            let r = tokenvault::backup::restore(
                &v,
                &file,
                &Unlock::Identity(Secret::new(id_text)),
                &RestoreOptions::default(),
                audit,
            )
            .unwrap();
            let secs = t.elapsed().as_secs_f64();
            drop(v);
            let _ = std::fs::remove_file(&target);
            (secs, r.counts["connections"])
        }
        other => panic!("unknown phase {other}"),
    };
    println!("{phase} {n} {secs} {records} {}", status_kib("VmHWM:"));
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        child(&args[2], args[3].parse().unwrap(), Path::new(&args[4]));
        return;
    }
    let sizes: Vec<u64> = if args.len() > 1 {
        args[1..].iter().map(|a| a.parse().unwrap()).collect()
    } else {
        vec![10_000, 100_000]
    };
    let reps: usize = std::env::var("BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let root = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    println!(
        "{:>8} {:>8} {:>12} {:>14} {:>12} {:>10}",
        "phase", "conns", "median s", "records/s", "peak RSS MiB", "vs base"
    );
    for &n in &sizes {
        let dir: PathBuf = root.path().join(n.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let t = Instant::now();
        let v = Vault::init(&dir.join("src.redb"), &Secret::new(PASS), kdf()).unwrap();
        populate(&v, n);
        drop(v);
        let (id, recipient) = identity();
        std::fs::write(dir.join("id.txt"), id).unwrap();
        std::fs::write(dir.join("recipient.txt"), recipient).unwrap();
        let vault_mib = std::fs::metadata(dir.join("src.redb")).unwrap().len() as f64 / 1048576.0;
        eprintln!(
            "built {n} connections ({vault_mib:.1} MiB vault) in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let mut base = 0.0;
        for phase in ["read", "export", "verify", "write", "restore"] {
            let mut secs = Vec::new();
            let mut peaks = Vec::new();
            for _ in 0..reps {
                let out = std::process::Command::new(&exe)
                    .args(["--child", phase, &n.to_string()])
                    .arg(&dir)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let line = String::from_utf8(out.stdout).unwrap();
                let f: Vec<&str> = line.split_whitespace().collect();
                secs.push(f[2].parse::<f64>().unwrap());
                assert_eq!(
                    f[3].parse::<u64>().unwrap(),
                    n,
                    "{phase}: wrong record count"
                );
                peaks.push(f[4].parse::<f64>().unwrap() / 1024.0);
            }
            let s = median(secs);
            let rate = n as f64 / s;
            let ratio = match phase {
                "read" | "write" => {
                    base = rate;
                    "1.00".to_owned()
                }
                _ => format!("{:.2}", rate / base),
            };
            if phase == "export" {
                let bytes = std::fs::metadata(dir.join("backup.age")).unwrap().len();
                eprintln!("backup file: {:.1} MiB", bytes as f64 / 1048576.0);
            }
            println!(
                "{phase:>8} {n:>8} {s:>12.3} {rate:>14.0} {:>12.1} {ratio:>10}",
                median(peaks)
            );
        }
    }
}
