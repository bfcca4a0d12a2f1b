//! The user-facing halves of the OAuth flows (SPEC §5.6) that run in the CLI: PKCE (RFC
//! 7636, S256), the `state` check, the authorisation URL, the loopback redirect listener
//! at `http://127.0.0.1:PORT/callback` (whose page reports the exchange's outcome, see
//! `Callback`), the check of a redirect URL pasted by hand (`connect --no-listen`), and
//! the RFC 8628 device-flow polling cadence.
//!
//! Messages about a redirect never repeat its parameters (they hold the code, and may hold
//! anything a forger put there), except an `error` from the OAuth vocabulary.
//!
//! The token exchanges themselves happen in the engine (client secrets never leave the
//! vault); this module only carries codes back to it.

use crate::error::{Error, Result};
use crate::secret::Secret;
use base64::Engine as _;
use rand::RngCore;
use sha2::Digest;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// RFC 7636 §4.2: `BASE64URL(SHA256(ASCII(code_verifier)))`.
pub fn s256_challenge(verifier: &str) -> String {
    b64url(&sha2::Sha256::digest(verifier.as_bytes()))
}

/// A PKCE pair. The verifier is 32 random bytes, base64url (43 characters).
#[derive(Debug)]
pub struct Pkce {
    pub verifier: Secret,
    pub challenge: String,
}

impl Pkce {
    pub fn generate() -> Self {
        let mut b = zeroize::Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(b.as_mut());
        let verifier = b64url(b.as_ref());
        let challenge = s256_challenge(&verifier);
        Pkce {
            verifier: Secret::new(verifier),
            challenge,
        }
    }
}

/// A random `state` value (128 bits).
pub fn random_state() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    b64url(&b)
}

/// The URL the user opens: `response_type=code`, PKCE S256, `state`, the provider's
/// authorisation parameters.
pub fn authorization_url(
    endpoint: &str,
    client_id: &str,
    redirect_uri: &str,
    scope: Option<&str>,
    state: &str,
    code_challenge: &str,
    extra: &BTreeMap<String, String>,
) -> Result<String> {
    let mut url = url::Url::parse(endpoint)
        .map_err(|_| Error::Config(format!("authorization URL {endpoint:?} is not a URL")))?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", state)
            .append_pair("code_challenge", code_challenge)
            .append_pair("code_challenge_method", "S256");
        if let Some(s) = scope {
            q.append_pair("scope", s);
        }
        for (k, v) in extra {
            q.append_pair(k, v);
        }
    }
    Ok(url.into())
}

/// The loopback redirect listener of the authorisation-code flow (RFC 8252 §7.3).
#[derive(Debug)]
pub struct Loopback {
    listener: tokio::net::TcpListener,
    port: u16,
}

impl Loopback {
    /// Binds 127.0.0.1:`port` (0 = a free port).
    pub async fn bind(port: u16) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|e| Error::io(format!("cannot listen on 127.0.0.1:{port}"), e))?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::io("cannot read the listener address", e))?
            .port();
        Ok(Loopback { listener, port })
    }

    pub fn redirect_uri(&self) -> String {
        format!("http://127.0.0.1:{}/callback", self.port)
    }

    /// Waits for the browser's redirect to `/callback` and checks `state`. Other paths
    /// (favicon, probes) get a 404 and are ignored. A redirect that fails the check is
    /// answered at once with a page saying so; a good one is held open (`Callback`) so the
    /// page can say "authorised" only once the code has really been exchanged.
    pub async fn wait_for_code(&self, expected_state: &str, timeout: Duration) -> Result<Callback> {
        tokio::time::timeout(timeout, self.accept_loop(expected_state))
            .await
            .map_err(|_| {
                Error::TimedOut(format!(
                    "no redirect arrived at {} within {} s, so nothing was stored: run `connect` again and finish in the browser sooner (--timeout SECONDS waits longer), or use --no-listen and paste the redirected URL when the browser runs on another machine",
                    self.redirect_uri(),
                    timeout.as_secs()
                ))
            })?
    }

    async fn accept_loop(&self, expected_state: &str) -> Result<Callback> {
        loop {
            let (mut sock, _) = self
                .listener
                .accept()
                .await
                .map_err(|e| Error::io("cannot accept the redirect", e))?;
            let mut buf = vec![0u8; 8192];
            let mut n = 0;
            // Read the request head (bounded); a slow or silent peer is dropped.
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while n < buf.len() {
                    let m = sock.read(&mut buf[n..]).await?;
                    if m == 0 {
                        break;
                    }
                    n += m;
                    if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
            if !matches!(read, Ok(Ok(()))) {
                continue;
            }
            let head = String::from_utf8_lossy(&buf[..n]);
            let target = head
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("GET "))
                .and_then(|l| l.split(' ').next())
                .unwrap_or("");
            let Some(query) = target.strip_prefix("/callback") else {
                let _ = sock
                    .write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    )
                    .await;
                continue;
            };
            let query = query.strip_prefix('?').unwrap_or("");
            let params: BTreeMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
            return match check_callback(&params, expected_state) {
                Ok(code) => Ok(Callback { code, sock }),
                Err(e) => {
                    let page = format!(
                        "tokenvault: authorisation failed: {e}\nSee the terminal for what to do.\n"
                    );
                    reply(&mut sock, "400 Bad Request", &page).await;
                    Err(e)
                }
            };
        }
    }
}

