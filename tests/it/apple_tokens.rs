//! Developer tokens: every token verified with the PUBLIC key by jsonwebtoken, each claim
//! checked; caching, renewal, lifetime and origin from the config; `get TENANT/apple-music`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::apple::*;
use crate::support::*;
use tokenvault::{Request, Response};

#[tokio::test]
async fn token_verifies_with_the_public_key_and_claims_are_right() {
    let (_tv, e, clock) = vault_with_key1().await;
    let now = clock.get();
    let t = token(&e, &admin(), "acme").await.unwrap();
    let c = verify(&t, KEY1);
    assert_eq!(c.iat, now);
    assert_eq!(c.exp, now + DEFAULT_LIFETIME);
    assert_eq!(c.origin, None);
    assert!(!verifies_with(&t, KEY2), "verified with the wrong key");
    // a tampered token does not verify
    let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
    parts[1] = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        format!(
            r#"{{"iss":"{TEAM}","iat":{now},"exp":{}}}"#,
            now + MAX_LIFETIME + 1
        ),
    );
    assert!(!verifies_with(&parts.join("."), KEY1));
}

#[tokio::test]
async fn lifetime_and_origin_come_from_the_config() {
    let tv = TestVault::new();
    let clock = TestClock::new();
    let e = engine_with(
        &tv,
        clock.clone(),
        r#"
        [apple_music]
        token_lifetime_secs = 15777000
        renew_before_secs = 3600
        origin = ["https://app.example", "https://www.example"]
        "#,
    );
    e.handle(
        &admin(),
        Request::TenantAdd {
            name: "acme".into(),
        },
    )
    .await
    .unwrap();
    add_key(&e, "acme", KEY1).await.unwrap();
    let json = match e
        .handle(
            &admin(),
            Request::AppleToken {
                tenant: "acme".into(),
            },
        )
        .await
        .unwrap()
    {
        Response::AppleToken(t) => t,
        other => panic!("{other:?}"),
    };
    let c = verify(json.token.expose(), KEY1);
    assert_eq!(c.exp - c.iat, MAX_LIFETIME);
    assert_eq!(
        c.origin,
        Some(vec![
            "https://app.example".to_owned(),
            "https://www.example".to_owned()
        ])
    );
    assert_eq!((json.issued_at, json.expires_at), (c.iat, c.exp));
    assert_eq!(json.key_id, KEY1);

    // over Apple's limit: a configuration error, no token
    e.set_config(
        tokenvault::config::Config::parse("[apple_music]\ntoken_lifetime_secs = 15777001").unwrap(),
    );
    let err = token(&e, &admin(), "acme").await.unwrap_err();
    assert_eq!(err.code(), "config_error", "{err}");
}

#[tokio::test]
async fn cached_until_less_than_a_day_remains_then_renewed() {
    let (_tv, e, clock) = vault_with_key1().await;
    let first = token(&e, &admin(), "acme").await.unwrap();
    let c1 = verify(&first, KEY1);
    // hours and months later: the same token
    clock.advance(3600);
    assert_eq!(token(&e, &admin(), "acme").await.unwrap(), first);
    clock.advance(DEFAULT_LIFETIME - 86_400 - 3600 - 1);
    assert_eq!(token(&e, &admin(), "acme").await.unwrap(), first);
    // now exactly one day remains minus a second: renewed
    clock.advance(2);
    let second = token(&e, &admin(), "acme").await.unwrap();
    assert_ne!(second, first);
    let c2 = verify(&second, KEY1);
    assert_eq!(c2.iat, clock.get());
    assert!(c2.exp > c1.exp);
    // the key's last token expiry follows
    let k = keys(&e, "acme").await;
    assert_eq!(k[0].last_token_exp, Some(c2.exp));
}

#[tokio::test]
async fn renewal_margin_is_configurable() {
    let (_tv, e, clock) = vault_with_key1().await;
    e.set_config(
        tokenvault::config::Config::parse(
            "[apple_music]\ntoken_lifetime_secs = 7200\nrenew_before_secs = 600",
        )
        .unwrap(),
    );
    let first = token(&e, &admin(), "acme").await.unwrap();
    assert_eq!(verify(&first, KEY1).exp - verify(&first, KEY1).iat, 7200);
    clock.advance(7200 - 600);
    assert_eq!(token(&e, &admin(), "acme").await.unwrap(), first);
    clock.advance(1);
    assert_ne!(token(&e, &admin(), "acme").await.unwrap(), first);
}

