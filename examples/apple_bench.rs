//! Apple Music developer-token timings (issue 5). Run in release:
//!
//! ```sh
//! cargo run --release --example apple_bench
//! ```
//!
//! Prints medians (and p99) of:
//! - `sign developer token`: `apple::jwt::sign_developer_token` alone (JSON, base64url,
//!   ECDSA P-256); baseline `ecdsa`: a bare `p256` ECDSA signature over a message of the
//!   same length.
//! - `hand-out, new token`: `Engine::apple_developer_token` when the cached token must be
//!   renewed (the clock jumps past the renewal margin each time): open the sealed key,
//!   sign, seal the token, one durable commit.
//! - `hand-out, cached`: `Engine::apple_developer_token` from the memory cache (one read
//!   transaction to confirm the active key and the cache's nonce; no decryption, no
//!   signing); baseline `redb get`: a bare read transaction + `get` of the same key record.

use p256::ecdsa::{Signature, SigningKey, signature::Signer};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};
use tokenvault::contract::{Caller, Request};
use tokenvault::engine::{Clock, Engine};
use tokenvault::secret::Secret;
use tokenvault::vault::{Vault, crypto::KdfParams};

#[derive(Debug)]
struct JumpClock(AtomicI64);

impl Clock for JumpClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

fn stats(name: &str, mut v: Vec<Duration>) -> Duration {
    v.sort();
    let med = v[v.len() / 2];
    let p99 = v[v.len() * 99 / 100];
    println!(
        "{name:<24} n={:<6} median {:>9.2} µs   p99 {:>9.2} µs",
        v.len(),
        med.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
    med
}

fn time<F: FnMut()>(n: usize, mut f: F) -> Vec<Duration> {
    for _ in 0..n / 10 {
        f(); // warm-up
    }
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> tokenvault::Result<()> {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/apple");
    let pem = std::fs::read_to_string(fixtures.join("AuthKey_KEY1AAAAAA.p8"))
        .map_err(|e| tokenvault::Error::io("cannot read the test key", e))?;
    let parsed = tokenvault::apple::key::parse_p8(&pem)?;

    // 1. signing alone, against a bare ECDSA signature of a same-length message
    let now = chrono::Utc::now().timestamp();
    let sample = tokenvault::apple::jwt::sign_developer_token(
        &parsed.signing,
        "KEY1AAAAAA",
        "TEAMAAAAAA",
        now,
        now + 15_552_000,
        None,
    );
    let signing_input_len = sample.expose().rsplit_once('.').map_or(0, |(a, _)| a.len());
    let msg = vec![b'a'; signing_input_len];
    let key: &SigningKey = &parsed.signing;
    let ecdsa = stats(
        "ecdsa (baseline)",
        time(2000, || {
            let s: Signature = key.sign(&msg);
            std::hint::black_box(s);
        }),
    );
    let mut i = 0i64;
    let sign = stats(
        "sign developer token",
        time(2000, || {
            i += 1;
            std::hint::black_box(tokenvault::apple::jwt::sign_developer_token(
                key,
                "KEY1AAAAAA",
                "TEAMAAAAAA",
                now + i,
                now + i + 15_552_000,
                None,
            ));
        }),
    );

    // 2. through the engine, on a real vault file in a temp dir
    let dir = std::env::temp_dir().join(format!("tokenvault-apple-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("vault.redb");
    let pass = Secret::new("bench passphrase");
    Vault::init(&path, &pass, KdfParams::new(19, 2, 1)?)?;
    let clock = Arc::new(JumpClock(AtomicI64::new(now)));
    let engine = Engine::with_clock(Vault::open(&path, &pass)?, clock.clone());
    let admin = Caller::Admin {
        actor: "bench".into(),
    };
    engine
        .handle(
            &admin,
            Request::TenantAdd {
                name: "acme".into(),
            },
        )
        .await?;
    engine
        .handle(
            &admin,
            Request::AppleKeyAdd {
                tenant: "acme".into(),
                team_id: "TEAMAAAAAA".into(),
                key_id: "KEY1AAAAAA".into(),
                p8: Secret::new(pem.clone()),
            },
        )
        .await?;
    let mut fresh = Vec::new();
    for _ in 0..300 {
        // past the renewal margin of the last token: a new one must be signed
        clock.0.fetch_add(15_552_000, Ordering::SeqCst);
        let t = Instant::now();
        std::hint::black_box(engine.apple().developer_token_for(&admin, "acme")?);
        fresh.push(t.elapsed());
        engine.flush_audit()?;
    }
    let fresh = stats("hand-out, new token", fresh);

    let mut cached = Vec::new();
    for round in 0..20 {
        for _ in 0..1000 {
            let t = Instant::now();
            std::hint::black_box(engine.apple().developer_token_for(&admin, "acme")?);
            cached.push(t.elapsed());
        }
        if round % 5 == 4 {
            engine.flush_audit()?;
        }
    }
    engine.flush_audit()?;
    let cached = stats("hand-out, cached", cached);

    let db = engine.vault().database();
    let redb = stats(
        "redb get (baseline)",
        time(20_000, || {
            use redb::ReadableDatabase;
            let Ok(r) = db.begin_read() else { return };
            let Ok(t) = r.open_table(tokenvault::vault::schema::APPLE_KEYS) else {
                return;
            };
            std::hint::black_box(
                t.get("acme/KEY1AAAAAA")
                    .ok()
                    .flatten()
                    .map(|g| g.value().len()),
            );
        }),
    );
    println!();
    println!(
        "sign / ecdsa = {:.2}x   new-token hand-out / sign = {:.1}x   cached hand-out / redb get = {:.2}x   new / cached = {:.0}x",
        sign.as_secs_f64() / ecdsa.as_secs_f64(),
        fresh.as_secs_f64() / sign.as_secs_f64(),
        cached.as_secs_f64() / redb.as_secs_f64(),
        fresh.as_secs_f64() / cached.as_secs_f64(),
    );
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
