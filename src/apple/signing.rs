//! Apple Music signing keys and developer tokens (`AppleMusic`'s key add / list /
//! activate / retire and the developer-token hand-out with its cache); the validation of
//! connections is in `validation`. Every operation checks its caller first.
//!
//! # The developer-token cache
//!
//! Two layers, so a token is reused both inside a daemon and across short-lived CLI
//! processes that open the vault file themselves:
//!
//! 1. **Sealed in the vault.** The active key's record carries its current token sealed
//!    (`AppleKeyRecord::cached_token`, bound to the key's record like the private key).
//!    It is written in the same transaction that sets `last_token_exp`, so the key list
//!    never under-reports how long a key's tokens live. `apple token` run twice from the
//!    command line hands out the same token, and a restarted daemon does not sign anew.
//! 2. **In memory** (`AppleState`), per tenant, tagged with the nonce of the sealed copy it
//!    came from. A hand-out opens one read transaction, finds the tenant's active key and
//!    compares nonces: no decryption, no signing. If the key changed, was re-sealed
//!    (`rekey`) or another process minted a newer token, the nonce differs and the sealed
//!    copy is opened again. So the memory layer can never hand out a token of a key that
//!    is no longer active, whoever changed the vault.
//!
//! A token is renewed when less than `renew_before_secs` of it remains, when the
//! configured lifetime or origins no longer match it, and at once after activation or
//! retirement (both drop the cached token: the next hand-out signs with the active key).
//! Signing happens inside a write transaction that first re-checks the cache, so
//! concurrent callers mint at most one token.
//!
//! A sealed cache that does not open (a record restored from another vault's backup) is
//! treated as a miss and replaced.

use super::AppleMusic;
use super::jwt::{self, Policy};
use super::{PROVIDER, key, state, user};
use crate::contract::{AppleKeyView, AppleTokenView};
use crate::contract::{Caller, Response};
use crate::error::{Error, Result};
use crate::names;
use crate::secret::Secret;
use crate::sync::LockExt;
use crate::vault::Tx;
use crate::vault::records::AppleKeyRecord;
use crate::vault::schema::names::APPLE_KEYS;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use zeroize::Zeroizing;

/// `AppleMusic`'s state: the in-memory token cache and the HTTP client.
#[derive(Default)]
pub struct AppleState {
    cache: Mutex<HashMap<String, Cached>>,
    http: OnceLock<reqwest::Client>,
}

impl std::fmt::Debug for AppleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppleState")
    }
}

#[derive(Clone)]
struct Cached {
    key_id: String,
    /// Nonce of the sealed copy in the vault this entry mirrors.
    nonce: Vec<u8>,
    token: CachedToken,
}

/// The plaintext of `AppleKeyRecord::cached_token`.
#[derive(Clone, Serialize, Deserialize)]
struct CachedToken {
    /// Always `KIND`: a sealed value of another kind never decodes as a token.
    kind: String,
    token: Secret,
    iat: i64,
    exp: i64,
    #[serde(default)]
    origin: Option<Vec<String>>,
}

const KIND: &str = "apple_developer_token";

impl CachedToken {
    /// Good to hand out with at least `min_left` seconds (and the renewal margin) left.
    fn usable(&self, now: i64, p: &Policy, min_left: u64) -> bool {
        self.kind == KIND
            && self.exp - now >= p.renew_before_secs.max(min_left) as i64
            && self.exp - self.iat <= p.lifetime_secs as i64
            // a clock set back by more than five minutes: sign a token it agrees with
            && self.iat <= now + 300
            && self.origin == p.origin
    }
}

impl AppleState {
    fn hit(&self, tenant: &str, key_id: &str, nonce: &[u8]) -> Option<CachedToken> {
        let cache = self.cache.lock_or_recover();
        cache
            .get(tenant)
            .filter(|c| c.key_id == key_id && c.nonce == nonce)
            .map(|c| c.token.clone())
    }

