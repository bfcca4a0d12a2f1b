//! clap definitions. Names and flags of SPEC §3 are fixed; others are added as users expect.
//!
//! Every argument and subcommand carries help text (a test walks the tree), the main
//! commands show examples in `--help` (`after_long_help`), the global options are listed
//! under their own heading, and no help or usage line shows a value read from the
//! environment (`hide_env_values`: a passphrase file path is nobody's business).

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "tokenvault",
    version,
    long_version = LONG_VERSION,
    about = "Encrypted, multi-tenant OAuth and API token vault that keeps tokens valid",
    after_long_help = MAIN_EXAMPLES,
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

pub use crate::version::{COMMIT, LONG_VERSION};

const MAIN_EXAMPLES: &str = "\
Examples:
  tokenvault init                                   # create a vault (asks for a passphrase)
  tokenvault tenant add acme
  tokenvault put acme/spotify/alice --from token.json
  tokenvault get acme/spotify/alice                 # the access token, nothing else
  tokenvault exec --env TOKEN=acme/spotify/alice -- ./job.sh
  tokenvault serve --passphrase-file ~/.config/tokenvault/passphrase

Every command works through a running daemon when one answers on the socket, else it opens
the vault file itself. Exit codes: 0 ok, 1 other error, 2 usage, 3 wrong passphrase / vault
locked or in use, 4 not found, 5 forbidden, 6 needs re-authorisation or configuration error,
7 provider unavailable (retry later). `tokenvault COMMAND --help` shows each command's examples.";

const GET_EXAMPLES: &str = "\
Examples:
  tokenvault get acme/spotify/alice
  curl -H \"Authorization: Bearer $(tokenvault get acme/spotify/alice)\" https://api.spotify.com/v1/me
  tokenvault get acme/spotify/alice --min-ttl 300   # refresh first when under 5 minutes remain
  tokenvault get acme/spotify/alice --json          # with expires_at and token_type
  tokenvault get acme/apple-music                   # the tenant's Apple Music developer token";

const PUT_EXAMPLES: &str = "\
Examples:
  tokenvault put acme/spotify/alice --from token.json
  tokenvault put acme/spotify/alice < token.json

token.json is an OAuth token response, as the provider's token endpoint returned it:
  {\"access_token\": \"BQD…\", \"refresh_token\": \"AQC…\", \"expires_in\": 3600, \"token_type\": \"Bearer\"}
access_token is required; refresh_token, expires_in or expires_at (RFC 3339 or Unix seconds),
scope, token_type, id_token and refresh_token_expires_in are understood; other fields are kept
as metadata.";

const CONNECT_EXAMPLES: &str = "\
Examples:
  tokenvault client set acme spotify --client-id ID --client-secret-file secret.txt   # once
  tokenvault connect acme/spotify/alice --scope user-read-email --port 8912
  tokenvault connect acme/google/bob --flow device
  tokenvault connect acme/github/ci --flow client-credentials

The code flow (PKCE) prints a URL to open and waits for the provider's redirect to
http://127.0.0.1:PORT/callback: register that redirect URI with the provider (a fixed --port
makes it stable).";

const CLIENT_SET_EXAMPLES: &str = "\
Examples:
  tokenvault client set acme spotify --client-id 3f1c… --client-secret-file spotify-secret.txt
  tokenvault client set acme microsoft --client-id 8a2b… --client-secret-file ms.txt --param tenant_id=contoso.onmicrosoft.com
  tokenvault client set acme acme-sso --client-id app --token-url https://sso.acme.example/oauth2/token

The secret is read from a file (chmod 600 it), never from the command line, where other
users could see it.";

const SERVE_EXAMPLES: &str = "\
Examples:
  tokenvault serve --passphrase-file ~/.config/tokenvault/passphrase
  tokenvault serve --metrics-listen 127.0.0.1:9464      # /metrics and /healthz on loopback
  tokenvault serve --socket-mode 0660 --socket-group tokenvault-users
  tokenvault -v serve                                   # more detail in the log

Logs go to stderr: one line at start-up, one per refresh failure, warnings and errors;
-vv adds a line per request. SIGHUP reloads the configuration, SIGTERM stops cleanly.";

const EXEC_EXAMPLES: &str = "\
Examples:
  tokenvault exec --env SPOTIFY_TOKEN=acme/spotify/alice -- ./sync.sh --full
  tokenvault exec --env GH_TOKEN=acme/github/ci --env GOOGLE_TOKEN=acme/google/bob -- make deploy
  tokenvault exec --min-ttl 900 --env TOKEN=acme/spotify/alice -- sh -c 'curl -H \"Authorization: Bearer $TOKEN\" https://api.spotify.com/v1/me'

