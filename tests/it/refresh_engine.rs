//! The refresh engine against the stateful fake provider, in process:
//! a real vault file, a real HTTP server on 127.0.0.1, tokio's paused clock where time
//! matters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::fake_provider::{CLIENT_ID, CLIENT_SECRET, Canned, FakeProvider};
use crate::support::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokenvault::contract::{Request, Response};
use tokenvault::engine::{Clock, Engine};
use tokenvault::refresh::TokioClock;
use tokenvault::secret::Secret;
use tokenvault::vault::Vault;
use tokenvault::vault::records::Status;

pub(crate) const T0: i64 = 1_800_000_000;
pub(crate) const CONN: &str = "acme/spotify/alice";

/// A vault with tenant `acme`, a client for `provider` aimed at the fake, on a clock that
/// follows tokio's.
pub(crate) async fn setup(fp: &FakeProvider, provider: &str) -> (TestVault, Arc<Engine>) {
    setup_with_clock(fp, provider, Arc::new(TokioClock::new(T0))).await
}

/// `setup` on a clock the test controls.
pub(crate) async fn setup_with_clock(
    fp: &FakeProvider,
    provider: &str,
    clock: Arc<dyn Clock>,
) -> (TestVault, Arc<Engine>) {
    let tv = TestVault::new();
    let vault = Vault::open(&tv.path, &Secret::new(PASSPHRASE)).unwrap();
    let engine = Arc::new(Engine::with_clock(vault, clock));
    let a = admin();
    engine
        .handle(
            &a,
            Request::TenantAdd {
                name: "acme".into(),
            },
        )
        .await
        .unwrap();
    engine
        .handle(
            &a,
            Request::ClientSet {
                tenant: "acme".into(),
                provider: provider.into(),
                client_id: CLIENT_ID.into(),
                client_secret: Some(Secret::new(CLIENT_SECRET)),
                token_url: Some(fp.token_url()),
                authorization_url: Some(fp.url("/authorize")),
                device_authorization_url: Some(fp.url("/device")),
                revocation_url: None,
                params: Default::default(),
            },
        )
        .await
        .unwrap();
    (tv, engine)
}

pub(crate) async fn put(
    engine: &Engine,
    conn: &str,
    mut token: serde_json::Value,
    expires_in: i64,
) {
    token["expires_in"] = expires_in.into();
    engine
        .handle(
            &admin(),
            Request::Put {
                connection: conn.into(),
                token,
            },
        )
        .await
        .unwrap();
}

pub(crate) async fn get(engine: &Engine, conn: &str) -> tokenvault::Result<String> {
    match engine
        .handle(
            &admin(),
            Request::Get {
                connection: conn.into(),
                min_ttl: Some(30),
                force_refresh: false,
            },
        )
        .await?
    {
        Response::Token { token, .. } => Ok(token.expose().to_owned()),
        other => panic!("unexpected {other:?}"),
    }
}

pub(crate) fn record(engine: &Engine, conn: &str) -> tokenvault::vault::records::ConnectionRecord {
    engine
        .vault()
        .read()
        .unwrap()
        .connection(conn)
        .unwrap()
        .unwrap()
}

fn stored_refresh_token(engine: &Engine, conn: &str) -> Option<String> {
    let rx = engine.vault().read().unwrap();
    let rec = rx.connection(conn).unwrap().unwrap();
    rx.secrets(conn, &rec)
        .unwrap()
        .refresh_token
        .map(|s| s.expose().to_owned())
}

#[tokio::test]
async fn basic_auth_for_spotify_and_body_auth_for_discord() {
    let fp = FakeProvider::start().await;
    let (_tv, engine) = setup(&fp, "spotify").await;
    put(&engine, CONN, fp.new_family(), 0).await;
    assert_eq!(get(&engine, CONN).await.unwrap(), "at-1-1");
    let (_tv2, engine2) = setup(&fp, "discord").await;
    put(&engine2, "acme/discord/bob", fp.new_family(), 0).await;
    assert_eq!(get(&engine2, "acme/discord/bob").await.unwrap(), "at-2-1");
    assert_eq!(fp.with(|s| s.auth_seen.clone()), vec!["basic", "post"]);
}

