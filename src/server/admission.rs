//! Who gets a socket connection, and how many (SPEC §6 limits, issue 14).
//!
//! Each connection is counted by the standing of its peer uid at accept time:
//!
//! - **admin** (the daemon's own uid, root): up to `max_connections + reserved_admin`,
//!   with no per-uid cap, so however full the daemon is, the operator gets in;
//! - **authorised** (a uid granted to a tenant): up to `max_per_uid` for that uid, within
//!   `max_connections` for all non-admin connections together;
//! - **pending** (no grant: a key may still come with `auth`, or nothing): the same two
//!   caps, and all pending connections together may hold at most half of
//!   `max_connections`, so ungranted uids, however many, cannot take the slots of
//!   granted ones. A pending connection that does not authenticate within
//!   `auth_timeout` is closed (the listener does that); one that does stops counting as
//!   pending.
//!
//! The counts live behind one mutex, held for a few integer operations; a [`Slot`] gives
//! its connection back when the connection's task ends, however it ends.
//!
//! Must not: decide what a request may do (the `Engine` does), or block.

use crate::config::DaemonConfig;
use crate::sync::LockExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
pub const DEFAULT_MAX_CONNECTIONS_PER_UID: usize = 64;
pub const DEFAULT_RESERVED_ADMIN: usize = 64;
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(5);

/// Connection limits, read from `[daemon]` of the config for each new connection, so a
/// SIGHUP reload applies to connections accepted after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_per_uid: usize,
    pub reserved_admin: usize,
    pub idle_timeout: Duration,
    pub auth_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from_config(&DaemonConfig::default())
    }
}

impl Limits {
    /// A zero cap or timeout would lock everyone out: it means "the default".
    /// `reserved_admin_connections = 0` is allowed (no reserve).
    pub fn from_config(c: &DaemonConfig) -> Self {
        let positive = |v: Option<usize>, d: usize| v.filter(|n| *n > 0).unwrap_or(d);
        let secs = |v: Option<u64>, d: Duration| {
            v.filter(|n| *n > 0).map(Duration::from_secs).unwrap_or(d)
        };
        Limits {
            max_connections: positive(c.max_connections, DEFAULT_MAX_CONNECTIONS),
            max_per_uid: positive(c.max_connections_per_uid, DEFAULT_MAX_CONNECTIONS_PER_UID),
            reserved_admin: c
                .reserved_admin_connections
                .unwrap_or(DEFAULT_RESERVED_ADMIN),
            idle_timeout: secs(c.idle_timeout_secs, DEFAULT_IDLE_TIMEOUT),
            auth_timeout: secs(c.auth_timeout_secs, DEFAULT_AUTH_TIMEOUT),
        }
    }

    /// How many pending (not yet authorised) connections may exist together.
    pub fn max_pending(&self) -> usize {
        (self.max_connections / 2).max(1)
    }
}

/// A peer's standing when its connection is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Admin,
    Authorised,
    Pending,
}

/// Why a connection was refused; the text goes to the client in one error line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Total { limit: usize },
    Admin { limit: usize, reserve: usize },
    PerUid { uid: Option<u32>, limit: usize },
    Pending { limit: usize },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Total { limit } => write!(
                f,
                "too many connections (limit {limit}); retry later, or ask the operator to raise [daemon] max_connections"
            ),
            Refusal::Admin { limit, reserve } => write!(
                f,
                "too many connections (limit {limit}, plus {reserve} kept for the operator, all in use); retry later"
            ),
            Refusal::PerUid { uid, limit } => {
                let who = uid.map_or_else(|| "an unknown uid".to_owned(), |u| format!("uid {u}"));
                write!(
                    f,
                    "too many connections from {who} (limit {limit} per uid); close some and retry, or ask the operator to raise [daemon] max_connections_per_uid"
                )
            }
            Refusal::Pending { limit } => write!(
                f,
                "too many connections waiting to authenticate (limit {limit}); retry later, and send auth right after connecting"
            ),
        }
    }
}

