//! Simulated OAuth providers for `tokenvault demo` (SPEC §11): one real HTTP server (axum)
//! on `127.0.0.1`, an ephemeral port, serving several providers under path prefixes
//! (`/NAME/token`, `/NAME/me`) and an Apple Music API stand-in (`/apple/v1/me/storefront`).
//!
//! Each provider issues access tokens living 20–60 s and **rotating** refresh tokens: every
//! refresh answers a new refresh token and supersedes the one presented. Presenting a
//! superseded refresh token again is **reuse**: the whole grant (the token family) is
//! revoked and every later refresh of it answers `invalid_grant`, as real providers with
//! refresh-token rotation do (RFC 9700 §4.14.2). A grant can also be created revoked (the
//! demo's "the user revoked access" connection → `needs_reauth`). Behaviours for the
//! failure paths: `RateLimitOnce` answers the provider's first `/token` request with 429 and
//! `Retry-After`, `FailFirst(n)` answers its first `n` with 503.
//!
//! Must not: listen anywhere but the loopback interface, reach the network, or print a token
//! (the demo's world is throw-away, but the habit is the product's).

use crate::error::{Error, Result};
use crate::sync::LockExt;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

/// Access tokens live between these many seconds (uniformly drawn per answer).
pub const LIFETIME_SECS: std::ops::RangeInclusive<u64> = 20..=60;

/// How a simulated provider misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Always answers normally.
    Normal,
    /// The first `/token` request gets 429 with `Retry-After: secs`; then normal.
    RateLimitOnce { retry_after_secs: u64 },
    /// The first `n` `/token` requests get 503; then normal.
    FailFirst(u32),
}

/// One simulated provider: its name (the path prefix and the `[providers.NAME]` table), the
/// client it accepts, and its behaviour.
#[derive(Debug, Clone)]
pub struct ProviderSpec {
    pub name: String,
    pub client_id: String,
    pub client_secret: String,
    pub behaviour: Behaviour,
}

/// What a provider has answered so far (the demo's tests and its summary read it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub token_requests: u64,
    pub refreshed: u64,
    pub rate_limited: u64,
    pub unavailable: u64,
    pub invalid_grant: u64,
    pub reuse_detected: u64,
    pub invalid_client: u64,
}

#[derive(Debug)]
struct Grant {
    /// The refresh token currently valid for this grant.
    current: String,
    revoked: bool,
}

#[derive(Debug)]
struct Sim {
    spec: ProviderSpec,
    /// `/token` requests answered so far, failures included (behaviours count them).
    served: u64,
    grants: Vec<Grant>,
    /// Every refresh token ever issued → its grant (superseded ones included: reuse).
    issued: HashMap<String, usize>,
    counters: Counters,
}

#[derive(Debug, Default)]
struct Shared {
    providers: BTreeMap<String, Sim>,
}

/// The running simulated providers. Dropping it stops the server.
#[derive(Debug)]
pub struct SimProviders {
    base: String,
    state: Arc<Mutex<Shared>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for SimProviders {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn lock(state: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // a panic in another handler leaves consistent data (every change is one statement)
    state.lock_or_recover()
}

/// A random token of `prefix` and 128 bits, unguessable like a real one.
fn random_token(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        hex::encode(crate::vault::crypto::random_bytes(16))
    )
}

impl SimProviders {
    /// Starts the server on `127.0.0.1` (a free port) on the current tokio runtime.
    pub async fn start(specs: Vec<ProviderSpec>) -> Result<SimProviders> {
        let mut shared = Shared::default();
        for spec in specs {
            crate::names::validate_provider(&spec.name)?;
            shared.providers.insert(
                spec.name.clone(),
                Sim {
                    spec,
                    served: 0,
                    grants: Vec::new(),
                    issued: HashMap::new(),
                    counters: Counters::default(),
                },
            );
        }
        let state = Arc::new(Mutex::new(shared));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| {
                Error::io(
                    "cannot start the demo's simulated providers on 127.0.0.1",
                    e,
                )
            })?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("cannot read the simulated providers' address", e))?;
        let app = Router::new()
            .route("/{provider}/token", post(token))
            .route("/{provider}/me", get(me))
            .route("/apple/v1/me/storefront", get(storefront))
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "the demo's simulated providers stopped");
            }
        });
        Ok(SimProviders {
            base: format!("http://{addr}"),
            state,
            server,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The token endpoint of provider `name`.
    pub fn token_url(&self, name: &str) -> String {
        format!("{}/{name}/token", self.base)
    }

    /// The validation endpoint (`tokenvault test`) of provider `name`.
    pub fn validation_url(&self, name: &str) -> String {
        format!("{}/{name}/me", self.base)
    }

    /// The Apple Music API base (`[apple_music] api_base`).
    pub fn apple_api_base(&self) -> String {
        format!("{}/apple", self.base)
    }

    /// A new grant at provider `name`, as its token endpoint would have answered the
    /// authorisation: the token response JSON that `put` imports. `revoked`: the user has
    /// since withdrawn access, so the first refresh answers `invalid_grant`.
    pub fn grant(&self, name: &str, expires_in: u64, revoked: bool) -> Result<serde_json::Value> {
        let mut s = lock(&self.state);
        let sim = s
            .providers
            .get_mut(name)
            .ok_or_else(|| Error::not_found("simulated provider", name))?;
        let rt = random_token("demo-rt-");
        let index = sim.grants.len();
        sim.grants.push(Grant {
            current: rt.clone(),
            revoked,
        });
        sim.issued.insert(rt.clone(), index);
        Ok(serde_json::json!({
            "access_token": random_token("demo-at-"),
            "refresh_token": rt,
            "expires_in": expires_in,
            "token_type": "Bearer",
            "scope": "demo",
        }))
    }

    /// What provider `name` has answered so far.
    pub fn counters(&self, name: &str) -> Option<Counters> {
        lock(&self.state)
            .providers
            .get(name)
            .map(|s| s.counters.clone())
    }
}

fn json(status: StatusCode, v: serde_json::Value) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        v.to_string(),
    )
        .into_response()
}

fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    json(
        status,
        serde_json::json!({"error": code, "error_description": description}),
    )
}

/// The client id and secret of a request: HTTP Basic, else the form body.
fn client_credentials(
    headers: &HeaderMap,
    form: &BTreeMap<String, String>,
) -> (Option<String>, Option<String>) {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    match basic {
        Some(pair) => match pair.split_once(':') {
            Some((i, s)) => (Some(i.to_owned()), Some(s.to_owned())),
            None => (Some(pair), None),
        },
        None => (
            form.get("client_id").cloned(),
            form.get("client_secret").cloned(),
        ),
    }
}

async fn token(
    State(state): State<Arc<Mutex<Shared>>>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let mut s = lock(&state);
    let Some(sim) = s.providers.get_mut(&provider) else {
        return (StatusCode::NOT_FOUND, "no such simulated provider").into_response();
    };
    sim.served += 1;
    sim.counters.token_requests += 1;
    match sim.spec.behaviour {
        Behaviour::RateLimitOnce { retry_after_secs } if sim.served == 1 => {
            sim.counters.rate_limited += 1;
            let mut r = oauth_error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests; slow down",
            );
            r.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(retry_after_secs),
            );
            return r;
        }
        Behaviour::FailFirst(n) if sim.served <= u64::from(n) => {
            sim.counters.unavailable += 1;
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "the simulated provider is briefly down",
            )
                .into_response();
        }
        _ => {}
    }
    let (id, secret) = client_credentials(&headers, &form);
    if id.as_deref() != Some(sim.spec.client_id.as_str())
        || secret.as_deref() != Some(sim.spec.client_secret.as_str())
    {
        sim.counters.invalid_client += 1;
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
        );
    }
    if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "the demo's providers only refresh",
        );
    }
    let presented = form.get("refresh_token").map(String::as_str).unwrap_or("");
    let Some(&index) = sim.issued.get(presented) else {
        sim.counters.invalid_grant += 1;
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "unknown refresh token",
        );
    };
    let Some(grant) = sim.grants.get_mut(index) else {
        sim.counters.invalid_grant += 1;
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "unknown grant");
    };
    if grant.revoked {
        sim.counters.invalid_grant += 1;
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the user revoked this grant; authorise again",
        );
    }
    if grant.current != presented {
        // a superseded token came back: someone holds a copy; revoke the whole grant
        grant.revoked = true;
        sim.counters.reuse_detected += 1;
        sim.counters.invalid_grant += 1;
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "refresh token reused; the grant is revoked",
        );
    }
    let next = random_token("demo-rt-");
    grant.current = next.clone();
    sim.issued.insert(next.clone(), index);
    sim.counters.refreshed += 1;
    let lifetime = rand::random_range(LIFETIME_SECS);
    json(
        StatusCode::OK,
        serde_json::json!({
            "access_token": random_token("demo-at-"),
            "refresh_token": next,
            "expires_in": lifetime,
            "token_type": "Bearer",
            "scope": "demo",
        }),
    )
}

/// `tokenvault test`: 200 for any Bearer token that looks like one of ours.
async fn me(headers: HeaderMap) -> Response {
    bearer_ok(&headers)
}

