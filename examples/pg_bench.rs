//! Benchmarks of the shared PostgreSQL store (issue 12, "Measure"). Run in release mode
//! against a PostgreSQL server where the URL's user may create databases:
//!
//! ```text
//! cargo run --release --example pg_bench -- postgres://postgres:PW@127.0.0.1:PORT [N] [RUNS]
//! ```
//!
//! (docs/performance.md, section "PostgreSQL", shows how to start a throw-away cluster.)
//! In one run, with the same fake provider (answering after 50 ms), medians of RUNS:
//!
//! - storm: N due connections refreshed by the scheduler — one node on redb, one node on
//!   PostgreSQL, two nodes on PostgreSQL (two vaults, each with its own pool, listener
//!   and scheduler, in this one process: they share its two cores). Also checks that the
//!   two nodes refreshed every connection exactly once between them.
//! - get: p50 of a cached `get` on a PostgreSQL node against a redb vault.
//! - commit: N refreshes with the group commit against one transaction per refresh, on
//!   PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokenvault::contract::Request;
use tokenvault::engine::{Clock, Engine};
use tokenvault::secret::Secret;
use tokenvault::vault::{Vault, crypto::KdfParams, pg::StoreConfig};

const PASS: &str = "bench passphrase";
const PER_HOST: usize = 64;

#[path = "common/bench.rs"]
mod bench;
use bench::{OffsetClock, admin, fake_provider};

/// Where a benchmark vault lives.
#[derive(Clone)]
enum Where {
    File(std::path::PathBuf),
    Pg(String),
}

static DB: AtomicU64 = AtomicU64::new(0);

/// A new database on the server `base` (postgres://USER:PW@HOST:PORT); its URL.
async fn new_database(base: &str) -> String {
    let n = DB.fetch_add(1, Ordering::Relaxed);
    let name = format!("tvbench_{}_{n}", std::process::id());
    let (c, conn) = tokio_postgres::connect(&format!("{base}/postgres"), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    c.batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    format!("{base}/{name}")
}

fn open(w: &Where) -> Vault {
    match w {
        Where::File(p) => Vault::open(p, &Secret::new(PASS)).unwrap(),
        Where::Pg(u) => Vault::open_store(
            &StoreConfig::parse(u, None).unwrap(),
            &Secret::new(PASS),
            tokenvault::vault::Access::ReadWrite,
        )
        .unwrap(),
    }
}

fn engine_on(w: &Where, clock: Arc<OffsetClock>) -> Arc<Engine> {
    let e = Arc::new(Engine::with_clock(open(w), clock));
    let mut cfg = tokenvault::config::Config::default();
    cfg.scheduler.per_host_concurrency = Some(PER_HOST);
    e.set_config(cfg);
    e
}

/// A vault with `n` connections expiring in `expires_in` seconds.
async fn vault_with(w: &Where, n: usize, token_url: &str, expires_in: i64) -> Arc<OffsetClock> {
    let kdf = KdfParams::new(19, 2, 1).unwrap();
    match w {
        Where::File(p) => drop(Vault::init(p, &Secret::new(PASS), kdf).unwrap()),
        Where::Pg(u) => drop(
            Vault::init_store(
                &StoreConfig::parse(u, None).unwrap(),
                &Secret::new(PASS),
                kdf,
            )
            .unwrap(),
        ),
    }
    let clock = Arc::new(OffsetClock::default());
    let engine = engine_on(w, clock.clone());
    engine
        .handle(&admin(), Request::TenantAdd { name: "t".into() })
        .await
        .unwrap();
    engine
        .handle(
            &admin(),
            Request::ClientSet {
                tenant: "t".into(),
                provider: "spotify".into(),
                client_id: "id".into(),
                client_secret: Some(Secret::new("secret")),
                token_url: Some(token_url.into()),
                authorization_url: None,
                device_authorization_url: None,
                revocation_url: None,
                params: Default::default(),
            },
        )
        .await
        .unwrap();
    let now = clock.now();
    let tx = engine.vault().write().unwrap();
    for j in 0..n {
        let key = format!("t/spotify/user{j:07}");
        let secrets = tokenvault::vault::records::TokenSecrets {
            access_token: Secret::new(format!("at-old-{j}")),
            refresh_token: Some(Secret::new(format!("rt-old-{j}"))),
            id_token: None,
            extra: Default::default(),
        };
        let exp = now + expires_in;
        let rec = tokenvault::vault::records::ConnectionRecord {
            status: tokenvault::vault::records::Status::Connected,
            reason: None,
            status_at: now,
            attempts: 0,
            expires_at: Some(exp),
            refresh_expires_at: None,
            due_at: Some(tokenvault::refresh::policy::due_at(
                now,
                exp,
                300,
                (j % 100) as f64 / 100.0,
            )),
            scope: None,
            token_type: None,
            has_refresh_token: true,
            has_id_token: false,
            metadata_keys: vec![],
            created_at: now,
            updated_at: now,
            last_refresh_at: None,
            refresh_count: 0,
            secrets: tx.seal_new(&key, &secrets),
        };
        tx.put_connection(&key, &rec).unwrap();
    }
    tx.commit().unwrap();
    clock
}

/// One storm on `nodes` engines over `w`; (seconds, provider calls).
async fn storm_once(w: Where, nodes: usize, n: usize) -> (f64, u64) {
    let (url, hits) = fake_provider(Duration::from_millis(50)).await;
    let clock = vault_with(&w, n, &url, 3600).await;
    let engines: Vec<Arc<Engine>> = (0..nodes).map(|_| engine_on(&w, clock.clone())).collect();
    // everything due now
    clock.0.store(3600, Ordering::Relaxed);
    let start = Instant::now();
    let mut stops = Vec::new();
    let mut scheds = Vec::new();
    for e in &engines {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        stops.push(tx);
        scheds.push(tokio::spawn(tokenvault::refresh::run_scheduler(
            e.refresher().clone(),
            async {
                let _ = rx.await;
            },
        )));
    }
    loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let done: u64 = engines
            .iter()
            .map(|e| e.refresher().state().commits.counts().1)
            .sum();
        if done as usize >= n || start.elapsed() > Duration::from_secs(900) {
            break;
        }
    }
    let el = start.elapsed().as_secs_f64();
    for s in stops {
        let _ = s.send(());
    }
    for s in scheds {
        let _ = s.await;
    }
    (el, hits.load(Ordering::Relaxed))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

async fn storms(base: &str, n: usize, runs: usize) {
    let configs = [
        ("redb, 1 node", 1, false),
        ("PostgreSQL, 1 node", 1, true),
        ("PostgreSQL, 2 nodes", 2, true),
    ];
    let mut secs = vec![Vec::new(); configs.len()];
    let mut calls = vec![0; configs.len()];
    // the configurations alternate within each run, so drift on a shared machine hits
    // them alike
    for _ in 0..runs {
        for (k, &(_, nodes, pg)) in configs.iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let w = if pg {
                Where::Pg(new_database(base).await)
            } else {
                Where::File(dir.path().join("v.redb"))
            };
            let (s, c) = storm_once(w, nodes, n).await;
            secs[k].push(s);
            calls[k] = calls[k].max(c);
        }
    }
    let base_s = median(secs[0].clone());
    for (k, (label, _, _)) in configs.iter().enumerate() {
        let s = median(secs[k].clone());
        println!(
            "storm: {label}: {n} due connections in {s:.2} s = {:.0} refreshes/s, {:.2}x the redb time (provider calls in the worst run: {}, expected {n})",
            n as f64 / s,
            s / base_s,
            calls[k]
        );
    }
}

