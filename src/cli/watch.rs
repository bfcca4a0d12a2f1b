//! `tokenvault watch [FILTER] [--json]` (SPEC §10): events printed as they happen, one line
//! each, until Ctrl-C (like `kubectl get -w`). Human lines by default, one JSON object per
//! line (the `event` object of the socket's event lines) with `--json`. `demo --headless`
//! prints its events with the same lines (`human_line`).
//!
//! Where the events come from: the daemon when one answers (it scopes them to the caller:
//! a tenant caller sees only its tenant), else the vault file opened in this process with
//! the refresh scheduler running, so the events are the ones this process makes.
//!
//! Must not: print a secret (events carry none; this module adds nothing but names,
//! statuses and times), or decide scope (the daemon does; the local caller is the admin).

use super::args::Global;
use super::output::{self, fmt_in};
use crate::contract::{Event, EventKind};
use crate::error::{Error, Result};
use crate::vault::records::Status;
use std::io::Write;
use std::sync::Arc;
use tokio::sync::broadcast;

/// `TENANT` or `TENANT/PROVIDER`, checked like `list`'s filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    tenant: String,
    provider: Option<String>,
}

impl Filter {
    pub fn parse(s: &str) -> Result<Filter> {
        let (tenant, provider) = match s.split_once('/') {
            Some((t, p)) => (t, Some(p)),
            None => (s, None),
        };
        crate::names::validate_tenant(tenant)?;
        if let Some(p) = provider {
            crate::names::validate_provider(p)?;
        }
        Ok(Filter {
            tenant: tenant.to_owned(),
            provider: provider.map(str::to_owned),
        })
    }

    /// Does `ev` belong to this filter? Vault-wide events (all-tenant backups) do not;
    /// `lagged` always does (the watcher must learn it missed something). With a provider,
    /// only events about that provider's connections.
    pub fn matches(&self, ev: &Event) -> bool {
        if matches!(ev.kind, EventKind::Lagged { .. }) {
            return true;
        }
        if ev.tenant() != Some(self.tenant.as_str()) {
            return false;
        }
        match &self.provider {
            None => true,
            Some(p) => {
                let about = match &ev.kind {
                    EventKind::Admin { target, .. } => target.as_deref(),
                    _ => ev.connection(),
                };
                about.and_then(|c| c.split('/').nth(1)) == Some(p.as_str())
            }
        }
    }
}

/// The column header of the human lines.
pub const HEADER: &str =
    "TIME       CONNECTION / TENANT                 EVENT                      DETAIL";

fn clock(at: i64) -> String {
    chrono::DateTime::from_timestamp(at, 0)
        .map(|d| d.format("%H:%M:%SZ").to_string())
        .unwrap_or_else(|| at.to_string())
}

