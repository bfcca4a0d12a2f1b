//! Terminal UI benchmark (issue 11 "Measure"), in release mode:
//!
//! ```text
//! cargo build --release --bin tokenvault --example tui_bench
//! target/release/examples/tui_bench            # 100 000 connections; or give N
//! ```
//!
//! 1. A fast-KDF vault with N connections over 20 tenants (bulk writes through the vault
//!    API, as a restore would), served by the real `target/release/tokenvault serve`.
//! 2. In this process, the TUI's own `App` and drawing on ratatui's `TestBackend` at
//!    120×40, talking to that daemon over its socket exactly as `tokenvault tui` does
//!    (`BackendLink`), `TUI_BENCH_ROUNDS` rounds each (default 7; medians):
//!    - start → first full frame: connect, `hello`, header counts and the first page,
//!      drawn;
//!    - a filter keystroke → the redrawn frame: the `list` with `contains` for the new
//!      text answered and drawn; a common text (many matches: the first page fills at once)
//!      and a rare one (the daemon reads all N to fill the page);
//!    - PgDn → the redrawn frame (the event loop draws before any page it prefetches
//!      arrives), and the prefetched page's round trip separately.
//! 3. The real `tokenvault tui` in tmux (120×40) against the same daemon: start → the list
//!    on the pane (capture-pane polled every 5 ms, so ±5 ms), then 60 idle seconds: the TUI
//!    process's CPU (utime+stime from /proc) and its RSS.
//!
//! 4. The daemon's `get` p99 (one client, sequential, over the socket) with nothing else
//!    attached, against the same with the real `tokenvault tui` (in tmux) and 10 `watch`
//!    connections reading the event stream attached; the two alternate, `TUI_BENCH_ROUNDS`
//!    times each (medians of the rounds' p99, and their ratio).
//!
//! Needs tmux for parts 3 and 4 (skipped with a note otherwise). Figures go to
//! docs/performance.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenvault::contract::Request;
use tokenvault::secret::Secret;
use tokenvault::tui::app::{Action, App, Key, LinkInfo};
use tokenvault::tui::link::{BackendLink, Link};
use tokenvault::tui::{run, view};
use tokenvault::vault::records::*;
use tokenvault::vault::{Vault, crypto::KdfParams};