/// Live connections, by kind.
#[derive(Debug, Default)]
pub struct Counts {
    total: usize,
    pending: usize,
    /// Non-admin connections by peer uid (`None`: the kernel gave no uid).
    per_uid: HashMap<Option<u32>, usize>,
}

impl Counts {
    pub fn total(&self) -> usize {
        self.total
    }

    pub fn pending(&self) -> usize {
        self.pending
    }

    pub fn of_uid(&self, uid: Option<u32>) -> usize {
        self.per_uid.get(&uid).copied().unwrap_or(0)
    }
}

/// The pure rule: may one more connection of `uid` with `standing` come in?
pub fn admit(c: &Counts, uid: Option<u32>, standing: Standing, l: &Limits) -> Result<(), Refusal> {
    if standing == Standing::Admin {
        let limit = l.max_connections.saturating_add(l.reserved_admin);
        return if c.total < limit {
            Ok(())
        } else {
            Err(Refusal::Admin {
                limit: l.max_connections,
                reserve: l.reserved_admin,
            })
        };
    }
    if c.of_uid(uid) >= l.max_per_uid {
        return Err(Refusal::PerUid {
            uid,
            limit: l.max_per_uid,
        });
    }
    if c.total >= l.max_connections {
        return Err(Refusal::Total {
            limit: l.max_connections,
        });
    }
    if standing == Standing::Pending && c.pending >= l.max_pending() {
        return Err(Refusal::Pending {
            limit: l.max_pending(),
        });
    }
    Ok(())
}

/// The shared counts of one listener.
#[derive(Debug, Clone, Default)]
pub struct Admission(Arc<Mutex<Counts>>);

impl Admission {
    fn lock(&self) -> MutexGuard<'_, Counts> {
        // The counts are plain integers, consistent after every statement: a panic
        // elsewhere while holding the lock cannot leave them half-updated.
        self.0.lock_or_recover()
    }

    /// Counts the connection in, or says why not.
    pub fn take(&self, uid: Option<u32>, standing: Standing, l: &Limits) -> Result<Slot, Refusal> {
        let mut c = self.lock();
        admit(&c, uid, standing, l)?;
        c.total += 1;
        if standing != Standing::Admin {
            *c.per_uid.entry(uid).or_insert(0) += 1;
        }
        if standing == Standing::Pending {
            c.pending += 1;
        }
        Ok(Slot {
            admission: self.clone(),
            uid,
            counted_per_uid: standing != Standing::Admin,
            pending: standing == Standing::Pending,
        })
    }

    /// A snapshot, for tests and logs.
    pub fn counts(&self) -> (usize, usize) {
        let c = self.lock();
        (c.total, c.pending)
    }
}

/// One admitted connection; gives its place back on drop.
#[derive(Debug)]
pub struct Slot {
    admission: Admission,
    uid: Option<u32>,
    counted_per_uid: bool,
    pending: bool,
}

impl Slot {
    pub fn is_pending(&self) -> bool {
        self.pending
    }

