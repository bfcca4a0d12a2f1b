//! Tests of the terminal UI without a terminal: fixed data, a fixed clock, and a fake
//! that answers each `Request` the way the engine would (`Fake::answer`), so the App is
//! driven through its real `update` and the frames are drawn on ratatui's `TestBackend`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod snapshots;
mod transitions;

use super::app::{Action, App, Change, Effect, Key, LinkInfo, Tag};
use crate::contract::{
    AppleKeyView, AppleTokenView, BackupReport, ConnectionView, RefreshResult, Request, Response,
    StatusView, TenantView,
};
use crate::secret::Secret;
use crate::vault::records::{AuditRecord, Status};
use std::collections::BTreeMap;

/// The fixed clock: 2026-09-21 14:13:20 UTC.
pub const NOW: i64 = 1_790_000_000;
/// Strings that stand for secrets: no frame may contain them.
pub const SECRETS: [&str; 3] = [
    "DEVTOKEN-must-never-show-8c1f",
    "AT-must-never-show-77aa",
    "PEM-must-never-show-3b9e",
];

pub fn info() -> LinkInfo {
    LinkInfo {
        place: "daemon /run/user/1000/tokenvault/tokenvault.sock".into(),
        caller: "admin".into(),
        tenant: None,
        recipients: vec!["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p".into()],
    }
}

pub fn conn(
    address: &str,
    status: Status,
    reason: Option<&str>,
    expires: Option<i64>,
) -> ConnectionView {
    let mut parts = address.splitn(3, '/');
    let tenant = parts.next().unwrap_or_default().to_owned();
    let provider = parts.next().unwrap_or_default().to_owned();
    let account = parts.next().unwrap_or_default().to_owned();
    ConnectionView {
        connection: address.into(),
        tenant,
        provider,
        account,
        status,
        reason: reason.map(str::to_owned),
        status_at: NOW - 3600,
        attempts: if status == Status::Retrying { 3 } else { 0 },
        expires_at: expires,
        refresh_expires_at: None,
        due_at: expires.map(|e| e - 300),
        scope: Some("user-read-private playlist-read-private".into()),
        token_type: Some("Bearer".into()),
        has_refresh_token: true,
        has_id_token: false,
        metadata_keys: vec![],
        created_at: NOW - 30 * 86_400,
        updated_at: NOW - 3600,
        last_refresh_at: Some(NOW - 3600),
        refresh_count: 12,
    }
}

pub fn connections() -> Vec<ConnectionView> {
    vec![
        conn(
            "acme/discord/bot",
            Status::Retrying,
            Some("the provider answered 503; retrying in 8s (attempt 3)"),
            Some(NOW + 600),
        ),
        conn("acme/github/ci", Status::Connected, None, None),
        conn(
            "acme/google/ops@acme.example",
            Status::TokenExpired,
            Some("the access token expired at 2026-09-21T14:08:20Z; the next refresh renews it"),
            Some(NOW - 300),
        ),
        conn(
            "acme/spotify/alice",
            Status::Connected,
            None,
            Some(NOW + 3000),
        ),
        conn(
            "acme/spotify/bob",
            Status::NeedsReauth,
            Some(
                "the provider refused the refresh token (invalid_grant): run `tokenvault connect acme/spotify/bob`",
            ),
            None,
        ),
        conn("beta/apple-music/erin", Status::Disconnected, None, None),
        conn(
            "beta/microsoft/carol",
            Status::Connected,
            None,
            Some(NOW + 2 * 86_400),
        ),
        conn(
            "beta/spotify/dave",
            Status::Error,
            Some("invalid_client: fix the client with `tokenvault client set`"),
            Some(NOW + 1200),
        ),
    ]
}

/// `n` generated connections, in address order.
pub fn many(n: usize) -> Vec<ConnectionView> {
    (0..n)
        .map(|i| {
            conn(
                &format!("t{:03}/spotify/user{i:06}", i / 1000),
                Status::Connected,
                None,
                Some(NOW + 3600 + i as i64),
            )
        })
        .collect()
}

pub fn key(tenant: &str, id: &str, state: &str, last_exp: Option<i64>) -> AppleKeyView {
    AppleKeyView {
        tenant: tenant.into(),
        key_id: id.into(),
        team_id: "TEAMID0001".into(),
        state: state.into(),
        added_at: NOW - 90 * 86_400,
        activated_at: (state != "inactive").then_some(NOW - 80 * 86_400),
        retired_at: None,
        last_token_exp: last_exp,
    }
}

