//! Printing responses: human text on stdout, or one JSON document with `--json`.
//! Never prints a secret except the token of `get`, which is the point of `get`.
//!
//! Every write to stdout goes through `to_stdout`, and every diagnostic line to stderr
//! through `note`: a reader that went away (`tokenvault audit --json | head -1`) ends the
//! output quietly instead of with an error or a panic (what ripgrep and most Unix tools
//! do), and the command exits with the code it would have had.

use crate::contract::{ClientView, ConnectionView, Response, StatusView, TenantView};
use crate::error::{Error, Result};
use crate::vault::records::AuditRecord;
use std::io::Write;

pub use crate::timefmt::{fmt_duration, fmt_in, fmt_time};

/// Runs `f` on a locked stdout and flushes it. A closed stdout (`BrokenPipe`: the reading
/// end of the pipe is gone) is not an error: whatever was left unwritten had no reader.
pub fn to_stdout(
    f: impl FnOnce(&mut std::io::StdoutLock<'static>) -> std::io::Result<()>,
) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match f(&mut out).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::io("cannot write to stdout", e)),
    }
}

/// Prints `resp` on stdout (see `print`), quietly stopping at a closed pipe.
pub fn print_stdout(resp: &Response, as_json: bool, now: i64) -> Result<()> {
    to_stdout(|out| print(out, resp, as_json, now))
}

/// One diagnostic line on stderr. Unlike `eprintln!`, a closed stderr does not panic: the
/// line is dropped.
pub fn note(line: std::fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(line).and_then(|_| err.write_all(b"\n"));
}

fn json<T: serde::Serialize>(out: &mut impl Write, v: &T) -> std::io::Result<()> {
    // `From` keeps the kind of a write error (a closed pipe stays `BrokenPipe`)
    serde_json::to_writer_pretty(&mut *out, v).map_err(std::io::Error::from)?;
    writeln!(out)
}

/// Prints `resp` to `out`; `as_json` selects the JSON form.
pub fn print(
    out: &mut impl Write,
    resp: &Response,
    as_json: bool,
    now: i64,
) -> std::io::Result<()> {
    match resp {
        Response::Token { token, .. } if !as_json => writeln!(out, "{}", token.expose()),
        Response::Token {
            connection,
            token,
            expires_at,
            token_type,
        } => json(
            out,
            &serde_json::json!({
                "connection": connection,
                "access_token": token.expose(),
                "expires_at": expires_at,
                "token_type": token_type,
            }),
        ),
        Response::Done { message } if !as_json => writeln!(out, "{message}"),
        Response::Connection(c) if as_json => json(out, c),
        Response::Connection(c) => show(out, c, now),
        Response::Connections { connections, .. } if as_json => json(out, connections),
        Response::Connections { connections, .. } => list(out, connections, now),
        Response::Tenants { tenants } if as_json => json(out, tenants),
        Response::Tenants { tenants } => tenant_list(out, tenants),
        Response::Clients { clients } if as_json => json(out, clients),
        Response::Clients { clients } => client_list(out, clients),
        Response::Audit { records } if as_json => json(out, records),
        Response::Audit { records } => audit(out, records),
        Response::Status(s) if as_json => json(out, s),
        Response::Status(s) => status(out, s, now),
        Response::Backup(r) if as_json => json(out, r),
        Response::Backup(r) => backup_report(out, r),
        Response::AppleKeys { keys } if as_json => json(out, keys),
        Response::AppleKeys { keys } => super::apple::print_keys(out, keys, now),
        Response::AppleToken(t) if as_json => json(out, t),
        Response::AppleToken(t) => super::apple::print_token(out, t),
        Response::TenantKey { key, .. } if !as_json => writeln!(out, "{}", key.expose()),
        Response::TenantKey {
            tenant,
            key_id,
            key,
        } => json(
            out,
            &serde_json::json!({"tenant": tenant, "key_id": key_id, "key": key.expose()}),
        ),
        Response::TenantKeys { keys } if as_json => json(out, keys),
        Response::TenantKeys { keys } => tenant_keys(out, keys),
        Response::Grants { grants } if as_json => json(out, grants),
        Response::Grants { grants } => {
            if grants.is_empty() {
                return writeln!(out, "no grants");
            }
            writeln!(out, "{:<10}  TENANT", "UID")?;
            for g in grants {
                writeln!(out, "{:<10}  {}", g.uid, g.tenant)?;
            }
            Ok(())
        }
        Response::Metrics { text } if !as_json => write!(out, "{text}"),
        // refresh engine (issue 3)
        Response::Providers { providers } if as_json => json(out, providers),
        Response::Providers { providers } => {
            for p in providers {
                writeln!(
                    out,
                    "{:<14} {:<11} {:<6} {}",
                    p.name,
                    format!("{:?}", p.kind).to_lowercase(),
                    format!("{:?}", p.client_auth).to_lowercase(),
                    p.token_url.as_deref().unwrap_or("-")
                )?;
            }
            Ok(())
        }
        Response::Provider(p) => json(out, p),
        Response::Refreshed { results } if as_json => json(out, results),
        Response::Refreshed { results } => {
            if results.is_empty() {
                return writeln!(out, "nothing to refresh");
            }
            for r in results {
                writeln!(
                    out,
                    "{:<40} {:<9} {}{}",
                    r.connection,
                    r.outcome,
                    r.status.map(|s| s.to_string()).unwrap_or_default(),
                    r.reason
                        .as_deref()
                        .map(|x| format!(" — {x}"))
                        .unwrap_or_default()
                )?;
            }
            Ok(())
        }
        Response::Tested(t) if as_json => json(out, t),
        Response::Tested(t) => writeln!(
            out,
            "{}: valid — {} {}{}; status {}",
            t.connection,
            t.endpoint,
            match t.http_status {
                Some(s) => format!("answered HTTP {s}"),
                None => "accepted the token".into(),
            },
            if t.refreshed {
                " (after refreshing the expired access token)"
            } else {
                ""
            },
            t.status
        ),
        other => json(out, other),
    }
}

