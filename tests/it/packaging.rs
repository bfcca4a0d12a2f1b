//! Packaging: `scripts/install` into a temporary DESTDIR puts the
//! binary, the generated man pages, the unit (with the PREFIX's paths) and every document
//! the unit's `Documentation=` names in place; the unit's `systemd-analyze security`
//! exposure is at most 2.0; the Dockerfile's promises hold; `scripts/docker-smoke` skips
//! cleanly where docker does not answer.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn install(destdir: &Path, prefix: &str) -> std::process::Output {
    let out = Command::new("bash")
        .arg(repo().join("scripts/install"))
        .env("DESTDIR", destdir)
        .env("PREFIX", prefix)
        .env("TOKENVAULT_BIN", BIN)
        .output()
        .unwrap();
    assert!(out.status.success(), "install failed: {}", stderr(&out));
    out
}

fn unit_field<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .collect()
}

#[test]
fn install_into_a_destdir_places_everything_the_unit_names() {
    for prefix in ["/usr/local", "/usr"] {
        let dest = tempfile::tempdir().unwrap();
        let d = dest.path();
        install(d, prefix);
        let root = |p: &str| d.join(p.trim_start_matches('/'));

        // the binary runs
        let bin = root(&format!("{prefix}/bin/tokenvault"));
        let v = Command::new(&bin).arg("--version").output().unwrap();
        assert!(v.status.success());
        assert!(stdout(&v).starts_with("tokenvault "), "{}", stdout(&v));

        // man pages generated from the CLI, one per command
        let man1 = root(&format!("{prefix}/share/man/man1"));
        for page in [
            "tokenvault.1",
            "tokenvault-serve.1",
            "tokenvault-exec.1",
            "tokenvault-backup-restore.1",
        ] {
            let text =
                std::fs::read_to_string(man1.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
            assert!(text.contains(".TH tokenvault"), "{page} is not a man page");
        }
        let serve = std::fs::read_to_string(man1.join("tokenvault-serve.1")).unwrap();
        assert!(
            serve.contains("metrics\\-listen"),
            "the serve page lacks its options"
        );
        assert!(
            serve.contains("Examples"),
            "the serve page lacks its examples"
        );

        // the unit, rewritten for this prefix
        let unit_path = root(&format!("{prefix}/lib/systemd/system/tokenvault.service"));
        let unit = std::fs::read_to_string(&unit_path).unwrap();
        assert_eq!(
            unit_field(&unit, "ExecStart"),
            [format!("{prefix}/bin/tokenvault serve").as_str()]
        );
        // every Documentation= target exists in the staged tree
        let docs: Vec<&str> = unit_field(&unit, "Documentation")
            .into_iter()
            .flat_map(|l| l.split_whitespace())
            .collect();
        assert!(docs.len() >= 2, "{docs:?}");
        for doc in docs {
            let path = if let Some(p) = doc.strip_prefix("file://") {
                root(p)
            } else if let Some(m) = doc.strip_prefix("man:") {
                let (name, section) = m.trim_end_matches(')').split_once('(').unwrap();
                root(&format!("{prefix}/share/man/man{section}/{name}.{section}"))
            } else {
                panic!("unknown Documentation= kind: {doc}");
            };
            assert!(
                path.is_file(),
                "{doc} names {} which was not installed",
                path.display()
            );
        }
        // nothing outside DESTDIR/PREFIX
        for e in walk(d) {
            assert!(
                e.starts_with(root(prefix)),
                "{} is outside the prefix",
                e.display()
            );
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The hardened unit rates 2.0 or lower. Needs `systemd-analyze` (Debian's `systemd`
/// package); skipped where it is missing or too old for `--offline`.
#[test]
fn the_unit_is_hardened_to_an_exposure_of_at_most_2() {
    let unit = repo().join("contrib/tokenvault.service");
    let out = match Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(&unit)
        .output()
    {
        Ok(o) => o,
        Err(_) => {
            eprintln!("skipped: systemd-analyze is not installed");
            return;
        }
    };
    let text = format!("{}{}", stdout(&out), stderr(&out));
    let Some(level) = text.lines().find_map(|l| {
        l.split("Overall exposure level for tokenvault.service: ")
            .nth(1)
    }) else {
        eprintln!("skipped: this systemd-analyze cannot rate a unit offline:\n{text}");
        return;
    };
    let figure: f64 = level.split_whitespace().next().unwrap().parse().unwrap();
    assert!(figure <= 2.0, "exposure {figure} > 2.0:\n{text}");
    let unit_text = std::fs::read_to_string(&unit).unwrap();
    for must in [
        "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service",
        "ProtectProc=invisible",
        "LimitCORE=0",
        "RuntimeDirectory=tokenvault",
        "StateDirectory=tokenvault",
        "WatchdogSec=",
    ] {
        assert!(unit_text.contains(must), "{must} missing from the unit");
    }
}

/// The systemd watchdog is fed: with WATCHDOG_USEC set, `serve` sends WATCHDOG=1 to
/// NOTIFY_SOCKET (after READY=1), as the unit's WatchdogSec= expects.
#[test]
fn serve_pings_the_systemd_watchdog() {
    let tv = TestVault::new();
    let notify = tv.dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut child = tv
        .std_cmd()
        .arg("serve")
        .env("NOTIFY_SOCKET", &notify)
        .env("WATCHDOG_USEC", "400000") // a ping every 200 ms
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    while !seen.iter().any(|m: &String| m == "WATCHDOG=1") {
        match sock.recv(&mut buf) {
            Ok(n) => seen.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) => {
                let _ = child.kill();
                panic!("no WATCHDOG=1 within 20 s ({e}); got {seen:?}");
            }
        }
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    assert!(seen[0].starts_with("READY=1"), "{seen:?}");
}

#[test]
fn the_dockerfile_is_multi_stage_non_root_with_volumes_and_a_secret_file() {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let froms = text.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(froms >= 2, "not multi-stage");
    let user = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("no USER: the image would run as root");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "{user}"
    );
    let volume = text
        .lines()
        .find(|l| l.starts_with("VOLUME"))
        .expect("no VOLUME");
    assert!(volume.contains("/var/lib/tokenvault") && volume.contains("/run/tokenvault"));
    assert!(text.contains("TOKENVAULT_PASSPHRASE_FILE=/run/secrets/"));
    assert!(
        !text.contains("TOKENVAULT_PASSPHRASE="),
        "a passphrase in the environment"
    );
}

/// Where the docker client exists but its daemon does not answer (or there is no docker),
/// the smoke test says it skipped and exits 0 without building anything.
#[test]
fn docker_smoke_skips_cleanly_without_a_docker_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("docker");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg(repo().join("scripts/docker-smoke"))
        .env("PATH", path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("skipped"), "{}", stdout(&out));
}
