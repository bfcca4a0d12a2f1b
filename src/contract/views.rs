//! The views answers carry: what `show`, `list`, `status`, `tenant list`, `client list`, …
//! may display. Plain data, never a secret (the one exception, `Response::Token` and the
//! other secret-carrying answers, hold a `Secret`, which never prints).

use crate::names::ConnectionId;
use crate::secret::Secret;
use crate::vault::records::{ConnectionRecord, Status};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Metadata of a connection: everything `show` may display, never a secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConnectionView {
    pub connection: String,
    pub tenant: String,
    pub provider: String,
    pub account: String,
    pub status: Status,
    pub reason: Option<String>,
    pub status_at: i64,
    pub attempts: u32,
    pub expires_at: Option<i64>,
    pub refresh_expires_at: Option<i64>,
    pub due_at: Option<i64>,
    pub scope: Option<String>,
    pub token_type: Option<String>,
    pub has_refresh_token: bool,
    pub has_id_token: bool,
    pub metadata_keys: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_refresh_at: Option<i64>,
    pub refresh_count: u64,
}

impl ConnectionView {
    pub fn new(id: &ConnectionId, r: &ConnectionRecord) -> Self {
        ConnectionView {
            connection: id.to_string(),
            tenant: id.tenant.clone(),
            provider: id.provider.clone(),
            account: id.account.clone(),
            status: r.status,
            reason: r.reason.clone(),
            status_at: r.status_at,
            attempts: r.attempts,
            expires_at: r.expires_at,
            refresh_expires_at: r.refresh_expires_at,
            due_at: r.due_at,
            scope: r.scope.clone(),
            token_type: r.token_type.clone(),
            has_refresh_token: r.has_refresh_token,
            has_id_token: r.has_id_token,
            metadata_keys: r.metadata_keys.clone(),
            created_at: r.created_at,
            updated_at: r.updated_at,
            last_refresh_at: r.last_refresh_at,
            refresh_count: r.refresh_count,
        }
    }

    /// The view as of `now`: a `connected` connection whose access token has expired is
    /// shown as `token_expired` (nothing renewed it yet), never as `connected`.
    pub fn at(mut self, now: i64) -> Self {
        if let (Status::Connected, Some(exp)) = (self.status, self.expires_at)
            && exp <= now
        {
            self.status = Status::TokenExpired;
            self.reason = Some(expired_reason(self.has_refresh_token, exp));
        }
        self
    }
}

/// The reason a `connected` connection whose access token expired at `exp` is shown with.
pub fn expired_reason(has_refresh_token: bool, exp: i64) -> String {
    let at = crate::vault::records::fmt_unix(exp);
    if has_refresh_token {
        format!("the access token expired at {at}; the next refresh renews it")
    } else {
        format!(
            "the access token expired at {at} and there is no refresh token: run `tokenvault connect` or `put` a new token"
        )
    }
}

