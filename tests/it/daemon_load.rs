//! Many concurrent socket clients fetching tokens.
//!
//! With the refresh engine merged, the scheduler refreshes while these clients fetch;
//! until then this covers the socket side: 64 concurrent clients, no error, every token
//! the right one.

use crate::support::*;
use serde_json::json;

#[test]
fn sixty_four_concurrent_clients_get_their_tokens_without_errors() {
    let tv = TestVault::new();
    let mut reqs = vec![tokenvault::Request::TenantAdd {
        name: "acme".into(),
    }];
    for i in 0..16 {
        reqs.push(tokenvault::Request::Put {
            connection: format!("acme/spotify/u{i}"),
            token: json!({"access_token": format!("AT-u{i}"), "expires_in": 3600}),
        });
    }
    tv.setup(reqs);
    let d = Daemon::start(&tv, &[]);
    let socket = d.socket.clone();
    let threads: Vec<_> = (0..64)
        .map(|t| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut c = Conn::open(&socket);
                let mut errors = Vec::new();
                for n in 0..50 {
                    let i = (t + n) % 16;
                    let v = c
                        .call(json!({"op":"get","connection":format!("acme/spotify/u{i}"),"id":n}));
                    if v["token"] != format!("AT-u{i}") || v["id"] != n {
                        errors.push(v.to_string());
                    }
                }
                errors
            })
        })
        .collect();
    let errors: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert!(
        errors.is_empty(),
        "{} errors, first: {:?}",
        errors.len(),
        errors.first()
    );
    let m = d.conn().call(json!({"op":"metrics"}));
    assert!(
        m["text"]
            .as_str()
            .unwrap()
            .contains("tokenvault_tokens_served_total 3200")
    );
}

/// Issue 4 point 6 proper: 64 clients fetching while refreshes happen, against a fake token
/// endpoint counting calls per refresh token.
#[test]
fn sixty_four_clients_during_refreshes_make_one_provider_call_per_connection() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    let calls: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let addr = {
        let calls = calls.clone();
        rt.block_on(async move {
            use axum::{Form, Json, Router, routing::post};
            let app = Router::new().route(
                "/token",
                post(move |Form(f): Form<HashMap<String, String>>| {
                    let calls = calls.clone();
                    async move {
                        let rt = f.get("refresh_token").cloned().unwrap_or_default();
                        *calls.lock().unwrap().entry(rt.clone()).or_default() += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        Json(json!({
                            "access_token": format!("AT-new-{rt}"),
                            "expires_in": 3600,
                            "token_type": "Bearer"
                        }))
                    }
                }),
            );
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
            addr
        })
    };
    let tv = TestVault::new();
    let mut reqs = vec![
        tokenvault::Request::TenantAdd {
            name: "acme".into(),
        },
        tokenvault::Request::ClientSet {
            tenant: "acme".into(),
            provider: "spotify".into(),
            client_id: "cid".into(),
            client_secret: Some(tokenvault::secret::Secret::new("csecret")),
            token_url: Some(format!("http://{addr}/token")),
            authorization_url: None,
            device_authorization_url: None,
            revocation_url: None,
            params: Default::default(),
        },
    ];
    for i in 0..16 {
        // expiring in 20 s: due for the scheduler and below get's default min_ttl (30 s)
        reqs.push(tokenvault::Request::Put {
            connection: format!("acme/spotify/u{i}"),
            token: json!({"access_token": format!("AT-old-{i}"), "refresh_token": format!("rt{i}"), "expires_in": 20}),
        });
    }
    tv.setup(reqs);
    let d = Daemon::start(&tv, &[]);
    let socket = d.socket.clone();
    let threads: Vec<_> = (0..64)
        .map(|t| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut c = Conn::open(&socket);
                let mut errors = Vec::new();
                for n in 0..20 {
                    let i = (t + n) % 16;
                    let v = c.call(json!({"op":"get","connection":format!("acme/spotify/u{i}")}));
                    if v["token"] != format!("AT-new-rt{i}") {
                        errors.push(v.to_string());
                    }
                }
                errors
            })
        })
        .collect();
    let errors: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert!(
        errors.is_empty(),
        "{} errors, first: {:?}",
        errors.len(),
        errors.first()
    );
    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), 16, "{calls:?}");
    assert!(calls.values().all(|n| *n == 1), "{calls:?}");
}