    /// The connection authenticated: it no longer counts against the pending share.
    pub fn authorised(&mut self) {
        if self.pending {
            self.pending = false;
            let mut c = self.admission.lock();
            c.pending = c.pending.saturating_sub(1);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.admission.lock();
        c.total = c.total.saturating_sub(1);
        if self.pending {
            c.pending = c.pending.saturating_sub(1);
        }
        if self.counted_per_uid
            && let Some(n) = c.per_uid.get_mut(&self.uid)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_uid.remove(&self.uid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, per_uid: usize, reserve: usize) -> Limits {
        Limits {
            max_connections: max,
            max_per_uid: per_uid,
            reserved_admin: reserve,
            ..Limits::default()
        }
    }

    #[test]
    fn config_defaults_and_zeroes() {
        let d = Limits::default();
        assert_eq!(d.max_connections, 1024);
        assert_eq!(d.max_per_uid, 64);
        assert_eq!(d.reserved_admin, 64);
        assert_eq!(d.auth_timeout, Duration::from_secs(5));
        assert_eq!(d.idle_timeout, Duration::from_secs(60));
        let z = Limits::from_config(&DaemonConfig {
            max_connections: Some(0),
            idle_timeout_secs: Some(0),
            max_connections_per_uid: Some(0),
            reserved_admin_connections: Some(0),
            auth_timeout_secs: Some(0),
        });
        assert_eq!(
            z,
            Limits {
                reserved_admin: 0,
                ..d
            }
        );
    }

    #[test]
    fn a_flooding_uid_stops_at_its_cap_and_others_still_get_in() {
        let a = Admission::default();
        let l = limits(20, 4, 2);
        let flood: Vec<_> = (0..4)
            .map(|_| a.take(Some(65534), Standing::Pending, &l).unwrap())
            .collect();
        assert_eq!(
            a.take(Some(65534), Standing::Pending, &l).unwrap_err(),
            Refusal::PerUid {
                uid: Some(65534),
                limit: 4
            }
        );
        // a granted uid and the admin are unaffected
        let tenant = a.take(Some(1001), Standing::Authorised, &l).unwrap();
        let admin = a.take(Some(0), Standing::Admin, &l).unwrap();
        assert_eq!(a.counts(), (6, 4));
        drop(flood);
        assert_eq!(a.counts(), (2, 0));
        drop((tenant, admin));
        assert_eq!(a.counts(), (0, 0));
        assert!(a.0.lock().unwrap().per_uid.is_empty());
    }

    #[test]
    fn many_ungranted_uids_take_at_most_half_the_slots() {
        let a = Admission::default();
        let l = limits(8, 2, 0);
        let mut held = Vec::new();
        let mut refused = 0;
        for uid in 2000..2010 {
            for _ in 0..2 {
                match a.take(Some(uid), Standing::Pending, &l) {
                    Ok(s) => held.push(s),
                    Err(Refusal::Pending { limit: 4 }) => refused += 1,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        assert_eq!((held.len(), refused), (4, 16));
        // the other half is there for granted uids
        for uid in [1001, 1002] {
            for _ in 0..2 {
                held.push(a.take(Some(uid), Standing::Authorised, &l).unwrap());
            }
        }
        assert!(matches!(
            a.take(Some(1003), Standing::Authorised, &l),
            Err(Refusal::Total { limit: 8 })
        ));
    }

    #[test]
    fn admins_use_the_reserve_and_nothing_beyond() {
        let a = Admission::default();
        let l = limits(3, 3, 2);
        let _others: Vec<_> = (0..3)
            .map(|i| a.take(Some(1000 + i), Standing::Authorised, &l).unwrap())
            .collect();
        assert!(matches!(
            a.take(Some(1009), Standing::Authorised, &l),
            Err(Refusal::Total { .. })
        ));
        let _a1 = a.take(Some(0), Standing::Admin, &l).unwrap();
        let _a2 = a.take(Some(0), Standing::Admin, &l).unwrap();
        let e = a.take(Some(0), Standing::Admin, &l).unwrap_err();
        assert!(e.to_string().contains("too many connections"), "{e}");
    }

    #[test]
    fn authenticating_leaves_the_pending_share() {
        let a = Admission::default();
        let l = limits(4, 4, 0);
        let mut s1 = a.take(Some(7), Standing::Pending, &l).unwrap();
        let _s2 = a.take(Some(7), Standing::Pending, &l).unwrap();
        assert!(a.take(Some(8), Standing::Pending, &l).is_err());
        s1.authorised();
        assert!(!s1.is_pending());
        let _s3 = a.take(Some(8), Standing::Pending, &l).unwrap();
        assert_eq!(a.counts(), (3, 2));
        drop(s1);
        assert_eq!(a.counts(), (2, 2));
    }
}
