//! Tenant keys and uid grants (SPEC §6 "who is asking"): issuing, listing, revoking,
//! and checking a presented key (the socket server asks `authenticate_tenant_key`).
//!
//! A key is `tvk_<KEY_ID>_<SECRET>`: KEY_ID is 64 random bits in hex (shown by `list`,
//! used to revoke), SECRET is 256 random bits in base64url. Only HMAC-SHA256(label,
//! SECRET) is stored, under KEY_ID; a presented key is looked up by its id and its hash
//! compared in constant time. The full key is returned once, by `issue`, and never logged.

use super::{Caller, Engine, Response, done};
use crate::contract::{GrantView, TenantKeyView};
use crate::error::{Error, Result};
use crate::names;
use crate::secret::Secret;
use crate::vault::crypto::{keyed_hash, random_bytes};
use crate::vault::records::TenantKeyRecord;
use base64::Engine as _;

const HASH_LABEL: &[u8] = b"tokenvault tenant key v1";
const PREFIX: &str = "tvk_";

fn hash(secret: &str) -> [u8; 32] {
    keyed_hash(HASH_LABEL, secret.as_bytes())
}

/// Splits a presented key into (key id, secret part) without judging it.
fn split(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let id_ok = id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit());
    (id_ok && !secret.is_empty()).then_some((id, secret))
}

fn unauthorized() -> Error {
    Error::Unauthorized(
        "the tenant key is not valid (mistyped, revoked or from another vault): ask the operator for a new one with `tokenvault tenant key issue`".into(),
    )
}

fn require_admin(caller: &Caller) -> Result<()> {
    caller.require_admin()
}

