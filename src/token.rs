//! Parsing OAuth token responses (RFC 6749 §5.1) as given to `put` or returned by a token
//! endpoint, into sealed secrets and clear metadata.
//!
//! Hostile input is expected: wrong types, absurd lifetimes, huge documents. Every problem
//! is an `Error::Invalid` that names the field, never its value.

use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::vault::records::TokenSecrets;
use std::collections::BTreeMap;

/// Largest lifetime accepted from a response: ten years. Anything more is a unit mistake.
const MAX_LIFETIME: i64 = 10 * 366 * 24 * 3600;

/// A parsed token response.
#[derive(Debug, Clone)]
pub struct TokenResponse {
    pub secrets: TokenSecrets,
    /// Absolute expiry of the access token, if the response said.
    pub expires_at: Option<i64>,
    pub refresh_expires_at: Option<i64>,
    pub scope: Option<String>,
    pub token_type: Option<String>,
}

fn as_lifetime(field: &'static str, v: &serde_json::Value) -> Result<i64> {
    let n = match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .ok_or_else(|| {
        Error::invalid(
            "token response",
            format!("{field} must be a number of seconds"),
        )
    })?;
    if !n.is_finite() || n < 0.0 || n > MAX_LIFETIME as f64 {
        return Err(Error::invalid(
            "token response",
            format!("{field} must be between 0 and {MAX_LIFETIME} seconds"),
        ));
    }
    Ok(n as i64)
}

fn as_time(field: &'static str, v: &serde_json::Value, now: i64) -> Result<i64> {
    let t = match v {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => chrono::DateTime::parse_from_rfc3339(s.trim())
            .ok()
            .map(|d| d.timestamp())
            .or_else(|| s.trim().parse::<i64>().ok()),
        _ => None,
    }
    .ok_or_else(|| {
        Error::invalid(
            "token response",
            format!("{field} must be RFC 3339 or Unix seconds"),
        )
    })?;
    if t < 0 || t > now + MAX_LIFETIME {
        return Err(Error::invalid(
            "token response",
            format!("{field} is out of range"),
        ));
    }
    Ok(t)
}

fn opt_string(
    obj: &serde_json::Map<String, serde_json::Value>,
    field: &'static str,
) -> Result<Option<String>> {
    match obj.get(field) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if s.is_empty() => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Error::invalid(
            "token response",
            format!("{field} must be a string"),
        )),
    }
}

impl TokenResponse {
    /// Parses a JSON token response received at `now`.
    pub fn parse(json: &[u8], now: i64) -> Result<Self> {
        if json.len() > 1024 * 1024 {
            return Err(Error::invalid("token response", "larger than 1 MiB"));
        }
        let v: serde_json::Value = serde_json::from_slice(json).map_err(|e| {
            Error::invalid(
                "token response",
                format!("not JSON (line {}, column {})", e.line(), e.column()),
            )
        })?;
        Self::from_value(v, now)
    }

    pub fn from_value(v: serde_json::Value, now: i64) -> Result<Self> {
        let serde_json::Value::Object(mut obj) = v else {
            return Err(Error::invalid("token response", "must be a JSON object"));
        };
        let access_token = match obj.remove("access_token") {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Secret::from(s),
            Some(_) => {
                return Err(Error::invalid(
                    "token response",
                    "access_token must be a non-empty string",
                ));
            }
            None => return Err(Error::invalid("token response", "access_token is missing")),
        };
        let take_secret = |obj: &mut serde_json::Map<String, serde_json::Value>,
                           field: &'static str|
         -> Result<Option<Secret>> {
            match obj.remove(field) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) if s.is_empty() => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(Secret::from(s))),
                Some(_) => Err(Error::invalid(
                    "token response",
                    format!("{field} must be a string"),
                )),
            }
        };
        let refresh_token = take_secret(&mut obj, "refresh_token")?;
        let id_token = take_secret(&mut obj, "id_token")?;
        let expires_at = match (obj.remove("expires_at"), obj.remove("expires_in")) {
            (Some(at), _) if !at.is_null() => Some(as_time("expires_at", &at, now)?),
            (_, Some(inn)) if !inn.is_null() => Some(now + as_lifetime("expires_in", &inn)?),
            _ => None,
        };
        let refresh_expires_at = match obj.remove("refresh_token_expires_in") {
            Some(v) if !v.is_null() => Some(now + as_lifetime("refresh_token_expires_in", &v)?),
            _ => None,
        };
        let scope = opt_string(&obj, "scope")?;
        obj.remove("scope");
        let token_type = opt_string(&obj, "token_type")?;
        obj.remove("token_type");
        let extra: BTreeMap<String, serde_json::Value> = obj.into_iter().collect();
        Ok(TokenResponse {
            secrets: TokenSecrets {
                access_token,
                refresh_token,
                id_token,
                extra,
            },
            expires_at,
            refresh_expires_at,
            scope,
            token_type,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_standard_fields() {
        let r = TokenResponse::parse(
            br#"{"access_token":"A","refresh_token":"R","expires_in":3600,"scope":"a b","token_type":"Bearer","x":1}"#,
            1000,
        )
        .unwrap();
        assert_eq!(r.secrets.access_token.expose(), "A");
        assert_eq!(r.secrets.refresh_token.unwrap().expose(), "R");
        assert_eq!(r.expires_at, Some(4600));
        assert_eq!(r.scope.as_deref(), Some("a b"));
        assert_eq!(r.secrets.extra.len(), 1);
    }

    #[test]
    fn expires_at_forms() {
        let r = TokenResponse::parse(
            br#"{"access_token":"A","expires_at":"2030-01-01T00:00:00Z"}"#,
            1_800_000_000,
        )
        .unwrap();
        assert_eq!(r.expires_at, Some(1893456000));
        let r = TokenResponse::parse(
            br#"{"access_token":"A","expires_at":1893456000}"#,
            1_800_000_000,
        )
        .unwrap();
        assert_eq!(r.expires_at, Some(1893456000));
        let r = TokenResponse::parse(br#"{"access_token":"A","expires_in":"60"}"#, 10).unwrap();
        assert_eq!(r.expires_at, Some(70));
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            &b"[]"[..],
            b"not json",
            br#"{"refresh_token":"R"}"#,
            br#"{"access_token":""}"#,
            br#"{"access_token":5}"#,
            br#"{"access_token":"A","expires_in":-1}"#,
            br#"{"access_token":"A","expires_in":1e30}"#,
            br#"{"access_token":"A","expires_at":"tomorrow"}"#,
            br#"{"access_token":"A","refresh_token":{}}"#,
        ] {
            let e = TokenResponse::parse(bad, 0).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{}", String::from_utf8_lossy(bad));
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = TokenResponse::parse(&bytes, 1_700_000_000);
        }

        #[test]
        fn lifetimes_become_absolute_expiry(secs in 0i64..315_000_000, now in 0i64..2_000_000_000) {
            let r = TokenResponse::parse(format!(r#"{{"access_token":"A","expires_in":{secs}}}"#).as_bytes(), now).unwrap();
            proptest::prop_assert_eq!(r.expires_at, Some(now + secs));
        }
    }
}
