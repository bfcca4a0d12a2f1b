//! Where passphrases come from: `--passphrase-file`, `TOKENVAULT_PASSPHRASE` (the least
//! safe: environments leak into `/proc` and crash reports), or a no-echo terminal prompt.

use crate::error::{Error, Result};
use crate::secret::Secret;
use std::io::IsTerminal;
use std::path::Path;

pub use crate::secret::read_secret_file;

/// Where the vault passphrase comes from, in the order `passphrase` tries them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(std::path::PathBuf),
    Env,
    Prompt,
}

/// The source `passphrase(file, …)` reads from, decided without reading it.
pub fn source(file: Option<&Path>) -> Source {
    match file {
        Some(f) => Source::File(f.to_path_buf()),
        None if std::env::var_os("TOKENVAULT_PASSPHRASE").is_some() => Source::Env,
        None => Source::Prompt,
    }
}

/// Turns a wrong-passphrase error into one whose advice fits where the passphrase came
/// from: a file is checked, an environment variable corrected, a typed one typed again.
/// Other errors pass through unchanged.
pub fn explain(e: Error, source: &Source) -> Error {
    let Error::WrongPassphrase { path } = e else {
        return e;
    };
    let advice = match source {
        Source::File(f) => format!(
            "check the passphrase file {} (--passphrase-file / TOKENVAULT_PASSPHRASE_FILE) and try again",
            f.display()
        ),
        Source::Env => "check TOKENVAULT_PASSPHRASE (or unset it to be asked on the terminal) and try again".into(),
        Source::Prompt => "the passphrase typed does not open this vault; run the command again and retype it (mind Caps Lock and the keyboard layout)".into(),
    };
    Error::WrongPassphraseFrom { path, advice }
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
