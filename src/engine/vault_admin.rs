//! The vault as a whole: `hello`, `status` (counts, next refresh, health and its
//! reasons, the daemon answering, the last scheduled backup), `audit`, `passwd`, `rekey`,
//! `metrics`, `daemon_info`.

use super::{Engine, done};
use crate::contract::{Caller, DaemonProcessView, Response, StatusView, health_problems};
use crate::error::Result;
use crate::metrics::Gauges;
use crate::secret::Secret;

impl Engine {
    pub(super) fn hello(&self, caller: &Caller) -> Response {
        Response::hello(match caller {
            Caller::Admin { .. } => "admin".to_owned(),
            Caller::Tenant { tenant, .. } => format!("tenant:{tenant}"),
        })
    }

    pub(super) fn status(&self, caller: &Caller) -> Result<Response> {
        let now = self.ctx.now();
        let rx = self.ctx.vault().read()?;
        let scope = match caller {
            Caller::Admin { .. } => String::new(),
            Caller::Tenant { tenant, .. } => format!("{tenant}/"),
        };
        let g = Gauges::scan(&rx, &scope, now)?;
        let by_status = g
            .by_shown_status
            .iter()
            .map(|(s, n)| (s.to_string(), *n))
            .collect();
        let next = if scope.is_empty() {
            rx.next_due()?
        } else {
            None
        };
        let tenants = match caller {
            Caller::Admin { .. } => rx.tenants()?.len() as u64,
            Caller::Tenant { .. } => 1,
        };
        let problems = health_problems(&by_status);
        let n = |s: &str| g.by_shown_status.get(s).copied().unwrap_or(0);
        let unhealthy = n("error") + n("needs_reauth") + n("token_expired");
        Ok(Response::Status(StatusView {
            vault: self.ctx.vault().path().display().to_string(),
            format_version: crate::vault::schema::FORMAT_VERSION,
            key_term: self.ctx.vault().current_term(),
            daemon: self.daemon,
            tenants,
            connections: g.connections,
            by_status,
            next_due: next.as_ref().map(|n| n.0),
            next_due_connection: next.map(|n| n.1),
            expiring_within_hour: g.expiring_within_hour,
            refresh_tokens_expiring_within_week: g.refresh_tokens_expiring_within_week,
            failures_last_hour: g.failures_last_hour,
            healthy: unhealthy == 0,
            last_backup: match caller {
                Caller::Admin { .. } => self.backups.status_line(),
                Caller::Tenant { .. } => None,
            },
            problems,
            store: match caller {
                Caller::Admin { .. } => store_view(self.ctx.vault()),
                Caller::Tenant { .. } => None,
            },
            daemon_process: self.daemon_socket.as_ref().map(|(socket, started)| {
                DaemonProcessView {
                    pid: std::process::id(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    commit: crate::COMMIT.into(),
                    socket: socket.clone(),
                    started_at: *started,
                    uptime_secs: (now - started).max(0),
                }
            }),
        }))
    }

    pub(super) fn audit(
        &self,
        caller: &Caller,
        tenant: Option<&str>,
        since: Option<i64>,
    ) -> Result<Response> {
        match &tenant {
            Some(t) => caller.require_tenant(t)?,
            None => caller.require_admin()?,
        }
        self.ctx.flush_audit()?;
        let rx = self.ctx.vault().read()?;
        Ok(Response::Audit {
            records: rx.audit(tenant, since.unwrap_or(0))?,
        })
    }

    pub(super) fn passwd(&self, caller: &Caller, new_passphrase: &Secret) -> Result<Response> {
        caller.require_admin()?;
        self.ctx.vault().change_passphrase(new_passphrase, None)?;
        self.ctx.audit_now(caller, "passwd", None, "vault", "ok")?;
        Ok(done("passphrase changed; no record was rewritten".into()))
    }

    pub(super) fn rekey(&self, caller: &Caller) -> Result<Response> {
        caller.require_admin()?;
        let (term, n) = self.ctx.vault().rekey()?;
        self.ctx
            .audit_now(caller, "rekey", None, "vault", &format!("term {term}"))?;
        Ok(done(format!(
            "new data key term {term}; {n} records re-encrypted"
        )))
    }

    pub(super) fn daemon_info(&self, caller: &Caller) -> Result<Response> {
        caller.require_admin()?;
        Ok(Response::DaemonInfo {
            vault: self.ctx.vault().path().display().to_string(),
            daemon: self.daemon,
            pid: std::process::id(),
        })
    }

    pub(super) fn metrics_text(&self, caller: &Caller) -> Result<Response> {
        caller.require_admin()?;
        Ok(Response::Metrics {
            text: crate::metrics::render(self.ctx.metrics(), self.ctx.vault(), self.ctx.now())?,
        })
    }
}

/// The store line of `status`: the URL (no password), this node, and its live peers.
fn store_view(vault: &crate::vault::Vault) -> Option<crate::contract::StoreView> {
    let store = vault.store()?;
    let (peers, peers_error) = match store.peers(crate::vault::pg::HEARTBEAT * 3) {
        Ok(p) => (
            p.into_iter()
                .map(|(node, host, pid, seen)| crate::contract::PeerView {
                    node,
                    host,
                    pid,
                    seen_secs_ago: seen,
                })
                .collect(),
            None,
        ),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    Some(crate::contract::StoreView {
        url: store.config().display().to_owned(),
        node: store.node().to_owned(),
        peers,
        peers_error,
    })
}
