//! A stateful fake OAuth provider: a real HTTP server (axum) on 127.0.0.1:0.
//!
//! - `/token`: refresh_token, authorization_code (PKCE S256 checked), device_code and
//!   client_credentials grants; client authentication by Basic or form body (recorded);
//!   rotating refresh tokens `rt-F-G` (family F, generation G) with reuse detection:
//!   presenting a superseded token revokes the whole family (optionally with a one-step
//!   grace for the crash test); a script of canned answers (503, 429 + Retry-After,
//!   invalid_grant, invalid_client, delays, error bodies quoting the refresh token)
//!   consumed before normal handling; an optional prefix on every issued token and a
//!   settable client secret, so hygiene tests can search logs for distinctive strings.
//! - `/authorize`: redirects to `redirect_uri` with a code and the `state`.
//! - `/device`: RFC 8628 device authorisation; polls follow a script.
//! - `/user`: PAT validation (`ghp-valid` is valid).
//! - `/me`: a validation endpoint (`tokenvault test`): answers the next status of
//!   `validation_script` (200 when empty) to a Bearer request, 401 without one, and
//!   records every Bearer token it was shown.
//!
//! Knobs for specific tests: a `token_prefix` that makes every issued token distinctive
//! (secret-hygiene tests search for it), a configurable client secret, a `latency` applied
//! to every `/token` request, and a count of the most `/token` requests in flight at once.
//! For hostile-provider tests: `repeat`, answers served in a cycle once the script is
//! empty (a provider answering 429 forever), the arrival time of every `/token` request
//! (`call_times`), and answers that break the connection or are not JSON.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use sha2::Digest;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const CLIENT_ID: &str = "client-1";
pub const CLIENT_SECRET: &str = "secret-1";

/// A canned answer consumed by the next `/token` request.
#[derive(Debug, Clone)]
pub enum Canned {
    Status(u16),
    RateLimited(Option<String>),
    InvalidGrant,
    InvalidClient,
    Delay(Duration),
    Pending,
    SlowDown,
    /// 400 `invalid_grant` whose `error_description` quotes the presented refresh token
    /// (some providers do).
    EchoInvalidGrant,
    /// 500 with a plain-text body quoting the presented refresh token and client secret.
    EchoServerError,
    /// This status with a plain-text body quoting the refresh token presented.
    EchoStatus(u16),
    /// 200 whose body breaks off: the connection drops mid-answer (a network error).
    Hangup,
    /// 200 with a body that is not JSON.
    Garbage,
    /// The normal answer (rotation and all), for scripts and `repeat` cycles.
    Normal,
}

#[derive(Debug, Default)]
pub struct Inner {
    pub token_requests: u64,
    /// "basic" or "post" per request
    pub auth_seen: Vec<String>,
    pub script: VecDeque<Canned>,
    /// family -> current generation (None = revoked)
    pub families: HashMap<u64, Option<u64>>,
    pub next_family: u64,
    pub rotate: bool,
    pub omit_refresh_token: bool,
    /// Accept the generation just before the current one (once) without revoking.
    pub grace_previous: bool,
    pub expires_in: u64,
    pub reuse_detected: u64,
    pub codes: HashMap<String, String>,
    /// tokio instants (as ms since start) of device polls
    pub poll_times_ms: Vec<u128>,
    pub started: Option<tokio::time::Instant>,
    pub last_form: BTreeMap<String, String>,
    /// Prepended to every issued access and refresh token (`{prefix}at-F-G`).
    pub token_prefix: String,
    /// The client secret the provider accepts.
    pub client_secret: String,
    /// How long every `/token` request takes (tokio time, so a paused clock skips it).
    pub latency: Option<Duration>,
    /// `/token` requests being answered now, and the most there ever were at once.
    pub in_flight: u64,
    pub max_in_flight: u64,
    /// Statuses `/me` answers, in order; 200 once empty.
    pub validation_script: VecDeque<u16>,
    /// The Bearer tokens `/me` was shown.
    pub validation_seen: Vec<String>,
    /// Served in a cycle whenever the script is empty (empty: normal handling).
    pub repeat: Vec<Canned>,
    /// When each `/token` request arrived (tokio time: paused in paused tests).
    pub call_times: Vec<tokio::time::Instant>,
}