async fn reply(sock: &mut tokio::net::TcpStream, status: &str, page: &str) {
    let _ = sock
        .write_all(
            format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{page}",
                page.len()
            )
            .as_bytes(),
        )
        .await;
    let _ = sock.shutdown().await;
}

/// A redirect that passed the `state` check: its authorisation code, and the browser's
/// connection, still waiting for the page.
#[derive(Debug)]
pub struct Callback {
    pub code: Secret,
    sock: tokio::net::TcpStream,
}

impl Callback {
    /// Answers the browser with what became of the exchange: "authorised" only when the
    /// tokens were stored; otherwise what failed (the error's message, which never holds
    /// a secret) and that nothing was stored.
    pub async fn finish<T>(mut self, outcome: &Result<T>) {
        match outcome {
            Ok(_) => {
                reply(
                    &mut self.sock,
                    "200 OK",
                    "tokenvault: authorised; the tokens are stored. You can close this window.\n",
                )
                .await
            }
            Err(e) => {
                let page = format!(
                    "tokenvault: authorisation failed: the provider gave a code, but exchanging it for tokens did not work: {e}\nNothing was stored. See the terminal for what to do.\n"
                );
                reply(&mut self.sock, "502 Bad Gateway", &page).await
            }
        }
    }
}

/// The `error` values of RFC 6749 §4.1.2.1 (and OpenID Connect's): only these are named
/// back to the user; anything else in the parameter is a provider's free text.
const REDIRECT_ERRORS: [&str; 12] = [
    "access_denied",
    "invalid_request",
    "unauthorized_client",
    "unsupported_response_type",
    "invalid_scope",
    "server_error",
    "temporarily_unavailable",
    "interaction_required",
    "login_required",
    "consent_required",
    "account_selection_required",
    "invalid_request_uri",
];

/// Checks a redirect's parameters: `error` first, then `state` (constant time), then
/// `code`. Messages never repeat a parameter's value, except an `error` of the OAuth
/// vocabulary.
pub fn check_callback(params: &BTreeMap<String, String>, expected_state: &str) -> Result<Secret> {
    use subtle::ConstantTimeEq;
    if let Some(e) = params.get("error") {
        let what = match REDIRECT_ERRORS.iter().find(|k| **k == e.as_str()) {
            Some(k) if *k == "access_denied" => {
                "access_denied (the authorisation was declined)".to_owned()
            }
            Some(k) => (*k).to_owned(),
            None => "an error".to_owned(),
        };
        return Err(Error::invalid(
            "authorisation",
            format!(
                "the provider answered {what} instead of a code; nothing was stored: run `connect` again and approve the request"
            ),
        ));
    }
    let state = params.get("state").map(String::as_str).unwrap_or("");
    if !bool::from(state.as_bytes().ct_eq(expected_state.as_bytes())) {
        return Err(Error::invalid(
            "authorisation",
            "the redirect's state does not match (a forged or stale redirect, e.g. from an earlier `connect`); nothing was stored: run `connect` again and use the URL it prints",
        ));
    }
    match params.get("code") {
        Some(c) if !c.is_empty() && c.len() <= 4096 => Ok(Secret::new(c.as_str())),
        _ => Err(Error::invalid(
            "authorisation",
            "the redirect carries no code; nothing was stored: run `connect` again",
        )),
    }
}

/// The redirect URL a user pasted (`connect --no-listen`): the whole
/// `http://127.0.0.1:PORT/callback?code=…&state=…` from the browser's address bar, or just
/// its `?code=…&state=…` part. Checked like a redirect to the listener; messages never
/// quote the pasted text (it holds the code, and may hold anything else).
pub fn check_pasted(pasted: &str, expected_state: &str) -> Result<Secret> {
    const HELP: &str = "paste the whole address the browser was sent to after you approved (it starts with http://127.0.0.1: and holds code= and state=)";
    let text = pasted.trim();
    if text.is_empty() {
        return Err(Error::invalid(
            "pasted URL",
            format!("nothing was pasted; nothing was stored: run `connect` again and {HELP}"),
        ));
    }
    let query = if let Some(q) = text.strip_prefix('?') {
        q.to_owned()
    } else {
        match url::Url::parse(text) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => u.query().unwrap_or("").to_owned(),
            _ => {
                return Err(Error::invalid(
                    "pasted URL",
                    format!(
                        "the pasted text is not a URL; nothing was stored: run `connect` again and {HELP}"
                    ),
                ));
            }
        }
    };
    let params: BTreeMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    if !params.contains_key("code")
        && !params.contains_key("error")
        && !params.contains_key("state")
    {
        return Err(Error::invalid(
            "pasted URL",
            format!(
                "the pasted URL is not the redirect (it has no code, state or error); nothing was stored: run `connect` again and {HELP}"
            ),
        ));
    }
    check_callback(&params, expected_state)
}

