//! `tokenvault apple …` (SPEC §3, §7): clap definitions, the engine request each command
//! becomes, and the human output of Apple key lists. The `.p8` file is read here, by the
//! CLI, and travels to the engine (in-process or over the socket) as a `Secret`.

use super::output::{fmt_in, fmt_time};
use crate::contract::Request;
use crate::contract::{AppleKeyView, AppleTokenView};
use crate::error::Result;
use clap::Subcommand;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum AppleCmd {
    /// Manage a tenant's signing keys (.p8, P-256).
    #[command(subcommand)]
    Key(AppleKeyCmd),
    /// Print a valid developer token (cached; renewed when less than a day remains).
    Token {
        /// The tenant whose signing key signs the token.
        tenant: String,
        /// Print a JSON document with the token, its key, issue and expiry times.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AppleKeyCmd {
    /// Add a signing key; the tenant's first key becomes active.
    Add {
        /// The tenant that owns the key.
        tenant: String,
        /// Team ID (10 characters, from your Apple developer account).
        #[arg(long)]
        team_id: String,
        /// Key ID (10 characters; also in the file name AuthKey_KEYID.p8).
        #[arg(long)]
        key_id: String,
        /// The .p8 private key file downloaded from Apple (PKCS#8 PEM, P-256).
        #[arg(long)]
        p8: PathBuf,
    },
    /// List a tenant's signing keys and their states.
    List {
        /// The tenant whose keys to list.
        tenant: String,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Sign developer tokens with this key from now on; the old key becomes retiring.
    Activate {
        /// The tenant that owns the key.
        tenant: String,
        /// The Key ID to activate.
        key_id: String,
    },
    /// Take a key out of use.
    Retire {
        /// The tenant that owns the key.
        tenant: String,
        /// The Key ID to retire.
        key_id: String,
        /// Allow retiring the active key, leaving the tenant without developer tokens.
        #[arg(long)]
        force: bool,
    },
}

/// The request for `cmd`, and whether `--json` was asked for.
pub fn request(cmd: AppleCmd) -> Result<(Request, bool)> {
    Ok(match cmd {
        AppleCmd::Token { tenant, json } => (Request::AppleToken { tenant }, json),
        AppleCmd::Key(AppleKeyCmd::Add {
            tenant,
            team_id,
            key_id,
            p8,
        }) => {
            crate::names::validate_tenant(&tenant)?;
            crate::apple::key::validate_id("Team ID", &team_id)?;
            crate::apple::key::validate_id("Key ID", &key_id)?;
            let p8 = super::passphrase::read_secret_file(&p8, "Apple .p8 key")?;
            (
                Request::AppleKeyAdd {
                    tenant,
                    team_id,
                    key_id,
                    p8,
                },
                false,
            )
        }
        AppleCmd::Key(AppleKeyCmd::List { tenant, json }) => {
            (Request::AppleKeyList { tenant }, json)
        }
        AppleCmd::Key(AppleKeyCmd::Activate { tenant, key_id }) => {
            (Request::AppleKeyActivate { tenant, key_id }, false)
        }
        AppleCmd::Key(AppleKeyCmd::Retire {
            tenant,
            key_id,
            force,
        }) => (
            Request::AppleKeyRetire {
                tenant,
                key_id,
                force,
            },
            false,
        ),
    })
}

/// `apple key list` for people.
pub fn print_keys(out: &mut impl Write, keys: &[AppleKeyView], now: i64) -> std::io::Result<()> {
    if keys.is_empty() {
        return writeln!(out, "no Apple Music signing keys");
    }
    writeln!(
        out,
        "{:<10}  {:<10}  {:<8}  {:<20}  LAST TOKEN EXPIRES",
        "KEY ID", "TEAM ID", "STATE", "ADDED"
    )?;
    for k in keys {
        writeln!(
            out,
            "{:<10}  {:<10}  {:<8}  {:<20}  {}",
            k.key_id,
            k.team_id,
            k.state,
            fmt_time(k.added_at),
            k.last_token_exp
                .map(|t| format!("{} ({})", fmt_time(t), fmt_in(t, now)))
                .unwrap_or_else(|| "-".into())
        )?;
    }
    Ok(())
}

/// `apple token` without `--json`: the token alone, so it composes in `$(...)`.
pub fn print_token(out: &mut impl Write, t: &AppleTokenView) -> std::io::Result<()> {
    writeln!(out, "{}", t.token.expose())
}
