//! Engine operations of the refresh engine: `refresh CONNECTION | --due | --tenant T`,
//! `provider list | show`, and the engine halves of `connect` (every token exchange runs
//! here, because client secrets never leave the vault; the CLI only carries the
//! authorisation code or device code).

use super::connection::{self, GRANT_MARKER, Trigger};
use super::scheduler::HostLimits;
use crate::contract::{DeviceStartView, RefreshResult};
use crate::engine::{Caller, ConnectionView, Engine, Response, StatusEvent};
use crate::error::{Error, Result};
use crate::names::ConnectionId;
use crate::provider::catalogue::{self, Provider, ProviderKind};
use crate::provider::oauth::{self, CallError, ClientCreds};
use crate::secret::Secret;
use crate::token::TokenResponse;
use crate::vault::records::{ConnectionRecord, Status};
use futures::StreamExt;

/// Concurrent refreshes of one `refresh --due` / `--tenant` pass (all hosts); each host
/// is further held to `[scheduler] per_host_concurrency`.
const PASS_CONCURRENCY: usize = 16;

/// Expiry and due time for a token of `id`'s provider received now.
pub fn plan_for(
    engine: &Engine,
    id: &ConnectionId,
    expires_at: Option<i64>,
    renewable: bool,
) -> Result<(Option<i64>, Option<i64>)> {
    let p = engine.provider(&id.provider)?;
    Ok(connection::plan(
        &p,
        engine.now(),
        expires_at,
        renewable,
        rand::random::<f64>(),
    ))
}

/// The refresh-token expiry to store for a token just received: the response's
/// `refresh_token_expires_in`, else the provider's default lifetime when the response
/// carried a refresh token (SPEC §5.3).
pub fn refresh_expiry_for(
    engine: &Engine,
    id: &ConnectionId,
    stated: Option<i64>,
    has_refresh_token: bool,
) -> Result<Option<i64>> {
    if stated.is_some() || !has_refresh_token {
        return Ok(stated);
    }
    let p = engine.provider(&id.provider)?;
    Ok(p.refresh_expiry(engine.now(), None))
}

pub fn provider_list(engine: &Engine) -> Result<Response> {
    Ok(Response::Providers {
        providers: engine.providers()?,
    })
}

pub fn provider_show(engine: &Engine, name: &str) -> Result<Response> {
    crate::names::validate_provider(name)?;
    engine
        .providers()?
        .into_iter()
        .find(|p| p.name == name)
        .map(|p| Response::Provider(Box::new(p)))
        .ok_or_else(|| {
            Error::not_found(
                "provider",
                format!("{name} (not built in and no [providers.{name}] table in the config)"),
            )
        })
}

async fn refresh_one(
    engine: &Engine,
    key: &str,
    trigger: Trigger,
    rate_limit: bool,
) -> RefreshResult {
    if rate_limit && !engine.refresh_state().allow_forced(key, engine.now()) {
        return RefreshResult {
            connection: key.to_owned(),
            outcome: "skipped".into(),
            status: None,
            expires_at: None,
            reason: Some("refreshed less than 10 s ago".into()),
            error_code: None,
        };
    }
    let r = connection::refresh(engine, key, trigger).await;
    let rec = engine
        .vault()
        .read()
        .ok()
        .and_then(|rx| rx.connection(key).ok().flatten());
    match r {
        Ok(f) => RefreshResult {
            connection: key.to_owned(),
            outcome: if f.refreshed { "refreshed" } else { "skipped" }.into(),
            status: rec.as_ref().map(|r| r.status),
            expires_at: f.expires_at,
            reason: if f.refreshed {
                None
            } else {
                Some("not due".into())
            },
            error_code: None,
        },
        Err(e) => RefreshResult {
            connection: key.to_owned(),
            outcome: "failed".into(),
            status: rec.as_ref().map(|r| r.status),
            expires_at: rec.as_ref().and_then(|r| r.expires_at),
            reason: Some(e.to_string()),
            error_code: Some(e.code().into()),
        },
    }
}