pub fn audit() -> Vec<AuditRecord> {
    let r =
        |at: i64, actor: &str, action: &str, target: &str, outcome: &str, count: u64| AuditRecord {
            at,
            actor: actor.into(),
            action: action.into(),
            tenant: target.split('/').next().map(str::to_owned),
            target: target.into(),
            outcome: outcome.into(),
            count,
        };
    // oldest first, as the engine answers
    vec![
        r(
            NOW - 7200,
            "admin:uid=1000",
            "put",
            "acme/spotify/alice",
            "ok",
            1,
        ),
        r(
            NOW - 3600,
            "scheduler",
            "refresh",
            "acme/spotify/alice",
            "ok",
            1,
        ),
        r(
            NOW - 1800,
            "tenant:acme(key k_4f2a)",
            "get",
            "acme/spotify/alice",
            "ok",
            14,
        ),
        r(
            NOW - 900,
            "scheduler",
            "refresh",
            "acme/discord/bot",
            "provider_unavailable",
            1,
        ),
        r(
            NOW - 600,
            "admin:uid=1000",
            "apple_key_add",
            "acme",
            "ok",
            1,
        ),
        r(
            NOW - 60,
            "scheduler",
            "refresh",
            "acme/spotify/bob",
            "needs_reauth",
            1,
        ),
    ]
}

pub fn report(action: &str) -> BackupReport {
    BackupReport {
        action: action.into(),
        path: "/home/op/backups/tokenvault-20260921-141320.age".into(),
        created_at: NOW,
        source_path: "/home/op/.local/share/tokenvault/vault.redb".into(),
        source_id: "v_5e1d".into(),
        tenant: None,
        counts: BTreeMap::from([
            ("apple_keys".to_owned(), 3),
            ("clients".to_owned(), 4),
            ("connections".to_owned(), 8),
            ("tenants".to_owned(), 2),
        ]),
        records: 17,
        bytes: 48_213,
        sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        providers: vec![],
        notes: vec![],
    }
}

/// Answers requests as an engine with the fixture data would.
pub struct Fake {
    pub conns: Vec<ConnectionView>,
    pub keys: Vec<AppleKeyView>,
    /// Requests seen, by op name.
    pub seen: Vec<&'static str>,
    /// Answer every request of this op with this error.
    pub fail: Option<(&'static str, String)>,
}

impl Fake {
    pub fn new() -> Fake {
        Fake::with(connections())
    }

    pub fn with(conns: Vec<ConnectionView>) -> Fake {
        Fake {
            conns,
            keys: vec![
                key("acme", "K0OLDOLDOL", "retiring", Some(NOW + 20 * 86_400)),
                key("acme", "K1AAAAAAAA", "active", Some(NOW + 150 * 86_400)),
                key("acme", "K2BBBBBBBB", "inactive", None),
            ],
            seen: vec![],
            fail: None,
        }
    }

    pub fn status(&self) -> StatusView {
        let mut by_status = BTreeMap::new();
        for c in &self.conns {
            *by_status.entry(c.status.as_str().to_owned()).or_insert(0) += 1;
        }
        StatusView {
            vault: "/home/op/.local/share/tokenvault/vault.redb".into(),
            format_version: 1,
            key_term: 1,
            daemon: true,
            tenants: 2,
            connections: self.conns.len() as u64,
            by_status,
            next_due: Some(NOW + 2),
            next_due_connection: Some("acme/discord/bot".into()),
            expiring_within_hour: 3,
            refresh_tokens_expiring_within_week: 0,
            failures_last_hour: 2,
            healthy: false,
            last_backup: None,
            store: None,
            problems: vec![],
            daemon_process: None,
        }
    }