#[tokio::test]
async fn rotation_is_committed_before_hand_out_and_reuse_revokes_the_family() {
    let fp = FakeProvider::start().await;
    let (_tv, engine) = setup(&fp, "spotify").await;
    let first = fp.new_family();
    put(&engine, CONN, first.clone(), 0).await;
    assert_eq!(get(&engine, CONN).await.unwrap(), "at-1-1");
    // the rotated refresh token is already durable when the access token is returned
    assert_eq!(
        stored_refresh_token(&engine, CONN).as_deref(),
        Some("rt-1-1")
    );
    let rec = record(&engine, CONN);
    assert_eq!(rec.status, Status::Connected);
    assert_eq!(rec.refresh_count, 1);
    assert!(rec.due_at.unwrap() < rec.expires_at.unwrap());
    // a second refresh presents the rotated token: no reuse detected
    put_expired_keep(&engine).await;
    assert_eq!(get(&engine, CONN).await.unwrap(), "at-1-2");
    assert_eq!(fp.with(|s| s.reuse_detected), 0);
    // presenting the superseded token (a stale import) revokes the family
    put(&engine, CONN, first, 0).await;
    let e = get(&engine, CONN).await.unwrap_err();
    assert_eq!(e.exit_code(), 6, "{e}");
    assert_eq!(fp.with(|s| s.reuse_detected), 1);
    assert_eq!(record(&engine, CONN).status, Status::NeedsReauth);
}

/// Marks the stored access token expired without touching the refresh token.
async fn put_expired_keep(engine: &Engine) {
    let rt = stored_refresh_token(engine, CONN).unwrap();
    put(
        engine,
        CONN,
        serde_json::json!({"access_token": "stale", "refresh_token": rt}),
        0,
    )
    .await;
}

#[tokio::test]
async fn a_response_without_refresh_token_keeps_the_old_one() {
    let fp = FakeProvider::start().await;
    fp.with(|s| {
        s.rotate = false;
        s.omit_refresh_token = true;
    });
    let (_tv, engine) = setup(&fp, "spotify").await;
    put(&engine, CONN, fp.new_family(), 0).await;
    get(&engine, CONN).await.unwrap();
    assert_eq!(
        stored_refresh_token(&engine, CONN).as_deref(),
        Some("rt-1-0")
    );
    assert!(record(&engine, CONN).has_refresh_token);
    put_expired_keep(&engine).await;
    get(&engine, CONN).await.unwrap();
    assert_eq!(fp.requests(), 2);
}

#[tokio::test]
async fn invalid_grant_means_needs_reauth_without_retry() {
    let fp = FakeProvider::start().await;
    let (_tv, engine) = setup(&fp, "spotify").await;
    put(&engine, CONN, fp.new_family(), 0).await;
    fp.script([Canned::InvalidGrant]);
    let e = get(&engine, CONN).await.unwrap_err();
    assert_eq!(e.exit_code(), 6);
    assert_eq!(e.code(), "needs_reauth");
    assert_eq!(fp.requests(), 1);
    let rec = record(&engine, CONN);
    assert_eq!(rec.status, Status::NeedsReauth);
    assert_eq!(rec.attempts, 1);
    assert_eq!(rec.reason.as_deref(), Some("invalid_grant"));
    assert_eq!(rec.due_at, None);
    // and later gets do not call the provider again
    assert!(get(&engine, CONN).await.is_err());
    assert_eq!(fp.requests(), 1);
}

#[tokio::test]
async fn invalid_client_is_a_configuration_error() {
    let fp = FakeProvider::start().await;
    let (_tv, engine) = setup(&fp, "spotify").await;
    put(&engine, CONN, fp.new_family(), 0).await;
    fp.script([Canned::InvalidClient]);
    let e = get(&engine, CONN).await.unwrap_err();
    assert_eq!((e.exit_code(), e.code()), (6, "config_error"), "{e}");
    assert_eq!(fp.requests(), 1);
    let rec = record(&engine, CONN);
    assert_eq!(rec.status, Status::Error);
    assert!(rec.reason.unwrap().contains("invalid_client"));
}

