//! The hand-out cache (`vault::TokenCache`) never serves a token that a later commit
//! replaced or removed.

use crate::support::*;
use std::sync::Arc;
use tokenvault::contract::{Request, Response};

async fn get(e: &tokenvault::Engine, c: &str) -> tokenvault::Result<String> {
    match e
        .handle(
            &admin(),
            Request::Get {
                connection: c.into(),
                min_ttl: Some(0),
                force_refresh: false,
            },
        )
        .await?
    {
        Response::Token { token, .. } => Ok(token.expose().to_owned()),
        other => panic!("{other:?}"),
    }
}

async fn add_acme(e: &tokenvault::Engine) {
    e.handle(
        &admin(),
        Request::TenantAdd {
            name: "acme".into(),
        },
    )
    .await
    .unwrap();
}

async fn audit_records(e: &tokenvault::Engine) -> Vec<tokenvault::vault::records::AuditRecord> {
    match e
        .handle(
            &admin(),
            Request::Audit {
                tenant: None,
                since: None,
            },
        )
        .await
        .unwrap()
    {
        Response::Audit { records } => records,
        other => panic!("{other:?}"),
    }
}

async fn put(e: &tokenvault::Engine, c: &str, token: &str) {
    e.handle(
        &admin(),
        Request::Put {
            connection: c.into(),
            token: serde_json::json!({"access_token": token, "expires_in": 3600}),
        },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_new_put_or_a_remove_replaces_the_cached_token() {
    let tv = TestVault::new();
    let e = tv.engine();
    add_acme(&e).await;
    put(&e, "acme/spotify/a", "AT-1").await;
    assert_eq!(get(&e, "acme/spotify/a").await.unwrap(), "AT-1");
    assert_eq!(get(&e, "acme/spotify/a").await.unwrap(), "AT-1"); // from the cache
    put(&e, "acme/spotify/a", "AT-2").await;
    assert_eq!(get(&e, "acme/spotify/a").await.unwrap(), "AT-2");
    e.handle(
        &admin(),
        Request::Remove {
            connection: "acme/spotify/a".into(),
            revoke: false,
        },
    )
    .await
    .unwrap();
    assert_eq!(get(&e, "acme/spotify/a").await.unwrap_err().exit_code(), 4);
    // a token about to expire is not served from the cache when min_ttl asks for more
    e.handle(
        &admin(),
        Request::Put {
            connection: "acme/spotify/b".into(),
            token: serde_json::json!({"access_token": "AT-short", "expires_in": 100}),
        },
    )
    .await
    .unwrap();
    assert_eq!(get(&e, "acme/spotify/b").await.unwrap(), "AT-short");
    let r = e
        .handle(
            &admin(),
            Request::Get {
                connection: "acme/spotify/b".into(),
                min_ttl: Some(200),
                force_refresh: false,
            },
        )
        .await;
    // not from the cache: the engine tried to renew it, could not (no refresh token), and
    // hands out the token that still works while the status says why (issue: a refresh
    // that cannot happen never takes a valid token away)
    assert!(r.is_ok(), "a still-valid token was taken away: {r:?}");
    match e
        .handle(
            &admin(),
            Request::Show {
                connection: "acme/spotify/b".into(),
            },
        )
        .await
        .unwrap()
    {
        // no client is registered here: the attempt ends in `error`, not `connected`
        tokenvault::Response::Connection(v) => assert_eq!(
            v.status,
            tokenvault::vault::records::Status::Error,
            "the cache answered instead of a refresh attempt"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn readers_racing_a_writer_end_on_the_last_committed_token() {
    let tv = TestVault::new();
    let e = Arc::new(tv.engine());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        add_acme(&e).await;
        put(&e, "acme/spotify/a", "AT-0").await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut readers = Vec::new();
        for _ in 0..4 {
            let (e, stop) = (e.clone(), stop.clone());
            readers.push(tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    get(&e, "acme/spotify/a").await.unwrap();
                    n += 1;
                    tokio::task::yield_now().await;
                }
                n
            }));
        }
        for i in 1..=40 {
            put(&e, "acme/spotify/a", &format!("AT-{i}")).await;
            assert_eq!(get(&e, "acme/spotify/a").await.unwrap(), format!("AT-{i}"));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut total = 0;
        for r in readers {
            total += r.await.unwrap();
        }
        assert!(total > 0);
        for _ in 0..10 {
            assert_eq!(get(&e, "acme/spotify/a").await.unwrap(), "AT-40");
        }
    });
}

#[tokio::test]
async fn a_burst_of_identical_hand_outs_is_one_audit_record_with_a_count() {
    let tv = TestVault::new();
    let e = tv.engine();
    add_acme(&e).await;
    put(&e, "acme/spotify/a", "AT-1").await;
    put(&e, "acme/spotify/b", "AT-2").await;
    for _ in 0..50 {
        get(&e, "acme/spotify/a").await.unwrap();
        get(&e, "acme/spotify/b").await.unwrap();
    }
    e.flush_audit().unwrap();
    let records = audit_records(&e).await;
    let gets: Vec<_> = records.iter().filter(|r| r.action == "get").collect();
    let total: u64 = gets.iter().map(|r| r.count).sum();
    assert_eq!(total, 100, "{gets:?}");
    // one record per connection per second (the loop may straddle a second boundary)
    assert!(gets.len() <= 4, "{gets:?}");
}

/// Issue 4 point 5: in the daemon a hand-out is audited without a disk write on the `get`
/// path. The file is byte-for-byte the same after a hundred gets (cold and cached); the
/// records reach it at the next `flush_audit` (the daemon's once-a-second batch).
#[tokio::test]
async fn daemon_gets_write_nothing_until_the_audit_flush() {
    let tv = TestVault::new();
    let mut e = tv.engine();
    e.set_daemon(true);
    add_acme(&e).await;
    put(&e, "acme/spotify/a", "AT-1").await;
    put(&e, "acme/spotify/b", "AT-2").await;
    e.flush_audit().unwrap();
    let before = std::fs::read(&tv.path).unwrap();
    for _ in 0..50 {
        assert_eq!(get(&e, "acme/spotify/a").await.unwrap(), "AT-1");
        assert_eq!(get(&e, "acme/spotify/b").await.unwrap(), "AT-2");
    }
    assert!(
        before == std::fs::read(&tv.path).unwrap(),
        "a get wrote to the vault file"
    );
    assert!(e.flush_audit().unwrap() >= 2);
    assert!(
        before != std::fs::read(&tv.path).unwrap(),
        "the flush writes the hand-out records"
    );
    let records = audit_records(&e).await;
    let total: u64 = records
        .iter()
        .filter(|r| r.action == "get")
        .map(|r| r.count)
        .sum();
    assert_eq!(total, 100);
}
