//! Webhooks (SPEC §6): on a connection's status change into `needs_reauth`, `error` or
//! `token_expired`, and on its recovery to `connected`, POST a JSON event to every
//! `[[webhooks]]` URL of the config, signed with HMAC-SHA256.
//!
//! Owns: deciding which status events are worth a POST (`Dedup`), the payload, the
//! signature, delivery with exponential backoff. Must not: put a token or secret in a
//! payload or a log line.
//!
//! Deduplication: an alert is sent once per connection per bad status; `retrying` in
//! between does not re-arm it (error → retrying → error sends one alert). A recovery is
//! sent only for a connection that had an alert. Each event is delivered independently, so
//! a slow receiver delays no other event; receivers order events by `at`/`seq`.
//!
//! Signature: header `X-Tokenvault-Signature: sha256=<hex HMAC-SHA256(key, body)>` where
//! the key is the bytes of the hook's `secret_file` (one trailing newline dropped). A hook
//! without a `secret_file` is not sent (unsigned events could be forged).

use crate::config::WebhookConfig;
use crate::context::Context;
use crate::contract::{Event, EventKind, StatusEvent};
use crate::vault::records::Status;
use serde::Serialize;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

pub const SIGNATURE_HEADER: &str = "x-tokenvault-signature";
pub const EVENT_HEADER: &str = "x-tokenvault-event";

/// What a webhook receiver gets (the JSON body).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WebhookEvent {
    /// `status_alert` or `recovered`
    pub event: &'static str,
    pub seq: u64,
    pub connection: String,
    pub tenant: String,
    pub provider: String,
    pub from: Option<Status>,
    pub to: Option<Status>,
    pub reason: Option<String>,
    pub at: i64,
}

fn alerting(s: Status) -> bool {
    matches!(
        s,
        Status::NeedsReauth | Status::Error | Status::TokenExpired
    )
}

/// Remembers the last alerted status of each connection.
#[derive(Debug, Default)]
pub struct Dedup {
    alerted: HashMap<String, Status>,
}

impl Dedup {
    /// The event kind to send for `ev`, if any.
    pub fn decide(&mut self, ev: &StatusEvent) -> Option<&'static str> {
        match ev.to {
            Some(s) if alerting(s) => {
                if self.alerted.get(&ev.connection) == Some(&s) {
                    None
                } else {
                    self.alerted.insert(ev.connection.clone(), s);
                    Some("status_alert")
                }
            }
            Some(Status::Connected) => self.alerted.remove(&ev.connection).map(|_| "recovered"),
            Some(_) => None,
            None => {
                self.alerted.remove(&ev.connection);
                None
            }
        }
    }
}

/// Scheme and host of a URL, for logs: webhook URLs often carry a secret in their path or
/// query (Slack-style hooks), so the rest is never logged.
fn host(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("?", url));
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{host}/…")
}

pub fn sign(key: &[u8], body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(crate::vault::crypto::keyed_hash(key, body))
    )
}

/// Sends webhooks for status events until `shutdown`. Deliveries still retrying at
/// shutdown are abandoned.
pub async fn run(ctx: Context, shutdown: impl Future<Output = ()>) {
    let mut rx = ctx.subscribe();
    let mut dedup = Dedup::default();
    let seq = AtomicU64::new(0);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook HTTP client; webhooks are off");
            shutdown.await;
            return;
        }
    };
    let mut deliveries = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let ev = tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = deliveries.join_next(), if !deliveries.is_empty() => continue,
            ev = rx.recv() => ev,
        };
        let ev = match ev {
            Ok(Event {
                at,
                kind:
                    EventKind::Status {
                        connection,
                        from,
                        to,
                        reason,
                    },
            }) => StatusEvent {
                connection,
                from,
                to,
                reason,
                at,
            },
            Ok(_) => continue,
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "webhooks fell behind; some status events were not sent"
                );
                continue;
            }
            Err(RecvError::Closed) => break,
        };
        let Some(kind) = dedup.decide(&ev) else {
            continue;
        };
        let hooks = ctx.config().webhooks.clone();
        if hooks.is_empty() {
            continue;
        }
        let mut parts = ev.connection.splitn(3, '/');
        let payload = WebhookEvent {
            event: kind,
            seq: seq.fetch_add(1, Ordering::Relaxed) + 1,
            tenant: parts.next().unwrap_or_default().to_owned(),
            provider: parts.next().unwrap_or_default().to_owned(),
            connection: ev.connection.clone(),
            from: ev.from,
            to: ev.to,
            reason: ev.reason.clone(),
            at: ev.at,
        };
        let Ok(body) = serde_json::to_vec(&payload) else {
            continue;
        };
        let body = Arc::new(body);
        for hook in hooks {
            deliveries.spawn(deliver(client.clone(), hook, body.clone(), kind));
        }
    }
    deliveries.abort_all();
}

