//! Who is on the other end of a socket connection (SPEC §6).
//!
//! The peer's uid comes from the kernel (SO_PEERCRED through tokio's `peer_cred`), never
//! from the request. The daemon's own uid and root are admin; a uid granted to a tenant is
//! that tenant; anyone else may only say `hello` or present a tenant key with `auth`.
//! A connection that presented a key is scoped to the key's tenant (even if its uid is
//! admin); one whose key was refused stays unauthorized.
//!
//! Grants and keys are looked up again for every request, so a revoked grant or key
//! stops working at the next request, not at the next connection.

use crate::contract::Caller;
use crate::engine::Engine;
use crate::error::{Error, Result};

/// What a connection has established about its peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// Decided by the peer uid (`None` when the kernel gave none).
    Peer { uid: Option<u32> },
    /// Authenticated with a tenant key.
    Key { key_id: String },
    /// Presented a key that was refused: nothing but `hello`/`auth` is answered.
    Refused,
}

/// The pure rule for a uid: admin (own uid or root), a granted tenant, or nobody.
pub fn classify(uid: u32, daemon_uid: u32, grant: Option<String>) -> Result<Caller> {
    if uid == daemon_uid || uid == 0 {
        return Ok(Caller::Admin {
            actor: format!("uid={uid}"),
        });
    }
    match grant {
        Some(tenant) => Ok(Caller::Tenant {
            tenant,
            actor: format!("uid={uid}"),
        }),
        None => Err(Error::Unauthorized(format!(
            "uid {uid} has no access: the operator can grant it a tenant with `tokenvault tenant grant TENANT --uid {uid}`, or send {{\"op\":\"auth\",\"tenant_key\":...}} first"
        ))),
    }
}

/// The caller for the next request on a connection with `identity`.
pub fn caller(engine: &Engine, identity: &Identity, daemon_uid: u32) -> Result<Caller> {
    match identity {
        Identity::Peer { uid: Some(uid) } => {
            let grant = if *uid == daemon_uid || *uid == 0 {
                None
            } else {
                engine.tenant_for_uid(*uid)?
            };
            classify(*uid, daemon_uid, grant)
        }
        Identity::Peer { uid: None } => Err(Error::Unauthorized(
            "the kernel did not tell who is connecting; present a tenant key with the auth op"
                .into(),
        )),
        Identity::Key { key_id } => match engine.tenant_key_tenant(key_id)? {
            Some(tenant) => Ok(Caller::Tenant {
                tenant,
                actor: format!("key={key_id}"),
            }),
            None => Err(Error::Unauthorized(
                "the tenant key of this connection has been revoked".into(),
            )),
        },
        Identity::Refused => Err(Error::Unauthorized(
            "this connection presented an invalid tenant key; reconnect and authenticate again"
                .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_table() {
        let me = 1000;
        assert!(matches!(classify(1000, me, None), Ok(Caller::Admin { .. })));
        assert!(matches!(classify(0, me, None), Ok(Caller::Admin { .. })));
        // a grant never downgrades the daemon's own uid or root
        assert!(matches!(
            classify(0, me, Some("acme".into())),
            Ok(Caller::Admin { .. })
        ));
        assert_eq!(
            classify(1001, me, Some("acme".into())).unwrap(),
            Caller::Tenant {
                tenant: "acme".into(),
                actor: "uid=1001".into()
            }
        );
        let e = classify(1002, me, None).unwrap_err();
        assert_eq!(e.code(), "unauthorized");
    }
}
