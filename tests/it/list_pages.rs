//! `list` pages (SPEC §10, what the TUI browses with): `limit` and `after` walk every
//! connection exactly once in address order; `contains` matches the address or the reason,
//! including the reason a `connected` connection whose token expired is shown with; the
//! status filter sees that derived `token_expired`; a tenant sees only its tenant.

use crate::support::apple::TestClock;
use crate::support::*;
use std::sync::Arc;
use tokenvault::contract::{Caller, ConnectionView, Request, Response};
use tokenvault::vault::records::Status;

fn list(
    e: &tokenvault::Engine,
    caller: &Caller,
    status: Option<Status>,
    limit: Option<usize>,
    after: Option<String>,
    contains: Option<&str>,
) -> (Vec<ConnectionView>, Option<String>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let req = Request::List {
        filter: None,
        status,
        limit,
        after,
        contains: contains.map(str::to_owned),
    };
    match rt.block_on(e.handle(caller, req)).unwrap() {
        Response::Connections { connections, next } => (connections, next),
        other => panic!("{other:?}"),
    }
}

fn names(v: &[ConnectionView]) -> Vec<String> {
    v.iter().map(|c| c.connection.clone()).collect()
}

/// 2 tenants × 7 accounts; `acme/spotify/u3` expires in 60 s, every other in an hour.
fn world() -> (TestVault, tokenvault::Engine, Arc<TestClock>) {
    let tv = TestVault::new();
    let clock = TestClock::new();
    let e = crate::support::apple::engine_with(&tv, clock.clone(), "");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for t in ["acme", "beta"] {
            e.handle(&admin(), Request::TenantAdd { name: t.into() })
                .await
                .unwrap();
            for i in 0..7 {
                let life = if (t, i) == ("acme", 3) { 60 } else { 3600 };
                e.handle(
                    &admin(),
                    Request::Put {
                        connection: format!("{t}/spotify/u{i}"),
                        token: serde_json::json!({"access_token": format!("at-list-{t}-{i}"), "expires_in": life}),
                    },
                )
                .await
                .unwrap();
            }
        }
    });
    (tv, e, clock)
}

#[test]
fn pages_walk_every_connection_once_in_order() {
    let (_tv, e, _) = world();
    let (all, next) = list(&e, &admin(), None, None, None, None);
    assert_eq!(all.len(), 14);
    assert_eq!(next, None);
    let mut sorted = names(&all);
    sorted.sort();
    assert_eq!(names(&all), sorted, "address order");
    for limit in [1, 3, 5, 14, 20] {
        let (mut walked, mut after, mut pages) = (Vec::new(), None, 0);
        loop {
            let (page, next) = list(&e, &admin(), None, Some(limit), after, None);
            assert!(page.len() <= limit);
            walked.extend(names(&page));
            pages += 1;
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
            assert!(pages < 100, "no end");
        }
        assert_eq!(walked, names(&all), "limit {limit}");
    }
}

#[test]
fn contains_matches_address_and_reason_and_the_status_filter_sees_token_expired() {
    let (_tv, e, clock) = world();
    let (m, _) = list(&e, &admin(), None, None, None, Some("u3"));
    assert_eq!(names(&m), ["acme/spotify/u3", "beta/spotify/u3"]);
    let (m, _) = list(&e, &admin(), None, Some(1), None, Some("beta/"));
    assert_eq!(names(&m), ["beta/spotify/u0"]);
    assert_eq!(
        list(&e, &admin(), None, None, None, Some("no such text"))
            .0
            .len(),
        0
    );
    // a text only in the stored reason (no address has it)
    let reason = list(&e, &admin(), None, None, None, None).0[0]
        .reason
        .clone()
        .expect("a put records a reason");
    let (m, _) = list(&e, &admin(), None, None, None, Some(&reason));
    assert_eq!(m.len(), 14, "{reason:?}");
    // two minutes later u3's token has expired: shown as token_expired, with a reason
    // that `contains` finds, and the status filter finds it (it is stored as connected)
    clock.advance(120);
    let (m, _) = list(
        &e,
        &admin(),
        None,
        None,
        None,
        Some("the access token expired"),
    );
    assert_eq!(names(&m), ["acme/spotify/u3"]);
    assert_eq!(m[0].status, Status::TokenExpired);
    let (m, _) = list(&e, &admin(), Some(Status::TokenExpired), None, None, None);
    assert_eq!(names(&m), ["acme/spotify/u3"]);
    let (m, _) = list(&e, &admin(), Some(Status::Connected), None, None, None);
    assert_eq!(m.len(), 13);
    assert!(!names(&m).contains(&"acme/spotify/u3".to_owned()));
    // page and filters together
    let (m, next) = list(
        &e,
        &admin(),
        Some(Status::Connected),
        Some(2),
        None,
        Some("acme"),
    );
    assert_eq!(names(&m), ["acme/spotify/u0", "acme/spotify/u1"]);
    let (m, _) = list(
        &e,
        &admin(),
        Some(Status::Connected),
        Some(2),
        next,
        Some("acme"),
    );
    assert_eq!(names(&m), ["acme/spotify/u2", "acme/spotify/u4"]);
}

#[test]
fn a_tenant_pages_through_its_own_connections_only() {
    let (_tv, e, _) = world();
    let beta = Caller::Tenant {
        tenant: "beta".into(),
        actor: "test".into(),
    };
    let (m, _) = list(&e, &beta, None, None, None, Some("u"));
    assert_eq!(m.len(), 7);
    assert!(m.iter().all(|c| c.tenant == "beta"), "{:?}", names(&m));
    let (m, _) = list(
        &e,
        &beta,
        None,
        Some(3),
        Some("acme/spotify/u9".into()),
        None,
    );
    assert_eq!(
        names(&m),
        ["beta/spotify/u0", "beta/spotify/u1", "beta/spotify/u2"]
    );
}
