//! What the refresh and PostgreSQL benchmarks share: a clock they can jump forward, a fake
//! token endpoint on 127.0.0.1 that rotates refresh tokens and counts its calls, and the
//! admin caller. Included with `#[path = "common/bench.rs"] mod bench;`.
#![allow(dead_code, clippy::unwrap_used)]

use axum::Router;
use axum::routing::post;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;
use tokenvault::contract::Caller;
use tokenvault::engine::Clock;

/// Wall clock plus an adjustable offset, so the benchmark can jump to "everything due".
#[derive(Debug, Default)]
pub struct OffsetClock(pub AtomicI64);
impl Clock for OffsetClock {
    fn now(&self) -> i64 {
        chrono::Utc::now().timestamp() + self.0.load(Ordering::Relaxed)
    }
}

pub async fn fake_provider(delay: Duration) -> (String, Arc<AtomicU64>) {
    let n = Arc::new(AtomicU64::new(0));
    let n2 = n.clone();
    let app = Router::new().route(
        "/token",
        post(move || {
            let n = n2.clone();
            async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let i = n.fetch_add(1, Ordering::Relaxed);
                (
                    [("content-type", "application/json")],
                    format!(
                        r#"{{"access_token":"at-{i}","refresh_token":"rt-{i}","expires_in":3600,"token_type":"Bearer"}}"#
                    ),
                )
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (format!("http://{addr}/token"), n)
}

pub fn admin() -> Caller {
    Caller::Admin {
        actor: "bench".into(),
    }
}
