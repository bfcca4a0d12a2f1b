//! Issue 2 benchmark: unlock time at the default KDF, and in-process `put`/`get` p50
//! against a bare redb write/read of the same bytes, measured in the same run.
//!
//! Run: `cargo bench --bench vault` (figures go to docs/performance.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use redb::{ReadableDatabase, TableDefinition};
use std::time::{Duration, Instant};
use tokenvault::contract::{Caller, Request};
use tokenvault::engine::Engine;
use tokenvault::secret::Secret;
use tokenvault::vault::{Vault, crypto::KdfParams};

const RAW: TableDefinition<&str, &[u8]> = TableDefinition::new("raw");

fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let pass = Secret::new("benchmark passphrase");

    // 1. unlock at the defaults (m=64 MiB, t=3, p=4)
    let path = dir.path().join("default.redb");
    let kdf = KdfParams::new(64, 3, 4).unwrap();
    drop(Vault::init(&path, &pass, kdf).unwrap());
    let mut unlocks = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let v = Vault::open(&path, &pass).unwrap();
        unlocks.push(t.elapsed());
        drop(v);
    }
    println!(
        "unlock (Argon2id m=64MiB t=3 p=4 + open): median {:.1} ms, min {:.1} ms, max {:.1} ms over {} runs",
        pct(unlocks.clone(), 0.5).as_secs_f64() * 1e3,
        pct(unlocks.clone(), 0.0).as_secs_f64() * 1e3,
        pct(unlocks.clone(), 1.0).as_secs_f64() * 1e3,
        unlocks.len()
    );

    // 2. put/get through the engine vs bare redb with the same bytes
    let path = dir.path().join("ops.redb");
    let engine = Engine::new(Vault::init(&path, &pass, KdfParams::new(19, 2, 1).unwrap()).unwrap());
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
        .await
        .unwrap();
    let n = 2000;
    let token = |i: usize| {
        serde_json::json!({
            "access_token": format!("BQD{}{i:08}", "x".repeat(180)),
            "refresh_token": format!("AQC{}{i:08}", "y".repeat(120)),
            "expires_in": 3600, "scope": "user-read-private user-read-email", "token_type": "Bearer"
        })
    };
    let mut puts = Vec::with_capacity(n);
    for i in 0..n {
        let req = Request::Put {
            connection: format!("acme/spotify/user{i}"),
            token: token(i),
        };
        let t = Instant::now();
        engine.handle(&admin, req).await.unwrap();
        puts.push(t.elapsed());
    }
    let mut gets = Vec::with_capacity(n);
    for i in 0..n {
        let req = Request::Get {
            connection: format!("acme/spotify/user{i}"),
            min_ttl: Some(30),
            force_refresh: false,
        };
        let t = Instant::now();
        let r = engine.handle(&admin, req).await.unwrap();
        gets.push(t.elapsed());
        std::hint::black_box(r);
    }
    engine.flush_audit().unwrap();
    // the same bytes as the stored records
    let rx = engine.vault().read().unwrap();
    let records: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            let k = format!("acme/spotify/user{i}");
            let r = rx.connection(&k).unwrap().unwrap();
            (k, rmp_serde::to_vec_named(&r).unwrap())
        })
        .collect();
    drop(rx);
    drop(engine);
    let raw = redb::Database::create(dir.path().join("raw.redb")).unwrap();
    let mut raw_puts = Vec::with_capacity(n);
    for (k, v) in &records {
        let t = Instant::now();
        let w = raw.begin_write().unwrap();
        w.open_table(RAW)
            .unwrap()
            .insert(k.as_str(), v.as_slice())
            .unwrap();
        w.commit().unwrap();
        raw_puts.push(t.elapsed());
    }
    let mut raw_gets = Vec::with_capacity(n);
    for (k, _) in &records {
        let t = Instant::now();
        let r = raw.begin_read().unwrap();
        let tbl = r.open_table(RAW).unwrap();
        let v = redb::ReadableTable::get(&tbl, k.as_str())
            .unwrap()
            .unwrap()
            .value()
            .to_vec();
        raw_gets.push(t.elapsed());
        std::hint::black_box(v);
    }
    let (pp, rp) = (pct(puts.clone(), 0.5), pct(raw_puts.clone(), 0.5));
    let (pg, rg) = (pct(gets.clone(), 0.5), pct(raw_gets.clone(), 0.5));
    println!("record size: {} bytes", records[0].1.len());
    println!(
        "put  p50 {:8.1} us  p99 {:8.1} us | bare redb durable write p50 {:8.1} us p99 {:8.1} us | ratio {:.2}x",
        us(pp),
        us(pct(puts, 0.99)),
        us(rp),
        us(pct(raw_puts, 0.99)),
        us(pp) / us(rp)
    );
    println!(
        "get  p50 {:8.1} us  p99 {:8.1} us | bare redb read          p50 {:8.1} us p99 {:8.1} us | ratio {:.2}x",
        us(pg),
        us(pct(gets, 0.99)),
        us(rg),
        us(pct(raw_gets, 0.99)),
        us(pg) / us(rg)
    );
}
