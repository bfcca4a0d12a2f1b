//! Default locations of SPEC §3, from the XDG variables.

use std::path::PathBuf;

fn xdg(var: &str, fallback: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/".into());
            PathBuf::from(home).join(fallback)
        }
    }
}

pub fn default_vault() -> PathBuf {
    xdg("XDG_DATA_HOME", ".local/share").join("tokenvault/vault.redb")
}

pub fn default_config() -> PathBuf {
    xdg("XDG_CONFIG_HOME", ".config").join("tokenvault/config.toml")
}

pub fn default_socket() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(v) if !v.is_empty() => PathBuf::from(v).join("tokenvault/tokenvault.sock"),
        _ => PathBuf::from(format!("/tmp/tokenvault-{}", nix::unistd::getuid()))
            .join("tokenvault.sock"),
    }
}