fn status_word(s: Option<Status>, none: &'static str) -> &'static str {
    s.map(Status::as_str).unwrap_or(none)
}

/// One human line for `ev`; `now` for "expires in".
pub fn human_line(ev: &Event, now: i64) -> String {
    let (subject, what, detail): (String, String, String) = match &ev.kind {
        EventKind::Status {
            connection,
            from,
            to,
            reason,
        } => (
            connection.clone(),
            format!(
                "{} → {}",
                status_word(*from, "new"),
                status_word(*to, "removed")
            ),
            reason.clone().unwrap_or_default(),
        ),
        EventKind::Refreshed {
            connection,
            ok,
            rotated,
            status,
            expires_at,
            ..
        } => {
            let mut d = vec![status.as_str().to_owned()];
            if *rotated {
                d.push("refresh token rotated".into());
            }
            if let Some(e) = expires_at {
                d.push(format!("expires {}", fmt_in(*e, now)));
            }
            (
                connection.clone(),
                if *ok { "refreshed" } else { "refresh failed" }.into(),
                d.join(", "),
            )
        }
        EventKind::Handouts {
            tenant,
            count,
            connections,
        } => (
            tenant.clone(),
            "tokens handed out".into(),
            format!("{count} token(s) of {connections} connection(s)"),
        ),
        EventKind::Admin {
            tenant,
            op,
            target,
            actor,
        } => (
            tenant.clone().unwrap_or_else(|| "(vault)".into()),
            format!("admin {op}"),
            match target {
                Some(t) => format!("{t} by {actor}"),
                None => format!("by {actor}"),
            },
        ),
        EventKind::Backup {
            tenant,
            op,
            ok,
            path,
            message,
        } => (
            tenant.clone().unwrap_or_else(|| "(all tenants)".into()),
            format!("backup {op} {}", if *ok { "ok" } else { "failed" }),
            match path {
                Some(p) => format!("{p}: {message}"),
                None => message.clone(),
            },
        ),
        EventKind::AppleKey {
            tenant,
            key_id,
            change,
        } => (
            tenant.clone(),
            format!("apple key {change}"),
            key_id.clone(),
        ),
        EventKind::Lagged { missed } => (
            "-".into(),
            "missed events".into(),
            format!("{missed} event(s) lost: this watcher read too slowly"),
        ),
    };
    let line = format!("{:<10} {subject:<35} {what:<26} {detail}", clock(ev.at));
    line.trim_end().to_owned()
}

/// The `--json` line for `ev` (the socket's `event` object).
pub fn json_line(ev: &Event) -> String {
    serde_json::to_string(ev).unwrap_or_else(|_| String::from("{}"))
}

/// Prints one event; `Ok(false)` when stdout has gone away (a closed pipe: stop quietly).
pub fn print_event(ev: &Event, json: bool) -> Result<bool> {
    let line = if json {
        json_line(ev)
    } else {
        human_line(ev, chrono::Utc::now().timestamp())
    };
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}").and_then(|_| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(Error::io("cannot write to stdout", e)),
    }
}

/// The next event of a bus receiver: a lag becomes a `lagged` event, a closed bus `None`.
pub async fn next_from_bus(rx: &mut broadcast::Receiver<Event>) -> Option<Event> {
    match rx.recv().await {
        Ok(ev) => Some(ev),
        Err(broadcast::error::RecvError::Lagged(missed)) => Some(Event::new(
            chrono::Utc::now().timestamp(),
            EventKind::Lagged { missed },
        )),
        Err(broadcast::error::RecvError::Closed) => None,
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn interrupted() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| Error::io("cannot handle SIGINT", e))?;
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| Error::io("cannot handle SIGTERM", e))?;
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    Ok(())
}

/// Prints the events of `rx` that pass `filter` until `stop` resolves, the bus closes or
/// stdout goes away.
pub async fn print_bus(
    rx: &mut broadcast::Receiver<Event>,
    filter: Option<&Filter>,
    json: bool,
    stop: impl std::future::Future<Output = ()>,
) -> Result<()> {
    tokio::pin!(stop);
    loop {
        let ev = tokio::select! {
            _ = &mut stop => return Ok(()),
            ev = next_from_bus(rx) => ev,
        };
        let Some(ev) = ev else { return Ok(()) };
        if filter.is_some_and(|f| !f.matches(&ev)) {
            continue;
        }
        if !print_event(&ev, json)? {
            return Ok(());
        }
    }
}