fn show(out: &mut impl Write, c: &ConnectionView, now: i64) -> std::io::Result<()> {
    let opt_time = |t: Option<i64>| {
        t.map(|t| format!("{} ({})", fmt_time(t), fmt_in(t, now)))
            .unwrap_or_else(|| "-".into())
    };
    writeln!(out, "connection:       {}", c.connection)?;
    writeln!(out, "status:           {}", c.status)?;
    writeln!(
        out,
        "status since:     {} ({}){}",
        fmt_time(c.status_at),
        fmt_in(c.status_at, now),
        c.reason
            .as_deref()
            .map(|r| format!(" — {r}"))
            .unwrap_or_default()
    )?;
    writeln!(out, "attempts:         {}", c.attempts)?;
    writeln!(out, "expires:          {}", opt_time(c.expires_at))?;
    writeln!(out, "next refresh:     {}", opt_time(c.due_at))?;
    writeln!(
        out,
        "refresh token:    {}",
        if c.has_refresh_token { "yes" } else { "no" }
    )?;
    writeln!(out, "refresh expires:  {}", opt_time(c.refresh_expires_at))?;
    writeln!(
        out,
        "scope:            {}",
        c.scope.as_deref().unwrap_or("-")
    )?;
    writeln!(
        out,
        "token type:       {}",
        c.token_type.as_deref().unwrap_or("-")
    )?;
    writeln!(
        out,
        "id token:         {}",
        if c.has_id_token { "yes" } else { "no" }
    )?;
    if !c.metadata_keys.is_empty() {
        writeln!(out, "metadata fields:  {}", c.metadata_keys.join(", "))?;
    }
    writeln!(out, "refreshes:        {}", c.refresh_count)?;
    writeln!(out, "last refresh:     {}", opt_time(c.last_refresh_at))?;
    writeln!(out, "created:          {}", fmt_time(c.created_at))?;
    writeln!(out, "updated:          {}", fmt_time(c.updated_at))
}

fn list(out: &mut impl Write, cs: &[ConnectionView], now: i64) -> std::io::Result<()> {
    if cs.is_empty() {
        return writeln!(out, "no connections");
    }
    let w = cs
        .iter()
        .map(|c| c.connection.chars().count())
        .max()
        .unwrap_or(10)
        .max(10);
    writeln!(out, "{:<w$}  {:<13}  EXPIRES", "CONNECTION", "STATUS")?;
    for c in cs {
        writeln!(
            out,
            "{:<w$}  {:<13}  {}",
            c.connection,
            c.status.as_str(),
            c.expires_at
                .map(|t| fmt_in(t, now))
                .unwrap_or_else(|| "-".into())
        )?;
    }
    Ok(())
}

fn tenant_list(out: &mut impl Write, ts: &[TenantView]) -> std::io::Result<()> {
    if ts.is_empty() {
        return writeln!(out, "no tenants");
    }
    writeln!(
        out,
        "{:<24}  {:>11}  {:>7}  CREATED",
        "TENANT", "CONNECTIONS", "CLIENTS"
    )?;
    for t in ts {
        writeln!(
            out,
            "{:<24}  {:>11}  {:>7}  {}",
            t.name,
            t.connections,
            t.clients,
            fmt_time(t.created_at)
        )?;
    }
    Ok(())
}

fn client_list(out: &mut impl Write, cs: &[ClientView]) -> std::io::Result<()> {
    if cs.is_empty() {
        return writeln!(out, "no clients");
    }
    writeln!(out, "{:<32}  {:<6}  CLIENT ID", "TENANT/PROVIDER", "SECRET")?;
    for c in cs {
        writeln!(
            out,
            "{:<32}  {:<6}  {}",
            format!("{}/{}", c.tenant, c.provider),
            if c.has_secret { "yes" } else { "no" },
            c.client_id
        )?;
    }
    Ok(())
}

fn audit(out: &mut impl Write, rs: &[AuditRecord]) -> std::io::Result<()> {
    for r in rs {
        writeln!(
            out,
            "{}  {:<16}  {:<14}  {}  {}{}",
            fmt_time(r.at),
            r.actor,
            r.action,
            r.target,
            r.outcome,
            if r.count > 1 {
                format!(" (×{})", r.count)
            } else {
                String::new()
            }
        )?;
    }
    Ok(())
}