    fn store(&self, tenant: &str, key_id: &str, nonce: &[u8], token: &CachedToken) {
        self.cache.lock_or_recover().insert(
            tenant.to_owned(),
            Cached {
                key_id: key_id.to_owned(),
                nonce: nonce.to_vec(),
                token: token.clone(),
            },
        );
    }

    fn forget(&self, tenant: &str) {
        self.cache.lock_or_recover().remove(tenant);
    }

    pub(super) fn http(&self) -> Result<&reqwest::Client> {
        if let Some(c) = self.http.get() {
            return Ok(c);
        }
        let c = user::http_client()?;
        Ok(self.http.get_or_init(|| c))
    }
}

fn record_key(tenant: &str, key_id: &str) -> String {
    format!("{tenant}/{key_id}")
}

fn target(tenant: &str) -> String {
    format!("{tenant}/{PROVIDER}")
}

fn decode_cached(plain: &[u8]) -> Option<CachedToken> {
    rmp_serde::from_slice::<CachedToken>(plain)
        .ok()
        .filter(|c| c.kind == KIND)
}

fn view(tenant: &str, r: &AppleKeyRecord, now: i64) -> AppleKeyView {
    let state = if r.state == state::RETIRING && r.last_token_exp.is_none_or(|e| e <= now) {
        state::RETIRED.to_owned()
    } else {
        r.state.clone()
    };
    AppleKeyView {
        tenant: tenant.to_owned(),
        key_id: r.key_id.clone(),
        team_id: r.team_id.clone(),
        state,
        added_at: r.added_at,
        activated_at: r.activated_at,
        retired_at: r.retired_at,
        last_token_exp: r.last_token_exp,
    }
}

fn token_view(tenant: &str, r: &AppleKeyRecord, c: CachedToken) -> AppleTokenView {
    AppleTokenView {
        tenant: tenant.to_owned(),
        key_id: r.key_id.clone(),
        team_id: r.team_id.clone(),
        token: c.token,
        issued_at: c.iat,
        expires_at: c.exp,
        origin: c.origin,
    }
}

fn not_found_key(tenant: &str, key_id: &str) -> Error {
    Error::not_found(
        "Apple Music signing key",
        format!("{tenant}/{key_id} (see `tokenvault apple key list {tenant}`)"),
    )
}

fn fmt_time(t: i64) -> String {
    crate::cli::output::fmt_time(t)
}

macro_rules! open_cache {
    ($txn:expr, $tenant:expr, $rec:expr) => {
        $rec.cached_token.as_ref().and_then(|s| {
            $txn.open_sealed(APPLE_KEYS, &record_key($tenant, &$rec.key_id), s)
                .ok()
                .and_then(|p| decode_cached(&p))
                .map(|c| (s.nonce.clone(), c))
        })
    };
}

impl AppleMusic {
    pub(super) fn policy(&self) -> Result<Policy> {
        Policy::from_config(&self.ctx.config().apple_music)
    }

