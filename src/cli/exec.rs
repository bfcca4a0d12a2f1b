//! `tokenvault exec --env VAR=CONNECTION... -- CMD ARGS...` (aws-vault `exec`, 1Password
//! `op run`): fetches a valid access token for each VAR (through the daemon when one
//! answers, else from the vault file, `--min-ttl` honoured), runs CMD with them in its
//! environment, passes signals on, and exits with CMD's code (128+N when CMD died of
//! signal N).
//!
//! Everything that can fail is checked before CMD starts: the VAR names, that there is a
//! CMD, and every token (a connection not found is exit 4 and CMD never runs). The vault
//! file and the daemon connection are closed before CMD starts, so CMD may run `tokenvault`
//! itself.
//!
//! Must not: put a token on a command line or in a log, or hand CMD the vault passphrase
//! (`TOKENVAULT_PASSPHRASE` is removed from its environment; it needs tokens, not the key
//! to every token).

use super::args::Global;
use crate::contract::{Request, Response};
use crate::error::{Error, Result};
use crate::secret::Secret;
use nix::sys::signal::Signal;
use std::ffi::OsString;

/// The signals passed on to CMD.
const FORWARDED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// One `--env VAR=CONNECTION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvSpec {
    pub var: String,
    pub connection: String,
}

fn ordinal(i: usize) -> String {
    let n = i + 1;
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

fn valid_var(v: &str) -> bool {
    let mut b = v.bytes();
    matches!(b.next(), Some(c) if c == b'_' || c.is_ascii_alphabetic())
        && b.all(|c| c == b'_' || c.is_ascii_alphanumeric())
        && v.len() <= 255
}

/// Parses the `--env` values. Errors name the position of the bad value, never the value
/// (it may be anything the user typed, even a pasted token).
pub fn parse_env(specs: &[String]) -> Result<Vec<EnvSpec>> {
    let mut out: Vec<EnvSpec> = Vec::with_capacity(specs.len());
    for (i, s) in specs.iter().enumerate() {
        let Some((var, connection)) = s.split_once('=') else {
            return Err(Error::invalid(
                "--env",
                format!(
                    "the {} --env has no `=`: write VAR=CONNECTION, e.g. --env TOKEN=acme/spotify/alice",
                    ordinal(i)
                ),
            ));
        };
        if !valid_var(var) {
            return Err(Error::invalid(
                "--env",
                format!(
                    "the variable name of the {} --env is not valid: use letters, digits and _ (not starting with a digit), e.g. --env SPOTIFY_TOKEN=acme/spotify/alice",
                    ordinal(i)
                ),
            ));
        }
        if out.iter().any(|e| e.var == var) {
            return Err(Error::invalid(
                "--env",
                format!("{var} is set by more than one --env: give each variable once"),
            ));
        }
        if connection.is_empty() {
            return Err(Error::invalid(
                "--env",
                format!("{var}= names no connection: write {var}=TENANT/PROVIDER/ACCOUNT"),
            ));
        }
        out.push(EnvSpec {
            var: var.to_owned(),
            connection: connection.to_owned(),
        });
    }
    Ok(out)
}

/// The exit code a shell would report for `status`: the code, or 128+N for signal N.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        (None, None) => 1,
    }
}

