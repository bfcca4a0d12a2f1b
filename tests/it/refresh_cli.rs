//! The refresh engine through the real binary: `provider list/show`, `get --min-ttl`
//! refreshing on demand, `refresh CONNECTION | --due | --tenant`, exit codes of §5.4.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::browser::http_get;
use crate::support::fake_provider::{
    CLIENT_ID, Canned, FakeProvider, cli_vault_with_spotify_client,
};
use crate::support::*;

fn setup(fp: &FakeProvider) -> TestVault {
    cli_vault_with_spotify_client(fp, &[])
}

fn put(tv: &TestVault, conn: &str, mut token: serde_json::Value, expires_in: i64) {
    token["expires_in"] = expires_in.into();
    tv.cmd()
        .args(["put", conn])
        .write_stdin(token.to_string())
        .assert()
        .success();
}

#[test]
fn provider_list_and_show() {
    let tv = TestVault::new();
    let out = tv
        .cmd()
        .args(["provider", "list", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for n in [
        "spotify",
        "google",
        "discord",
        "microsoft",
        "github",
        "apple-music",
        "generic",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    let cfg = tv.file(
        "config.toml",
        b"[providers.acme]\ntoken_url = \"https://acme.example/token\"\nclient_auth = \"basic\"\n[providers.discord]\nrefresh_buffer_secs = 42\n",
    );
    let out = tv
        .cmd()
        .arg("--config")
        .arg(&cfg)
        .args(["provider", "show", "discord", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["refresh_buffer_secs"], 42);
    assert_eq!(v["client_auth"], "post");
    let out = tv
        .cmd()
        .arg("--config")
        .arg(&cfg)
        .args(["provider", "show", "acme", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["client_auth"], "basic");
    assert_eq!(v["builtin"], false);
    tv.cmd().args(["provider", "show", "nope"]).assert().code(4);
}

#[test]
fn get_min_ttl_refreshes_on_demand_and_refresh_commands_work() {
    let fp = FakeProvider::start_background();
    let tv = setup(&fp);
    put(&tv, "acme/spotify/alice", fp.new_family(), 20);
    // 20 s left: a plain get (min-ttl 30) refreshes
    let out = tv
        .cmd()
        .args(["get", "acme/spotify/alice"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "at-1-1\n");
    // plenty left: no provider call
    tv.cmd()
        .args(["get", "acme/spotify/alice", "--min-ttl", "60"])
        .assert()
        .success()
        .stdout("at-1-1\n");
    assert_eq!(fp.requests(), 1);
    // unless min-ttl asks for more than remains
    tv.cmd()
        .args(["get", "acme/spotify/alice", "--min-ttl", "7200"])
        .assert()
        .success()
        .stdout("at-1-2\n");
    tv.cmd()
        .args(["refresh", "acme/spotify/alice", "--json"])
        .assert()
        .success();
    assert_eq!(fp.requests(), 3);
    put(&tv, "acme/spotify/bob", fp.new_family(), 0);
    let out = tv
        .cmd()
        .args(["refresh", "--due", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = v.as_array().unwrap();
    assert_eq!(results.len(), 1, "{v}");
    assert_eq!(results[0]["connection"], "acme/spotify/bob");
    assert_eq!(results[0]["outcome"], "refreshed");
    let out = tv
        .cmd()
        .args(["refresh", "--tenant", "acme", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2, "{v}");
    tv.cmd().args(["refresh"]).assert().code(2);
}

#[test]
fn exit_codes_follow_the_error_mapping() {
    let fp = FakeProvider::start_background();
    let tv = setup(&fp);
    put(&tv, "acme/spotify/alice", fp.new_family(), 0);
    fp.script([Canned::InvalidGrant]);
    let out = tv
        .cmd()
        .args(["get", "acme/spotify/alice"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(stderr(&out).contains("connect"), "{}", stderr(&out));
    let out = tv
        .cmd()
        .args(["show", "acme/spotify/alice", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "needs_reauth");
    assert_eq!(v["attempts"], 1);
    put(&tv, "acme/spotify/carol", fp.new_family(), 0);
    fp.script([
        Canned::Status(503),
        Canned::Status(503),
        Canned::Status(503),
    ]);
    let out = tv
        .cmd()
        .args(["get", "acme/spotify/carol"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    // no token or secret in any message
    assert!(!stderr(&out).contains("rt-"));
}

/// `connect` while a daemon holds the vault goes through the daemon (the token exchange
/// happens there; no passphrase is available to this command).
#[test]
fn connect_goes_through_a_running_daemon() {
    use crate::support::daemon::Daemon;
    let fp = FakeProvider::start_background();
    let tv = setup(&fp);
    let mut d = Daemon::start(&tv, &[]);
    let out = tv
        .daemon_cmd()
        .args([
            "connect",
            "acme/spotify/svc",
            "--flow",
            "client-credentials",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", stderr(&out), d.log());
    assert!(fp.requests() >= 1);
    let out = tv
        .daemon_cmd()
        .args(["get", "acme/spotify/svc"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).trim().is_empty());
    let (status, _) = d.stop();
    assert!(status.success());
}

/// SPEC §5.4: a missing client secret is a configuration error: status `error`, no retry,
/// exit 6, and the provider is never asked.
#[test]
fn missing_client_secret_is_a_configuration_error_without_a_provider_call() {
    let fp = FakeProvider::start_background();
    let tv = TestVault::new();
    tv.cmd().args(["tenant", "add", "acme"]).assert().success();
    // spotify authenticates with client_secret_basic, so it needs a secret
    tv.cmd()
        .args(["client", "set", "acme", "spotify", "--client-id", CLIENT_ID])
        .args(["--token-url", &fp.token_url()])
        .assert()
        .success();
    put(&tv, "acme/spotify/alice", fp.new_family(), 0);
    let out = tv
        .cmd()
        .args(["refresh", "acme/spotify/alice"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("client-secret-file"),
        "{}",
        stderr(&out)
    );
    let show = |tv: &TestVault| -> serde_json::Value {
        let out = tv
            .cmd()
            .args(["show", "acme/spotify/alice", "--json"])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let v = show(&tv);
    assert_eq!(v["status"], "error", "{v}");
    assert!(v["reason"].as_str().unwrap().contains("secret"), "{v}");
    assert_eq!(v["attempts"], 1, "{v}");
    assert_eq!(v["due_at"], serde_json::Value::Null, "not retried: {v}");
    // an on-demand get fails the same way and does not retry either
    let out = tv
        .cmd()
        .args(["get", "acme/spotify/alice"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
    let out = tv
        .cmd()
        .args(["refresh", "--due", "--json"])
        .output()
        .unwrap();
    let due: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(due, serde_json::json!([]), "an error is not due again");
    assert_eq!(show(&tv)["status"], "error");
    assert_eq!(fp.requests(), 0, "the provider must receive no request");
}

/// A running `connect --flow code` through the real binary: the child, its stderr lines
/// as they come, and the authorisation URL it printed.
struct Connect {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
    url: url::Url,
}

impl Connect {
    fn start(tv: &TestVault) -> Connect {
        use std::io::BufRead;
        use std::process::Stdio;
        let mut child = tv
            .std_cmd()
            .args(["connect", "acme/spotify/alice", "--flow", "code"])
            .args(["--scope", "user-read-email", "--timeout", "30"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
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
                .recv_timeout(std::time::Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("no authorisation URL printed ({e}): {seen:?}"));
            seen.push(l.clone());
            if l.starts_with("http") {
                break url::Url::parse(l.trim()).unwrap();
            }
        };
        Connect {
            child,
            lines,
            seen,
            url,
        }
    }

    fn param(&self, name: &str) -> String {
        self.url
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("no {name} in {}", self.url))
    }

    /// Waits (bounded) for the command to end: its exit code, stdout and whole stderr.
    fn finish(mut self) -> (Option<i32>, String, String) {
        use std::io::Read;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("connect did not end: {:?}", self.seen);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        while let Ok(l) = self.lines.recv_timeout(std::time::Duration::from_secs(10)) {
            self.seen.push(l);
        }
        (status.code(), out, self.seen.join("\n"))
    }
}

fn code_flow_setup(fp: &FakeProvider) -> TestVault {
    cli_vault_with_spotify_client(fp, &["--authorization-url", &fp.url("/authorize")])
}

/// Issue 3 point 6 / SPEC §5.6 through the binary: the printed URL asks for PKCE S256 with
/// a state and a loopback redirect; a redirect carrying a forged state is refused even with
/// a code the provider really issued: nothing is exchanged, nothing stored, exit 2.
#[test]
fn connect_code_flow_refuses_a_redirect_with_the_wrong_state() {
    let fp = FakeProvider::start_background();
    let tv = code_flow_setup(&fp);
    let c = Connect::start(&tv);
    assert_eq!(
        c.url.as_str().split('?').next(),
        Some(fp.url("/authorize").as_str())
    );
    assert_eq!(c.param("response_type"), "code");
    assert_eq!(c.param("client_id"), CLIENT_ID);
    assert_eq!(c.param("code_challenge_method"), "S256");
    let challenge = c.param("code_challenge");
    assert_eq!(challenge.len(), 43, "base64url of a SHA-256: {challenge}");
    assert!(
        challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    let state = c.param("state");
    assert!(state.len() >= 16, "a guessable state: {state}");
    let redirect = url::Url::parse(&c.param("redirect_uri")).unwrap();
    assert_eq!(redirect.scheme(), "http");
    assert_eq!(redirect.host_str(), Some("127.0.0.1"));
    assert_eq!(redirect.path(), "/callback");
    assert!(redirect.port().is_some_and(|p| p != 0));

    // the provider issues a real code, but the redirect arrives with another state
    let (status, location, _) = http_get(c.url.as_str());
    assert_eq!(status, 302);
    let mut back = url::Url::parse(&location.unwrap()).unwrap();
    let code = back
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    back.query_pairs_mut()
        .clear()
        .append_pair("code", &code)
        .append_pair("state", "forged-state-0123456789");
    let (status, _, body) = http_get(back.as_str());
    assert_eq!(status, 400, "a refused redirect is a 400: {body}");
    assert!(body.contains("authorisation failed"), "{body}");
    let (code_, out, err) = c.finish();
    assert_eq!(code_, Some(2), "{err}");
    assert!(err.contains("state does not match"), "{err}");
    assert!(out.is_empty(), "{out}");
    assert_eq!(fp.requests(), 0, "the code was exchanged despite the state");
    tv.cmd()
        .args(["get", "acme/spotify/alice"])
        .assert()
        .code(4);
}

/// Issue 3 point 6 through the binary: following the printed URL (provider → loopback
/// redirect with code and state) completes the flow; the exchange carries the PKCE
/// verifier of the printed challenge, and `get` prints the provider's token. A stray
/// request to another path on the listener is answered 404 and does not end the wait.
#[test]
fn connect_code_flow_through_the_binary_stores_the_providers_token() {
    use base64::Engine as _;
    use sha2::Digest;
    let fp = FakeProvider::start_background();
    let tv = code_flow_setup(&fp);
    let c = Connect::start(&tv);
    let redirect = url::Url::parse(&c.param("redirect_uri")).unwrap();
    let (status, _, _) = http_get(redirect.join("/favicon.ico").unwrap().as_str());
    assert_eq!(status, 404);
    let (status, location, _) = http_get(c.url.as_str());
    assert_eq!(status, 302);
    let location = location.unwrap();
    assert!(location.starts_with(redirect.as_str()), "{location}");
    let (status, _, body) = http_get(&location);
    assert_eq!(status, 200);
    assert!(body.contains("authorised"), "{body}");
    let challenge = c.param("code_challenge");
    let redirect_uri = c.param("redirect_uri");
    let (code, _out, err) = c.finish();
    assert_eq!(code, Some(0), "{err}");
    let form = fp.with(|s| s.last_form.clone());
    assert_eq!(form["grant_type"], "authorization_code");
    assert_eq!(form["redirect_uri"], redirect_uri);
    let verifier = &form["code_verifier"];
    assert_eq!(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(verifier.as_bytes())),
        challenge
    );
    let out = tv
        .cmd()
        .args(["get", "acme/spotify/alice"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "at-1-0\n", "{}", stderr(&out));
}
