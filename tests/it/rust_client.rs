//! The Rust client: `tokenvault::client::get_token` / `get_token_as`,
//! as `examples/get_token.rs` uses them, against a real `serve`: valid tokens, `min_ttl`
//! refreshing first, tenant scoping and the CLI's errors and exit codes.

use crate::support::fake_provider::{FakeProvider, cli_vault_with_spotify_client};
use crate::support::*;
use std::time::Duration;
use tokenvault::client::{get_token, get_token_as};
use tokenvault::secret::Secret;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn get_token_from_a_real_daemon_with_the_clis_scoping_and_errors() {
    let tv = TestVault::new();
    let key = two_tenants(&tv);
    let d = Daemon::start(&tv, &[]);
    let rt = rt();
    let ttl = Duration::from_secs(30);
    // as the daemon's own uid: admin
    let t = rt
        .block_on(get_token(&d.socket, "globex/spotify/bob", ttl))
        .unwrap();
    assert_eq!(t.expose(), "AT-globex-bob");
    assert!(!format!("{t:?}").contains("AT-"), "Debug shows the token");
    // a tenant key reaches its own tenant only
    let t = rt
        .block_on(get_token_as(
            &d.socket,
            Secret::new(key.clone()),
            "acme/spotify/alice",
            ttl,
        ))
        .unwrap();
    assert_eq!(t.expose(), "AT-acme-alice");
    let e = rt
        .block_on(get_token_as(
            &d.socket,
            Secret::new(key.clone()),
            "globex/spotify/bob",
            ttl,
        ))
        .unwrap_err();
    assert_eq!(e.exit_code(), 5, "{e}");
    // the same error and code as `tokenvault get`
    let e = rt
        .block_on(get_token(&d.socket, "acme/spotify/nobody", ttl))
        .unwrap_err();
    assert_eq!(e.exit_code(), 4, "{e}");
    let cli = tv
        .daemon_cmd()
        .args(["get", "acme/spotify/nobody"])
        .output()
        .unwrap();
    assert_eq!(cli.status.code(), Some(4));
    assert_eq!(stderr(&cli).trim(), format!("tokenvault: error: {e}"));
    let e = rt
        .block_on(get_token_as(
            &d.socket,
            Secret::new("tvk_bogus"),
            "acme/spotify/alice",
            ttl,
        ))
        .unwrap_err();
    assert_eq!(e.exit_code(), 5, "{e}");
    // no daemon: says so and what to do
    drop(d);
    let e = rt
        .block_on(get_token(&tv.socket(), "acme/spotify/alice", ttl))
        .unwrap_err();
    assert!(matches!(e, tokenvault::Error::NoDaemon { .. }), "{e:?}");
    assert!(e.to_string().contains("tokenvault serve"), "{e}");
}

#[test]
fn min_ttl_makes_the_daemon_refresh_first() {
    let fp = FakeProvider::start_background();
    let tv = cli_vault_with_spotify_client(&fp, &[]);
    let mut t = fp.new_family();
    t["expires_in"] = 600.into();
    let old = t["access_token"].as_str().unwrap().to_owned();
    tv.cmd()
        .args(["put", "acme/spotify/alice"])
        .write_stdin(t.to_string())
        .assert()
        .success();
    let d = Daemon::start(&tv, &[]);
    let rt = rt();
    let got = rt
        .block_on(get_token(
            &d.socket,
            "acme/spotify/alice",
            Duration::from_secs(60),
        ))
        .unwrap();
    assert_eq!(got.expose(), old);
    assert_eq!(fp.requests(), 0);
    let got = rt
        .block_on(get_token(
            &d.socket,
            "acme/spotify/alice",
            Duration::from_secs(3600),
        ))
        .unwrap();
    assert_ne!(got.expose(), old);
    assert_eq!(fp.requests(), 1);
}
