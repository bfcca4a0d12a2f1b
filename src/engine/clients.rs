//! OAuth clients per tenant and provider: `client set` (the secret kept unless a new one
//! is given, endpoint overrides checked), `client list` (never the secret), `client
//! remove`. Admin only.

use super::{Engine, done};
use crate::contract::{Caller, ClientView, Response};
use crate::error::{Error, Result};
use crate::names::{self, validate_url};
use crate::secret::Secret;
use crate::vault::records::ClientRecord;
use std::collections::BTreeMap;

/// What `client set` stores, as the request carried it.
#[derive(Debug)]
pub(super) struct ClientFields {
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub token_url: Option<String>,
    pub authorization_url: Option<String>,
    pub device_authorization_url: Option<String>,
    pub revocation_url: Option<String>,
    pub params: BTreeMap<String, String>,
}

impl Engine {
    pub(super) fn client_set(
        &self,
        caller: &Caller,
        tenant: &str,
        provider: &str,
        f: ClientFields,
    ) -> Result<Response> {
        caller.require_admin()?;
        names::validate_tenant(tenant)?;
        self.ctx.known_provider(provider)?;
        let ClientFields {
            client_id,
            client_secret,
            token_url,
            authorization_url,
            device_authorization_url,
            revocation_url,
            params,
        } = f;
        if client_id.is_empty() || client_id.len() > 1024 {
            return Err(Error::invalid("client id", "must be 1-1024 bytes"));
        }
        for url in [
            &token_url,
            &authorization_url,
            &device_authorization_url,
            &revocation_url,
        ]
        .into_iter()
        .flatten()
        {
            validate_url(url)?;
        }
        let tx = self.ctx.vault().write()?;
        self.ctx.require_tenant_exists(&tx, tenant)?;
        let old = tx.client(tenant, provider)?;
        let rec = ClientRecord {
            client_id,
            // keep the stored secret unless a new one is given
            secret: old.and_then(|o| o.secret),
            token_url,
            authorization_url,
            device_authorization_url,
            revocation_url,
            params,
            updated_at: self.ctx.now(),
        };
        tx.put_client(tenant, provider, rec, client_secret.as_ref())?;
        self.ctx.audit_in(
            &tx,
            caller,
            "client_set",
            Some(tenant),
            &format!("{tenant}/{provider}"),
            "ok",
        )?;
        tx.commit()?;
        Ok(done(format!("client {tenant}/{provider} saved")))
    }

    pub(super) fn client_list(&self, caller: &Caller, tenant: Option<&str>) -> Result<Response> {
        caller.require_admin()?;
        let rx = self.ctx.vault().read()?;
        let clients = rx
            .clients(tenant)?
            .into_iter()
            .map(|(t, p, c)| ClientView {
                tenant: t,
                provider: p,
                client_id: c.client_id,
                has_secret: c.secret.is_some(),
                token_url: c.token_url,
                authorization_url: c.authorization_url,
                device_authorization_url: c.device_authorization_url,
                revocation_url: c.revocation_url,
                params: c.params,
                updated_at: c.updated_at,
            })
            .collect();
        Ok(Response::Clients { clients })
    }

    pub(super) fn client_remove(
        &self,
        caller: &Caller,
        tenant: &str,
        provider: &str,
    ) -> Result<Response> {
        caller.require_admin()?;
        let tx = self.ctx.vault().write()?;
        if !tx.remove_client(tenant, provider)? {
            return Err(Error::not_found("client", format!("{tenant}/{provider}")));
        }
        self.ctx.audit_in(
            &tx,
            caller,
            "client_remove",
            Some(tenant),
            &format!("{tenant}/{provider}"),
            "ok",
        )?;
        tx.commit()?;
        Ok(done(format!("client {tenant}/{provider} removed")))
    }
}
