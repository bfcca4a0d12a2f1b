//! `backup export / verify / restore` (SPEC §8), admin only, each published as a `backup`
//! event with its outcome. The work is the backup handle's (`backup::Backups`).

use super::Engine;
use crate::contract::progress::ProgressSink;
use crate::contract::{BackupReport, Caller, Event, EventKind, Response};
use crate::error::Result;
use crate::secret::Secret;

impl Engine {
    #[allow(clippy::too_many_arguments)] // the request's fields, as dispatched
    pub(super) fn backup_export(
        &self,
        caller: &Caller,
        path: &str,
        tenant: Option<String>,
        recipients: Vec<String>,
        passphrase: Option<Secret>,
        include_audit: bool,
        progress: Option<ProgressSink>,
    ) -> Result<Response> {
        caller.require_admin()?;
        let t = tenant.clone();
        let r = self.backups.export(
            caller,
            path,
            tenant,
            recipients,
            passphrase,
            include_audit,
            progress,
        );
        self.backup_event("export", t, &r);
        r.map(Response::Backup)
    }

    pub(super) fn backup_verify(
        &self,
        caller: &Caller,
        path: &str,
        identity: Option<Secret>,
        passphrase: Option<Secret>,
        progress: Option<ProgressSink>,
    ) -> Result<Response> {
        caller.require_admin()?;
        let r = self.backups.verify(path, identity, passphrase, progress);
        self.backup_event("verify", None, &r);
        r.map(Response::Backup)
    }

    #[allow(clippy::too_many_arguments)] // the request's fields, as dispatched
    pub(super) fn backup_restore(
        &self,
        caller: &Caller,
        path: &str,
        identity: Option<Secret>,
        passphrase: Option<Secret>,
        tenant: Option<String>,
        replace: bool,
        progress: Option<ProgressSink>,
    ) -> Result<Response> {
        caller.require_admin()?;
        let t = tenant.clone();
        let r = self.backups.restore(
            caller, path, identity, passphrase, tenant, replace, progress,
        );
        if r.is_ok() {
            // restored connections may be due before anything the scheduler sleeps to
            self.refresh.wake();
        }
        self.backup_event("restore", t, &r);
        r.map(Response::Backup)
    }

    fn backup_event(&self, op: &str, tenant: Option<String>, r: &Result<BackupReport>) {
        let (ok, path, message) = match r {
            Ok(rep) => (
                true,
                Some(rep.path.clone()),
                format!("{} records, {} bytes", rep.records, rep.bytes),
            ),
            // the error's code, not its text: a message may name a path the caller typed
            Err(e) => (false, None, e.code().to_owned()),
        };
        self.ctx.emit(Event::new(
            self.ctx.now(),
            EventKind::Backup {
                tenant,
                op: op.to_owned(),
                ok,
                path,
                message,
            },
        ));
    }
}
