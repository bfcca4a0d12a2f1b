//! `tokenvault tui` (SPEC §10): chooses how the terminal UI reaches the product, the way
//! every command does (SPEC §3): the daemon when one answers on the socket (as the caller
//! the daemon sees, or the tenant key's tenant), else the vault file in this process: the
//! passphrase is asked before the screen switches, and the refresh scheduler runs while
//! the UI is open. Then it hands the terminal to `tui::run_terminal`.
//!
//! Must not: draw anything itself, or give the UI any way to the product but a
//! `tui::Link` (Requests as this caller).

use super::args::Global;
use super::passphrase;
use crate::contract::{Request, Response};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::paths;
use crate::tui::app::LinkInfo;
use crate::tui::link::{BackendLink, EngineLink};
use std::sync::Arc;

fn recipients(config: &crate::config::Config) -> Vec<String> {
    config
        .backup
        .as_ref()
        .map(|b| b.recipients.clone())
        .unwrap_or_default()
}

/// Runs the TUI; exit code 0 after `q`.
pub async fn run(g: &Global) -> Result<i32> {
    let opts = crate::tui::Options::from_env();
    let config =
        crate::config::Config::load(&g.config.clone().unwrap_or_else(paths::default_config))?;
    let socket = g.socket.clone().unwrap_or_else(paths::default_socket);
    if let Some(c) = super::backend::daemon(g).await? {
        let (caller, tenant) = match c.call(Request::Hello).await? {
            Response::Hello { caller, .. } => {
                let tenant = caller.strip_prefix("tenant:").map(str::to_owned);
                let shown = match &tenant {
                    Some(t) => format!("tenant {t}"),
                    None => caller,
                };
                (shown, tenant)
            }
            _ => ("admin".to_owned(), None),
        };
        let link = BackendLink::new(
            c,
            LinkInfo {
                place: format!("daemon {}", socket.display()),
                caller,
                tenant,
                recipients: recipients(&config),
            },
        );
        crate::tui::run_terminal(Arc::new(link), opts).await?;
        return Ok(0);
    }
    if g.tenant_key_file.is_some() || std::env::var_os("TOKENVAULT_TENANT_KEY").is_some() {
        return Err(Error::Unauthorized(
            "a tenant key only works through the daemon, and no daemon answers on the socket; start `tokenvault serve`".into(),
        ));
    }
    let path = g.vault.clone().unwrap_or_else(paths::default_vault);
    if super::store::no_vault_file(g, &path)? {
        return Err(Error::NoVault { path });
    }
    // asked now, while the terminal is still a terminal
    let pass = passphrase::passphrase(g.passphrase_file.as_deref(), false)?;
    let vault = super::store::open(g, &path, &pass, crate::vault::Access::ReadWrite)?;
    drop(pass);
    let engine = Arc::new(Engine::new(vault));
    engine.set_config(config);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let scheduler = tokio::spawn(crate::refresh::run_scheduler(
        engine.refresher().clone(),
        async {
            let _ = stop_rx.await;
        },
    ));
    let link = EngineLink::new(
        engine.clone(),
        crate::contract::Caller::Admin {
            // as `run::local_caller`: the local user, with full access to a file it unlocked
            actor: format!("cli:uid={}", nix::unistd::getuid()),
        },
        format!("vault {}", path.display()),
    );
    let result = crate::tui::run_terminal(Arc::new(link), opts).await;
    let _ = stop_tx.send(());
    if let Ok(Err(e)) = scheduler.await {
        tracing::warn!("the refresh scheduler stopped with an error: {e}");
    }
    engine.flush_audit()?;
    result.map(|()| 0)
}