fn status(out: &mut impl Write, s: &StatusView, now: i64) -> std::io::Result<()> {
    writeln!(
        out,
        "vault:        {} (format {}, key term {})",
        s.vault, s.format_version, s.key_term
    )?;
    match (&s.daemon_process, s.daemon) {
        (Some(d), _) => writeln!(
            out,
            "daemon:       running, pid {}, tokenvault {} (commit {}), up {}, socket {}",
            d.pid,
            d.version,
            d.commit,
            fmt_duration(d.uptime_secs),
            d.socket
        )?,
        (None, true) => writeln!(out, "daemon:       running")?,
        (None, false) => writeln!(out, "daemon:       not running (opened the file directly)")?,
    }
    if let Some(st) = &s.store {
        writeln!(out, "store:        {} (this node {})", st.url, st.node)?;
        for p in &st.peers {
            writeln!(
                out,
                "  node {} on {} pid {} (seen {:.0} s ago)",
                p.node, p.host, p.pid, p.seen_secs_ago
            )?;
        }
        if let Some(e) = &st.peers_error {
            writeln!(out, "  peers unknown: {e}")?;
        }
    }
    writeln!(
        out,
        "health:       {}",
        if s.healthy { "healthy" } else { "UNHEALTHY" }
    )?;
    for p in &s.problems {
        writeln!(out, "  - {p}")?;
    }
    writeln!(out, "tenants:      {}", s.tenants)?;
    writeln!(out, "connections:  {}", s.connections)?;
    for (k, v) in &s.by_status {
        writeln!(out, "  {k:<14} {v}")?;
    }
    writeln!(
        out,
        "next due:     {}",
        match (s.next_due, &s.next_due_connection) {
            (Some(t), Some(c)) => format!("{c} {}", fmt_in(t, now)),
            _ => "-".into(),
        }
    )?;
    writeln!(out, "expiring <1h: {}", s.expiring_within_hour)?;
    writeln!(
        out,
        "refresh tokens ending within 7 days: {}{}",
        s.refresh_tokens_expiring_within_week,
        if s.refresh_tokens_expiring_within_week > 0 {
            " (reconnect them: `tokenvault list --json`, field refresh_expires_at)"
        } else {
            ""
        }
    )?;
    writeln!(out, "failures <1h: {}", s.failures_last_hour)?;
    if s.last_backup.is_none() {
        writeln!(
            out,
            "last backup:  none recorded (scheduled backups: [backup] in the config)"
        )?;
    }
    if let Some(b) = &s.last_backup {
        let what = if b.ok {
            format!(
                "ok {} ({}){}",
                fmt_time(b.at),
                fmt_in(b.at, now),
                b.path
                    .as_deref()
                    .map(|p| format!(" {p}"))
                    .unwrap_or_default()
            )
        } else {
            format!(
                "FAILED {} ({}): {}",
                fmt_time(b.at),
                fmt_in(b.at, now),
                b.error.as_deref().unwrap_or("unknown error")
            )
        };
        writeln!(out, "last backup:  {what}")?;
        if let Some(n) = b.next_at {
            writeln!(out, "next backup:  {} ({})", fmt_time(n), fmt_in(n, now))?;
        }
        for w in &b.warnings {
            writeln!(out, "backup warning: {w}")?;
        }
    }
    Ok(())
}

fn backup_report(out: &mut impl Write, r: &crate::contract::BackupReport) -> std::io::Result<()> {
    let verb = match r.action.as_str() {
        "export" => "exported to",
        "verify" => "verified",
        "restore" => "restored from",
        other => other,
    };
    writeln!(out, "backup {verb} {}", r.path)?;
    writeln!(
        out,
        "  taken {} from {}{}",
        fmt_time(r.created_at),
        r.source_path,
        r.tenant
            .as_deref()
            .map(|t| format!(" (tenant {t})"))
            .unwrap_or_default()
    )?;
    let counts: Vec<String> = r
        .counts
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    writeln!(out, "  records: {}", counts.join(", "))?;
    writeln!(out, "  {} bytes, sha256 {}", r.bytes, r.sha256)?;
    for n in &r.notes {
        writeln!(out, "  note: {n}")?;
    }
    Ok(())
}

fn tenant_keys(out: &mut impl Write, ks: &[crate::contract::TenantKeyView]) -> std::io::Result<()> {
    if ks.is_empty() {
        return writeln!(out, "no tenant keys");
    }
    writeln!(
        out,
        "{:<16}  {:<22}  {:<22}  LABEL",
        "KEY ID", "CREATED", "REVOKED"
    )?;
    for k in ks {
        writeln!(
            out,
            "{:<16}  {:<22}  {:<22}  {}",
            k.key_id,
            fmt_time(k.created_at),
            k.revoked_at.map(fmt_time).unwrap_or_else(|| "-".into()),
            k.label.as_deref().unwrap_or("")
        )?;
    }
    Ok(())
}
