//! The world of `tokenvault demo` (SPEC §11), built in one directory: a throw-away vault with
//! fast (demo-only) KDF parameters and a random passphrase in a file, a config whose
//! `[providers]` tables point at the simulated providers, two tenants with OAuth clients,
//! a dozen connections with 20–60 s tokens (one whose grant the provider has revoked),
//! two Apple Music signing keys for `acme` (generated now: the first active, the second
//! waiting for `A`), a tenant key for `globex`, and an age identity whose recipient is the
//! config's `[backup] recipients`.
//!
//! Everything goes through the engine's `Request`s as the local admin, exactly as the CLI
//! would (`tenant add`, `client set`, `put`, `apple key add`, `tenant key issue`); nothing
//! writes the vault behind the engine's back. Must not: write outside the directory it is
//! given, reach the network, or print a secret (the files holding them are 0600).

use super::sim_provider::{Behaviour, ProviderSpec, SimProviders};
use crate::config::Config;
use crate::contract::{Caller, Request, Response};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::vault::{Vault, crypto::KdfParams};
use std::path::{Path, PathBuf};

/// The tenants of the demo.
pub const TENANTS: [&str; 2] = ["acme", "globex"];

/// The simulated providers: name, behaviour.
pub const PROVIDERS: [(&str, Behaviour); 4] = [
    ("demo-music", Behaviour::Normal),
    (
        "demo-mail",
        Behaviour::RateLimitOnce {
            retry_after_secs: 3,
        },
    ),
    ("demo-chat", Behaviour::Normal),
    ("demo-files", Behaviour::FailFirst(3)),
];

/// The refresh buffer of the demo's providers: a token is refreshed 10 s (at most half its
/// lifetime) before it expires, so 20–60 s tokens refresh while one watches.
pub const REFRESH_BUFFER_SECS: u64 = 10;

/// One connection of the world: its address, the lifetime of its first token, and whether
/// the provider has revoked its grant.
#[derive(Debug, Clone, Copy)]
pub struct Seed {
    pub connection: &'static str,
    pub expires_in: u64,
    pub revoked: bool,
}

const fn seed(connection: &'static str, expires_in: u64) -> Seed {
    Seed {
        connection,
        expires_in,
        revoked: false,
    }
}

/// The connections. The first lifetimes are chosen so the story happens in the first
/// half-minute of the run: the revoked grant fails at ~4 s (`needs_reauth`), the flaky
/// provider's two connections go `retrying` at ~3 s and `connected` a few seconds later,
/// the rate-limited provider answers 429 at ~5 s and succeeds after `Retry-After`, and
/// refreshes with rotation start at ~10 s and go on every 10–50 s.
pub const SEEDS: [Seed; 12] = [
    seed("acme/demo-music/alice", 20),
    seed("acme/demo-music/bob", 30),
    seed("acme/demo-music/carol", 45),
    seed("acme/demo-mail/alice", 10),
    seed("acme/demo-mail/ops", 50),
    seed("acme/demo-chat/alice", 25),
    Seed {
        connection: "acme/demo-chat/old-laptop",
        expires_in: 8,
        revoked: true,
    },
    seed("globex/demo-files/reports", 6),
    seed("globex/demo-files/backup-bot", 7),
    seed("globex/demo-music/dave", 35),
    seed("globex/demo-mail/sales", 55),
    seed("globex/demo-chat/support", 22),
];

/// The Apple Music team and key ids of `acme`'s two signing keys.
pub const APPLE_TENANT: &str = "acme";
pub const APPLE_TEAM_ID: &str = "DEMOTEAM01";
pub const APPLE_KEY_IDS: [&str; 2] = ["DEMOKEY001", "DEMOKEY002"];

/// The demo's fast Argon2id parameters: the least `init` accepts (m = 19 MiB, t = 2,
/// p = 1). For a throw-away vault only; `tokenvault init` defaults to m = 64 MiB, t = 3.
pub fn demo_kdf() -> Result<KdfParams> {
    KdfParams::new(19, 2, 1)
}

