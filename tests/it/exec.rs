//! `tokenvault exec --env VAR=CONNECTION -- CMD`: the variables hold
//! valid tokens (in-process and through the daemon, `--min-ttl` honoured), CMD's exit code
//! comes back (128+N for a signal), signals reach CMD, errors stop CMD from running, and no
//! token is on a command line or in a log.

use crate::support::fake_provider::{FakeProvider, cli_vault_with_spotify_client};
use crate::support::*;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn wait_for_file(p: &Path, child: &mut std::process::Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(s) = std::fs::read_to_string(p)
            && s.ends_with('\n')
        {
            return s;
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!("exited {st} before writing {}", p.display());
        }
        assert!(Instant::now() < deadline, "{} never appeared", p.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("exec did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn each_variable_holds_its_connections_token_in_process() {
    let tv = TestVault::new();
    two_tenants(&tv);
    tv.cmd()
        .args([
            "exec",
            "--env",
            "A_TOKEN=acme/spotify/alice",
            "--env",
            "B_TOKEN=globex/spotify/bob",
            "--",
            "sh",
            "-c",
            r#"test "$A_TOKEN" = AT-acme-alice && test "$B_TOKEN" = AT-globex-bob"#,
        ])
        .assert()
        .success();
    // the same check with a wrong expectation fails: the test can tell
    tv.cmd()
        .args([
            "exec",
            "--env",
            "A_TOKEN=acme/spotify/alice",
            "--",
            "sh",
            "-c",
            r#"test "$A_TOKEN" = AT-globex-bob"#,
        ])
        .assert()
        .code(1);
}

#[test]
fn through_the_daemon_without_a_passphrase_and_scoped_by_tenant_key() {
    let tv = TestVault::new();
    let key = two_tenants(&tv);
    let _d = Daemon::start(&tv, &[]);
    tv.daemon_cmd()
        .args([
            "exec",
            "--env",
            "T=acme/spotify/alice",
            "--",
            "sh",
            "-c",
            r#"test "$T" = AT-acme-alice"#,
        ])
        .assert()
        .success();
    // a tenant key reaches its own tenant only: globex is forbidden (5) and CMD never runs
    let marker = tv.dir.path().join("ran");
    tv.daemon_cmd()
        .env("TOKENVAULT_TENANT_KEY", &key)
        .args(["exec", "--env", "T=globex/spotify/bob", "--", "touch"])
        .arg(&marker)
        .assert()
        .code(5);
    assert!(!marker.exists());
    tv.daemon_cmd()
        .env("TOKENVAULT_TENANT_KEY", &key)
        .args([
            "exec",
            "--env",
            "T=acme/spotify/alice",
            "--",
            "sh",
            "-c",
            r#"test "$T" = AT-acme-alice"#,
        ])
        .assert()
        .success();
}

#[test]
fn min_ttl_refreshes_a_token_that_would_expire_too_soon() {
    let fp = FakeProvider::start_background();
    let tv = cli_vault_with_spotify_client(&fp, &[]);
    let mut tok = fp.new_family();
    tok["expires_in"] = 600.into();
    tv.cmd()
        .args(["put", "acme/spotify/alice"])
        .write_stdin(tok.to_string())
        .assert()
        .success();
    let old = tok["access_token"].as_str().unwrap().to_owned();
    // 10 minutes left is enough for the default min-ttl: the stored token, no provider call
    tv.cmd()
        .args(["exec", "--env", "T=acme/spotify/alice", "--", "sh", "-c"])
        .arg(format!(r#"test "$T" = {old}"#))
        .assert()
        .success();
    assert_eq!(fp.requests(), 0);
    // asking for an hour refreshes first
    tv.cmd()
        .args([
            "exec",
            "--min-ttl",
            "3600",
            "--env",
            "T=acme/spotify/alice",
            "--",
            "sh",
            "-c",
        ])
        .arg(format!(r#"test -n "$T" && test "$T" != {old}"#))
        .assert()
        .success();
    assert_eq!(fp.requests(), 1);
}

#[test]
fn the_commands_exit_code_comes_back_and_a_signal_death_is_128_plus_n() {
    let tv = TestVault::new();
    two_tenants(&tv);
    let run = |script: &str| {
        tv.cmd()
            .args([
                "exec",
                "--env",
                "T=acme/spotify/alice",
                "--",
                "sh",
                "-c",
                script,
            ])
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(run("exit 0"), Some(0));
    assert_eq!(run("exit 7"), Some(7));
    assert_eq!(run("exit 200"), Some(200));
    assert_eq!(run("kill -KILL $$"), Some(128 + 9));
    assert_eq!(run("kill -TERM $$"), Some(128 + 15));
    // a command that does not exist: the shell's 127, and a message
    let out = tv
        .cmd()
        .args([
            "exec",
            "--env",
            "T=acme/spotify/alice",
            "--",
            "/no/such/program",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(
        stderr(&out).contains("cannot run the command"),
        "{}",
        stderr(&out)
    );
}

/// SIGINT, SIGTERM and SIGHUP sent to `tokenvault exec` reach CMD, which traps them.
#[test]
fn signals_are_passed_on_to_the_command() {
    let tv = TestVault::new();
    two_tenants(&tv);
    for (sig, name) in [
        (nix::sys::signal::Signal::SIGTERM, "TERM"),
        (nix::sys::signal::Signal::SIGINT, "INT"),
        (nix::sys::signal::Signal::SIGHUP, "HUP"),
    ] {
        let ready = tv.dir.path().join(format!("ready-{name}"));
        let got = tv.dir.path().join(format!("got-{name}"));
        let script = format!(
            r#"trap 'echo {name} > "{got}"; exit 42' {name}; echo up > "{ready}"; while :; do sleep 0.05; done"#,
            got = got.display(),
            ready = ready.display()
        );
        let mut child = tv
            .std_cmd()
            .args([
                "exec",
                "--env",
                "T=acme/spotify/alice",
                "--",
                "sh",
                "-c",
                &script,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // its own process group: no terminal of the test run may deliver signals to it
            .process_group(0)
            .spawn()
            .unwrap();
        wait_for_file(&ready, &mut child);
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
        let status = wait_exit(&mut child);
        assert_eq!(
            std::fs::read_to_string(&got).ok().as_deref(),
            Some(format!("{name}\n").as_str()),
            "SIG{name} did not reach the command's trap"
        );
        assert_eq!(status.code(), Some(42), "{name}: {status}");
    }
}

/// The token is in CMD's environment, and nowhere on a command line (`ps` shows those to
/// every user) nor in the log, even at -vvv, in-process and through the daemon.
#[test]
fn the_token_is_not_on_any_command_line_nor_in_logs() {
    let fp = FakeProvider::start_background();
    let tv = cli_vault_with_spotify_client(&fp, &[]);
    // every token the provider issues is distinctive and short-lived, so each exec below
    // (min-ttl 60) refreshes, in-process and then in the daemon
    fp.with(|i| {
        i.token_prefix = "SECRET-TOKEN-7d1e-".into();
        i.expires_in = 20;
    });
    let mut tok = fp.new_family();
    tok["expires_in"] = 20.into(); // under the min-ttl: exec refreshes, so the provider path logs too
    tv.cmd()
        .args(["put", "acme/spotify/alice"])
        .write_stdin(tok.to_string())
        .assert()
        .success();
    let check = |through_daemon: bool| {
        let pidfile = tv.dir.path().join(format!("child-{through_daemon}"));
        let go = tv.dir.path().join(format!("go-{through_daemon}"));
        let script = format!(
            r#"echo $$ > "{p}"; while [ ! -e "{g}" ]; do sleep 0.05; done"#,
            p = pidfile.display(),
            g = go.display()
        );
        let log = tv.dir.path().join(format!("exec-{through_daemon}.log"));
        let mut c = tv.std_cmd();
        if through_daemon {
            c.env_remove("TOKENVAULT_PASSPHRASE_FILE");
        }
        let mut child = c
            .args([
                "-vvv",
                "exec",
                "--min-ttl",
                "60",
                "--env",
                "T=acme/spotify/alice",
            ])
            .args(["--", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let pid: u32 = wait_for_file(&pidfile, &mut child).trim().parse().unwrap();
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        assert!(
            String::from_utf8_lossy(&environ).contains("T=SECRET-TOKEN-7d1e-"),
            "the command's environment lacks the token: is {pid} the command?"
        );
        for p in [pid, child.id()] {
            let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).unwrap();
            assert!(
                !String::from_utf8_lossy(&cmdline).contains("SECRET-TOKEN"),
                "a token on the command line of {p}"
            );
        }
        std::fs::write(&go, b"").unwrap();
        assert!(wait_exit(&mut child).success());
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            !text.is_empty() || through_daemon,
            "-vvv logged nothing at all?"
        );
        assert!(
            !text.contains("SECRET-TOKEN"),
            "a token in the log:\n{text}"
        );
    };
    check(false);
    let before = fp.requests();
    let d = Daemon::start(&tv, &["-vvv"]);
    check(true);
    let dlog = d.log();
    assert!(!dlog.is_empty());
    assert!(
        !dlog.contains("SECRET-TOKEN"),
        "a token in the daemon's log:\n{dlog}"
    );
    assert!(before >= 1 && fp.requests() > before, "no refresh happened");
}

/// A bad variable name, a missing command, an unknown connection: refused with the right
/// exit code before the command could run.
#[test]
fn errors_come_before_the_command_runs() {
    let tv = TestVault::new();
    two_tenants(&tv);
    let marker = tv.dir.path().join("ran");
    let try_exec = |env: &str, expect: i32| {
        let out = tv
            .cmd()
            .args(["exec", "--env", env, "--", "touch"])
            .arg(&marker)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(expect), "{env}: {}", stderr(&out));
        assert!(!marker.exists(), "{env}: the command ran");
        stderr(&out)
    };
    let err = try_exec("9BAD=acme/spotify/alice", 2);
    assert!(err.contains("variable name"), "{err}");
    let err = try_exec("NO-EQUALS-SIGN", 2);
    assert!(err.contains("VAR=CONNECTION"), "{err}");
    assert!(
        !err.contains("NO-EQUALS-SIGN"),
        "the value was quoted back: {err}"
    );
    let err = try_exec("T=acme/spotify/nobody", 4);
    assert!(err.contains("not found"), "{err}");
    // no command at all
    let out = tv
        .cmd()
        .args(["exec", "--env", "T=acme/spotify/alice"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no command given"),
        "{}",
        stderr(&out)
    );
    // a command without `--` is a usage error too (clap's, suggesting `--`)
    tv.cmd()
        .args(["exec", "--env", "T=acme/spotify/alice", "true"])
        .assert()
        .code(2);
}

/// The command gets tokens, not the key to every token.
#[test]
fn the_vault_passphrase_is_not_passed_to_the_command() {
    let tv = TestVault::new();
    two_tenants(&tv);
    tv.cmd()
        .env_remove("TOKENVAULT_PASSPHRASE_FILE")
        .env("TOKENVAULT_PASSPHRASE", PASSPHRASE)
        .args([
            "exec",
            "--env",
            "T=acme/spotify/alice",
            "--",
            "sh",
            "-c",
            r#"test -z "$TOKENVAULT_PASSPHRASE" && test "$T" = AT-acme-alice"#,
        ])
        .assert()
        .success();
}

/// The vault is closed before the command starts: the command can use tokenvault itself.
#[test]
fn the_command_can_run_tokenvault_itself() {
    let tv = TestVault::new();
    two_tenants(&tv);
    tv.cmd()
        .args([
            "exec",
            "--env",
            "T=acme/spotify/alice",
            "--",
            BIN,
            "get",
            "globex/spotify/bob",
        ])
        .assert()
        .success()
        .stdout("AT-globex-bob\n");
}
