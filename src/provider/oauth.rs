//! Calls to a provider's endpoints (RFC 6749 token endpoint, RFC 8628 device
//! authorisation, PAT validation) and the classification of their answers.
//!
//! Provider responses are hostile: bodies are read up to a bound, only the fields we need
//! are looked at, and no error or log line ever carries a response body (it could hold a
//! token), only the OAuth `error` code and status.
//!
//! Must not: touch the vault or decide statuses (that is `refresh::policy`).

use super::catalogue::ClientAuth;
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::token::TokenResponse;
use base64::Engine as _;
use std::time::Duration;

/// Largest response body read from a provider.
pub const MAX_BODY: usize = 256 * 1024;
/// Default timeout of one provider call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// The HTTP client used for every provider call. Built once per engine.
#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::Client,
    timeout: Duration,
}

impl Http {
    pub fn new(timeout: Duration) -> Result<Self> {
        // reqwest is built with `rustls-no-provider`: a process-wide provider must exist.
        // A second install attempt fails harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(64)
            .user_agent(concat!("tokenvault/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| Error::Internal("cannot build the HTTP client".into()))?;
        Ok(Http { client, timeout })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// The client's identity at the token endpoint.
#[derive(Debug, Clone)]
pub struct ClientCreds {
    pub client_id: String,
    pub secret: Option<Secret>,
    pub auth: ClientAuth,
}

/// Why a provider call did not produce tokens. Reasons are short and secret-free.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// The grant is dead (`invalid_grant` and equivalents): the user must reconnect.
    InvalidGrant(String),
    /// Our configuration is wrong (`invalid_client`, `unauthorized_client`, 4xx): no retry.
    Config(String),
    /// 429: wait this long (seconds), then retry without counting an attempt.
    RateLimited { retry_after: Option<u64> },
    /// 5xx, timeouts, network errors, garbage: retry with backoff.
    Transient(String),
    /// Device flow: keep polling.
    AuthorizationPending,
    /// Device flow: keep polling, 5 s slower.
    SlowDown,
    /// Device flow: the device code expired.
    ExpiredToken,
    /// The user declined.
    AccessDenied,
}

impl CallError {
    pub fn reason(&self) -> String {
        match self {
            CallError::InvalidGrant(r) | CallError::Config(r) | CallError::Transient(r) => {
                r.clone()
            }
            CallError::RateLimited { retry_after } => match retry_after {
                Some(s) => format!("rate limited (HTTP 429), retry after {s} s"),
                None => "rate limited (HTTP 429)".into(),
            },
            CallError::AuthorizationPending => "authorization_pending".into(),
            CallError::SlowDown => "slow_down".into(),
            CallError::ExpiredToken => "expired_token: the device code expired; start again".into(),
            CallError::AccessDenied => "access_denied: the user declined".into(),
        }
    }

    /// The engine error a caller sees for this failure of `connection`.
    pub fn into_error(self, connection: &str) -> Error {
        let reason = self.reason();
        match self {
            CallError::InvalidGrant(_) | CallError::ExpiredToken | CallError::AccessDenied => {
                Error::NeedsReauth {
                    connection: connection.into(),
                    reason,
                }
            }
            CallError::Config(_) => Error::Config(format!("{connection}: {reason}")),
            _ => Error::ProviderUnavailable {
                connection: connection.into(),
                reason,
            },
        }
    }
}

/// A response body read up to `MAX_BODY`.
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: zeroize::Zeroizing<Vec<u8>>,
}

fn transport_error(e: &reqwest::Error) -> CallError {
    CallError::Transient(if e.is_timeout() {
        "the provider did not answer in time".into()
    } else if e.is_connect() {
        "cannot connect to the provider".into()
    } else {
        "network error talking to the provider".into()
    })
}

async fn read(resp: reqwest::Response) -> std::result::Result<Answer, CallError> {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return Err(CallError::Transient(format!(
            "the provider's response is larger than {MAX_BODY} bytes (HTTP {status})"
        )));
    }
    let mut resp = resp;
    let mut body = zeroize::Zeroizing::new(Vec::new());
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if body.len() + c.len() > MAX_BODY {
                    return Err(CallError::Transient(format!(
                        "the provider's response is larger than {MAX_BODY} bytes (HTTP {status})"
                    )));
                }
                body.extend_from_slice(&c);
            }
            Ok(None) => break,
            Err(e) => return Err(transport_error(&e)),
        }
    }
    Ok(Answer {
        status,
        retry_after,
        body,
    })
}