impl Inner {
    /// The next canned answer: the script's, else the next of the `repeat` cycle.
    fn next_canned(&mut self) -> Option<Canned> {
        if self.script.is_empty() {
            let again = self.repeat.clone();
            self.script.extend(again);
        }
        self.script.pop_front()
    }
}

#[derive(Clone)]
pub struct FakeProvider {
    pub base: String,
    pub state: Arc<Mutex<Inner>>,
    _rt: Option<Arc<tokio::runtime::Runtime>>,
}

fn json(status: StatusCode, v: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn err(status: u16, code: &str) -> Response {
    json(
        StatusCode::from_u16(status).unwrap(),
        serde_json::json!({"error": code, "error_description": "see docs"}),
    )
}

fn parse_rt(prefix: &str, rt: &str) -> Option<(u64, u64)> {
    let mut it = rt.strip_prefix(prefix)?.strip_prefix("rt-")?.split('-');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

impl Inner {
    fn issue(&mut self, family: u64, generation: u64, with_rt: bool) -> serde_json::Value {
        let p = &self.token_prefix;
        let mut v = serde_json::json!({
            "access_token": format!("{p}at-{family}-{generation}"),
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        });
        if with_rt {
            v["refresh_token"] = format!("{p}rt-{family}-{generation}").into();
        }
        v
    }

    /// A new family's first token response (what `put` imports).
    pub fn new_family(&mut self) -> serde_json::Value {
        self.next_family += 1;
        let f = self.next_family;
        self.families.insert(f, Some(0));
        self.issue(f, 0, true)
    }
}

/// Counts a `/token` request in flight until dropped.
struct InFlight(Arc<Mutex<Inner>>);

impl InFlight {
    fn enter(st: &Arc<Mutex<Inner>>) -> Self {
        let mut s = st.lock().unwrap();
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        InFlight(st.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        s.in_flight -= 1;
    }
}

async fn token(State(st): State<Arc<Mutex<Inner>>>, headers: HeaderMap, body: String) -> Response {
    let _in_flight = InFlight::enter(&st);
    let latency = st.lock().unwrap().latency;
    if let Some(d) = latency {
        tokio::time::sleep(d).await;
    }
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let canned = {
        let mut s = st.lock().unwrap();
        s.token_requests += 1;
        s.call_times.push(tokio::time::Instant::now());
        s.last_form = form.clone();
        s.next_canned()
    };
    let mut canned = canned;
    if let Some(Canned::Delay(d)) = canned {
        tokio::time::sleep(d).await;
        canned = st.lock().unwrap().next_canned();
    }
    match canned {
        Some(Canned::Status(code)) => {
            return (StatusCode::from_u16(code).unwrap(), "unavailable").into_response();
        }
        Some(Canned::RateLimited(ra)) => {
            let mut r = err(429, "rate_limited");
            if let Some(ra) = ra {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, ra.parse().unwrap());
            }
            return r;
        }
        Some(Canned::InvalidGrant) => return err(400, "invalid_grant"),
        Some(Canned::InvalidClient) => return err(401, "invalid_client"),
        Some(Canned::Pending) => return err(400, "authorization_pending"),
        Some(Canned::SlowDown) => return err(400, "slow_down"),
        Some(Canned::EchoInvalidGrant) => {
            let rt = form.get("refresh_token").cloned().unwrap_or_default();
            return json(
                StatusCode::BAD_REQUEST,
                serde_json::json!({
                    "error": "invalid_grant",
                    "error_description": format!("refresh token {rt} has been revoked"),
                }),
            );
        }
        Some(Canned::EchoStatus(code)) => {
            let rt = form.get("refresh_token").cloned().unwrap_or_default();
            return (
                StatusCode::from_u16(code).unwrap(),
                format!("upstream failed while refreshing {rt}"),
            )
                .into_response();
        }
        Some(Canned::EchoServerError) => {
            let rt = form.get("refresh_token").cloned().unwrap_or_default();
            let cs = st.lock().unwrap().client_secret.clone();
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("<html>stack trace: refresh_token={rt} client_secret={cs}</html>"),
            )
                .into_response();
        }
        Some(Canned::Hangup) => {
            let broken = futures::stream::once(async {
                Err::<axum::body::Bytes, std::io::Error>(std::io::Error::other("hung up"))
            });
            return Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .body(axum::body::Body::from_stream(broken))
                .unwrap();
        }
        Some(Canned::Garbage) => {
            return (StatusCode::OK, "<html>teapot</html>").into_response();
        }
        Some(Canned::Delay(_)) | Some(Canned::Normal) | None => {}
    }
    // client authentication
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let (id, secret, how) = match basic {
        Some(pair) => {
            let (i, s) = pair.split_once(':').unwrap_or((&pair, ""));
            (Some(i.to_owned()), Some(s.to_owned()), "basic")
        }
        None => (
            form.get("client_id").cloned(),
            form.get("client_secret").cloned(),
            "post",
        ),
    };
    let mut s = st.lock().unwrap();
    s.auth_seen.push(how.into());
    if id.as_deref() != Some(CLIENT_ID) || secret.as_deref() != Some(s.client_secret.as_str()) {
        return err(401, "invalid_client");
    }
    match form.get("grant_type").map(String::as_str) {
        Some("refresh_token") => {
            let Some((f, g)) = form
                .get("refresh_token")
                .and_then(|r| parse_rt(&s.token_prefix, r))
            else {
                return err(400, "invalid_grant");
            };
            let cur = s.families.get(&f).copied().flatten();
            let Some(cur) = cur else {
                return err(400, "invalid_grant");
            };
            if !s.rotate {
                if g != cur {
                    return err(400, "invalid_grant");
                }
                let with_rt = !s.omit_refresh_token;
                let mut v = s.issue(f, g, with_rt);
                v["access_token"] =
                    format!("{}at-{f}-{g}-{}", s.token_prefix, s.token_requests).into();
                return json(StatusCode::OK, v);
            }
            let grace = s.grace_previous && g + 1 == cur;
            if g != cur && !grace {
                // reuse of a superseded token: revoke the family
                s.families.insert(f, None);
                s.reuse_detected += 1;
                return err(400, "invalid_grant");
            }
            let next = cur + 1;
            s.families.insert(f, Some(next));
            let with_rt = !s.omit_refresh_token;
            json(StatusCode::OK, s.issue(f, next, with_rt))
        }
        Some("authorization_code") => {
            let code = form.get("code").cloned().unwrap_or_default();
            let Some(challenge) = s.codes.remove(&code) else {
                return err(400, "invalid_grant");
            };
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(sha2::Sha256::digest(verifier.as_bytes()));
            if computed != challenge {
                return err(400, "invalid_grant");
            }
            let v = s.new_family();
            json(StatusCode::OK, v)
        }
        Some("urn:ietf:params:oauth:grant-type:device_code") => {
            let v = s.new_family();
            json(StatusCode::OK, v)
        }
        Some("client_credentials") => {
            s.next_family += 1;
            let f = s.next_family;
            json(
                StatusCode::OK,
                serde_json::json!({"access_token": format!("cc-{f}"), "expires_in": s.expires_in, "token_type": "Bearer"}),
            )
        }
        _ => err(400, "unsupported_grant_type"),
    }
}

async fn device_token_poll_hook(st: &Arc<Mutex<Inner>>) {
    let mut s = st.lock().unwrap();
    let start = *s.started.get_or_insert_with(tokio::time::Instant::now);
    let t = start.elapsed().as_millis();
    s.poll_times_ms.push(t);
}

async fn device(State(st): State<Arc<Mutex<Inner>>>) -> Response {
    st.lock().unwrap().started = Some(tokio::time::Instant::now());
    json(
        StatusCode::OK,
        serde_json::json!({
            "device_code": "dev-code-1",
            "user_code": "ABCD-EFGH",
            "verification_uri": "https://example.test/device",
            "expires_in": 600,
            "interval": 5
        }),
    )
}

async fn authorize(
    State(st): State<Arc<Mutex<Inner>>>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if q.get("code_challenge_method").map(String::as_str) != Some("S256") {
        return (StatusCode::BAD_REQUEST, "PKCE S256 required").into_response();
    }
    let code = format!("code-{}", q.len());
    st.lock().unwrap().codes.insert(
        code.clone(),
        q.get("code_challenge").cloned().unwrap_or_default(),
    );
    let mut u = url::Url::parse(q.get("redirect_uri").map(String::as_str).unwrap_or("")).unwrap();
    u.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", q.get("state").map(String::as_str).unwrap_or(""));
    (StatusCode::FOUND, [(header::LOCATION, u.to_string())]).into_response()
}

async fn user(headers: HeaderMap) -> Response {
    match headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        Some("Bearer ghp-valid") => json(StatusCode::OK, serde_json::json!({"login": "x"})),
        _ => (StatusCode::UNAUTHORIZED, "bad credentials").into_response(),
    }
}

