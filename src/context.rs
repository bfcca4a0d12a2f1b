//! `Context`: the small shared handle every subsystem is built on (mini-redis's cloned
//! `Db` is the model). It holds what more than one part needs: the vault, the clock, the
//! configuration with its provider catalogue, the metrics counters, the event bus and the
//! audit writer. Cloning it is cheap (one `Arc`); every clone sees the same state.
//!
//! Owns: reading and replacing the configuration (SIGHUP), provider lookups, publishing
//! events, writing audit records. Must not: decide who may do what (the engine does, from
//! the `Caller`), call providers, or know about the socket or the command line.
//! Subsystems (`refresh`, `apple`, `backup`, `webhook`, `metrics`) take a `Context`, never
//! the `Engine`.

use crate::audit::AuditWriter;
use crate::config::Config;
use crate::contract::{Caller, Event};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::provider::Provider;
use crate::sync::RwLockExt;
use crate::vault::{Tx, Vault};
use std::sync::{Arc, RwLock};
use tokio::sync::broadcast;

/// A clock in Unix seconds, so tests control time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> i64;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        chrono::Utc::now().timestamp()
    }
}

/// How many events the bus keeps for a slow receiver before it reports `lagged`.
pub const EVENT_BUFFER: usize = 1024;

/// The provider catalogue of a configuration, built once per configuration (the refresh
/// path looks a provider up on each attempt); a broken `[providers]` table is kept as its
/// message and reported by each lookup.
type Catalogue = Arc<std::result::Result<Vec<Provider>, String>>;

#[derive(Clone, Debug)]
pub struct Context(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    vault: Vault,
    clock: Arc<dyn Clock>,
    config: RwLock<(Arc<Config>, Catalogue)>,
    metrics: Arc<Metrics>,
    events: broadcast::Sender<Event>,
    audit: AuditWriter,
}

fn catalogue(config: &Config) -> Catalogue {
    Arc::new(
        crate::provider::catalogue::catalogue(config).map_err(|e| match e {
            Error::Config(m) => m,
            other => other.to_string(),
        }),
    )
}

impl Context {
    pub fn new(vault: Vault, clock: Arc<dyn Clock>) -> Context {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let config = Config::default();
        let cat = catalogue(&config);
        Context(Arc::new(Inner {
            vault,
            clock,
            config: RwLock::new((Arc::new(config), cat)),
            metrics: Arc::default(),
            events,
            audit: AuditWriter::default(),
        }))
    }

    pub fn vault(&self) -> &Vault {
        &self.0.vault
    }

    pub fn now(&self) -> i64 {
        self.0.clock.now()
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.0.clock
    }

    /// The counters behind `metrics`.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.0.metrics
    }

    /// The current configuration (cheap: an `Arc`).
    pub fn config(&self) -> Arc<Config> {
        self.0.config.read_or_recover().0.clone()
    }

    /// Replaces the configuration and its provider catalogue (start-up and SIGHUP).
    pub fn set_config(&self, config: Config) {
        let cat = catalogue(&config);
        *self.0.config.write_or_recover() = (Arc::new(config), cat);
    }

    fn catalogue(&self) -> Catalogue {
        self.0.config.read_or_recover().1.clone()
    }

    /// The whole provider catalogue of the current configuration.
    pub fn providers(&self) -> Result<Vec<Provider>> {
        self.catalogue().as_ref().clone().map_err(Error::Config)
    }

    /// The provider named `name` (see `catalogue::find`: an unknown name gets defaults).
    pub fn provider(&self, name: &str) -> Result<Provider> {
        match self.catalogue().as_ref() {
            Ok(all) => Ok(crate::provider::catalogue::find(all, name)),
            Err(m) => Err(Error::Config(m.clone())),
        }
    }

    /// The provider named `name` if the catalogue knows it; otherwise a not-found error
    /// listing the known ones with a "did you mean" (`catalogue::known`). `put`, `client
    /// set` and `connect` refuse unknown providers with it.
    pub fn known_provider(&self, name: &str) -> Result<Provider> {
        crate::provider::catalogue::known(&self.providers()?, name)
    }

    /// Live events. A lagging receiver loses the oldest events (and learns how many);
    /// it never blocks a sender.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.0.events.subscribe()
    }

    /// Publishes an event to every subscriber (none listening is fine).
    pub fn emit(&self, ev: impl Into<Event>) {
        let _ = self.0.events.send(ev.into());
    }

    /// Audits inside the transaction that makes the change: both or neither.
    pub fn audit_in(
        &self,
        tx: &Tx,
        caller: &Caller,
        action: &str,
        tenant: Option<&str>,
        target: &str,
        outcome: &str,
    ) -> Result<()> {
        tx.append_audit(&crate::audit::record(
            self.now(),
            caller.actor(),
            action,
            tenant,
            target,
            outcome,
        ))
    }

    /// Audits a change that already happened (its own durable transaction).
    pub fn audit_now(
        &self,
        caller: &Caller,
        action: &str,
        tenant: Option<&str>,
        target: &str,
        outcome: &str,
    ) -> Result<()> {
        let tx = self.vault().write()?;
        self.audit_in(&tx, caller, action, tenant, target, outcome)?;
        tx.commit()
    }

    /// Queues an audit record of a hand-out; no disk write on the caller's path.
    pub fn queue_audit(
        &self,
        caller: &Caller,
        action: &str,
        tenant: &str,
        target: &str,
        outcome: &str,
    ) {
        self.0
            .audit
            .queue(self.now(), caller.actor(), action, tenant, target, outcome);
    }

    /// Writes queued hand-out audit records in one durable transaction and publishes a
    /// `handouts` summary per tenant. Returns how many records were written.
    pub fn flush_audit(&self) -> Result<usize> {
        let (n, events) = self.0.audit.flush(self.vault(), self.now())?;
        for e in events {
            self.emit(e);
        }
        Ok(n)
    }

    /// `NotFound` with the command that creates the tenant, unless it exists.
    pub fn require_tenant_exists(&self, tx: &Tx, tenant: &str) -> Result<()> {
        if tx.tenant(tenant)?.is_none() {
            return Err(Error::NotFound {
                what: "tenant",
                name: format!("{tenant} (create it with `tokenvault tenant add {tenant}`)"),
            });
        }
        Ok(())
    }
}