impl Engine {
    pub(super) fn tenant_key_issue(
        &self,
        caller: &Caller,
        tenant: &str,
        label: Option<String>,
    ) -> Result<Response> {
        require_admin(caller)?;
        names::validate_tenant(tenant)?;
        if label.as_ref().is_some_and(|l| l.len() > 200) {
            return Err(Error::invalid("label", "longer than 200 bytes"));
        }
        let key_id = hex::encode(random_bytes(8));
        let secret = zeroize::Zeroizing::new(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(32)),
        );
        let tx = self.ctx.vault().write()?;
        self.ctx.require_tenant_exists(&tx, tenant)?;
        tx.put_tenant_key(
            &key_id,
            &TenantKeyRecord {
                tenant: tenant.to_owned(),
                hash: hash(&secret).to_vec(),
                label,
                created_at: self.ctx.now(),
                revoked_at: None,
            },
        )?;
        self.ctx.audit_in(
            &tx,
            caller,
            "tenant_key_issue",
            Some(tenant),
            &format!("key {key_id}"),
            "ok",
        )?;
        tx.commit()?;
        Ok(Response::TenantKey {
            tenant: tenant.to_owned(),
            key: Secret::new(format!("{PREFIX}{key_id}_{}", secret.as_str())),
            key_id,
        })
    }

    pub(super) fn tenant_key_list(&self, caller: &Caller, tenant: &str) -> Result<Response> {
        require_admin(caller)?;
        names::validate_tenant(tenant)?;
        let rx = self.ctx.vault().read()?;
        let keys = rx
            .tenant_keys(Some(tenant))?
            .into_iter()
            .map(|(key_id, r)| TenantKeyView {
                key_id,
                tenant: r.tenant,
                label: r.label,
                created_at: r.created_at,
                revoked_at: r.revoked_at,
            })
            .collect();
        Ok(Response::TenantKeys { keys })
    }

    pub(super) fn tenant_key_revoke(
        &self,
        caller: &Caller,
        tenant: &str,
        key_id: &str,
    ) -> Result<Response> {
        require_admin(caller)?;
        let tx = self.ctx.vault().write()?;
        let mut rec = tx
            .tenant_key(key_id)?
            .filter(|r| r.tenant == tenant)
            .ok_or_else(|| Error::not_found("tenant key", format!("{tenant} {key_id}")))?;
        if rec.revoked_at.is_none() {
            rec.revoked_at = Some(self.ctx.now());
            tx.put_tenant_key(key_id, &rec)?;
        }
        self.ctx.audit_in(
            &tx,
            caller,
            "tenant_key_revoke",
            Some(tenant),
            &format!("key {key_id}"),
            "ok",
        )?;
        tx.commit()?;
        Ok(done(format!("tenant key {key_id} of {tenant} revoked")))
    }

    pub(super) fn tenant_grant(&self, caller: &Caller, tenant: &str, uid: u32) -> Result<Response> {
        require_admin(caller)?;
        names::validate_tenant(tenant)?;
        if uid == 0 {
            return Err(Error::invalid(
                "uid",
                "root is always admin; it cannot be scoped",
            ));
        }
        let tx = self.ctx.vault().write()?;
        self.ctx.require_tenant_exists(&tx, tenant)?;
        if let Some(other) = tx.grant(uid)?.filter(|t| t != tenant) {
            return Err(Error::invalid(
                "grant",
                format!(
                    "uid {uid} is already granted to tenant {other}; a uid maps to one tenant (revoke that grant first)"
                ),
            ));
        }
        tx.put_grant(uid, tenant)?;
        self.ctx.audit_in(
            &tx,
            caller,
            "tenant_grant",
            Some(tenant),
            &format!("uid {uid}"),
            "ok",
        )?;
        tx.commit()?;
        Ok(done(format!("uid {uid} may now act for tenant {tenant}")))
    }

    pub(super) fn tenant_revoke_grant(
        &self,
        caller: &Caller,
        tenant: &str,
        uid: u32,
    ) -> Result<Response> {
        require_admin(caller)?;
        let tx = self.ctx.vault().write()?;
        if tx.grant(uid)?.as_deref() != Some(tenant) {
            return Err(Error::not_found("grant", format!("uid {uid} → {tenant}")));
        }
        tx.remove_grant(uid)?;
        self.ctx.audit_in(
            &tx,
            caller,
            "tenant_revoke_grant",
            Some(tenant),
            &format!("uid {uid}"),
            "ok",
        )?;
        tx.commit()?;
        Ok(done(format!(
            "uid {uid} no longer acts for tenant {tenant}"
        )))
    }

    pub(super) fn tenant_grant_list(
        &self,
        caller: &Caller,
        tenant: Option<&str>,
    ) -> Result<Response> {
        require_admin(caller)?;
        let rx = self.ctx.vault().read()?;
        let grants = rx
            .grants()?
            .into_iter()
            .filter(|(_, t)| tenant.is_none_or(|want| want == t))
            .map(|(uid, tenant)| GrantView { uid, tenant })
            .collect();
        Ok(Response::Grants { grants })
    }

    /// Checks a presented tenant key. Returns (tenant, key id) when it is a live key of
    /// this vault; `Unauthorized` otherwise (one message for every failure, so a caller
    /// learns nothing about which part was wrong).
    pub fn authenticate_tenant_key(&self, key: &Secret) -> Result<(String, String)> {
        use subtle::ConstantTimeEq;
        let (id, secret) = split(key.expose()).ok_or_else(unauthorized)?;
        let rec = self
            .ctx
            .vault()
            .read()?
            .tenant_key(id)?
            .ok_or_else(unauthorized)?;
        let presented = hash(secret);
        let ok: bool = presented.as_slice().ct_eq(rec.hash.as_slice()).into();
        if !ok || rec.revoked_at.is_some() {
            return Err(unauthorized());
        }
        Ok((rec.tenant, id.to_owned()))
    }

    /// The tenant of a key that is still live; `None` once revoked or removed.
    pub fn tenant_key_tenant(&self, key_id: &str) -> Result<Option<String>> {
        Ok(self
            .ctx
            .vault()
            .read()?
            .tenant_key(key_id)?
            .filter(|r| r.revoked_at.is_none())
            .map(|r| r.tenant))
    }

    /// The tenant a uid is granted to, if any.
    pub fn tenant_for_uid(&self, uid: u32) -> Result<Option<String>> {
        self.ctx.vault().read()?.grant(uid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_accepts_only_well_formed_keys() {
        assert_eq!(
            split("tvk_0123456789abcdef_secretpart"),
            Some(("0123456789abcdef", "secretpart"))
        );
        for bad in [
            "",
            "tvk_",
            "tvk_0123456789abcdef_",
            "tvk_0123456789abcde_x",
            "tvk_0123456789abcdeg_x",
            "xyz_0123456789abcdef_x",
            "tvk_0123456789abcdefx",
        ] {
            assert_eq!(split(bad), None, "{bad:?}");
        }
    }
}
