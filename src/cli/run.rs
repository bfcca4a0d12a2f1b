//! Runs one parsed command: builds the engine `Request`, sends it through the
//! `client::Backend` that `backend` chooses (the daemon, or the vault file unlocked in this
//! process), prints the `Response`.
//!
//! Everything printed goes through `output::to_stdout` / `output::note`, so a closed pipe
//! ends the output quietly (exit code unchanged: 0 unless the command itself failed).

use super::args::{BackupCmd, Cli, ClientCmd, Command, ProviderCmd, TenantCmd, TenantKeyCmd};
use super::backend::{self, load_config, local_caller, vault_path};
use super::output::note;
use super::{output, passphrase};
use crate::contract::{Request, Response};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::paths;
use crate::vault::records::Status;
use crate::vault::{Vault, crypto::KdfParams};
use std::io::{Read, Write};
use std::path::PathBuf;

fn parse_since(s: &str, now: i64) -> Result<i64> {
    let d = humantime::parse_duration(s)
        .map_err(|_| Error::invalid("--since", "must be a duration such as 30m, 1h or 7d"))?;
    Ok(now - d.as_secs() as i64)
}

fn parse_params(params: &[String]) -> Result<std::collections::BTreeMap<String, String>> {
    params
        .iter()
        .map(|p| {
            p.split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| {
                    Error::invalid(
                        "--param",
                        "each value must be KEY=VALUE with a non-empty KEY",
                    )
                })
        })
        .collect()
}

fn read_token_json(from: Option<&PathBuf>) -> Result<serde_json::Value> {
    let mut buf = zeroize::Zeroizing::new(Vec::new());
    match from {
        Some(f) => {
            let mut file = std::fs::File::open(f)
                .map_err(|e| Error::io(format!("cannot open {}", f.display()), e))?;
            Read::by_ref(&mut file)
                .take(1024 * 1024 + 1)
                .read_to_end(&mut buf)
                .map_err(|e| Error::io(format!("cannot read {}", f.display()), e))?;
        }
        None => {
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                note(format_args!(
                    "reading the token response JSON from stdin; end with Ctrl-D"
                ));
            }
            std::io::stdin()
                .lock()
                .take(1024 * 1024 + 1)
                .read_to_end(&mut buf)
                .map_err(|e| Error::io("cannot read the token response from stdin", e))?;
        }
    }
    if buf.len() > 1024 * 1024 {
        return Err(Error::invalid("token response", "larger than 1 MiB"));
    }
    serde_json::from_slice(&buf).map_err(|e| {
        Error::invalid(
            "token response",
            format!(
                "not JSON (line {}, column {}); expected an OAuth token response object",
                e.line(),
                e.column()
            ),
        )
    })
}

/// What to do with the response once it arrives.
#[derive(Debug, Clone, Copy, Default)]
struct Print {
    json: bool,
    health: bool,
}