#[tokio::test]
async fn the_cache_is_shared_by_engines_on_the_same_vault_and_survives_rekey() {
    let (tv, e, clock) = vault_with_key1().await;
    let first = token(&e, &admin(), "acme").await.unwrap();
    e.handle(&admin(), Request::Rekey).await.unwrap();
    // the sealed copy was re-sealed: still opens, still the same token
    assert_eq!(token(&e, &admin(), "acme").await.unwrap(), first);
    drop(e);
    // a new process (a new engine) reuses the sealed token instead of signing again
    let e2 = engine_with(&tv, clock, "");
    assert_eq!(token(&e2, &admin(), "acme").await.unwrap(), first);
}

#[test]
fn the_cli_hands_out_the_same_cached_token_across_processes() {
    let tv = TestVault::new();
    tv.cmd().args(["tenant", "add", "acme"]).assert().success();
    tv.cmd()
        .args([
            "apple",
            "key",
            "add",
            "acme",
            "--team-id",
            TEAM,
            "--key-id",
            KEY1,
        ])
        .arg("--p8")
        .arg(fixture("AuthKey_KEY1AAAAAA.p8"))
        .assert()
        .success();
    let a = tv.cmd().args(["apple", "token", "acme"]).output().unwrap();
    assert!(a.status.success(), "{}", stderr(&a));
    let a = stdout(&a);
    assert!(a.ends_with('\n') && a.trim_end().lines().count() == 1);
    verify(a.trim_end(), KEY1);
    let b = tv
        .cmd()
        .args(["apple", "token", "acme", "--json"])
        .output()
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&b.stdout).unwrap();
    assert_eq!(j["token"].as_str().unwrap(), a.trim_end());
    assert_eq!(j["key_id"], KEY1);
    assert_eq!(j["team_id"], TEAM);
    let c = verify(j["token"].as_str().unwrap(), KEY1);
    assert_eq!(j["expires_at"].as_i64(), Some(c.exp));
    // and `get TENANT/apple-music` (two parts) gives the same token, alone on a line
    let g = tv.cmd().args(["get", "acme/apple-music"]).output().unwrap();
    assert!(g.status.success(), "{}", stderr(&g));
    assert_eq!(stdout(&g), a);
    // no active key in another tenant: not found, exit 4
    tv.cmd().args(["tenant", "add", "bare"]).assert().success();
    let out = tv.cmd().args(["apple", "token", "bare"]).output().unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(stderr(&out).contains("apple key add"), "{}", stderr(&out));
}