/// `refresh CONNECTION`: calls the provider now (at most once per 10 s per connection).
pub async fn refresh_connection(
    engine: &Engine,
    caller: &Caller,
    connection: &str,
) -> Result<Response> {
    let id = ConnectionId::parse(connection)?;
    caller.require_tenant(&id.tenant)?;
    let key = id.key();
    if engine.vault().read()?.connection(&key)?.is_none() {
        return Err(Error::not_found("connection", key));
    }
    if !engine.refresh_state().allow_forced(&key, engine.now()) {
        return Ok(Response::Refreshed {
            results: vec![RefreshResult {
                connection: key,
                outcome: "skipped".into(),
                status: None,
                expires_at: None,
                reason: Some("refreshed less than 10 s ago".into()),
                error_code: None,
            }],
        });
    }
    let f = connection::refresh(engine, &key, Trigger::Manual).await?;
    let rec = engine.vault().read()?.connection(&key)?;
    Ok(Response::Refreshed {
        results: vec![RefreshResult {
            connection: key,
            outcome: "refreshed".into(),
            status: rec.map(|r| r.status),
            expires_at: f.expires_at,
            reason: None,
            error_code: None,
        }],
    })
}

/// `refresh --due`: one scheduler pass from the CLI.
pub async fn refresh_due(engine: &Engine, caller: &Caller) -> Result<Response> {
    caller.require_admin()?;
    let keys: Vec<String> = engine
        .vault()
        .read()?
        .due(engine.now(), usize::MAX)?
        .into_iter()
        .map(|(_, k)| k)
        .collect();
    let results = refresh_pass(engine, keys, Trigger::Scheduler, false).await;
    Ok(Response::Refreshed { results })
}

/// `refresh --tenant T`: every connection of a tenant, now.
pub async fn refresh_tenant(engine: &Engine, caller: &Caller, tenant: &str) -> Result<Response> {
    crate::names::validate_tenant(tenant)?;
    caller.require_tenant(tenant)?;
    let keys: Vec<String> = engine
        .vault()
        .read()?
        .connections(&format!("{tenant}/"))?
        .into_iter()
        .filter(|(_, r)| !matches!(r.status, Status::NeedsReauth | Status::Disconnected))
        .map(|(k, _)| k)
        .collect();
    let mut results = refresh_pass(engine, keys, Trigger::Manual, true).await;
    results.sort_by(|a, b| a.connection.cmp(&b.connection));
    Ok(Response::Refreshed { results })
}

/// Refreshes `keys`, at most `PASS_CONCURRENCY` at once and within the scheduler's
/// per-host bound (`[scheduler] per_host_concurrency`).
async fn refresh_pass(
    engine: &Engine,
    keys: Vec<String>,
    trigger: Trigger,
    rate_limit: bool,
) -> Vec<RefreshResult> {
    let limits = HostLimits::new(engine);
    futures::stream::iter(keys)
        .map(|k| {
            let limits = limits.clone();
            async move {
                let _slot = limits.acquire(engine, &k).await;
                refresh_one(engine, &k, trigger, rate_limit).await
            }
        })
        .buffer_unordered(PASS_CONCURRENCY)
        .collect()
        .await
}

/// Provider, endpoints and client credentials for a `connect` of `id`.
fn flow_ctx(
    engine: &Engine,
    id: &ConnectionId,
) -> Result<(Provider, catalogue::Endpoints, ClientCreds)> {
    // an unknown (mistyped) provider is refused with the known ones listed
    let p = engine.known_provider(&id.provider)?;
    if p.kind != ProviderKind::OAuth2 {
        return Err(Error::invalid(
            "connect",
            format!(
                "provider {} has no OAuth flow; import its token with `tokenvault put {id}`",
                p.name
            ),
        ));
    }
    let rx = engine.vault().read()?;
    if rx.tenant(&id.tenant)?.is_none() {
        return Err(Error::not_found("tenant", id.tenant.clone()));
    }
    let client = rx.client(&id.tenant, &id.provider)?.ok_or_else(|| {
        Error::Config(format!(
            "no client registered for {}/{}: run `tokenvault client set {} {} --client-id …` first",
            id.tenant, id.provider, id.tenant, id.provider
        ))
    })?;
    let ep = p.endpoints(Some(&client))?;
    let creds = ClientCreds {
        client_id: client.client_id.clone(),
        secret: rx.client_secret(&id.tenant, &id.provider, &client)?,
        auth: p.client_auth,
    };
    Ok((p, ep, creds))
}