async fn me(State(st): State<Arc<Mutex<Inner>>>, headers: HeaderMap) -> Response {
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return (StatusCode::UNAUTHORIZED, "no token").into_response();
    };
    let status = {
        let mut s = st.lock().unwrap();
        s.validation_seen.push(token.to_owned());
        s.validation_script.pop_front().unwrap_or(200)
    };
    match status {
        200 => json(StatusCode::OK, serde_json::json!({"id": "user-1"})),
        400 => err(400, "invalid_token"),
        s => (StatusCode::from_u16(s).unwrap(), "no").into_response(),
    }
}

fn router(state: Arc<Mutex<Inner>>) -> Router {
    let poll_state = state.clone();
    Router::new()
        .route(
            "/token",
            post(
                move |State(st): State<Arc<Mutex<Inner>>>, headers: HeaderMap, body: String| {
                    let ps = poll_state.clone();
                    async move {
                        if body.contains("device_code") {
                            device_token_poll_hook(&ps).await;
                        }
                        token(State(st), headers, body).await
                    }
                },
            ),
        )
        .route("/device", post(device))
        .route("/authorize", get(authorize))
        .route("/user", get(user))
        .route("/me", get(me))
        .with_state(state)
}

impl FakeProvider {
    fn inner() -> Arc<Mutex<Inner>> {
        Arc::new(Mutex::new(Inner {
            rotate: true,
            expires_in: 3600,
            client_secret: CLIENT_SECRET.into(),
            ..Default::default()
        }))
    }

