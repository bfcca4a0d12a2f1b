//! Where the vault lives, as the command line sees it (SPEC §3, §12): the redb file, or
//! the shared PostgreSQL store named by `--vault postgres://…`, `TOKENVAULT_STORE_URL` or
//! `[store] url` (in that order); the store's password from the URL, or from
//! `TOKENVAULT_STORE_PASSWORD_FILE` / `[store] password_file`. Also `init --store` and
//! `store migrate --to`.
//!
//! Must not: log or print a URL with its password (`StoreConfig::display` strips it), or
//! hold any rule of the vault itself (that is `vault`, `vault::pg`, `backup::migrate`).

use super::args::{Global, StoreCmd};
use super::{output, passphrase};
use crate::error::{Error, Result};
use crate::paths;
use crate::secret::Secret;
use crate::vault::pg::{StoreConfig, is_store_url};
use crate::vault::{Access, Vault, crypto::KdfParams};
use std::io::Write;
use std::path::PathBuf;

fn config_path(g: &Global) -> PathBuf {
    g.config.clone().unwrap_or_else(paths::default_config)
}

/// The password file named by the environment or `[store] password_file`.
fn password(g: &Global) -> Result<Option<Secret>> {
    let file = match std::env::var_os("TOKENVAULT_STORE_PASSWORD_FILE") {
        Some(f) => Some(PathBuf::from(f)),
        None => crate::config::Config::load(&config_path(g))?
            .store
            .password_file
            .map(PathBuf::from),
    };
    file.map(|f| passphrase::read_secret_file(&f, "store password"))
        .transpose()
}

/// Parses a store URL with the configured password.
pub fn parse_url(g: &Global, url: &str) -> Result<StoreConfig> {
    StoreConfig::parse(url, password(g)?)
}

/// The shared store this command uses, if the vault is not a file.
pub fn store_config(g: &Global) -> Result<Option<StoreConfig>> {
    if let Some(v) = g.vault.as_ref().and_then(|p| p.to_str())
        && is_store_url(v)
    {
        return parse_url(g, v).map(Some);
    }
    if let Some(u) = std::env::var("TOKENVAULT_STORE_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        return parse_url(g, &u).map(Some);
    }
    match crate::config::Config::load(&config_path(g))?.store.url {
        Some(u) => parse_url(g, &u).map(Some),
        None => Ok(None),
    }
}

/// Applies `[store] lease_secs` to this process's claims.
fn apply_lease(g: &Global) -> Result<()> {
    if let Some(s) = crate::config::Config::load(&config_path(g))?
        .store
        .lease_secs
    {
        crate::vault::claims::set_lease(std::time::Duration::from_secs(s.max(5)));
    }
    Ok(())
}

/// Opens the vault wherever it lives: the store, or the file at `path` (which must exist).
pub fn open(g: &Global, path: &std::path::Path, pass: &Secret, access: Access) -> Result<Vault> {
    match store_config(g)? {
        Some(c) => {
            apply_lease(g)?;
            Vault::open_store(&c, pass, access)
        }
        None => {
            if !path.exists() {
                return Err(Error::NoVault {
                    path: path.to_owned(),
                });
            }
            Vault::open_as(path, pass, access)
        }
    }
}

/// True when the vault is a file that does not exist (the store is checked on open).
pub fn no_vault_file(g: &Global, path: &std::path::Path) -> Result<bool> {
    Ok(store_config(g)?.is_none() && !path.exists())
}

/// `init --store URL` (or `init` with a store configured): creates the vault in the store.
pub fn init(g: &Global, store: &StoreConfig, kdf: KdfParams) -> Result<Vault> {
    let pass = passphrase::passphrase(g.passphrase_file.as_deref(), true)?;
    let vault = Vault::init_store(store, &pass, kdf)?;
    output::to_stdout(|out| writeln!(out, "created vault in {}", store.display()))?;
    Ok(vault)
}

/// `store migrate --to URL_OR_PATH`.
pub fn run(g: &Global, cmd: StoreCmd, path: &std::path::Path) -> Result<i32> {
    let StoreCmd::Migrate { to } = cmd;
    let target = if is_store_url(&to) {
        crate::backup::migrate::Target::Store(Box::new(parse_url(g, &to)?))
    } else {
        crate::backup::migrate::Target::File(
            std::path::absolute(&to).map_err(|e| Error::io("cannot resolve the --to path", e))?,
        )
    };
    let config = crate::config::Config::load(&config_path(g))?;
    let pass = passphrase::passphrase(g.passphrase_file.as_deref(), false)?;
    let source = open(g, path, &pass, Access::ReadOnly)?;
    let report = crate::backup::migrate::migrate(
        &source,
        &pass,
        &target,
        &config.providers,
        &format!("cli:uid={}", nix::unistd::getuid()),
        chrono::Utc::now().timestamp(),
    )?;
    output::to_stdout(|out| {
        writeln!(out, "copied {} to {}", report.from, report.to)?;
        for (t, a, b) in &report.counts {
            writeln!(out, "  {t:<12} {a:>8} -> {b}")?;
        }
        Ok(())
    })?;
    Ok(0)
}