/// `connect --flow code`, step 1: the authorisation URL for the CLI's redirect URI,
/// `state` and PKCE challenge.
pub fn connect_start(
    engine: &Engine,
    caller: &Caller,
    connection: &str,
    redirect_uri: &str,
    state: &str,
    code_challenge: &str,
    scopes: &[String],
) -> Result<Response> {
    let id = ConnectionId::parse(connection)?;
    caller.require_tenant(&id.tenant)?;
    if !redirect_uri.starts_with("http://127.0.0.1:") {
        return Err(Error::invalid(
            "redirect_uri",
            "must be a loopback http://127.0.0.1:PORT/… URI",
        ));
    }
    let (p, ep, creds) = flow_ctx(engine, &id)?;
    let auth = ep.authorization_url.ok_or_else(|| {
        Error::Config(format!(
            "provider {} has no authorization URL: set one with `client set … --authorization-url`",
            p.name
        ))
    })?;
    let url = crate::provider::flows::authorization_url(
        &auth,
        &creds.client_id,
        redirect_uri,
        p.scope_string(scopes).as_deref(),
        state,
        code_challenge,
        &p.authorization_params,
    )?;
    Ok(Response::AuthorizationUrl { url })
}

/// `connect --flow code`, step 2: exchanges the code (with the PKCE verifier) and stores
/// the tokens.
pub async fn connect_code(
    engine: &Engine,
    caller: &Caller,
    connection: &str,
    code: &Secret,
    code_verifier: &Secret,
    redirect_uri: &str,
) -> Result<Response> {
    let id = ConnectionId::parse(connection)?;
    caller.require_tenant(&id.tenant)?;
    let (p, ep, creds) = flow_ctx(engine, &id)?;
    let url = token_url(&p, &ep)?;
    let mut form = vec![
        ("grant_type".to_owned(), "authorization_code".to_owned()),
        ("code".to_owned(), code.expose().to_owned()),
        ("redirect_uri".to_owned(), redirect_uri.to_owned()),
        (
            "code_verifier".to_owned(),
            code_verifier.expose().to_owned(),
        ),
    ];
    form.extend(p.token_params.clone());
    let http = engine
        .refresh_state()
        .http()
        .map_err(|e| e.into_error(&id.key()))?;
    let resp = oauth::token_request(&http, &url, &creds, form, engine.now())
        .await
        .map_err(|e| e.into_error(&id.key()))?;
    store_new(
        engine,
        caller,
        &id,
        resp,
        "connected (authorization code)",
        None,
    )
}

fn token_url(p: &Provider, ep: &catalogue::Endpoints) -> Result<String> {
    ep.token_url.clone().ok_or_else(|| {
        Error::Config(format!(
            "provider {} has no token URL: set one with `client set … --token-url URL`",
            p.name
        ))
    })
}

/// `connect --flow device`, step 1 (RFC 8628 §3.1).
pub async fn device_start(
    engine: &Engine,
    caller: &Caller,
    connection: &str,
    scopes: &[String],
) -> Result<Response> {
    let id = ConnectionId::parse(connection)?;
    caller.require_tenant(&id.tenant)?;
    let (p, ep, creds) = flow_ctx(engine, &id)?;
    let url = ep.device_authorization_url.clone().ok_or_else(|| {
        Error::Config(format!(
            "provider {} has no device authorization URL: set one with `client set … --device-authorization-url`",
            p.name
        ))
    })?;
    let mut form = Vec::new();
    if let Some(s) = p.scope_string(scopes) {
        form.push(("scope".to_owned(), s));
    }
    let http = engine
        .refresh_state()
        .http()
        .map_err(|e| e.into_error(&id.key()))?;
    let d = oauth::device_authorization(&http, &url, &creds, form, engine.now())
        .await
        .map_err(|e| e.into_error(&id.key()))?;
    Ok(Response::DeviceAuthorization(Box::new(DeviceStartView {
        user_code: d.user_code,
        verification_uri: d.verification_uri,
        verification_uri_complete: d.verification_uri_complete,
        expires_in: d.expires_in,
        interval: d.interval,
        device_code: Secret::new(d.device_code),
    })))
}

/// `connect --flow device`, one poll (RFC 8628 §3.4): `DevicePending` until the user
/// approves, then the tokens are stored.
pub async fn device_poll(
    engine: &Engine,
    caller: &Caller,
    connection: &str,
    device_code: &Secret,
) -> Result<Response> {
    let id = ConnectionId::parse(connection)?;
    caller.require_tenant(&id.tenant)?;
    let (p, ep, creds) = flow_ctx(engine, &id)?;
    let url = token_url(&p, &ep)?;
    let mut form = vec![
        (
            "grant_type".to_owned(),
            "urn:ietf:params:oauth:grant-type:device_code".to_owned(),
        ),
        ("device_code".to_owned(), device_code.expose().to_owned()),
    ];
    form.extend(p.token_params.clone());
    let http = engine
        .refresh_state()
        .http()
        .map_err(|e| e.into_error(&id.key()))?;
    match oauth::token_request(&http, &url, &creds, form, engine.now()).await {
        Ok(resp) => store_new(engine, caller, &id, resp, "connected (device flow)", None),
        Err(CallError::AuthorizationPending) => Ok(Response::DevicePending { slow_down: false }),
        Err(CallError::SlowDown) => Ok(Response::DevicePending { slow_down: true }),
        Err(e) => Err(e.into_error(&id.key())),
    }
}