/// Runs `cli`, printing to stdout. Returns the process exit code for successes (`health`
/// can exit 1); failures come back as `Err` for `main` to map.
pub async fn run(cli: Cli) -> Result<i32> {
    let g = cli.global;
    let mut pr = Print::default();
    let req = match cli.command {
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            // generated into memory: clap_complete panics when its writer fails
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "tokenvault", &mut script);
            output::to_stdout(|out| out.write_all(&script))?;
            return Ok(0);
        }
        Command::Man { dir } => return super::man::run(dir.as_deref()),
        Command::Tui => return super::tui::run(&g).await,
        Command::Store(c) => return super::store::run(&g, c, &vault_path(&g)),
        Command::Exec {
            env,
            min_ttl,
            command,
        } => return super::exec::run(&g, env, min_ttl, command).await,
        Command::Init {
            kdf_memory_mib,
            kdf_iterations,
            kdf_parallelism,
            store,
        } => {
            let kdf = KdfParams::new(kdf_memory_mib, kdf_iterations, kdf_parallelism)?;
            let store = match store {
                Some(url) => Some(super::store::parse_url(&g, &url)?),
                None => super::store::store_config(&g)?,
            };
            if let Some(store) = store {
                let vault = super::store::init(&g, &store, kdf)?;
                Engine::new(vault).audit_admin(&local_caller(), "init", store.display(), "ok")?;
                return Ok(0);
            }
            let path = vault_path(&g);
            if path.exists() {
                return Err(Error::VaultExists { path });
            }
            let pass = passphrase::passphrase(g.passphrase_file.as_deref(), true)?;
            let vault = Vault::init(&path, &pass, kdf)?;
            output::to_stdout(|out| writeln!(out, "created vault {}", vault.path().display()))?;
            Engine::new(vault).audit_admin(
                &local_caller(),
                "init",
                &path.display().to_string(),
                "ok",
            )?;
            return Ok(0);
        }
        Command::Passwd {
            new_passphrase_file,
        } => {
            let new = match new_passphrase_file {
                Some(f) => passphrase::read_secret_file(&f, "new passphrase")?,
                None => passphrase::prompt("New passphrase: ", true)?,
            };
            Request::Passwd {
                new_passphrase: new,
            }
        }
        Command::Rekey => Request::Rekey,
        Command::Tenant(t) => match t {
            TenantCmd::Add { name } => Request::TenantAdd { name },
            TenantCmd::List { json } => {
                pr.json = json;
                Request::TenantList
            }
            TenantCmd::Remove { name, force } => Request::TenantRemove { name, force },
            TenantCmd::Key(k) => match k {
                TenantKeyCmd::Issue { name, label } => Request::TenantKeyIssue {
                    tenant: name,
                    label,
                },
                TenantKeyCmd::List { name, json } => {
                    pr.json = json;
                    Request::TenantKeyList { tenant: name }
                }
                TenantKeyCmd::Revoke { name, key_id } => Request::TenantKeyRevoke {
                    tenant: name,
                    key_id,
                },
            },
            TenantCmd::Grant { name, uid } => Request::TenantGrant { tenant: name, uid },
            TenantCmd::RevokeGrant { name, uid } => {
                Request::TenantRevokeGrant { tenant: name, uid }
            }
            TenantCmd::Grants { name, json } => {
                pr.json = json;
                Request::TenantGrantList { tenant: name }
            }
        },
        Command::Metrics => Request::Metrics,
        Command::Serve {
            metrics_listen,
            socket_mode,
            socket_group,
        } => {
            let opts = crate::server::ServeOptions {
                store: super::store::store_config(&g)?,
                vault: vault_path(&g),
                socket: g.socket.clone().unwrap_or_else(paths::default_socket),
                config: g.config.clone().unwrap_or_else(paths::default_config),
                config_required: g.config.is_some(),
                passphrase_file: g.passphrase_file.clone(),
                metrics_listen,
                socket_mode: socket_mode
                    .as_deref()
                    .map(crate::server::daemon::parse_socket_mode)
                    .transpose()?,
                socket_group,
                socket_dir_is_default: g
                    .socket
                    .as_ref()
                    .is_none_or(|s| *s == paths::default_socket()),
            };
            let pf = opts.passphrase_file.clone();
            return crate::server::serve(opts, move || {
                passphrase::passphrase(pf.as_deref(), false)
            })
            .await;
        }
        Command::Client(c) => match c {
            ClientCmd::Set {
                tenant,
                provider,
                client_id,
                client_secret_file,
                token_url,
                authorization_url,
                device_authorization_url,
                revocation_url,
                params,
            } => Request::ClientSet {
                tenant,
                provider,
                client_id,
                client_secret: client_secret_file
                    .map(|f| passphrase::read_secret_file(&f, "client secret"))
                    .transpose()?,
                token_url,
                authorization_url,
                device_authorization_url,
                revocation_url,
                params: parse_params(&params)?,
            },
            ClientCmd::List { tenant, json } => {
                pr.json = json;
                Request::ClientList { tenant }
            }
            ClientCmd::Remove { tenant, provider } => Request::ClientRemove { tenant, provider },
        },
        Command::Put { connection, from } => Request::Put {
            // validate the address before reading stdin, so a typo fails fast
            connection: crate::names::ConnectionId::parse(&connection)?.to_string(),
            token: read_token_json(from.as_ref())?,
        },
        Command::Get {
            connection,
            min_ttl,
            force_refresh,
            json,
        } => {
            pr.json = json;
            Request::Get {
                connection,
                min_ttl: Some(min_ttl),
                force_refresh,
            }
        }
        Command::Show { connection, json } => {
            pr.json = json;
            Request::Show { connection }
        }
        Command::List {
            filter,
            status,
            json,
        } => {
            pr.json = json;
            Request::List {
                filter,
                status: status.map(|s| s.parse()).transpose()?,
                limit: None,
                after: None,
                contains: None,
            }
        }
        Command::Remove { connection, revoke } => Request::Remove { connection, revoke },
        Command::Status { json } => {
            pr.json = json;
            Request::Status
        }
        Command::Health { json } => {
            pr.json = json;
            pr.health = true;
            Request::Status
        }
        Command::Audit {
            tenant,
            since,
            json,
        } => {
            pr.json = json;
            let now = chrono::Utc::now().timestamp();
            Request::Audit {
                tenant,
                since: since.map(|s| parse_since(&s, now)).transpose()?,
            }
        }
        Command::Backup(b) => backup_request(b, &mut pr)?,
        Command::Apple(cmd) => {
            let (req, json) = super::apple::request(cmd)?;
            pr.json = json;
            req
        }
        Command::Provider(p) => match p {
            ProviderCmd::List { json } => {
                pr.json = json;
                Request::ProviderList
            }
            ProviderCmd::Show { name, json } => {
                pr.json = json;
                Request::ProviderShow { name }
            }
        },
        Command::Refresh {
            connection,
            due,
            tenant,
            json,
        } => {
            pr.json = json;
            match (connection, due, tenant) {
                (Some(c), false, None) => Request::Refresh { connection: c },
                (None, true, None) => Request::RefreshDue,
                (None, false, Some(t)) => Request::RefreshTenant { tenant: t },
                _ => {
                    return Err(Error::invalid(
                        "refresh",
                        "give exactly one of CONNECTION, --due or --tenant T",
                    ));
                }
            }
        }
        Command::RefreshLoop { connection } => {
            let engine = backend::open_local(&g, crate::vault::Access::ReadWrite)?;
            // the crash test needs refreshes as fast as they go (hidden test support)
            engine.refresher().state().disable_pacing_for_crash_test();
            let key = crate::names::ConnectionId::parse(&connection)?.key();
            loop {
                match crate::refresh::refresh(
                    engine.refresher(),
                    &key,
                    crate::refresh::Trigger::Manual,
                )
                .await
                {
                    Ok(f) => {
                        // printed only after the refresh was committed durably
                        let mut out = std::io::stdout().lock();
                        let written = writeln!(out, "ack {}", f.access_token.expose())
                            .and_then(|_| out.flush());
                        if written.is_err() {
                            // nobody reads the acknowledgements any more
                            return Ok(0);
                        }
                    }
                    Err(e) => {
                        note(format_args!("refresh failed: {e}"));
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                }
            }
        }
        Command::Doctor {
            salvage,
            recipients,
            json,
        } => {
            // Local only: doctor needs the file itself, never the daemon's answers.
            let path = vault_path(&g);
            if !path.exists() {
                return Err(Error::NoVault { path });
            }
            let config = load_config(&g)?;
            let pass = passphrase::passphrase(g.passphrase_file.as_deref(), false)?;
            let salvage = salvage.map(|file| crate::doctor::Salvage { file, recipients });
            let out = crate::doctor::run(
                &path,
                &pass,
                &config,
                salvage.as_ref(),
                super::progress::terminal_sink(),
                chrono::Utc::now().timestamp(),
            )?;
            let mut stdout = std::io::stdout().lock();
            crate::doctor::print(&mut stdout, &out, json)
                .and_then(|_| stdout.flush())
                .map_err(|e| Error::io("cannot write to stdout", e))?;
            return Ok(crate::doctor::exit_code(&out));
        }
        Command::Connect {
            connection,
            flow,
            scopes,
            port,
            open,
            timeout,
            no_listen,
            json,
        } => {
            let opts = super::connect::ConnectOptions {
                connection,
                flow: flow.into(),
                scopes,
                port,
                timeout: std::time::Duration::from_secs(timeout),
                no_listen,
            };
            // Through the daemon when one answers (it holds the vault), else in-process.
            let b = backend::backend(&g).await?;
            let mut ui = super::connect::Terminal { open };
            let resp = crate::client::connect::run(&b, opts, &mut ui).await;
            // what a failed step audited is written too
            b.flush_audit()?;
            let resp = resp?;
            let now = chrono::Utc::now().timestamp();
            output::print_stdout(&resp, json, now)?;
            return Ok(0);
        }
        Command::Test { connection, json } => {
            pr.json = json;
            Request::Test { connection }
        }
        Command::Watch { filter, json } => return super::watch::run(&g, filter, json).await,
        Command::Demo {
            keep,
            headless,
            seconds,
        } => return super::demo::run(keep, headless, seconds).await,
    };
    let resp = backend::execute(&g, req).await?;
    let now = chrono::Utc::now().timestamp();
    output::print_stdout(&resp, pr.json, now)?;
    match &resp {
        Response::Status(s) if pr.health && !s.healthy => Ok(1),
        Response::Refreshed { results } => Ok(refresh_exit_code(results)),
        _ => Ok(0),
    }
}