    /// `apple key add`: parses and checks the key before anything is written; the first
    /// key of a tenant becomes active, later ones wait for `apple key activate`.
    pub(crate) fn add_key(
        &self,
        caller: &Caller,
        tenant: &str,
        team_id: &str,
        key_id: &str,
        p8: &Secret,
    ) -> Result<Response> {
        caller.require_admin()?;
        names::validate_tenant(tenant)?;
        key::validate_id("Team ID", team_id)?;
        key::validate_id("Key ID", key_id)?;
        let parsed = key::parse_p8(p8.expose())?;
        let now = self.ctx.now();
        let tx = self.ctx.vault().write()?;
        self.ctx.require_tenant_exists(&tx, tenant)?;
        let keys = tx.apple_keys(tenant)?;
        if keys.iter().any(|k| k.key_id == key_id) {
            return Err(Error::AlreadyExists {
                what: "Apple Music signing key",
                name: record_key(tenant, key_id),
            });
        }
        let first = !keys.iter().any(|k| k.state == state::ACTIVE);
        let rec = AppleKeyRecord {
            team_id: team_id.to_owned(),
            key_id: key_id.to_owned(),
            private_key: tx.seal(APPLE_KEYS, &record_key(tenant, key_id), &[]),
            state: if first {
                state::ACTIVE
            } else {
                state::INACTIVE
            }
            .to_owned(),
            added_at: now,
            activated_at: first.then_some(now),
            retired_at: None,
            last_token_exp: None,
            cached_token: None,
        };
        tx.put_apple_key(tenant, rec, Some(&parsed.der))?;
        self.ctx.audit_in(
            &tx,
            caller,
            "apple_key_add",
            Some(tenant),
            &record_key(tenant, key_id),
            if first { "ok; active" } else { "ok; inactive" },
        )?;
        tx.commit()?;
        Ok(Response::Done {
            message: if first {
                format!("Apple Music key {key_id} added to tenant {tenant} and active")
            } else {
                format!(
                    "Apple Music key {key_id} added to tenant {tenant}; run `tokenvault apple key activate {tenant} {key_id}` to sign with it"
                )
            },
        })
    }

    /// `apple key list`: metadata only.
    pub(crate) fn list_keys(&self, caller: &Caller, tenant: &str) -> Result<Response> {
        names::validate_tenant(tenant)?;
        caller.require_tenant(tenant)?;
        let now = self.ctx.now();
        let rx = self.ctx.vault().read()?;
        if rx.tenant(tenant)?.is_none() {
            return Err(Error::not_found("tenant", tenant));
        }
        let keys = rx
            .apple_keys(tenant)?
            .iter()
            .map(|r| view(tenant, r, now))
            .collect();
        Ok(Response::AppleKeys { keys })
    }

    /// `apple key activate`: `key_id` signs from now on; the previous active key becomes
    /// `retiring` until its last token expires (or `retired` if it never signed one still
    /// valid). Cached tokens are dropped, so the next hand-out is signed with `key_id`.
    pub(crate) fn activate_key(
        &self,
        caller: &Caller,
        tenant: &str,
        key_id: &str,
    ) -> Result<Response> {
        caller.require_admin()?;
        names::validate_tenant(tenant)?;
        key::validate_id("Key ID", key_id)?;
        let now = self.ctx.now();
        let tx = self.ctx.vault().write()?;
        self.ctx.require_tenant_exists(&tx, tenant)?;
        let keys = tx.apple_keys(tenant)?;
        let Some(mut new) = keys.iter().find(|k| k.key_id == key_id).cloned() else {
            return Err(not_found_key(tenant, key_id));
        };
        if new.state == state::ACTIVE {
            return Ok(Response::Done {
                message: format!("Apple Music key {key_id} is already active for {tenant}"),
            });
        }
        let mut notes = Vec::new();
        for old in keys.iter().filter(|k| k.state == state::ACTIVE) {
            let mut old = old.clone();
            old.cached_token = None;
            match old.last_token_exp.filter(|e| *e > now) {
                Some(exp) => {
                    old.state = state::RETIRING.to_owned();
                    notes.push(format!(
                        "{} is retiring until {} (its last token's expiry)",
                        old.key_id,
                        fmt_time(exp)
                    ));
                }
                None => {
                    old.state = state::RETIRED.to_owned();
                    old.retired_at = Some(now);
                    notes.push(format!(
                        "{} is retired (no token of it is still valid)",
                        old.key_id
                    ));
                }
            }
            tx.put_apple_key(tenant, old, None)?;
        }
        new.state = state::ACTIVE.to_owned();
        new.activated_at = Some(now);
        new.retired_at = None;
        new.cached_token = None;
        tx.put_apple_key(tenant, new, None)?;
        let outcome = if notes.is_empty() {
            "ok".to_owned()
        } else {
            format!("ok; {}", notes.join("; "))
        };
        self.ctx.audit_in(
            &tx,
            caller,
            "apple_key_activate",
            Some(tenant),
            &record_key(tenant, key_id),
            &outcome,
        )?;
        tx.commit()?;
        self.state.forget(tenant);
        let mut message = format!(
            "Apple Music key {key_id} is now active for {tenant}; the next developer token is signed with it"
        );
        for n in notes {
            message.push_str("; ");
            message.push_str(&n);
        }
        Ok(Response::Done { message })
    }

