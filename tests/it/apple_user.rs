//! Music-User-Token validation against a fake Apple Music API on 127.0.0.1: both headers
//! sent; 200 → connected, 401/403 → needs_reauth, 503 → retrying; `[apple_music] api_base`
//! from the config file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::apple::*;
use crate::support::*;
use tokenvault::Engine;
use tokenvault::apple::{Outcome, validate_user_token};
use tokenvault::contract::StatusEvent;
use tokenvault::vault::records::Status;
use tokenvault::{Request, Response};

const MUT: &str = "MUT-user-token-for-alice";

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

#[tokio::test]
async fn validate_user_token_maps_statuses_and_sends_both_headers() {
    let api = FakeAppleApi::start().await;
    let http = client();
    for (code, want) in [
        (200, Outcome::Valid),
        (204, Outcome::Valid),
        (401, Outcome::NeedsReauth { status: 401 }),
        (403, Outcome::NeedsReauth { status: 403 }),
        (404, Outcome::Rejected { status: 404 }),
    ] {
        api.set_status(code);
        assert_eq!(
            validate_user_token(&http, &api.base, "DEV.TOKEN.X", MUT).await,
            want,
            "{code}"
        );
    }
    for code in [503, 500, 429] {
        api.set_status(code);
        let got = validate_user_token(&http, &api.base, "DEV.TOKEN.X", MUT).await;
        assert!(matches!(got, Outcome::RetryLater { .. }), "{code}: {got:?}");
    }
    let seen = api.requests();
    assert_eq!(seen.len(), 8);
    for s in &seen {
        assert_eq!(s.path, "/v1/me/storefront");
        assert_eq!(s.authorization.as_deref(), Some("Bearer DEV.TOKEN.X"));
        assert_eq!(s.music_user_token.as_deref(), Some(MUT));
    }
    // nobody listening: retry later, and the reason carries no token
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    match validate_user_token(&http, &dead, "DEV.TOKEN.X", MUT).await {
        Outcome::RetryLater { reason, .. } => {
            assert!(
                !reason.contains(MUT) && !reason.contains("DEV.TOKEN"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
}

async fn setup(api: &FakeAppleApi) -> (TestVault, Engine, std::sync::Arc<TestClock>) {
    let (tv, e, clock) = vault_with_key1().await;
    // the config file, as `--config` would load it
    let cfg = tv.file(
        "config.toml",
        format!(
            "[apple_music]\napi_base = \"{}\"\nvalidate_interval_secs = 3600\n",
            api.base
        )
        .as_bytes(),
    );
    e.set_config(tokenvault::config::Config::load(&cfg).unwrap());
    e.handle(
        &admin(),
        Request::Put {
            connection: "acme/apple-music/alice".into(),
            token: serde_json::json!({ "access_token": MUT }),
        },
    )
    .await
    .unwrap();
    (tv, e, clock)
}

fn show(e: &Engine) -> tokenvault::contract::ConnectionView {
    let rx = e.vault().read().unwrap();
    let id = tokenvault::names::ConnectionId::parse("acme/apple-music/alice").unwrap();
    tokenvault::contract::ConnectionView::new(&id, &rx.connection(&id.key()).unwrap().unwrap())
}

#[tokio::test]
async fn engine_validation_updates_status_and_schedules_the_next_check() {
    let api = FakeAppleApi::start().await;
    let (_tv, e, clock) = setup(&api).await;
    let mut events = e.subscribe();
    let conn = "acme/apple-music/alice";

    // 200: connected, next check in about an hour; the developer token was the tenant's
    let r = e.apple().validate_connection(&admin(), conn).await.unwrap();
    assert!(matches!(r, Response::Connection(_)));
    let v = show(&e);
    assert_eq!(v.status, Status::Connected);
    assert_eq!(v.reason.as_deref(), Some("validated"));
    let now = clock.get();
    let due = v.due_at.unwrap();
    assert!((now + 3600..=now + 3960).contains(&due), "{due} vs {now}");
    let seen = api.requests();
    let dev = seen[0]
        .authorization
        .as_deref()
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap();
    verify(dev, KEY1);
    assert_eq!(dev, token(&e, &admin(), "acme").await.unwrap());
    assert_eq!(seen[0].music_user_token.as_deref(), Some(MUT));

    // 503: retrying, attempt counted, retried sooner than the hourly check
    api.set_status(503);
    let err = e
        .apple()
        .validate_connection(&admin(), conn)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "provider_unavailable");
    assert_eq!(err.exit_code(), 7);
    let v = show(&e);
    assert_eq!(v.status, Status::Retrying);
    assert_eq!(v.attempts, 1);
    assert!(v.due_at.unwrap() <= clock.get() + 60);
    assert_eq!(
        crate::support::next_status(&mut events),
        StatusEvent {
            connection: conn.into(),
            from: Some(Status::Connected),
            to: Some(Status::Retrying),
            reason: v.reason.clone(),
            at: clock.get(),
        }
    );
    api.set_status(500);
    e.apple()
        .validate_connection(&admin(), conn)
        .await
        .unwrap_err();
    assert_eq!(show(&e).attempts, 2);

    // back to 200: connected, attempts reset, an event
    api.set_status(200);
    e.apple().validate_connection(&admin(), conn).await.unwrap();
    let v = show(&e);
    assert_eq!((v.status, v.attempts), (Status::Connected, 0));
    assert_eq!(
        crate::support::next_status(&mut events).to,
        Some(Status::Connected)
    );

    // 401 and 403: needs_reauth, not scheduled again, `get` refuses the token
    for code in [401u16, 403] {
        api.set_status(code);
        let err = e
            .apple()
            .validate_connection(&admin(), conn)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "needs_reauth", "{code}");
        let v = show(&e);
        assert_eq!(v.status, Status::NeedsReauth);
        assert!(v.reason.as_deref().unwrap().contains(&code.to_string()));
        assert_eq!(v.due_at, None);
    }
    let err = e
        .handle(
            &admin(),
            Request::Get {
                connection: conn.into(),
                min_ttl: None,
                force_refresh: false,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "needs_reauth");
    // every request carried both headers
    for s in api.requests() {
        assert!(s.authorization.as_deref().unwrap().starts_with("Bearer ey"));
        assert_eq!(s.music_user_token.as_deref(), Some(MUT));
    }
}

#[tokio::test]
async fn validation_is_tenant_scoped_and_apple_only() {
    let api = FakeAppleApi::start().await;
    let (_tv, e, _) = setup(&api).await;
    let other = Caller::Tenant {
        tenant: "other".into(),
        actor: "t".into(),
    };
    let err = e
        .apple()
        .validate_connection(&other, "acme/apple-music/alice")
        .await
        .unwrap_err();
    assert_eq!(err.code(), "forbidden");
    let own = Caller::Tenant {
        tenant: "acme".into(),
        actor: "t".into(),
    };
    e.apple()
        .validate_connection(&own, "acme/apple-music/alice")
        .await
        .unwrap();
    let err = e
        .apple()
        .validate_connection(&own, "acme/spotify/alice")
        .await
        .unwrap_err();
    assert_eq!(err.code(), "bad_request");
    assert!(api.requests().len() == 1);
}

#[tokio::test]
async fn no_active_key_is_a_configuration_error_on_the_connection() {
    let api = FakeAppleApi::start().await;
    let (_tv, e, _) = setup(&api).await;
    e.handle(
        &admin(),
        Request::AppleKeyRetire {
            tenant: "acme".into(),
            key_id: KEY1.into(),
            force: true,
        },
    )
    .await
    .unwrap();
    let err = e
        .apple()
        .validate_connection(&admin(), "acme/apple-music/alice")
        .await
        .unwrap_err();
    assert_eq!(err.code(), "config_error");
    assert_eq!(show(&e).status, Status::Error);
    assert!(api.requests().is_empty());
}

/// The refresh engine's path: `refresh CONNECTION` and a scheduler pass (`refresh --due`)
/// validate apple-music connections through the fake Apple API (issue 5 point 4 wired to
/// issue 3's scheduler).
#[tokio::test]
async fn refresh_and_the_scheduler_validate_apple_music_connections() {
    let api = FakeAppleApi::start().await;
    let (_tv, e, clock) = setup(&api).await;
    let conn = "acme/apple-music/alice";
    // put schedules the first validation one interval ahead
    let v = show(&e);
    assert!(v.due_at.is_some(), "put scheduled no validation");

    // refresh CONNECTION: 200 keeps it connected
    api.set_status(200);
    e.handle(
        &admin(),
        Request::Refresh {
            connection: conn.into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(show(&e).status, Status::Connected);
    assert_eq!(api.requests().len(), 1);
    assert_eq!(api.requests()[0].music_user_token.as_deref(), Some(MUT));

    // a scheduler pass once due: 503 → retrying
    api.set_status(503);
    clock.advance(2 * 3600);
    let _ = e.handle(&admin(), Request::RefreshDue).await;
    assert_eq!(show(&e).status, Status::Retrying, "{:?}", show(&e));
    assert_eq!(api.requests().len(), 2);

    // 401 → needs_reauth and get refuses with exit 6
    api.set_status(401);
    clock.advance(2 * 3600);
    let _ = e.handle(&admin(), Request::RefreshDue).await;
    let v = show(&e);
    assert_eq!(v.status, Status::NeedsReauth, "{v:?}");
    let err = e
        .handle(
            &admin(),
            Request::Get {
                connection: conn.into(),
                min_ttl: None,
                force_refresh: false,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 6);
}

/// SPEC §7: without `validate_interval_secs` in the config, Music-User-Tokens are
/// validated hourly: `put` schedules the first check about an hour ahead and a successful
/// validation the next one.
#[tokio::test]
async fn validation_interval_defaults_to_hourly() {
    let api = FakeAppleApi::start().await;
    let (tv, e, clock) = vault_with_key1().await;
    let cfg = tv.file(
        "config.toml",
        format!("[apple_music]\napi_base = \"{}\"\n", api.base).as_bytes(),
    );
    let config = tokenvault::config::Config::load(&cfg).unwrap();
    assert_eq!(config.apple_music.validate_interval_secs, None);
    e.set_config(config);
    e.handle(
        &admin(),
        Request::Put {
            connection: "acme/apple-music/alice".into(),
            token: serde_json::json!({ "access_token": MUT }),
        },
    )
    .await
    .unwrap();
    let now = clock.get();
    let due = show(&e).due_at.unwrap();
    assert!((now + 3600..=now + 3960).contains(&due), "{due} vs {now}");

    clock.advance(4000);
    let r = e.handle(&admin(), Request::RefreshDue).await.unwrap();
    assert!(matches!(r, Response::Refreshed { .. }), "{r:?}");
    assert_eq!(api.requests().len(), 1, "the due check ran");
    let v = show(&e);
    assert_eq!(v.status, Status::Connected);
    let now = clock.get();
    let due = v.due_at.unwrap();
    assert!((now + 3600..=now + 3960).contains(&due), "{due} vs {now}");
}