/// `connect --flow client-credentials`: a token for the client itself, re-requested (not
/// refreshed) when due.
pub async fn connect_client_credentials(
    engine: &Engine,
    caller: &Caller,
    connection: &str,
    scopes: &[String],
) -> Result<Response> {
    let id = ConnectionId::parse(connection)?;
    caller.require_tenant(&id.tenant)?;
    let (p, ep, creds) = flow_ctx(engine, &id)?;
    let url = token_url(&p, &ep)?;
    let mut form = vec![("grant_type".to_owned(), "client_credentials".to_owned())];
    let scope = p.scope_string(scopes);
    if let Some(s) = &scope {
        form.push(("scope".to_owned(), s.clone()));
    }
    form.extend(p.token_params.clone());
    let http = engine
        .refresh_state()
        .http()
        .map_err(|e| e.into_error(&id.key()))?;
    let mut resp = oauth::token_request(&http, &url, &creds, form, engine.now())
        .await
        .map_err(|e| e.into_error(&id.key()))?;
    if resp.scope.is_none() {
        resp.scope = scope;
    }
    store_new(
        engine,
        caller,
        &id,
        resp,
        "connected (client credentials)",
        Some("client_credentials"),
    )
}

/// Stores the tokens of a completed flow as the connection `id` (replacing any old one),
/// audited in the same durable transaction, then wakes the scheduler.
fn store_new(
    engine: &Engine,
    caller: &Caller,
    id: &ConnectionId,
    mut resp: TokenResponse,
    reason: &str,
    grant: Option<&str>,
) -> Result<Response> {
    let key = id.key();
    let now = engine.now();
    if let Some(g) = grant {
        resp.secrets
            .extra
            .insert(GRANT_MARKER.into(), serde_json::Value::String(g.into()));
    }
    let renewable = resp.secrets.refresh_token.is_some() || grant.is_some();
    let (expires_at, due_at) = plan_for(engine, id, resp.expires_at, renewable)?;
    let refresh_expires_at = refresh_expiry_for(
        engine,
        id,
        resp.refresh_expires_at,
        resp.secrets.refresh_token.is_some(),
    )?;
    let tx = engine.vault().write()?;
    if tx.tenant(&id.tenant)?.is_none() {
        return Err(Error::not_found("tenant", id.tenant.clone()));
    }
    let old = tx.connection(&key)?;
    let rec = ConnectionRecord {
        status: Status::Connected,
        reason: Some(reason.to_owned()),
        status_at: now,
        attempts: 0,
        expires_at,
        refresh_expires_at,
        due_at,
        scope: resp.scope.clone(),
        token_type: resp.token_type.clone(),
        has_refresh_token: resp.secrets.refresh_token.is_some(),
        has_id_token: resp.secrets.id_token.is_some(),
        metadata_keys: resp.secrets.extra.keys().cloned().collect(),
        created_at: old.as_ref().map(|o| o.created_at).unwrap_or(now),
        updated_at: now,
        last_refresh_at: old.as_ref().and_then(|o| o.last_refresh_at),
        refresh_count: old.as_ref().map(|o| o.refresh_count).unwrap_or(0),
        secrets: tx.seal_new(&key, &resp.secrets),
    };
    tx.put_connection(&key, &rec)?;
    tx.append_audit(&crate::vault::records::AuditRecord {
        at: now,
        actor: caller.actor().to_owned(),
        action: "connect".into(),
        tenant: Some(id.tenant.clone()),
        target: key.clone(),
        outcome: "ok".into(),
        count: 1,
    })?;
    tx.commit()?;
    engine.refresh_state().wake.notify_one();
    if old.as_ref().map(|o| o.status) != Some(Status::Connected) {
        engine.emit(StatusEvent {
            connection: key.clone(),
            from: old.map(|o| o.status),
            to: Some(Status::Connected),
            reason: Some(reason.to_owned()),
            at: now,
        });
    }
    Ok(Response::Connection(ConnectionView::new(id, &rec)))
}
