//! A closed stdout ends a command quietly: `tokenvault completions bash
//! | head -1` does not panic, `audit --json | head -1` prints no error. Every printing
//! command is run with its stdout on a pipe whose reader is already gone (every write
//! fails with EPIPE, deterministically), and the two shell pipelines above are run
//! as written, with bash's PIPESTATUS giving tokenvault's own exit code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::*;
use std::process::Stdio;

/// Runs the binary with `args`, its stdout a pipe nobody reads: exit code and stderr.
fn into_closed_pipe(tv: &TestVault, args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = nix::unistd::pipe().unwrap();
    drop(reader);
    let child = tv
        .std_cmd()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code(), stderr(&out))
}

fn vault_with_audit(tv: &TestVault) {
    tv.cmd().args(["tenant", "add", "acme"]).assert().success();
    tv.cmd()
        .args(["put", "acme/spotify/alice"])
        .write_stdin(r#"{"access_token":"AT-pipe-alice","expires_in":3600}"#)
        .assert()
        .success();
}

#[test]
fn every_printing_command_stops_quietly_at_a_closed_stdout() {
    let tv = TestVault::new();
    vault_with_audit(&tv);
    for args in [
        &["completions", "bash"][..],
        &["completions", "zsh"],
        &["audit", "--json"],
        &["audit"],
        &["status"],
        &["status", "--json"],
        &["list"],
        &["list", "--json"],
        &["show", "acme/spotify/alice"],
        &["get", "acme/spotify/alice"],
        &["tenant", "list"],
        &["provider", "list"],
        &["provider", "show", "spotify"],
        &["metrics"],
        &["--help"],
        &["--version"],
    ] {
        let (code, err) = into_closed_pipe(&tv, args);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?} printed on stderr: {err}");
    }
    // a command's own failure keeps its code (and its message)
    let (code, err) = into_closed_pipe(&tv, &["get", "acme/spotify/nobody"]);
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("not found"), "{err}");
    // `health` keeps its own code too (healthy here)
    let (code, err) = into_closed_pipe(&tv, &["health"]);
    assert_eq!(code, Some(0), "{err}");
}

/// `bash -c 'tokenvault ARGS | head -1'`: tokenvault's exit code (PIPESTATUS), what
/// `head` printed, and the pipeline's stderr.
fn piped_to_head(tv: &TestVault, args: &str) -> (String, String, String) {
    let script = format!(
        "set -o pipefail; \"$TV\" {args} | head -1; echo \"tokenvault-exit=${{PIPESTATUS[0]}}\" >&2"
    );
    // bash with the same environment the binary gets in every other test
    let env = tv.std_cmd();
    let mut bash = std::process::Command::new("bash");
    bash.env_clear();
    for (k, v) in env.get_envs() {
        if let Some(v) = v {
            bash.env(k, v);
        }
    }
    let out = bash
        .env("TV", BIN)
        .args(["-c", &script])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = stderr(&out);
    let code = err
        .lines()
        .find_map(|l| l.strip_prefix("tokenvault-exit="))
        .unwrap_or("?")
        .to_owned();
    let rest: String = err
        .lines()
        .filter(|l| !l.starts_with("tokenvault-exit="))
        .collect::<Vec<_>>()
        .join("\n");
    (code, stdout(&out), rest)
}

#[test]
fn the_pipelines_of_the_issue_end_quietly() {
    let tv = TestVault::new();
    vault_with_audit(&tv);
    // enough audit records that the JSON (well over a pipe's 64 KiB) cannot all be
    // written before `head` is gone
    let long = "a".repeat(200);
    let reqs = (0..400)
        .map(|i| tokenvault::Request::Put {
            connection: format!("acme/spotify/{long}-{i}"),
            token: serde_json::json!({"access_token": "AT-bulk", "expires_in": 3600}),
        })
        .collect();
    tv.setup(reqs);
    let (code, out, err) = piped_to_head(&tv, "completions bash");
    assert_eq!(code, "0", "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(err.is_empty(), "{err}");
    let (code, out, err) = piped_to_head(&tv, "audit --json");
    assert_eq!(code, "0", "{err}");
    assert_eq!(out.trim(), "[", "{out}");
    assert!(err.is_empty(), "{err}");
    let (code, _, err) = piped_to_head(&tv, "list");
    assert_eq!(code, "0", "{err}");
    assert!(err.is_empty(), "{err}");
}