/// Microsoft answers `invalid_grant` variants with AADSTS codes; these mean the grant is
/// dead (SPEC §5.4).
const AADSTS_REAUTH: [&str; 3] = ["AADSTS70008", "AADSTS700082", "AADSTS50173"];

/// Only `[a-z0-9_.-]`, at most 64 chars: safe to show.
fn clean_code(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .take(64)
        .collect()
}

/// Classifies a non-success answer of a token endpoint. Looks only at `error`,
/// `error_codes` and AADSTS numbers in `error_description`; never echoes the body.
pub fn classify_error(status: u16, retry_after: Option<u64>, body: &[u8]) -> CallError {
    if status == 429 {
        return CallError::RateLimited { retry_after };
    }
    let v: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let error = v
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(|e| e.as_str())
        .map(clean_code);
    let desc = v
        .as_ref()
        .and_then(|v| v.get("error_description"))
        .and_then(|e| e.as_str())
        .unwrap_or("");
    let codes: Vec<i64> = v
        .as_ref()
        .and_then(|v| v.get("error_codes"))
        .and_then(|e| e.as_array())
        .map(|a| a.iter().filter_map(|c| c.as_i64()).collect())
        .unwrap_or_default();
    let aad = AADSTS_REAUTH.iter().find(|c| {
        let n: i64 = c[6..].parse().unwrap_or(-1);
        codes.contains(&n)
            || desc
                .split(|ch: char| !ch.is_ascii_alphanumeric())
                .any(|w| w == **c)
    });
    if let Some(code) = aad {
        return CallError::InvalidGrant(format!("invalid_grant ({code})"));
    }
    match error.as_deref() {
        Some("invalid_grant") => CallError::InvalidGrant("invalid_grant".into()),
        Some("authorization_pending") => CallError::AuthorizationPending,
        Some("slow_down") => CallError::SlowDown,
        Some("expired_token") => CallError::ExpiredToken,
        Some("access_denied") => CallError::AccessDenied,
        Some(
            e @ ("invalid_client" | "unauthorized_client" | "invalid_request" | "invalid_scope"
            | "unsupported_grant_type"),
        ) => CallError::Config(format!(
            "the provider answered {e} (HTTP {status}): check the client id, secret and endpoints with `tokenvault client list`"
        )),
        Some("temporarily_unavailable" | "server_error") => {
            CallError::Transient(format!("provider error (HTTP {status})"))
        }
        _ if status >= 500 || status == 408 => {
            CallError::Transient(format!("provider error (HTTP {status})"))
        }
        // An unknown code is shown only when it looks like one (RFC 6749 codes are lowercase
        // words joined by `_`): a hostile or broken provider echoing a token there must not
        // get it into the stored reason.
        Some(e) if e.len() <= 40 && e.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') => {
            CallError::Config(format!("the provider answered {e} (HTTP {status})"))
        }
        Some(_) => CallError::Config(format!(
            "the provider answered an unrecognised error code (HTTP {status})"
        )),
        None if status == 401 => CallError::Config(
            "the provider refused the client credentials (HTTP 401): check the client id and secret".into(),
        ),
        None => CallError::Config(format!(
            "the token endpoint answered HTTP {status}: check its URL with `tokenvault provider show`"
        )),
    }
}

/// `application/x-www-form-urlencoded` encoding of one value (RFC 6749 §2.3.1 wants the
/// id and secret form-encoded before Basic).
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn authenticate(
    req: reqwest::RequestBuilder,
    form: &mut Vec<(String, String)>,
    creds: &ClientCreds,
) -> std::result::Result<reqwest::RequestBuilder, CallError> {
    match creds.auth {
        ClientAuth::Basic => {
            let secret = creds.secret.as_ref().ok_or_else(missing_secret)?;
            let raw = zeroize::Zeroizing::new(format!(
                "{}:{}",
                form_encode(&creds.client_id),
                form_encode(secret.expose())
            ));
            let header = zeroize::Zeroizing::new(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw.as_bytes())
            ));
            let mut value = reqwest::header::HeaderValue::from_str(&header).map_err(|_| {
                CallError::Config("the client secret is not valid in a header".into())
            })?;
            value.set_sensitive(true);
            Ok(req.header(reqwest::header::AUTHORIZATION, value))
        }
        ClientAuth::Post => {
            let secret = creds.secret.as_ref().ok_or_else(missing_secret)?;
            form.push(("client_id".into(), creds.client_id.clone()));
            form.push(("client_secret".into(), secret.expose().to_owned()));
            Ok(req)
        }
        ClientAuth::None => {
            form.push(("client_id".into(), creds.client_id.clone()));
            Ok(req)
        }
    }
}

