//! Daemon benchmark (issue 4 "Measure"), run in release mode:
//!
//! ```text
//! cargo build --release && cargo run --release --example bench_daemon
//! ```
//!
//! 1. `get` over the socket, one client, sequential: p50/p99 against a plain Unix-socket
//!    echo server with the same framing (newline-delimited lines, one task per
//!    connection), sent the same request line. Rounds alternate between the two servers
//!    so machine noise hits both alike.
//! 2. Throughput with 32 concurrent clients against the same echo server.
//! 3. `tokenvault get` as a whole process (daemon running) against `pass show` of an
//!    equal secret (Debian's `pass`), when `pass` and `gpg` are installed.
//! 4. `get` p50/p99 while the scheduler refreshes 10 000 due connections against a fake
//!    provider answering after 50 ms, against the same probe at idle. It reports how many
//!    provider calls happened during the measurement: with the refresh engine (issue 3)
//!    not merged, none do and the figure is only the idle one twice.
//!
//! Everything reports medians and ratios measured in this one run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenvault::contract::{Caller, Request};
use tokenvault::engine::Engine;
use tokenvault::secret::Secret;
use tokenvault::vault::{Vault, crypto::KdfParams};

const TOKEN: &str = "AT-bench-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// An echo server with the daemon's framing: reads a line, writes it back.
async fn echo_server(listener: tokio::net::UnixListener) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    loop {
        let Ok((s, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            let (rd, mut wr) = s.into_split();
            let mut rd = tokio::io::BufReader::new(rd);
            let mut line = Vec::new();
            loop {
                line.clear();
                match rd.read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if wr.write_all(&line).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
}

struct Client {
    w: UnixStream,
    r: BufReader<UnixStream>,
    buf: String,
}

impl Client {
    fn new(p: &Path) -> Client {
        let w = UnixStream::connect(p).unwrap();
        let r = BufReader::new(w.try_clone().unwrap());
        Client {
            w,
            r,
            buf: String::new(),
        }
    }
    fn rt(&mut self, line: &[u8]) -> usize {
        self.w.write_all(line).unwrap();
        self.buf.clear();
        self.r.read_line(&mut self.buf).unwrap()
    }
}

fn latency_round(p: &Path, line: &[u8], n: usize, out: &mut Vec<Duration>) {
    let mut c = Client::new(p);
    for _ in 0..200 {
        c.rt(line);
    }
    for _ in 0..n {
        let t = Instant::now();
        let got = c.rt(line);
        out.push(t.elapsed());
        assert!(got > 0);
    }
}

fn throughput_round(p: &Path, line: &[u8], clients: usize, per: usize) -> f64 {
    let p = p.to_path_buf();
    let line = Arc::new(line.to_vec());
    let barrier = Arc::new(std::sync::Barrier::new(clients + 1));
    let hs: Vec<_> = (0..clients)
        .map(|_| {
            let (p, line, b) = (p.clone(), line.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut c = Client::new(&p);
                c.rt(&line);
                b.wait();
                for _ in 0..per {
                    c.rt(&line);
                }
            })
        })
        .collect();
    barrier.wait();
    let t = Instant::now();
    for h in hs {
        h.join().unwrap();
    }
    (clients * per) as f64 / t.elapsed().as_secs_f64()
}

/// 5 alternating rounds of 32 clients × 1000 requests against each server; the medians
/// (daemon, echo) in requests per second.
fn throughput_medians(tv: &Path, echo: &Path, line: &[u8]) -> (f64, f64) {
    let (mut tv_tp, mut echo_tp) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        tv_tp.push(throughput_round(tv, line, 32, 1000));
        echo_tp.push(throughput_round(echo, line, 32, 1000));
    }
    (median(tv_tp), median(echo_tp))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // --- the daemon's socket server in this process, on a fast-KDF vault ---
    let vault = Vault::init(
        &dir.path().join("v.redb"),
        &Secret::new("bench"),
        KdfParams::new(19, 2, 1).unwrap(),
    )
    .unwrap();
    let mut engine = Engine::new(vault);
    engine.set_daemon(true);
    let engine = Arc::new(engine);
    let admin = Caller::Admin {
        actor: "bench".into(),
    };
    rt.block_on(async {
        engine
            .handle(
                &admin,
                Request::TenantAdd {
                    name: "acme".into(),
                },
            )
            .await
            .unwrap();
        engine
            .handle(
                &admin,
                Request::Put {
                    connection: "acme/spotify/alice".into(),
                    token: serde_json::json!({"access_token": TOKEN, "expires_in": 86400}),
                },
            )
            .await
            .unwrap();
    });
    let tv_sock = dir.path().join("tv.sock");
    let echo_sock = dir.path().join("echo.sock");
    {
        let _g = rt.enter();
        let l = tokio::net::UnixListener::bind(&tv_sock).unwrap();
        rt.spawn(tokenvault::server::listener::run(
            engine.clone(),
            l,
            std::future::pending(),
        ));
        let e = tokio::net::UnixListener::bind(&echo_sock).unwrap();
        rt.spawn(echo_server(e));
        // the daemon flushes hand-out audit records once a second
        let eng = engine.clone();
        rt.spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let e2 = eng.clone();
                let _ = tokio::task::spawn_blocking(move || e2.flush_audit()).await;
            }
        });
    }
    let get_line = b"{\"op\":\"get\",\"connection\":\"acme/spotify/alice\",\"id\":1}\n".to_vec();
    {
        let mut c = Client::new(&tv_sock);
        let n = c.rt(&get_line);
        assert!(c.buf.contains(TOKEN), "{}", c.buf);
        println!(
            "request line {} bytes; get answer {} bytes",
            get_line.len(),
            n
        );
    }

    // BENCH_ONLY=throughput runs only the 32-client rounds; =tv or =echo one round
    // against one server (for profiling and syscall counts).
    if let Ok(which @ ("tv" | "echo")) = std::env::var("BENCH_ONLY").as_deref() {
        let sock = if which == "tv" { &tv_sock } else { &echo_sock };
        let r = throughput_round(sock, &get_line, 32, 1000);
        println!("throughput {which}: {r:.0} req/s");
        return;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("throughput") {
        let (tvm, em) = throughput_medians(&tv_sock, &echo_sock, &get_line);
        println!(
            "throughput: get {tvm:.0} req/s, echo {em:.0} req/s, ratio {:.2}x",
            tvm / em
        );
        return;
    }

    // --- 0. where the time goes: the same get without a socket ---
    let n = 20_000;
    let (inproc, dec, enc) = rt.block_on(async {
        let get = || Request::Get {
            connection: "acme/spotify/alice".into(),
            min_ttl: None,
            force_refresh: false,
        };
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(engine.handle(&admin, get()).await.unwrap());
        }
        let inproc = t.elapsed() / n;
        let t = Instant::now();
        for _ in 0..n {
            let _ = std::hint::black_box(tokenvault::contract::framing::decode(
                &get_line[..get_line.len() - 1],
            ));
        }
        let dec = t.elapsed() / n;
        let r = engine.handle(&admin, get()).await.unwrap();
        let id = serde_json::json!(1);
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(tokenvault::contract::framing::encode_ok(&id, &r));
        }
        (inproc, dec, t.elapsed() / n)
    });
    println!(
        "in-process: engine.handle(get) {:.2} us, decode {:.2} us, encode {:.2} us (mean of {n})",
        us(inproc),
        us(dec),
        us(enc)
    );

    // --- 1. latency, alternating rounds ---
    let rounds = 10;
    let per_round = 2000;
    let (mut tv_lat, mut echo_lat) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        latency_round(&tv_sock, &get_line, per_round, &mut tv_lat);
        latency_round(&echo_sock, &get_line, per_round, &mut echo_lat);
    }
    tv_lat.sort();
    echo_lat.sort();
    let (t50, t99, e50, e99) = (
        pct(&tv_lat, 0.5),
        pct(&tv_lat, 0.99),
        pct(&echo_lat, 0.5),
        pct(&echo_lat, 0.99),
    );
    println!(
        "latency ({} sequential requests each, {rounds} alternating rounds)",
        tv_lat.len()
    );
    println!(
        "  socket get : p50 {:.1} us  p99 {:.1} us",
        us(t50),
        us(t99)
    );
    println!(
        "  echo       : p50 {:.1} us  p99 {:.1} us",
        us(e50),
        us(e99)
    );
    println!(
        "  ratio get/echo: p50 {:.2}x  p99 {:.2}x  (goal p50 <= 1.5x)",
        us(t50) / us(e50),
        us(t99) / us(e99)
    );

    // --- 2. throughput with 32 clients, alternating rounds ---
    let (tvm, em) = throughput_medians(&tv_sock, &echo_sock, &get_line);
    println!("throughput, 32 concurrent clients x 1000 requests, median of 5 alternating rounds");
    println!("  socket get : {tvm:.0} req/s");
    println!("  echo       : {em:.0} req/s");
    println!("  ratio get/echo: {:.2}x  (goal >= 0.7x)", tvm / em);
    let served = engine.context().metrics().tokens_served();
    println!("  (tokens served in all: {served})");

    // --- 3. whole process: tokenvault get vs pass show ---
    process_comparison(dir.path());

    // --- 4. get during a refresh storm ---
    storm(&rt, dir.path());
}

