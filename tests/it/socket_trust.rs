//! Whom the socket's two ends trust (SPEC §6): the CLI sends nothing to
//! a daemon of another uid unless the operator named it, and `serve` refuses a socket
//! directory, lock file or socket someone else could control.
//!
//! Each test makes its own runtime directory inside its temp dir (`XDG_RUNTIME_DIR`), so
//! the real `/tmp/tokenvault-$UID` of other tests and users is never touched; the
//! fallback's name is unit-tested in `paths`.

use crate::support::other_uid::{self, NOBODY, chmod, chown};
use crate::support::*;
use serde_json::{Value, json};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The binary with no `--socket`: the socket is the default one under `xdg`.
fn default_socket_cmd(tv: &TestVault, xdg: &Path) -> assert_cmd::Command {
    let mut c = tv.std_cmd();
    c.env_remove("TOKENVAULT_SOCKET")
        .env("XDG_RUNTIME_DIR", xdg);
    let mut c = assert_cmd::Command::from_std(c);
    c.timeout(Duration::from_secs(60));
    c
}

fn stderr_of(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The issue's attack: `nobody` made the runtime directory first and listens where the
/// daemon's socket should be, answering "ok" to everything. The CLI must refuse (exit 5,
/// naming the uid), send it nothing — not the client secret, not the refresh token, not
/// the PEM — and not do the work on the file instead.
#[test]
fn a_daemon_of_another_uid_receives_nothing_and_the_cli_does_not_fall_back() {
    if !other_uid::can_switch_uid() {
        return;
    }
    let tv = TestVault::new();
    two_tenants(&tv);
    chmod(tv.dir.path(), 0o711);
    let xdg = tv.dir.path().join("xdg-run");
    std::fs::create_dir(&xdg).unwrap();
    chmod(&xdg, 0o711);
    // what the attacker pre-creates
    let trap_dir = xdg.join("tokenvault");
    std::fs::create_dir(&trap_dir).unwrap();
    chown(&trap_dir, NOBODY);
    chmod(&trap_dir, 0o755);
    let socket = trap_dir.join("tokenvault.sock");
    let fake = other_uid::fake_daemon(NOBODY, tv.dir.path(), &socket);

    let secret = tv.file("cs", b"CS-must-not-leave-zz9");
    let p8 = apple::fixture(&format!("AuthKey_{}.p8", apple::KEY1));
    let refusals: Vec<(&str, assert_cmd::assert::Assert)> = vec![
        (
            "client set",
            default_socket_cmd(&tv, &xdg)
                .args(["client", "set", "acme", "spotify", "--client-id", "cid"])
                .arg("--client-secret-file")
                .arg(&secret)
                .assert(),
        ),
        (
            "put",
            default_socket_cmd(&tv, &xdg)
                .args(["put", "acme/spotify/carol"])
                .write_stdin(
                    r#"{"access_token":"AT-zz9","refresh_token":"RT-must-not-leave-zz9","expires_in":3600}"#,
                )
                .assert(),
        ),
        (
            "apple key add",
            default_socket_cmd(&tv, &xdg)
                .args(["apple", "key", "add", "acme", "--team-id", apple::TEAM])
                .args(["--key-id", apple::KEY1, "--p8"])
                .arg(&p8)
                .assert(),
        ),
        (
            "get",
            default_socket_cmd(&tv, &xdg)
                .args(["get", "acme/spotify/alice"])
                .assert(),
        ),
    ];
    for (what, a) in &refusals {
        let out = a.get_output();
        let err = stderr_of(a);
        assert_eq!(out.status.code(), Some(5), "{what}: {err}");
        assert!(err.contains("uid 65534"), "{what}: {err}");
        assert!(err.contains("nothing was sent"), "{what}: {err}");
        assert!(err.contains("trusted_daemon_uids"), "{what}: {err}");
        assert!(out.stdout.is_empty(), "{what} printed {:?}", out.stdout);
    }

    // The recorder works (a canary sent now arrives) and it is all it ever received.
    let mut canary = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    canary.write_all(b"canary\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !fake.recorded().ends_with(b"canary\n") {
        assert!(Instant::now() < deadline, "the fake daemon records nothing");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        String::from_utf8_lossy(&fake.recorded()),
        "canary\n",
        "the CLI sent bytes to a daemon of another uid"
    );
    drop(canary);
    drop(fake);

    // Nothing was done on the file instead (no daemon answers now: the CLI opens it).
    let out = default_socket_cmd(&tv, &xdg)
        .args(["client", "list", "acme", "--json"])
        .assert()
        .success();
    let clients: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(clients, json!([]), "{clients}");
    default_socket_cmd(&tv, &xdg)
        .args(["show", "acme/spotify/carol"])
        .assert()
        .code(4);
    let out = default_socket_cmd(&tv, &xdg)
        .args(["apple", "key", "list", "acme", "--json"])
        .assert()
        .success();
    let keys: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(keys, json!([]), "{keys}");
}

/// A real daemon run by another uid: refused by default, used once its uid is listed in
/// `[client] trusted_daemon_uids`.
#[test]
fn a_daemon_uid_named_in_the_config_is_trusted() {
    if !other_uid::can_switch_uid() {
        return;
    }
    let tv = TestVault::new();
    two_tenants(&tv);
    chmod(tv.dir.path(), 0o711);
    // the vault, its passphrase and the socket directory belong to the daemon's uid
    let data = tv.path.parent().unwrap().to_path_buf();
    chown(&data, NOBODY);
    for e in std::fs::read_dir(&data).unwrap() {
        chown(&e.unwrap().path(), NOBODY);
    }
    chown(&tv.pass_file, NOBODY);
    let run = tv.socket().parent().unwrap().to_path_buf();
    std::fs::create_dir(&run).unwrap();
    chmod(&run, 0o700);
    chown(&run, NOBODY);
    let mut serve = tv.std_cmd();
    serve
        .env("HOME", "/nonexistent")
        .arg("serve")
        .uid(NOBODY)
        .gid(NOBODY);
    let log = tv.dir.path().join("serve-nobody.log");
    let d = Daemon::try_spawn(serve, tv.socket(), log)
        .unwrap_or_else(|log| panic!("the daemon did not start as nobody:\n{log}"));
    assert_eq!(
        std::fs::symlink_metadata(&d.socket).unwrap().uid(),
        NOBODY,
        "the daemon runs as nobody"
    );

    let out = tv.daemon_cmd().args(["list", "--json"]).assert().code(5);
    assert!(stderr_of(&out).contains("uid 65534"), "{}", stderr_of(&out));

    tv.write_config(&format!("[client]\ntrusted_daemon_uids = [{NOBODY}]\n"));
    // no passphrase: this can only have been answered by the daemon
    let out = tv.daemon_cmd().args(["list", "--json"]).assert().success();
    let list: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    tv.daemon_cmd()
        .args(["get", "acme/spotify/alice"])
        .assert()
        .success()
        .stdout("AT-acme-alice\n");
    drop(d);
}

/// The default runtime directory must be the daemon's own, a real directory, 0700:
/// anything else is refused (exit 1, the problem and the fix named) and left as it was.
#[test]
fn serve_refuses_a_runtime_dir_it_cannot_trust() {
    let root_only = other_uid::can_switch_uid();
    let tv = TestVault::new();
    two_tenants(&tv);
    let case = |name: &str| -> (PathBuf, PathBuf) {
        let xdg = tv.dir.path().join(format!("xdg-{name}"));
        std::fs::create_dir(&xdg).unwrap();
        chmod(&xdg, 0o700);
        let dir = xdg.join("tokenvault");
        (xdg, dir)
    };
    let refused = |xdg: &Path, says: &[&str]| {
        let a = default_socket_cmd(&tv, xdg).arg("serve").assert().code(1);
        let err = stderr_of(&a);
        for s in says {
            assert!(err.contains(s), "wanted {s:?} in: {err}");
        }
        assert!(
            err.contains("XDG_RUNTIME_DIR") && err.contains("--socket"),
            "no fix in: {err}"
        );
    };

    for m in [0o755, 0o777, 0o750, 0o1777] {
        let (xdg, dir) = case(&format!("{m:o}"));
        std::fs::create_dir(&dir).unwrap();
        chmod(&dir, m);
        refused(
            &xdg,
            &["unsafe socket directory", &format!("{m:04o}"), "chmod 700"],
        );
        assert_eq!(mode(&dir), m, "the directory was changed");
        assert!(names_in(&dir).is_empty(), "{:?}", names_in(&dir));
    }

    let (xdg, dir) = case("link");
    let target = tv.dir.path().join("elsewhere");
    std::fs::create_dir(&target).unwrap();
    chmod(&target, 0o700);
    std::os::unix::fs::symlink(&target, &dir).unwrap();
    refused(&xdg, &["symbolic link"]);
    assert!(names_in(&target).is_empty(), "{:?}", names_in(&target));

    let (xdg, dir) = case("file");
    std::fs::write(&dir, b"not a dir").unwrap();
    refused(&xdg, &["not a directory"]);

    if root_only {
        let (xdg, dir) = case("foreign");
        std::fs::create_dir(&dir).unwrap();
        chmod(&dir, 0o700);
        chown(&dir, NOBODY);
        refused(&xdg, &["uid 65534", "remove it"]);
        assert!(names_in(&dir).is_empty(), "{:?}", names_in(&dir));
    }

    // control: the same path, absent, is created 0700 and served
    let (xdg, dir) = case("fresh");
    let mut serve = tv.std_cmd();
    serve
        .env_remove("TOKENVAULT_SOCKET")
        .env("XDG_RUNTIME_DIR", &xdg)
        .arg("serve");
    let d = Daemon::try_spawn(
        serve,
        dir.join("tokenvault.sock"),
        tv.dir.path().join("serve-fresh.log"),
    )
    .unwrap_or_else(|log| panic!("{log}"));
    assert_eq!(mode(&dir), 0o700);
    drop(d);
    // and a later start accepts the directory it made (and a leftover search bit)
    chmod(&dir, 0o711);
    let mut serve = tv.std_cmd();
    serve
        .env_remove("TOKENVAULT_SOCKET")
        .env("XDG_RUNTIME_DIR", &xdg)
        .arg("serve");
    let d = Daemon::try_spawn(
        serve,
        dir.join("tokenvault.sock"),
        tv.dir.path().join("serve-again.log"),
    )
    .unwrap_or_else(|log| panic!("{log}"));
    assert_eq!(mode(&dir), 0o700);
    drop(d);
}

/// `--socket` in a directory the operator chose: it may be shared (e.g. root's, or a
/// sticky drop directory), but not owned by another user or writable by others without
/// the sticky bit; it is left as the operator made it.
#[test]
fn an_explicit_socket_dir_must_be_ours_or_roots_and_closed_to_writers() {
    let tv = TestVault::new();
    two_tenants(&tv);
    let serve_at = |dir: &Path| {
        let mut c = tv.std_cmd();
        c.env("TOKENVAULT_SOCKET", dir.join("tv.sock")).arg("serve");
        c
    };
    let mk = |name: &str, m: u32| {
        let d = tv.dir.path().join(name);
        std::fs::create_dir(&d).unwrap();
        chmod(&d, m);
        d
    };
    let refused = |dir: &Path, says: &str| {
        let mut c = assert_cmd::Command::from_std(serve_at(dir));
        let a = c.timeout(Duration::from_secs(60)).assert().code(1);
        assert!(stderr_of(&a).contains(says), "{says:?}: {}", stderr_of(&a));
        assert!(names_in(dir).is_empty(), "{:?}", names_in(dir));
    };

    refused(&mk("open", 0o777), "sticky");
    refused(&mk("group-writable", 0o770), "sticky");
    let link = tv.dir.path().join("link");
    std::os::unix::fs::symlink(mk("real", 0o700), &link).unwrap();
    refused(&link, "symbolic link");
    assert!(names_in(&tv.dir.path().join("real")).is_empty());
    // a writable parent is as bad as a writable directory
    let wide = mk("wide", 0o777);
    let inner = wide.join("inner");
    std::fs::create_dir(&inner).unwrap();
    chmod(&inner, 0o700);
    refused(&inner, "parent of the socket directory");
    if other_uid::can_switch_uid() {
        let foreign = mk("foreign", 0o755);
        chown(&foreign, NOBODY);
        refused(&foreign, "uid 65534");
    }

    // accepted, and left as they were: a sticky drop directory and a readable one
    for (name, m) in [("sticky", 0o1777), ("readable", 0o755)] {
        let dir = mk(name, m);
        let d = Daemon::try_spawn(
            serve_at(&dir),
            dir.join("tv.sock"),
            tv.dir.path().join(format!("serve-{name}.log")),
        )
        .unwrap_or_else(|log| panic!("{name}: {log}"));
        assert_eq!(mode(&dir), m, "{name}");
        assert_eq!(mode(&dir.join("tv.sock")), 0o600, "{name}");
        drop(d);
    }
}

/// The lock file is opened without following links: a link there is refused and its
/// target neither created nor changed. A socket of another uid is not removed.
#[test]
fn serve_refuses_a_symlinked_lock_file_and_a_foreign_socket() {
    let tv = TestVault::new();
    two_tenants(&tv);
    let run = tv.socket().parent().unwrap().to_path_buf();
    std::fs::create_dir(&run).unwrap();
    chmod(&run, 0o700);
    let lock = PathBuf::from(format!("{}.lock", tv.socket().display()));
    let serve = || {
        let mut c = assert_cmd::Command::from_std(tv.std_cmd());
        c.arg("serve").timeout(Duration::from_secs(60));
        c
    };

    // a link to a file that does not exist yet: not created
    let absent = tv.dir.path().join("would-be-created");
    std::os::unix::fs::symlink(&absent, &lock).unwrap();
    let a = serve().assert().code(1);
    assert!(
        stderr_of(&a).contains("unsafe lock file"),
        "{}",
        stderr_of(&a)
    );
    assert!(stderr_of(&a).contains("symbolic link"), "{}", stderr_of(&a));
    assert!(!absent.exists());
    assert!(!tv.socket().exists());

    // a link to an existing file: not changed in any way
    let precious = tv.dir.path().join("precious");
    std::fs::write(&precious, b"root's file").unwrap();
    chmod(&precious, 0o644);
    let before = std::fs::metadata(&precious).unwrap();
    std::fs::remove_file(&lock).unwrap();
    std::os::unix::fs::symlink(&precious, &lock).unwrap();
    serve().assert().code(1);
    let after = std::fs::metadata(&precious).unwrap();
    assert_eq!(std::fs::read(&precious).unwrap(), b"root's file");
    assert_eq!(after.mode(), before.mode());
    assert_eq!(after.mtime_nsec(), before.mtime_nsec());
    assert_eq!(after.mtime(), before.mtime());

    // a hard link to another file is refused too
    std::fs::remove_file(&lock).unwrap();
    std::fs::hard_link(&precious, &lock).unwrap();
    let a = serve().assert().code(1);
    assert!(stderr_of(&a).contains("hard links"), "{}", stderr_of(&a));
    std::fs::remove_file(&lock).unwrap();

    if other_uid::can_switch_uid() {
        // a socket someone else left (or planted) at the socket path stays
        drop(std::os::unix::net::UnixListener::bind(tv.socket()).unwrap());
        std::os::unix::fs::lchown(tv.socket(), Some(NOBODY), Some(NOBODY)).unwrap();
        let a = serve().assert().code(1);
        assert!(
            stderr_of(&a).contains("a socket of uid 65534"),
            "{}",
            stderr_of(&a)
        );
        assert_eq!(
            std::fs::symlink_metadata(tv.socket()).unwrap().uid(),
            NOBODY
        );
        std::fs::remove_file(tv.socket()).unwrap();
    }

    // control: with the way clear, the daemon starts
    let d = Daemon::start(&tv, &[]);
    assert_eq!(d.conn().code(json!({"op":"hello"})), "ok");
    let m = std::fs::symlink_metadata(&lock).unwrap();
    assert!(m.file_type().is_file());
    assert_eq!(m.mode() & 0o777, 0o600);
}
