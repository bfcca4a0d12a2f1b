//! Which events a `watch` shows (SPEC §10): the caller's scope and the optional filter,
//! the same as `list`'s (`TENANT` or `TENANT/PROVIDER`). The socket server and the
//! in-process client both decide with [`WatchScope`], so a watcher sees the same events
//! either way. Plain data and checks on itself: no I/O.

use super::caller::Caller;
use super::event::{Event, EventKind};
use crate::error::Result;

/// What one watcher may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchScope {
    /// Only this tenant's events (a tenant caller always has one).
    tenant: Option<String>,
    /// Only connection events under `TENANT/PROVIDER/`.
    prefix: Option<String>,
}

impl WatchScope {
    /// The scope of `caller` watching with `filter`. A filter naming another tenant than a
    /// tenant caller's own is `forbidden`, a malformed one `bad_request`, as for `list`.
    pub fn new(caller: &Caller, filter: Option<&str>) -> Result<WatchScope> {
        let filter = filter.filter(|f| !f.is_empty());
        match (filter, caller) {
            (Some(f), _) => {
                let mut parts = f.splitn(2, '/');
                let t = parts.next().unwrap_or("");
                crate::names::validate_tenant(t)?;
                caller.require_tenant(t)?;
                let prefix = match parts.next() {
                    Some(p) if !p.is_empty() => {
                        crate::names::validate_provider(p)?;
                        Some(format!("{t}/{p}/"))
                    }
                    _ => None,
                };
                Ok(WatchScope {
                    tenant: Some(t.to_owned()),
                    prefix,
                })
            }
            (None, Caller::Tenant { tenant, .. }) => Ok(WatchScope {
                tenant: Some(tenant.clone()),
                prefix: None,
            }),
            (None, Caller::Admin { .. }) => Ok(WatchScope {
                tenant: None,
                prefix: None,
            }),
        }
    }

    /// Whether this watcher sees `event`. Vault-wide events (no tenant) reach only an
    /// unfiltered admin watcher; a `TENANT/PROVIDER` filter shows only that provider's
    /// connection events; a watcher's own `lagged` notice is always shown.
    pub fn admits(&self, event: &Event) -> bool {
        if matches!(event.kind, EventKind::Lagged { .. }) {
            return true;
        }
        if let Some(prefix) = &self.prefix {
            return event
                .connection()
                .is_some_and(|c| c.starts_with(prefix.as_str()));
        }
        match &self.tenant {
            Some(t) => event.tenant() == Some(t.as_str()),
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin() -> Caller {
        Caller::Admin { actor: "t".into() }
    }

    fn tenant(t: &str) -> Caller {
        Caller::Tenant {
            tenant: t.into(),
            actor: "t".into(),
        }
    }

    fn status(conn: &str) -> Event {
        Event::status(1, conn, None, None, None)
    }

    #[test]
    fn scopes_follow_the_caller_and_the_filter() {
        let acme = status("acme/spotify/alice");
        let acme_gh = status("acme/github/alice");
        let globex = status("globex/spotify/bob");
        let vault_wide = Event::new(
            1,
            EventKind::Backup {
                tenant: None,
                op: "backup_export".into(),
                ok: true,
                path: None,
                message: String::new(),
            },
        );
        let lag = Event::new(1, EventKind::Lagged { missed: 2 });
        let all = WatchScope::new(&admin(), None).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            [&acme, &globex, &vault_wide, &lag]
                .iter()
                .all(|e| all.admits(e))
        );
        let own = WatchScope::new(&tenant("acme"), None).unwrap_or_else(|e| panic!("{e}"));
        assert!(own.admits(&acme) && own.admits(&lag));
        assert!(!own.admits(&globex) && !own.admits(&vault_wide));
        let sp = WatchScope::new(&admin(), Some("acme/spotify")).unwrap_or_else(|e| panic!("{e}"));
        assert!(sp.admits(&acme) && !sp.admits(&acme_gh) && !sp.admits(&globex));
        let e = WatchScope::new(&tenant("acme"), Some("globex")).unwrap_err();
        assert_eq!(e.code(), "forbidden");
        let e = WatchScope::new(&admin(), Some("Not A Tenant")).unwrap_err();
        assert_eq!(e.code(), "bad_request");
    }
}