#[tokio::test(start_paused = true)]
async fn rate_limit_waits_retry_after_without_counting_an_attempt() {
    let fp = FakeProvider::start().await;
    let (_tv, engine) = setup(&fp, "spotify").await;
    put(&engine, CONN, fp.new_family(), 0).await;
    fp.script([Canned::RateLimited(Some("20".into()))]);
    let mut events = engine.subscribe();
    let start = tokio::time::Instant::now();
    assert_eq!(get(&engine, CONN).await.unwrap(), "at-1-1");
    let waited = start.elapsed();
    assert!(waited >= Duration::from_secs(20), "{waited:?}");
    assert!(waited < Duration::from_secs(25), "{waited:?}");
    assert_eq!(fp.requests(), 2);
    let rec = record(&engine, CONN);
    assert_eq!((rec.status, rec.attempts), (Status::Connected, 0));
    // the 429 showed as token_expired (the token had expired), then recovery
    let ev = crate::support::next_status(&mut events);
    assert_eq!(ev.to, Some(Status::TokenExpired));
    assert!(ev.reason.unwrap().contains("429"));
    assert_eq!(
        crate::support::next_status(&mut events).to,
        Some(Status::Connected)
    );
}

#[tokio::test(start_paused = true)]
async fn unavailable_twice_then_success() {
    let fp = FakeProvider::start().await;
    let (_tv, engine) = setup(&fp, "spotify").await;
    put(&engine, CONN, fp.new_family(), 0).await;
    fp.script([Canned::Status(503), Canned::Status(503)]);
    let start = tokio::time::Instant::now();
    assert_eq!(get(&engine, CONN).await.unwrap(), "at-1-1");
    // full jitter: at most 1 s + 2 s of backoff
    assert!(start.elapsed() <= Duration::from_secs(3));
    assert_eq!(fp.requests(), 3);
    let rec = record(&engine, CONN);
    assert_eq!((rec.status, rec.attempts), (Status::Connected, 0));
}

#[tokio::test]
async fn a_slow_provider_times_out_as_unavailable() {
    let fp = FakeProvider::start().await;
    let (_tv, engine) = setup(&fp, "spotify").await;
    engine
        .refresher()
        .state()
        .set_http_timeout(Duration::from_millis(300));
    engine.refresher().state().set_on_demand_attempts(1);
    put(&engine, CONN, fp.new_family(), 0).await;
    fp.script([Canned::Delay(Duration::from_secs(3))]);
    let e = get(&engine, CONN).await.unwrap_err();
    assert_eq!(
        (e.exit_code(), e.code()),
        (7, "provider_unavailable"),
        "{e}"
    );
    let rec = record(&engine, CONN);
    assert_eq!(rec.status, Status::TokenExpired);
    assert_eq!(rec.attempts, 1);
    assert!(rec.due_at.is_some(), "a transient failure is retried later");
}

