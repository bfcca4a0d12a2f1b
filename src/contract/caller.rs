//! `Caller`: who is asking, as the front end established it (peer uid, tenant key, or the
//! local user), never as the request claims. Plain data plus the two scope checks every
//! operation starts with.

use crate::error::{Error, Result};

/// Who is asking. Decided by the front end (peer uid, tenant key, or the local user), never
/// by the request itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// Full access. `actor` is what the audit log records, e.g. `cli:uid=1000`.
    Admin { actor: String },
    /// Scoped to one tenant's connections; no admin operation.
    Tenant { tenant: String, actor: String },
}

impl Caller {
    pub fn actor(&self) -> &str {
        match self {
            Caller::Admin { actor } | Caller::Tenant { actor, .. } => actor,
        }
    }

    pub(crate) fn require_admin(&self) -> Result<()> {
        match self {
            Caller::Admin { .. } => Ok(()),
            Caller::Tenant { .. } => Err(Error::Forbidden(
                "this operation needs an admin caller; a tenant key or grant cannot do it".into(),
            )),
        }
    }

    pub(crate) fn require_tenant(&self, tenant: &str) -> Result<()> {
        match self {
            Caller::Admin { .. } => Ok(()),
            Caller::Tenant { tenant: own, .. } if own == tenant => Ok(()),
            Caller::Tenant { .. } => Err(Error::Forbidden(
                "this caller is scoped to another tenant and cannot reach that tenant; use an admin caller or that tenant's key".into(),
            )),
        }
    }
}