/// The exit code of `refresh --due` / `--tenant` (documented in its `--help` and the
/// README): 0 when nothing failed; otherwise the most severe failure's code: 6 when any
/// connection needs re-authorisation or has a configuration error (someone must act),
/// else 7 when a provider was unavailable (it will be retried), else 1.
pub fn refresh_exit_code(results: &[crate::contract::RefreshResult]) -> i32 {
    use crate::error::exit;
    let codes: Vec<i32> = results
        .iter()
        .filter(|r| r.outcome == "failed")
        .map(|r| match r.error_code.as_deref() {
            Some("needs_reauth" | "config_error") => exit::NEEDS_REAUTH,
            Some("provider_unavailable") => exit::UNAVAILABLE,
            // an older daemon says no code: judge by the status the failure left
            None => match r.status {
                Some(Status::NeedsReauth | Status::Error) => exit::NEEDS_REAUTH,
                Some(Status::Retrying | Status::TokenExpired) => exit::UNAVAILABLE,
                _ => exit::OTHER,
            },
            Some(_) => exit::OTHER,
        })
        .collect();
    [exit::NEEDS_REAUTH, exit::UNAVAILABLE, exit::OTHER]
        .into_iter()
        .find(|c| codes.contains(c))
        .unwrap_or(exit::OK)
}