fn missing_secret() -> CallError {
    CallError::Config(
        "the client has no secret: run `tokenvault client set … --client-secret-file FILE`".into(),
    )
}

/// POSTs `form` (plus client authentication) to `url` and returns the raw answer.
async fn post_form(
    http: &Http,
    url: &str,
    creds: &ClientCreds,
    mut form: Vec<(String, String)>,
) -> std::result::Result<Answer, CallError> {
    let req = http
        .client
        .post(url)
        .header(reqwest::header::ACCEPT, "application/json");
    let req = authenticate(req, &mut form, creds)?;
    let body = zeroize::Zeroizing::new(
        form.iter()
            .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
            .collect::<Vec<_>>()
            .join("&"),
    );
    for (_, v) in form.iter_mut() {
        zeroize::Zeroize::zeroize(v);
    }
    let resp = req
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body.as_bytes().to_vec())
        .send()
        .await
        .map_err(|e| transport_error(&e))?;
    read(resp).await
}

/// `post_form`, with any non-2xx answer classified into a `CallError` (`now` dates an
/// HTTP-date `Retry-After`).
async fn post_form_ok(
    http: &Http,
    url: &str,
    creds: &ClientCreds,
    form: Vec<(String, String)>,
    now: i64,
) -> std::result::Result<Answer, CallError> {
    let a = post_form(http, url, creds, form).await?;
    if !(200..300).contains(&a.status) {
        let retry = a
            .retry_after
            .as_deref()
            .and_then(|v| super::retry_after::parse_retry_after(v, now));
        return Err(classify_error(a.status, retry, &a.body));
    }
    Ok(a)
}

/// One token-endpoint call: `form` holds the grant (`grant_type=refresh_token` …).
/// `now` stamps the expiry of the answer.
pub async fn token_request(
    http: &Http,
    url: &str,
    creds: &ClientCreds,
    form: Vec<(String, String)>,
    now: i64,
) -> std::result::Result<TokenResponse, CallError> {
    let a = post_form_ok(http, url, creds, form, now).await?;
    TokenResponse::parse(&a.body, now).map_err(|_| {
        CallError::Transient(format!(
            "the provider's token response (HTTP {}) is not a valid token response",
            a.status
        ))
    })
}

/// RFC 8628 §3.2 device authorisation response.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DeviceAuthorization {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    #[serde(default)]
    pub verification_uri_complete: Option<String>,
    pub expires_in: u64,
    #[serde(default)]
    pub interval: Option<u64>,
}

/// RFC 8628 §3.1: asks for a device code.
pub async fn device_authorization(
    http: &Http,
    url: &str,
    creds: &ClientCreds,
    form: Vec<(String, String)>,
    now: i64,
) -> std::result::Result<DeviceAuthorization, CallError> {
    let a = post_form_ok(http, url, creds, form, now).await?;
    let d: DeviceAuthorization = serde_json::from_slice(&a.body).map_err(|_| {
        CallError::Transient("the device authorisation response is not valid".into())
    })?;
    if d.device_code.len() > 4096 || d.user_code.len() > 64 || d.verification_uri.len() > 2048 {
        return Err(CallError::Transient(
            "the device authorisation response has oversized fields".into(),
        ));
    }
    Ok(d)
}

/// One GET of `url` with `token` as a Bearer credential (the header marked sensitive),
/// read as any provider answer is (bounded body, never followed redirects).
async fn bearer_get(
    http: &Http,
    url: &str,
    token: &Secret,
) -> std::result::Result<Answer, CallError> {
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        .map_err(|_| {
        CallError::InvalidGrant("the stored token is not valid in a header".into())
    })?;
    value.set_sensitive(true);
    let resp = http
        .client
        .get(url)
        .header(reqwest::header::AUTHORIZATION, value)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| transport_error(&e))?;
    let a = read(resp).await?;
    Ok(a)
}

