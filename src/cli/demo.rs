//! `tokenvault demo [--keep DIR] [--headless [--seconds N]]`: the front end of `crate::demo`.
//! Prints what a second shell needs (the `TOKENVAULT_SOCKET=…` line first), then either
//! prints the events as `watch` does (headless: for N seconds, or until Ctrl-C) or opens
//! the terminal UI on the demo's daemon.
//!
//! Must not: build anything itself (`crate::demo` does), or print a secret: the passphrase,
//! identity, keys and tenant key are named by their files only.

use super::args::{Global, LogFormat};
use super::output;
use super::watch;
use crate::demo::{DemoOptions, Session};
use crate::error::Result;
use std::io::Write;
use std::path::PathBuf;

/// The lines printed before the events: where the world is and how to reach it.
pub fn intro(s: &Session) -> String {
    let w = &s.world;
    let d = |p: &std::path::Path| p.display().to_string();
    let mut t = String::new();
    t.push_str(&format!(
        "tokenvault demo: a throw-away vault (DEMO ONLY: fast KDF parameters, simulated providers at {})\n",
        s.providers
    ));
    t.push_str(&format!(
        "directory: {} ({})\n\n",
        d(&w.dir),
        if s.removed_on_exit {
            "removed on exit"
        } else {
            "kept after exit"
        }
    ));
    t.push_str("In another shell:\n");
    t.push_str(&format!("TOKENVAULT_SOCKET={}\n", d(&w.socket)));
    t.push_str(&format!(
        "  export TOKENVAULT_SOCKET={} TOKENVAULT_VAULT={} TOKENVAULT_CONFIG={} TOKENVAULT_PASSPHRASE_FILE={}\n",
        d(&w.socket),
        d(&w.vault),
        d(&w.config),
        d(&w.passphrase_file)
    ));
    t.push_str("  tokenvault list            # a dozen connections of tenants acme and globex\n");
    t.push_str("  tokenvault watch           # the events below, live\n");
    t.push_str("  tokenvault get acme/demo-music/alice\n");
    t.push_str("  tokenvault apple key list acme   # DEMOKEY001 active, DEMOKEY002 to activate\n");
    t.push_str(&format!(
        "  tokenvault --tenant-key-file {} watch   # as tenant globex: only its events\n",
        d(&w.tenant_key_file)
    ));
    t.push_str(&format!(
        "  tokenvault backup export {}/manual.age --recipient {}\n",
        d(&w.dir),
        w.recipient
    ));
    t.push_str(&format!(
        "  tokenvault backup verify {}/manual.age --identity {}\n",
        d(&w.dir),
        d(&w.identity_file)
    ));
    t
}

/// `tokenvault demo`.
pub async fn run(keep: Option<PathBuf>, headless: bool, seconds: Option<u64>) -> Result<i32> {
    let opts = DemoOptions { keep };
    crate::demo::run(opts, move |mut s: Session| async move {
        output::to_stdout(|out| writeln!(out, "{}", intro(&s)))?;
        if !headless {
            // the operator's console on the demo's daemon; its header shows the socket
            let g = Global {
                vault: Some(s.world.vault.clone()),
                socket: Some(s.world.socket.clone()),
                passphrase_file: Some(s.world.passphrase_file.clone()),
                tenant_key_file: None,
                config: Some(s.world.config.clone()),
                log_format: LogFormat::Text,
                verbose: 0,
            };
            return super::tui::run(&g).await.map(|_| ());
        }
        output::to_stdout(|out| writeln!(out, "{}", watch::HEADER))?;
        let stop = async move {
            match seconds {
                Some(n) => tokio::time::sleep(std::time::Duration::from_secs(n)).await,
                // the daemon stops on Ctrl-C by itself, which ends this run too
                None => std::future::pending().await,
            }
        };
        watch::print_bus(&mut s.events, None, false, stop).await
    })
    .await
}