/// Whether `text` can be part of some `expired_reason` (at any time): with every digit
/// read as 0, it must be a substring of one of the two reasons at time 0. False means no
/// derived reason can ever contain it, so a filter for it need not look at the status.
pub fn may_be_in_expired_reason(text: &str) -> bool {
    let zeros = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_ascii_digit() { '0' } else { c })
            .collect()
    };
    let t = zeros(text);
    [true, false]
        .into_iter()
        .any(|r| zeros(&expired_reason(r, 0)).contains(&t))
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TenantView {
    pub name: String,
    pub created_at: i64,
    pub connections: u64,
    pub clients: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClientView {
    pub tenant: String,
    pub provider: String,
    pub client_id: String,
    pub has_secret: bool,
    pub token_url: Option<String>,
    pub authorization_url: Option<String>,
    pub device_authorization_url: Option<String>,
    pub revocation_url: Option<String>,
    pub params: BTreeMap<String, String>,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatusView {
    pub vault: String,
    pub format_version: u32,
    pub key_term: u32,
    pub daemon: bool,
    pub tenants: u64,
    pub connections: u64,
    pub by_status: BTreeMap<String, u64>,
    pub next_due: Option<i64>,
    pub next_due_connection: Option<String>,
    pub expiring_within_hour: u64,
    /// Connections whose refresh token (when its expiry is known) ends within 7 days: the
    /// user must reconnect before then (SPEC §5.3).
    #[serde(default)]
    pub refresh_tokens_expiring_within_week: u64,
    pub failures_last_hour: u64,
    pub healthy: bool,
    /// The last scheduled backup (SPEC §8), when backups are configured.
    #[serde(default)]
    pub last_backup: Option<BackupOutcome>,
    /// Why `healthy` is false, one sentence each with what to run next (counts only: no
    /// connection is named, so `/healthz` can show them to anyone on loopback).
    #[serde(default)]
    pub problems: Vec<String>,
    /// The daemon answering, when it is one (pid, version, socket, uptime).
    #[serde(default)]
    pub daemon_process: Option<DaemonProcessView>,
    /// The shared PostgreSQL store (SPEC §12), when the vault lives in one (admins only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreView>,
}

/// The shared store and the nodes on it, as `status` reports them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoreView {
    /// The URL without its password.
    pub url: String,
    /// This node's id.
    pub node: String,
    /// Nodes that recorded themselves in the last 15 s (this one included when it is a
    /// daemon), or the reason they could not be read.
    pub peers: Vec<PeerView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerView {
    pub node: String,
    pub host: String,
    pub pid: i32,
    pub seen_secs_ago: f64,
}

/// The running daemon, as `status` reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DaemonProcessView {
    pub pid: u32,
    pub version: String,
    pub commit: String,
    pub socket: String,
    pub started_at: i64,
    pub uptime_secs: i64,
}

/// The sentences of `StatusView::problems` for these per-status counts.
pub fn health_problems(by_status: &BTreeMap<String, u64>) -> Vec<String> {
    let n = |s: &str| by_status.get(s).copied().unwrap_or(0);
    let plural = |n: u64, one: &str, many: &str| {
        if n == 1 {
            format!("1 connection {one}")
        } else {
            format!("{n} connections {many}")
        }
    };
    let mut out = Vec::new();
    if n("needs_reauth") > 0 {
        out.push(format!(
            "{}: see `tokenvault list --status needs_reauth`, then `tokenvault connect CONNECTION` (or `put` a new token)",
            plural(n("needs_reauth"), "needs re-authorisation", "need re-authorisation")
        ));
    }
    if n("token_expired") > 0 {
        out.push(format!(
            "{}: see `tokenvault list --status token_expired` and `tokenvault show CONNECTION` for the reason",
            plural(
                n("token_expired"),
                "has an expired access token that could not be renewed",
                "have an expired access token that could not be renewed"
            )
        ));
    }
    if n("error") > 0 {
        out.push(format!(
            "{}: see `tokenvault list --status error` and `tokenvault show CONNECTION`; fix the client with `tokenvault client set`",
            plural(
                n("error"),
                "has a configuration error",
                "have a configuration error"
            )
        ));
    }
    out
}

/// The outcome of refreshing one connection in a `refresh` command.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RefreshResult {
    pub connection: String,
    /// `refreshed`, `skipped` (rate limit / not due) or `failed`
    pub outcome: String,
    pub status: Option<Status>,
    pub expires_at: Option<i64>,
    /// Why it failed or was skipped; never a secret.
    pub reason: Option<String>,
    /// For a failure: the protocol error code (`needs_reauth`, `config_error`,
    /// `provider_unavailable`, …) the CLI turns into its exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
}

/// What `connect --flow device` shows the user (RFC 8628 §3.2). The device code goes back
/// to the engine with each poll.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceStartView {
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    pub expires_in: u64,
    pub interval: Option<u64>,
    pub device_code: Secret,
}

