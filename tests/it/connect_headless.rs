//! The authorisation-code flow at its edges, through the real
//! binary against the fake provider:
//!
//! - headless (`--no-listen`): the printed URL carries the documented redirect URI and
//!   nothing listens on it; pasting the address the browser was sent to completes the
//!   exchange, and `get` prints the provider's token; a pasted URL with a wrong state, an
//!   `error=` parameter, or garbage is refused without being repeated;
//! - the loopback page says "authorised" only once the exchange succeeded, and what failed
//!   otherwise;
//! - a redirect (or paste) that never comes ends with exit 1, not "usage".
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::browser::{http_get, param};
use crate::support::fake_provider::{Canned, FakeProvider, cli_vault_with_spotify_client};
use crate::support::*;
use std::io::{BufRead, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

fn code_flow_vault(fp: &FakeProvider) -> TestVault {
    cli_vault_with_spotify_client(fp, &["--authorization-url", &fp.url("/authorize")])
}

/// A running `connect --flow code`: the child, its stdin, its stderr lines as they come,
/// and the authorisation URL it printed.
struct Connect {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
    url: String,
}

impl Connect {
    fn start(tv: &TestVault, extra: &[&str]) -> Connect {
        let mut child = tv
            .std_cmd()
            .args(["connect", "acme/spotify/alice", "--flow", "code"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let err = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(err).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        let url = loop {
            let l = lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("no authorisation URL printed ({e}): {seen:?}"));
            seen.push(l.clone());
            if l.starts_with("http") {
                break l.trim().to_owned();
            }
        };
        Connect {
            child,
            stdin,
            lines,
            seen,
            url,
        }
    }

    /// Waits until the command asks for the pasted URL (or for the redirect).
    fn wait_for_prompt(&mut self, needle: &str) {
        while !self.seen.iter().any(|l| l.contains(needle)) {
            let l = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("no {needle:?} ({e}): {:?}", self.seen));
            self.seen.push(l);
        }
    }

    fn paste(&mut self, text: &str) {
        let mut stdin = self.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        // dropped: end of input after the line
    }

    /// Waits (bounded) for the command to end: exit code, stdout, whole stderr.
    fn finish(mut self) -> (Option<i32>, String, String) {
        use std::io::Read;
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("connect did not end: {:?}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        drop(self.stdin.take());
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(10)) {
            self.seen.push(l);
        }
        (status.code(), out, self.seen.join("\n"))
    }
}

/// Follows the authorisation URL at the fake provider: the address the browser is sent
/// to (with a real code and the state).
fn approve(c: &Connect) -> String {
    let (status, location, body) = http_get(&c.url);
    assert_eq!(status, 302, "{body}");
    location.unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn no_listen_prints_the_url_and_completes_with_the_pasted_redirect() {
    let fp = FakeProvider::start_background();
    let tv = code_flow_vault(&fp);

    // the default redirect URI is the documented fixed port
    let mut c = Connect::start(&tv, &["--no-listen", "--timeout", "30"]);
    assert_eq!(
        param(&c.url, "redirect_uri").as_deref(),
        Some("http://127.0.0.1:8765/callback"),
        "{}",
        c.url
    );
    c.paste(""); // an empty line: refused, nothing stored
    let (exit, _, err) = c.finish();
    assert_eq!(exit, Some(2), "{err}");
    assert!(err.contains("nothing was pasted"), "{err}");

    let port = free_port();
    let port_s = port.to_string();
    let mut c = Connect::start(&tv, &["--no-listen", "--port", &port_s, "--timeout", "30"]);
    let redirect = format!("http://127.0.0.1:{port}/callback");
    assert_eq!(
        param(&c.url, "redirect_uri").as_deref(),
        Some(redirect.as_str())
    );
    assert_eq!(
        param(&c.url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    c.wait_for_prompt("paste it here");
    // headless: nothing listens on the redirect port
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "--no-listen listens on {port}"
    );
    // the "browser on another machine" approves; its address bar shows this
    let location = approve(&c);
    assert!(location.starts_with(&redirect), "{location}");
    let code = param(&location, "code").unwrap();
    c.paste(&location);
    let (exit, out, err) = c.finish();
    assert_eq!(exit, Some(0), "{err}");
    assert!(out.contains("acme/spotify/alice"), "{out}");
    assert!(
        !err.contains(&code) && !out.contains(&code),
        "the code was printed: {err}"
    );
    let form = fp.with(|s| s.last_form.clone());
    assert_eq!(form["grant_type"], "authorization_code");
    assert_eq!(form["redirect_uri"], redirect);
    let out = tv
        .cmd()
        .args(["get", "acme/spotify/alice"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "at-1-0\n", "{}", stderr(&out));
}

#[test]
fn no_listen_refuses_a_bad_paste_without_repeating_it() {
    let fp = FakeProvider::start_background();
    let tv = code_flow_vault(&fp);
    type Paste = fn(&str, &str) -> String;
    let cases: [(&str, Paste, &str); 5] = [
        (
            "wrong state",
            |loc, _| {
                let code = param(loc, "code").unwrap();
                format!("http://127.0.0.1:8765/callback?code={code}&state=PASTED-MARK-state")
            },
            "state does not match",
        ),
        (
            "error",
            |_, state| {
                format!(
                    "http://127.0.0.1:8765/callback?error=access_denied&state={state}&error_description=PASTED-MARK"
                )
            },
            "access_denied",
        ),
        (
            "unknown error",
            |_, state| format!("http://127.0.0.1:8765/callback?error=PASTED-MARK&state={state}"),
            "answered an error",
        ),
        (
            "garbage",
            |_, _| "PASTED-MARK is not what you wanted".into(),
            "not a URL",
        ),
        (
            "another URL",
            |_, _| "https://example.test/PASTED-MARK?x=1".into(),
            "not the redirect",
        ),
    ];
    for (what, make, want) in cases {
        let mut c = Connect::start(&tv, &["--no-listen", "--timeout", "30"]);
        c.wait_for_prompt("paste it here");
        let state = param(&c.url, "state").unwrap();
        let location = approve(&c);
        let pasted = make(&location, &state);
        c.paste(&pasted);
        let (exit, out, err) = c.finish();
        assert_eq!(exit, Some(2), "{what}: {err}");
        assert!(err.contains(want), "{what}: {err}");
        assert!(err.contains("nothing was stored"), "{what}: {err}");
        assert!(
            !err.contains("PASTED-MARK"),
            "{what}: the paste was repeated: {err}"
        );
        if let Some(code) = param(&pasted, "code") {
            assert!(!err.contains(&code), "{what}: the code was repeated: {err}");
        }
        assert!(out.is_empty(), "{what}: {out}");
    }
    assert_eq!(fp.requests(), 0, "a refused paste was exchanged");
    tv.cmd()
        .args(["get", "acme/spotify/alice"])
        .assert()
        .code(4);
}

#[test]
fn the_loopback_page_says_authorised_only_after_the_exchange() {
    let fp = FakeProvider::start_background();
    let tv = code_flow_vault(&fp);

    // the provider refuses the code at the token endpoint: the page says so
    let c = Connect::start(&tv, &["--timeout", "30"]);
    let location = approve(&c);
    fp.script([Canned::InvalidGrant]);
    let (status, _, body) = http_get(&location);
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("authorisation failed"), "{body}");
    assert!(body.contains("invalid_grant"), "{body}");
    assert!(body.contains("Nothing was stored"), "{body}");
    assert!(!body.contains("authorised"), "{body}");
    let code = param(&location, "code").unwrap();
    assert!(!body.contains(&code), "{body}");
    let (exit, _, err) = c.finish();
    assert_eq!(exit, Some(6), "{err}");
    tv.cmd()
        .args(["get", "acme/spotify/alice"])
        .assert()
        .code(4);

    // a working exchange: by the time the page arrives the tokens were obtained
    let c = Connect::start(&tv, &["--timeout", "30"]);
    let location = approve(&c);
    let before = fp.requests();
    let (status, _, body) = http_get(&location);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("authorised; the tokens are stored"), "{body}");
    assert_eq!(
        fp.requests(),
        before + 1,
        "the page came before the exchange"
    );
    let (exit, _, err) = c.finish();
    assert_eq!(exit, Some(0), "{err}");
    tv.cmd()
        .args(["get", "acme/spotify/alice"])
        .assert()
        .success();
}

#[test]
fn a_redirect_or_paste_that_never_comes_is_a_timeout_not_a_usage_error() {
    let fp = FakeProvider::start_background();
    let tv = code_flow_vault(&fp);
    let c = Connect::start(&tv, &["--timeout", "1"]);
    let (exit, _, err) = c.finish();
    assert_eq!(exit, Some(1), "{err}");
    assert!(err.contains("no redirect arrived"), "{err}");
    assert!(err.contains("within 1 s"), "{err}");
    assert!(err.contains("--no-listen"), "{err}");
    assert!(!err.contains("invalid"), "{err}");

    // headless, with stdin held open and nothing pasted
    let c = Connect::start(&tv, &["--no-listen", "--timeout", "1"]);
    let (exit, _, err) = c.finish();
    assert_eq!(exit, Some(1), "{err}");
    assert!(err.contains("no URL was pasted within 1 s"), "{err}");
    assert_eq!(fp.requests(), 0);
}