fn storm(rt: &tokio::runtime::Runtime, dir: &Path) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokenvault::vault::records::{ConnectionRecord, Status, TokenSecrets};
    const N: usize = 10_000;
    let calls = Arc::new(AtomicU64::new(0));
    // The provider runs on its own runtime (its own threads), as a remote provider would
    // not share the daemon's tokio workers; it still shares the machine's 2 cores.
    let addr = {
        let calls = calls.clone();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let prt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            prt.block_on(async move {
                use axum::{Json, Router, routing::post};
                let app = Router::new().route(
                    "/token",
                    post(move || {
                        let calls = calls.clone();
                        async move {
                            let n = calls.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Json(serde_json::json!({
                                "access_token": format!("AT-storm-{n}"),
                                "expires_in": 3600,
                                "token_type": "Bearer"
                            }))
                        }
                    }),
                );
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(l.local_addr().unwrap()).unwrap();
                axum::serve(l, app).await.unwrap()
            })
        });
        addr_rx.recv().unwrap()
    };
    let vault = Vault::init(
        &dir.join("storm.redb"),
        &Secret::new("bench"),
        KdfParams::new(19, 2, 1).unwrap(),
    )
    .unwrap();
    let engine = Arc::new(Engine::new(vault));
    let admin = Caller::Admin {
        actor: "bench".into(),
    };
    let now = engine.now();
    rt.block_on(async {
        engine
            .handle(
                &admin,
                Request::TenantAdd {
                    name: "acme".into(),
                },
            )
            .await
            .unwrap();
        engine
            .handle(
                &admin,
                Request::ClientSet {
                    tenant: "acme".into(),
                    provider: "spotify".into(),
                    client_id: "cid".into(),
                    client_secret: Some(Secret::new("csecret")),
                    token_url: Some(format!("http://{addr}/token")),
                    authorization_url: None,
                    device_authorization_url: None,
                    revocation_url: None,
                    params: Default::default(),
                },
            )
            .await
            .unwrap();
        engine
            .handle(
                &admin,
                Request::Put {
                    connection: "acme/spotify/probe".into(),
                    token: serde_json::json!({"access_token": TOKEN, "expires_in": 86400}),
                },
            )
            .await
            .unwrap();
    });
    let tx = engine.vault().write().unwrap();
    for i in 0..N {
        let key = format!("acme/spotify/storm{i:05}");
        let secrets = TokenSecrets {
            access_token: Secret::new(format!("AT-old-{i}")),
            refresh_token: Some(Secret::new(format!("RT-old-{i}"))),
            id_token: None,
            extra: Default::default(),
        };
        let rec = ConnectionRecord {
            status: Status::Connected,
            reason: None,
            status_at: now,
            attempts: 0,
            expires_at: Some(now + 240),
            refresh_expires_at: None,
            due_at: Some(now),
            scope: None,
            token_type: Some("Bearer".into()),
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
    let sock = dir.join("storm.sock");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    {
        let _g = rt.enter();
        let l = tokio::net::UnixListener::bind(&sock).unwrap();
        rt.spawn(tokenvault::server::listener::run(
            engine.clone(),
            l,
            std::future::pending(),
        ));
    }
    let line = b"{\"op\":\"get\",\"connection\":\"acme/spotify/probe\"}\n".to_vec();
    // Both probes send one `get` every GAP on one connection: at idle for IDLE_SAMPLES,
    // then for as long as the storm lasts, so the storm figure covers the whole storm.
    const GAP: Duration = Duration::from_millis(2);
    const IDLE_SAMPLES: usize = 3000;
    let mut idle = Vec::new();
    {
        let mut c = Client::new(&sock);
        for _ in 0..IDLE_SAMPLES {
            std::thread::sleep(GAP);
            let t = Instant::now();
            assert!(c.rt(&line) > 0);
            idle.push(t.elapsed());
        }
    }
    let before = calls.load(Ordering::Relaxed);
    let t = Instant::now();
    let mut rx = stop_rx.clone();
    // as `serve` does: the scheduler on a runtime of its own
    let refresh_rt = tokenvault::refresh::scheduler_runtime().unwrap();
    refresh_rt.spawn(tokenvault::refresh::run_scheduler(
        engine.refresher().clone(),
        async move {
            let _ = rx.wait_for(|s| *s).await;
        },
    ));
    let mut busy = Vec::new();
    {
        let mut c = Client::new(&sock);
        let deadline = Instant::now() + Duration::from_secs(120);
        while calls.load(Ordering::Relaxed) - before < N as u64 && Instant::now() < deadline {
            std::thread::sleep(GAP);
            let s = Instant::now();
            assert!(c.rt(&line) > 0);
            busy.push(s.elapsed());
        }
    }
    let during = calls.load(Ordering::Relaxed) - before;
    let window = t.elapsed();
    let total = calls.load(Ordering::Relaxed) - before;
    let _ = stop_tx.send(true);
    refresh_rt.shutdown_background();
    idle.sort();
    busy.sort();
    println!("get during a refresh storm ({N} due connections, provider answers after 50 ms)");
    println!(
        "  idle  : p50 {:.1} us  p99 {:.1} us  ({} samples, one every {} ms)",
        us(pct(&idle, 0.5)),
        us(pct(&idle, 0.99)),
        idle.len(),
        GAP.as_millis()
    );
    println!(
        "  storm : p50 {:.1} us  p99 {:.1} us  ({} samples; {during} provider calls during the {:.2} s window; {total} in all after {:.1} s)",
        us(pct(&busy, 0.5)),
        us(pct(&busy, 0.99)),
        busy.len(),
        window.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    if during > 0 {
        println!(
            "  ratio storm/idle p99: {:.2}x",
            us(pct(&busy, 0.99)) / us(pct(&idle, 0.99))
        );
    } else {
        println!(
            "  NOTE: no provider call happened: the refresh engine is not in this build, so this is not a storm figure"
        );
    }
}

fn bin() -> PathBuf {
    let here = std::env::current_exe().unwrap();
    // target/release/examples/bench_daemon → target/release/tokenvault
    here.parent()
        .and_then(Path::parent)
        .map(|p| p.join("tokenvault"))
        .unwrap()
}

fn time_process(mut mk: impl FnMut() -> std::process::Command, n: usize, want: &str) -> Vec<f64> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let out = mk().output().unwrap();
        v.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), want);
    }
    v
}

