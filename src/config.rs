//! The optional configuration file (`--config`, default
//! `$XDG_CONFIG_HOME/tokenvault/config.toml`). Each section belongs to one part of the
//! program; a missing file is an empty config, a malformed one is a clear error naming the
//! line. `serve` reloads it on SIGHUP.

use crate::error::{Error, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Custom providers and field-by-field overrides of built-ins (SPEC §5.5).
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    #[serde(default)]
    pub apple_music: AppleMusicConfig,
    #[serde(default)]
    pub scheduler: SchedulerConfig,
    #[serde(default)]
    pub daemon: DaemonConfig,
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    #[serde(default)]
    pub backup: Option<BackupConfig>,
    #[serde(default)]
    pub client: ClientConfig,
    #[serde(default)]
    pub store: StoreSection,
}

/// `[store]`: the shared PostgreSQL store (SPEC §12). Without `url` the vault is the redb
/// file. The password is best kept in `password_file` (mode 0600), not in the URL.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// `postgres://USER@HOST:PORT/DATABASE` (TOKENVAULT_STORE_URL overrides it).
    pub url: Option<String>,
    /// A file holding the database password, used when the URL has none.
    pub password_file: Option<String>,
    /// How long a node's claim on a connection lasts (default 60 s; at least 5). Keep it
    /// well above the provider timeout: a node that dies mid-refresh is taken over after it.
    pub lease_secs: Option<u64>,
}

/// `[providers.NAME]` (SPEC §5.5).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub token_url: Option<String>,
    pub authorization_url: Option<String>,
    pub device_authorization_url: Option<String>,
    pub revocation_url: Option<String>,
    /// A GET with the access token that answers 2xx while it is valid (`tokenvault test`).
    pub validation_url: Option<String>,
    /// `basic` | `post` | `none`
    pub client_auth: Option<String>,
    pub default_scopes: Option<Vec<String>>,
    pub scope_separator: Option<String>,
    pub default_lifetime_secs: Option<u64>,
    pub refresh_buffer_secs: Option<u64>,
    /// Refresh-token lifetime when responses do not state it (0: unknown).
    pub refresh_token_lifetime_secs: Option<u64>,
    pub token_params: Option<BTreeMap<String, String>>,
    pub authorization_params: Option<BTreeMap<String, String>>,
}

/// `[apple_music]` (SPEC §7).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppleMusicConfig {
    pub api_base: Option<String>,
    pub token_lifetime_secs: Option<u64>,
    pub renew_before_secs: Option<u64>,
    pub validate_interval_secs: Option<u64>,
    pub origin: Option<Vec<String>>,
}

/// `[scheduler]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Concurrent refreshes per provider host.
    pub per_host_concurrency: Option<usize>,
}

/// `[daemon]` (SPEC §6 limits).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Connections of all non-admin uids together (default 1024).
    pub max_connections: Option<usize>,
    pub idle_timeout_secs: Option<u64>,
    /// Connections of one non-admin peer uid (default 64).
    pub max_connections_per_uid: Option<usize>,
    /// Slots beyond `max_connections` kept for the daemon's own uid and root (default 64).
    pub reserved_admin_connections: Option<usize>,
    /// Seconds a connection with no grant and no key has to `auth` (default 5).
    pub auth_timeout_secs: Option<u64>,
}

/// `[client]`: which daemons the CLI talks to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// uids, besides the CLI's own and root, whose daemon the CLI may send requests to
    /// (checked with SO_PEERCRED before anything is sent).
    #[serde(default)]
    pub trusted_daemon_uids: Vec<u32>,
}

/// `[[webhooks]]` (SPEC §6).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// File holding the HMAC-SHA256 key.
    pub secret_file: Option<String>,
    /// Deliveries tried per event before giving up (default 6).
    pub max_attempts: Option<u32>,
    /// First retry delay in milliseconds, doubled each time up to 5 minutes (default 1000).
    pub retry_base_ms: Option<u64>,
    /// Per-attempt timeout (default 10 s).
    pub timeout_secs: Option<u64>,
}

/// `[backup]`: scheduled backups from `serve` (SPEC §8).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    pub directory: String,
    #[serde(default)]
    pub recipients: Vec<String>,
    pub interval_secs: Option<u64>,
    pub retention: Option<usize>,
    /// Include the audit log in scheduled backups (default false).
    pub include_audit: Option<bool>,
}

impl Config {
    /// Loads `path`; a file that does not exist is an empty config.
    pub fn load(path: &Path) -> Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => {
                return Err(Error::io(
                    format!("cannot read config {}", path.display()),
                    e,
                ));
            }
        };
        Self::parse(&text).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Loads `path`, which must exist: a configuration file named on the command line
    /// (or in `TOKENVAULT_CONFIG`) that is not there is a typo, not an empty config.
    pub fn load_required(path: &Path) -> Result<Config> {
        match std::fs::symlink_metadata(path) {
            Ok(_) => Self::load(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Config(format!(
                "the configuration file {} does not exist: fix the --config path (or TOKENVAULT_CONFIG), create the file, or leave the option out to use the default one",
                path.display()
            ))),
            Err(e) => Err(Error::io(
                format!("cannot read config {}", path.display()),
                e,
            )),
        }
    }

    pub fn parse(text: &str) -> Result<Config> {
        toml::from_str(text).map_err(|e| Error::Config(format!("{e}; fix the file and retry")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sections_and_rejects_unknown_keys() {
        let c = Config::parse(
            r#"
            [providers.acme]
            token_url = "https://acme.example/token"
            client_auth = "post"
            [apple_music]
            api_base = "http://127.0.0.1:9"
            "#,
        )
        .unwrap();
        assert_eq!(c.providers["acme"].client_auth.as_deref(), Some("post"));
        assert!(Config::parse("[providers.x]\ntokn_url = 1").is_err());
        assert!(Config::parse("").is_ok());
    }

    #[test]
    fn client_and_daemon_limits_parse() {
        let c = Config::parse(
            "[client]\ntrusted_daemon_uids = [998, 0]\n[daemon]\nmax_connections_per_uid = 8\nauth_timeout_secs = 2\nreserved_admin_connections = 0\n",
        )
        .unwrap();
        assert_eq!(c.client.trusted_daemon_uids, vec![998, 0]);
        assert_eq!(c.daemon.max_connections_per_uid, Some(8));
        assert_eq!(c.daemon.auth_timeout_secs, Some(2));
        assert_eq!(c.daemon.reserved_admin_connections, Some(0));
        assert!(
            Config::parse("")
                .unwrap()
                .client
                .trusted_daemon_uids
                .is_empty()
        );
        assert!(Config::parse("[client]\ntrusted_daemon_uids = [-1]").is_err());
        assert!(Config::parse("[client]\ntrusted_uids = [5]").is_err());
    }
}