    /// Starts on the current tokio runtime (in-process engine tests, paused clock).
    pub async fn start() -> Self {
        let state = Self::inner();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeProvider {
            base: format!("http://{addr}"),
            state,
            _rt: None,
        }
    }

    /// Starts on its own runtime thread (tests driving the real binary).
    pub fn start_background() -> Self {
        let rt = Arc::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
        );
        let mut fp = rt.block_on(Self::start());
        fp._rt = Some(rt);
        fp
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn token_url(&self) -> String {
        self.url("/token")
    }

    pub fn requests(&self) -> u64 {
        self.state.lock().unwrap().token_requests
    }

    /// Answers served in a cycle once the script is empty.
    pub fn repeat(&self, items: impl IntoIterator<Item = Canned>) {
        self.state.lock().unwrap().repeat = items.into_iter().collect();
    }

    /// The most `/token` requests that arrived within any `window` (inclusive).
    pub fn most_calls_within(&self, window: Duration) -> usize {
        let times = self.state.lock().unwrap().call_times.clone();
        (0..times.len())
            .map(|i| {
                times[i..]
                    .iter()
                    .take_while(|t| t.duration_since(times[i]) <= window)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    pub fn script(&self, items: impl IntoIterator<Item = Canned>) {
        self.state.lock().unwrap().script.extend(items);
    }

    pub fn new_family(&self) -> serde_json::Value {
        self.state.lock().unwrap().new_family()
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }
}

/// A fresh vault with tenant `acme` and its `spotify` client aimed at `fp`, set up through
/// the binary (`client set … --token-url`, then `extra` arguments such as
/// `--authorization-url`).
pub fn cli_vault_with_spotify_client(fp: &FakeProvider, extra: &[&str]) -> super::TestVault {
    let tv = super::TestVault::new();
    tv.cmd().args(["tenant", "add", "acme"]).assert().success();
    let secret = tv.file("client-secret", CLIENT_SECRET.as_bytes());
    tv.cmd()
        .args(["client", "set", "acme", "spotify", "--client-id", CLIENT_ID])
        .arg("--client-secret-file")
        .arg(&secret)
        .args(["--token-url", &fp.token_url()])
        .args(extra)
        .assert()
        .success();
    tv
}

/// The engine request setting `acme`'s `spotify` client to `fp` with `secret`.
pub fn spotify_client_request(fp: &FakeProvider, secret: &str) -> tokenvault::Request {
    tokenvault::Request::ClientSet {
        tenant: "acme".into(),
        provider: "spotify".into(),
        client_id: CLIENT_ID.into(),
        client_secret: Some(tokenvault::secret::Secret::new(secret)),
        token_url: Some(fp.token_url()),
        authorization_url: None,
        device_authorization_url: None,
        revocation_url: None,
        params: Default::default(),
    }
}
