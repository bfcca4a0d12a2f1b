//! `Response`: every answer as plain data. Its JSON form (with `"ok":true` and the request's
//! `"id"` added by the framing) is the socket protocol's answer object.

use super::event::Event;
use super::views::*;
use crate::secret::Secret;
use crate::vault::records::AuditRecord;
use serde::{Deserialize, Serialize};

/// A response. Its JSON form (with `"ok":true` added by the server) is the protocol's.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Response {
    Hello {
        server: String,
        version: String,
        protocol: u32,
        format_version: u32,
        caller: String,
    },
    Done {
        message: String,
    },
    Token {
        connection: String,
        token: Secret,
        expires_at: Option<i64>,
        token_type: Option<String>,
    },
    Connection(ConnectionView),
    Connections {
        connections: Vec<ConnectionView>,
        /// More connections follow: ask again with `after` set to this.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    },
    /// `watch` accepted: events follow.
    Watching,
    /// One event of a `watch`: `{"kind":"event","event":{"type":…,"at":…,…}}`.
    Event {
        event: Event,
    },
    Tenants {
        tenants: Vec<TenantView>,
    },
    Clients {
        clients: Vec<ClientView>,
    },
    Audit {
        records: Vec<AuditRecord>,
    },
    Status(StatusView),
    Backup(BackupReport),
    AppleKeys {
        keys: Vec<AppleKeyView>,
    },
    AppleToken(AppleTokenView),
    /// A newly issued tenant key: shown once, never stored in clear.
    TenantKey {
        tenant: String,
        key_id: String,
        key: Secret,
    },
    TenantKeys {
        keys: Vec<TenantKeyView>,
    },
    Grants {
        grants: Vec<GrantView>,
    },
    /// Prometheus text exposition.
    Metrics {
        text: String,
    },
    DaemonInfo {
        vault: String,
        daemon: bool,
        pid: u32,
    },
    Providers {
        providers: Vec<crate::provider::Provider>,
    },
    Provider(Box<crate::provider::Provider>),
    Refreshed {
        results: Vec<RefreshResult>,
    },
    AuthorizationUrl {
        url: String,
    },
    DeviceAuthorization(Box<DeviceStartView>),
    DevicePending {
        slow_down: bool,
    },
    /// `test`: the provider accepted the access token.
    Tested(TestView),
}

impl Response {
    /// The answer to `hello`, for a caller described as `caller` (`admin`, `tenant:NAME`,
    /// or `unauthorized` before a tenant key was presented).
    pub fn hello(caller: impl Into<String>) -> Response {
        Response::Hello {
            server: "tokenvault".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            protocol: super::PROTOCOL_VERSION,
            format_version: crate::vault::schema::FORMAT_VERSION,
            caller: caller.into(),
        }
    }
}
