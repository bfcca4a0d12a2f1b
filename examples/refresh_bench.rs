//! Benchmarks of the refresh engine (issue 3, "Measure"). Run in release mode:
//!
//! ```text
//! cargo run --release --example refresh_bench -- [storm N] [commit N] [scale N]
//! ```
//!
//! - `storm N`: N due connections refreshed by the scheduler against a local fake provider
//!   answering after 50 ms; refreshes/s and the share refreshed before expiry, against a
//!   bare reqwest POST loop at the same concurrency against the same server.
//! - `commit N`: N refreshes (provider answering at once) with group commit vs one durable
//!   commit per refresh; records/s.
//! - `scale N`: N connections: vault open time, time to find the next due connection,
//!   resident memory and CPU of a scheduler idling for 5 s.
//!
//! Numbers are printed as medians of the runs given; see docs/performance-refresh.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokenvault::contract::Request;
use tokenvault::engine::{Clock, Engine};
use tokenvault::secret::Secret;
use tokenvault::vault::{Vault, crypto::KdfParams};

const PASS: &str = "bench passphrase";
const PER_HOST: usize = 64;

#[path = "common/bench.rs"]
mod bench;
use bench::{OffsetClock, admin, fake_provider};

/// A vault with `n` connections of tenant `t` expiring in `expires_in` seconds.
async fn vault_with(
    dir: &std::path::Path,
    n: usize,
    token_url: &str,
    expires_in: i64,
) -> (Arc<Engine>, Arc<OffsetClock>) {
    let path = dir.join("vault.redb");
    Vault::init(&path, &Secret::new(PASS), KdfParams::new(19, 2, 1).unwrap()).unwrap();
    let clock = Arc::new(OffsetClock::default());
    let engine = Arc::new(Engine::with_clock(
        Vault::open(&path, &Secret::new(PASS)).unwrap(),
        clock.clone(),
    ));
    let mut cfg = tokenvault::config::Config::default();
    cfg.scheduler.per_host_concurrency = Some(PER_HOST);
    engine.set_config(cfg);
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
    // bulk import in large transactions (what `backup restore` would do)
    let now = clock.now();
    let mut i = 0;
    while i < n {
        let tx = engine.vault().write().unwrap();
        for j in i..(i + 50_000).min(n) {
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
        i += 50_000;
    }
    (engine, clock)
}

fn refreshed_before_expiry(engine: &Engine) -> (usize, usize) {
    let rx = engine.vault().read().unwrap();
    let (mut ok, mut all) = (0, 0);
    rx.for_each_connection("t/", |_, r| {
        all += 1;
        // the old token's expiry was the put-time expiry; a refresh before it counts
        if r.refresh_count > 0 && r.last_refresh_at.is_some() {
            ok += 1;
        }
        Ok(true)
    })
    .unwrap();
    (ok, all)
}

async fn storm(n: usize) {
    let (url, hits) = fake_provider(Duration::from_millis(50)).await;
    let dir = tempfile::tempdir().unwrap();
    // tokens expire 40 s after the jump that makes them all due
    let (engine, clock) = vault_with(dir.path(), n, &url, 340).await;
    let expiry = clock.now() + 340;
    clock.0.store(300, Ordering::Relaxed);
    let start = Instant::now();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sched = tokio::spawn(tokenvault::refresh::run_scheduler(
        engine.refresher().clone(),
        async {
            let _ = stop_rx.await;
        },
    ));
    let mut before_expiry = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let done = engine.refresher().state().commits.counts().1 as usize;
        if clock.now() < expiry {
            before_expiry = done;
        }
        if done >= n || start.elapsed() > Duration::from_secs(600) {
            break;
        }
    }
    let el = start.elapsed();
    let _ = hits;
    let _ = stop_tx.send(());
    let _ = sched.await;
    let (ok, all) = refreshed_before_expiry(&engine);
    let (batches, jobs) = engine.refresher().state().commits.counts();
    println!(
        "storm: {n} due connections, per-host concurrency {PER_HOST}, provider latency 50 ms: {:.0} refreshes/s ({:.2} s); refreshed {ok}/{all}; {before_expiry}/{n} committed before the old tokens expired (40 s after becoming due); {jobs} results in {batches} commits",
        n as f64 / el.as_secs_f64(),
        el.as_secs_f64()
    );

    // baseline: bare reqwest POST loop at the same concurrency
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let start = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(PER_HOST));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let p = sem.clone().acquire_owned().await.unwrap();
        let c = client.clone();
        let u = url.clone();
        set.spawn(async move {
            let r = c
                .post(&u)
                .body("grant_type=refresh_token&refresh_token=x")
                .send()
                .await
                .unwrap();
            let _ = r.bytes().await;
            drop(p);
        });
    }
    while set.join_next().await.is_some() {}
    let base = start.elapsed();
    println!(
        "storm baseline: bare reqwest POST loop, concurrency {PER_HOST}: {:.0} requests/s ({:.2} s); ratio tokenvault/baseline = {:.2}",
        n as f64 / base.as_secs_f64(),
        base.as_secs_f64(),
        base.as_secs_f64() / el.as_secs_f64()
    );
}

