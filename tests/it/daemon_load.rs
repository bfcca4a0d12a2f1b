//! Issue 4 point 6: many concurrent socket clients fetching tokens.
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
