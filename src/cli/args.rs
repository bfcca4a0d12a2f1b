//! clap definitions. Names and flags of SPEC §3 are fixed; others are added as users expect.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "tokenvault",
    version,
    about = "Encrypted, multi-tenant OAuth and API token vault that keeps tokens valid",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct Global {
    /// The vault file [default: $XDG_DATA_HOME/tokenvault/vault.redb]
    #[arg(long, env = "TOKENVAULT_VAULT", global = true)]
    pub vault: Option<PathBuf>,
    /// The daemon's socket [default: $XDG_RUNTIME_DIR/tokenvault/tokenvault.sock]
    #[arg(long, env = "TOKENVAULT_SOCKET", global = true)]
    pub socket: Option<PathBuf>,
    /// A file holding the passphrase (one trailing newline is ignored). Without it the
    /// passphrase is read from TOKENVAULT_PASSPHRASE (least safe), or prompted for.
    #[arg(long, env = "TOKENVAULT_PASSPHRASE_FILE", global = true)]
    pub passphrase_file: Option<PathBuf>,
    /// A file holding a tenant key (TOKENVAULT_TENANT_KEY holds the key itself); only
    /// works through the daemon.
    #[arg(long, global = true)]
    pub tenant_key_file: Option<PathBuf>,
    /// Configuration file [default: $XDG_CONFIG_HOME/tokenvault/config.toml]
    #[arg(long, env = "TOKENVAULT_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// More log output (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a vault; refuses to overwrite an existing file.
    Init {
        #[arg(long, default_value_t = crate::vault::DEFAULT_MEMORY_MIB)]
        kdf_memory_mib: u32,
        #[arg(long, default_value_t = crate::vault::DEFAULT_ITERATIONS)]
        kdf_iterations: u32,
        #[arg(long, default_value_t = crate::vault::DEFAULT_PARALLELISM)]
        kdf_parallelism: u32,
    },
    /// Change the passphrase (rewraps the keyring; no record is rewritten).
    Passwd {
        /// File holding the new passphrase; prompted for (twice) otherwise.
        #[arg(long)]
        new_passphrase_file: Option<PathBuf>,
    },
    /// New data-encryption key; re-encrypts every record.
    Rekey,
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Manage OAuth client registrations.
    #[command(subcommand)]
    Client(ClientCmd),
    /// Import a token response (JSON on stdin by default).
    Put {
        connection: String,
        /// Read the JSON from this file instead of stdin.
        #[arg(long)]
        from: Option<PathBuf>,
    },
    /// Print a valid access token (and a newline, nothing else).
    Get {
        connection: String,
        /// Refresh first when fewer than this many seconds remain.
        #[arg(long, default_value_t = 30)]
        min_ttl: u64,
        #[arg(long)]
        force_refresh: bool,
        /// Print a JSON document with the token and its expiry instead.
        #[arg(long)]
        json: bool,
    },
    /// Show a connection's metadata (never a secret).
    Show {
        connection: String,
        #[arg(long)]
        json: bool,
    },
    /// List connections.
    List {
        /// TENANT or TENANT/PROVIDER
        filter: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Remove a connection.
    Remove {
        connection: String,
        /// Also revoke the token at the provider.
        #[arg(long)]
        revoke: bool,
    },
    /// Vault, scheduler and per-status counts.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Like status, but exits 1 when unhealthy.
    Health {
        #[arg(long)]
        json: bool,
    },
    /// Admin changes and token hand-outs.
    Audit {
        tenant: Option<String>,
        /// Only records newer than this (e.g. 1h, 7d).
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Print shell completions.
    Completions { shell: clap_complete::Shell },
    /// Encrypted backups: export, verify, restore (age files).
    #[command(subcommand)]
    Backup(BackupCmd),
    /// Apple Music signing keys and developer tokens.
    #[command(subcommand)]
    Apple(super::apple::AppleCmd),
    /// Prometheus text exposition of the daemon's (or this vault's) metrics.
    Metrics,
    /// Run the daemon: refresh scheduler + Unix socket (+ optional metrics HTTP).
    Serve {
        /// Serve Prometheus metrics over HTTP on this loopback address (e.g. 127.0.0.1:9464).
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<std::net::SocketAddr>,
        /// Socket permissions in octal [default: 0600]; e.g. 0660 with --socket-group.
        #[arg(long, value_name = "MODE")]
        socket_mode: Option<String>,
        /// Group owning the socket (name or gid).
        #[arg(long, value_name = "GROUP")]
        socket_group: Option<String>,
    },
    /// Built-in and catalogue providers.
    #[command(subcommand)]
    Provider(ProviderCmd),
    /// Refresh a connection now, every due connection (one scheduler pass), or a tenant's.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["connection", "due", "tenant"])))]
    Refresh {
        connection: Option<String>,
        #[arg(long)]
        due: bool,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Test support for the crash test: refreshes CONNECTION in a loop and prints each
    /// committed access token. Hidden; never use it on real tokens.
    #[command(name = "__refresh-loop", hide = true)]
    RefreshLoop { connection: String },
    /// Check the vault file (storage integrity, every record, every sealed value); with
    /// --salvage, write every record that still opens to an age backup. Never writes the
    /// vault; exits 1 when something is damaged.
    Doctor {
        /// Write every record that still opens to this age backup (read by `backup restore`).
        #[arg(long, value_name = "FILE", requires = "recipients")]
        salvage: Option<std::path::PathBuf>,
        /// An age recipient (age1…) of the salvage backup; repeat for several.
        #[arg(long = "recipient", value_name = "AGE_RECIPIENT", requires = "salvage")]
        recipients: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Run an OAuth flow and store the resulting tokens.
    Connect {
        connection: String,
        #[arg(long, value_enum, default_value_t = Flow::Code)]
        flow: Flow,
        /// Scopes to ask for (repeat); the provider's defaults are added.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Loopback port of the redirect listener (code flow); default a free one.
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Open the URL in a browser when one is available.
        #[arg(long)]
        open: bool,
        /// Give up waiting for the redirect after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackupCmd {
    /// Write an age-encrypted backup of the vault (or one tenant), secrets included.
    Export {
        file: PathBuf,
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// An age recipient (age1…); repeat for several. No secret is needed to back up.
        #[arg(
            long = "recipient",
            value_name = "AGE_RECIPIENT",
            required_unless_present = "backup_passphrase_file"
        )]
        recipients: Vec<String>,
        /// Encrypt with the passphrase in this file instead of recipients.
        #[arg(long, conflicts_with = "recipients")]
        backup_passphrase_file: Option<PathBuf>,
        /// Include the audit log.
        #[arg(long)]
        include_audit: bool,
        #[arg(long)]
        json: bool,
    },
    /// Decrypt and check a whole backup; writes nothing.
    Verify {
        file: PathBuf,
        /// age identity file (AGE-SECRET-KEY-1…).
        #[arg(long, required_unless_present = "backup_passphrase_file")]
        identity: Option<PathBuf>,
        #[arg(long, conflicts_with = "identity")]
        backup_passphrase_file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Restore a backup in one transaction (all or nothing).
    Restore {
        file: PathBuf,
        /// age identity file (AGE-SECRET-KEY-1…).
        #[arg(long, required_unless_present = "backup_passphrase_file")]
        identity: Option<PathBuf>,
        #[arg(long, conflicts_with = "identity")]
        backup_passphrase_file: Option<PathBuf>,
        /// Restore only this tenant from the file.
        #[arg(long)]
        tenant: Option<String>,
        /// Replace tenants that already exist (and everything they own) with the backup's.
        #[arg(long)]
        replace: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Flow {
    Code,
    Device,
    ClientCredentials,
}

#[derive(Debug, Subcommand)]
pub enum ProviderCmd {
    /// List providers.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one provider's endpoints and settings.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantCmd {
    /// Add a tenant.
    Add { name: String },
    /// List tenants.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a tenant (with --force, also its connections, clients and keys).
    Remove {
        name: String,
        #[arg(long)]
        force: bool,
    },
    /// Tenant keys: issue, list, revoke.
    #[command(subcommand)]
    Key(TenantKeyCmd),
    /// Let a local uid act for a tenant over the socket.
    Grant {
        name: String,
        #[arg(long)]
        uid: u32,
    },
    /// Withdraw a uid grant.
    RevokeGrant {
        name: String,
        #[arg(long)]
        uid: u32,
    },
    /// List uid grants.
    Grants {
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantKeyCmd {
    /// Issue a new key; prints it once, alone on stdout.
    Issue {
        name: String,
        #[arg(long)]
        label: Option<String>,
    },
    /// List a tenant's keys (ids and labels, never the keys).
    List {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by its id.
    Revoke { name: String, key_id: String },
}

#[derive(Debug, Subcommand)]
pub enum ClientCmd {
    /// Create or update a tenant's OAuth app at a provider.
    Set {
        tenant: String,
        provider: String,
        #[arg(long)]
        client_id: String,
        /// File holding the client secret (never pass secrets as arguments).
        #[arg(long)]
        client_secret_file: Option<PathBuf>,
        #[arg(long)]
        token_url: Option<String>,
        #[arg(long)]
        authorization_url: Option<String>,
        #[arg(long)]
        device_authorization_url: Option<String>,
        #[arg(long)]
        revocation_url: Option<String>,
        /// Extra parameters, e.g. tenant_id=… for Microsoft.
        #[arg(long = "param", value_name = "K=V")]
        params: Vec<String>,
    },
    /// List clients.
    List {
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Remove a client.
    Remove { tenant: String, provider: String },
}