async fn commit_bench(n: usize) {
    let mut rates = Vec::new();
    for single in [false, true] {
        let (url, _) = fake_provider(Duration::ZERO).await;
        let dir = tempfile::tempdir().unwrap();
        let (engine, _clock) = vault_with(dir.path(), n, &url, 3600).await;
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
        let el = start.elapsed();
        let (batches, jobs) = engine.refresher().state().commits.counts();
        let rate = n as f64 / el.as_secs_f64();
        println!(
            "commit: {} — {n} refreshes at concurrency {PER_HOST}: {rate:.0} records/s, {jobs} results in {batches} durable commits",
            if single {
                "one commit per refresh"
            } else {
                "group commit"
            }
        );
        rates.push(rate);
    }
    println!("commit: group/single ratio = {:.2}", rates[0] / rates[1]);
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// CPU time (user + system) of this whole process in seconds, microsecond resolution.
fn cpu_secs() -> f64 {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).unwrap();
    let tv = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    tv(u.user_time()) + tv(u.system_time())
}

async fn scale(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    build(n, dir.path()).await;
    idle(dir.path()).await;
}

async fn build(n: usize, dir: &std::path::Path) {
    let t = Instant::now();
    let (_engine, _) = vault_with(dir, n, "http://127.0.0.1:9/token", 30 * 86_400).await;
    println!(
        "scale: built {n} connections in {:.1} s",
        t.elapsed().as_secs_f64()
    );
}

/// What `idle-one` measures of one vault, in its own process.
#[derive(Debug, Clone, Copy)]
struct Idle {
    open_ms: f64,
    next_due_us: f64,
    cpu_s: f64,
    rss_kib: u64,
    passes: u64,
}

const IDLE_SECS: u64 = 20;

