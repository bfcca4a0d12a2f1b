//! `Secret`: a string that never prints. Wraps `secrecy::SecretString` (zeroized on drop),
//! with `Debug`/`Display` redacted and a deliberate, greppable `expose()`.
//!
//! It serialises its plain value: that is how it travels into a sealed record or over the
//! socket to the caller that asked for it. Nothing else may serialise one into a log.
//!
//! [`read_secret_file`] reads one from a file (passphrases, client secrets, tenant keys,
//! webhook keys): here, below every front end and subsystem that needs it.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(SecretString::from(s.into()))
    }

    /// The plain value. Every call site is a place a secret leaves its wrapper: keep them few.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.expose()
            .as_bytes()
            .ct_eq(other.expose().as_bytes())
            .into()
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.expose())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = zeroize::Zeroizing::new(String::deserialize(d)?);
        Ok(Secret::new(s.as_str()))
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(SecretString::from(s))
    }
}

/// Reads a secret from a file, dropping one trailing newline. Warns when the file is
/// readable by others.
pub fn read_secret_file(path: &std::path::Path, what: &str) -> crate::error::Result<Secret> {
    use crate::error::Error;
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::io(format!("cannot read {what} file {}", path.display()), e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            file = %path.display(),
            "the {what} file is readable by group or others; chmod 600 it"
        );
    }
    if meta.len() > 64 * 1024 {
        return Err(Error::invalid(
            "secret file",
            format!(
                "{} is larger than 64 KiB; is it the right file?",
                path.display()
            ),
        ));
    }
    let bytes = zeroize::Zeroizing::new(
        std::fs::read(path)
            .map_err(|e| Error::io(format!("cannot read {what} file {}", path.display()), e))?,
    );
    let s = std::str::from_utf8(&bytes).map_err(|_| {
        Error::invalid(
            "secret file",
            format!("{} is not UTF-8 text", path.display()),
        )
    })?;
    let s = s.strip_suffix('\n').unwrap_or(s);
    let s = s.strip_suffix('\r').unwrap_or(s);
    Ok(Secret::new(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = Secret::new("hunter2-very-secret");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2-very-secret");
    }
}