fn absolute(p: &std::path::Path) -> Result<String> {
    std::path::absolute(p)
        .map(|a| a.display().to_string())
        .map_err(|e| Error::io(format!("cannot resolve {}", p.display()), e))
}

/// `backup …` → the engine request. Key files are read here, so the daemon never needs
/// to read the caller's files; the backup path itself is made absolute for it.
fn backup_request(b: BackupCmd, pr: &mut Print) -> Result<Request> {
    let pass = |f: Option<PathBuf>| {
        f.map(|f| passphrase::read_secret_file(&f, "backup passphrase"))
            .transpose()
    };
    let identity = |f: Option<PathBuf>| {
        f.map(|f| crate::backup::restore::read_identity_file(&f))
            .transpose()
    };
    Ok(match b {
        BackupCmd::Export {
            file,
            tenant,
            recipients,
            backup_passphrase_file,
            include_audit,
            json,
        } => {
            pr.json = json;
            Request::BackupExport {
                path: absolute(&file)?,
                tenant,
                recipients,
                passphrase: pass(backup_passphrase_file)?,
                include_audit,
            }
        }
        BackupCmd::Verify {
            file,
            identity: id,
            backup_passphrase_file,
            json,
        } => {
            pr.json = json;
            Request::BackupVerify {
                path: absolute(&file)?,
                identity: identity(id)?,
                passphrase: pass(backup_passphrase_file)?,
            }
        }
        BackupCmd::Restore {
            file,
            identity: id,
            backup_passphrase_file,
            tenant,
            replace,
            json,
        } => {
            pr.json = json;
            Request::BackupRestore {
                path: absolute(&file)?,
                identity: identity(id)?,
                passphrase: pass(backup_passphrase_file)?,
                tenant,
                replace,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::RefreshResult;

    fn r(outcome: &str, code: Option<&str>, status: Option<Status>) -> RefreshResult {
        RefreshResult {
            connection: "acme/spotify/a".into(),
            outcome: outcome.into(),
            status,
            expires_at: None,
            reason: None,
            error_code: code.map(str::to_owned),
        }
    }

    #[test]
    fn refresh_exit_codes_take_the_most_severe_failure() {
        let ok = r("refreshed", None, Some(Status::Connected));
        let skipped = r("skipped", None, None);
        let reauth = r("failed", Some("needs_reauth"), Some(Status::NeedsReauth));
        let config = r("failed", Some("config_error"), Some(Status::Error));
        let down = r(
            "failed",
            Some("provider_unavailable"),
            Some(Status::Retrying),
        );
        let other = r("failed", Some("internal"), Some(Status::Connected));
        let old_daemon = r("failed", None, Some(Status::TokenExpired));
        for (results, want) in [
            (vec![], 0),
            (vec![ok.clone(), skipped.clone()], 0),
            (vec![ok.clone(), down.clone()], 7),
            (vec![down.clone(), reauth.clone(), ok.clone()], 6),
            (vec![config.clone()], 6),
            (vec![other.clone(), down.clone()], 7),
            (vec![other.clone(), ok.clone()], 1),
            (vec![old_daemon], 7),
        ] {
            assert_eq!(refresh_exit_code(&results), want, "{results:?}");
        }
    }
}
