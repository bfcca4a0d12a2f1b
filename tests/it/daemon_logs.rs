//! Daemon logs an operator can read: at the default level `serve` logs
//! one start-up line (version, vault, socket, connections, next due) and one line per
//! refresh failure, nothing per request; `-v` adds no dependency noise or source paths;
//! per-request lines start at `-vv`.

use crate::support::fake_provider::{Canned, FakeProvider, cli_vault_with_spotify_client};
use crate::support::*;

/// Serves with `args`, does five gets and one refresh the provider refuses, stops, and
/// returns the log.
fn scenario(args: &[&str]) -> String {
    let fp = FakeProvider::start_background();
    let tv = cli_vault_with_spotify_client(&fp, &[]);
    for acct in ["alice-0a9f", "bob-77c2"] {
        let mut t = fp.new_family();
        t["expires_in"] = 3600.into();
        tv.cmd()
            .args(["put", &format!("acme/spotify/{acct}")])
            .write_stdin(t.to_string())
            .assert()
            .success();
    }
    let mut d = Daemon::start(&tv, args);
    for _ in 0..5 {
        tv.daemon_cmd()
            .args(["get", "acme/spotify/alice-0a9f"])
            .assert()
            .success();
    }
    fp.script([Canned::InvalidGrant]);
    tv.daemon_cmd()
        .args(["refresh", "acme/spotify/bob-77c2"])
        .assert()
        .code(6);
    assert_eq!(fp.requests(), 1);
    let (st, _) = d.stop();
    assert!(st.success());
    d.log()
}

fn lines_with<'a>(log: &'a str, what: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(what)).collect()
}

#[test]
fn the_default_log_has_a_start_up_line_and_a_line_per_refresh_failure_only() {
    let log = scenario(&[]);
    let ready = lines_with(&log, "daemon ready");
    assert_eq!(ready.len(), 1, "{log}");
    for field in [
        &format!("version=\"{}", env!("CARGO_PKG_VERSION"))[..],
        "vault=",
        "socket=",
        "connections=2",
        "next_due=in ",
    ] {
        assert!(ready[0].contains(field), "{field} missing: {}", ready[0]);
    }
    let failed = lines_with(&log, "refresh failed");
    assert_eq!(failed.len(), 1, "{log}");
    assert!(failed[0].contains("invalid_grant"), "{}", failed[0]);
    // nothing per request, and account names only as pseudonyms
    assert!(lines_with(&log, "request").is_empty(), "{log}");
    assert!(
        !log.contains("alice-0a9f") && !log.contains("bob-77c2"),
        "{log}"
    );
    assert!(log.lines().count() <= 6, "a chatty default log:\n{log}");
}

#[test]
fn verbose_adds_no_dependency_noise_nor_source_paths() {
    let log = scenario(&["-v"]);
    assert_eq!(lines_with(&log, "daemon ready").len(), 1, "{log}");
    for noise in [
        "hyper", "reqwest", "rustls", "h2::", "tower", ".rs:", "/src/",
    ] {
        assert!(
            lines_with(&log, noise).is_empty(),
            "{noise} in the -v log:\n{log}"
        );
    }
    assert!(lines_with(&log, "request answered").is_empty(), "{log}");
}

/// The positive control of the two above: the per-request lines exist, at `-vv`.
#[test]
fn per_request_lines_start_at_vv() {
    let log = scenario(&["-vv"]);
    assert!(lines_with(&log, "request answered").len() >= 5, "{log}");
    for noise in ["hyper", "reqwest", "rustls", ".rs:"] {
        assert!(
            lines_with(&log, noise).is_empty(),
            "{noise} in the -vv log:\n{log}"
        );
    }
}
