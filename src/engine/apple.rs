//! Apple Music requests (SPEC §7): signing keys (add / list / activate / retire) and the
//! developer token, each key change published as an `apple_key` event. The work, with the
//! caller's scope checks, is the Apple Music handle's (`apple::AppleMusic`).

use super::Engine;
use crate::contract::{Caller, Event, EventKind, Response};
use crate::error::Result;

impl Engine {
    pub(super) fn apple_key_add(
        &self,
        caller: &Caller,
        tenant: &str,
        team_id: &str,
        key_id: &str,
        p8: &crate::secret::Secret,
    ) -> Result<Response> {
        let r = self.apple.add_key(caller, tenant, team_id, key_id, p8)?;
        self.apple_event(tenant, key_id, "added");
        Ok(r)
    }

    pub(super) fn apple_key_activate(
        &self,
        caller: &Caller,
        tenant: &str,
        key_id: &str,
    ) -> Result<Response> {
        let r = self.apple.activate_key(caller, tenant, key_id)?;
        self.apple_event(tenant, key_id, "activated");
        Ok(r)
    }

    pub(super) fn apple_key_retire(
        &self,
        caller: &Caller,
        tenant: &str,
        key_id: &str,
        force: bool,
    ) -> Result<Response> {
        let r = self.apple.retire_key(caller, tenant, key_id, force)?;
        self.apple_event(tenant, key_id, "retired");
        Ok(r)
    }

    pub(super) fn apple_token(&self, caller: &Caller, tenant: &str) -> Result<Response> {
        self.apple
            .developer_token_for(caller, tenant)
            .map(Response::AppleToken)
    }

    fn apple_event(&self, tenant: &str, key_id: &str, change: &str) {
        self.ctx.emit(Event::new(
            self.ctx.now(),
            EventKind::AppleKey {
                tenant: tenant.to_owned(),
                key_id: key_id.to_owned(),
                change: change.to_owned(),
            },
        ));
    }
}
