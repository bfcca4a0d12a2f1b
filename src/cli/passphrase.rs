//! Where passphrases come from: `--passphrase-file`, `TOKENVAULT_PASSPHRASE` (the least
//! safe: environments leak into `/proc` and crash reports), or a no-echo terminal prompt.

use crate::error::{Error, Result};
use crate::secret::Secret;
use std::io::IsTerminal;
use std::path::Path;

/// Reads a secret from a file, dropping one trailing newline. Warns when the file is
/// readable by others.
pub fn read_secret_file(path: &Path, what: &str) -> Result<Secret> {
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

/// The vault passphrase, from the first source that has one.
pub fn passphrase(file: Option<&Path>, confirm: bool) -> Result<Secret> {
    if let Some(f) = file {
        return read_secret_file(f, "passphrase");
    }
    if let Ok(p) = std::env::var("TOKENVAULT_PASSPHRASE") {
        let p = zeroize::Zeroizing::new(p);
        return Ok(Secret::new(p.as_str()));
    }
    prompt("Vault passphrase: ", confirm)
}

/// Prompts on the terminal without echo; `confirm` asks twice.
pub fn prompt(label: &str, confirm: bool) -> Result<Secret> {
    if !std::io::stdin().is_terminal() && !std::io::stderr().is_terminal() {
        return Err(Error::NoPassphrase);
    }
    let read = |l: &str| {
        rpassword::prompt_password(l)
            .map(|s| Secret::new(zeroize::Zeroizing::new(s).as_str()))
            .map_err(|e| Error::io("cannot read the passphrase from the terminal", e))
    };
    let first = read(label)?;
    if confirm {
        let again = read("Repeat: ")?;
        if first != again {
            return Err(Error::invalid("passphrase", "the two entries differ"));
        }
    }
    Ok(first)
}