/// `tokenvault watch`.
pub async fn run(g: &Global, filter: Option<String>, json: bool) -> Result<i32> {
    let text = filter.clone();
    let filter = filter.as_deref().map(Filter::parse).transpose()?;
    if let Some(backend) = super::backend::daemon(g).await? {
        // through the daemon: it filters by the caller's scope and `FILTER` (socket op `watch`)
        let mut events = backend.watch(text).await?;
        if !json {
            output::to_stdout(|out| writeln!(out, "{HEADER}"))?;
        }
        let stop = interrupted();
        tokio::pin!(stop);
        loop {
            let ev = tokio::select! {
                _ = &mut stop => return Ok(0),
                ev = events.next() => ev,
            };
            match ev {
                None => return Ok(0),
                Some(Err(e)) => return Err(e),
                Some(Ok(ev)) => {
                    if !print_event(&ev, json)? {
                        return Ok(0);
                    }
                }
            }
        }
    }
    let engine = Arc::new(super::backend::open_local(
        g,
        crate::vault::Access::ReadWrite,
    )?);
    let mut rx = engine.subscribe();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let refresh_rt = crate::refresh::scheduler_runtime()
        .map_err(|e| Error::io("cannot start the refresh runtime", e))?;
    let scheduler = refresh_rt.spawn(crate::refresh::run_scheduler(engine.refresher().clone(), {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }));
    if !json {
        output::to_stdout(|out| writeln!(out, "{HEADER}"))?;
    }
    let printed = print_bus(&mut rx, filter.as_ref(), json, async {
        let _ = interrupted().await;
    })
    .await;
    let _ = stop_tx.send(true);
    match tokio::time::timeout(std::time::Duration::from_secs(11), scheduler).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the scheduler stopped with an error"),
        Err(_) => tracing::warn!("refreshes still in flight were abandoned"),
        _ => {}
    }
    refresh_rt.shutdown_background();
    engine.flush_audit()?;
    printed?;
    Ok(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn status(conn: &str, from: Option<Status>, to: Option<Status>) -> Event {
        Event::status(0, conn, from, to, Some("why".into()))
    }

    #[test]
    fn filters_match_tenant_and_provider() {
        let ev = status("acme/spotify/alice", None, Some(Status::Connected));
        let other = status("globex/spotify/bob", None, Some(Status::Connected));
        let lag = Event::new(0, EventKind::Lagged { missed: 2 });
        let all_backup = Event::new(
            0,
            EventKind::Backup {
                tenant: None,
                op: "export".into(),
                ok: true,
                path: None,
                message: "m".into(),
            },
        );
        let admin = Event::new(
            0,
            EventKind::Admin {
                tenant: Some("acme".into()),
                op: "put".into(),
                target: Some("acme/google/carol".into()),
                actor: "x".into(),
            },
        );
        for (filter, ev, want) in [
            ("acme", &ev, true),
            ("acme", &other, false),
            ("acme", &lag, true),
            ("acme", &all_backup, false),
            ("acme", &admin, true),
            ("acme/spotify", &ev, true),
            ("acme/google", &ev, false),
            ("acme/google", &admin, true),
            ("globex/spotify", &ev, false),
        ] {
            assert_eq!(Filter::parse(filter).unwrap().matches(ev), want, "{filter}");
        }
        for bad in ["Acme", "acme/", "a/b/c", ""] {
            assert!(Filter::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn human_lines_name_connection_and_status() {
        let l = human_line(
            &status(
                "acme/spotify/alice",
                Some(Status::Connected),
                Some(Status::Retrying),
            ),
            0,
        );
        assert!(l.starts_with("00:00:00Z "), "{l}");
        assert!(l.contains("acme/spotify/alice"), "{l}");
        assert!(l.contains("connected → retrying"), "{l}");
        assert!(l.ends_with("why"), "{l}");
        let r = human_line(
            &Event::new(
                100,
                EventKind::Refreshed {
                    connection: "acme/spotify/alice".into(),
                    ok: true,
                    rotated: true,
                    status: Status::Connected,
                    expires_at: Some(160),
                    due_at: Some(130),
                },
            ),
            100,
        );
        assert!(
            r.contains("refreshed") && r.contains("refresh token rotated") && r.contains("in 1m0s"),
            "{r}"
        );
        let n = human_line(&status("acme/spotify/alice", None, None), 0);
        assert!(n.contains("new → removed"), "{n}");
    }

    #[test]
    fn json_lines_are_the_event_objects() {
        let ev = status("acme/spotify/alice", None, Some(Status::Connected));
        let v: serde_json::Value = serde_json::from_str(&json_line(&ev)).unwrap();
        assert_eq!(v["type"], "status");
        assert_eq!(v["connection"], "acme/spotify/alice");
        assert_eq!(v["to"], "connected");
    }
}
