//! `Event`: what happened, as the in-process bus carries it and the socket op `watch`
//! streams it (SPEC §10): status changes, refreshes, hand-out summaries, admin changes,
//! backups, Apple key changes. Plain data; no event carries a secret (only names,
//! statuses, times, counts and validated addresses).
//!
//! JSON form: `{"type":"status","at":…,"connection":…,"from":…,"to":…,"reason":…}`.

use crate::vault::records::Status;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unix seconds.
    pub at: i64,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A connection's status changed (`from: None`: it was created; `to: None`: removed).
    Status {
        connection: String,
        from: Option<Status>,
        to: Option<Status>,
        reason: Option<String>,
    },
    /// A refresh finished: `ok` with the new expiry, or failed with the status it left.
    Refreshed {
        connection: String,
        ok: bool,
        /// The provider rotated the refresh token.
        rotated: bool,
        status: Status,
        expires_at: Option<i64>,
        /// When the scheduler takes the connection up next (`None`: not by itself, as
        /// after `needs_reauth`).
        #[serde(default)]
        due_at: Option<i64>,
    },
    /// Tokens handed out since the last summary, per tenant (at most one a second).
    Handouts {
        tenant: String,
        count: u64,
        connections: u64,
    },
    /// An operator changed something (`op` is the request's op name).
    Admin {
        tenant: Option<String>,
        op: String,
        target: Option<String>,
        actor: String,
    },
    /// A backup was exported, verified or restored, by hand or on schedule.
    Backup {
        tenant: Option<String>,
        op: String,
        ok: bool,
        path: Option<String>,
        message: String,
    },
    /// An Apple Music signing key was added, activated, retired, or its token renewed.
    AppleKey {
        tenant: String,
        key_id: String,
        change: String,
    },
    /// This watcher was too slow and missed `missed` events.
    Lagged { missed: u64 },
}

/// A status change with its time: the usual way code states one (it becomes an `Event`).
#[derive(Debug, Clone, PartialEq)]
pub struct StatusEvent {
    pub connection: String,
    pub from: Option<Status>,
    pub to: Option<Status>,
    pub reason: Option<String>,
    pub at: i64,
}

impl From<StatusEvent> for Event {
    fn from(e: StatusEvent) -> Event {
        Event::status(e.at, e.connection, e.from, e.to, e.reason)
    }
}

impl Event {
    pub fn new(at: i64, kind: EventKind) -> Event {
        Event { at, kind }
    }

    /// A status change of `connection`.
    pub fn status(
        at: i64,
        connection: impl Into<String>,
        from: Option<Status>,
        to: Option<Status>,
        reason: Option<String>,
    ) -> Event {
        Event::new(
            at,
            EventKind::Status {
                connection: connection.into(),
                from,
                to,
                reason,
            },
        )
    }

    /// The tenant the event belongs to; `None` for vault-wide events (an all-tenant backup,
    /// a lag notice), which only admin watchers see (and every watcher its own `lagged`).
    pub fn tenant(&self) -> Option<&str> {
        match &self.kind {
            EventKind::Status { connection, .. } | EventKind::Refreshed { connection, .. } => {
                connection.split('/').next()
            }
            EventKind::Handouts { tenant, .. } | EventKind::AppleKey { tenant, .. } => Some(tenant),
            EventKind::Admin { tenant, .. } | EventKind::Backup { tenant, .. } => tenant.as_deref(),
            EventKind::Lagged { .. } => None,
        }
    }

    /// The status change this event is, if it is one.
    pub fn as_status(&self) -> Option<StatusEvent> {
        match &self.kind {
            EventKind::Status {
                connection,
                from,
                to,
                reason,
            } => Some(StatusEvent {
                connection: connection.clone(),
                from: *from,
                to: *to,
                reason: reason.clone(),
                at: self.at,
            }),
            _ => None,
        }
    }

    /// The connection address, for events about one connection.
    pub fn connection(&self) -> Option<&str> {
        match &self.kind {
            EventKind::Status { connection, .. } | EventKind::Refreshed { connection, .. } => {
                Some(connection)
            }
            _ => None,
        }
    }

    /// The `type` of the JSON form.
    pub fn type_name(&self) -> &'static str {
        super::tag::tag_of(&self.kind).unwrap_or("unknown")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn json_form_is_flat_with_type_and_at() {
        let e = Event::status(
            7,
            "acme/spotify/alice",
            Some(Status::Connected),
            Some(Status::Retrying),
            None,
        );
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "status");
        assert_eq!(v["at"], 7);
        assert_eq!(v["connection"], "acme/spotify/alice");
        assert_eq!(v["to"], "retrying");
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
        assert_eq!(e.type_name(), "status");
        assert_eq!(e.tenant(), Some("acme"));
        let lag = Event::new(1, EventKind::Lagged { missed: 3 });
        assert_eq!(
            serde_json::to_string(&lag).unwrap(),
            r#"{"at":1,"type":"lagged","missed":3}"#
        );
        assert_eq!(lag.tenant(), None);
    }
}
