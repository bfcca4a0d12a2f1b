//! Help that teaches: every argument and subcommand described, examples
//! in the main commands' `--help`, global options under their own heading, no environment
//! value in help or usage, a long `--version`, and messages that name the right thing (the
//! socket of a second `serve`; where a wrong passphrase came from).

use crate::support::*;
use clap::CommandFactory;

/// Every argument (but clap's own help/version flags) and every subcommand, hidden ones
/// included, of the whole tree has help text.
#[test]
fn every_argument_and_subcommand_has_help_text() {
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for a in cmd.get_arguments() {
            let id = a.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            let help = a.get_help().or(a.get_long_help()).map(|h| h.to_string());
            if help.is_none_or(|h| h.trim().is_empty()) {
                missing.push(format!("{path} <{id}>"));
            }
            // our value enums describe each value; clap_complete's Shell describes none
            let values = a.get_possible_values();
            let described = values.iter().any(|v| v.get_help().is_some());
            for v in values.iter().filter(|_| described) {
                if v.get_help().is_none() && !v.is_hide_set() {
                    missing.push(format!("{path} <{id}> value {}", v.get_name()));
                }
            }
        }
        for sub in cmd.get_subcommands() {
            let p = format!("{path} {}", sub.get_name());
            if sub.get_name() != "help"
                && sub
                    .get_about()
                    .or(sub.get_long_about())
                    .is_none_or(|h| h.to_string().trim().is_empty())
            {
                missing.push(p.clone());
            }
            walk(sub, &p, missing);
        }
    }
    let mut cmd = tokenvault::cli::Cli::command();
    cmd.build();
    let mut missing = Vec::new();
    walk(&cmd, "tokenvault", &mut missing);
    assert!(missing.is_empty(), "no help text: {missing:#?}");
}

/// The help of the walk above must see every subcommand: if it walked nothing, it passes
/// vacuously. This one fails if the tree is not the real one.
#[test]
fn the_help_walk_sees_the_real_command_tree() {
    let cmd = tokenvault::cli::Cli::command();
    let names: Vec<&str> = cmd.get_subcommands().map(|s| s.get_name()).collect();
    for n in ["get", "put", "exec", "serve", "backup", "client", "connect"] {
        assert!(names.contains(&n), "{n} not in {names:?}");
    }
}

#[test]
fn main_commands_show_examples_in_help() {
    let tv = TestVault::empty();
    for cmd in [
        &["get"][..],
        &["put"],
        &["connect"],
        &["client", "set"],
        &["serve"],
        &["backup", "export"],
        &["backup", "restore"],
        &["exec"],
    ] {
        let out = tv.cmd().args(cmd).arg("--help").output().unwrap();
        assert!(out.status.success(), "{cmd:?}: {}", stderr(&out));
        let text = stdout(&out);
        let examples = text
            .split_once("\nExamples:\n")
            .unwrap_or_else(|| panic!("{cmd:?} --help has no Examples section:\n{text}"))
            .1;
        let own = format!("tokenvault {}", cmd.join(" "));
        assert!(
            examples
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .any(|l| l.trim().starts_with(&own)),
            "{cmd:?}: no example of the command itself:\n{examples}"
        );
    }
}

#[test]
fn put_help_shows_the_token_response_json() {
    let tv = TestVault::empty();
    let out = tv.cmd().args(["put", "--help"]).output().unwrap();
    let text = stdout(&out);
    assert!(text.contains("\"access_token\""), "{text}");
    assert!(text.contains("expires_in"), "{text}");
}

#[test]
fn connect_help_names_the_redirect_uri_to_register() {
    let tv = TestVault::empty();
    let out = tv.cmd().args(["connect", "--help"]).output().unwrap();
    assert!(
        stdout(&out).contains("http://127.0.0.1:PORT/callback"),
        "{}",
        stdout(&out)
    );
}

/// The command's own options come first; global ones under "Global options:".
#[test]
fn global_options_are_listed_apart() {
    let tv = TestVault::empty();
    for flag in ["-h", "--help"] {
        let out = tv.cmd().args(["get", flag]).output().unwrap();
        let text = stdout(&out);
        let (own, global) = text
            .split_once("Global options:")
            .unwrap_or_else(|| panic!("no Global options heading:\n{text}"));
        assert!(own.contains("--min-ttl"), "{text}");
        assert!(
            !own.contains("--vault"),
            "--vault among get's own options:\n{text}"
        );
        assert!(!own.contains("--passphrase-file"), "{text}");
        for g in [
            "--vault",
            "--socket",
            "--passphrase-file",
            "--config",
            "--verbose",
        ] {
            assert!(global.contains(g), "{g} not under Global options:\n{text}");
        }
    }
}