const PASS: &str = "tui bench passphrase";
/// Rounds per in-process figure (`TUI_BENCH_ROUNDS`, default 7).
fn rounds() -> usize {
    std::env::var("TUI_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn populate(vault: &Vault, n: usize, now: i64) {
    let tx = vault.write().unwrap();
    for t in 0..20 {
        tx.put_tenant(&format!("t{t:02}"), &TenantRecord { created_at: now })
            .unwrap();
    }
    tx.commit().unwrap();
    let mut i = 0;
    while i < n {
        let tx = vault.write().unwrap();
        for j in i..(i + 20_000).min(n) {
            let key = format!("t{:02}/spotify/user{j:07}", j % 20);
            let secrets = TokenSecrets {
                access_token: Secret::new(format!("at-bench-{j}")),
                refresh_token: Some(Secret::new(format!("rt-bench-{j}"))),
                id_token: None,
                extra: Default::default(),
            };
            let exp = now + 7200 + (j as i64 % 3600);
            let rec = ConnectionRecord {
                status: if j % 97 == 0 {
                    Status::NeedsReauth
                } else {
                    Status::Connected
                },
                reason: (j % 97 == 0).then(|| "the provider refused the refresh token".into()),
                status_at: now,
                attempts: 0,
                expires_at: Some(exp),
                refresh_expires_at: None,
                due_at: Some(exp - 300),
                scope: Some("user-read-private".into()),
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
        i += 20_000;
    }
}

fn bin() -> PathBuf {
    // target/release/examples/tui_bench → target/release/tokenvault
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("tokenvault")
}

fn env(c: &mut std::process::Command, dir: &Path) {
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("TERM", "xterm-256color")
        .env("XDG_CONFIG_HOME", dir.join("cfg"))
        .env("XDG_RUNTIME_DIR", dir.join("run"))
        .env("TOKENVAULT_VAULT", dir.join("vault.redb"))
        .env("TOKENVAULT_SOCKET", dir.join("run/tokenvault.sock"))
        .env("TOKENVAULT_PASSPHRASE_FILE", dir.join("pass"));
}

async fn link(socket: &Path) -> Arc<dyn Link> {
    let d = tokenvault::client::Daemon::connect(socket, std::sync::Arc::new(|| Ok(Vec::new())))
        .await
        .unwrap()
        .expect("no daemon");
    let c = tokenvault::client::Backend::Daemon(d);
    let info = LinkInfo {
        place: format!("daemon {}", socket.display()),
        caller: "admin".into(),
        tenant: None,
        recipients: vec![],
    };
    Arc::new(BackendLink::new(c, info))
}

fn draw(t: &mut Terminal<TestBackend>, app: &App) {
    t.draw(|f| view::draw(f, app)).unwrap();
}

async fn opened(socket: &Path) -> (App, Arc<dyn Link>, Terminal<TestBackend>) {
    let l = link(socket).await;
    let _ = l.call(Request::Hello).await.unwrap();
    let mut app = App::new(l.info(), chrono::Utc::now().timestamp(), 120, 40);
    let fx = app.start();
    run::settle(&mut app, &l, fx).await;
    let mut t = Terminal::new(TestBackend::new(120, 40)).unwrap();
    draw(&mut t, &app);
    (app, l, t)
}

async fn key(app: &mut App, l: &Arc<dyn Link>, t: &mut Terminal<TestBackend>, k: Key) -> Duration {
    let t0 = Instant::now();
    let fx = app.update(Action::Key(k));
    run::settle(app, l, fx).await;
    draw(t, app);
    t0.elapsed()
}

async fn in_process(socket: &Path, n: usize) {
    // start → first full frame
    let mut first = Vec::new();
    for _ in 0..rounds() {
        let t0 = Instant::now();
        let (app, _, t) = opened(socket).await;
        first.push(t0.elapsed());
        let text = t.backend().to_string();
        assert!(text.contains(&format!("{n} connections")), "{text}");
        assert_eq!(app.conns.rows.len(), tokenvault::tui::app::PAGE);
    }
    println!(
        "start → first full frame (in process): median {:.1} ms",
        ms(median(first))
    );

    // filter keystrokes
    for (what, text) in [("common", "user00"), ("rare", "user0099999")] {
        let mut per_key = Vec::new();
        for _ in 0..rounds() {
            let (mut app, l, mut t) = opened(socket).await;
            key(&mut app, &l, &mut t, Key::Char('/')).await;
            for c in text.chars() {
                per_key.push(key(&mut app, &l, &mut t, Key::Char(c)).await);
            }
            assert!(!app.conns.rows.is_empty(), "{what}: no match");
        }
        let worst = per_key.iter().max().copied().unwrap_or_default();
        println!(
            "filter keystroke → frame ({what} text {text:?}): median {:.1} ms, worst {:.1} ms",
            ms(median(per_key)),
            ms(worst)
        );
    }

    // page down: the frame, then the prefetched page
    let (mut app, l, mut t) = opened(socket).await;
    let (mut frames, mut pages) = (Vec::new(), Vec::new());
    for _ in 0..200 {
        let t0 = Instant::now();
        let fx = app.update(Action::Key(Key::PageDown));
        draw(&mut t, &app);
        frames.push(t0.elapsed());
        if !fx.is_empty() {
            let t1 = Instant::now();
            run::settle(&mut app, &l, fx).await;
            pages.push(t1.elapsed());
        }
    }
    println!(
        "PgDn → frame: median {:.2} ms, worst {:.2} ms over {} presses (selection at row {})",
        ms(median(frames.clone())),
        ms(frames.iter().max().copied().unwrap_or_default()),
        frames.len(),
        app.conns.sel
    );
    println!(
        "  prefetched pages ({} of them, {} rows each): median round trip {:.1} ms",
        pages.len(),
        tokenvault::tui::app::PAGE,
        ms(median(pages))
    );
}

fn tmux(sock: &Path) -> std::process::Command {
    let mut c = std::process::Command::new("tmux");
    c.arg("-S").arg(sock);
    c
}

fn proc_cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // fields 14 and 15 of stat (utime, stime), counted from after the comm
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn proc_kib(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn have_tmux() -> bool {
    std::process::Command::new("sh")
        .args(["-c", "command -v tmux"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn in_tmux(dir: &Path, n: usize) {
    if !have_tmux() {
        println!("tmux not installed: the real-terminal figures are skipped");
        return;
    }
    let sock = dir.join("tmux.sock");
    let mut firsts = Vec::new();
    let mut pid = 0;
    for round in 0..3 {
        firsts.push(start_tui(&sock, dir, n));
        let out = tmux(&sock)
            .args(["display", "-p", "-t", "b", "#{pane_pid}"])
            .output()
            .unwrap();
        pid = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        if round < 2 {
            let _ = tmux(&sock).args(["send-keys", "-t", "b", "q"]).status();
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    println!(
        "start → list on the pane (real `tokenvault tui` in tmux, incl. process start): median {:.0} ms",
        ms(median(firsts))
    );
    std::thread::sleep(Duration::from_secs(2));
    let hz = 100.0; // USER_HZ on Linux
    let c0 = proc_cpu_ticks(pid);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(60));
    let c1 = proc_cpu_ticks(pid);
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "idle 60 s: CPU {:.2} % of one core ({} ticks of 10 ms); RSS {} KiB, peak {} KiB",
        (c1 - c0) as f64 / hz / secs * 100.0,
        c1 - c0,
        proc_kib(pid, "VmRSS:"),
        proc_kib(pid, "VmHWM:")
    );
    // after scrolling to the end (every page loaded): the most the TUI holds
    let _ = tmux(&sock).args(["send-keys", "-t", "b", "G"]).status();
    let t0 = Instant::now();
    loop {
        let out = tmux(&sock)
            .args(["capture-pane", "-p", "-t", "b"])
            .output()
            .unwrap();
        let s = String::from_utf8_lossy(&out.stdout).into_owned();
        if s.contains(&format!("{n} of {n}")) && !s.contains("loading") {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "G never reached the end"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "G (every page loaded, {n} rows): {:.1} s; RSS {} KiB, peak {} KiB",
        t0.elapsed().as_secs_f64(),
        proc_kib(pid, "VmRSS:"),
        proc_kib(pid, "VmHWM:")
    );
    let _ = tmux(&sock).args(["send-keys", "-t", "b", "q"]).status();
    std::thread::sleep(Duration::from_millis(300));
    let _ = tmux(&sock).arg("kill-server").status();
}

/// Starts the real `tokenvault tui` in a detached tmux session (120×40) and waits until
/// the list is on the pane; returns that time (process start included, ±5 ms: the pane
/// is polled every 5 ms).
fn start_tui(sock: &Path, dir: &Path, n: usize) -> Duration {
    let _ = tmux(sock).arg("kill-server").status();
    let mut c = tmux(sock);
    c.args([
        "-f",
        "/dev/null",
        "new-session",
        "-d",
        "-x",
        "120",
        "-y",
        "40",
        "-s",
        "b",
    ]);
    let mut e = std::process::Command::new("true");
    env(&mut e, dir);
    for (k, v) in e.get_envs() {
        if let Some(v) = v {
            c.arg("-e")
                .arg(format!("{}={}", k.to_string_lossy(), v.to_string_lossy()));
        }
    }
    c.arg(format!("exec {} tui", bin().display()));
    let t0 = Instant::now();
    assert!(c.status().unwrap().success());
    let want = format!("of {n}");
    loop {
        let out = tmux(sock)
            .args(["capture-pane", "-p", "-t", "b"])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).contains(&want) {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the TUI never showed the list"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One `get` round: `n` sequential gets on one socket connection, after 200 to warm up;
/// returns the round's p99.
fn get_round(socket: &Path, keys: &[String], n: usize) -> Duration {
    use std::io::{BufRead, BufReader, Write};
    let w = std::os::unix::net::UnixStream::connect(socket).unwrap();
    let mut r = BufReader::new(w.try_clone().unwrap());
    let mut w = w;
    let mut line = String::new();
    let mut out = Vec::with_capacity(n);
    for i in 0..(n + 200) {
        let k = &keys[i % keys.len()];
        let req = format!("{{\"op\":\"get\",\"connection\":\"{k}\"}}\n");
        let t = Instant::now();
        w.write_all(req.as_bytes()).unwrap();
        line.clear();
        r.read_line(&mut line).unwrap();
        if i >= 200 {
            out.push(t.elapsed());
        }
        assert!(line.contains("\"ok\":true"), "{line}");
    }
    out.sort();
    out[(out.len() * 99 / 100).min(out.len() - 1)]
}

/// A `watch` connection that reads (and counts) every event line until it is shut down.
fn watcher(socket: &Path) -> (std::os::unix::net::UnixStream, std::thread::JoinHandle<u64>) {
    use std::io::{BufRead, BufReader, Write};
    let mut w = std::os::unix::net::UnixStream::connect(socket).unwrap();
    w.write_all(b"{\"op\":\"watch\",\"id\":1}\n").unwrap();
    let r = BufReader::new(w.try_clone().unwrap());
    let h = std::thread::spawn(move || {
        let mut lines = 0;
        for l in r.lines() {
            if l.is_err() {
                break;
            }
            lines += 1;
        }
        lines
    });
    (w, h)
}

fn get_with_watchers(dir: &Path, socket: &Path, n: usize) {
    if !have_tmux() {
        println!("tmux not installed: the get-with-watchers figures are skipped");
        return;
    }
    let sock = dir.join("tmux-get.sock");
    // 1 000 distinct connections, every one cached after its first get
    let keys: Vec<String> = (0..1000.min(n))
        .map(|j| format!("t{:02}/spotify/user{j:07}", j % 20))
        .collect();
    let per = 20_000;
    let (mut alone, mut attached, mut events) = (Vec::new(), Vec::new(), 0);
    for _ in 0..rounds() {
        alone.push(get_round(socket, &keys, per));
        let _ = start_tui(&sock, dir, n);
        let ws: Vec<_> = (0..10).map(|_| watcher(socket)).collect();
        std::thread::sleep(Duration::from_millis(200));
        attached.push(get_round(socket, &keys, per));
        // let the hand-out summary of the round reach the watchers before they go
        std::thread::sleep(Duration::from_millis(1500));
        for (w, h) in ws {
            let _ = w.shutdown(std::net::Shutdown::Both);
            events += h.join().unwrap();
        }
        let _ = tmux(&sock).args(["send-keys", "-t", "b", "q"]).status();
        std::thread::sleep(Duration::from_millis(300));
        let _ = tmux(&sock).arg("kill-server").status();
    }
    let (a, b) = (median(alone), median(attached));
    println!(
        "get p99, nothing attached: median {:.1} us; with the TUI and 10 watchers: median {:.1} us; ratio {:.2}x (goal <= 1.2x; {} rounds of {per} gets; the watchers read {events} lines)",
        a.as_secs_f64() * 1e6,
        b.as_secs_f64() * 1e6,
        b.as_secs_f64() / a.as_secs_f64(),
        rounds(),
    );
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("N: a number of connections"))
        .unwrap_or(100_000);
    assert!(
        bin().exists(),
        "build the binary first: cargo build --release --bin tokenvault"
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("pass"), PASS).unwrap();
    std::fs::create_dir_all(d.join("run")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.join("pass"), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(d.join("run"), std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let t0 = Instant::now();
    let vault = Vault::init(
        &d.join("vault.redb"),
        &Secret::new(PASS),
        KdfParams::new(19, 2, 1).unwrap(),
    )
    .unwrap();
    populate(&vault, n, chrono::Utc::now().timestamp());
    drop(vault);
    println!(
        "{n} connections written in {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    let mut serve = std::process::Command::new(bin());
    env(&mut serve, d);
    let mut daemon = serve
        .arg("serve")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(d.join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    let socket = d.join("run/tokenvault.sock");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let start = Instant::now();
    while rt
        .block_on(tokenvault::client::Client::connect(&socket))
        .ok()
        .flatten()
        .is_none()
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the daemon did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    rt.block_on(in_process(&socket, n));
    in_tmux(d, n);
    get_with_watchers(d, &socket, n);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = daemon.wait();
}