/// What one device-flow poll gave.
#[derive(Debug)]
pub enum Poll<T> {
    Done(T),
    Pending,
    SlowDown,
}

/// RFC 8628 §3.5 cadence: wait `interval` (default 5 s) before each poll, add 5 s on each
/// `slow_down`, give up when the device code expires. Runs on tokio time, so tests use the
/// paused clock.
pub async fn poll_device<T, F, Fut>(
    interval: Option<u64>,
    expires_in: u64,
    mut poll: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Poll<T>>>,
{
    // provider values are hostile: bound both so the arithmetic cannot overflow
    let mut interval = Duration::from_secs(interval.unwrap_or(5).clamp(1, 300));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(expires_in.min(86_400));
    loop {
        tokio::time::sleep(interval).await;
        if tokio::time::Instant::now() > deadline {
            return Err(Error::NeedsReauth {
                connection: "device flow".into(),
                reason: "the device code expired before the user approved it; run `connect` again"
                    .into(),
            });
        }
        match poll().await? {
            Poll::Done(t) => return Ok(t),
            Poll::Pending => {}
            Poll::SlowDown => interval += Duration::from_secs(5),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// RFC 7636 appendix B.
    #[test]
    fn pkce_s256_matches_rfc7636_appendix_b() {
        assert_eq!(
            s256_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let p = Pkce::generate();
        assert_eq!(p.verifier.expose().len(), 43);
        assert_eq!(p.challenge, s256_challenge(p.verifier.expose()));
    }

    #[test]
    fn callback_checks_state() {
        let mut p = BTreeMap::new();
        p.insert("code".to_owned(), "C".to_owned());
        p.insert("state".to_owned(), "S".to_owned());
        assert_eq!(check_callback(&p, "S").unwrap().expose(), "C");
        assert!(check_callback(&p, "T").is_err());
        p.insert("error".to_owned(), "access_denied".to_owned());
        assert!(check_callback(&p, "S").is_err());
    }

    #[test]
    fn pasted_urls_are_checked_without_being_quoted() {
        let ok = "http://127.0.0.1:8765/callback?code=C-MARK&state=S";
        assert_eq!(check_pasted(ok, "S").unwrap().expose(), "C-MARK");
        assert_eq!(
            check_pasted(&format!("  {ok}\n"), "S").unwrap().expose(),
            "C-MARK"
        );
        assert_eq!(
            check_pasted("?code=C-MARK&state=S", "S").unwrap().expose(),
            "C-MARK"
        );
        for (pasted, want) in [
            ("", "nothing was pasted"),
            ("C-MARK garbage", "not a URL"),
            ("ftp://127.0.0.1/C-MARK", "not a URL"),
            (
                "http://127.0.0.1:8765/callback?x=C-MARK",
                "not the redirect",
            ),
            (
                "http://127.0.0.1:8765/callback?code=C-MARK&state=T",
                "state does not match",
            ),
            ("http://127.0.0.1:8765/callback?state=S", "no code"),
            (
                "http://127.0.0.1:8765/callback?error=access_denied&state=S",
                "access_denied",
            ),
            (
                "http://127.0.0.1:8765/callback?error=C-MARK&state=S",
                "answered an error",
            ),
        ] {
            let e = check_pasted(pasted, "S").unwrap_err().to_string();
            assert!(e.contains(want), "{pasted}: {e}");
            assert!(!e.contains("C-MARK"), "{pasted}: quoted back: {e}");
        }
    }

    #[test]
    fn authorization_url_has_pkce_and_state() {
        let u = authorization_url(
            "https://p.example/auth?x=1",
            "cid",
            "http://127.0.0.1:5/callback",
            Some("a b"),
            "st",
            "ch",
            &BTreeMap::from([("access_type".to_owned(), "offline".to_owned())]),
        )
        .unwrap();
        assert!(u.starts_with("https://p.example/auth?x=1&response_type=code&client_id=cid"));
        assert!(u.contains("code_challenge_method=S256"));
        assert!(u.contains("scope=a+b"));
        assert!(u.contains("redirect_uri=http%3A%2F%2F127.0.0.1%3A5%2Fcallback"));
        assert!(u.contains("access_type=offline"));
    }

    #[tokio::test(start_paused = true)]
    async fn device_polling_spacing_follows_interval_and_slow_down() {
        let start = tokio::time::Instant::now();
        let mut times = Vec::new();
        let mut n = 0;
        let r = poll_device(Some(5), 600, || {
            times.push(start.elapsed().as_secs());
            n += 1;
            let out = match n {
                1 => Poll::Pending,
                2 => Poll::SlowDown,
                3 => Poll::Pending,
                _ => Poll::Done(42),
            };
            async move { Ok(out) }
        })
        .await
        .unwrap();
        assert_eq!(r, 42);
        assert_eq!(times, vec![5, 10, 20, 30]);
        let e = poll_device(Some(5), 12, || async { Ok(Poll::<()>::Pending) })
            .await
            .unwrap_err();
        assert_eq!(e.exit_code(), 6);
    }
}
