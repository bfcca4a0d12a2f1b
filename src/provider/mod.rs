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

/// HOOK for the Apple Music module (issue 5, SPEC §7): validates an `apple-music`
/// connection's Music-User-Token with `GET {api_base}/v1/me/storefront`. The refresh
/// engine calls it wherever it would refresh such a connection (scheduler, `refresh`,
/// `get --force-refresh`). `Ok(())` keeps the connection `connected`; `InvalidGrant` →
/// `needs_reauth`; `Transient`/`RateLimited` → retried like any refresh.
///
/// Not implemented here: it answers a configuration error until issue 5 lands.
pub async fn apple_validate(engine: &Engine, connection: &str) -> Result<(), CallError> {
    let _ = (engine, connection);
    Err(CallError::Config(
        "validation of apple-music connections is not available in this build".into(),
    ))
}