/// A valid token for each spec, in order: over one daemon connection when a daemon
/// answers, else from the vault file opened once (and closed again before returning).
async fn fetch(g: &Global, specs: &[EnvSpec], min_ttl: u64) -> Result<Vec<(String, Secret)>> {
    let get = |s: &EnvSpec| Request::Get {
        connection: s.connection.clone(),
        min_ttl: Some(min_ttl),
        force_refresh: false,
    };
    let token = |r: Response| match r {
        Response::Token { token, .. } => Ok(token),
        Response::AppleToken(t) => Ok(t.token),
        _ => Err(Error::Internal(
            "the answer to a token request carried no token".into(),
        )),
    };
    let mut out = Vec::with_capacity(specs.len());
    match crate::client::daemon(g).await? {
        Some(mut c) => {
            for s in specs {
                out.push((s.var.clone(), token(c.call(&get(s)).await?)?));
            }
        }
        None => {
            let engine = super::run::open_local(g).await?;
            let caller = super::run::local_caller();
            let mut result = Ok(());
            for s in specs {
                match engine.handle(&caller, get(s)).await.and_then(token) {
                    Ok(t) => out.push((s.var.clone(), t)),
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            engine.flush_audit()?;
            result?;
        }
    }
    Ok(out)
}

/// True when this process is in the foreground process group of its controlling terminal:
/// then a Ctrl-C or Ctrl-\ from that terminal already reached CMD (it is in our group), and
/// passing SIGINT/SIGQUIT on would deliver it twice. Read from /proc/self/stat (fields
/// `pgrp` and `tpgid`), which needs no terminal API.
fn in_terminal_foreground() -> bool {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return false;
    };
    // after "pid (comm) ": state ppid pgrp session tty_nr tpgid …
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    match (
        f.get(2).and_then(|s| s.parse::<i64>().ok()),
        f.get(5).and_then(|s| s.parse::<i64>().ok()),
    ) {
        (Some(pgrp), Some(tpgid)) => tpgid > 0 && pgrp == tpgid,
        _ => false,
    }
}

/// Runs `exec`. Returns CMD's exit code.
pub async fn run(
    g: &Global,
    env: Vec<String>,
    min_ttl: u64,
    command: Vec<OsString>,
) -> Result<i32> {
    use tokio::signal::unix::{SignalKind, signal};
    let specs = parse_env(&env)?;
    let Some((program, args)) = command.split_first() else {
        return Err(Error::invalid(
            "exec",
            "no command given: put it after `--`, e.g. `tokenvault exec --env TOKEN=acme/spotify/alice -- ./job.sh`",
        ));
    };
    let tokens = fetch(g, &specs, min_ttl).await?;

    // Handlers before the child exists: a signal in between must not kill us and orphan it.
    let mut streams = Vec::with_capacity(FORWARDED.len());
    for sig in FORWARDED {
        let s = signal(SignalKind::from_raw(sig as i32))
            .map_err(|e| Error::io(format!("cannot handle {}", sig.as_str()), e))?;
        streams.push((s, sig));
    }

    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).env_remove("TOKENVAULT_PASSPHRASE");
    for (var, token) in &tokens {
        cmd.env(var, token.expose());
    }
    drop(tokens);
    tracing::debug!(variables = specs.len(), "exec: starting the command");
    let spawned = cmd.spawn();
    // the command's copy of the environment (with the tokens) is not needed any more
    drop(cmd);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            // the shell's codes: 127 not found, 126 found but not runnable
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            eprintln!(
                "tokenvault: error: cannot run the command after `--` ({e}): check its name, PATH and permissions"
            );
            return Ok(code);
        }
    };
    let pid = child.id().map(|p| nix::unistd::Pid::from_raw(p as i32));
    loop {
        let next_signal = futures::future::select_all(
            streams
                .iter_mut()
                .map(|(s, sig)| Box::pin(async move { s.recv().await.map(|_| *sig) })),
        );
        tokio::select! {
            status = child.wait() => {
                let status = status.map_err(|e| Error::io("cannot wait for the command", e))?;
                return Ok(exit_code(status));
            }
            (sig, _, _) = next_signal => {
                let Some(sig) = sig else { continue };
                if matches!(sig, Signal::SIGINT | Signal::SIGQUIT) && in_terminal_foreground() {
                    tracing::debug!(signal = sig.as_str(), "exec: the terminal sent it to the command too");
                    continue;
                }
                if let Some(pid) = pid {
                    tracing::debug!(signal = sig.as_str(), "exec: passing the signal on");
                    let _ = nix::sys::signal::kill(pid, sig);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(v: &[&str]) -> Result<Vec<EnvSpec>> {
        parse_env(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn env_specs() {
        let ok = specs(&["TOKEN=acme/spotify/alice", "_X1=acme/github/ci"]).unwrap();
        assert_eq!(ok[0].var, "TOKEN");
        assert_eq!(ok[1].connection, "acme/github/ci");
        for bad in [
            &["TOKEN"][..],
            &["1X=acme/spotify/a"],
            &["A-B=acme/spotify/a"],
            &["=acme/spotify/a"],
            &["A="],
            &["A=acme/spotify/a", "A=acme/spotify/b"],
        ] {
            assert!(specs(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn errors_do_not_quote_the_value() {
        let e = specs(&["ok=x", "s3cr3t-value"]).unwrap_err().to_string();
        assert!(!e.contains("s3cr3t"), "{e}");
        assert!(e.contains("2nd"), "{e}");
        let e = specs(&["bad name!=acme/spotify/a"])
            .unwrap_err()
            .to_string();
        assert!(!e.contains("bad name"), "{e}");
    }

    #[test]
    fn ordinals() {
        let o: Vec<String> = [0, 1, 2, 3, 10, 11, 20, 21].map(ordinal).into();
        assert_eq!(
            o,
            ["1st", "2nd", "3rd", "4th", "11th", "12th", "21st", "22nd"]
        );
    }
}