/// Values from the environment never reach help or usage output (a passphrase file's
/// path, a vault's location): only the variable's name is shown.
#[test]
fn help_and_usage_do_not_show_environment_values() {
    let tv = TestVault::empty();
    let marker = "/very/private/place-7f3a";
    let with_env = || {
        let mut c = tv.cmd();
        c.env("TOKENVAULT_PASSPHRASE_FILE", format!("{marker}/pass"))
            .env("TOKENVAULT_VAULT", format!("{marker}/vault.redb"))
            .env("TOKENVAULT_SOCKET", format!("{marker}/sock"))
            .env("TOKENVAULT_CONFIG", format!("{marker}/config.toml"));
        c
    };
    for args in [
        &["--help"][..],
        &["-h"],
        &["get", "--help"],
        &["serve", "-h"],
        &["exec", "--help"],
        &["get"],            // usage error: missing CONNECTION
        &["get", "--bogus"], // usage error: unknown flag
        &["nosuchcommand"],
    ] {
        let out = with_env().args(args).output().unwrap();
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert!(!all.contains(marker), "{args:?} shows an env value:\n{all}");
    }
    let out = with_env().args(["get", "--help"]).output().unwrap();
    assert!(
        stdout(&out).contains("[env: TOKENVAULT_PASSPHRASE_FILE]"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn version_has_a_long_form_with_commit_and_build_date() {
    let tv = TestVault::empty();
    let long = stdout(&tv.cmd().arg("--version").output().unwrap());
    let v = env!("CARGO_PKG_VERSION");
    let rest = long
        .trim()
        .strip_prefix(&format!("tokenvault {v} (commit "))
        .unwrap_or_else(|| panic!("{long}"));
    let (commit, rest) = rest
        .split_once(", built ")
        .unwrap_or_else(|| panic!("{long}"));
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "{long}"
    );
    let date = rest.strip_suffix(')').unwrap_or_else(|| panic!("{long}"));
    let d: Vec<&str> = date.split('-').collect();
    assert!(
        d.len() == 3 && d[0].len() == 4 && d.iter().all(|p| p.parse::<u32>().is_ok()),
        "{long}"
    );
    // -V stays the short, script-friendly form
    let short = stdout(&tv.cmd().arg("-V").output().unwrap());
    assert_eq!(short.trim(), format!("tokenvault {v}"));
}

#[test]
fn a_second_serve_names_the_socket_and_the_running_daemon() {
    let tv = TestVault::new();
    let _d = Daemon::start(&tv, &[]);
    let out = tv.std_cmd().arg("serve").output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("already running"), "{err}");
    assert!(
        err.contains(&format!("socket {}", tv.socket().display())),
        "{err}"
    );
    assert!(!err.contains(" vault "), "the socket is not a vault: {err}");
}

fn wrong_pass_file(tv: &TestVault) -> std::path::PathBuf {
    tv.file("wrong-pass", b"not the passphrase\n")
}

#[test]
fn a_wrong_passphrase_from_a_file_points_at_the_file() {
    let tv = TestVault::new();
    let bad = wrong_pass_file(&tv);
    let out = tv
        .cmd()
        .env("TOKENVAULT_PASSPHRASE_FILE", &bad)
        .arg("list")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(err.contains("wrong passphrase"), "{err}");
    assert!(
        err.contains(&format!("passphrase file {}", bad.display())),
        "{err}"
    );
}

#[test]
fn a_wrong_passphrase_from_the_environment_points_at_the_variable() {
    let tv = TestVault::new();
    let out = tv
        .cmd()
        .env_remove("TOKENVAULT_PASSPHRASE_FILE")
        .env("TOKENVAULT_PASSPHRASE", "not the passphrase")
        .arg("list")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(err.contains("check TOKENVAULT_PASSPHRASE"), "{err}");
    assert!(!err.contains("passphrase file"), "{err}");
    assert!(!err.contains("not the passphrase"), "{err}");
}

/// Typed at the prompt: run under `script(1)`, which gives the command a terminal.
#[test]
fn a_wrong_passphrase_typed_at_the_prompt_is_told_to_retype_it() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: script(1) is not installed");
        return;
    }
    let tv = TestVault::new();
    let cmdline = format!("{BIN} list");
    let mut c = std::process::Command::new("script");
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", tv.dir.path())
        .env("TOKENVAULT_VAULT", &tv.path)
        .env("TOKENVAULT_SOCKET", tv.socket())
        .args(["-q", "-e", "-c", &cmdline, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        // give the prompt a moment to switch echo off before typing
        std::thread::sleep(std::time::Duration::from_millis(500));
        stdin.write_all(b"definitely wrong\n").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let out = child.wait_with_output().unwrap();
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(all.contains("Vault passphrase"), "no prompt shown: {all}");
    assert!(all.contains("wrong passphrase"), "{all}");
    assert!(all.contains("retype"), "{all}");
    assert!(!all.contains("passphrase file"), "{all}");
    assert!(
        !all.contains("definitely wrong"),
        "the typed passphrase was echoed: {all}"
    );
    assert_eq!(out.status.code(), Some(3), "{all}");
}
