//! The configuration as `serve` takes it (at start and on SIGHUP): a file named
//! explicitly must exist, and the settings only the daemon acts on are checked before
//! they are used (the provider catalogue builds, webhooks have a readable `secret_file`,
//! `[backup]` has a directory and age recipients), so a typo stops the start or the
//! reload instead of surfacing hours later.

use crate::config::Config;
use crate::error::{Error, Result};
use std::path::Path;

/// Loads `path` for `serve` (at start and on SIGHUP): like `load`, but a file named
/// explicitly (`required`: `--config` / `TOKENVAULT_CONFIG`) must exist, and the
/// settings only the daemon acts on are checked now (`check_for_daemon`), so a typo
/// stops the start or the reload instead of surfacing hours later.
pub fn load_for_daemon(path: &Path, required: bool) -> Result<Config> {
    let config = if required {
        Config::load_required(path)?
    } else {
        Config::load(path)?
    };
    check_for_daemon(&config).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    Ok(config)
}

/// What the daemon needs from its settings, checked before it uses them: the provider
/// catalogue builds; every `[[webhooks]]` entry has a readable `secret_file` (an
/// unsigned event could be forged, so such a hook would never send); `[backup]` has a
/// directory and age recipients (scheduled backups need no passphrase). Messages name
/// the setting, never its value beyond a file path.
pub fn check_for_daemon(config: &Config) -> std::result::Result<(), String> {
    crate::provider::catalogue::catalogue(config).map_err(|e| match e {
        Error::Config(m) => m,
        other => other.to_string(),
    })?;
    for (i, hook) in config.webhooks.iter().enumerate() {
        let n = i + 1;
        match hook.secret_file.as_deref() {
            None | Some("") => {
                return Err(format!(
                    "[[webhooks]] entry {n} has no secret_file: add secret_file = \"/path/to/key\" (the HMAC-SHA256 key events are signed with; unsigned events are never sent)"
                ));
            }
            Some(f) => {
                if let Err(e) = std::fs::metadata(f) {
                    return Err(format!(
                        "[[webhooks]] entry {n}: cannot read its secret_file {f} ({e}): create the file or fix the path"
                    ));
                }
            }
        }
    }
    if let Some(b) = &config.backup {
        if b.directory.trim().is_empty() {
            return Err(
                "[backup] directory is empty: set the directory scheduled backups are written to"
                    .into(),
            );
        }
        if b.recipients.is_empty() {
            return Err(
                "[backup] has no recipients: add recipients = [\"age1…\"] (from `age-keygen`), or remove the [backup] table to turn scheduled backups off".into(),
            );
        }
        for (i, r) in b.recipients.iter().enumerate() {
            if r.trim().parse::<age::x25519::Recipient>().is_err() {
                return Err(format!(
                    "[backup] recipients entry {} is not an age recipient (age1…, printed by `age-keygen`): fix it",
                    i + 1
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn daemon_settings_are_checked() {
        let check = |t: &str| check_for_daemon(&Config::parse(t).unwrap());
        assert!(check("").is_ok());
        let e = check("[[webhooks]]\nurl = \"https://h.example/x\"\n").unwrap_err();
        assert!(e.contains("entry 1 has no secret_file"), "{e}");
        let e = check(
            "[[webhooks]]\nurl = \"https://h.example/x\"\nsecret_file = \"/nonexistent/k\"\n",
        )
        .unwrap_err();
        assert!(
            e.contains("cannot read its secret_file /nonexistent/k"),
            "{e}"
        );
        let e = check("[backup]\ndirectory = \"/b\"\n").unwrap_err();
        assert!(e.contains("[backup] has no recipients"), "{e}");
        let e = check("[backup]\ndirectory = \"/b\"\nrecipients = [\"age1-not-SECRETISH\"]\n")
            .unwrap_err();
        assert!(e.contains("entry 1 is not an age recipient"), "{e}");
        assert!(!e.contains("SECRETISH"), "{e}");
        let e = check("[providers.x]\nclient_auth = \"post\"\n").unwrap_err();
        assert!(e.contains("needs token_url"), "{e}");
        let r = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
        assert!(
            check(&format!(
                "[backup]\ndirectory = \"/b\"\nrecipients = [\"{r}\"]\n"
            ))
            .is_ok()
        );
    }

    #[test]
    fn a_named_config_file_must_exist() {
        let dir = std::env::temp_dir().join(format!("tv-config-{}", std::process::id()));
        let missing = dir.join("nope.toml");
        let e = Config::load_required(&missing).unwrap_err();
        assert_eq!(e.exit_code(), 6);
        assert!(e.to_string().contains("does not exist"), "{e}");
        // the optional default path may be absent
        assert!(Config::load(&missing).is_ok());
        assert!(load_for_daemon(&missing, false).is_ok());
        assert!(load_for_daemon(&missing, true).is_err());
    }
}
