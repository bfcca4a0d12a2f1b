//! Apple Music test helpers: the generated test keys in `fixtures/apple/`, an independent
//! JWT verifier (jsonwebtoken with the PUBLIC key, never the signing code), a clock the
//! test moves, and a fake Apple Music API on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use std::sync::atomic::{AtomicI64, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use tokenvault::config::Config;
pub use tokenvault::contract::Caller;
use tokenvault::engine::Clock;
use tokenvault::engine::Engine;
pub use tokenvault::secret::Secret;
pub use tokenvault::vault::Vault;

pub const TEAM: &str = "TEAMAAAAAA";
pub const KEY1: &str = "KEY1AAAAAA";
pub const KEY2: &str = "KEY2BBBBBB";
pub const MAX_LIFETIME: i64 = 15_777_000;
pub const DEFAULT_LIFETIME: i64 = 180 * 86_400;

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/apple")
        .join(name)
}

pub fn fixture_text(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap()
}

/// The private key of `key_id` (KEY1 or KEY2), as PEM text.
pub fn p8(key_id: &str) -> String {
    fixture_text(&format!("AuthKey_{key_id}.p8"))
}

/// The public key of `key_id`, as PEM (made with `openssl pkey -pubout`).
pub fn public_pem(key_id: &str) -> String {
    fixture_text(&format!("AuthKey_{key_id}.pub.pem"))
}

/// The claims of a developer token as the independent verifier decodes them.
#[derive(Debug, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    pub iss: String,
    pub iat: i64,
    pub exp: i64,
    #[serde(default)]
    pub origin: Option<Vec<String>>,
}

/// Verifies `token`'s ES256 signature with `key_id`'s PUBLIC key through jsonwebtoken,
/// checks the header is exactly `{"alg":"ES256","kid":key_id}` and the claims' shape and
/// lifetime limit. Panics (fails the test) otherwise.
pub fn verify(token: &str, key_id: &str) -> Claims {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
    let key = DecodingKey::from_ec_pem(public_pem(key_id).as_bytes()).unwrap();
    let mut v = Validation::new(Algorithm::ES256);
    // Tests run on a clock they move; expiry is checked against that clock by the caller.
    v.validate_exp = false;
    v.set_required_spec_claims(&["exp", "iat", "iss"]);
    v.set_issuer(&[TEAM]);
    let data = decode::<Claims>(token, &key, &v)
        .unwrap_or_else(|e| panic!("token does not verify with {key_id}'s public key: {e}"));
    assert_eq!(data.header.alg, Algorithm::ES256);
    assert_eq!(data.header.kid.as_deref(), Some(key_id));
    let raw_header = token.split('.').next().unwrap();
    let raw_header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw_header)
        .unwrap();
    let raw_header: serde_json::Value = serde_json::from_slice(&raw_header).unwrap();
    assert_eq!(
        raw_header,
        serde_json::json!({"alg": "ES256", "kid": key_id}),
        "header"
    );
    let sig = token.rsplit('.').next().unwrap();
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sig)
        .unwrap();
    assert_eq!(sig.len(), 64, "JWS ES256 signatures are raw r||s, 64 bytes");
    let c = data.claims;
    assert_eq!(c.iss, TEAM);
    assert!(c.exp > c.iat);
    assert!(
        c.exp - c.iat <= MAX_LIFETIME,
        "exp - iat = {}",
        c.exp - c.iat
    );
    c
}

/// True if `token` verifies with `key_id`'s public key (for negative checks).
pub fn verifies_with(token: &str, key_id: &str) -> bool {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
    let key = DecodingKey::from_ec_pem(public_pem(key_id).as_bytes()).unwrap();
    let mut v = Validation::new(Algorithm::ES256);
    v.validate_exp = false;
    v.required_spec_claims.clear();
    decode::<serde_json::Value>(token, &key, &v).is_ok()
}

/// A clock the test moves, starting at the real time (so verifiers that look at the
/// wall clock agree).
#[derive(Debug)]
pub struct TestClock(pub AtomicI64);

