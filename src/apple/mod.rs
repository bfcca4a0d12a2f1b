//! Apple Music (SPEC §7): tenants' signing keys, developer tokens and the validation of
//! Music-User-Tokens.
//!
//! - [`key`]: reading a `.p8` file (PKCS#8 PEM, P-256 only) and checking Team / Key IDs.
//! - [`jwt`]: signing a developer token (ES256 JWS) and the token policy from the config.
//! - [`user`]: `GET {api_base}/v1/me/storefront` with both tokens, mapped to an `Outcome`.
//! - [`signing`]: signing keys (add / list / activate / retire) and the developer-token
//!   hand-out with its cache.
//! - [`validation`]: checking `apple-music` connections (Music-User-Tokens) and recording
//!   the result as their status.
//!
//! Owns: the key states (`inactive` → `active` → `retiring` → `retired`), the developer-token
//! cache, and the rule that nothing signed by a key other than the tenant's active one is
//! handed out. Must not: touch ciphers (the vault seals and opens key material), speak the
//! socket framing, print anything, or import the engine (`AppleMusic` is built on a
//! `Context`).

pub mod jwt;
pub mod key;
pub mod signing;
pub mod user;
pub mod validation;

/// The provider name of Apple Music connections (Music-User-Tokens) and of the two-part
/// developer-token address `TENANT/apple-music`.
pub const PROVIDER: &str = "apple-music";

/// Key states as stored in `AppleKeyRecord::state`.
pub mod state {
    /// Added, never activated (or added while another key was active).
    pub const INACTIVE: &str = "inactive";
    /// Signs the tenant's developer tokens. At most one per tenant.
    pub const ACTIVE: &str = "active";
    /// Replaced by another key; tokens it signed may still be in use until
    /// `last_token_exp`. Never signs again and none of its tokens are handed out.
    pub const RETIRING: &str = "retiring";
    /// Out of use.
    pub const RETIRED: &str = "retired";
}

pub use signing::AppleState;

use crate::context::Context;
use std::sync::Arc;

/// The Apple Music handle: a `Context` and the token cache / HTTP client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppleMusic {
    pub(crate) ctx: Context,
    state: Arc<AppleState>,
}

impl AppleMusic {
    pub fn new(ctx: Context) -> AppleMusic {
        AppleMusic {
            ctx,
            state: Arc::default(),
        }
    }
}
pub use user::{Outcome, validate_user_token};

/// If `address` is the developer-token address `TENANT/apple-music` (two parts, no
/// account), its tenant. `get` answers such an address with the tenant's developer token.
pub fn developer_token_tenant(address: &str) -> Option<&str> {
    let (tenant, provider) = address.split_once('/')?;
    (provider == PROVIDER).then_some(tenant)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn developer_token_addresses() {
        assert_eq!(developer_token_tenant("acme/apple-music"), Some("acme"));
        assert_eq!(developer_token_tenant("acme/apple-music/alice"), None);
        assert_eq!(developer_token_tenant("acme/spotify"), None);
        assert_eq!(developer_token_tenant("acme"), None);
    }
}