/// The Apple Music API's `GET /v1/me/storefront` (Music-User-Token validation).
async fn storefront(headers: HeaderMap) -> Response {
    let has_user_token = headers.contains_key("music-user-token");
    if !has_user_token {
        return (StatusCode::UNAUTHORIZED, "no Music-User-Token").into_response();
    }
    bearer_ok(&headers)
}

fn bearer_ok(headers: &HeaderMap) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match bearer {
        Some(t) if !t.is_empty() => json(StatusCode::OK, serde_json::json!({"id": "demo-user"})),
        _ => (StatusCode::UNAUTHORIZED, "no token").into_response(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn spec(name: &str, behaviour: Behaviour) -> ProviderSpec {
        ProviderSpec {
            name: name.into(),
            client_id: "id".into(),
            client_secret: "cs".into(),
            behaviour,
        }
    }

    async fn refresh(
        sim: &SimProviders,
        name: &str,
        rt: &str,
        secret: &str,
    ) -> (u16, Option<String>, serde_json::Value) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let r = reqwest::Client::new()
            .post(sim.token_url(name))
            .basic_auth("id", Some(secret))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", rt)])
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let retry_after = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = r.text().await.unwrap();
        (
            status,
            retry_after,
            serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    fn rt(v: &serde_json::Value) -> String {
        v["refresh_token"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn refresh_tokens_rotate_and_a_reused_one_revokes_the_grant() {
        let sim = SimProviders::start(vec![spec("p", Behaviour::Normal)])
            .await
            .unwrap();
        assert!(sim.base().starts_with("http://127.0.0.1:"));
        let first = sim.grant("p", 30, false).unwrap();
        let (s, _, second) = refresh(&sim, "p", &rt(&first), "cs").await;
        assert_eq!(s, 200, "{second}");
        assert_ne!(rt(&second), rt(&first), "not rotated");
        assert_ne!(second["access_token"], first["access_token"]);
        let life = second["expires_in"].as_u64().unwrap();
        assert!(LIFETIME_SECS.contains(&life), "{life}");
        let (s, _, third) = refresh(&sim, "p", &rt(&second), "cs").await;
        assert_eq!(s, 200);
        // the superseded token comes back: the grant is revoked, even for the newest one
        let (s, _, e) = refresh(&sim, "p", &rt(&first), "cs").await;
        assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")));
        let (s, _, e) = refresh(&sim, "p", &rt(&third), "cs").await;
        assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")));
        let c = sim.counters("p").unwrap();
        assert_eq!((c.refreshed, c.reuse_detected, c.invalid_grant), (2, 1, 2));
    }

    #[tokio::test]
    async fn revoked_grants_unknown_tokens_and_wrong_secrets_are_refused() {
        let sim = SimProviders::start(vec![spec("p", Behaviour::Normal)])
            .await
            .unwrap();
        let revoked = sim.grant("p", 30, true).unwrap();
        let (s, _, e) = refresh(&sim, "p", &rt(&revoked), "cs").await;
        assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")));
        let (s, _, e) = refresh(&sim, "p", "demo-rt-made-up", "cs").await;
        assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")));
        let good = sim.grant("p", 30, false).unwrap();
        let (s, _, e) = refresh(&sim, "p", &rt(&good), "wrong").await;
        assert_eq!((s, e["error"].as_str()), (401, Some("invalid_client")));
        // the refused request did not spend the token
        let (s, _, _) = refresh(&sim, "p", &rt(&good), "cs").await;
        assert_eq!(s, 200);
        assert!(sim.grant("nope", 30, false).is_err());
    }

    #[tokio::test]
    async fn rate_limited_once_and_failing_first_then_normal() {
        let sim = SimProviders::start(vec![
            spec(
                "slow",
                Behaviour::RateLimitOnce {
                    retry_after_secs: 3,
                },
            ),
            spec("flaky", Behaviour::FailFirst(3)),
        ])
        .await
        .unwrap();
        let g = sim.grant("slow", 30, false).unwrap();
        let (s, ra, _) = refresh(&sim, "slow", &rt(&g), "cs").await;
        assert_eq!((s, ra.as_deref()), (429, Some("3")));
        let (s, _, _) = refresh(&sim, "slow", &rt(&g), "cs").await;
        assert_eq!(s, 200);
        let g = sim.grant("flaky", 30, false).unwrap();
        for _ in 0..3 {
            assert_eq!(refresh(&sim, "flaky", &rt(&g), "cs").await.0, 503);
        }
        assert_eq!(refresh(&sim, "flaky", &rt(&g), "cs").await.0, 200);
        let c = sim.counters("flaky").unwrap();
        assert_eq!((c.unavailable, c.refreshed, c.token_requests), (3, 1, 4));
    }
}
