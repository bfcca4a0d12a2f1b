//! Token issuers (SPEC §5.5, §5.6): the catalogue as data (`catalogue`), calls to their
//! endpoints and the classification of answers (`oauth`), and the CLI halves of the
//! OAuth flows (`flows`: PKCE, loopback listener, device polling).
//!
//! Must not: touch the vault or decide statuses; `refresh` does that with what this
//! module returns.

pub mod catalogue;
pub mod flows;
pub mod oauth;

pub use catalogue::{ClientAuth, Provider, ProviderKind};

use crate::engine::Engine;
use crate::provider::oauth::CallError;

/// Validates an `apple-music` connection's Music-User-Token with
/// `GET {api_base}/v1/me/storefront` (SPEC §7). The refresh engine calls it wherever it
/// would refresh such a connection (scheduler, `refresh`, `get --force-refresh`) and
/// records the outcome like any refresh: `Ok(())` keeps the connection `connected`;
/// `InvalidGrant` (401/403) → `needs_reauth`; `Transient`/`RateLimited` → retried;
/// `Config` → `error`.
pub async fn apple_validate(engine: &Engine, connection: &str) -> Result<(), CallError> {
    engine.apple_check(connection).await
}