fn process_comparison(dir: &Path) {
    let tv = bin();
    if !tv.exists() {
        println!("process comparison skipped: build the binary first (cargo build --release)");
        return;
    }
    // a real daemon on its own vault
    let vault = dir.join("p.redb");
    let pass = dir.join("pass");
    std::fs::write(&pass, "bench").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let sock = dir.join("run/p.sock");
    // an empty config file: `serve` refuses a --config / TOKENVAULT_CONFIG that is missing
    std::fs::write(dir.join("none.toml"), "").unwrap();
    let env = |c: &mut std::process::Command| {
        c.env_clear()
            .env("HOME", dir)
            .env("TOKENVAULT_VAULT", &vault)
            .env("TOKENVAULT_SOCKET", &sock)
            .env("TOKENVAULT_CONFIG", dir.join("none.toml"));
    };
    let mut init = std::process::Command::new(&tv);
    env(&mut init);
    let ok = init
        .env("TOKENVAULT_PASSPHRASE_FILE", &pass)
        .args([
            "init",
            "--kdf-memory-mib",
            "19",
            "--kdf-iterations",
            "2",
            "--kdf-parallelism",
            "1",
        ])
        .status()
        .unwrap();
    assert!(ok.success());
    let mut serve = std::process::Command::new(&tv);
    env(&mut serve);
    let mut daemon = serve
        .env("TOKENVAULT_PASSPHRASE_FILE", &pass)
        .arg("serve")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while UnixStream::connect(&sock).is_err() {
        assert!(
            Instant::now() < deadline,
            "the daemon did not start (run `tokenvault serve` with the same environment to see why)"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut c = std::process::Command::new(&tv);
        env(&mut c);
        c.args(args);
        if let Some(s) = stdin {
            use std::io::Write;
            let mut ch = c.stdin(std::process::Stdio::piped()).spawn().unwrap();
            ch.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
            assert!(ch.wait().unwrap().success());
        } else {
            assert!(c.status().unwrap().success());
        }
    };
    run(&["tenant", "add", "acme"], None);
    run(
        &["put", "acme/spotify/alice"],
        Some(&format!(
            "{{\"access_token\":\"{TOKEN}\",\"expires_in\":86400}}"
        )),
    );
    let tv_get = || {
        let mut c = std::process::Command::new(&tv);
        env(&mut c);
        c.args(["get", "acme/spotify/alice"]);
        c
    };
    let have_pass = which("pass") && which("gpg");
    let gnupg = dir.join("gnupg");
    let store = dir.join("pass-store");
    let pass_cmd = |args: &[&str]| {
        let mut c = std::process::Command::new("pass");
        c.env("GNUPGHOME", &gnupg)
            .env("PASSWORD_STORE_DIR", &store)
            .env("HOME", dir)
            .args(args);
        c
    };
    let mut pass_ready = false;
    if have_pass {
        std::fs::create_dir_all(&gnupg).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&gnupg, std::fs::Permissions::from_mode(0o700)).unwrap();
        let gen_ok = std::process::Command::new("gpg")
            .env("GNUPGHOME", &gnupg)
            .args([
                "--batch",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                "--quick-gen-key",
                "bench@tokenvault.invalid",
                "default",
                "default",
                "never",
            ])
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if gen_ok
            && pass_cmd(&["init", "bench@tokenvault.invalid"])
                .stdout(std::process::Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        {
            let mut ch = pass_cmd(&["insert", "-m", "acme/spotify/alice"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            {
                use std::io::Write;
                ch.stdin
                    .take()
                    .unwrap()
                    .write_all(format!("{TOKEN}\n").as_bytes())
                    .unwrap();
            }
            pass_ready = ch.wait().map(|s| s.success()).unwrap_or(false);
        }
    }
    let n = 60;
    // warm both, then alternate batches
    let _ = time_process(tv_get, 5, TOKEN);
    if pass_ready {
        let _ = time_process(|| pass_cmd(&["show", "acme/spotify/alice"]), 5, TOKEN);
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        a.extend(time_process(tv_get, n / 3, TOKEN));
        if pass_ready {
            b.extend(time_process(
                || pass_cmd(&["show", "acme/spotify/alice"]),
                n / 3,
                TOKEN,
            ));
        }
    }
    let ta = median(a);
    println!("whole process, median of {n} runs each, alternating batches");
    println!("  tokenvault get (via daemon): {ta:.2} ms");
    if pass_ready {
        let tb = median(b);
        println!("  pass show                  : {tb:.2} ms");
        println!("  ratio tokenvault/pass: {:.3}x  (goal <= 0.2x)", ta / tb);
    } else {
        println!("  pass show: not measured (Debian `pass`/`gpg` not installed or not usable)");
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = daemon.wait();
    if pass_ready {
        // stop the gpg-agent this benchmark's GNUPGHOME started
        let _ = std::process::Command::new("gpgconf")
            .env("GNUPGHOME", &gnupg)
            .args(["--kill", "gpg-agent"])
            .status();
    }
}

fn which(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
}
