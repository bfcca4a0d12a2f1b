//! `provider list` and `provider show`: the catalogue of the current configuration
//! (built-in providers and `[providers.NAME]` tables), never a client secret.

use super::Engine;
use crate::contract::Response;
use crate::error::{Error, Result};

impl Engine {
    pub(super) fn provider_list(&self) -> Result<Response> {
        Ok(Response::Providers {
            providers: self.ctx.providers()?,
        })
    }

    pub(super) fn provider_show(&self, name: &str) -> Result<Response> {
        crate::names::validate_provider(name)?;
        self.ctx
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
}