    pub fn answer(&mut self, req: Request) -> Result<Response, String> {
        let op = req.op();
        self.seen.push(op);
        if let Some((fail_op, msg)) = &self.fail
            && *fail_op == op
        {
            return Err(msg.clone());
        }
        Ok(match req {
            Request::Status => Response::Status(self.status()),
            Request::List {
                status,
                limit,
                after,
                contains,
                ..
            } => {
                let matching: Vec<&ConnectionView> = self
                    .conns
                    .iter()
                    .filter(|c| status.is_none_or(|s| c.status == s))
                    .filter(|c| {
                        contains.as_deref().is_none_or(|t| {
                            c.connection.contains(t)
                                || c.reason.as_deref().is_some_and(|r| r.contains(t))
                        })
                    })
                    .filter(|c| after.as_deref().is_none_or(|a| c.connection.as_str() > a))
                    .collect();
                let limit = limit.unwrap_or(usize::MAX);
                let page: Vec<ConnectionView> =
                    matching.iter().take(limit).map(|c| (*c).clone()).collect();
                let next =
                    (matching.len() > limit).then(|| page.last().unwrap().connection.clone());
                Response::Connections {
                    connections: page,
                    next,
                }
            }
            Request::Show { connection } => Response::Connection(
                self.conns
                    .iter()
                    .find(|c| c.connection == connection)
                    .cloned()
                    .ok_or_else(|| format!("error: no connection {connection}"))?,
            ),
            Request::Audit { .. } => Response::Audit { records: audit() },
            Request::TenantList => Response::Tenants {
                tenants: ["acme", "beta"]
                    .iter()
                    .map(|n| TenantView {
                        name: (*n).into(),
                        created_at: NOW - 100 * 86_400,
                        connections: 4,
                        clients: 2,
                    })
                    .collect(),
            },
            Request::AppleKeyList { tenant } => Response::AppleKeys {
                keys: self
                    .keys
                    .iter()
                    .filter(|k| k.tenant == tenant)
                    .cloned()
                    .collect(),
            },
            Request::AppleKeyActivate { tenant, key_id } => {
                for k in self.keys.iter_mut().filter(|k| k.tenant == tenant) {
                    if k.key_id == key_id {
                        k.state = "active".into();
                    } else if k.state == "active" {
                        k.state = "retiring".into();
                    }
                }
                Response::Done {
                    message: format!("{key_id} is now the active key of {tenant}"),
                }
            }
            Request::AppleKeyRetire { tenant, key_id, .. } => {
                for k in self.keys.iter_mut().filter(|k| k.key_id == key_id) {
                    k.state = "retired".into();
                }
                Response::Done {
                    message: format!("retired {key_id} of {tenant}"),
                }
            }
            Request::AppleKeyAdd { tenant, key_id, .. } => {
                self.keys.push(key(&tenant, &key_id, "inactive", None));
                Response::Done {
                    message: format!("added {key_id} to {tenant}"),
                }
            }
            Request::AppleToken { tenant } => Response::AppleToken(AppleTokenView {
                tenant,
                key_id: "K1AAAAAAAA".into(),
                team_id: "TEAMID0001".into(),
                token: Secret::new(SECRETS[0]),
                issued_at: NOW,
                expires_at: NOW + 180 * 86_400,
                origin: None,
            }),
            Request::Refresh { connection } => {
                let c = self
                    .conns
                    .iter_mut()
                    .find(|c| c.connection == connection)
                    .ok_or_else(|| format!("error: no connection {connection}"))?;
                c.status = Status::Connected;
                c.expires_at = Some(NOW + 3600);
                Response::Refreshed {
                    results: vec![RefreshResult {
                        connection,
                        outcome: "refreshed".into(),
                        status: Some(Status::Connected),
                        expires_at: Some(NOW + 3600),
                        reason: None,
                        error_code: None,
                    }],
                }
            }
            Request::RefreshDue => Response::Refreshed { results: vec![] },
            Request::Remove { connection, .. } => {
                self.conns.retain(|c| c.connection != connection);
                Response::Done {
                    message: format!("removed {connection}"),
                }
            }
            Request::BackupExport { .. } => Response::Backup(report("export")),
            Request::BackupVerify { .. } => Response::Backup(report("verify")),
            other => return Err(format!("error: the fake does not answer {}", other.op())),
        })
    }

    /// The answer to one effect (files named by effects are not read: the fake stands in
    /// for the loop and the engine together).
    pub fn perform(&mut self, fx: Effect) -> Option<Action> {
        let (tag, req) = match fx {
            Effect::Quit => return None,
            Effect::Call { tag, req } => (tag, req),
            Effect::AddAppleKey {
                tenant,
                team_id,
                key_id,
                ..
            } => (
                Tag::Change(Change::AppleKey {
                    tenant: tenant.clone(),
                }),
                Request::AppleKeyAdd {
                    tenant,
                    team_id,
                    key_id,
                    p8: Secret::new(SECRETS[2]),
                },
            ),
            Effect::Export {
                path,
                tenant,
                recipients,
            } => (
                Tag::Backup,
                Request::BackupExport {
                    path,
                    tenant,
                    recipients,
                    passphrase: None,
                    include_audit: false,
                },
            ),
            Effect::Verify { path, .. } => (
                Tag::Backup,
                Request::BackupVerify {
                    path,
                    identity: Some(Secret::new("AGE-SECRET-KEY-1FAKE")),
                    passphrase: None,
                },
            ),
        };
        Some(Action::Answer {
            tag,
            result: self.answer(req),
        })
    }

    /// Carries out `fx` and everything the answers cause.
    pub fn settle(&mut self, app: &mut App, fx: Vec<Effect>) {
        let mut queue: std::collections::VecDeque<Effect> = fx.into();
        let mut n = 0;
        while let Some(fx) = queue.pop_front() {
            n += 1;
            assert!(n < 10_000, "effects do not settle");
            if let Some(a) = self.perform(fx) {
                queue.extend(app.update(a));
            }
        }
    }
}

/// An App at `w`×`h` with the fixture data loaded.
pub fn loaded(w: u16, h: u16) -> (App, Fake) {
    let mut fake = Fake::new();
    let mut app = App::new(info(), NOW, w, h);
    let fx = app.start();
    fake.settle(&mut app, fx);
    (app, fake)
}

/// Presses `keys` and returns every effect they asked for (not carried out).
pub fn press(app: &mut App, keys: &[Key]) -> Vec<Effect> {
    keys.iter()
        .flat_map(|k| app.update(Action::Key(*k)))
        .collect()
}

/// Presses `keys`, carrying out each effect with `fake`.
pub fn press_settle(app: &mut App, fake: &mut Fake, keys: &[Key]) {
    for k in keys {
        let fx = app.update(Action::Key(*k));
        fake.settle(app, fx);
    }
}

/// `"abc"` as key presses.
pub fn typed(s: &str) -> Vec<Key> {
    s.chars().map(Key::Char).collect()
}