async fn gets(base: &str, runs: usize) {
    let (url, _) = fake_provider(Duration::ZERO).await;
    let mut p50s = [Vec::new(), Vec::new()];
    for _ in 0..runs {
        for (k, pg) in [false, true].into_iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let w = if pg {
                Where::Pg(new_database(base).await)
            } else {
                Where::File(dir.path().join("v.redb"))
            };
            let clock = vault_with(&w, 1, &url, 3600).await;
            let e = engine_on(&w, clock);
            let get = || Request::Get {
                connection: "t/spotify/user0000000".into(),
                min_ttl: None,
                force_refresh: false,
            };
            e.handle(&admin(), get()).await.unwrap();
            let mut ts = Vec::with_capacity(20_000);
            for _ in 0..20_000 {
                let t = Instant::now();
                std::hint::black_box(e.handle(&admin(), get()).await.unwrap());
                ts.push(t.elapsed().as_secs_f64() * 1e6);
            }
            p50s[k].push(median(ts));
        }
    }
    let (f, p) = (median(p50s[0].clone()), median(p50s[1].clone()));
    println!(
        "get: cached get p50 in the engine: redb {f:.2} µs, a PostgreSQL node {p:.2} µs, ratio {:.2}x (goal <= 1.1x)",
        p / f
    );
}

async fn commits(base: &str, n: usize, runs: usize) {
    let mut rates = [Vec::new(), Vec::new()];
    for _ in 0..runs {
        for (k, single) in [false, true].into_iter().enumerate() {
            let (url, _) = fake_provider(Duration::ZERO).await;
            let w = Where::Pg(new_database(base).await);
            let clock = vault_with(&w, n, &url, 3600).await;
            let engine = engine_on(&w, clock);
            engine.refresher().state().commits.set_single(single);
            let start = Instant::now();
            let mut set = tokio::task::JoinSet::new();
            let sem = Arc::new(tokio::sync::Semaphore::new(PER_HOST));
            for j in 0..n {
                let p = sem.clone().acquire_owned().await.unwrap();
                let e = engine.clone();
                set.spawn(async move {
                    let key = format!("t/spotify/user{j:07}");
                    tokenvault::refresh::refresh(
                        e.refresher(),
                        &key,
                        tokenvault::refresh::Trigger::Manual,
                    )
                    .await
                    .unwrap();
                    drop(p);
                });
            }
            while set.join_next().await.is_some() {}
            rates[k].push(n as f64 / start.elapsed().as_secs_f64());
        }
    }
    let (g, s) = (median(rates[0].clone()), median(rates[1].clone()));
    println!(
        "commit: PostgreSQL, {n} refreshes at concurrency {PER_HOST}: group commit {g:.0}/s, one transaction per refresh {s:.0}/s, ratio {:.2}",
        g / s
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let base = args
        .first()
        .expect("usage: pg_bench postgres://USER:PW@HOST:PORT [N] [RUNS]")
        .trim_end_matches('/')
        .to_owned();
    let n: usize = args.get(1).map(|s| s.parse().unwrap()).unwrap_or(10_000);
    let runs: usize = args.get(2).map(|s| s.parse().unwrap()).unwrap_or(3);
    storms(&base, n, runs).await;
    gets(&base, runs).await;
    commits(&base, n.min(2_000), runs).await;
}
