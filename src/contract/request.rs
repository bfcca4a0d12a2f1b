//! `Request`: every operation as plain data. Its JSON form is the socket protocol's request
//! object (`{"op":"get","connection":"acme/spotify/alice"}`, docs/protocol.md); the op name
//! (`Request::op`) is read from the same serde definition, not from a second table.

use crate::secret::Secret;
use crate::vault::records::Status;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A request. Its JSON form is the socket protocol's request object.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Hello,
    Status,
    TenantAdd {
        name: String,
    },
    TenantList,
    TenantRemove {
        name: String,
        #[serde(default)]
        force: bool,
    },
    ClientSet {
        tenant: String,
        provider: String,
        client_id: String,
        #[serde(default)]
        client_secret: Option<Secret>,
        #[serde(default)]
        token_url: Option<String>,
        #[serde(default)]
        authorization_url: Option<String>,
        #[serde(default)]
        device_authorization_url: Option<String>,
        #[serde(default)]
        revocation_url: Option<String>,
        #[serde(default)]
        params: BTreeMap<String, String>,
    },
    ClientList {
        #[serde(default)]
        tenant: Option<String>,
    },
    ClientRemove {
        tenant: String,
        provider: String,
    },
    Put {
        connection: String,
        /// The token response object (SPEC §3 `put`).
        token: serde_json::Value,
    },
    Get {
        connection: String,
        #[serde(default)]
        min_ttl: Option<u64>,
        #[serde(default)]
        force_refresh: bool,
    },
    Show {
        connection: String,
    },
    List {
        /// `TENANT` or `TENANT/PROVIDER`
        #[serde(default)]
        filter: Option<String>,
        #[serde(default)]
        status: Option<Status>,
        /// At most this many connections (a page); the answer's `next` continues it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
        /// Only connections whose address sorts after this one (exclusive): the `next` of
        /// the previous page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        /// Only connections whose address or reason contains this text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        contains: Option<String>,
    },
    /// Stream events (SPEC §10) until the caller hangs up: answered `watching`, then one
    /// `event` line per event. Only over the socket or a client `Backend::watch`.
    Watch {
        /// As in `list`: `TENANT` or `TENANT/PROVIDER`.
        #[serde(default)]
        filter: Option<String>,
    },
    Remove {
        connection: String,
        #[serde(default)]
        revoke: bool,
    },
    Audit {
        #[serde(default)]
        tenant: Option<String>,
        /// Unix seconds; records at or after it.
        #[serde(default)]
        since: Option<i64>,
    },
    Passwd {
        new_passphrase: Secret,
    },
    Rekey,
    /// Writes an age-encrypted backup to `path` (absolute; opened by the engine's process).
    /// Exactly one of `recipients` (age1…) or `passphrase`.
    BackupExport {
        path: String,
        #[serde(default)]
        tenant: Option<String>,
        #[serde(default)]
        recipients: Vec<String>,
        #[serde(default)]
        passphrase: Option<Secret>,
        #[serde(default)]
        include_audit: bool,
    },
    /// Decrypts and checks a backup; writes nothing. `identity` is the text of an age
    /// identity file; exactly one of `identity` or `passphrase`.
    BackupVerify {
        path: String,
        #[serde(default)]
        identity: Option<Secret>,
        #[serde(default)]
        passphrase: Option<Secret>,
    },
    /// Restores a backup in one transaction; existing tenants are refused unless `replace`.
    BackupRestore {
        path: String,
        #[serde(default)]
        identity: Option<Secret>,
        #[serde(default)]
        passphrase: Option<Secret>,
        #[serde(default)]
        tenant: Option<String>,
        #[serde(default)]
        replace: bool,
    },
    /// Adds an Apple Music signing key; `p8` is the PEM text of the `.p8` file.
    AppleKeyAdd {
        tenant: String,
        team_id: String,
        key_id: String,
        p8: Secret,
    },
    AppleKeyList {
        tenant: String,
    },
    AppleKeyActivate {
        tenant: String,
        key_id: String,
    },
    AppleKeyRetire {
        tenant: String,
        key_id: String,
        /// Allows retiring the active key (the tenant then has no developer token).
        #[serde(default)]
        force: bool,
    },
    /// The tenant's Apple Music developer token.
    AppleToken {
        tenant: String,
    },
    /// Scopes a socket connection to the key's tenant. Handled by the socket server; the
    /// engine refuses it.
    Auth {
        tenant_key: Secret,
    },
    TenantKeyIssue {
        tenant: String,
        #[serde(default)]
        label: Option<String>,
    },
    TenantKeyList {
        tenant: String,
    },
    TenantKeyRevoke {
        tenant: String,
        key_id: String,
    },
    TenantGrant {
        tenant: String,
        uid: u32,
    },
    TenantRevokeGrant {
        tenant: String,
        uid: u32,
    },
    TenantGrantList {
        #[serde(default)]
        tenant: Option<String>,
    },
    Metrics,
    /// Which vault this engine serves (admin): lets the CLI notice a daemon serving
    /// another vault than the one it was pointed at.
    DaemonInfo,
    /// `refresh CONNECTION`: call the provider now (at most once per 10 s).
    Refresh {
        connection: String,
    },
    /// `refresh --due`: one scheduler pass.
    RefreshDue,
    /// `refresh --tenant T`: every connection of a tenant.
    RefreshTenant {
        tenant: String,
    },
    ProviderList,
    ProviderShow {
        name: String,
    },
    /// `connect --flow code`, step 1: the URL to open (PKCE S256, `state` from the CLI).
    ConnectStart {
        connection: String,
        redirect_uri: String,
        state: String,
        code_challenge: String,
        #[serde(default)]
        scopes: Vec<String>,
    },
    /// `connect --flow code`, step 2: the code from the redirect; the engine exchanges it.
    ConnectCode {
        connection: String,
        code: Secret,
        code_verifier: Secret,
        redirect_uri: String,
    },
    /// `connect --flow device`, step 1.
    DeviceStart {
        connection: String,
        #[serde(default)]
        scopes: Vec<String>,
    },
    /// `connect --flow device`, one poll.
    DevicePoll {
        connection: String,
        device_code: Secret,
    },
    /// `connect --flow client-credentials`.
    ConnectClientCredentials {
        connection: String,
        #[serde(default)]
        scopes: Vec<String>,
    },
    /// `test CONNECTION`: the access token against the provider's validation endpoint.
    Test {
        connection: String,
    },
}

impl Request {
    /// The op name, for logs, metrics and audit: the `op` tag of the JSON form.
    pub fn op(&self) -> &'static str {
        super::tag::tag_of(self).unwrap_or("unknown")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `op()` is the `op` field of the JSON form, for unit and struct variants alike, and a
    /// request carrying a secret is not serialised past its tag.
    #[test]
    fn op_is_the_serde_tag() {
        let reqs = [
            Request::Hello,
            Request::RefreshDue,
            Request::Get {
                connection: "a/b/c".into(),
                min_ttl: None,
                force_refresh: false,
            },
            Request::Passwd {
                new_passphrase: Secret::new("x"),
            },
            Request::Watch { filter: None },
        ];
        for r in reqs {
            let json = serde_json::to_value(&r).unwrap();
            assert_eq!(json["op"].as_str(), Some(r.op()), "{json}");
        }
        assert_eq!(Request::TenantList.op(), "tenant_list");
    }
}