/// A successful `test`: the provider accepted the token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TestView {
    pub connection: String,
    /// Always true in an answer: a rejection is the error `needs_reauth`.
    pub valid: bool,
    /// The validation endpoint, without its query (`scheme://host/path`).
    pub endpoint: String,
    /// What it answered (2xx); `None` for Apple Music's check.
    pub http_status: Option<u16>,
    /// Whether the access token had expired and was refreshed before the check.
    pub refreshed: bool,
    /// The connection's status after the check.
    pub status: Status,
}

/// A tenant key's metadata, as `tenant key list` shows it. Never the key or its hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TenantKeyView {
    pub key_id: String,
    pub tenant: String,
    pub label: Option<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GrantView {
    pub uid: u32,
    pub tenant: String,
}

/// A signing key as `apple key list` shows it: metadata only, never key material.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AppleKeyView {
    pub tenant: String,
    pub key_id: String,
    pub team_id: String,
    /// `active`, `inactive`, `retiring` or `retired`. A `retiring` key whose last token has
    /// expired is shown as `retired`.
    pub state: String,
    pub added_at: i64,
    pub activated_at: Option<i64>,
    pub retired_at: Option<i64>,
    /// When the last developer token signed with this key expires.
    pub last_token_exp: Option<i64>,
}

/// A developer token as `apple token` returns it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppleTokenView {
    pub tenant: String,
    pub key_id: String,
    pub team_id: String,
    pub token: Secret,
    pub issued_at: i64,
    pub expires_at: i64,
    #[serde(default)]
    pub origin: Option<Vec<String>>,
}

/// What an export, verify or restore did. Never holds a secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupReport {
    /// `export`, `verify` or `restore`
    pub action: String,
    pub path: String,
    /// When the backup was taken (Unix seconds).
    pub created_at: i64,
    pub source_path: String,
    pub source_id: String,
    /// The tenant the file (or the restore) was limited to.
    pub tenant: Option<String>,
    /// Records per table in the file (for restore: applied).
    pub counts: BTreeMap<String, u64>,
    pub records: u64,
    /// Size of the age file.
    pub bytes: u64,
    /// SHA-256 of the plaintext records (from the trailer), hex.
    pub sha256: String,
    /// Names of the custom providers the file carries.
    pub providers: Vec<String>,
    /// What an operator should know: replaced tenants, providers missing from the config…
    #[serde(default)]
    pub notes: Vec<String>,
}

/// The last scheduled backup, for `status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupOutcome {
    /// When it ran (Unix seconds).
    pub at: i64,
    pub ok: bool,
    pub path: Option<String>,
    /// Records written, when known.
    pub records: Option<u64>,
    /// What went wrong (never a secret).
    pub error: Option<String>,
    /// When the next one is due, when a scheduler runs.
    pub next_at: Option<i64>,
    /// What an operator should look at: files in the directory tokenvault did not write,
    /// recorded backups that went missing or changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_may_be_in_an_expired_reason_only_if_some_reason_can_hold_it() {
        for yes in [
            "the access token expired",
            "expired at 2026-12-01T14:19",
            "19:08Z; the next",
            "no refresh token",
            "2026",
            "",
        ] {
            assert!(may_be_in_expired_reason(yes), "{yes:?}");
        }
        for no in [
            "user0099999",
            "acme/",
            "invalid_grant",
            "imported",
            "HTTP 503",
        ] {
            assert!(!may_be_in_expired_reason(no), "{no:?}");
        }
        // every substring of real derived reasons is accepted
        for r in [
            expired_reason(false, 1_999_999_999),
            expired_reason(true, 1_764_598_748),
        ] {
            for i in 0..r.len() {
                for j in i..=r.len().min(i + 30) {
                    if let Some(sub) = r.get(i..j) {
                        assert!(may_be_in_expired_reason(sub), "{sub:?}");
                    }
                }
            }
        }
    }
}
