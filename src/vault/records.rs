//! Record types stored in the tables of `schema`. Clear fields are metadata; anything
//! secret is inside a `Sealed` and is only read through `Tx`/`Vault` helpers that open it.

use super::crypto::{KdfParams, Sealed};
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Header {
    pub kdf: KdfParams,
    pub keyring: Sealed,
    pub created_at: i64,
    #[serde(default)]
    pub passphrase_changed_at: Option<i64>,
    #[serde(default)]
    pub rekeyed_at: Option<i64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TenantRecord {
    pub created_at: i64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ClientRecord {
    pub client_id: String,
    #[serde(default)]
    pub secret: Option<Sealed>,
    #[serde(default)]
    pub token_url: Option<String>,
    #[serde(default)]
    pub authorization_url: Option<String>,
    #[serde(default)]
    pub device_authorization_url: Option<String>,
    #[serde(default)]
    pub revocation_url: Option<String>,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    pub updated_at: i64,
}

/// Connection status (SPEC §2, §5.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Connected,
    Retrying,
    TokenExpired,
    NeedsReauth,
    Error,
    Disconnected,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Connected,
        Status::Retrying,
        Status::TokenExpired,
        Status::NeedsReauth,
        Status::Error,
        Status::Disconnected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Connected => "connected",
            Status::Retrying => "retrying",
            Status::TokenExpired => "token_expired",
            Status::NeedsReauth => "needs_reauth",
            Status::Error => "error",
            Status::Disconnected => "disconnected",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Status {
    type Err = crate::error::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                crate::error::Error::invalid(
                    "status",
                    "must be one of connected, retrying, token_expired, needs_reauth, error, disconnected",
                )
            })
    }
}

/// A Unix time as RFC 3339 (UTC, whole seconds), for reasons and messages.
pub fn fmt_unix(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| t.to_string())
}

/// The clear metadata of a connection plus its sealed tokens.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConnectionRecord {
    pub status: Status,
    #[serde(default)]
    pub reason: Option<String>,
    pub status_at: i64,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub refresh_expires_at: Option<i64>,
    /// When the scheduler should next act on it; mirrored in the `DUE` index.
    #[serde(default)]
    pub due_at: Option<i64>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(default)]
    pub has_refresh_token: bool,
    #[serde(default)]
    pub has_id_token: bool,
    /// Names (not values) of extra fields kept from the token response.
    #[serde(default)]
    pub metadata_keys: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
    #[serde(default)]
    pub last_refresh_at: Option<i64>,
    #[serde(default)]
    pub refresh_count: u64,
    pub secrets: Sealed,
}

/// The few fields of a stored `ConnectionRecord` a filter looks at, read from the same
/// bytes without the rest (no allocation; the reason is borrowed from the record): a
/// filtered `list` decodes the whole record only for the connections that pass.
///
/// The reason is a `&str`, not a `Cow`: with rmp-serde a `Cow<str>` is always copied
/// (`#[serde(borrow)]` or not), a `&str` borrows. Decoding even this head costs about
/// 1.7 µs a record (rmp-serde still walks every field of the map), so `list` first rules
/// records out from their raw bytes where it can (see `engine::connections::list`).
#[derive(Debug, Deserialize)]
pub struct ConnectionHead<'a> {
    pub status: Status,
    #[serde(default, borrow)]
    pub reason: Option<&'a str>,
    #[serde(default)]
    pub expires_at: Option<i64>,
}

impl<'a> ConnectionHead<'a> {
    /// The head of a stored record; `None` if the bytes do not read as one (the full
    /// decode then names the damage).
    pub fn read(bytes: &'a [u8]) -> Option<Self> {
        rmp_serde::from_slice(bytes).ok()
    }
}

/// What is inside `ConnectionRecord::secrets`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenSecrets {
    pub access_token: Secret,
    #[serde(default)]
    pub refresh_token: Option<Secret>,
    #[serde(default)]
    pub id_token: Option<Secret>,
    /// Extra fields of the token response. Sealed because nobody vouches for them.
    #[serde(default)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditRecord {
    pub at: i64,
    /// `admin:uid=1000`, `tenant:acme(key k_…)`, `cli:uid=1000`, `scheduler`
    pub actor: String,
    pub action: String,
    #[serde(default)]
    pub tenant: Option<String>,
    /// What it acted on: a connection, tenant, client or key id. Never a secret.
    pub target: String,
    pub outcome: String,
    /// How many identical events this record stands for: hand-outs to the same caller of the
    /// same connection with the same outcome in the same second are counted, not repeated.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub count: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TenantKeyRecord {
    pub tenant: String,
    #[serde(with = "serde_bytes")]
    pub hash: Vec<u8>,
    #[serde(default)]
    pub label: Option<String>,
    pub created_at: i64,
    #[serde(default)]
    pub revoked_at: Option<i64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AppleKeyRecord {
    pub team_id: String,
    pub key_id: String,
    /// PKCS#8 DER of the P-256 private key, sealed.
    pub private_key: Sealed,
    /// `active`, `retiring`, `retired`, `inactive`
    pub state: String,
    pub added_at: i64,
    #[serde(default)]
    pub activated_at: Option<i64>,
    #[serde(default)]
    pub retired_at: Option<i64>,
    /// Expiry of the last developer token signed with this key.
    #[serde(default)]
    pub last_token_exp: Option<i64>,
    /// The current developer token of this key (the token cache of `apple::service`),
    /// sealed to this record like `private_key`. Dropped when the key stops being active.
    #[serde(default)]
    pub cached_token: Option<Sealed>,
}

fn one() -> u64 {
    1
}

fn is_one(n: &u64) -> bool {
    *n == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: Status, reason: Option<&str>, expires_at: Option<i64>) -> ConnectionRecord {
        ConnectionRecord {
            status,
            reason: reason.map(str::to_owned),
            status_at: 5,
            attempts: 2,
            expires_at,
            refresh_expires_at: Some(9),
            due_at: Some(7),
            scope: Some("a b".into()),
            token_type: Some("Bearer".into()),
            has_refresh_token: true,
            has_id_token: false,
            metadata_keys: vec!["x".into()],
            created_at: 1,
            updated_at: 2,
            last_refresh_at: Some(3),
            refresh_count: 4,
            secrets: crate::vault::crypto::Sealed {
                term: 1,
                nonce: vec![1; 24],
                ct: vec![2; 64],
            },
        }
    }

    #[test]
    fn the_head_reads_what_a_stored_record_holds() {
        for (status, reason, exp) in [
            (Status::Connected, None, Some(100)),
            (Status::NeedsReauth, Some("invalid_grant; reconnect"), None),
            (Status::Retrying, Some("HTTP 503"), Some(-1)),
        ] {
            let bytes = rmp_serde::to_vec_named(&record(status, reason, exp)).unwrap();
            let head: ConnectionHead<'_> = rmp_serde::from_slice(&bytes).unwrap();
            assert_eq!(head.status, status);
            // (a `&str`: borrowed from the bytes, never copied)
            assert_eq!(head.reason, reason);
            assert_eq!(head.expires_at, exp);
        }
    }
}