The tokens are in the command's environment only, never on a command line or in a log.
SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 are passed on to the command; the exit
code is the command's (128+N when it died of signal N). The tokens are not renewed while the
command runs: ask for a --min-ttl that covers it.";

const BACKUP_EXPORT_EXAMPLES: &str = "\
Examples:
  tokenvault backup export /backups/tv.age --recipient age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
  tokenvault backup export acme.age --tenant acme --recipient age1… --recipient age1…
  tokenvault backup export tv.age --backup-passphrase-file backup-pass.txt

Recipients need no secret, so scheduled backups can run unattended; keep the identity
(AGE-SECRET-KEY-1…) elsewhere. `age --decrypt -i key.txt tv.age` reads the file too.";

const BACKUP_RESTORE_EXAMPLES: &str = "\
Examples:
  tokenvault backup verify /backups/tv.age --identity key.txt      # check first; writes nothing
  tokenvault backup restore /backups/tv.age --identity key.txt
  tokenvault backup restore /backups/tv.age --identity key.txt --tenant acme --replace

A restore is one transaction: all of it, or (wrong key, damaged file, conflict) nothing.";

#[derive(Debug, Clone, Args)]
pub struct Global {
    /// The vault file [default: $XDG_DATA_HOME/tokenvault/vault.redb]
    #[arg(
        long,
        env = "TOKENVAULT_VAULT",
        hide_env_values = true,
        global = true,
        help_heading = "Global options"
    )]
    pub vault: Option<PathBuf>,
    /// The daemon's socket [default: $XDG_RUNTIME_DIR/tokenvault/tokenvault.sock]
    #[arg(
        long,
        env = "TOKENVAULT_SOCKET",
        hide_env_values = true,
        global = true,
        help_heading = "Global options"
    )]
    pub socket: Option<PathBuf>,
    /// A file holding the passphrase (one trailing newline is ignored). Without it the
    /// passphrase is read from TOKENVAULT_PASSPHRASE (least safe), or prompted for.
    #[arg(
        long,
        env = "TOKENVAULT_PASSPHRASE_FILE",
        hide_env_values = true,
        global = true,
        help_heading = "Global options"
    )]
    pub passphrase_file: Option<PathBuf>,
    /// A file holding a tenant key (TOKENVAULT_TENANT_KEY holds the key itself); only
    /// works through the daemon.
    #[arg(long, global = true, help_heading = "Global options")]
    pub tenant_key_file: Option<PathBuf>,
    /// Configuration file [default: $XDG_CONFIG_HOME/tokenvault/config.toml]
    #[arg(
        long,
        env = "TOKENVAULT_CONFIG",
        hide_env_values = true,
        global = true,
        help_heading = "Global options"
    )]
    pub config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(
        long,
        value_enum,
        default_value_t = LogFormat::Text,
        global = true,
        help_heading = "Global options"
    )]
    pub log_format: LogFormat,
    /// More log output: -v informational lines, -vv debug and one line per request, -vvv
    /// also the libraries' debug output.
    #[arg(short, long, action = clap::ArgAction::Count, global = true, help_heading = "Global options")]
    pub verbose: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a vault; refuses to overwrite an existing file.
    Init {
        /// Argon2id memory in MiB (at least 19); more is slower to unlock and to attack.
        #[arg(long, default_value_t = crate::vault::DEFAULT_MEMORY_MIB)]
        kdf_memory_mib: u32,
        /// Argon2id passes over the memory (at least 2).
        #[arg(long, default_value_t = crate::vault::DEFAULT_ITERATIONS)]
        kdf_iterations: u32,
        /// Argon2id lanes (threads).
        #[arg(long, default_value_t = crate::vault::DEFAULT_PARALLELISM)]
        kdf_parallelism: u32,
        /// Create the vault in this shared PostgreSQL database (postgres://USER@HOST/DB)
        /// instead of a file; TOKENVAULT_STORE_URL or `[store] url` do the same.
        #[arg(long, value_name = "URL")]
        store: Option<String>,
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
    #[command(after_long_help = PUT_EXAMPLES)]
    Put {
        /// The connection: TENANT/PROVIDER/ACCOUNT, e.g. acme/spotify/alice.
        connection: String,
        /// Read the JSON from this file instead of stdin.
        #[arg(long)]
        from: Option<PathBuf>,
    },
    /// Print a valid access token (and a newline, nothing else).
    #[command(after_long_help = GET_EXAMPLES)]
    Get {
        /// The connection: TENANT/PROVIDER/ACCOUNT, e.g. acme/spotify/alice (or
        /// TENANT/apple-music for the tenant's Apple Music developer token).
        connection: String,
        /// Refresh first when fewer than this many seconds remain.
        #[arg(long, default_value_t = 30, value_name = "SECONDS")]
        min_ttl: u64,
        /// Refresh at the provider now, even if the token is still valid (at most once per
        /// 10 s per connection).
        #[arg(long)]
        force_refresh: bool,
        /// Print a JSON document with the token and its expiry instead.
        #[arg(long)]
        json: bool,
    },
    /// Run a command with valid access tokens in its environment.
    #[command(after_long_help = EXEC_EXAMPLES)]
    Exec {
        /// Set the environment variable VAR to a valid access token of CONNECTION (repeat
        /// for several).
        #[arg(long = "env", value_name = "VAR=CONNECTION", required = true)]
        env: Vec<String>,
        /// Refresh first any token with fewer than this many seconds left: make it cover
        /// the command's run time, since tokens are not renewed while it runs.
        #[arg(long, default_value_t = 30, value_name = "SECONDS")]
        min_ttl: u64,
        /// The command and its arguments, after `--`.
        #[arg(last = true, value_name = "CMD")]
        command: Vec<std::ffi::OsString>,
    },
    /// Show a connection's metadata (never a secret).
    Show {
        /// The connection: TENANT/PROVIDER/ACCOUNT, e.g. acme/spotify/alice.
        connection: String,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List connections.
    List {
        /// Only this TENANT, or TENANT/PROVIDER.
        filter: Option<String>,
        /// Only connections in this status: connected, retrying, token_expired,
        /// needs_reauth, error or disconnected.
        #[arg(long)]
        status: Option<String>,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove a connection.
    Remove {
        /// The connection: TENANT/PROVIDER/ACCOUNT, e.g. acme/spotify/alice.
        connection: String,
        /// Also revoke the token at the provider.
        #[arg(long)]
        revoke: bool,
    },
    /// Vault, daemon, scheduler and per-status counts.
    Status {
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Like status, but says why it is unhealthy and exits 1 when it is.
    Health {
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Admin changes and token hand-outs.
    Audit {
        /// Only this tenant's records.
        tenant: Option<String>,
        /// Only records newer than this (e.g. 1h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print shell completions.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Write the man pages (generated from this command line) into a directory, or print
    /// tokenvault.1 on stdout. Used by scripts/install.
    #[command(hide = true)]
    Man {
        /// Write tokenvault.1 and one page per subcommand (tokenvault-get.1, …) here.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Encrypted backups: export, verify, restore (age files).
    #[command(subcommand)]
    Backup(BackupCmd),
    /// The shared PostgreSQL store: copy a vault between a file and a database.
    #[command(subcommand)]
    Store(StoreCmd),
    /// Apple Music signing keys and developer tokens.
    #[command(subcommand)]
    Apple(super::apple::AppleCmd),
    /// Prometheus text exposition of the daemon's (or this vault's) metrics.
    Metrics,
    /// Run the daemon: refresh scheduler + Unix socket (+ optional metrics HTTP).
    #[command(after_long_help = SERVE_EXAMPLES)]
    Serve {
        /// Serve Prometheus metrics (/metrics) and a health check (/healthz) over HTTP on
        /// this loopback address (e.g. 127.0.0.1:9464).
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<std::net::SocketAddr>,
        /// Socket permissions in octal [default: 0600]; e.g. 0660 with --socket-group.
        #[arg(long, value_name = "MODE")]
        socket_mode: Option<String>,
        /// Group owning the socket (name or gid).
        #[arg(long, value_name = "GROUP")]
        socket_group: Option<String>,
    },
    /// The terminal UI: browse connections with live status, refresh and remove them, rotate
    /// Apple keys, export and verify backups, follow the audit log (SPEC §10; `?` lists
    /// the keys). Over the daemon when one answers, else on the vault file (the passphrase
    /// is asked first; the refresh scheduler runs while it is open).
    Tui,
    /// Built-in and catalogue providers.
    #[command(subcommand)]
    Provider(ProviderCmd),
    /// Refresh a connection now, every due connection (one scheduler pass), or a tenant's.
    ///
    /// With --due or --tenant, the exit code tells whether every refresh worked: 0 when
    /// all were refreshed or skipped; otherwise 6 when any connection needs
    /// re-authorisation or has a configuration error, else 7 when a provider was
    /// unavailable (retry later), else 1. The results are printed either way.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["connection", "due", "tenant"])))]
    Refresh {
        /// The connection to refresh now: TENANT/PROVIDER/ACCOUNT.
        connection: Option<String>,
        /// Refresh every connection that is due (one scheduler pass).
        #[arg(long)]
        due: bool,
        /// Refresh every connection of this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Test support for the crash test: refreshes CONNECTION in a loop and prints each
    /// committed access token. Hidden; never use it on real tokens.
    #[command(name = "__refresh-loop", hide = true)]
    RefreshLoop {
        /// The connection to refresh over and over.
        connection: String,
    },
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
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run an OAuth flow and store the resulting tokens.
    #[command(after_long_help = CONNECT_EXAMPLES)]
    Connect {
        /// The connection: TENANT/PROVIDER/ACCOUNT, e.g. acme/spotify/alice.
        connection: String,
        /// The OAuth flow: a browser and a loopback redirect, a device code, or the app's
        /// own client credentials.
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
        /// Give up waiting for the redirect (or the pasted URL) after this many seconds.
        #[arg(long, default_value_t = 300, value_name = "SECONDS")]
        timeout: u64,
        /// Headless code flow: listen for nothing; print the URL to open in a browser on any
        /// machine, then read the address that browser was redirected to, pasted on stdin.
        /// The redirect URI is http://127.0.0.1:PORT/callback with PORT from --port, default
        /// 8765: register it with the provider.
        #[arg(long)]
        no_listen: bool,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check a connection's access token against the provider's validation endpoint.
    ///
    /// Exit 0: the provider accepts the token. Exit 6: it rejected it (the connection is
    /// marked needs_reauth), or the provider has no validation endpoint (set
    /// validation_url in [providers.NAME]). Exit 7: the provider could not be reached.
    /// An expired token is refreshed first, as `get` would.
    Test {
        /// The connection to check, TENANT/PROVIDER/ACCOUNT.
        connection: String,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Follow events live (status changes, refreshes, admin changes, backups), one line
    /// each, until Ctrl-C.
    ///
    /// Through the daemon when one answers (a tenant caller sees only its tenant), else on
    /// the vault file with the refresh scheduler running in this process.
    #[command(after_long_help = WATCH_EXAMPLES)]
    Watch {
        /// Only this TENANT, or TENANT/PROVIDER.
        filter: Option<String>,
        /// One JSON object per line (the socket's event objects) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// A throw-away vault with simulated providers, its daemon, and the terminal UI on it.
    ///
    /// Nothing outside a temporary directory is touched and no passphrase is asked; the
    /// directory is removed on exit unless --keep names one. The demo's vault uses fast,
    /// demo-only KDF parameters: never put real tokens in it.
    #[command(after_long_help = DEMO_EXAMPLES)]
    Demo {
        /// Build the demo in this (new or empty) directory and keep it after the run.
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
        /// No terminal UI: print the events as `watch` does.
        #[arg(long)]
        headless: bool,
        /// With --headless: stop after this many seconds (exit 0); default: until Ctrl-C.
        #[arg(long, value_name = "N", requires = "headless")]
        seconds: Option<u64>,
    },
}

const WATCH_EXAMPLES: &str = "\
Examples:
  tokenvault watch                      # everything this caller may see
  tokenvault watch acme                 # one tenant
  tokenvault watch acme/spotify --json  # one provider of a tenant, JSON lines
  tokenvault --tenant-key-file acme.key watch   # as tenant acme, through the daemon";

const DEMO_EXAMPLES: &str = "\
Examples:
  tokenvault demo                          # the terminal UI on a throw-away world
  tokenvault demo --headless --seconds 30  # print the events for 30 s, then exit 0
  tokenvault demo --keep /tmp/tv-demo      # keep the vault, config and keys afterwards

The demo prints a TOKENVAULT_SOCKET=… line (and the other variables a second shell needs):
from there, `tokenvault list`, `tokenvault watch` and `tokenvault apple key list acme` reach
the demo's daemon.";

#[derive(Debug, Subcommand)]
pub enum BackupCmd {
    /// Write an age-encrypted backup of the vault (or one tenant), secrets included.
    #[command(after_long_help = BACKUP_EXPORT_EXAMPLES)]
    Export {
        /// The backup file to write.
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
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Decrypt and check a whole backup; writes nothing.
    Verify {
        /// The backup file to check.
        file: PathBuf,
        /// age identity file (AGE-SECRET-KEY-1…).
        #[arg(long, required_unless_present = "backup_passphrase_file")]
        identity: Option<PathBuf>,
        /// Decrypt with the passphrase in this file (a passphrase-encrypted backup).
        #[arg(long, conflicts_with = "identity")]
        backup_passphrase_file: Option<PathBuf>,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Restore a backup in one transaction (all or nothing).
    #[command(after_long_help = BACKUP_RESTORE_EXAMPLES)]
    Restore {
        /// The backup file to restore from.
        file: PathBuf,
        /// age identity file (AGE-SECRET-KEY-1…).
        #[arg(long, required_unless_present = "backup_passphrase_file")]
        identity: Option<PathBuf>,
        /// Decrypt with the passphrase in this file (a passphrase-encrypted backup).
        #[arg(long, conflicts_with = "identity")]
        backup_passphrase_file: Option<PathBuf>,
        /// Restore only this tenant from the file.
        #[arg(long)]
        tenant: Option<String>,
        /// Replace tenants that already exist (and everything they own) with the backup's.
        #[arg(long)]
        replace: bool,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Flow {
    /// Authorisation code with PKCE: a browser and a loopback redirect.
    Code,
    /// Device authorisation: a code to enter on another device.
    Device,
    /// Client credentials: the app's own token, no user.
    ClientCredentials,
}

#[derive(Debug, Subcommand)]
pub enum ProviderCmd {
    /// List providers.
    List {
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show one provider's endpoints and settings.
    Show {
        /// The provider, e.g. spotify.
        name: String,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantCmd {
    /// Add a tenant.
    Add {
        /// The tenant's name: lower-case letters, digits, - and _ (up to 63).
        name: String,
    },
    /// List tenants.
    List {
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove a tenant (with --force, also its connections, clients and keys).
    Remove {
        /// The tenant.
        name: String,
        /// Also remove everything the tenant owns.
        #[arg(long)]
        force: bool,
    },
    /// Tenant keys: issue, list, revoke.
    #[command(subcommand)]
    Key(TenantKeyCmd),
    /// Let a local uid act for a tenant over the socket.
    Grant {
        /// The tenant.
        name: String,
        /// The local user id that may act for the tenant.
        #[arg(long)]
        uid: u32,
    },
    /// Withdraw a uid grant.
    RevokeGrant {
        /// The tenant.
        name: String,
        /// The local user id to withdraw.
        #[arg(long)]
        uid: u32,
    },
    /// List uid grants.
    Grants {
        /// Only this tenant's grants.
        name: Option<String>,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantKeyCmd {
    /// Issue a new key; prints it once, alone on stdout.
    Issue {
        /// The tenant.
        name: String,
        /// A note to recognise the key by in `tenant key list` (e.g. ci-runner).
        #[arg(long)]
        label: Option<String>,
    },
    /// List a tenant's keys (ids and labels, never the keys).
    List {
        /// The tenant.
        name: String,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by its id.
    Revoke {
        /// The tenant.
        name: String,
        /// The key's id, as `tenant key list` shows it.
        key_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClientCmd {
    /// Create or update a tenant's OAuth app at a provider.
    #[command(after_long_help = CLIENT_SET_EXAMPLES)]
    Set {
        /// The tenant that owns the app.
        tenant: String,
        /// The provider, e.g. spotify (`tokenvault provider list` shows them).
        provider: String,
        /// The app's client id, as the provider's developer console shows it.
        #[arg(long)]
        client_id: String,
        /// File holding the client secret (never pass secrets as arguments).
        #[arg(long)]
        client_secret_file: Option<PathBuf>,
        /// Override the provider's token endpoint for this app (https://).
        #[arg(long)]
        token_url: Option<String>,
        /// Override the provider's authorisation endpoint (code flow).
        #[arg(long)]
        authorization_url: Option<String>,
        /// Override the provider's device authorisation endpoint (device flow).
        #[arg(long)]
        device_authorization_url: Option<String>,
        /// Override the provider's token revocation endpoint.
        #[arg(long)]
        revocation_url: Option<String>,
        /// Extra parameters, e.g. tenant_id=… for Microsoft.
        #[arg(long = "param", value_name = "K=V")]
        params: Vec<String>,
    },
    /// List clients.
    List {
        /// Only this tenant's clients.
        tenant: Option<String>,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove a client.
    Remove {
        /// The tenant that owns the app.
        tenant: String,
        /// The provider.
        provider: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum StoreCmd {
    /// Copy the vault to a new PostgreSQL store (postgres://…) or a new redb file,
    /// through the backup format; every table's count is checked. The source is not
    /// changed; point `[store] url` (or `--vault`) at the copy afterwards.
    Migrate {
        /// `postgres://USER@HOST:PORT/DATABASE` or the path of a new vault file.
        #[arg(long, value_name = "URL_OR_PATH")]
        to: String,
    },
}