    /// `apple key retire`: takes a key out of use. The active key is refused unless
    /// `force` (which leaves the tenant without developer tokens until another key is
    /// activated).
    pub(crate) fn retire_key(
        &self,
        caller: &Caller,
        tenant: &str,
        key_id: &str,
        force: bool,
    ) -> Result<Response> {
        caller.require_admin()?;
        names::validate_tenant(tenant)?;
        key::validate_id("Key ID", key_id)?;
        let now = self.ctx.now();
        let tx = self.ctx.vault().write()?;
        self.ctx.require_tenant_exists(&tx, tenant)?;
        let Some(mut rec) = tx
            .apple_keys(tenant)?
            .into_iter()
            .find(|k| k.key_id == key_id)
        else {
            return Err(not_found_key(tenant, key_id));
        };
        if rec.state == state::RETIRED {
            return Ok(Response::Done {
                message: format!("Apple Music key {key_id} of {tenant} is already retired"),
            });
        }
        if rec.state == state::ACTIVE && !force {
            return Err(Error::invalid(
                "apple key retire",
                format!(
                    "{key_id} is the active key of {tenant}; add and activate another key first, or pass --force to leave {tenant} without developer tokens"
                ),
            ));
        }
        let was = rec.state.clone();
        rec.state = state::RETIRED.to_owned();
        rec.retired_at = Some(now);
        rec.cached_token = None;
        tx.put_apple_key(tenant, rec, None)?;
        self.ctx.audit_in(
            &tx,
            caller,
            "apple_key_retire",
            Some(tenant),
            &record_key(tenant, key_id),
            &format!("ok; was {was}"),
        )?;
        tx.commit()?;
        self.state.forget(tenant);
        Ok(Response::Done {
            message: format!(
                "Apple Music key {key_id} of {tenant} retired; no token signed by it is handed out any more"
            ),
        })
    }

    /// `apple token TENANT`: the tenant's developer token (cached, renewed as needed).
    /// Each hand-out is audited (queued, off the disk-sync path).
    pub fn developer_token_for(&self, caller: &Caller, tenant: &str) -> Result<AppleTokenView> {
        names::validate_tenant(tenant)?;
        caller.require_tenant(tenant)?;
        self.handed_out(caller, tenant, 0)
    }

    /// `get TENANT/apple-music [--min-ttl N]`: the developer token in the shape of any
    /// `get`; a cached token with fewer than N seconds left is replaced.
    pub(crate) fn hand_out(&self, caller: &Caller, tenant: &str, min_ttl: u64) -> Result<Response> {
        names::validate_tenant(tenant)?;
        caller.require_tenant(tenant)?;
        let t = self.handed_out(caller, tenant, min_ttl)?;
        Ok(Response::Token {
            connection: target(tenant),
            token: t.token,
            expires_at: Some(t.expires_at),
            token_type: Some("Bearer".into()),
        })
    }

    fn handed_out(&self, caller: &Caller, tenant: &str, min_ttl: u64) -> Result<AppleTokenView> {
        let r = self.developer_token(tenant, min_ttl);
        self.ctx.queue_audit(
            caller,
            "apple_token",
            tenant,
            &target(tenant),
            if r.is_ok() { "ok" } else { "refused" },
        );
        r
    }