impl TestClock {
    pub fn new() -> Arc<Self> {
        Arc::new(TestClock(AtomicI64::new(chrono::Utc::now().timestamp())))
    }
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl Clock for TestClock {
    fn now(&self) -> i64 {
        self.get()
    }
}

/// An engine on `tv` with `clock` and `config` (TOML text).
pub fn engine_with(tv: &TestVault, clock: Arc<TestClock>, config: &str) -> Engine {
    let e = Engine::with_clock(
        Vault::open(&tv.path, &Secret::new(PASSPHRASE)).unwrap(),
        clock,
    );
    e.set_config(Config::parse(config).unwrap());
    e
}

/// A vault with tenant `acme` holding KEY1 (active).
pub async fn vault_with_key1() -> (TestVault, Engine, Arc<TestClock>) {
    let tv = TestVault::new();
    let clock = TestClock::new();
    let e = engine_with(&tv, clock.clone(), "");
    e.handle(
        &admin(),
        tokenvault::Request::TenantAdd {
            name: "acme".into(),
        },
    )
    .await
    .unwrap();
    add_key(&e, "acme", KEY1).await.unwrap();
    (tv, e, clock)
}

pub async fn add_key(e: &Engine, tenant: &str, key_id: &str) -> tokenvault::Result<()> {
    e.handle(
        &admin(),
        tokenvault::Request::AppleKeyAdd {
            tenant: tenant.into(),
            team_id: TEAM.into(),
            key_id: key_id.into(),
            p8: Secret::new(p8(key_id)),
        },
    )
    .await
    .map(|_| ())
}

/// A developer token through the engine (`apple token`).
pub async fn token(e: &Engine, caller: &Caller, tenant: &str) -> tokenvault::Result<String> {
    match e
        .handle(
            caller,
            tokenvault::Request::AppleToken {
                tenant: tenant.into(),
            },
        )
        .await?
    {
        tokenvault::Response::AppleToken(t) => Ok(t.token.expose().to_owned()),
        other => panic!("unexpected response {other:?}"),
    }
}

pub async fn keys(e: &Engine, tenant: &str) -> Vec<tokenvault::contract::AppleKeyView> {
    match e
        .handle(
            &admin(),
            tokenvault::Request::AppleKeyList {
                tenant: tenant.into(),
            },
        )
        .await
        .unwrap()
    {
        tokenvault::Response::AppleKeys { keys } => keys,
        other => panic!("unexpected response {other:?}"),
    }
}

pub fn key_state(keys: &[tokenvault::contract::AppleKeyView], key_id: &str) -> String {
    keys.iter()
        .find(|k| k.key_id == key_id)
        .map(|k| k.state.clone())
        .unwrap_or_default()
}

/// What the fake Apple Music API saw in one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub authorization: Option<String>,
    pub music_user_token: Option<String>,
}

/// A fake `GET /v1/me/storefront` on 127.0.0.1: answers `status` (settable) and records
/// every request's headers.
pub struct FakeAppleApi {
    pub base: String,
    pub status: Arc<AtomicU16>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl FakeAppleApi {
    pub async fn start() -> Self {
        let status = Arc::new(AtomicU16::new(200));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (st, sn) = (status.clone(), seen.clone());
        let app = axum::Router::new().route(
            "/v1/me/storefront",
            axum::routing::get(move |headers: HeaderMap| {
                let (st, sn) = (st.clone(), sn.clone());
                async move {
                    let h = |n: &str| {
                        headers
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    sn.lock().unwrap().push(Seen {
                        path: "/v1/me/storefront".into(),
                        authorization: h("authorization"),
                        music_user_token: h("music-user-token"),
                    });
                    let code = StatusCode::from_u16(st.load(Ordering::SeqCst)).unwrap();
                    (
                        code,
                        r#"{"data":[{"id":"us","type":"storefronts"}]}"#.to_owned(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeAppleApi {
            base,
            status,
            seen,
            _task: task,
        }
    }

    pub fn set_status(&self, s: u16) {
        self.status.store(s, Ordering::SeqCst);
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}
