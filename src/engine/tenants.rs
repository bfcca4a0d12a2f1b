//! Tenants: `tenant add`, `tenant list` (the caller's own only, for a tenant caller) and
//! `tenant remove` (refused while the tenant has connections or clients, unless forced).

use super::{Engine, done};
use crate::contract::{Caller, Response, TenantView};
use crate::error::{Error, Result};
use crate::names;
use crate::vault::records::TenantRecord;

impl Engine {
    pub(super) fn tenant_add(&self, caller: &Caller, name: &str) -> Result<Response> {
        caller.require_admin()?;
        names::validate_tenant(name)?;
        let tx = self.ctx.vault().write()?;
        if tx.tenant(name)?.is_some() {
            return Err(Error::AlreadyExists {
                what: "tenant",
                name: name.into(),
            });
        }
        tx.put_tenant(
            name,
            &TenantRecord {
                created_at: self.ctx.now(),
            },
        )?;
        self.ctx
            .audit_in(&tx, caller, "tenant_add", Some(name), name, "ok")?;
        tx.commit()?;
        Ok(done(format!("tenant {name} added")))
    }

    pub(super) fn tenant_list(&self, caller: &Caller) -> Result<Response> {
        let rx = self.ctx.vault().read()?;
        let mut tenants = Vec::new();
        for (name, rec) in rx.tenants()? {
            if caller.require_tenant(&name).is_err() {
                continue;
            }
            let mut connections = 0;
            rx.for_each_connection(&format!("{name}/"), |_, _| {
                connections += 1;
                Ok(true)
            })?;
            tenants.push(TenantView {
                clients: rx.clients(Some(&name))?.len() as u64,
                name,
                created_at: rec.created_at,
                connections,
            });
        }
        Ok(Response::Tenants { tenants })
    }

    pub(super) fn tenant_remove(
        &self,
        caller: &Caller,
        name: &str,
        force: bool,
    ) -> Result<Response> {
        caller.require_admin()?;
        let tx = self.ctx.vault().write()?;
        if tx.tenant(name)?.is_none() {
            return Err(Error::not_found("tenant", name));
        }
        let n = tx.connections(&format!("{name}/"))?.len();
        let c = tx.clients(Some(name))?.len();
        if (n > 0 || c > 0) && !force {
            return Err(Error::invalid(
                "tenant remove",
                format!(
                    "tenant {name} still has {n} connections and {c} clients; pass --force to remove them all"
                ),
            ));
        }
        tx.remove_tenant(name)?;
        self.ctx.audit_in(
            &tx,
            caller,
            "tenant_remove",
            Some(name),
            name,
            &format!("{n} connections removed"),
        )?;
        tx.commit()?;
        Ok(done(format!(
            "tenant {name} removed ({n} connections, {c} clients)"
        )))
    }
}