async fn deliver(
    client: reqwest::Client,
    hook: WebhookConfig,
    body: Arc<Vec<u8>>,
    kind: &'static str,
) {
    let Some(secret_file) = &hook.secret_file else {
        tracing::error!(url = %host(&hook.url), "webhook has no secret_file; not sending unsigned events");
        return;
    };
    let key = match crate::cli::passphrase::read_secret_file(
        std::path::Path::new(secret_file),
        "webhook secret",
    ) {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(url = %host(&hook.url), error = %e, "cannot read the webhook secret; event not sent");
            return;
        }
    };
    let signature = sign(key.expose().as_bytes(), &body);
    drop(key);
    let attempts = hook.max_attempts.unwrap_or(6).max(1);
    let mut delay = Duration::from_millis(hook.retry_base_ms.unwrap_or(1000));
    let timeout = Duration::from_secs(hook.timeout_secs.unwrap_or(10).max(1));
    for attempt in 1..=attempts {
        let sent = client
            .post(&hook.url)
            .timeout(timeout)
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, &signature)
            .header(EVENT_HEADER, kind)
            .body(body.as_ref().clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                tracing::debug!(url = %host(&hook.url), attempt, "webhook delivered");
                return;
            }
            Ok(r) => {
                tracing::warn!(url = %host(&hook.url), attempt, status = r.status().as_u16(), "webhook refused; will retry")
            }
            Err(e) => {
                tracing::warn!(url = %host(&hook.url), attempt, error = %e.without_url(), "webhook failed; will retry")
            }
        }
        if attempt < attempts {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(300));
        }
    }
    tracing::error!(url = %host(&hook.url), attempts, "webhook given up");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(conn: &str, from: Option<Status>, to: Option<Status>) -> StatusEvent {
        StatusEvent {
            connection: conn.into(),
            from,
            to,
            reason: None,
            at: 0,
        }
    }

    #[test]
    fn logged_urls_keep_only_the_host() {
        assert_eq!(
            host("https://hooks.slack.com/services/T000/B000/XXXXSECRET"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            host("http://user:pw@127.0.0.1:8080/h?k=SECRET"),
            "http://127.0.0.1:8080/…"
        );
    }

    #[test]
    fn dedup_table() {
        use Status::*;
        let mut d = Dedup::default();
        let a = "t/p/a";
        let steps = [
            (None, Some(Connected), None),
            (Some(Connected), Some(Retrying), None),
            (Some(Retrying), Some(Error), Some("status_alert")),
            (Some(Error), Some(Retrying), None),
            (Some(Retrying), Some(Error), None),
            (Some(Error), Some(TokenExpired), Some("status_alert")),
            (Some(TokenExpired), Some(Connected), Some("recovered")),
            (Some(Connected), Some(Connected), None),
            (Some(Connected), Some(NeedsReauth), Some("status_alert")),
            (Some(NeedsReauth), None, None),
            (None, Some(Connected), None),
        ];
        for (i, (from, to, want)) in steps.into_iter().enumerate() {
            assert_eq!(d.decide(&ev(a, from, to)), want, "step {i}");
        }
        // connections are independent
        assert_eq!(
            d.decide(&ev("t/p/b", None, Some(Error))),
            Some("status_alert")
        );
        assert_eq!(
            d.decide(&ev("t/p/c", None, Some(Error))),
            Some("status_alert")
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delivers_signed_retries_and_dedups_against_a_real_receiver() {
        use axum::{Router, extract::State, http::HeaderMap, http::StatusCode, routing::post};
        use std::sync::Mutex;
        type Seen = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;
        let seen: Seen = Arc::default();
        let calls = Arc::new(AtomicU64::new(0));
        async fn hook(
            State((seen, calls)): State<(Seen, Arc<AtomicU64>)>,
            headers: HeaderMap,
            body: axum::body::Bytes,
        ) -> StatusCode {
            // the first delivery attempt fails: the retry must succeed
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                return StatusCode::SERVICE_UNAVAILABLE;
            }
            seen.lock().unwrap().push((headers, body.to_vec()));
            StatusCode::NO_CONTENT
        }
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state((seen.clone(), calls.clone()));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });

        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("hook.key");
        std::fs::write(&key_file, "whsec-test-key\n").unwrap();
        let vault = crate::vault::Vault::init(
            &dir.path().join("v.redb"),
            &crate::secret::Secret::new("pw-pw-pw"),
            crate::vault::crypto::KdfParams::new(19, 2, 1).unwrap(),
        )
        .unwrap();
        let ctx = Context::new(vault, Arc::new(crate::context::SystemClock));
        ctx.set_config(crate::config::Config {
            webhooks: vec![WebhookConfig {
                url: format!("http://{addr}/hook"),
                secret_file: Some(key_file.display().to_string()),
                max_attempts: Some(3),
                retry_base_ms: Some(50),
                timeout_secs: Some(5),
            }],
            ..Default::default()
        });
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(run(ctx.clone(), async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        }));
        tokio::time::sleep(Duration::from_millis(50)).await;
        use Status::*;
        let c = "acme/spotify/alice";
        for (from, to) in [
            (None, Some(Connected)),
            (Some(Connected), Some(NeedsReauth)),
            (Some(NeedsReauth), Some(Retrying)),
            (Some(Retrying), Some(NeedsReauth)),
            (Some(NeedsReauth), Some(Connected)),
        ] {
            ctx.emit(ev(c, from, to));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while seen.lock().unwrap().len() < 2 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = stop_tx.send(true);
        task.await.unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen.len(),
            2,
            "one alert and one recovery, nothing repeated"
        );
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "the failed first attempt was retried"
        );
        let mut kinds = Vec::new();
        for (headers, body) in seen.iter() {
            let sig = headers[SIGNATURE_HEADER].to_str().unwrap();
            // independent check of the HMAC
            use hmac::{Hmac, Mac};
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"whsec-test-key").unwrap();
            mac.update(body);
            let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
            assert_eq!(sig, want);
            let v: serde_json::Value = serde_json::from_slice(body).unwrap();
            assert_eq!(v["connection"], c);
            assert_eq!(v["tenant"], "acme");
            kinds.push(v["event"].as_str().unwrap().to_owned());
        }
        kinds.sort();
        assert_eq!(kinds, ["recovered", "status_alert"]);
    }
}