/// Validates a bearer token with a GET (GitHub PATs, SPEC §5.5): 2xx valid, 401/403
/// dead, 429 rate limited, anything else transient.
pub async fn validate_bearer(
    http: &Http,
    url: &str,
    token: &Secret,
    now: i64,
) -> std::result::Result<(), CallError> {
    let a = bearer_get(http, url, token).await?;
    match a.status {
        200..=299 => Ok(()),
        401 | 403 => Err(CallError::InvalidGrant(format!(
            "the provider rejected the token (HTTP {})",
            a.status
        ))),
        429 => Err(CallError::RateLimited {
            retry_after: a
                .retry_after
                .as_deref()
                .and_then(|v| super::retry_after::parse_retry_after(v, now)),
        }),
        s => Err(CallError::Transient(format!(
            "validation answered HTTP {s}"
        ))),
    }
}

/// `tokenvault test`: GETs `url` with the access token as a Bearer credential and
/// classifies the answer. 2xx → the HTTP status. 401/403, or a 400 whose `error` is
/// `invalid_token` (Google's tokeninfo answers so) → `InvalidGrant`: the provider no longer
/// accepts the token. 429 → `RateLimited`; 5xx and network errors → `Transient`; any other
/// answer → `Config` (the validation URL is probably wrong). No reason carries the body.
pub async fn validate_token(
    http: &Http,
    url: &str,
    token: &Secret,
    now: i64,
) -> std::result::Result<u16, CallError> {
    let a = bearer_get(http, url, token).await?;
    let rejected = |s: u16| {
        CallError::InvalidGrant(format!(
            "the provider's validation endpoint answered HTTP {s}: it no longer accepts this access token"
        ))
    };
    match a.status {
        s @ 200..=299 => Ok(s),
        s @ (401 | 403) => Err(rejected(s)),
        400 if serde_json::from_slice::<serde_json::Value>(&a.body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .as_deref()
            == Some("invalid_token") =>
        {
            Err(rejected(400))
        }
        429 => Err(CallError::RateLimited {
            retry_after: a
                .retry_after
                .as_deref()
                .and_then(|v| super::retry_after::parse_retry_after(v, now)),
        }),
        s @ 500..=599 => Err(CallError::Transient(format!(
            "the provider's validation endpoint answered HTTP {s}"
        ))),
        s => Err(CallError::Config(format!(
            "the provider's validation endpoint answered HTTP {s}, which is neither a yes nor a no: check the provider's validation_url"
        ))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn classifies_errors_without_echoing_bodies() {
        let secret_body = br#"{"error":"invalid_grant","error_description":"refresh token RT-SECRET-123 was revoked"}"#;
        let e = classify_error(400, None, secret_body);
        assert_eq!(e, CallError::InvalidGrant("invalid_grant".into()));
        assert!(!e.reason().contains("RT-SECRET"));
        // a token echoed in the `error` field itself is not shown either
        let echoed = classify_error(400, None, br#"{"error":"RT-SECRET-123"}"#);
        assert!(
            !echoed.reason().contains("RT-SECRET"),
            "{}",
            echoed.reason()
        );
        assert!(!echoed.reason().contains("123"), "{}", echoed.reason());
        let odd = classify_error(400, None, br#"{"error":"account_suspended"}"#);
        assert!(
            odd.reason().contains("account_suspended"),
            "{}",
            odd.reason()
        );
        assert!(matches!(
            classify_error(401, None, br#"{"error":"invalid_client"}"#),
            CallError::Config(_)
        ));
        assert!(matches!(
            classify_error(400, None, br#"{"error":"unauthorized_client"}"#),
            CallError::Config(_)
        ));
        assert!(matches!(
            classify_error(
                400,
                None,
                br#"{"error":"invalid_request","error_description":"AADSTS700082: The refresh token has expired"}"#
            ),
            CallError::InvalidGrant(_)
        ));
        assert!(matches!(
            classify_error(400, None, br#"{"error":"x","error_codes":[50173]}"#),
            CallError::InvalidGrant(_)
        ));
        assert_eq!(
            classify_error(429, Some(7), b""),
            CallError::RateLimited {
                retry_after: Some(7)
            }
        );
        assert!(matches!(
            classify_error(503, None, b"<html>"),
            CallError::Transient(_)
        ));
        assert!(matches!(
            classify_error(404, None, b"nope"),
            CallError::Config(_)
        ));
        assert_eq!(
            classify_error(400, None, br#"{"error":"slow_down"}"#),
            CallError::SlowDown
        );
        let weird = classify_error(400, None, br#"{"error":"RT-SECRET <script> \n"}"#);
        assert!(!weird.reason().contains("<script>"));
    }
}