#[tokio::test]
async fn get_tenant_apple_music_is_scoped_to_the_tenant() {
    let (_tv, e, _) = vault_with_key1().await;
    e.handle(
        &admin(),
        Request::TenantAdd {
            name: "other".into(),
        },
    )
    .await
    .unwrap();
    let get = |c: Caller, addr: &str| {
        let req = Request::Get {
            connection: addr.into(),
            min_ttl: None,
            force_refresh: false,
        };
        let e = &e;
        async move { e.handle(&c, req).await }
    };
    let acme = Caller::Tenant {
        tenant: "acme".into(),
        actor: "tenant:acme".into(),
    };
    let other = Caller::Tenant {
        tenant: "other".into(),
        actor: "tenant:other".into(),
    };
    match get(acme.clone(), "acme/apple-music").await.unwrap() {
        Response::Token {
            connection,
            token,
            expires_at,
            token_type,
        } => {
            assert_eq!(connection, "acme/apple-music");
            let c = verify(token.expose(), KEY1);
            assert_eq!(expires_at, Some(c.exp));
            assert_eq!(token_type.as_deref(), Some("Bearer"));
        }
        other => panic!("{other:?}"),
    }
    let err = get(other.clone(), "acme/apple-music").await.unwrap_err();
    assert_eq!(err.code(), "forbidden");
    let err = get(other, "other/apple-music").await.unwrap_err();
    assert_eq!(err.code(), "not_found");
    // the hand-outs were audited (queued, then flushed)
    e.flush_audit().unwrap();
    let rx = e.vault().read().unwrap();
    let recs = rx.audit(Some("acme"), 0).unwrap();
    assert!(
        recs.iter()
            .any(|r| r.action == "apple_token" && r.actor == "tenant:acme" && r.outcome == "ok")
    );
    // three-part addresses still go to connections
    let err = get(acme, "acme/apple-music/alice").await.unwrap_err();
    assert_eq!(err.code(), "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_requests_sign_one_token() {
    let (_tv, e, _) = vault_with_key1().await;
    let e = std::sync::Arc::new(e);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let e = e.clone();
        tasks.push(tokio::spawn(async move {
            token(&e, &admin(), "acme").await.unwrap()
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.push(t.await.unwrap());
    }
    all.dedup();
    assert_eq!(all.len(), 1, "more than one token was signed");
}

#[tokio::test]
async fn get_min_ttl_asks_for_a_token_with_that_much_left() {
    let (_tv, e, clock) = vault_with_key1().await;
    let get = |min_ttl: u64| {
        let e = &e;
        async move {
            match e
                .handle(
                    &admin(),
                    Request::Get {
                        connection: "acme/apple-music".into(),
                        min_ttl: Some(min_ttl),
                        force_refresh: false,
                    },
                )
                .await?
            {
                Response::Token { token, .. } => Ok(token.expose().to_owned()),
                other => panic!("{other:?}"),
            }
        }
    };
    let first: tokenvault::Result<String> = get(30).await;
    let first = first.unwrap();
    clock.advance(10 * 86_400);
    // 170 days left: enough for a week, not for 175 days
    assert_eq!(get(7 * 86_400).await.unwrap(), first);
    let second = get(175 * 86_400).await.unwrap();
    assert_ne!(second, first);
    let c = verify(&second, KEY1);
    assert_eq!(c.iat, clock.get());
    // more than a token can live: a usage error, not a token
    let err = get(DEFAULT_LIFETIME as u64).await.unwrap_err();
    assert_eq!(err.code(), "bad_request");
}

/// SPEC §7 over the live daemon: `get TENANT/apple-music` by a tenant-key caller returns a
/// developer token that verifies with the tenant's public key, cached across requests,
/// and the same through the CLI with the key.
#[test]
fn get_apple_music_over_the_daemon_socket_with_a_tenant_key() {
    let tv = TestVault::new();
    let key = two_tenants(&tv);
    tv.setup(vec![Request::AppleKeyAdd {
        tenant: "acme".into(),
        team_id: TEAM.into(),
        key_id: KEY1.into(),
        p8: Secret::new(p8(KEY1)),
    }]);
    let d = Daemon::start(&tv, &[]);
    let mut c = d.conn();
    assert_eq!(c.auth(&key)["ok"], true);
    let before = chrono::Utc::now().timestamp();
    let v = c.call(serde_json::json!({"op":"get","connection":"acme/apple-music"}));
    let after = chrono::Utc::now().timestamp();
    assert_eq!(v["ok"], true, "{v}");
    let t = v["token"].as_str().unwrap().to_owned();
    let claims = verify(&t, KEY1);
    assert_eq!(claims.iss, TEAM);
    assert!((before..=after).contains(&claims.iat), "{claims:?}");
    assert_eq!(claims.exp - claims.iat, DEFAULT_LIFETIME);
    assert!(!v.to_string().contains("PRIVATE KEY"));
    // cached: the same token again, over the socket and through the CLI
    let v = c.call(serde_json::json!({"op":"get","connection":"acme/apple-music"}));
    assert_eq!(v["token"], t.as_str());
    tv.daemon_cmd()
        .env("TOKENVAULT_TENANT_KEY", &key)
        .args(["get", "acme/apple-music"])
        .assert()
        .success()
        .stdout(format!("{t}\n"));
    // globex has no key, and acme's key cannot ask for it anyway
    assert_eq!(
        c.code(serde_json::json!({"op":"get","connection":"globex/apple-music"})),
        "forbidden"
    );
}