#[tokio::test]
async fn a_refused_connection_is_a_network_error_retried_later() {
    let fp = FakeProvider::start().await;
    let (_tv, engine) = setup(&fp, "spotify").await;
    // a port nothing listens on: bound, then released
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    engine
        .handle(
            &admin(),
            Request::ClientSet {
                tenant: "acme".into(),
                provider: "spotify".into(),
                client_id: CLIENT_ID.into(),
                client_secret: Some(Secret::new(CLIENT_SECRET)),
                token_url: Some(format!("http://127.0.0.1:{port}/token")),
                authorization_url: None,
                device_authorization_url: None,
                revocation_url: None,
                params: Default::default(),
            },
        )
        .await
        .unwrap();
    engine.refresher().state().set_on_demand_attempts(1);
    put(&engine, CONN, fp.new_family(), 0).await;
    let e = get(&engine, CONN).await.unwrap_err();
    assert_eq!(
        (e.exit_code(), e.code()),
        (7, "provider_unavailable"),
        "{e}"
    );
    let rec = record(&engine, CONN);
    assert_eq!(rec.status, Status::TokenExpired);
    assert_eq!(rec.attempts, 1);
    assert!(rec.reason.is_some(), "the failure is explained");
    assert!(rec.due_at.is_some(), "a network error is retried later");
    assert_eq!(fp.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_gets_make_one_provider_call() {
    let fp = FakeProvider::start().await;
    let (_tv, engine) = setup(&fp, "spotify").await;
    put(&engine, CONN, fp.new_family(), 0).await;
    fp.script([Canned::Delay(Duration::from_millis(300))]);
    let mut handles = Vec::new();
    for _ in 0..100 {
        let e = engine.clone();
        handles.push(tokio::spawn(async move { get(&e, CONN).await.unwrap() }));
    }
    for h in handles {
        assert_eq!(h.await.unwrap(), "at-1-1");
    }
    assert_eq!(fp.requests(), 1);
}

#[tokio::test(start_paused = true)]
async fn scheduler_refreshes_before_expiry_and_idles_while_nothing_is_due() {
    let fp = FakeProvider::start().await;
    let (_tv, engine) = setup(&fp, "spotify").await;
    put(&engine, CONN, fp.new_family(), 3600).await;
    let expires = record(&engine, CONN).expires_at.unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sched = tokio::spawn(tokenvault::refresh::run_scheduler(
        engine.refresher().clone(),
        async {
            let _ = stop_rx.await;
        },
    ));
    // 50 minutes: nothing is due (buffer 300 s + ≤ 30 s jitter)
    tokio::time::sleep(Duration::from_secs(50 * 60)).await;
    assert_eq!(fp.requests(), 0);
    let passes = engine.refresher().state().scheduler_passes();
    assert!(
        passes <= 2,
        "the scheduler scanned {passes} times while idle"
    );
    // by 56 minutes it has refreshed, before the token expired
    tokio::time::sleep(Duration::from_secs(6 * 60)).await;
    assert_eq!(fp.requests(), 1);
    let rec = record(&engine, CONN);
    assert!(rec.last_refresh_at.unwrap() < expires);
    assert!(rec.last_refresh_at.unwrap() >= expires - 330);
    assert_eq!(rec.status, Status::Connected);
    assert!(rec.due_at.unwrap() > T0 + 3600);
    let _ = stop_tx.send(());
    sched.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn scheduler_wakes_when_a_connection_changes() {
    let fp = FakeProvider::start().await;
    let (_tv, engine) = setup(&fp, "spotify").await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sched = tokio::spawn(tokenvault::refresh::run_scheduler(
        engine.refresher().clone(),
        async {
            let _ = stop_rx.await;
        },
    ));
    tokio::time::sleep(Duration::from_secs(60)).await;
    // a token that is already due: the scheduler must not wait for a timer
    put(&engine, CONN, fp.new_family(), 0).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(fp.requests(), 1);
    let _ = stop_tx.send(());
    sched.await.unwrap().unwrap();
}

/// The steps a flow hands back, as text (no front end draws them here).
#[derive(Default)]
struct Steps(Vec<String>);

impl tokenvault::client::connect::ConnectUi for Steps {
    fn step(&mut self, step: tokenvault::client::connect::ConnectStep<'_>) {
        self.0.push(format!("{step:?}"));
    }

    #[allow(clippy::manual_async_fn)] // the trait asks for a `Send` future
    fn paste(&mut self) -> impl std::future::Future<Output = tokenvault::Result<Secret>> + Send {
        async {
            Err(tokenvault::Error::Internal(
                "nothing to paste in the device flow".into(),
            ))
        }
    }
}

#[tokio::test(start_paused = true)]
async fn device_flow_pending_slow_down_success_spacing() {
    let fp = FakeProvider::start().await;
    let (_tv, engine) = setup(&fp, "spotify").await;
    fp.script([Canned::Pending, Canned::SlowDown]);
    let backend = tokenvault::client::Backend::local(engine.clone(), admin());
    let mut ui = Steps::default();
    let resp = tokenvault::client::connect::run(
        &backend,
        tokenvault::client::connect::ConnectOptions {
            connection: CONN.into(),
            flow: tokenvault::client::connect::Flow::Device,
            scopes: vec![],
            port: 0,
            timeout: Duration::from_secs(60),
            no_listen: false,
        },
        &mut ui,
    )
    .await
    .unwrap();
    assert!(matches!(resp, Response::Connection(_)));
    let polls: Vec<u128> = fp.with(|s| s.poll_times_ms.iter().map(|t| t / 1000).collect());
    // interval 5 s; slow_down adds 5 s
    assert_eq!(polls, vec![5, 10, 20]);
    assert_eq!(get(&engine, CONN).await.unwrap(), "at-1-0");
    // the flow handed its steps back: the code to enter, waiting, done
    let kinds: Vec<&str> =
        ui.0.iter()
            .map(|s| s.split([' ', '{']).next().unwrap_or(""))
            .collect();
    assert_eq!(kinds, ["UserCode", "Waiting", "Done"], "{:?}", ui.0);
}

#[tokio::test]
async fn authorization_code_with_pkce_through_the_loopback_listener() {
    let fp = FakeProvider::start().await;
    let (_tv, engine) = setup(&fp, "spotify").await;
    let listener = tokenvault::provider::flows::Loopback::bind(0)
        .await
        .unwrap();
    let pkce = tokenvault::provider::flows::Pkce::generate();
    let state = tokenvault::provider::flows::random_state();
    let Response::AuthorizationUrl { url } = engine
        .handle(
            &admin(),
            Request::ConnectStart {
                connection: CONN.into(),
                redirect_uri: listener.redirect_uri(),
                state: state.clone(),
                code_challenge: pkce.challenge.clone(),
                scopes: vec!["user-read-email".into()],
            },
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(url.contains("code_challenge_method=S256"));
    // the "browser": follow the provider's redirect to the loopback listener
    let browser = tokio::spawn(async move {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let c = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let r = c.get(&url).send().await.unwrap();
        let loc = r.headers()["location"].to_str().unwrap().to_owned();
        c.get(&loc).send().await.unwrap().status()
    });
    let callback = listener
        .wait_for_code(&state, Duration::from_secs(10))
        .await
        .unwrap();
    let stored = engine
        .handle(
            &admin(),
            Request::ConnectCode {
                connection: CONN.into(),
                code: callback.code.clone(),
                code_verifier: pkce.verifier,
                redirect_uri: listener.redirect_uri(),
            },
        )
        .await;
    // the browser's page waits for the outcome of the exchange
    callback.finish(&stored).await;
    stored.unwrap();
    assert!(browser.await.unwrap().is_success());
    assert_eq!(get(&engine, CONN).await.unwrap(), "at-1-0");
    assert!(record(&engine, CONN).due_at.is_some());
}

#[tokio::test]
async fn client_credentials_are_re_requested_not_refreshed() {
    let fp = FakeProvider::start().await;
    let (_tv, engine) = setup(&fp, "spotify").await;
    engine
        .handle(
            &admin(),
            Request::ConnectClientCredentials {
                connection: "acme/spotify/app".into(),
                scopes: vec![],
            },
        )
        .await
        .unwrap();
    assert_eq!(get(&engine, "acme/spotify/app").await.unwrap(), "cc-1");
    engine
        .handle(
            &admin(),
            Request::Refresh {
                connection: "acme/spotify/app".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        fp.with(|s| s.last_form.get("grant_type").cloned())
            .as_deref(),
        Some("client_credentials")
    );
    assert_eq!(get(&engine, "acme/spotify/app").await.unwrap(), "cc-2");
}

#[tokio::test]
async fn forced_refresh_is_rate_limited_to_one_per_ten_seconds() {
    let fp = FakeProvider::start().await;
    let (_tv, engine) = setup(&fp, "spotify").await;
    put(&engine, CONN, fp.new_family(), 3600).await;
    for _ in 0..3 {
        engine
            .handle(
                &admin(),
                Request::Get {
                    connection: CONN.into(),
                    min_ttl: None,
                    force_refresh: true,
                },
            )
            .await
            .unwrap();
    }
    assert_eq!(fp.requests(), 1);
}

#[tokio::test]
async fn github_pats_are_validated_never_refreshed() {
    let fp = FakeProvider::start().await;
    let (_tv, engine) = setup(&fp, "spotify").await;
    engine
        .handle(
            &admin(),
            Request::ClientSet {
                tenant: "acme".into(),
                provider: "github".into(),
                client_id: "pat".into(),
                client_secret: None,
                // for PATs the token URL override is the validation endpoint
                token_url: Some(fp.url("/user")),
                authorization_url: None,
                device_authorization_url: None,
                revocation_url: None,
                params: Default::default(),
            },
        )
        .await
        .unwrap();
    let conn = "acme/github/me";
    put(
        &engine,
        conn,
        serde_json::json!({"access_token": "ghp-valid"}),
        0,
    )
    .await;
    let rec = record(&engine, conn);
    assert!(rec.due_at.is_some(), "a PAT is due for validation");
    engine
        .handle(
            &admin(),
            Request::Refresh {
                connection: conn.into(),
            },
        )
        .await
        .unwrap();
    let rec = record(&engine, conn);
    assert_eq!(rec.status, Status::Connected);
    assert_eq!(rec.reason.as_deref(), Some("validated"));
    assert_eq!(fp.requests(), 0, "no token endpoint call for a PAT");
    engine
        .handle(
            &admin(),
            Request::Put {
                connection: "acme/github/other".into(),
                token: serde_json::json!({"access_token": "ghp-revoked"}),
            },
        )
        .await
        .unwrap();
    let e = engine
        .handle(
            &admin(),
            Request::Refresh {
                connection: "acme/github/other".into(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), 6);
    assert_eq!(
        record(&engine, "acme/github/other").status,
        Status::NeedsReauth
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_results_share_durable_commits() {
    let fp = FakeProvider::start().await;
    let (_tv, engine) = setup(&fp, "spotify").await;
    for i in 0..64 {
        put(&engine, &format!("acme/spotify/u{i}"), fp.new_family(), 0).await;
    }
    let before = engine.refresher().state().commits.counts();
    let mut handles = Vec::new();
    for i in 0..64 {
        let e = engine.clone();
        handles.push(tokio::spawn(async move {
            get(&e, &format!("acme/spotify/u{i}")).await.unwrap()
        }));
    }
    for (i, h) in handles.into_iter().enumerate() {
        // every caller got its own connection's refreshed token
        assert_eq!(h.await.unwrap(), format!("at-{}-1", i + 1));
    }
    let after = engine.refresher().state().commits.counts();
    let (batches, jobs) = (after.0 - before.0, after.1 - before.1);
    assert_eq!(jobs, 64);
    assert!(batches < jobs, "{jobs} results took {batches} commits");
}

/// A clock that moves only when the test says so.
#[derive(Debug)]
struct ManualClock(AtomicI64);

impl ManualClock {
    fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

async fn force_get(engine: &Engine) -> String {
    match engine
        .handle(
            &admin(),
            Request::Get {
                connection: CONN.into(),
                min_ttl: None,
                force_refresh: true,
            },
        )
        .await
        .unwrap()
    {
        Response::Token { token, .. } => token.expose().to_owned(),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn forced_refresh_is_allowed_again_once_ten_seconds_have_passed() {
    let fp = FakeProvider::start().await;
    let clock = Arc::new(ManualClock(AtomicI64::new(T0)));
    let (_tv, engine) = setup_with_clock(&fp, "spotify", clock.clone()).await;
    put(&engine, CONN, fp.new_family(), 3600).await;
    assert_eq!(force_get(&engine).await, "at-1-1");
    assert_eq!(fp.requests(), 1);
    // 9 s later: still inside the window; the stored token is handed out
    clock.advance(9);
    assert_eq!(force_get(&engine).await, "at-1-1");
    assert_eq!(fp.requests(), 1);
    // 11 s after the first forced refresh: the provider is called again
    clock.advance(2);
    assert_eq!(force_get(&engine).await, "at-1-2");
    assert_eq!(fp.requests(), 2);
    // and the window starts again from this refresh
    assert_eq!(force_get(&engine).await, "at-1-2");
    assert_eq!(fp.requests(), 2);
}

/// `n` connections of one provider host, all due now, answered slowly.
async fn due_storm(per_host: usize, n: usize) -> (FakeProvider, TestVault, Arc<Engine>) {
    let fp = FakeProvider::start().await;
    fp.with(|s| s.latency = Some(Duration::from_millis(500)));
    let (tv, engine) = setup(&fp, "spotify").await;
    engine.set_config(
        tokenvault::config::Config::parse(&format!(
            "[scheduler]\nper_host_concurrency = {per_host}\n"
        ))
        .unwrap(),
    );
    for i in 0..n {
        put(&engine, &format!("acme/spotify/u{i}"), fp.new_family(), 0).await;
    }
    (fp, tv, engine)
}

fn assert_all_refreshed(engine: &Engine, n: usize) {
    for i in 0..n {
        let rec = record(engine, &format!("acme/spotify/u{i}"));
        assert_eq!(
            (rec.status, rec.refresh_count),
            (Status::Connected, 1),
            "u{i}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn scheduler_keeps_per_host_concurrency_within_the_configured_bound() {
    let (fp, _tv, engine) = due_storm(2, 10).await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sched = tokio::spawn(tokenvault::refresh::run_scheduler(
        engine.refresher().clone(),
        async {
            let _ = stop_rx.await;
        },
    ));
    // 10 refreshes, 2 at a time, 0.5 s each: done well within 60 s (paused clock)
    tokio::time::sleep(Duration::from_secs(60)).await;
    let _ = stop_tx.send(());
    sched.await.unwrap().unwrap();
    assert_eq!(fp.requests(), 10);
    // on the paused clock every request that can start does so before any answer comes,
    // so without the bound all ten would be in flight together
    assert_eq!(fp.with(|s| s.max_in_flight), 2);
    assert_all_refreshed(&engine, 10);
}

#[tokio::test(start_paused = true)]
async fn refresh_due_pass_keeps_the_per_host_bound_too() {
    let (fp, _tv, engine) = due_storm(2, 10).await;
    let Response::Refreshed { results } =
        engine.handle(&admin(), Request::RefreshDue).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(results.len(), 10);
    assert!(
        results.iter().all(|r| r.outcome == "refreshed"),
        "{results:?}"
    );
    assert_eq!(fp.requests(), 10);
    assert_eq!(fp.with(|s| s.max_in_flight), 2);
    assert_all_refreshed(&engine, 10);
}

#[tokio::test]
async fn metrics_count_refreshes_by_outcome_and_their_latency() {
    let fp = FakeProvider::start().await;
    let (_tv, engine) = setup(&fp, "spotify").await;
    put(&engine, CONN, fp.new_family(), 0).await;
    put(&engine, "acme/spotify/bob", fp.new_family(), 0).await;
    get(&engine, CONN).await.unwrap();
    fp.script([Canned::InvalidGrant]);
    get(&engine, "acme/spotify/bob").await.unwrap_err();
    assert_eq!(fp.requests(), 2);
    let Response::Metrics { text } = engine.handle(&admin(), Request::Metrics).await.unwrap()
    else {
        panic!()
    };
    let lines: Vec<&str> = text.lines().collect();
    for want in [
        r#"tokenvault_refreshes_total{provider="spotify",outcome="ok"} 1"#,
        r#"tokenvault_refreshes_total{provider="spotify",outcome="needs_reauth"} 1"#,
        r#"tokenvault_refresh_duration_seconds_bucket{le="+Inf"} 2"#,
        "tokenvault_refresh_duration_seconds_count 2",
        r#"tokenvault_connections{status="connected"} 1"#,
        r#"tokenvault_connections{status="needs_reauth"} 1"#,
        "tokenvault_tokens_served_total 1",
    ] {
        assert!(lines.contains(&want), "missing {want:?} in:\n{text}");
    }
    let refresh_lines = lines
        .iter()
        .filter(|l| l.starts_with("tokenvault_refreshes_total{"))
        .count();
    assert_eq!(refresh_lines, 2, "{text}");
}

/// SPEC §5.3: when a response does not state `refresh_token_expires_in`, the provider's
/// default refresh-token lifetime is tracked, restarted by each new (rotated) refresh
/// token, and warned about ahead.
#[tokio::test]
async fn provider_default_refresh_token_lifetime_is_tracked_and_warned_about() {
    let fp = FakeProvider::start().await;
    let (_tv, engine) = setup(&fp, "spotify").await;
    let mut cfg = tokenvault::config::Config::default();
    cfg.providers.insert(
        "spotify".into(),
        tokenvault::config::ProviderConfig {
            token_url: Some(fp.token_url()),
            refresh_token_lifetime_secs: Some(3 * 86_400),
            ..Default::default()
        },
    );
    engine.set_config(cfg);
    put(&engine, CONN, fp.new_family(), 3600).await;
    let t0 = engine.now();
    let rec = record(&engine, CONN);
    let rx = rec
        .refresh_expires_at
        .expect("the provider default applies on put");
    assert!((rx - (t0 + 3 * 86_400)).abs() <= 2, "{rx} vs {t0}");
    // a put without a refresh token has no refresh-token expiry
    put(
        &engine,
        "acme/spotify/pat",
        serde_json::json!({"access_token": "x"}),
        3600,
    )
    .await;
    assert_eq!(record(&engine, "acme/spotify/pat").refresh_expires_at, None);
    // a refresh that rotates the refresh token restarts its lifetime and warns (< 7 days)
    put(&engine, CONN, fp.new_family(), 0).await;
    get(&engine, CONN).await.unwrap();
    let rec = record(&engine, CONN);
    let now = engine.now();
    let rx = rec.refresh_expires_at.expect("tracked after the refresh");
    assert!((rx - (now + 3 * 86_400)).abs() <= 2);
    let reason = rec.reason.unwrap_or_default();
    assert!(
        reason.contains("refresh token expires in 3 day(s)"),
        "{reason}"
    );
}
