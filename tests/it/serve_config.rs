//! The daemon's configuration is checked where it is given: `serve`
//! refuses to start (exit 6, nothing listening) with a `--config` file that does not
//! exist, a webhook without `secret_file`, or a `[backup]` without recipients; on SIGHUP
//! the same faults leave the running configuration in place, and the log says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::*;
use nix::sys::signal::Signal;
use serde_json::json;
use std::time::{Duration, Instant};

/// Runs `serve` expecting it to refuse: its exit code and stderr. Kills it (and fails)
/// if it starts serving instead.
fn serve_refuses(tv: &TestVault, args: &[&str], env: &[(&str, &std::path::Path)]) -> (i32, String) {
    let log = tv.dir.path().join("refused.log");
    let mut cmd = tv.std_cmd();
    cmd.arg("serve")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "serve started instead of refusing: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !tv.socket().exists(),
        "a refused start left a socket behind: {text}"
    );
    (status.code().unwrap_or(-1), text)
}

#[test]
fn serve_refuses_a_missing_config_file_a_webhook_without_secret_and_a_backup_without_recipients() {
    let tv = TestVault::new();
    let missing = tv.dir.path().join("etc/tokenvault/config.tmol");
    let missing_s = missing.to_str().unwrap();

    let (code, err) = serve_refuses(&tv, &["--config", missing_s], &[]);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("config.tmol does not exist"), "{err}");
    assert!(err.contains("--config"), "{err}");
    // the environment variable names the file just as explicitly
    let (code, err) = serve_refuses(&tv, &[], &[("TOKENVAULT_CONFIG", &missing)]);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("does not exist"), "{err}");

    let hook = tv.file(
        "hook.toml",
        b"[[webhooks]]\nurl = \"https://hooks.example/tv\"\nretry_base_ms = 100\n",
    );
    let (code, err) = serve_refuses(&tv, &["--config", hook.to_str().unwrap()], &[]);
    assert_eq!(code, 6, "{err}");
    assert!(
        err.contains("[[webhooks]] entry 1 has no secret_file: add secret_file"),
        "{err}"
    );

    let hook2 = tv.file(
        "hook2.toml",
        b"[[webhooks]]\nurl = \"https://hooks.example/tv\"\nsecret_file = \"/nonexistent/hook.key\"\n",
    );
    let (code, err) = serve_refuses(&tv, &["--config", hook2.to_str().unwrap()], &[]);
    assert_eq!(code, 6, "{err}");
    assert!(
        err.contains("cannot read its secret_file /nonexistent/hook.key"),
        "{err}"
    );

    // the default config path is checked the same way (it only may be absent)
    let backups = tv.dir.path().join("backups");
    tv.write_config(&format!(
        "[backup]\ndirectory = {:?}\ninterval_secs = 3600\n",
        backups.display().to_string()
    ));
    let (code, err) = serve_refuses(&tv, &[], &[]);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("[backup] has no recipients"), "{err}");
    assert!(err.contains("age-keygen"), "{err}");
    assert!(
        !backups.exists(),
        "a refused start created the backup directory"
    );

    tv.write_config(&format!(
        "[backup]\ndirectory = {:?}\nrecipients = [\"age1-not-a-RECIPIENT-4c1d\"]\n",
        backups.display().to_string()
    ));
    let (code, err) = serve_refuses(&tv, &[], &[]);
    assert_eq!(code, 6, "{err}");
    assert!(
        err.contains("recipients entry 1 is not an age recipient"),
        "{err}"
    );
    assert!(!err.contains("RECIPIENT-4c1d"), "quoted back: {err}");

    // and with the faults fixed it starts
    std::fs::remove_file(tv.config_path()).unwrap();
    let mut d = Daemon::start(&tv, &[]);
    assert!(d.stop().0.success());
}

/// Waits until `needle` occurs `n` times in the daemon's log.
fn wait_for_log(d: &Daemon, needle: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while d.log().matches(needle).count() < n {
        assert!(
            Instant::now() < deadline,
            "no {n}× {needle:?} in:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn provider_names(c: &mut Conn) -> Vec<String> {
    let v = c.call(json!({"op":"provider_list"}));
    v["providers"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_bad_reload_keeps_the_running_configuration_and_says_so() {
    let tv = TestVault::new();
    let cfg = tv.dir.path().join("daemon.toml");
    let good = "[providers.corpauth]\ntoken_url = \"https://auth.corp.example/token\"\n";
    std::fs::write(&cfg, good).unwrap();
    let d = Daemon::start(&tv, &["-v", "--config", cfg.to_str().unwrap()]);
    let mut c = d.conn();
    assert!(provider_names(&mut c).contains(&"corpauth".to_owned()));

    let not_reloaded = "configuration NOT reloaded";
    let bad = [
        // each also declares a new provider, which must not appear
        format!(
            "{good}[providers.newco]\ntoken_url = \"https://newco.example/t\"\n[[webhooks]]\nurl = \"https://hooks.example/x\"\n"
        ),
        format!(
            "{good}[providers.newco]\ntoken_url = \"https://newco.example/t\"\n[backup]\ndirectory = \"/var/backups/tv\"\n"
        ),
        format!("{good}[providers.newco]\ntokn_url = \"https://newco.example/t\"\n"),
    ];
    for (i, text) in bad.iter().enumerate() {
        std::fs::write(&cfg, text).unwrap();
        d.signal(Signal::SIGHUP);
        wait_for_log(&d, not_reloaded, i + 1);
        let names = provider_names(&mut c);
        assert!(names.contains(&"corpauth".to_owned()), "{names:?}");
        assert!(!names.contains(&"newco".to_owned()), "{i}: {names:?}");
    }
    let log = d.log();
    assert!(log.contains("has no secret_file"), "{log}");
    assert!(log.contains("[backup] has no recipients"), "{log}");
    assert!(
        log.contains("keeping the previous one: the daemon runs on it"),
        "{log}"
    );

    // the named file gone: also kept
    std::fs::remove_file(&cfg).unwrap();
    d.signal(Signal::SIGHUP);
    wait_for_log(&d, not_reloaded, bad.len() + 1);
    assert!(d.log().contains("does not exist"), "{}", d.log());
    assert!(provider_names(&mut c).contains(&"corpauth".to_owned()));

    // a good file is taken at the next SIGHUP, and the daemon served throughout
    std::fs::write(
        &cfg,
        "[providers.newco]\ntoken_url = \"https://newco.example/t\"\n",
    )
    .unwrap();
    d.signal(Signal::SIGHUP);
    wait_for_log(&d, "configuration reloaded", 1);
    let names = provider_names(&mut c);
    assert!(names.contains(&"newco".to_owned()), "{names:?}");
    assert!(!names.contains(&"corpauth".to_owned()), "{names:?}");
    assert_eq!(c.code(json!({"op":"hello"})), "ok");
}