/// Opens the vault at `path`, times `next_due()`, then idles a scheduler on it for
/// `IDLE_SECS`; prints one `IDLE` line with the CPU it used and the process's resident
/// memory at the end.
async fn idle_one(path: &std::path::Path) {
    let t = Instant::now();
    let vault = Vault::open(path, &Secret::new(PASS)).unwrap();
    let open = t.elapsed();
    let engine = Arc::new(Engine::new(vault));
    let mut times = Vec::new();
    for _ in 0..1001 {
        let t = Instant::now();
        let rx = engine.vault().read().unwrap();
        let next = rx.next_due().unwrap();
        times.push(t.elapsed());
        assert!(next.is_some());
    }
    times.sort();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sched = tokio::spawn(tokenvault::refresh::run_scheduler(
        engine.refresher().clone(),
        async {
            let _ = stop_rx.await;
        },
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu0 = cpu_secs();
    tokio::time::sleep(Duration::from_secs(IDLE_SECS)).await;
    let cpu = cpu_secs() - cpu0;
    let rss = rss_kib();
    let _ = stop_tx.send(());
    let _ = sched.await;
    println!(
        "IDLE {} {} {} {} {}",
        open.as_secs_f64() * 1000.0,
        times[500].as_secs_f64() * 1e6,
        cpu,
        rss,
        engine.refresher().state().scheduler_passes()
    );
}

fn run_idle_child(path: &std::path::Path) -> Idle {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("idle-one")
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("IDLE "))
        .unwrap_or_else(|| panic!("idle-one printed {text}"));
    let f: Vec<f64> = line[5..]
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    Idle {
        open_ms: f[0],
        next_due_us: f[1],
        cpu_s: f[2],
        rss_kib: f[3] as u64,
        passes: f[4] as u64,
    }
}

/// The same file's `DUE` index read with bare redb (no vault, no decryption): the first key,
/// 1001 times, median. The baseline for `next_due`.
fn bare_first_due(path: &std::path::Path) -> Duration {
    use redb::{ReadableDatabase, ReadableTable};
    let db = redb::ReadOnlyDatabase::open(path).unwrap();
    let mut times = Vec::new();
    for _ in 0..1001 {
        let t = Instant::now();
        let r = db.begin_read().unwrap();
        let due = r.open_table(tokenvault::vault::schema::DUE).unwrap();
        let first = due.first().unwrap();
        times.push(t.elapsed());
        assert!(first.is_some());
    }
    times.sort();
    times[500]
}

fn median_by(v: &[Idle], f: impl Fn(&Idle) -> f64) -> f64 {
    let mut x: Vec<f64> = v.iter().map(f).collect();
    x.sort_by(|a, b| a.total_cmp(b));
    x[x.len() / 2]
}

/// Idles a scheduler on the vault in `dir`, each run a fresh process, alternating with the
/// baseline: a one-connection vault with the same KDF parameters (open time, idle CPU,
/// resident memory). `next_due` is compared with bare redb reading the same `DUE` index.
/// Three rounds; medians.
async fn idle(dir: &std::path::Path) {
    let path = dir.join("vault.redb");
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let small_dir = tempfile::tempdir().unwrap();
    build(1, small_dir.path()).await;
    let small_path = small_dir.path().join("vault.redb");
    let (mut big, mut small, mut bare) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        small.push(run_idle_child(&small_path));
        bare.push(bare_first_due(&path).as_secs_f64() * 1e6);
        big.push(run_idle_child(&path));
    }
    for (b, s) in big.iter().zip(&small) {
        println!("scale: run: 1M {b:?} / 1 connection {s:?}");
    }
    bare.sort_by(|a, b| a.total_cmp(b));
    let bare = bare[1];
    let m = |v: &[Idle], f: fn(&Idle) -> f64| median_by(v, f);
    println!(
        "scale: file {:.0} MiB; KDF Argon2id m=19 MiB t=2 for both vaults; idle {IDLE_SECS} s per run; medians of 3 alternating runs, each a fresh process",
        size as f64 / 1048576.0
    );
    let (bo, so) = (m(&big, |i| i.open_ms), m(&small, |i| i.open_ms));
    println!(
        "scale: open          {bo:>9.1} ms  vs 1-connection vault {so:>9.1} ms  ratio {:.2}",
        bo / so
    );
    let bn = m(&big, |i| i.next_due_us);
    println!(
        "scale: next due      {bn:>9.2} µs  vs bare redb first()  {bare:>9.2} µs  ratio {:.2}",
        bn / bare
    );
    let (bc, sc) = (m(&big, |i| i.cpu_s), m(&small, |i| i.cpu_s));
    println!(
        "scale: idle CPU      {:>9.2} ms  vs 1-connection vault {:>9.2} ms  over {IDLE_SECS} s ({} / {} scheduler passes)",
        bc * 1000.0,
        sc * 1000.0,
        big[0].passes,
        small[0].passes
    );
    let (br, sr) = (
        m(&big, |i| i.rss_kib as f64),
        m(&small, |i| i.rss_kib as f64),
    );
    println!(
        "scale: RSS           {br:>9.0} KiB vs 1-connection vault {sr:>9.0} KiB ratio {:.2}",
        br / sr
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("build") => {
            return build(args[1].parse().unwrap(), std::path::Path::new(&args[2])).await;
        }
        Some("idle") => return idle(std::path::Path::new(&args[1])).await,
        Some("idle-one") => return idle_one(std::path::Path::new(&args[1])).await,
        _ => {}
    }
    let mut i = 0;
    while i + 1 < args.len() {
        let n: usize = args[i + 1].parse().unwrap();
        match args[i].as_str() {
            "storm" => storm(n).await,
            "commit" => commit_bench(n).await,
            "scale" => scale(n).await,
            other => panic!("unknown benchmark {other}"),
        }
        i += 2;
    }
}
