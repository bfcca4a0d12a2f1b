//! The engine halves of `connect` (SPEC §5.6): the authorisation URL of the code flow,
//! the code exchange, the device flow's start and polls, the client-credentials grant.
//! Every token exchange runs here, because client secrets never leave the vault; the
//! front end only carries the authorisation code or device code (`client::connect`
//! drives the steps).

use super::Engine;
use super::connections::Arrival;
use crate::contract::{Caller, ConnectionView, DeviceStartView, Response};
use crate::error::{Error, Result};
use crate::names::ConnectionId;
use crate::provider::catalogue::{self, Provider, ProviderKind};
use crate::provider::oauth::{self, CallError, ClientCreds, Http};
use crate::secret::Secret;
use crate::token::TokenResponse;

impl Engine {
    /// The refresh engine's HTTP client, or the error a provider call would give.
    fn http_for(&self, id: &ConnectionId) -> Result<Http> {
        self.refresh
            .state()
            .http()
            .map_err(|e| e.into_error(&id.key()))
    }

    /// Stores the tokens a flow received and answers with the connection.
    fn stored(
        &self,
        caller: &Caller,
        id: &ConnectionId,
        resp: TokenResponse,
        reason: &str,
        grant: Option<&str>,
    ) -> Result<Response> {
        let rec = self.store_token(
            caller,
            id,
            resp,
            Arrival {
                action: "connect",
                reason,
                grant,
            },
        )?;
        Ok(Response::Connection(ConnectionView::new(id, &rec)))
    }

    /// Provider, endpoints and client credentials for a `connect` of `id`.
    fn flow_ctx(&self, id: &ConnectionId) -> Result<(Provider, catalogue::Endpoints, ClientCreds)> {
        // an unknown (mistyped) provider is refused with the known ones listed
        let p = self.ctx.known_provider(&id.provider)?;
        if p.kind != ProviderKind::OAuth2 {
            return Err(Error::invalid(
                "connect",
                format!(
                    "provider {} has no OAuth flow; import its token with `tokenvault put {id}`",
                    p.name
                ),
            ));
        }
        let rx = self.ctx.vault().read()?;
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
    pub(super) fn connect_start(
        &self,
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
        let (p, ep, creds) = self.flow_ctx(&id)?;
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
    pub(super) async fn connect_code(
        &self,
        caller: &Caller,
        connection: &str,
        code: &Secret,
        code_verifier: &Secret,
        redirect_uri: &str,
    ) -> Result<Response> {
        let id = ConnectionId::parse(connection)?;
        caller.require_tenant(&id.tenant)?;
        let (p, ep, creds) = self.flow_ctx(&id)?;
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
        let http = self.http_for(&id)?;
        let resp = oauth::token_request(&http, &url, &creds, form, self.ctx.now())
            .await
            .map_err(|e| e.into_error(&id.key()))?;
        self.stored(caller, &id, resp, "connected (authorization code)", None)
    }

    /// `connect --flow device`, step 1 (RFC 8628 §3.1).
    pub(super) async fn device_start(
        &self,
        caller: &Caller,
        connection: &str,
        scopes: &[String],
    ) -> Result<Response> {
        let id = ConnectionId::parse(connection)?;
        caller.require_tenant(&id.tenant)?;
        let (p, ep, creds) = self.flow_ctx(&id)?;
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
        let http = self.http_for(&id)?;
        let d = oauth::device_authorization(&http, &url, &creds, form, self.ctx.now())
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
    pub(super) async fn device_poll(
        &self,
        caller: &Caller,
        connection: &str,
        device_code: &Secret,
    ) -> Result<Response> {
        let id = ConnectionId::parse(connection)?;
        caller.require_tenant(&id.tenant)?;
        let (p, ep, creds) = self.flow_ctx(&id)?;
        let url = token_url(&p, &ep)?;
        let mut form = vec![
            (
                "grant_type".to_owned(),
                "urn:ietf:params:oauth:grant-type:device_code".to_owned(),
            ),
            ("device_code".to_owned(), device_code.expose().to_owned()),
        ];
        form.extend(p.token_params.clone());
        let http = self.http_for(&id)?;
        match oauth::token_request(&http, &url, &creds, form, self.ctx.now()).await {
            Ok(resp) => self.stored(caller, &id, resp, "connected (device flow)", None),
            Err(CallError::AuthorizationPending) => {
                Ok(Response::DevicePending { slow_down: false })
            }
            Err(CallError::SlowDown) => Ok(Response::DevicePending { slow_down: true }),
            Err(e) => Err(e.into_error(&id.key())),
        }
    }

    /// `connect --flow client-credentials`: a token for the client itself, re-requested (not
    /// refreshed) when due.
    pub(super) async fn connect_client_credentials(
        &self,
        caller: &Caller,
        connection: &str,
        scopes: &[String],
    ) -> Result<Response> {
        let id = ConnectionId::parse(connection)?;
        caller.require_tenant(&id.tenant)?;
        let (p, ep, creds) = self.flow_ctx(&id)?;
        let url = token_url(&p, &ep)?;
        let mut form = vec![("grant_type".to_owned(), "client_credentials".to_owned())];
        let scope = p.scope_string(scopes);
        if let Some(s) = &scope {
            form.push(("scope".to_owned(), s.clone()));
        }
        form.extend(p.token_params.clone());
        let http = self.http_for(&id)?;
        let mut resp = oauth::token_request(&http, &url, &creds, form, self.ctx.now())
            .await
            .map_err(|e| e.into_error(&id.key()))?;
        if resp.scope.is_none() {
            resp.scope = scope;
        }
        self.stored(
            caller,
            &id,
            resp,
            "connected (client credentials)",
            Some("client_credentials"),
        )
    }
}

fn token_url(p: &Provider, ep: &catalogue::Endpoints) -> Result<String> {
    ep.token_url.clone().ok_or_else(|| {
        Error::Config(format!(
            "provider {} has no token URL: set one with `client set … --token-url URL`",
            p.name
        ))
    })
}
