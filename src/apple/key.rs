//! Reading Apple Music signing keys: a `.p8` file is a PKCS#8 PEM document holding an EC
//! private key on P-256, which is the only kind Apple issues for MusicKit. Everything
//! else is refused here with a message saying what the file is and what to do, before
//! anything reaches the vault.
//!
//! Must not: keep key material around longer than the caller needs it; the DER returned
//! is zeroized on drop.

use crate::error::{Error, Result};
use p256::ecdsa::SigningKey;
use p256::pkcs8::der::{Decode, pem};
use p256::pkcs8::{DecodePrivateKey, ObjectIdentifier, PrivateKeyInfo};
use zeroize::Zeroizing;

const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const PRIME256V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// The largest `.p8` accepted; Apple's are about 250 bytes.
pub const MAX_P8_BYTES: usize = 16 * 1024;

fn bad_key(reason: impl Into<String>) -> Error {
    Error::invalid("Apple Music signing key", reason)
}

/// Team IDs and Key IDs are 10 characters of `A-Z0-9` (as shown in Apple's developer
/// account; the Key ID is also in the file name `AuthKey_KEYID.p8`).
pub fn validate_id(what: &'static str, id: &str) -> Result<()> {
    if id.len() == 10
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        Ok(())
    } else {
        Err(Error::invalid(
            what,
            "must be 10 characters A-Z or 0-9, as shown in your Apple developer account",
        ))
    }
}

/// A parsed signing key: its PKCS#8 DER (to be sealed) and the key itself.
pub struct ParsedKey {
    pub der: Zeroizing<Vec<u8>>,
    pub signing: SigningKey,
}

impl std::fmt::Debug for ParsedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ParsedKey([redacted])")
    }
}

/// Parses the text of a `.p8` file. Refuses, each with its own message: text that is not
/// PEM, SEC1 (`EC PRIVATE KEY`), encrypted PKCS#8, RSA / Ed25519 / other algorithms, EC
/// keys on curves other than P-256, and malformed key data.
pub fn parse_p8(pem_text: &str) -> Result<ParsedKey> {
    if pem_text.len() > MAX_P8_BYTES {
        return Err(bad_key(format!(
            "the file is larger than {} KiB; an Apple .p8 key is about 250 bytes",
            MAX_P8_BYTES / 1024
        )));
    }
    let (label, der) = pem::decode_vec(pem_text.trim().as_bytes()).map_err(|_| {
        bad_key(
            "the file is not a PEM document (expected \"-----BEGIN PRIVATE KEY-----\"); use the AuthKey_KEYID.p8 file downloaded from Apple",
        )
    })?;
    let der = Zeroizing::new(der);
    match label {
        "PRIVATE KEY" => {}
        "EC PRIVATE KEY" => {
            return Err(bad_key(
                "this is a SEC1 \"EC PRIVATE KEY\" file, not PKCS#8; convert it with `openssl pkcs8 -topk8 -nocrypt -in KEY.pem -out KEY.p8`",
            ));
        }
        "RSA PRIVATE KEY" => {
            return Err(bad_key(
                "this is an RSA key; Apple Music developer tokens need the EC P-256 key (.p8) from your Apple developer account",
            ));
        }
        "ENCRYPTED PRIVATE KEY" => {
            return Err(bad_key(
                "this PKCS#8 key is encrypted; decrypt it with `openssl pkcs8 -in KEY.p8 -out PLAIN.p8` (it is sealed in the vault once added)",
            ));
        }
        other => {
            return Err(bad_key(format!(
                "the PEM document is a {other:?}, not a \"PRIVATE KEY\"; use the AuthKey_KEYID.p8 file downloaded from Apple"
            )));
        }
    }
    let info = PrivateKeyInfo::from_der(&der)
        .map_err(|_| bad_key("the PKCS#8 structure is malformed; is the file complete?"))?;
    let alg = info.algorithm.oid;
    if alg == RSA_ENCRYPTION || alg == RSASSA_PSS {
        return Err(bad_key(
            "this is an RSA key; Apple Music developer tokens need the EC P-256 key (.p8) from your Apple developer account",
        ));
    }
    if alg == ED25519 {
        return Err(bad_key(
            "this is an Ed25519 key; Apple Music developer tokens need an EC P-256 key",
        ));
    }
    if alg != ID_EC_PUBLIC_KEY {
        return Err(bad_key(format!(
            "the key algorithm {alg} is not EC; Apple Music developer tokens need an EC P-256 key"
        )));
    }
    let curve = info.algorithm.parameters_oid().ok();
    if curve != Some(PRIME256V1) {
        let name = match curve.map(|c| c.to_string()).as_deref() {
            Some("1.3.132.0.34") => "P-384 (secp384r1)".to_owned(),
            Some("1.3.132.0.35") => "P-521 (secp521r1)".to_owned(),
            Some("1.3.132.0.10") => "secp256k1".to_owned(),
            Some(other) => format!("the curve {other}"),
            None => "an unnamed curve".to_owned(),
        };
        return Err(bad_key(format!(
            "this EC key is on {name}; Apple Music developer tokens (ES256) need P-256 (prime256v1)"
        )));
    }
    let signing = SigningKey::from_pkcs8_der(&der)
        .map_err(|_| bad_key("the P-256 key data is malformed (not a valid private scalar)"))?;
    Ok(ParsedKey { der, signing })
}

/// Reopens a key that `parse_p8` accepted earlier (from its sealed DER).
pub fn from_der(der: &[u8]) -> Result<SigningKey> {
    SigningKey::from_pkcs8_der(der).map_err(|_| {
        Error::Internal("a stored Apple signing key no longer parses; add the key again".into())
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["ABCDE12345", "0000000000", "ZZZZZZZZZZ"] {
            assert!(validate_id("Team ID", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "ABCDE1234",
            "ABCDE123456",
            "abcde12345",
            "ABCDE-1234",
            "ABCDÉ12345",
        ] {
            assert!(validate_id("Key ID", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn not_pem() {
        let e = parse_p8("hello").unwrap_err().to_string();
        assert!(e.contains("not a PEM document"), "{e}");
    }
}
