//! Developer tokens: compact JWS with header `{"alg":"ES256","kid":KEY_ID}` and claims
//! `iss` (Team ID), `iat`, `exp` and, when configured, `origin`. The signature is the raw
//! 64-byte `r || s` of ECDSA P-256 over SHA-256 (RFC 7518 §3.4), not DER.
//!
//! Also the token policy: lifetime, renewal margin and origins from `[apple_music]`.

use crate::config::AppleMusicConfig;
use crate::error::{Error, Result};
use crate::secret::Secret;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use p256::ecdsa::{Signature, SigningKey, signature::Signer};
use serde::Serialize;

/// Apple's limit on `exp − iat`: 15 777 000 s (six months).
pub const MAX_LIFETIME_SECS: u64 = 15_777_000;
/// Default lifetime: 180 days.
pub const DEFAULT_LIFETIME_SECS: u64 = 180 * 86_400;
/// Default renewal margin: a cached token with less than a day left is replaced.
pub const DEFAULT_RENEW_BEFORE_SECS: u64 = 86_400;
/// Default interval between validations of a Music-User-Token.
pub const DEFAULT_VALIDATE_INTERVAL_SECS: u64 = 3_600;
/// Default Apple Music API.
pub const DEFAULT_API_BASE: &str = "https://api.music.apple.com";

/// The `[apple_music]` settings, checked and with defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub lifetime_secs: u64,
    pub renew_before_secs: u64,
    pub validate_interval_secs: u64,
    pub origin: Option<Vec<String>>,
    pub api_base: String,
}

impl Policy {
    /// Checks `c`: a lifetime of 1..=15 777 000 s, a renewal margin shorter than the
    /// lifetime, non-empty origins, an https (or loopback http) API base.
    pub fn from_config(c: &AppleMusicConfig) -> Result<Policy> {
        let lifetime_secs = c.token_lifetime_secs.unwrap_or(DEFAULT_LIFETIME_SECS);
        if lifetime_secs == 0 || lifetime_secs > MAX_LIFETIME_SECS {
            return Err(Error::Config(format!(
                "[apple_music] token_lifetime_secs = {lifetime_secs}: must be 1 to {MAX_LIFETIME_SECS} (Apple's limit); fix the config file"
            )));
        }
        let renew_before_secs = c.renew_before_secs.unwrap_or(DEFAULT_RENEW_BEFORE_SECS);
        if renew_before_secs >= lifetime_secs {
            return Err(Error::Config(format!(
                "[apple_music] renew_before_secs = {renew_before_secs} must be shorter than the token lifetime ({lifetime_secs} s), or every request would sign a new token; fix the config file"
            )));
        }
        let validate_interval_secs = c
            .validate_interval_secs
            .unwrap_or(DEFAULT_VALIDATE_INTERVAL_SECS);
        if validate_interval_secs == 0 {
            return Err(Error::Config(
                "[apple_music] validate_interval_secs must be at least 1; fix the config file"
                    .into(),
            ));
        }
        let bad_origin =
            |s: &String| s.is_empty() || s.len() > 2048 || s.chars().any(|ch| ch.is_control());
        if let Some(o) = &c.origin
            && (o.is_empty() || o.iter().any(bad_origin))
        {
            return Err(Error::Config(
                "[apple_music] origin must be a non-empty list of origins such as \"https://example.com\"; fix the config file".into(),
            ));
        }
        let api_base = c
            .api_base
            .clone()
            .unwrap_or_else(|| DEFAULT_API_BASE.to_owned());
        crate::names::validate_url(&api_base).map_err(|_| {
            Error::Config(format!(
                "[apple_music] api_base = {api_base:?} must be an https:// URL (http:// only on loopback); fix the config file"
            ))
        })?;
        Ok(Policy {
            lifetime_secs,
            renew_before_secs,
            validate_interval_secs,
            origin: c.origin.clone(),
            api_base: api_base.trim_end_matches('/').to_owned(),
        })
    }
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    kid: &'a str,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: i64,
    exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<&'a [String]>,
}

/// Signs a developer token. Deterministic (RFC 6979 nonces): the same inputs give the
/// same token.
pub fn sign_developer_token(
    key: &SigningKey,
    key_id: &str,
    team_id: &str,
    iat: i64,
    exp: i64,
    origin: Option<&[String]>,
) -> Secret {
    // Serialising these plain structs cannot fail.
    let header = serde_json::to_vec(&Header {
        alg: "ES256",
        kid: key_id,
    })
    .unwrap_or_default();
    let claims = serde_json::to_vec(&Claims {
        iss: team_id,
        iat,
        exp,
        origin,
    })
    .unwrap_or_default();
    let mut jws = String::with_capacity(400);
    jws.push_str(&B64.encode(header));
    jws.push('.');
    jws.push_str(&B64.encode(claims));
    let sig: Signature = key.sign(jws.as_bytes());
    jws.push('.');
    jws.push_str(&B64.encode(sig.to_bytes()));
    Secret::new(jws)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use p256::ecdsa::{VerifyingKey, signature::Verifier};

    #[test]
    fn shape_and_signature() {
        let key = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let t = sign_developer_token(&key, "ABCDE12345", "TEAM123456", 100, 200, None);
        let parts: Vec<&str> = t.expose().split('.').collect();
        assert_eq!(parts.len(), 3);
        let h: serde_json::Value = serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(h, serde_json::json!({"alg":"ES256","kid":"ABCDE12345"}));
        let c: serde_json::Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(
            c,
            serde_json::json!({"iss":"TEAM123456","iat":100,"exp":200})
        );
        let sig = B64.decode(parts[2]).unwrap();
        assert_eq!(sig.len(), 64);
        let sig = Signature::from_slice(&sig).unwrap();
        let msg = format!("{}.{}", parts[0], parts[1]);
        VerifyingKey::from(&key)
            .verify(msg.as_bytes(), &sig)
            .unwrap();
    }

    #[test]
    fn policy_limits() {
        let mut c = AppleMusicConfig::default();
        let p = Policy::from_config(&c).unwrap();
        assert_eq!(p.lifetime_secs, 15_552_000);
        assert_eq!(p.renew_before_secs, 86_400);
        assert_eq!(p.api_base, "https://api.music.apple.com");
        c.token_lifetime_secs = Some(MAX_LIFETIME_SECS);
        assert!(Policy::from_config(&c).is_ok());
        c.token_lifetime_secs = Some(MAX_LIFETIME_SECS + 1);
        assert!(Policy::from_config(&c).is_err());
        c.token_lifetime_secs = Some(3600);
        c.renew_before_secs = Some(3600);
        assert!(Policy::from_config(&c).is_err());
        c.renew_before_secs = Some(60);
        c.api_base = Some("http://example.com".into());
        assert!(Policy::from_config(&c).is_err());
        c.api_base = Some("http://127.0.0.1:9/".into());
        assert_eq!(
            Policy::from_config(&c).unwrap().api_base,
            "http://127.0.0.1:9"
        );
        c.origin = Some(vec![]);
        assert!(Policy::from_config(&c).is_err());
    }
}