/// Where everything of a built world lives.
#[derive(Debug, Clone)]
pub struct World {
    pub dir: PathBuf,
    pub vault: PathBuf,
    pub passphrase_file: PathBuf,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub backup_dir: PathBuf,
    pub identity_file: PathBuf,
    pub recipient: String,
    pub apple_key_files: Vec<PathBuf>,
    pub tenant_key_file: PathBuf,
    pub connections: Vec<String>,
}

/// The specs of the simulated providers, with a fresh random client secret each.
pub fn provider_specs() -> Vec<ProviderSpec> {
    PROVIDERS
        .iter()
        .map(|(name, behaviour)| ProviderSpec {
            name: (*name).to_owned(),
            client_id: format!("{name}-client"),
            client_secret: format!(
                "demo-cs-{}",
                hex::encode(crate::vault::crypto::random_bytes(12))
            ),
            behaviour: *behaviour,
        })
        .collect()
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |e| Error::io(what, e)
}

/// Creates `dir` (and parents) if needed with mode 0700, or checks an existing one.
pub fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(format!("cannot create the directory {}", dir.display())))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io(format!("cannot make {} private (0700)", dir.display())))
}

/// Writes `contents` to a new file `path`, mode 0600 from the start.
fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(format!("cannot create {}", path.display())))?;
    f.write_all(contents)
        .and_then(|_| f.sync_all())
        .map_err(io(format!("cannot write {}", path.display())))
}

/// A new P-256 private key as PKCS#8 PEM (an Apple `.p8` file).
fn generate_p8() -> Result<zeroize::Zeroizing<String>> {
    use p256::pkcs8::EncodePrivateKey;
    // a random scalar below the group order; the chance of a retry is about 2^-32
    let key = loop {
        let bytes = zeroize::Zeroizing::new(crate::vault::crypto::random_bytes(32));
        if let Ok(k) = p256::SecretKey::from_slice(&bytes) {
            break k;
        }
    };
    key.to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
        .map(|pem| zeroize::Zeroizing::new(pem.as_str().to_owned()))
        .map_err(|_| Error::Internal("cannot encode a generated Apple Music key".into()))
}

/// The config file's text: the simulated providers, the Apple Music API stand-in, and the
/// scheduled backups to the demo's age recipient.
pub fn config_text(sim: &SimProviders, backup_dir: &Path, recipient: &str) -> String {
    let mut t = String::from(
        "# tokenvault demo: DEMO ONLY. A throw-away vault with fast KDF parameters\n\
         # (Argon2id m=19 MiB, t=2, p=1) and simulated providers on 127.0.0.1.\n\
         # Never put real tokens in it.\n\n",
    );
    for (name, _) in PROVIDERS {
        t.push_str(&format!(
            "[providers.{name}]\ntoken_url = \"{}\"\nvalidation_url = \"{}\"\nclient_auth = \"basic\"\ndefault_lifetime_secs = 40\nrefresh_buffer_secs = {REFRESH_BUFFER_SECS}\n\n",
            sim.token_url(name),
            sim.validation_url(name),
        ));
    }
    t.push_str(&format!(
        "[apple_music]\napi_base = \"{}\"\n\n",
        sim.apple_api_base()
    ));
    // TOML basic strings: the path is escaped as JSON would (a compatible subset)
    let dir = serde_json::to_string(&backup_dir.display().to_string()).unwrap_or_default();
    t.push_str(&format!(
        "[backup]\ndirectory = {dir}\nrecipients = [\"{recipient}\"]\ninterval_secs = 3600\nretention = 3\n"
    ));
    t
}

