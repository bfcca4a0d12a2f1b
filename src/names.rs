//! Names of SPEC §2: tenants, providers, accounts and `TENANT/PROVIDER/ACCOUNT` connection
//! addresses, and the endpoint URLs an operator may configure. Validation lives here so
//! every front end refuses the same inputs.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;

/// `[a-z0-9][a-z0-9_-]{0,62}`
pub fn validate_tenant(name: &str) -> Result<()> {
    validate_slug("tenant name", name)
}

/// Providers follow the tenant rule (built-ins such as `apple-music` fit it).
pub fn validate_provider(name: &str) -> Result<()> {
    validate_slug("provider name", name)
}

fn validate_slug(what: &'static str, name: &str) -> Result<()> {
    let bytes = name.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 63
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-');
    if ok {
        Ok(())
    } else {
        // not quoted back: an invalid name is free-form input (it may be a pasted secret)
        Err(Error::invalid(
            what,
            "must match [a-z0-9][a-z0-9_-]{0,62}: lowercase letters, digits, '-' and '_', starting with a letter or digit, at most 63",
        ))
    }
}

/// Any non-empty UTF-8 without `/`, at most 255 bytes (and no control characters, which
/// would only ever be a mistake and make terminal output lie).
pub fn validate_account(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 255
        || name.contains('/')
        || name.chars().any(char::is_control)
    {
        return Err(Error::invalid(
            "account name",
            "must be 1-255 bytes of UTF-8 without '/' or control characters",
        ));
    }
    Ok(())
}

/// A connection address `TENANT/PROVIDER/ACCOUNT`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ConnectionId {
    pub tenant: String,
    pub provider: String,
    pub account: String,
}

impl ConnectionId {
    pub fn new(tenant: &str, provider: &str, account: &str) -> Result<Self> {
        validate_tenant(tenant)?;
        validate_provider(provider)?;
        validate_account(account)?;
        Ok(ConnectionId {
            tenant: tenant.to_owned(),
            provider: provider.to_owned(),
            account: account.to_owned(),
        })
    }

    pub fn parse(s: &str) -> Result<Self> {
        let mut parts = s.splitn(3, '/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(t), Some(p), Some(a)) => Self::new(t, p, a),
            _ => Err(Error::invalid(
                "connection",
                "an address has the form TENANT/PROVIDER/ACCOUNT, e.g. acme/spotify/alice",
            )),
        }
    }

    /// The record key in the connections table.
    pub fn key(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.tenant, self.provider, self.account)
    }
}

impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionId({self})")
    }
}

impl TryFrom<String> for ConnectionId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::parse(&s)
    }
}

impl From<ConnectionId> for String {
    fn from(c: ConnectionId) -> String {
        c.to_string()
    }
}

/// Endpoint overrides must be absolute http(s) URLs. Plain http is allowed only for
/// loopback (tests, local development).
pub fn validate_url(url: &str) -> Result<()> {
    let ok = url.starts_with("https://")
        || url.starts_with("http://127.0.0.1")
        || url.starts_with("http://localhost")
        || url.starts_with("http://[::1]");
    if !ok || url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        // the URL itself is not quoted back: a mistyped argument may hold a secret
        return Err(Error::invalid(
            "URL",
            "an endpoint URL must be https:// (or http:// on loopback), at most 2048 bytes, without spaces",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names() {
        for ok in ["a", "acme", "0x", "a-b_c", &"a".repeat(63)] {
            assert!(validate_tenant(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "_a", "A", "acme!", "a/b", &"a".repeat(64), "é"] {
            assert!(validate_tenant(bad).is_err(), "{bad}");
        }
        // an invalid name is never quoted back
        let e = validate_provider("Sp0tify-S3CRET").unwrap_err().to_string();
        assert!(!e.contains("S3CRET"), "{e}");
        let e = ConnectionId::parse("S3CRET").unwrap_err().to_string();
        assert!(!e.contains("S3CRET"), "{e}");
    }

    #[test]
    fn connection_ids() {
        let c = ConnectionId::parse("acme/spotify/alice@example.com").unwrap();
        assert_eq!(c.account, "alice@example.com");
        assert_eq!(c.to_string(), "acme/spotify/alice@example.com");
        assert!(ConnectionId::parse("acme/spotify/ünïcode name").is_ok());
        for bad in [
            "acme",
            "acme/spotify",
            "acme/spotify/",
            "acme/spotify/a/b",
            "Acme/x/y",
        ] {
            assert!(ConnectionId::parse(bad).is_err(), "{bad}");
        }
        assert!(ConnectionId::parse(&format!("a/b/{}", "x".repeat(256))).is_err());
    }

    proptest::proptest! {
        #[test]
        fn parse_display_roundtrip(t in "[a-z0-9][a-z0-9_-]{0,20}", p in "[a-z0-9][a-z0-9-]{0,10}", a in "[^/\\p{Cc}]{1,60}") {
            let c = ConnectionId::parse(&format!("{t}/{p}/{a}")).unwrap();
            proptest::prop_assert_eq!(ConnectionId::parse(&c.to_string()).unwrap(), c);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,300}") {
            let _ = ConnectionId::parse(&s);
        }
    }
}