    /// The tenant's developer token with at least `min_ttl` seconds left (and never less
    /// than the renewal margin), from the cache or newly signed. Not audited.
    pub(super) fn developer_token(&self, tenant: &str, min_ttl: u64) -> Result<AppleTokenView> {
        let policy = self.policy()?;
        if min_ttl >= policy.lifetime_secs {
            return Err(Error::invalid(
                "min-ttl",
                format!(
                    "{min_ttl} s: a developer token lives {} s ([apple_music] token_lifetime_secs); ask for less",
                    policy.lifetime_secs
                ),
            ));
        }
        let now = self.ctx.now();
        {
            let rx = self.ctx.vault().read()?;
            let Some(rec) = rx
                .apple_keys(tenant)?
                .into_iter()
                .find(|k| k.state == state::ACTIVE)
            else {
                return Err(no_active_key(tenant, rx.tenant(tenant)?.is_some()));
            };
            if let Some(sealed) = &rec.cached_token
                && let Some(c) = self.state.hit(tenant, &rec.key_id, &sealed.nonce)
                && c.usable(now, &policy, min_ttl)
            {
                return Ok(token_view(tenant, &rec, c));
            }
            if let Some((nonce, c)) = open_cache!(rx, tenant, rec)
                && c.usable(now, &policy, min_ttl)
            {
                self.state.store(tenant, &rec.key_id, &nonce, &c);
                return Ok(token_view(tenant, &rec, c));
            }
        }
        // Sign a new one. The write transaction serialises minters; re-check first.
        let tx = self.ctx.vault().write()?;
        let Some(mut rec) = tx
            .apple_keys(tenant)?
            .into_iter()
            .find(|k| k.state == state::ACTIVE)
        else {
            return Err(no_active_key(tenant, tx.tenant(tenant)?.is_some()));
        };
        if let Some((nonce, c)) = open_cache!(tx, tenant, rec)
            && c.usable(now, &policy, min_ttl)
        {
            self.state.store(tenant, &rec.key_id, &nonce, &c);
            return Ok(token_view(tenant, &rec, c));
        }
        let c = mint(&tx, tenant, &mut rec, &policy, now)?;
        let nonce = rec
            .cached_token
            .as_ref()
            .map(|s| s.nonce.clone())
            .unwrap_or_default();
        tx.put_apple_key(tenant, rec.clone(), None)?;
        tx.commit()?;
        tracing::info!(key_id = %rec.key_id, exp = c.exp, "signed a new Apple Music developer token");
        self.state.store(tenant, &rec.key_id, &nonce, &c);
        Ok(token_view(tenant, &rec, c))
    }
}

fn no_active_key(tenant: &str, tenant_exists: bool) -> Error {
    if !tenant_exists {
        return Error::not_found("tenant", tenant);
    }
    Error::not_found(
        "active Apple Music signing key",
        format!(
            "tenant {tenant} (add one with `tokenvault apple key add {tenant} --team-id TEAMID --key-id KEYID --p8 AuthKey_KEYID.p8`, or activate one)"
        ),
    )
}

/// Signs a new token with `rec`'s key and stores it sealed in `rec` (not yet written).
fn mint(
    tx: &Tx,
    tenant: &str,
    rec: &mut AppleKeyRecord,
    p: &Policy,
    now: i64,
) -> Result<CachedToken> {
    let der = tx.apple_private_key(tenant, rec)?;
    let signing = key::from_der(&der)?;
    let exp = now + p.lifetime_secs as i64;
    let token = jwt::sign_developer_token(
        &signing,
        &rec.key_id,
        &rec.team_id,
        now,
        exp,
        p.origin.as_deref(),
    );
    let c = CachedToken {
        kind: KIND.to_owned(),
        token,
        iat: now,
        exp,
        origin: p.origin.clone(),
    };
    let plain = Zeroizing::new(
        rmp_serde::to_vec_named(&c)
            .map_err(|_| Error::Internal("cannot encode the developer token cache".into()))?,
    );
    rec.cached_token = Some(tx.seal(APPLE_KEYS, &record_key(tenant, &rec.key_id), &plain));
    rec.last_token_exp = Some(rec.last_token_exp.map_or(exp, |e| e.max(exp)));
    Ok(c)
}