/// Builds the world in `dir` (created 0700 if missing; must not hold a vault yet) against
/// the running simulated providers `sim`, whose specs are `specs`.
pub async fn build(dir: &Path, sim: &SimProviders, specs: &[ProviderSpec]) -> Result<World> {
    private_dir(dir)?;
    let vault = dir.join("vault.redb");
    if vault.exists() {
        return Err(Error::VaultExists { path: vault });
    }
    let run_dir = dir.join("run");
    let backup_dir = dir.join("backups");
    let apple_dir = dir.join("apple");
    for d in [&run_dir, &backup_dir, &apple_dir] {
        private_dir(d)?;
    }

    let passphrase = Secret::new(hex::encode(crate::vault::crypto::random_bytes(24)));
    let passphrase_file = dir.join("passphrase");
    write_private(&passphrase_file, passphrase.expose().as_bytes())?;

    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let identity_file = dir.join("backup-identity.txt");
    {
        use secrecy::ExposeSecret;
        let text = zeroize::Zeroizing::new(format!(
            "# tokenvault demo backup identity (DEMO ONLY)\n# public key: {recipient}\n{}\n",
            identity.to_string().expose_secret()
        ));
        write_private(&identity_file, text.as_bytes())?;
    }

    let config = dir.join("config.toml");
    write_private(
        &config,
        config_text(sim, &backup_dir, &recipient).as_bytes(),
    )?;
    let cfg = Config::load(&config)?;

    let v = Vault::init(&vault, &passphrase, demo_kdf()?)?;
    drop(passphrase);
    let engine = Engine::new(v);
    engine.set_config(cfg);
    let caller = Caller::Admin {
        actor: "demo".into(),
    };
    let call = |req: Request| engine.handle(&caller, req);

    for t in TENANTS {
        call(Request::TenantAdd { name: t.into() }).await?;
        for spec in specs {
            call(Request::ClientSet {
                tenant: t.into(),
                provider: spec.name.clone(),
                client_id: spec.client_id.clone(),
                client_secret: Some(Secret::new(spec.client_secret.clone())),
                token_url: None,
                authorization_url: None,
                device_authorization_url: None,
                revocation_url: None,
                params: Default::default(),
            })
            .await?;
        }
    }
    let mut connections = Vec::new();
    for s in SEEDS {
        let provider = s.connection.split('/').nth(1).unwrap_or_default();
        let token = sim.grant(provider, s.expires_in, s.revoked)?;
        call(Request::Put {
            connection: s.connection.into(),
            token,
        })
        .await?;
        connections.push(s.connection.to_owned());
    }

    let mut apple_key_files = Vec::new();
    for key_id in APPLE_KEY_IDS {
        let pem = generate_p8()?;
        let file = apple_dir.join(format!("AuthKey_{key_id}.p8"));
        write_private(&file, pem.as_bytes())?;
        // the first key of a tenant becomes active, the second waits for `activate`
        call(Request::AppleKeyAdd {
            tenant: APPLE_TENANT.into(),
            team_id: APPLE_TEAM_ID.into(),
            key_id: key_id.into(),
            p8: Secret::new(pem.as_str()),
        })
        .await?;
        apple_key_files.push(file);
    }

    let tenant_key_file = dir.join("globex.tenant-key");
    match call(Request::TenantKeyIssue {
        tenant: "globex".into(),
        label: Some("demo".into()),
    })
    .await?
    {
        Response::TenantKey { key, .. } => {
            write_private(&tenant_key_file, format!("{}\n", key.expose()).as_bytes())?
        }
        _ => {
            return Err(Error::Internal(
                "tenant key issue answered something else than a key".into(),
            ));
        }
    }
    engine.flush_audit()?;
    drop(engine);

    write_private(&dir.join("README.txt"), readme_text(dir).as_bytes())?;

    Ok(World {
        dir: dir.to_owned(),
        vault,
        passphrase_file,
        config,
        socket: run_dir.join("tokenvault.sock"),
        backup_dir,
        identity_file,
        recipient,
        apple_key_files,
        tenant_key_file,
        connections,
    })
}

fn readme_text(dir: &Path) -> String {
    format!(
        "This directory is a tokenvault demo world (DEMO ONLY: fast KDF parameters, a random\n\
         passphrase in ./passphrase, simulated providers that only exist while `tokenvault demo`\n\
         runs). Open it again with:\n\n  \
         TOKENVAULT_VAULT={d}/vault.redb TOKENVAULT_PASSPHRASE_FILE={d}/passphrase \\\n    \
         TOKENVAULT_CONFIG={d}/config.toml tokenvault list\n\n\
         Files: vault.redb, passphrase, config.toml, backup-identity.txt (the age identity of\n\
         the backup recipient), apple/AuthKey_*.p8 (acme's Apple Music signing keys),\n\
         globex.tenant-key (a tenant key of globex), backups/ (scheduled backups), run/ (socket).\n",
        d = dir.display()
    )
}
