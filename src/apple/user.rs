//! Validating a Music-User-Token: `GET {api_base}/v1/me/storefront` with the developer
//! token as `Authorization: Bearer …` and the user token as `Music-User-Token`. The
//! answer is mapped to an `Outcome`; deciding the connection's status is the caller's.
//!
//! Must not: log either token, or put them in an error message.

use crate::secret::Secret;
use std::time::Duration;

/// What the Apple Music API said about a Music-User-Token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: the user token works.
    Valid,
    /// 401 / 403: the user must sign in again (SPEC §7).
    NeedsReauth { status: u16 },
    /// 429, 5xx, a timeout or a network error: try again later. `retry_after` is the
    /// server's `Retry-After` in seconds, when it sent one.
    RetryLater {
        reason: String,
        retry_after: Option<u64>,
    },
    /// Any other answer (e.g. 400, 404): retrying will not help; a configuration problem.
    Rejected { status: u16 },
}

/// Builds the HTTP client used for validation (rustls with the ring provider).
pub fn http_client() -> crate::error::Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("tokenvault/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| crate::error::Error::Internal(format!("cannot build the HTTP client: {e}")))
}

/// Asks `GET {api_base}/v1/me/storefront` whether `music_user_token` is still good.
pub async fn validate_user_token(
    http: &reqwest::Client,
    api_base: &str,
    developer_token: &str,
    music_user_token: &str,
) -> Outcome {
    let url = format!("{}/v1/me/storefront", api_base.trim_end_matches('/'));
    let resp = http
        .get(&url)
        .bearer_auth(developer_token)
        .header("Music-User-Token", music_user_token)
        .send()
        .await;
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            // reqwest's error text names the URL, never the headers.
            let kind = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "could not connect"
            } else {
                "request failed"
            };
            return Outcome::RetryLater {
                reason: format!("Apple Music API {kind} ({url})"),
                retry_after: None,
            };
        }
    };
    let status = resp.status().as_u16();
    match status {
        200..=299 => Outcome::Valid,
        401 | 403 => Outcome::NeedsReauth { status },
        429 | 500..=599 => Outcome::RetryLater {
            reason: format!("Apple Music API answered {status}"),
            retry_after: resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok()),
        },
        _ => Outcome::Rejected { status },
    }
}

/// `validate_user_token` for a `Secret` user token.
pub async fn validate(
    http: &reqwest::Client,
    api_base: &str,
    developer_token: &Secret,
    music_user_token: &Secret,
) -> Outcome {
    validate_user_token(
        http,
        api_base,
        developer_token.expose(),
        music_user_token.expose(),
    )
    .await
}
