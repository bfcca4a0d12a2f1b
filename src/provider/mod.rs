//! Token issuers (SPEC §5.5, §5.6): the catalogue as data (`catalogue`), calls to their
//! endpoints and the classification of answers (`oauth`), and the CLI halves of the
//! OAuth flows (`flows`: PKCE, loopback listener, device polling).
//!
//! Must not: touch the vault or decide statuses; `refresh` does that with what this
//! module returns.

pub mod catalogue;
pub mod flows;
pub mod oauth;
pub mod retry_after;

pub use catalogue::{ClientAuth, Provider, ProviderKind};
