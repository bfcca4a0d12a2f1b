//! `--metrics-listen`: a tiny HTTP/1.1 endpoint on loopback answering `GET /metrics` with
//! the Prometheus text exposition and `GET /healthz` with 200 `healthy` or 503 and the
//! reasons (`status`'s problems: counts and what to run, never a connection's name — anyone
//! on loopback can ask). One request per connection, a bounded request head, a 5-second
//! deadline; anything else gets 404 or 405.

use crate::engine::Engine;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub async fn run(engine: Arc<Engine>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            a = listener.accept() => match a {
                Ok((s, _)) => {
                    let e = engine.clone();
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(Duration::from_secs(5), one(e, s)).await;
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            },
        }
    }
}

/// `GET /healthz`: what `tokenvault health` decides, as an HTTP status.
async fn healthz(engine: &Engine) -> (&'static str, &'static str, String) {
    let caller = crate::contract::Caller::Admin {
        actor: "metrics-http".into(),
    };
    match engine
        .handle(&caller, crate::contract::Request::Status)
        .await
    {
        Ok(crate::contract::Response::Status(s)) if s.healthy => {
            ("200 OK", "text/plain; charset=utf-8", "healthy\n".into())
        }
        Ok(crate::contract::Response::Status(s)) => {
            let mut body = String::from("unhealthy\n");
            for p in &s.problems {
                body.push_str(p);
                body.push('\n');
            }
            ("503 Service Unavailable", "text/plain; charset=utf-8", body)
        }
        _ => (
            "503 Service Unavailable",
            "text/plain; charset=utf-8",
            "unhealthy\ncannot read the vault: see the daemon's log\n".into(),
        ),
    }
}

async fn one(engine: Arc<Engine>, mut s: TcpStream) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await?;
        if n == 0 || head.len() + n > 8192 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let first = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let mut parts = first.split(|b| *b == b' ');
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let (status, ctype, body) = if method != b"GET" {
        (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_string(),
        )
    } else if path == b"/metrics" || path == b"/" {
        let ctx = engine.context().clone();
        match tokio::task::spawn_blocking(move || {
            crate::metrics::render(ctx.metrics(), ctx.vault(), ctx.now())
        })
        .await
        {
            Ok(Ok(text)) => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", text),
            _ => (
                "500 Internal Server Error",
                "text/plain",
                "cannot read the vault\n".into(),
            ),
        }
    } else if path == b"/healthz" {
        healthz(&engine).await
    } else {
        (
            "404 Not Found",
            "text/plain",
            "try /metrics or /healthz\n".to_string(),
        )
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(resp.as_bytes()).await?;
    s.shutdown().await
}
